//! The DAG and DAG-version rows (the projector's) as the API loads them: Airflow's 404 for a
//! DAG that is not there, versions keyed by hash.

use std::collections::HashMap;

use leoflow_projector::read;

pub use leoflow_projector::read::dag_versions::VersionRecord;
pub use leoflow_projector::read::dags::DagRecord;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// The versions of the DAGs named, by (dag_id, version hash) → the newest version with that
/// hash (a hash can recur when a change is reverted).
pub async fn versions_by_hash(
    state: &ApiState,
    dag_ids: &[String],
) -> ApiResult<HashMap<(String, String), VersionRecord>> {
    let rows = read::dag_versions::of_dags(state.store.pool(), dag_ids).await?;
    Ok(rows
        .into_iter()
        .map(|v| ((v.dag_id.clone(), v.version_hash.clone()), v))
        .collect())
}

/// Loads one DAG, or Airflow's 404.
pub async fn load_dag(state: &ApiState, dag_id: &str) -> ApiResult<DagRecord> {
    read::dags::find(state.store.pool(), dag_id)
        .await?
        .ok_or_else(|| dag_not_found(dag_id))
}

/// Airflow's 404 for a DAG.
pub fn dag_not_found(dag_id: &str) -> ApiError {
    ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
}

/// Version `number` of a DAG, or Airflow's 404.
pub async fn load_version(state: &ApiState, dag_id: &str, number: i32) -> ApiResult<VersionRecord> {
    read::dag_versions::by_number(state.store.pool(), dag_id, number)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The DagVersion with dag_id: `{dag_id}` and version_number: `{number}` was not found"
            ))
        })
}
