//! Folding the log into the reactor's model: DAGs and their versions, runs and their states,
//! tries in flight.

use super::custom_timetables::CustomNext;
use super::scheduled::{Version, load_version};
use super::*;

impl Reactor {
    /// Folds one recorded event into the model.
    pub(super) async fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ReactorError> {
        let folded = self.fold(recorded).await;
        if recorded.position > self.live_from && self.last_live_event.is_none() {
            self.last_live_event = Some(recorded.recorded_at);
        }
        self.runs_held.store(self.runs.len(), Ordering::Relaxed);
        folded
    }

    pub(super) async fn fold(&mut self, recorded: &RecordedEvent) -> Result<(), ReactorError> {
        let event = match recorded.decode() {
            Ok(event) => event,
            Err(error) => {
                // `events replay` stops on such an event; the scheduler says so and carries on.
                tracing::error!(
                    position = recorded.position,
                    "event at position {} is unreadable: {error}",
                    recorded.position
                );
                return Ok(());
            }
        };
        match &event {
            Event::DagParsed(e) => self.dag_parsed(e).await,
            Event::DagDeleted(e) => self.dag_deleted(e, recorded),
            Event::DagPaused(e) => self.dags.entry(e.dag_id.clone()).or_default().paused = true,
            Event::DagUnpaused(e) => {
                let dag = self.dags.entry(e.dag_id.clone()).or_default();
                dag.paused = false;
                // A timetable of the project's own is asked again (as of now, for catchup=False).
                dag.custom_next = CustomNext::Unknown;
            }
            Event::PoolSet(e) => {
                self.pools
                    .insert((e.tenant.clone(), e.name.clone()), e.slots);
            }
            Event::PoolDeleted(e) => {
                self.pools.remove(&(e.tenant.clone(), e.name.clone()));
            }
            Event::RunQueued(e) => {
                self.asset_events_consumed(e);
                self.run_queued(e, recorded, &event).await
            }
            Event::AssetEventRecorded(e) => self.asset_event_recorded(e, recorded),
            Event::AssetQueueCleared(e) => self.asset_queue_cleared(e),
            Event::DagCallbackRequested(e) => self.dag_callback_requested(e),
            Event::DagCallbackRan(e) => self.dag_callback_ran(e),
            Event::TaskCallbackRequested(e) => self.task_callback_requested(e),
            Event::TaskCallbackRan(e) => self.task_callback_ran(e),
            Event::RunStarted(_)
            | Event::RunSucceeded(_)
            | Event::RunFailed(_)
            | Event::RunCleared(_)
            | Event::RunNoteSet(_)
            | Event::TaskScheduled(_)
            | Event::TaskQueued(_)
            | Event::TaskDispatched(_)
            | Event::TaskStarted(_)
            | Event::TaskSucceeded(_)
            | Event::TaskFailed(_)
            | Event::TaskUpForRetry(_)
            | Event::TaskDeferred(_)
            | Event::TaskRescheduled(_)
            | Event::TaskResumed(_)
            | Event::TaskSkipped(_)
            | Event::TaskUpstreamFailed(_)
            | Event::TaskCleared(_)
            | Event::TaskMapped(_)
            | Event::XComPushed(_)
            | Event::TaskRendered(_)
            | Event::CommandRejected(_) => return self.run_changed(recorded, &event).await,
            // Nothing the scheduler keeps: import errors, favorites, Variables and Connections
            // (tasks read them through the agent service), the leader's terms (the leader's
            // appends are fenced by the log, not by this model) and API tokens.
            Event::DagImportFailed(_)
            | Event::DagFavorited(_)
            | Event::DagUnfavorited(_)
            | Event::VariableSet(_)
            | Event::VariableDeleted(_)
            | Event::ConnectionSet(_)
            | Event::ConnectionDeleted(_)
            | Event::SchedulerElected(_)
            | Event::ApiTokenIssued(_)
            | Event::ApiTokenRevoked(_) => {}
        }
        Ok(())
    }

    async fn dag_parsed(&mut self, e: &DagParsed) {
        let dag = self
            .dags
            .entry(e.dag_id.clone())
            .or_insert_with(|| DagEntry {
                paused: e.is_paused_upon_creation,
                ..DagEntry::default()
            });
        // The projector refuses a `DagParsed` that moves a DAG to another tenant, so this only
        // changes for a DAG re-added after its delete (a new entry then anyway).
        dag.tenant = e.tenant.clone();
        dag.image = e.provenance.as_ref().and_then(|p| p.image.clone());
        dag.max_active_runs = e.max_active_runs.max(1) as usize;
        dag.version_hash = e.version_hash.clone();
        // A new version's timetable (of the project's own) is asked anew.
        dag.custom_next = CustomNext::Unknown;
        let version = match &e.document_hash {
            Some(hash) => load_version(&self.store, hash).await,
            None => Version::default(),
        };
        (
            dag.schedule,
            dag.task_ids,
            dag.asset_condition,
            dag.watchers,
        ) = (
            version.schedule,
            version.task_ids,
            version.asset_condition,
            version.watchers,
        );
        dag.max_active_tasks = e.max_active_tasks.max(1);
    }

    fn dag_deleted(&mut self, e: &DagDeleted, recorded: &RecordedEvent) {
        // Its runs go with it; nothing of them is scheduled any more, and the log
        // refuses their appends from here on (the generation moved).
        self.dags.remove(&e.dag_id);
        if recorded.stream == generation_stream(&e.dag_id) {
            self.generations
                .insert(e.dag_id.clone(), recorded.stream_version);
        }
        self.runs.retain(|(dag_id, _), _| dag_id != &e.dag_id);
        // Its callbacks too: the DAG file they would run is gone.
        self.callbacks.retain(|key, _| key.dag_id() != e.dag_id);
        self.specs.forget_dag(&e.dag_id);
        // Tries in flight are stopped: their agents' reports would be refused anyway,
        // and the work belongs to nobody now. (An agent the executor does not know of
        // learns it from its next heartbeat.)
        let deleted: Vec<TaskInstanceKey> = self
            .in_flight
            .keys()
            .filter(|ti| ti.dag_id == e.dag_id)
            .cloned()
            .collect();
        for ti in deleted {
            let flight = self.in_flight.remove(&ti).expect("listed");
            self.liveness.forget(&flight.attempt.digest);
            self.dispatcher
                .executor()
                .terminate(&flight.attempt, "its DAG was deleted");
        }
    }

    /// A new run: its DAG's last scheduled slot moves, and it joins the model.
    async fn run_queued(&mut self, e: &RunQueued, recorded: &RecordedEvent, event: &Event) {
        if e.run_type == RunType::Scheduled
            && let (Some(dag), Some(logical_date)) = (self.dags.get_mut(&e.dag_id), e.logical_date)
        {
            let info = RunInfo {
                logical_date,
                run_after: e.run_after,
                data_interval_start: e.data_interval_start.unwrap_or(logical_date),
                data_interval_end: e.data_interval_end.unwrap_or(logical_date),
            };
            if dag
                .last_scheduled
                .is_none_or(|last| last.logical_date < logical_date)
            {
                dag.last_scheduled = Some(info);
            }
        }
        let version = e.dag_version_hash.clone().unwrap_or_default();
        match self.specs.get(&self.store, &e.dag_id, &version).await {
            Ok(spec) => {
                let state = evolve(RunState::queued(&spec, &e.run_id), event);
                let key = (e.dag_id.clone(), e.run_id.clone());
                let run_after = e.run_after;
                self.runs.insert(
                    key,
                    RunEntry {
                        spec,
                        state,
                        run_after,
                        started_at: None,
                        trace: recorded.metadata.traceparent.clone(),
                    },
                );
            }
            Err(error) => tracing::error!(
                dag_id = %e.dag_id,
                run_id = %e.run_id,
                "run {}/{} cannot be scheduled: {error}",
                e.dag_id,
                e.run_id
            ),
        }
    }

    /// An event of a run after its `RunQueued`: tries in flight are tracked, the run's state
    /// evolves (and a finished run leaves the model), a cleared finished run comes back.
    async fn run_changed(
        &mut self,
        recorded: &RecordedEvent,
        event: &Event,
    ) -> Result<(), ReactorError> {
        self.track_in_flight(recorded, event);
        let key = match (event.dag_id(), event.run_id()) {
            (Some(dag), Some(run)) => (dag.to_owned(), run.to_owned()),
            _ => return Ok(()),
        };
        if recorded.position > self.live_from {
            self.observe(&key, recorded, event);
        }
        if let (Event::RunStarted(_), Some(run)) = (event, self.runs.get_mut(&key)) {
            run.started_at = Some(recorded.recorded_at);
        }
        if let Some(run) = self.runs.remove(&key) {
            let state = evolve(run.state, event);
            // A finished run needs nothing more from the scheduler, nor its cached
            // state from the deciders of this process.
            if state.status.is_finished() {
                self.specs.forget_run(&key.0, &key.1);
            } else {
                let trace = recorded.metadata.traceparent.clone().or(run.trace);
                self.runs.insert(
                    key,
                    RunEntry {
                        state,
                        trace,
                        ..run
                    },
                );
            }
        } else if matches!(event, Event::RunCleared(_)) {
            // A finished run cleared: it comes back, as the log has it up to here.
            self.reload_run(key.clone(), recorded.position).await?;
            if let Some(run) = self.runs.get_mut(&key) {
                run.trace = recorded.metadata.traceparent.clone();
            }
        }
        Ok(())
    }

    /// Counts what a live event tells the metrics, Airflow's way.
    pub(super) fn observe(
        &self,
        (dag_id, _): &(String, String),
        recorded: &RecordedEvent,
        event: &Event,
    ) {
        let metrics = &self.metrics;
        let seconds = |since: DateTime<Utc>| {
            (recorded.recorded_at - since).num_milliseconds().max(0) as f64 / 1000.0
        };
        let run = event
            .run_id()
            .and_then(|run_id| self.runs.get(&(dag_id.clone(), run_id.to_owned())));
        match event {
            Event::TaskStarted(_) => {
                metrics
                    .ti_starts
                    .get_or_create(&label("dag_id", dag_id))
                    .inc();
            }
            Event::TaskSucceeded(_) => {
                metrics.ti_successes.inc();
            }
            Event::TaskFailed(_) | Event::TaskUpForRetry(_) => {
                metrics.ti_failures.inc();
            }
            Event::RunStarted(_) => {
                if let Some(run) = run {
                    let delay = seconds(run.run_after);
                    metrics
                        .dagrun_schedule_delay
                        .get_or_create(&label("dag_id", dag_id))
                        .observe(delay);
                }
            }
            Event::RunSucceeded(_) | Event::RunFailed(_) => {
                if let Some(started) = run.and_then(|run| run.started_at) {
                    let outcome = if matches!(event, Event::RunSucceeded(_)) {
                        "success"
                    } else {
                        "failed"
                    };
                    let labels = vec![
                        ("dag_id".to_owned(), dag_id.clone()),
                        ("state".to_owned(), outcome.to_owned()),
                    ];
                    metrics
                        .dagrun_duration
                        .get_or_create(&labels)
                        .observe(seconds(started));
                }
            }
            _ => {}
        }
    }

    /// Folds a run's stream up to `position` into the model (a finished run that was dropped
    /// and is running again). Not the state at the head: the events after `position` are still
    /// to be applied, in order. A failed read is the reactor's failure (it steps down and
    /// rebuilds its model), never a run silently left out.
    #[tracing::instrument(skip_all, fields(dag_id = %key.0, run_id = %key.1))]
    async fn reload_run(
        &mut self,
        key: (String, String),
        position: i64,
    ) -> Result<(), ReactorError> {
        let (dag_id, run_id) = (&key.0, &key.1);
        let recorded = self
            .store
            .read_stream(&leoflow_events::catalog::run_stream(dag_id, run_id), 1)
            .await?;
        // An unreadable event was skipped (and reported) when it was applied; so it is here.
        let events: Vec<Event> = recorded
            .iter()
            .take_while(|e| e.position <= position)
            .filter_map(|e| e.decode().ok())
            .collect();
        // The stream's last run up to `position` (a run id starts again after its DAG was
        // deleted and re-added).
        let Some(start) = events
            .iter()
            .rposition(|e| matches!(e, Event::RunQueued(_)))
        else {
            tracing::error!("run {dag_id}/{run_id} has no RunQueued; not scheduled");
            return Ok(());
        };
        let events = &events[start..];
        let Event::RunQueued(queued) = &events[0] else {
            unreachable!("found as a RunQueued")
        };
        let version = queued.dag_version_hash.clone().unwrap_or_default();
        let run_after = queued.run_after;
        let spec = match self.specs.get(&self.store, dag_id, &version).await {
            Ok(spec) => spec,
            Err(error) => {
                tracing::error!("run {dag_id}/{run_id} cannot be scheduled: {error}");
                return Ok(());
            }
        };
        let state = events.iter().fold(RunState::queued(&spec, run_id), evolve);
        self.runs.insert(
            key,
            RunEntry {
                spec,
                state,
                run_after,
                started_at: None,
                trace: None,
            },
        );
        Ok(())
    }

    /// Keeps the set of tries in flight; stops at the executor a try that someone other than
    /// its agent ended (cancelled, marked, timed out, failed for silence).
    fn track_in_flight(&mut self, recorded: &RecordedEvent, event: &Event) {
        match event {
            Event::TaskDispatched(e) => {
                let execution_timeout = self
                    .runs
                    .get(&(e.ti.dag_id.clone(), e.ti.run_id.clone()))
                    .and_then(|run| run.spec.tasks.get(&e.ti.task_id))
                    .and_then(|task| task.execution_timeout);
                let attempt = AttemptKey {
                    ti: e.ti.clone(),
                    try_number: e.try_number,
                    digest: e.attempt_digest.clone(),
                };
                self.in_flight.insert(
                    e.ti.clone(),
                    InFlight {
                        attempt,
                        dispatched_at: recorded.recorded_at,
                        started_at: None,
                        execution_timeout,
                    },
                );
            }
            Event::TaskStarted(e) => {
                if let Some(flight) = self.in_flight.get_mut(&e.ti) {
                    flight.started_at = Some(recorded.recorded_at);
                }
            }
            Event::TaskSucceeded(_)
            | Event::TaskFailed(_)
            | Event::TaskUpForRetry(_)
            | Event::TaskDeferred(_)
            | Event::TaskRescheduled(_)
            | Event::TaskSkipped(_)
            | Event::TaskUpstreamFailed(_)
            | Event::TaskCleared(_) => {
                let ti = event.task_instance().expect("a task event");
                if let Some(flight) = self.in_flight.remove(ti) {
                    self.liveness.forget(&flight.attempt.digest);
                    if recorded.metadata.actor.as_deref() != Some("agent") {
                        self.dispatcher
                            .executor()
                            .terminate(&flight.attempt, recorded.event_type.as_str());
                    }
                }
            }
            // Nothing about a try handed to an executor: tries before their dispatch, mapping,
            // XComs, renderings, refused reports, and the events of runs, DAGs and config.
            Event::TaskScheduled(_)
            | Event::TaskResumed(_)
            | Event::TaskQueued(_)
            | Event::TaskMapped(_)
            | Event::XComPushed(_)
            | Event::TaskRendered(_)
            | Event::CommandRejected(_)
            | Event::RunQueued(_)
            | Event::RunStarted(_)
            | Event::RunSucceeded(_)
            | Event::RunFailed(_)
            | Event::RunCleared(_)
            | Event::RunNoteSet(_)
            | Event::DagParsed(_)
            | Event::DagImportFailed(_)
            | Event::DagPaused(_)
            | Event::DagUnpaused(_)
            | Event::DagDeleted(_)
            | Event::DagFavorited(_)
            | Event::DagUnfavorited(_)
            | Event::VariableSet(_)
            | Event::VariableDeleted(_)
            | Event::ConnectionSet(_)
            | Event::ConnectionDeleted(_)
            | Event::PoolSet(_)
            | Event::PoolDeleted(_)
            | Event::SchedulerElected(_)
            | Event::ApiTokenIssued(_)
            | Event::ApiTokenRevoked(_)
            | Event::AssetEventRecorded(_)
            | Event::AssetQueueCleared(_)
            | Event::DagCallbackRequested(_)
            | Event::DagCallbackRan(_)
            | Event::TaskCallbackRequested(_)
            | Event::TaskCallbackRan(_) => {}
        }
    }
}
