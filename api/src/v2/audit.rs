//! Airflow's audit log (`/api/v2/eventLogs`), served from Leoflow's event log itself: every
//! event is an entry. Its position is the id, its type the event, its actor the owner; the DAG,
//! run, task, map index and try it concerns come from its payload (top level, or `ti` for task
//! events), and the payload itself, secrets masked, is the `extra`.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, FromRow};

use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params};
use crate::read::page::{count_rows, page_rows};
use crate::state::ApiState;
use crate::v2::config::redact::{MASK, python_json, redact};

/// The DAG an event concerns. The expressions here are the ones the audit indexes of
/// `migrations/20261201000005_audit_index.sql` are built on: change both together.
const DAG_ID: &str = "coalesce(e.payload->>'dag_id', e.payload->'ti'->>'dag_id')";
/// The dag run it concerns.
const RUN_ID: &str = "coalesce(e.payload->>'run_id', e.payload->'ti'->>'run_id')";
/// The task it concerns.
const TASK_ID: &str = "e.payload->'ti'->>'task_id'";
/// Who caused it.
const OWNER: &str = "e.metadata->>'actor'";
/// The logical date, known for the events that carry one (`RunQueued`).
const LOGICAL_DATE: &str = "(e.payload->>'logical_date')::timestamptz";

/// An event as an audit-log row.
#[derive(Debug, FromRow)]
struct EventLogRow {
    position: i64,
    recorded_at: DateTime<Utc>,
    event: String,
    schema_version: i32,
    payload: Value,
    owner: Option<String>,
    dag_id: Option<String>,
    run_id: Option<String>,
    task_id: Option<String>,
    map_index: Option<i32>,
    try_number: Option<i32>,
    logical_date: Option<DateTime<Utc>>,
}

fn select() -> String {
    format!(
        "SELECT e.position, e.recorded_at, e.type AS event, e.schema_version, e.payload, \
         {OWNER} AS owner, \
         {DAG_ID} AS dag_id, {RUN_ID} AS run_id, {TASK_ID} AS task_id, \
         (e.payload->'ti'->>'map_index')::int AS map_index, \
         (e.payload->>'try_number')::int AS try_number, {LOGICAL_DATE} AS logical_date \
         FROM events e"
    )
}

/// Airflow's `EventLogResponse`.
#[derive(Debug, Serialize)]
pub struct EventLogResponse {
    pub event_log_id: i64,
    pub when: DateTime<Utc>,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    pub run_id: Option<String>,
    pub map_index: Option<i32>,
    pub try_number: Option<i32>,
    pub event: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub owner: Option<String>,
    pub extra: String,
    pub dag_display_name: Option<String>,
    pub task_display_name: Option<String>,
}

/// Airflow's `EventLogCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct EventLogCollection {
    pub event_logs: Vec<EventLogResponse>,
    pub total_entries: i64,
}

impl EventLogRow {
    /// `EventLogResponse`.
    fn response(&self) -> EventLogResponse {
        EventLogResponse {
            event_log_id: self.position,
            when: self.recorded_at,
            dag_id: self.dag_id.clone(),
            task_id: self.task_id.clone(),
            run_id: self.run_id.clone(),
            map_index: self.map_index,
            try_number: self.try_number,
            event: self.event.clone(),
            logical_date: self.logical_date,
            owner: self.owner.clone(),
            extra: extra(&self.event, &self.shown_payload()),
            dag_display_name: self.dag_id.clone(),
            task_display_name: self.task_id.clone(),
        }
    }
}

impl EventLogRow {
    /// The payload in the current schema (see `RecordedEvent::shown`).
    fn shown_payload(&self) -> Value {
        leoflow_events::Event::decode(&self.event, self.schema_version, self.payload.clone())
            .map(|event| event.payload())
            .unwrap_or_else(|_| self.payload.clone())
    }
}

/// The payload as Airflow's audit extras read: JSON as Python prints it, with what Airflow's
/// action logging masks masked (values under sensitive names). Sealed secrets — a Variable's
/// value, a Connection's password and extra — read `***`: the audit log never opens them
/// (and cannot, once a deleted secret's data key is gone).
fn extra(event: &str, payload: &Value) -> String {
    let mut masked = redact(payload);
    if matches!(event, "VariableSet" | "ConnectionSet") {
        for field in ["value", "password", "extra"] {
            if payload[field].is_object() {
                masked[field] = json!(MASK);
            }
        }
    }
    python_json(&masked)
}

/// The filters of `GET /eventLogs`.
fn conditions(params: &Params) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    for (name, column) in [
        ("dag_id", DAG_ID),
        ("task_id", TASK_ID),
        ("run_id", RUN_ID),
        ("owner", OWNER),
        ("event", "e.type"),
    ] {
        if let Some(value) = params.str(name).filter(|v| !v.is_empty()) {
            c.eq(column, Bind::Text(value.to_owned()));
        }
        c.patterns(params, name, column);
    }
    // Compared as JSON numbers (the parameter is an integer), so no cast can fail on a payload.
    if let Some(map_index) = params.int("map_index")? {
        c.push(
            "e.payload->'ti'->'map_index' = CAST({} AS jsonb)",
            vec![Bind::Text(map_index.to_string())],
        );
    }
    if let Some(try_number) = params.int("try_number")? {
        c.push(
            "e.payload->'try_number' = CAST({} AS jsonb)",
            vec![Bind::Text(try_number.to_string())],
        );
    }
    let included = params.list("included_events", None)?;
    if !included.is_empty() {
        c.push("e.type = ANY({})", vec![Bind::Texts(included)]);
    }
    let excluded = params.list("excluded_events", None)?;
    if !excluded.is_empty() {
        c.push("NOT (e.type = ANY({}))", vec![Bind::Texts(excluded)]);
    }
    if let Some(before) = params.datetime("before")? {
        c.push("e.recorded_at < {}", vec![Bind::Time(before)]);
    }
    if let Some(after) = params.datetime("after")? {
        c.push("e.recorded_at > {}", vec![Bind::Time(after)]);
    }
    Ok(c)
}

/// `GET /api/v2/eventLogs`.
pub async fn get_event_logs(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<EventLogCollection>> {
    let page = params.page()?;
    let conditions = conditions(&params)?;
    // `recorded_at` is read under the log lock that assigns positions, so position order is
    // time order: sorting by time walks the primary key instead of sorting the log.
    let order = params.order_by(
        &[
            ("id", "e.position"),
            ("event_log_id", "e.position"),
            ("dttm", "e.position"),
            ("when", "e.position"),
            ("dag_id", DAG_ID),
            ("task_id", TASK_ID),
            ("run_id", RUN_ID),
            ("event", "e.type"),
            ("logical_date", LOGICAL_DATE),
            ("owner", OWNER),
            ("extra", "e.payload::text"),
        ],
        "id",
        "e.position",
    )?;
    let total = if conditions.is_empty() {
        // Positions are gap-free: the whole log's size needs no scan.
        sqlx::query_scalar("SELECT coalesce(max(position) - min(position) + 1, 0) FROM events")
            .fetch_one(state.store.pool())
            .await?
    } else {
        count_rows(&state, "FROM events e", &conditions).await?
    };
    let rows: Vec<EventLogRow> = page_rows(&state, &select(), &conditions, &order, page).await?;
    Ok(Json(EventLogCollection {
        event_logs: rows.iter().map(EventLogRow::response).collect(),
        total_entries: total,
    }))
}

/// `GET /api/v2/eventLogs/{event_log_id}`.
pub async fn get_event_log(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<EventLogResponse>> {
    let position: i64 = id.parse().map_err(|_| {
        ApiError::invalid(
            &["path", "event_log_id"],
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            json!(id),
        )
    })?;
    let row: Option<EventLogRow> =
        sqlx::query_as(AssertSqlSafe(format!("{} WHERE e.position = $1", select())))
            .bind(position)
            .fetch_optional(state.store.pool())
            .await?;
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!("The Event Log with id: `{position}` not found"))
    })?;
    Ok(Json(row.response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extras_mask_what_airflow_masks() {
        let sealed = json!({"form": "data_key", "key_id": "k", "ciphertext": "c2VjcmV0"});
        let connection = json!({
            "conn_id": "db", "password": sealed, "extra": sealed, "host": "h",
        });
        assert_eq!(
            extra("ConnectionSet", &connection),
            r#"{"conn_id": "db", "extra": "***", "host": "h", "password": "***"}"#
        );
        let variable = json!({"key": "greeting", "value": sealed, "description": null});
        assert_eq!(
            extra("VariableSet", &variable),
            r#"{"description": null, "key": "greeting", "value": "***"}"#
        );
        let pool = json!({"name": "p", "slots": 3, "description": "token bucket"});
        assert!(extra("PoolSet", &pool).contains(r#""description": "token bucket""#));
    }
}
