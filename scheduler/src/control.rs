//! What users ask of DAGs and runs (the API and the CLI call these): trigger, pause, unpause,
//! clear, mark, cancel. Each reads the current state, decides with the pure core, and appends
//! with the stream version it decided on. Run commands take the process's [`Specs`], so they
//! group-commit with the scheduler's own decisions (a fresh `Specs::default()` is correct too,
//! only slower).

use chrono::Utc;
use leoflow_events::catalog::generation_stream;
use leoflow_events::{
    Actor, AppendBatch, AppendError, EventStore, Metadata, RecordedEvent, StoreError,
    TaskInstanceKey,
};
use leoflow_projector::read;
use serde_json::Value;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::reactor::runs::{QueueError, generation_expectation, queue_run};

mod markers;
use leoflow_core::commands::{self, TriggerRejection, TriggerRequest};
pub use leoflow_core::run::ClearScope;
use leoflow_core::run::{Command, RunState, TiState};
use leoflow_core::spec::{self, DagSpec};
use leoflow_core::timetable::Schedule;
use leoflow_events::catalog::RunQueued;

/// What the API and the CLI hand to run commands and get back from them.
pub use crate::reactor::runs::{Specs, SubmitError};
/// Any core command decided on a run and appended (`submit`), and the same behind an agent's
/// fence (`submit_fenced`): what the commands below are made of, for tools and tests that
/// drive a run command by command.
pub use crate::reactor::runs::{submit, submit_fenced};

/// The pool a task runs in when it names none, and its slots until a `PoolSet` says otherwise
/// (Airflow's defaults).
pub const DEFAULT_POOL: &str = "default_pool";
pub use crate::reactor::DEFAULT_POOL_SLOTS;

/// The Airflow names of [`TiState::IN_FLIGHT`], to bind in SQL.
pub fn in_flight_names() -> Vec<&'static str> {
    TiState::IN_FLIGHT
        .iter()
        .map(|s| s.airflow_name())
        .collect()
}

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
#[tracing::instrument(name = "trigger_dag", skip_all, fields(dag_id = %dag_id, actor = %actor))]
pub async fn trigger_dag(
    store: &EventStore,
    dag_id: &str,
    request: TriggerRequest,
    actor: &Actor,
) -> Result<RecordedEvent, ControlError> {
    // The generation read with the DAG: a delete after this read refuses the run.
    let read::dags::TriggerTarget {
        latest_version_hash: version_hash,
        document_hash,
        generation,
    } = read::dags::trigger_target(store.pool(), dag_id, &generation_stream(dag_id))
        .await
        .map_err(StoreError::from)?
        .ok_or_else(|| ControlError::UnknownDag(dag_id.to_owned()))?;
    let document = match document_hash {
        Some(hash) => match store.get_blob(&hash).await? {
            Some(blob) => serde_json::from_str::<Value>(&blob.content).unwrap_or(Value::Null),
            None => Value::Null,
        },
        None => Value::Null,
    };
    let existing: Vec<String> = match &request.run_id {
        Some(run_id)
            if read::runs::exists(store.pool(), dag_id, run_id)
                .await
                .map_err(StoreError::from)? =>
        {
            vec![run_id.clone()]
        }
        _ => Vec::new(),
    };
    let event = commands::trigger(
        dag_id,
        &document["params"],
        &version_hash,
        &existing,
        request,
        Utc::now(),
    )?;
    // Two triggers racing for one run id cannot both win; a run id the DAG used before it
    // was deleted is free again.
    let leoflow_events::Event::RunQueued(mut event) = event else {
        unreachable!("a trigger is a RunQueued")
    };
    as_its_version_says(&mut event, &document);
    let metadata = Metadata::from(actor);
    match queue_run(store, event, &metadata, generation.unwrap_or(0), None).await {
        Ok(recorded) => Ok(recorded),
        Err(QueueError::Exists(stream)) => Err(ControlError::Conflict(stream)),
        Err(QueueError::DagDeleted(_)) => Err(ControlError::UnknownDag(dag_id.to_owned())),
        Err(QueueError::Store(error)) => Err(ControlError::Store(error)),
        Err(QueueError::Append(error)) => Err(ControlError::Append(error)),
        Err(QueueError::Deposed { .. }) => unreachable!("not queued as a leader"),
    }
}

/// What the DAG version a triggered run executes says of it: its tasks (the instances it starts
/// with) and, when it has a logical date, the data interval its timetable infers for it
/// (Airflow's `infer_manual_data_interval`: the interval before it for a data-interval
/// timetable, the instant itself for the default trigger timetables).
fn as_its_version_says(event: &mut RunQueued, document: &Value) {
    event.task_ids = spec::task_ids(document);
    let Some(at) = event.logical_date else {
        return;
    };
    if let Ok(schedule) = Schedule::from_dag_json(document) {
        let (start, end) = schedule.manual_interval(at);
        event.data_interval_start = Some(start);
        event.data_interval_end = Some(end);
    }
}

/// Pauses or unpauses a DAG; `None` when it already was.
#[tracing::instrument(name = "set_paused", skip_all, fields(dag_id = %dag_id, paused, actor = %actor))]
pub async fn set_paused(
    store: &EventStore,
    dag_id: &str,
    paused: bool,
    actor: &Actor,
) -> Result<Option<RecordedEvent>, ControlError> {
    let current = read::dags::is_paused(store.pool(), dag_id)
        .await
        .map_err(StoreError::from)?;
    let current = current.ok_or_else(|| ControlError::UnknownDag(dag_id.to_owned()))?;
    let Some(event) = commands::set_paused(dag_id, current, paused) else {
        return Ok(None);
    };
    let outcome = store
        .append(AppendBatch::new().push(event, &Metadata::from(actor)))
        .await
        .map_err(ControlError::Append)?;
    Ok(outcome.events.into_iter().next())
}

/// Clears task instances of a run (with everything downstream if asked) so they run again.
#[tracing::instrument(name = "clear_tasks", skip_all, fields(dag_id = %dag_id, run_id = %run_id, actor = %actor))]
pub async fn clear_tasks(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    task_ids: Vec<String>,
    downstream: bool,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let targets = task_ids.into_iter().map(|id| (id, None)).collect();
    clear_task_instances(store, specs, dag_id, run_id, targets, downstream, actor).await
}

/// Clears task instances of a run: each target is a whole task (`None`) or one map index of
/// it (Airflow's `[task_id, map_index]`); with `downstream`, every task downstream of a
/// target is cleared whole.
#[tracing::instrument(name = "clear_task_instances", skip_all, fields(dag_id = %dag_id, run_id = %run_id, actor = %actor))]
pub async fn clear_task_instances(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    targets: Vec<(String, Option<i32>)>,
    downstream: bool,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = ClearTargets::of(targets).command(downstream);
    let recorded = submit(store, specs, dag_id, run_id, command, actor).await?;
    // As Airflow, a cleared ExternalTaskMarker clears what it marks.
    markers::clear_marked(store, specs, (dag_id, run_id), &recorded, actor, None).await;
    Ok(recorded)
}

/// The targets of a clear as the core's `Clear` command takes them.
struct ClearTargets {
    task_ids: Vec<String>,
    only_map_indexes: BTreeMap<String, BTreeSet<i32>>,
}

impl ClearTargets {
    fn of(targets: Vec<(String, Option<i32>)>) -> Self {
        let mut task_ids = Vec::new();
        let mut whole = BTreeSet::new();
        let mut only_map_indexes: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for (task_id, map_index) in targets {
            match map_index {
                Some(index) => {
                    only_map_indexes
                        .entry(task_id.clone())
                        .or_default()
                        .insert(index);
                }
                None => {
                    whole.insert(task_id.clone());
                }
            }
            if !task_ids.contains(&task_id) {
                task_ids.push(task_id);
            }
        }
        // A task named whole and by index is cleared whole.
        only_map_indexes.retain(|task_id, _| !whole.contains(task_id));
        Self {
            task_ids,
            only_map_indexes,
        }
    }

    fn command(self, downstream: bool) -> Command {
        Command::Clear {
            task_ids: self.task_ids,
            only_map_indexes: self.only_map_indexes,
            downstream,
        }
    }
}

/// What clearing `targets` of a run (with everything downstream when asked) would touch in that
/// run.
async fn clear_scope(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    targets: Vec<(String, Option<i32>)>,
    downstream: bool,
) -> Result<ClearScope, ControlError> {
    let run = run_state(store, specs, dag_id, run_id).await?;
    let targets = ClearTargets::of(targets);
    Ok(ClearScope::of(
        &run.spec,
        &targets.task_ids,
        &targets.only_map_indexes,
        downstream,
    ))
}

/// What clearing `targets` of a run (with everything downstream when asked) would touch, in
/// that run and, through the `ExternalTaskMarker`s it clears, in other DAGs' runs: each run and
/// its scope, the asked run first (the dry run of [`clear_task_instances`], as Airflow's lists
/// what markers would clear too).
pub async fn clear_scopes(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    targets: Vec<(String, Option<i32>)>,
    downstream: bool,
) -> Result<Vec<markers::RunScope>, ControlError> {
    let scope = clear_scope(store, specs, dag_id, run_id, targets, downstream).await?;
    let marked = markers::marked_scopes(store, specs, (dag_id, run_id), &scope, None).await;
    let mut scopes = vec![(dag_id.to_owned(), run_id.to_owned(), scope)];
    scopes.extend(marked);
    Ok(scopes)
}

/// A run as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct RunView {
    /// The DAG version the run executes.
    pub spec: Arc<DagSpec>,
    /// The run's state, folded from its stream.
    pub state: RunState,
}

/// Reads a run's state from its stream (through `specs`' cache), as the scheduler decides on
/// it: what the API's dependency view judges a task instance against.
pub async fn run_state(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
) -> Result<RunView, ControlError> {
    let run = crate::reactor::runs::load_run(store, specs, dag_id, run_id).await?;
    Ok(RunView {
        spec: run.spec,
        state: run.state,
    })
}

/// Marks a task instance successful or failed by hand.
#[tracing::instrument(name = "mark_task", skip_all, fields(dag_id = %ti.dag_id, run_id = %ti.run_id, task_id = %ti.task_id, success, actor = %actor))]
pub async fn mark_task(
    store: &EventStore,
    specs: &Specs,
    ti: &TaskInstanceKey,
    success: bool,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = Command::Mark {
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
        success,
    };
    Ok(submit(store, specs, &ti.dag_id, &ti.run_id, command, actor).await?)
}

/// Cancels a queued or running try: it fails without retries and its agent is stopped (the
/// reactor terminates it at the executor; an agent it does not know learns it from its next
/// heartbeat). Refused when the task instance is not in flight.
#[tracing::instrument(name = "cancel_task", skip_all, fields(dag_id = %ti.dag_id, run_id = %ti.run_id, task_id = %ti.task_id, actor = %actor))]
pub async fn cancel_task(
    store: &EventStore,
    specs: &Specs,
    ti: &TaskInstanceKey,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = Command::Cancel {
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
    };
    Ok(submit(store, specs, &ti.dag_id, &ti.run_id, command, actor).await?)
}

/// Marks a whole run successful or failed (Airflow's "mark run as …"); tries in flight are
/// stopped.
#[tracing::instrument(name = "mark_run", skip_all, fields(dag_id = %dag_id, run_id = %run_id, success, actor = %actor))]
pub async fn mark_run(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    success: bool,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let command = Command::MarkRun { success };
    Ok(submit(store, specs, dag_id, run_id, command, actor).await?)
}

/// Clears a run's task instances so they run again: every one, or only the failed ones (and
/// those their failure kept from running).
#[tracing::instrument(name = "clear_run", skip_all, fields(dag_id = %dag_id, run_id = %run_id, only_failed, actor = %actor))]
pub async fn clear_run(
    store: &EventStore,
    specs: &Specs,
    dag_id: &str,
    run_id: &str,
    only_failed: bool,
    actor: &Actor,
) -> Result<Vec<RecordedEvent>, ControlError> {
    let run = crate::reactor::runs::load_run(store, specs, dag_id, run_id).await?;
    let mut task_ids: Vec<String> = run
        .state
        .tis
        .iter()
        .filter(|(_, ti)| {
            !only_failed || matches!(ti.state, TiState::Failed | TiState::UpstreamFailed)
        })
        .map(|((task_id, _), _)| task_id.clone())
        .collect();
    task_ids.dedup();
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    clear_tasks(store, specs, dag_id, run_id, task_ids, false, actor).await
}

/// Sets (or with `None` removes) the note of a run.
#[tracing::instrument(name = "set_run_note", skip_all, fields(dag_id = %dag_id, run_id = %run_id, actor = %actor))]
pub async fn set_run_note(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    note: Option<String>,
    actor: &Actor,
) -> Result<RecordedEvent, ControlError> {
    let event = leoflow_events::catalog::RunNoteSet {
        dag_id: dag_id.to_owned(),
        run_id: run_id.to_owned(),
        note,
    };
    let outcome = store
        .append(AppendBatch::new().push(event, &Metadata::from(actor)))
        .await
        .map_err(ControlError::Append)?;
    Ok(outcome
        .events
        .into_iter()
        .next()
        .expect("one event appended"))
}

/// Why a DAG cannot be deleted now.
#[derive(Debug, thiserror::Error)]
#[error(
    "DAG {dag_id:?} has {running} task instance(s) queued or running; wait for them or mark them first"
)]
pub struct StillRunning {
    /// The DAG.
    pub dag_id: String,
    /// How many are in flight.
    pub running: i64,
}

/// Deletes a DAG with its runs from the read models (the log keeps its history). Refused while
/// any of its task instances is queued or running, as in Airflow.
///
/// That check reads the read models, so a try can still be dispatched between it and the
/// delete: the delete moves the DAG's generation, which every append to its runs expects, so
/// whatever was in flight is refused by the log from the delete on, and the scheduler stops
/// it at the executor (its agent, at its next heartbeat). The DAG's task logs go too, so a
/// re-added DAG's runs do not find the old runs' lines under their run ids.
#[tracing::instrument(name = "delete_dag", skip_all, fields(dag_id = %dag_id, actor = %actor))]
pub async fn delete_dag(
    store: &EventStore,
    dag_id: &str,
    actor: &Actor,
) -> Result<Result<RecordedEvent, StillRunning>, ControlError> {
    let generation = read::dags::generation(store.pool(), dag_id, &generation_stream(dag_id))
        .await
        .map_err(StoreError::from)?;
    let Some(generation) = generation else {
        return Err(ControlError::UnknownDag(dag_id.to_owned()));
    };
    let running = read::task_instances::count_in_states(store.pool(), dag_id, &in_flight_names())
        .await
        .map_err(StoreError::from)?;
    if running > 0 {
        return Ok(Err(StillRunning {
            dag_id: dag_id.to_owned(),
            running,
        }));
    }
    let event = leoflow_events::catalog::DagDeleted {
        dag_id: dag_id.to_owned(),
    };
    // At the generation read with the DAG: of two deletes racing, one wins.
    let batch = AppendBatch::new()
        .push(event, &Metadata::from(actor))
        .expect(
            generation_stream(dag_id),
            generation_expectation(generation.unwrap_or(0)),
        );
    let outcome = match store.append(batch).await {
        Ok(outcome) => outcome,
        Err(AppendError::Conflict { stream, .. }) => return Err(ControlError::Conflict(stream)),
        Err(other) => return Err(ControlError::Append(other)),
    };
    // Task logs are not in the log (nor replayed): they go with the DAG here. The DAG is
    // deleted already, so a failure here is reported but does not undo that.
    let logs = sqlx::query("DELETE FROM task_log WHERE dag_id = $1")
        .bind(dag_id)
        .execute(store.pool())
        .await;
    if let Err(error) = logs {
        tracing::warn!("the task logs of the deleted DAG {dag_id:?} remain: {error}");
    }
    Ok(Ok(outcome
        .events
        .into_iter()
        .next()
        .expect("one event appended")))
}

/// Stars or unstars a DAG for `actor` (their favourites are their subject's); `None` when it
/// already was.
pub async fn set_favorite(
    store: &EventStore,
    dag_id: &str,
    actor: &Actor,
    favorite: bool,
) -> Result<Option<RecordedEvent>, ControlError> {
    let username = actor.subject.as_str();
    let current = read::favorites::of_existing_dag(store.pool(), dag_id, username)
        .await
        .map_err(StoreError::from)?;
    let current = current.ok_or_else(|| ControlError::UnknownDag(dag_id.to_owned()))?;
    if current == favorite {
        return Ok(None);
    }
    let (dag_id, username) = (dag_id.to_owned(), username.to_owned());
    let batch = if favorite {
        AppendBatch::new().push(
            leoflow_events::catalog::DagFavorited { dag_id, username },
            &Metadata::from(actor),
        )
    } else {
        AppendBatch::new().push(
            leoflow_events::catalog::DagUnfavorited { dag_id, username },
            &Metadata::from(actor),
        )
    };
    let outcome = store.append(batch).await.map_err(ControlError::Append)?;
    Ok(outcome.events.into_iter().next())
}
