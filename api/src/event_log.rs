//! The event log for the CLI against a server: `GET /leoflow/api/events`, the log as
//! newline-delimited JSON, what `leoflow events tail` reads; and `GET /leoflow/api/replay`, the
//! runs and task instances as of a position or time, what `leoflow events replay --until` shows.
//!
//! The feed: One event per line, as `events tail --json` prints it (upcast,
//! nothing retired shown); with `follow=true` the answer stays open and new events follow as
//! they are appended, with an empty line every [`KEEPALIVE`] so proxies keep it open.
//!
//! What a caller sees is what their audit log shows them, decided in SQL: a caller of one
//! tenant only the events about their tenant's DAGs and what their tenant's people, machines
//! and configuration did (`audit_log::within_tenant`), and of the past only their tenant's runs.
//! Both need the audit log's permission.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use leoflow_events::RecordedEvent;
use leoflow_projector::point_in_time::{PointInTime, point_in_time};
use leoflow_projector::read::audit_log::{self, LogFilter, columns};
use leoflow_projector::read::page::Window;
use leoflow_projector::replay::Until;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::auth::User;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Comparison, Conditions, Params};
use crate::state::ApiState;

/// The path of the feed.
pub const FEED_PATH: &str = "/leoflow/api/events";

/// The path of the runs and task instances as of a point of the log.
pub const REPLAY_PATH: &str = "/leoflow/api/replay";

/// How long a followed feed stays silent before it sends an empty line.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// Events read per query.
const PAGE: i64 = 500;

/// The most `lines` a caller may ask for.
const MAX_LINES: i64 = 10_000;

/// What the query asks for: `from` (a position, inclusive) or the last `lines` (default 20);
/// `actor`, `tenant` (the tenant the actor acted in), `dag_id`, `run_id`, `stream`, `type`
/// (repeatable), `since` and `until` (RFC 3339) narrow it (`LogFilter`); `follow=true` keeps
/// it open.
struct Feed {
    conditions: Conditions,
    /// What the caller's tenant's DAG keys start with, when they are not its names.
    prefix: Option<String>,
    from: Option<i64>,
    lines: i64,
    follow: bool,
}

impl Feed {
    fn parse(user: &User, params: &Params) -> ApiResult<Self> {
        let mut conditions = Conditions::new();
        if let Some(tenant) = &user.tenant {
            audit_log::within_tenant(&mut conditions, tenant);
        }
        let text = |name: &str| params.str(name).map(str::to_owned);
        let filter = LogFilter {
            actor: text("actor"),
            tenant: text("tenant"),
            dag_id: text("dag_id"),
            run_id: text("run_id"),
            stream: text("stream"),
            types: params.list("type", None)?,
            since: params.datetime("since")?,
            until: params.datetime("until")?,
        };
        filter.narrow(&mut conditions);
        Ok(Self {
            conditions,
            prefix: user.dag_key_prefix(),
            from: params.int("from")?,
            lines: params.int("lines")?.unwrap_or(20).clamp(0, MAX_LINES),
            follow: params.bool("follow")?.unwrap_or(false),
        })
    }

    /// The events after position `after` (exclusive) up to `upto` (inclusive), oldest first.
    async fn between(
        &self,
        state: &ApiState,
        after: i64,
        upto: i64,
    ) -> ApiResult<Vec<RecordedEvent>> {
        let mut found = Vec::new();
        let mut after = after;
        loop {
            let mut conditions = self.conditions.clone();
            conditions.compare(columns::POSITION, Comparison::Above, Bind::BigInt(after));
            conditions.compare(columns::POSITION, Comparison::AtMost, Bind::BigInt(upto));
            let window = Window {
                limit: PAGE,
                offset: 0,
            };
            let rows =
                audit_log::entries(state.store.pool(), &conditions, "e.position", window).await?;
            let full = rows.len() as i64 == PAGE;
            found.extend(rows.into_iter().map(|row| row.recorded().shown()));
            match found.last() {
                Some(last) if full => after = last.position,
                _ => return Ok(found),
            }
        }
    }

    /// The last `lines` events up to `upto`, oldest first.
    async fn last(&self, state: &ApiState, upto: i64) -> ApiResult<Vec<RecordedEvent>> {
        let mut conditions = self.conditions.clone();
        conditions.compare(columns::POSITION, Comparison::AtMost, Bind::BigInt(upto));
        let window = Window {
            limit: self.lines,
            offset: 0,
        };
        let rows =
            audit_log::entries(state.store.pool(), &conditions, "e.position DESC", window).await?;
        Ok(rows
            .into_iter()
            .rev()
            .map(|row| row.recorded().shown())
            .collect())
    }
}

/// One line of the feed, with the DAG names of the caller's tenant (`prefix`: its keys'
/// prefix, when they are not names).
fn line(event: &RecordedEvent, prefix: Option<&str>) -> Bytes {
    let mut text = match prefix {
        Some(prefix) => {
            let mut value = serde_json::to_value(event).expect("recorded events serialize");
            crate::tenant_names::named(&mut value, prefix);
            serde_json::to_vec(&value)
        }
        None => serde_json::to_vec(event),
    }
    .expect("recorded events serialize");
    text.push(b'\n');
    Bytes::from(text)
}

/// `GET /leoflow/api/replay?until=POSITION|TIME`: the caller's tenant's runs and task
/// instances as they were then (every tenant's for a caller of every tenant).
pub async fn replay(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
) -> ApiResult<Json<PointInTime>> {
    let Some(until) = params.str("until") else {
        return Err(ApiError::invalid(
            &["query", "until"],
            "missing",
            "Field required: a position or an RFC 3339 time",
            Value::Null,
        ));
    };
    let until: Until = until.parse().map_err(|why: String| {
        ApiError::invalid(&["query", "until"], "value_error", why, json!(until))
    })?;
    let tenant = user.tenant.as_deref();
    let past = point_in_time(state.store.pool(), until, tenant)
        .await
        .map_err(|e| {
            ApiError::detail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("replay stopped: {e}"),
            )
        })?;
    Ok(Json(past))
}

/// `GET /leoflow/api/events`.
pub async fn events(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
) -> ApiResult<Response> {
    let feed = Feed::parse(&user, &params)?;
    let head = state.store.head().await?;
    let first = match feed.from {
        Some(from) => feed.between(&state, from.max(1) - 1, head).await?,
        None => feed.last(&state, head).await?,
    };
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !feed.follow {
        let body: Vec<u8> = first
            .iter()
            .flat_map(|e| line(e, feed.prefix.as_deref()).to_vec())
            .collect();
        return Ok((headers, body).into_response());
    }
    let (sender, receiver) = mpsc::channel::<Bytes>(64);
    for event in &first {
        // The channel holds the first page until the body is read; a larger one waits.
        if sender
            .send(line(event, feed.prefix.as_deref()))
            .await
            .is_err()
        {
            return Ok(().into_response());
        }
    }
    tokio::spawn(follow(state, feed, head, sender));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let bytes = receiver.recv().await?;
        Some((Ok::<_, std::io::Error>(bytes), receiver))
    });
    Ok((headers, Body::from_stream(stream)).into_response())
}

/// Sends the events appended after `seen` as the log grows, until the caller goes away.
async fn follow(state: ApiState, feed: Feed, mut seen: i64, sender: mpsc::Sender<Bytes>) {
    let Ok(mut subscription) = state.store.subscribe(seen + 1).await else {
        return;
    };
    loop {
        // The subscription only says the log moved; what the caller may see is read in SQL.
        let moved = tokio::select! {
            next = tokio::time::timeout(KEEPALIVE, subscription.next()) => next,
            () = sender.closed() => return,
        };
        let head = match moved {
            Ok(Ok(event)) => {
                let mut head = event.position;
                while let Ok(Some(more)) = subscription.try_next().await {
                    head = more.position;
                }
                head
            }
            Ok(Err(_)) => return,
            Err(_) => {
                if sender.send(Bytes::from_static(b"\n")).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let Ok(events) = feed.between(&state, seen, head).await else {
            return;
        };
        seen = head;
        for event in &events {
            if sender
                .send(line(event, feed.prefix.as_deref()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
