//! The runs the timetables ask for, and starting queued runs within `max_active_runs`.

use super::*;

/// The schedule of a DAG version's document (`None`, with a message, when it cannot be read)
/// and its tasks.
pub(super) async fn load_version(
    store: &EventStore,
    document_hash: &str,
) -> (Option<Schedule>, Vec<String>) {
    let document = match store.get_blob(document_hash).await {
        Ok(Some(blob)) => serde_json::from_str::<serde_json::Value>(&blob.content).ok(),
        _ => None,
    };
    let Some(document) = document else {
        return (None, Vec::new());
    };
    let task_ids = leoflow_core::spec::task_ids(&document);
    // Documents without a schedule (hand-built ones in tests) are only triggered by hand.
    if document.get("schedule").is_none() {
        return (None, task_ids);
    }
    match Schedule::from_dag_json(&document) {
        Ok(schedule) => (Some(schedule), task_ids),
        Err(error) => {
            tracing::error!("DAG {} cannot be scheduled: {error}", document["dag_id"]);
            (None, task_ids)
        }
    }
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
            for _ in 0..100 {
                let Some(run) = schedule.next_run(dag.last_scheduled.as_ref(), now) else {
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
                };
                // Each run id once per generation: a run of the DAG before it was deleted does
                // not count (the re-added DAG runs its slots again, as in Airflow).
                let generation = self.generations.get(dag_id).copied().unwrap_or(0);
                // The run is the DAG's tenant's: so is the event that queues it.
                let actor = Metadata {
                    tenant: Some(dag.tenant.clone()),
                    ..Metadata::actor("scheduler")
                };
                // A timetable's run starts its own trace, as an API request does.
                let timer = tracing::info_span!(
                    parent: None,
                    "timetable",
                    dag_id = %dag_id,
                    run_id = %queued.run_id,
                    trace_id = tracing::field::Empty,
                );
                leoflow_telemetry::record_trace_id(&timer);
                let queued = queue_run(&self.store, queued, &actor, generation, Some(self.epoch));
                match queued.instrument(timer).await {
                    Err(QueueError::Deposed { .. }) => {
                        self.deposed.store(true, Ordering::Relaxed);
                        break;
                    }
                    // Deleted meanwhile: the DAG's entry goes when the delete is folded.
                    Err(QueueError::DagDeleted(_)) => break,
                    // `Exists`: created before a restart.
                    Ok(_) | Err(QueueError::Exists(_)) => dag.last_scheduled = Some(run),
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
