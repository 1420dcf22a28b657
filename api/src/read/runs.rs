//! The dag-run rows (the projector's) as the API loads them: Airflow's 404 for a run that is
//! not there.

use leoflow_projector::read;

pub use leoflow_projector::read::runs::RunRecord;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// Loads one run, or Airflow's 404.
pub async fn load_run(state: &ApiState, dag_id: &str, run_id: &str) -> ApiResult<RunRecord> {
    read::runs::find(state.store.pool(), dag_id, run_id)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
            ))
        })
}
