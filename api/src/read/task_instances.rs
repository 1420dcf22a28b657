//! The task-instance rows (the projector's, with what their responses need of their runs) as
//! the API loads them.

use leoflow_projector::read;

pub use leoflow_projector::read::task_instances::{TiRecord, TryRecord};

use crate::error::ApiResult;
use crate::state::ApiState;

/// The task instances of a run in one of `states` (any state when empty), by task and map
/// index.
pub async fn of_run(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    states: &[String],
) -> ApiResult<Vec<TiRecord>> {
    Ok(read::task_instances::of_run(state.store.pool(), dag_id, run_id, states).await?)
}

/// One task instance, if the run has it.
pub async fn find(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<Option<TiRecord>> {
    let pool = state.store.pool();
    Ok(read::task_instances::find(pool, dag_id, run_id, task_id, map_index).await?)
}

/// The task instances of `keys` (dag id, run id, task id, map index) that exist, in one read.
pub async fn find_many(
    state: &ApiState,
    keys: &[(&str, &str, &str, i32)],
) -> ApiResult<Vec<TiRecord>> {
    Ok(read::task_instances::find_many(state.store.pool(), keys).await?)
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

/// The tries of a task instance (only try `only` when given), oldest first.
pub async fn tries(
    state: &ApiState,
    ti: &TiRecord,
    only: Option<i32>,
) -> ApiResult<Vec<TryRecord>> {
    Ok(read::task_instances::tries(state.store.pool(), ti, only).await?)
}
