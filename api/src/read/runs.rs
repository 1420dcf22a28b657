//! The dag-run rows.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow};

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// The columns of `dag_run` (prefixed `r.`).
pub const RUN_COLUMNS: &str = "r.dag_id, r.run_id, r.id, r.state, r.run_type, r.logical_date, \
    r.data_interval_start, r.data_interval_end, r.run_after, r.queued_at, r.start_date, \
    r.end_date, r.conf, r.triggered_by, r.dag_version_hash, r.note, r.triggering_user_name";

/// A `dag_run` row.
#[derive(Debug, Clone, FromRow)]
pub struct RunRecord {
    pub dag_id: String,
    pub run_id: String,
    pub id: i64,
    pub state: String,
    pub run_type: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub conf: Value,
    pub triggered_by: String,
    pub dag_version_hash: Option<String>,
    pub note: Option<String>,
    pub triggering_user_name: Option<String>,
}

/// Loads one run, or Airflow's 404.
pub async fn load_run(state: &ApiState, dag_id: &str, run_id: &str) -> ApiResult<RunRecord> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 AND r.run_id = $2"
    )))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(state.store.pool())
    .await?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        ))
    })
}
