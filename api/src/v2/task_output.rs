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
use leoflow_projector::read;
use leoflow_projector::read::runs::columns as run;
use leoflow_projector::read::xcoms::{XComKey, XComRecord, columns as xcom};
use leoflow_scheduler::task_logs::{self, LogLine};
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params, path_int};
use crate::read::page::read_page;
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
    let pool = state.store.pool();
    let row = read::task_instances::try_and_state(
        pool,
        &ti.dag_id,
        &ti.run_id,
        &ti.task_id,
        ti.map_index,
    )
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
    let pool = state.store.pool();
    let exists = read::task_instances::exists(pool, &dag_id, &run_id, &task_id, map_index).await?;
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

impl From<&XComRecord> for XComResponse {
    /// The response without the value (a list's).
    fn from(xcom: &XComRecord) -> Self {
        Self {
            key: xcom.key.clone(),
            timestamp: xcom.timestamp,
            logical_date: xcom.logical_date,
            map_index: xcom.map_index,
            task_id: xcom.task_id.clone(),
            dag_id: xcom.dag_id.clone(),
            run_id: xcom.run_id.clone(),
            dag_display_name: xcom.dag_id.clone(),
            task_display_name: xcom.task_id.clone(),
            run_after: xcom.run_after,
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
    dags: crate::dag_access::DagScope,
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
        (xcom::DAG_ID, scope(&dag_id)),
        (xcom::RUN_ID, scope(&run_id)),
        (xcom::TASK_ID, scope(&task_id)),
    ] {
        if let Some(value) = value {
            c.eq(column, Bind::Text(value.to_owned()));
        }
    }
    dags.restrict(&mut c, xcom::DAG_ID);
    if let Some(key) = params.str("xcom_key").filter(|k| !k.is_empty()) {
        c.eq(xcom::KEY, Bind::Text(key.to_owned()));
    }
    let map_index_is = format!("{} = ANY({{}})", xcom::MAP_INDEX);
    if let Some(map_index) = params.int("map_index")? {
        c.push(&map_index_is, vec![Bind::Ints(vec![map_index as i32])]);
    }
    c.patterns(&params, "xcom_key", xcom::KEY);
    c.patterns(&params, "dag_display_name", xcom::DAG_ID);
    c.patterns(&params, "run_id", xcom::RUN_ID);
    c.patterns(&params, "task_id", xcom::TASK_ID);
    c.time_range(&params, "logical_date", run::LOGICAL_DATE)?;
    c.time_range(&params, "run_after", run::RUN_AFTER)?;
    if let Some(filter) = params.str("map_index_filter").filter(|f| !f.is_empty()) {
        let index = path_int("map_index_filter", filter)?;
        c.push(&map_index_is, vec![Bind::Ints(vec![index])]);
    }
    let order = params.order_by(
        &[
            ("key", xcom::KEY),
            ("dag_id", xcom::DAG_ID),
            ("run_id", xcom::RUN_ID),
            ("task_id", xcom::TASK_ID),
            ("map_index", xcom::MAP_INDEX),
            ("timestamp", xcom::TIMESTAMP),
            ("run_after", run::RUN_AFTER),
        ],
        "dag_id",
        xcom::DEFAULT_ORDER,
    )?;
    let pool = state.store.pool();
    let paged = read_page(page, |w| read::xcoms::page(pool, &c, &order, w)).await?;
    Ok(Json(XComCollection {
        xcom_entries: paged.rows.iter().map(XComResponse::from).collect(),
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
    let at = XComKey {
        dag_id: &dag_id,
        run_id: &run_id,
        task_id: &task_id,
        map_index,
        key: &key,
    };
    let row = read::xcoms::find(state.store.pool(), at).await?;
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!(
            "XCom entry with key: `{key}` not found for task `{task_id}` (map index {map_index}) of run `{run_id}`"
        ))
    })?;
    let content = state
        .xcom_values
        .value(&state.store, &row.value_hash)
        .await?
        .ok_or_else(|| ApiError::internal(format!("XCom blob {} is missing", row.value_hash)))?;
    let mut body = XComResponse::from(&row);
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
