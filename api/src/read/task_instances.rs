//! The task-instance rows, with what their responses need of their runs.

use chrono::{DateTime, Utc};
use leoflow_projector::read;
use sqlx::{AssertSqlSafe, FromRow};
use uuid::Uuid;

use crate::error::ApiResult;
use crate::state::ApiState;

/// Task instances joined to their runs (`t.`, `r.`).
pub const TI_FROM: &str =
    "FROM task_instance t JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id";

/// The columns of `task_instance` (prefixed `t.`) and of its run (`r.`).
pub const TI_COLUMNS: &str = "t.dag_id, t.run_id, t.task_id, t.map_index, t.id, t.try_number, \
    t.state, t.scheduled_dttm, t.queued_dttm, t.start_date, t.end_date, t.duration, t.hostname, \
    t.pid, t.executor, t.pool, t.pool_slots, t.priority_weight, t.queue, t.rendered_fields_hash, \
    r.logical_date, r.run_after, r.dag_version_hash";

/// A `task_instance` row with what its responses need of its run.
#[derive(Debug, Clone, FromRow)]
pub struct TiRecord {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i32,
    pub id: Uuid,
    pub try_number: i32,
    pub state: Option<String>,
    pub scheduled_dttm: Option<DateTime<Utc>>,
    pub queued_dttm: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    pub pool: Option<String>,
    pub pool_slots: Option<i32>,
    pub priority_weight: Option<i32>,
    pub queue: Option<String>,
    pub rendered_fields_hash: Option<String>,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub dag_version_hash: Option<String>,
}

/// The task instances of a run in one of `states` (any state when empty), by task and map
/// index.
pub async fn of_run(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    states: &[String],
) -> ApiResult<Vec<TiRecord>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TI_COLUMNS} {TI_FROM} \
         WHERE t.dag_id = $1 AND t.run_id = $2 AND (cardinality($3::text[]) = 0 OR t.state = ANY($3)) \
         ORDER BY t.task_id, t.map_index"
    )))
    .bind(dag_id)
    .bind(run_id)
    .bind(states)
    .fetch_all(state.store.pool())
    .await?)
}

/// One task instance, if the run has it.
pub async fn find(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<Option<TiRecord>> {
    Ok(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TI_COLUMNS} {TI_FROM} WHERE t.dag_id = $1 AND t.run_id = $2 AND t.task_id = $3 AND t.map_index = $4"
    )))
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(state.store.pool())
    .await?)
}

/// Whether a task of a run is mapped (has instances with a map index).
pub async fn is_mapped(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> ApiResult<bool> {
    Ok(read::task_instances::is_mapped(state.store.pool(), dag_id, run_id, task_id).await?)
}

/// A try of a task instance (a `task_instance_try` row).
#[derive(Debug, Clone, FromRow)]
pub struct TryRecord {
    pub try_number: i32,
    pub state: Option<String>,
    pub queued_dttm: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
}

/// The tries of a task instance (only try `only` when given), oldest first.
pub async fn tries(
    state: &ApiState,
    ti: &TiRecord,
    only: Option<i32>,
) -> ApiResult<Vec<TryRecord>> {
    Ok(sqlx::query_as(
        "SELECT try_number, state, queued_dttm, start_date, end_date, duration, hostname, pid, executor \
         FROM task_instance_try WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 \
         AND ($5::int IS NULL OR try_number = $5) ORDER BY try_number",
    )
    .bind(&ti.dag_id)
    .bind(&ti.run_id)
    .bind(&ti.task_id)
    .bind(ti.map_index)
    .bind(only)
    .fetch_all(state.store.pool())
    .await?)
}
