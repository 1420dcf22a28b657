//! The runs the timetables ask for, and starting queued runs within `max_active_runs`.

use super::*;
use leoflow_core::assets::AssetCondition;

/// What the scheduler reads of a DAG version's document.
#[derive(Default)]
pub(super) struct Version {
    /// Its timetable (`None` when triggered by hand only, or when it cannot be read).
    pub schedule: Option<Schedule>,
    /// Its tasks.
    pub task_ids: Vec<String>,
    /// The asset condition it is scheduled on, if any.
    pub asset_condition: Option<AssetCondition>,
    /// The watchers of the assets it is scheduled on.
    pub watchers: Vec<leoflow_core::assets::Watcher>,
}

/// A DAG version's document as the scheduler reads it; what cannot be read is left out, with
/// a message.
pub(super) async fn load_version(store: &EventStore, document_hash: &str) -> Version {
    let document = match store.get_blob(document_hash).await {
        Ok(Some(blob)) => serde_json::from_str::<serde_json::Value>(&blob.content).ok(),
        _ => None,
    };
    let Some(document) = document else {
        return Version::default();
    };
    let unschedulable = |error: &dyn std::fmt::Display| {
        tracing::error!("DAG {} cannot be scheduled: {error}", document["dag_id"]);
    };
    let asset_condition = leoflow_core::assets::condition_of(&document)
        .inspect_err(|e| unschedulable(e))
        .ok()
        .flatten();
    let watchers = leoflow_core::assets::watchers_of(&document)
        .inspect_err(|e| unschedulable(e))
        .unwrap_or_default();
    // Documents without a schedule (hand-built ones in tests) are only triggered by hand.
    let schedule = match document.get("schedule") {
        None => None,
        Some(_) => Schedule::from_dag_json(&document)
            .inspect_err(|e| unschedulable(e))
            .ok(),
    };
    Version {
        schedule,
        task_ids: leoflow_core::spec::task_ids(&document),
        asset_condition,
        watchers,
    }
}

/// Queues a run the scheduler decided on (`cause`: the span its trace starts with) for a DAG of
/// `tenant`, in generation `generation.0`, as leader of epoch `generation.1`.
pub(super) async fn queue_as_scheduler(
    store: &EventStore,
    (generation, epoch): (i64, i64),
    tenant: &str,
    queued: RunQueued,
    cause: &'static str,
) -> Result<RecordedEvent, QueueError> {
    // The run is the DAG's tenant's: so is the event that queues it.
    let actor = Metadata {
        tenant: Some(tenant.to_owned()),
        ..Metadata::actor("scheduler")
    };
    // A run the scheduler creates starts its own trace, as an API request does.
    let span = tracing::info_span!(
        parent: None,
        "queue_run",
        cause,
        dag_id = %queued.dag_id,
        run_id = %queued.run_id,
        trace_id = tracing::field::Empty,
    );
    leoflow_telemetry::record_trace_id(&span);
    // Each run id once per generation: a run of the DAG before it was deleted does not count
    // (a re-added DAG runs its slots again, as in Airflow).
    queue_run(store, queued, &actor, generation, Some(epoch))
        .instrument(span)
        .await
}

impl Reactor {
    /// Queues the runs the timetables say are due (all missed slots with catchup); returns the
    /// earliest future slot.
    pub(super) async fn create_scheduled_runs(
        &mut self,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut next_slot: Option<DateTime<Utc>> = None;
        for (dag_id, dag) in &mut self.dags {
            let Some(schedule) = &dag.schedule else {
                continue;
            };
            if dag.paused {
                continue;
            }
            // A bounded burst per wake-up; a long catchup continues on the next one.
            let custom = schedule.custom_class().is_some();
            for _ in 0..100 {
                // A timetable of the project's own gave its next run when asked (see
                // `custom_timetables`); it is asked again once that one is queued.
                let next = if custom {
                    dag.custom_next.run().copied()
                } else {
                    schedule.next_run(dag.last_scheduled.as_ref(), now)
                };
                let Some(run) = next else {
                    break;
                };
                if run.run_after > now {
                    next_slot = Some(next_slot.map_or(run.run_after, |n| n.min(run.run_after)));
                    break;
                }
                let queued = RunQueued {
                    dag_id: dag_id.clone(),
                    run_id: run.run_id(RunType::Scheduled.as_str()),
                    run_type: RunType::Scheduled,
                    logical_date: Some(run.logical_date),
                    data_interval_start: Some(run.data_interval_start),
                    data_interval_end: Some(run.data_interval_end),
                    run_after: run.run_after,
                    conf: serde_json::json!({}),
                    triggered_by: "timetable".to_owned(),
                    dag_version_hash: Some(dag.version_hash.clone()),
                    task_ids: dag.task_ids.clone(),
                    consumed_asset_events: Vec::new(),
                };
                let generation = self.generations.get(dag_id).copied().unwrap_or(0);
                let queued = queue_as_scheduler(
                    &self.store,
                    (generation, self.epoch),
                    &dag.tenant,
                    queued,
                    "timetable",
                );
                match queued.await {
                    Err(QueueError::Deposed { .. }) => {
                        self.deposed.store(true, Ordering::Relaxed);
                        break;
                    }
                    // Deleted meanwhile: the DAG's entry goes when the delete is folded.
                    Err(QueueError::DagDeleted(_)) => break,
                    // `Exists`: created before a restart.
                    Ok(_) | Err(QueueError::Exists(_)) => {
                        dag.last_scheduled = Some(run);
                        if custom {
                            dag.custom_next = super::custom_timetables::CustomNext::Unknown;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            dag_id = %dag_id,
                            "cannot queue {dag_id} {}: {error}",
                            run.run_id(RunType::Scheduled.as_str())
                        );
                        break;
                    }
                }
            }
        }
        next_slot
    }

    pub(super) async fn start_runs(&self, now: DateTime<Utc>) {
        let mut by_dag: BTreeMap<&str, (Vec<QueuedRun>, usize)> = BTreeMap::new();
        for ((dag_id, run_id), run) in &self.runs {
            let entry = by_dag.entry(dag_id.as_str()).or_default();
            match run.state.status {
                RunStatus::Queued => entry.0.push(QueuedRun {
                    run_id: run_id.clone(),
                    run_after: run.run_after,
                }),
                RunStatus::Running => entry.1 += 1,
                _ => {}
            }
        }
        for (dag_id, (queued, running)) in by_dag {
            let Some(dag) = self.dags.get(dag_id) else {
                continue;
            };
            for run in runs_to_start(&queued, running, dag.max_active_runs, dag.paused, now) {
                self.submit(dag_id, &run.run_id, Command::Start).await;
            }
        }
    }
}
