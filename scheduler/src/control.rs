//! What users ask of DAGs and runs (the API and the CLI call these): trigger, pause, unpause,
//! clear, mark. Each reads the current state, decides with the pure core, and appends with the
//! stream version it decided on.

use chrono::Utc;
use leoflow_events::{
    AppendBatch, AppendError, EventStore, ExpectedVersion, Metadata, RecordedEvent, StoreError,
};
use serde_json::Value;
use sqlx::Row;

use crate::core::commands::{self, TriggerRejection, TriggerRequest};
use crate::core::run::Command;
use crate::reactor::runs::{Specs, SubmitError, submit};

/// Why a control command was refused.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No such DAG.
    #[error("DAG {0:?} not found")]
    UnknownDag(String),
    /// The trigger's request is invalid.
    #[error(transparent)]
    Trigger(#[from] TriggerRejection),
    /// A run command was refused.
    #[error(transparent)]
    Run(#[from] SubmitError),
    /// Another command changed the DAG first.
    #[error("DAG {0:?} changed concurrently; try again")]
    Conflict(String),
    /// Postgres failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending failed.
    #[error(transparent)]
    Append(AppendError),
}

/// Triggers a manual run of the DAG's latest version; its `conf` is checked against the
/// DAG's params. Returns the `RunQueued` event as recorded.
pub async fn trigger_dag(
    store: &EventStore,
    dag_id: &str,
    request: TriggerRequest,
    actor: &str,
) -> Result<RecordedEvent, ControlError> {
    let row = sqlx::query(
        "SELECT d.latest_version_hash, v.document_hash FROM dag d \
         JOIN dag_version v ON v.id = d.latest_version_id WHERE d.dag_id = $1",
    )
    .bind(dag_id)
    .fetch_optional(store.pool())
    .await
    .map_err(StoreError::from)?
    .ok_or_else(|| ControlError::UnknownDag(dag_id.to_owned()))?;
    let version_hash: String = row.get("latest_version_hash");
    let document_hash: Option<String> = row.get("document_hash");
    let params = match document_hash {
        Some(hash) => match store.get_blob(&hash).await? {
            Some(blob) => serde_json::from_str::<Value>(&blob.content)
                .map(|doc| doc["params"].clone())
                .unwrap_or(Value::Null),
            None => Value::Null,
        },
        None => Value::Null,
    };
    let existing: Vec<String> = match &request.run_id {
        Some(run_id) => {
            sqlx::query_scalar("SELECT run_id FROM dag_run WHERE dag_id = $1 AND run_id = $2")
                .bind(dag_id)
                .bind(run_id)
                .fetch_all(store.pool())
                .await
                .map_err(StoreError::from)?
        }
        None => Vec::new(),
    };
    let event = commands::trigger(
        dag_id,
        &params,
        &version_hash,
        &existing,
        request,
        Utc::now(),
    )?;
    let stream = event.stream();
    // NoStream: two triggers racing for one run id cannot both win.
    let batch = AppendBatch::new()
        .push(event, &Metadata::actor(actor))
        .expect(stream, ExpectedVersion::NoStream);
    match store.append(batch).await {
        Ok(outcome) => Ok(outcome
            .events
            .into_iter()
            .next()
            .expect("one event appended")),
        Err(AppendError::Conflict { stream, .. }) => Err(ControlError::Conflict(stream)),
        Err(other) => Err(ControlError::Append(other)),
    }
}

/// Pauses or unpauses a DAG; `None` when it already was.
pub async fn set_paused(
    store: &EventStore,
    dag_id: &str,
    paused: bool,
    actor: &str,
) -> Result<Option<RecordedEvent>, ControlError> {
    let current: Option<bool> = sqlx::query_scalar("SELECT is_paused FROM dag WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(store.pool())
        .await
        .map_err(StoreError::from)?;
    let current = current.ok_or_else(|| ControlError::UnknownDag(dag_id.to_owned()))?;
    let Some(event) = commands::set_paused(dag_id, current, paused) else {
        return Ok(None);
    };
    let outcome = store
        .append(AppendBatch::new().push(event, &Metadata::actor(actor)))
        .await
        .map_err(ControlError::Append)?;
    Ok(outcome.events.into_iter().next())
}

/// Clears task instances of a run (with everything downstream if asked) so they run again.
pub async fn clear_tasks(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    task_ids: Vec<String>,
    downstream: bool,
    actor: &str,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = Command::Clear {
        task_ids,
        downstream,
    };
    Ok(submit(store, &Specs::default(), dag_id, run_id, command, actor).await?)
}

/// Marks a task instance successful or failed by hand.
pub async fn mark_task(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
    success: bool,
    actor: &str,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = Command::Mark {
        task_id: task_id.to_owned(),
        map_index,
        success,
    };
    Ok(submit(store, &Specs::default(), dag_id, run_id, command, actor).await?)
}

/// Cancels a queued or running try: it fails without retries and its agent is stopped (the
/// reactor terminates it at the executor; an agent it does not know learns it from its next
/// heartbeat). Refused when the task instance is not in flight.
pub async fn cancel_task(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
    actor: &str,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = Command::Cancel {
        task_id: task_id.to_owned(),
        map_index,
    };
    Ok(submit(store, &Specs::default(), dag_id, run_id, command, actor).await?)
}
