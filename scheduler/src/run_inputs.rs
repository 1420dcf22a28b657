//! What the SDK's Python is given about a run of a DAG version, whether it runs a try (the
//! agent's assignment) or the DAG's callbacks (the triggerer): the DAG file's source, its
//! dag.json document and the run as the task context describes it.

use std::sync::Arc;

use chrono::Utc;
use leoflow_core::timetable::Schedule;
use leoflow_events::EventStore;
use leoflow_projector::read;
use serde_json::{Value, json};

use crate::reactor::runs::Specs;

/// A DAG version as its Python needs it.
pub(crate) struct DagFile {
    /// Its dag.json document.
    pub document: Arc<Value>,
    /// The DAG file's source, as the version recorded it.
    pub source: String,
    /// The DAG file's path in its project.
    pub fileloc: String,
}

/// Why a run's inputs cannot be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum InputError {
    /// The database failed: asking again may work.
    #[error("{0}")]
    Unavailable(String),
    /// The log has no such thing (a version without its source, a DAG without the task).
    #[error("{0}")]
    Missing(String),
}

fn unavailable(error: impl std::fmt::Display) -> InputError {
    InputError::Unavailable(error.to_string())
}

/// The DAG file of version `version` of `dag_id`.
pub(crate) async fn dag_file(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    version: &str,
) -> Result<DagFile, InputError> {
    let document = specs
        .document(store, dag_id, version)
        .await
        .map_err(|e| InputError::Missing(e.to_string()))?;
    let source_hash = read::dag_versions::blobs(store.pool(), dag_id, version)
        .await
        .map_err(unavailable)?
        .and_then(|blobs| blobs.source_hash);
    let source = match source_hash {
        Some(hash) => store
            .get_blob(&hash)
            .await
            .map_err(unavailable)?
            .map(|b| b.content),
        None => None,
    }
    .ok_or_else(|| InputError::Missing("the DAG version's source file was not recorded".into()))?;
    let fileloc = document["fileloc"].as_str().unwrap_or("dag.py").to_owned();
    Ok(DagFile {
        document,
        source,
        fileloc,
    })
}

/// The task `task_id` of a DAG version's document.
pub(crate) fn task<'a>(document: &'a Value, task_id: &str) -> Result<&'a Value, InputError> {
    document["tasks"]
        .as_array()
        .and_then(|tasks| tasks.iter().find(|t| t["task_id"] == task_id))
        .ok_or_else(|| InputError::Missing(format!("the DAG version has no task {task_id}")))
}

/// The run as the task context describes it: its dates, conf and params, the timetable's next
/// logical date, the previous successful run's dates.
pub(crate) async fn run_context(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    row: &read::runs::RunContext,
    document: &Value,
) -> Result<Value, InputError> {
    let instant = |t: Option<chrono::DateTime<Utc>>| t.map(|t| t.to_rfc3339());
    let previous = match row.logical_date {
        Some(at) => read::runs::previous_success(store.pool(), dag_id, at)
            .await
            .map_err(unavailable)?,
        None => None,
    };
    let next_logical_date = row.logical_date.and_then(|at| {
        Schedule::from_dag_json(document)
            .ok()
            .and_then(|schedule| schedule.following(at))
    });
    Ok(json!({
        "run_id": run_id,
        "run_type": row.run_type,
        "logical_date": instant(row.logical_date),
        "data_interval_start": instant(row.data_interval_start),
        "data_interval_end": instant(row.data_interval_end),
        "run_after": instant(Some(row.run_after)),
        "conf": row.conf,
        "dag_params": document["params"],
        "next_logical_date": instant(next_logical_date),
        "prev_success": previous.map(|run| json!({
            "data_interval_start": instant(run.data_interval_start),
            "data_interval_end": instant(run.data_interval_end),
            "start_date": instant(run.start_date),
            "end_date": instant(run.end_date),
        })),
    }))
}
