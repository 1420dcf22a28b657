//! The DAG and DAG-version rows.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// The columns of `dag` (prefixed `d.`), plus whether its file has an import error.
pub const DAG_COLUMNS: &str = "d.dag_id, d.is_paused, d.is_stale, d.fileloc, d.bundle_name, \
    d.description, d.owners, d.tags, d.timetable_summary, d.max_active_runs, d.max_active_tasks, \
    d.catchup, d.last_parsed_time, d.latest_version_id, d.latest_version_hash, \
    EXISTS (SELECT 1 FROM import_error ie WHERE ie.filename = d.fileloc) AS has_import_errors";

/// A `dag` row.
#[derive(Debug, Clone, FromRow)]
pub struct DagRecord {
    pub dag_id: String,
    pub is_paused: bool,
    pub is_stale: bool,
    pub fileloc: String,
    pub bundle_name: String,
    pub description: Option<String>,
    pub owners: String,
    pub tags: Value,
    pub timetable_summary: Option<String>,
    pub max_active_runs: i32,
    pub max_active_tasks: i32,
    pub catchup: bool,
    pub last_parsed_time: DateTime<Utc>,
    pub latest_version_id: Uuid,
    pub latest_version_hash: String,
    pub has_import_errors: bool,
}

/// The columns of `dag_version` (prefixed `v.`).
pub const VERSION_COLUMNS: &str = "v.id, v.dag_id, v.version_number, v.version_hash, v.source_hash, v.document_hash, v.fileloc, \
     v.bundle_name, v.created_at";

/// A `dag_version` row.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRecord {
    pub id: Uuid,
    pub dag_id: String,
    pub version_number: i32,
    pub version_hash: String,
    pub source_hash: Option<String>,
    pub bundle_name: String,
    pub created_at: DateTime<Utc>,
}

/// The versions of the DAGs named, by (dag_id, version hash) → the newest version with that
/// hash (a hash can recur when a change is reverted).
pub async fn versions_by_hash(
    state: &ApiState,
    dag_ids: &[String],
) -> ApiResult<HashMap<(String, String), VersionRecord>> {
    let rows: Vec<VersionRecord> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM dag_version v WHERE v.dag_id = ANY($1) \
         ORDER BY v.version_number"
    )))
    .bind(dag_ids)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|v| ((v.dag_id.clone(), v.version_hash.clone()), v))
        .collect())
}

/// Loads one DAG, or Airflow's 404.
pub async fn load_dag(state: &ApiState, dag_id: &str) -> ApiResult<DagRecord> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {DAG_COLUMNS} FROM dag d WHERE d.dag_id = $1"
    )))
    .bind(dag_id)
    .fetch_optional(state.store.pool())
    .await?
    .ok_or_else(|| dag_not_found(dag_id))
}

/// Airflow's 404 for a DAG.
pub fn dag_not_found(dag_id: &str) -> ApiError {
    ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
}
