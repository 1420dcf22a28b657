//! What tries leave behind: their logs (`…/logs/{try_number}`, JSON or NDJSON, optionally
//! followed while the try runs) and their XComs (`…/xcomEntries`).

use std::time::Duration;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::{StreamExt, stream};
use leoflow_core::state::TiState;
use leoflow_events::TaskInstanceKey;
use leoflow_scheduler::task_logs::{self, LogLine};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params, path_int};
use crate::read::page::{ListQuery, fetch_page};
use crate::state::ApiState;
use crate::v2::models::{load_dag, load_run};

/// A log line as Airflow's `StructuredLogMessage`.
#[derive(Debug, Serialize)]
struct LogMessage<'a> {
    timestamp: DateTime<Utc>,
    event: &'a str,
}

fn message(line: &LogLine) -> LogMessage<'_> {
    LogMessage {
        timestamp: line.logged_at,
        event: &line.line,
    }
}

/// One NDJSON line of a log.
fn ndjson_line(line: &LogLine) -> String {
    let mut text = serde_json::to_string(&message(line)).expect("a log message serializes");
    text.push('\n');
    text
}

/// Airflow's `TaskInstancesLogResponse`.
#[derive(Debug, Serialize)]
struct LogPage<'a> {
    content: Vec<LogMessage<'a>>,
    continuation_token: String,
}

/// Whether the try is over (nothing more will be logged).
async fn try_is_over(state: &ApiState, ti: &TaskInstanceKey, try_number: i32) -> ApiResult<bool> {
    let row: Option<(i32, Option<String>)> = sqlx::query_as(
        "SELECT try_number, state FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
    )
    .bind(&ti.dag_id)
    .bind(&ti.run_id)
    .bind(&ti.task_id)
    .bind(ti.map_index)
    .fetch_optional(state.store.pool())
    .await?;
    Ok(match row {
        Some((current, state)) => {
            let state = state.as_deref().and_then(TiState::from_airflow_name);
            current != try_number || !state.is_some_and(TiState::is_in_flight)
        }
        None => true,
    })
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/logs/{try_number}`:
/// the try's lines as JSON (`content` and a `continuation_token` to read on from), or one JSON
/// object per line with `Accept: application/x-ndjson`; `follow=true` (a Leoflow addition)
/// keeps an NDJSON response open until the try ends.
pub async fn get_logs(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, String)>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let try_number = path_int("try_number", &try_number)?;
    let map_index = params.int("map_index")?.unwrap_or(-1) as i32;
    load_run(&state, &dag_id, &run_id).await?;
    let ti = TaskInstanceKey::mapped(&dag_id, &run_id, &task_id, map_index);
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4)",
    )
    .bind(&dag_id)
    .bind(&run_id)
    .bind(&task_id)
    .bind(map_index)
    .fetch_one(state.store.pool())
    .await?;
    if !exists {
        return Err(ApiError::not_found(format!(
            "TaskInstance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `{map_index}` was not found"
        )));
    }
    let from = match params.str("token").filter(|t| !t.is_empty()) {
        Some(token) => token
            .parse::<i64>()
            // 422, an invalid input of a route whose spec documents no 400 (Airflow, whose
            // tokens are signed, answers 400 for a bad signature).
            .map_err(|_| {
                ApiError::invalid(
                    &["query", "token"],
                    "value_error",
                    format!("Invalid continuation token {token:?}"),
                    json!(token),
                )
            })?,
        None => 0,
    };
    let ndjson = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/x-ndjson"));
    let lines = task_logs::read(state.store.pool(), &ti, try_number, from).await?;
    if !ndjson {
        let next = lines.last().map_or(from, |l| l.seq + 1);
        let page = LogPage {
            content: lines.iter().map(message).collect(),
            continuation_token: next.to_string(),
        };
        return Ok(Json(page).into_response());
    }
    let follow = params.bool("follow")?.unwrap_or(false);
    let first: String = lines.iter().map(ndjson_line).collect();
    if !follow {
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], first).into_response());
    }
    // Followed: what is there, then new lines as they arrive, until the try is over.
    let next = lines.last().map_or(from, |l| l.seq + 1);
    let tail = stream::unfold(Some((state, ti, next)), move |cursor| async move {
        let (state, ti, next) = cursor?;
        loop {
            let over = try_is_over(&state, &ti, try_number).await.unwrap_or(true);
            let lines = task_logs::read(state.store.pool(), &ti, try_number, next)
                .await
                .unwrap_or_default();
            if !lines.is_empty() {
                let after = lines.last().map_or(next, |l| l.seq + 1);
                let chunk: String = lines.iter().map(ndjson_line).collect();
                return Some((Ok::<_, std::io::Error>(chunk), Some((state, ti, after))));
            }
            if over {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    });
    let body = stream::once(async move { Ok(first) }).chain(tail);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        HttpBody::from_stream(body),
    )
        .into_response())
}

/// An `xcom` row with what its responses need.
#[derive(Debug, sqlx::FromRow)]
struct XComRecord {
    dag_id: String,
    run_id: String,
    task_id: String,
    map_index: i32,
    key: String,
    value_hash: String,
    timestamp: DateTime<Utc>,
    logical_date: Option<DateTime<Utc>>,
    run_after: DateTime<Utc>,
}

const XCOM_COLUMNS: &str = "x.dag_id, x.run_id, x.task_id, x.map_index, x.key, x.value_hash, \
    x.timestamp, r.logical_date, r.run_after";
const XCOM_FROM: &str = "FROM xcom x JOIN dag_run r ON r.dag_id = x.dag_id AND r.run_id = x.run_id";

/// Airflow's `XComResponse` (with `value`: `XComResponseNative` or `…String`).
#[derive(Debug, Serialize)]
pub struct XComResponse {
    pub key: String,
    pub timestamp: DateTime<Utc>,
    pub logical_date: Option<DateTime<Utc>>,
    pub map_index: i32,
    pub task_id: String,
    pub dag_id: String,
    pub run_id: String,
    pub dag_display_name: String,
    pub task_display_name: String,
    pub run_after: DateTime<Utc>,
    /// The value, on the route of one XCom.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

/// Airflow's `XComCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct XComCollection {
    /// The page.
    pub xcom_entries: Vec<XComResponse>,
    /// Entries in all.
    pub total_entries: i64,
}

impl XComRecord {
    fn response(&self) -> XComResponse {
        XComResponse {
            key: self.key.clone(),
            timestamp: self.timestamp,
            logical_date: self.logical_date,
            map_index: self.map_index,
            task_id: self.task_id.clone(),
            dag_id: self.dag_id.clone(),
            run_id: self.run_id.clone(),
            dag_display_name: self.dag_id.clone(),
            task_display_name: self.task_id.clone(),
            run_after: self.run_after,
            value: None,
        }
    }
}

fn scope(id: &str) -> Option<&str> {
    (id != "~").then_some(id)
}

/// `GET …/taskInstances/{task_id}/xcomEntries` (any of the ids may be `~`).
pub async fn get_xcoms(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    params: Params,
) -> ApiResult<Json<XComCollection>> {
    if let (Some(dag_id), Some(run_id)) = (scope(&dag_id), scope(&run_id)) {
        load_run(&state, dag_id, run_id).await?;
    } else if let Some(dag_id) = scope(&dag_id) {
        load_dag(&state, dag_id).await?;
    }
    let page = params.page()?;
    let mut c = Conditions::new();
    for (column, value) in [
        ("x.dag_id", scope(&dag_id)),
        ("x.run_id", scope(&run_id)),
        ("x.task_id", scope(&task_id)),
    ] {
        if let Some(value) = value {
            c.eq(column, Bind::Text(value.to_owned()));
        }
    }
    if let Some(key) = params.str("xcom_key").filter(|k| !k.is_empty()) {
        c.eq("x.key", Bind::Text(key.to_owned()));
    }
    if let Some(map_index) = params.int("map_index")? {
        c.push(
            "x.map_index = ANY({})",
            vec![Bind::Ints(vec![map_index as i32])],
        );
    }
    c.patterns(&params, "xcom_key", "x.key");
    c.patterns(&params, "dag_display_name", "x.dag_id");
    c.patterns(&params, "run_id", "x.run_id");
    c.patterns(&params, "task_id", "x.task_id");
    c.time_range(&params, "logical_date", "r.logical_date")?;
    c.time_range(&params, "run_after", "r.run_after")?;
    if let Some(filter) = params.str("map_index_filter").filter(|f| !f.is_empty()) {
        let index = path_int("map_index_filter", filter)?;
        c.push("x.map_index = ANY({})", vec![Bind::Ints(vec![index])]);
    }
    let order = params.order_by(
        &[
            ("key", "x.key"),
            ("dag_id", "x.dag_id"),
            ("run_id", "x.run_id"),
            ("task_id", "x.task_id"),
            ("map_index", "x.map_index"),
            ("timestamp", "x.timestamp"),
            ("run_after", "r.run_after"),
        ],
        "dag_id",
        "x.dag_id, x.task_id, x.run_id, x.map_index, x.key",
    )?;
    let list = ListQuery {
        select: &format!("SELECT {XCOM_COLUMNS} {XCOM_FROM}"),
        count_from: XCOM_FROM,
        conditions: &c,
        order: &order,
    };
    let paged = fetch_page::<XComRecord>(&state, list, page).await?;
    Ok(Json(XComCollection {
        xcom_entries: paged.rows.iter().map(XComRecord::response).collect(),
        total_entries: paged.total,
    }))
}

/// `GET …/taskInstances/{task_id}/xcomEntries/{xcom_key}?map_index=…&deserialize=…&stringify=…`:
/// one XCom with its value (native JSON, or its JSON text with `stringify=true`).
pub async fn get_xcom(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id, key)): Path<(String, String, String, String)>,
    params: Params,
) -> ApiResult<Json<XComResponse>> {
    load_run(&state, &dag_id, &run_id).await?;
    let map_index = params.int("map_index")?.unwrap_or(-1) as i32;
    params.bool("deserialize")?;
    let stringify = params.bool("stringify")?.unwrap_or(false);
    let row: Option<XComRecord> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {XCOM_COLUMNS} {XCOM_FROM} WHERE x.dag_id = $1 AND x.run_id = $2 AND x.task_id = $3 \
         AND x.map_index = $4 AND x.key = $5"
    )))
    .bind(&dag_id)
    .bind(&run_id)
    .bind(&task_id)
    .bind(map_index)
    .bind(&key)
    .fetch_optional(state.store.pool())
    .await?;
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!(
            "XCom entry with key: `{key}` not found for task `{task_id}` (map index {map_index}) of run `{run_id}`"
        ))
    })?;
    let content = state
        .store
        .get_blob(&row.value_hash)
        .await?
        .map(|b| b.content)
        .ok_or_else(|| ApiError::internal(format!("XCom blob {} is missing", row.value_hash)))?;
    let mut body = row.response();
    body.value = Some(if stringify {
        Value::String(content)
    } else {
        serde_json::from_str(&content).map_err(ApiError::internal)?
    });
    Ok(Json(body))
}

/// `POST …/xcomEntries`, `PATCH` and `DELETE …/xcomEntries/{xcom_key}`: refused with a reason
/// (a 400 Airflow documents for them) after the 404s of an unknown DAG or run. An XCom is what
/// its task pushed, recorded in the event log; the API does not write one.
pub async fn refuse_xcom_change(
    State(state): State<ApiState>,
    Path(path): Path<std::collections::HashMap<String, String>>,
) -> ApiResult<Response> {
    let segment = |name: &str| path.get(name).map(String::as_str).unwrap_or_default();
    load_run(&state, segment("dag_id"), segment("dag_run_id")).await?;
    Err(ApiError::bad_request(
        "Leoflow keeps XComs as their tasks pushed them: they cannot be created, changed or \
         deleted through the API",
    ))
}
