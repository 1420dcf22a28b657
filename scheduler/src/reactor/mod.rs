//! The reactor: the scheduler's I/O shell around the pure core.
//!
//! It follows the event log from position 1 (so a restart rebuilds everything from the log),
//! keeps each dag run's state by folding its events, and after every batch of new events does
//! what has become possible: queue the runs the timetables say are due, start queued runs
//! (unpaused DAG, `max_active_runs`), queue scheduled task instances that fit their pool and
//! `max_active_tasks`, hand queued tries to the dispatcher with a fresh attempt token, and fire
//! due retries. It supervises tries in flight: one whose agent stays silent past its heartbeat
//! deadline, or whose agent process ended without a report, is failed (and retried by
//! policy); one still running past its `execution_timeout` (plus a grace for the agent to stop
//! it itself) is timed out; one an earlier scheduler dispatched that never started (that
//! scheduler died before its agent ran) is dispatched again under a new token, costing no try;
//! one that ends by someone else's hand (cancelled, marked) is stopped at the executor. It never scans for work on a timer: it wakes on new events, on
//! agent exits and on its own earliest deadline.
//!
//! Every decision goes through [`runs::submit`], which re-reads the run's stream and appends
//! with the stream version it decided on, so a stale model can waste a round trip but never
//! apply a wrong transition.

mod dispatch;
// Public only while the API still reaches into it (`load_run`) and the reactor tests and the
// decision-latency benchmark submit commands through it; the rest of Leoflow uses the
// re-exports below.
pub(crate) mod runs;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use leoflow_core::admission::{Candidate, Capacity, QueuedRun, admit, runs_to_start};
use leoflow_core::run::{Command, Outcome, RunState, RunStatus, TiState, evolve};
use leoflow_core::spec::{DagSpec, TaskSpec};
use leoflow_core::timetable::{RunInfo, Schedule};
use leoflow_events::catalog::{
    DagDeleted, DagParsed, RunQueued, SchedulerElected, generation_stream, owned_stream,
};
use leoflow_events::{
    AppendBatch, AppendError, AttemptDigest, DEFAULT_TENANT, Event, EventStore, Metadata,
    RecordedEvent, RunType, StoreError, TaskInstanceKey,
};
use leoflow_projector::read;
use leoflow_projector::read::runs::PastInstance;
use sqlx::PgConnection;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use uuid::Uuid;

pub use dispatch::BufferedDispatcher;
pub use leoflow_executors::{Attempt, AttemptExit, AttemptKey, Executor, Placement, Room};
pub use runs::{Specs, SubmitError};

use crate::control::DEFAULT_POOL;
use crate::liveness::Liveness;
use crate::metrics::{Labels, SchedulerMetrics, label};
use crate::task_logs;

use runs::{QueueError, queue_run, submit_as_leader};

/// Key of the session advisory lock the active scheduler holds.
pub const SCHEDULER_LOCK_KEY: i64 = 0x4c45_4f46_5343_4844; // "LEOFSCHD"

/// How often a standby scheduler tries to take the leader lock.
const STANDBY_POLL: Duration = Duration::from_millis(500);

/// The least a scheduler that lost its lead waits before trying to lead again: two standby
/// polls, so a standby that can lead does.
const STANDBY_PRECEDENCE: Duration = Duration::from_millis(1000);

/// Slots of a tenant's `default_pool` until a `PoolSet` of it says otherwise (Airflow's
/// default).
pub const DEFAULT_POOL_SLOTS: i32 = 128;

/// A pool as a tenant owns it: (tenant, pool name). Tenants own their pools, so two tenants'
/// pools of one name are two pools, each with its own slots.
type PoolKey = (String, String);

/// How the reactor supervises tries in flight.
#[derive(Debug, Clone)]
pub struct Supervision {
    /// How long an in-flight try may go without a sign of life from its agent before it is
    /// failed (and retried by policy). Counted from the later of its dispatch and this
    /// scheduler's start, so agents get the full time to reconnect after a restart.
    pub heartbeat_timeout: Duration,
    /// How long a dispatched try may wait for its agent's first sign of life, when longer than
    /// `heartbeat_timeout`: a pod may wait for a node and pull its image for minutes.
    pub start_timeout: Duration,
    /// How long past its `execution_timeout` a try may run before the reactor times it out
    /// itself (the agent normally does it first).
    pub timeout_grace: Duration,
    /// How often the leader records its heartbeat (and so checks its lock connection).
    pub scheduler_heartbeat: Duration,
}

impl Default for Supervision {
    fn default() -> Self {
        Self {
            heartbeat_timeout: Duration::from_secs(60),
            // No longer than `heartbeat_timeout` unless an executor needs it.
            start_timeout: Duration::ZERO,
            timeout_grace: Duration::from_secs(5),
            scheduler_heartbeat: Duration::from_secs(5),
        }
    }
}

/// A try handed to an executor and not finished yet, as the log says.
struct InFlight {
    attempt: AttemptKey,
    dispatched_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    execution_timeout: Option<f64>,
}

/// What a task instance's timer does when it fires.
enum Timer {
    /// Schedules the next try.
    Retry,
    /// Resumes the try, with the trigger's event (none for a rescheduled sensor).
    Resume(Option<serde_json::Value>),
    /// Fails a deferral that waited past its timeout.
    DeferralTimeout,
    /// Ends the task, successful, at its time trigger (`end_from_trigger`).
    EndFromTrigger,
}

impl Timer {
    /// The command of this timer of try `try_number` of an instance, due at `due`, at `now`.
    fn command(
        self,
        task_id: String,
        map_index: i32,
        try_number: i32,
        due: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Command {
        match self {
            Timer::Retry => Command::RetryDue {
                task_id,
                map_index,
                try_number,
                at: now,
            },
            Timer::Resume(trigger_event) => Command::Resume {
                task_id,
                map_index,
                try_number,
                trigger_event,
                at: now,
            },
            Timer::EndFromTrigger => Command::EndFromTrigger {
                task_id,
                map_index,
                try_number,
                at: now,
            },
            Timer::DeferralTimeout => Command::DeferralFailed {
                task_id,
                map_index,
                try_number,
                reason: format!(
                    "TaskDeferralTimeout: the trigger did not fire before the deferral's timeout, {}",
                    due.to_rfc3339()
                ),
            },
        }
    }
}

/// When `ti`'s timer fires, and what it does then; `None` when it waits for no time.
fn timer_of(ti: &leoflow_core::run::TaskInstance) -> Option<(DateTime<Utc>, Timer)> {
    match (ti.state, ti.due_at, ti.timeout_at) {
        (TiState::UpForRetry, Some(due), _) => Some((due, Timer::Retry)),
        (TiState::UpForReschedule, Some(due), _) => Some((due, Timer::Resume(None))),
        (TiState::Deferred, due, Some(timeout)) if due.is_none_or(|due| timeout < due) => {
            Some((timeout, Timer::DeferralTimeout))
        }
        (TiState::Deferred, Some(moment), _) if ti.ends_at_due => {
            Some((moment, Timer::EndFromTrigger))
        }
        // A time trigger's event is its moment, as Airflow's `DateTimeTrigger` yields it.
        (TiState::Deferred, Some(moment), _) => {
            Some((moment, Timer::Resume(Some(airflow_datetime(moment)))))
        }
        _ => None,
    }
}

/// A datetime as Airflow serialises one in a trigger's event (`BaseSerialization`: seconds
/// since the epoch).
fn airflow_datetime(at: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({"__type": "datetime", "__var": at.timestamp_micros() as f64 / 1e6})
}

/// What a supervision deadline found.
#[derive(Debug, Clone, Copy)]
enum Due {
    /// A started try's agent went silent.
    Silent,
    /// A try's agent never gave a sign of life within the start timeout.
    NeverStarted,
    /// A try ran past its `execution_timeout`.
    TimedOut,
    /// A try an earlier scheduler dispatched never started.
    Lost,
}

/// Why the reactor stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Postgres failed.
    #[error("scheduler database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The connection holding the leader lock failed, so the lock is gone.
    #[error("the leader lock's connection failed: {0}")]
    LeadershipLost(sqlx::Error),
    /// Recording the election failed.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Another scheduler was elected after this one: the log refused this one's decisions.
    #[error("another scheduler was elected after leader epoch {0}")]
    Deposed(i64),
}

struct RunEntry {
    spec: Arc<DagSpec>,
    state: RunState,
    run_after: DateTime<Utc>,
    /// When the log recorded the run's start, once this scheduler saw it.
    started_at: Option<DateTime<Utc>>,
    /// The trace context of the run's latest event: the next decision about the run joins it.
    trace: Option<String>,
}

struct DagEntry {
    /// The tenant that owns the DAG (its latest `DagParsed`'s): its tasks take slots from this
    /// tenant's pools, and what the scheduler appends for its runs is recorded in it.
    tenant: String,
    /// The task image of its latest pushed artifact, if that names one.
    image: Option<String>,
    paused: bool,
    max_active_runs: usize,
    max_active_tasks: i32,
    /// The latest version's hash, schedule and tasks (the instances its runs start with).
    version_hash: String,
    schedule: Option<Schedule>,
    task_ids: Vec<String>,
    /// The latest run the timetable created.
    last_scheduled: Option<RunInfo>,
}

impl Default for DagEntry {
    fn default() -> Self {
        Self {
            // Until its `DagParsed` says otherwise; what was recorded before tenants existed is
            // the default tenant's.
            tenant: DEFAULT_TENANT.to_owned(),
            image: None,
            paused: false,
            max_active_runs: 0,
            max_active_tasks: 0,
            version_hash: String::new(),
            schedule: None,
            task_ids: Vec::new(),
            last_scheduled: None,
        }
    }
}

/// The scheduler's event loop.
pub struct Reactor {
    store: EventStore,
    specs: Specs,
    dispatcher: BufferedDispatcher,
    liveness: Liveness,
    supervision: Supervision,
    exits: Option<mpsc::UnboundedReceiver<AttemptExit>>,
    started_at: DateTime<Utc>,
    dags: HashMap<String, DagEntry>,
    /// Each deleted DAG's generation (the version of its generation stream; 0 when never
    /// deleted): the runs the timetable queues belong to it.
    generations: HashMap<String, i64>,
    /// The unfinished runs: a run leaves when it ends, so the model (and every pass over it)
    /// grows with the work in progress, not with history.
    runs: BTreeMap<(String, String), RunEntry>,
    /// `runs.len()`, readable from outside while the reactor runs.
    runs_held: Arc<AtomicUsize>,
    /// The slots of the pools a `PoolSet` recorded, by tenant and name. A tenant's
    /// `default_pool` is not here until one does (see [`Reactor::pool_slots`]).
    pools: BTreeMap<PoolKey, i32>,
    in_flight: HashMap<TaskInstanceKey, InFlight>,
    /// The epoch of this scheduler's current term (0 while it does not lead): every decision
    /// expects the leader stream still at it.
    epoch: i64,
    /// Set when the log refused a decision because a newer leader was elected.
    deposed: AtomicBool,
    /// Whether this reactor leads now (the janitor and the metrics follow it).
    leading: watch::Sender<bool>,
    /// The log's head when this term began: events after it happened while this one led, and
    /// only those are counted in the metrics.
    live_from: i64,
    /// What this scheduler tells Prometheus.
    metrics: SchedulerMetrics,
    /// When the oldest live event applied since the last pass over the model was appended.
    last_live_event: Option<DateTime<Utc>>,
}

impl Reactor {
    /// A reactor over `store` handing tries to `executor` serially, on its own loop (Lite's
    /// buffer 0; see [`Reactor::with_dispatcher`] for a bounded pool).
    pub fn new(store: EventStore, executor: Arc<dyn Executor>) -> Self {
        let metrics = SchedulerMetrics::default();
        Self {
            store,
            specs: Specs::default(),
            dispatcher: BufferedDispatcher::serial(executor),
            liveness: Liveness::default(),
            supervision: Supervision::default(),
            exits: None,
            started_at: Utc::now(),
            dags: HashMap::new(),
            generations: HashMap::new(),
            runs: BTreeMap::new(),
            runs_held: metrics.runs_held.clone(),
            pools: BTreeMap::new(),
            in_flight: HashMap::new(),
            epoch: 0,
            deposed: AtomicBool::new(false),
            leading: watch::channel(false).0,
            live_from: i64::MAX,
            metrics,
            last_live_event: None,
        }
    }

    /// Dispatches through `dispatcher` instead (Pro: a bounded queue and workers).
    pub fn with_dispatcher(mut self, dispatcher: BufferedDispatcher) -> Self {
        self.dispatcher = dispatcher;
        self
    }

    /// Supervises tries with these deadlines.
    pub fn with_supervision(mut self, supervision: Supervision) -> Self {
        self.supervision = supervision;
        self
    }

    /// Keeps signs of life in `liveness` (shared through Postgres, so another process's
    /// agents count after a change of leader).
    pub fn with_liveness(mut self, liveness: Liveness) -> Self {
        self.metrics.liveness = Some(liveness.clone());
        self.liveness = liveness;
        self
    }

    /// Learns of agent processes that ended from `exits` (the executor's side of the channel).
    pub fn with_exits(mut self, exits: mpsc::UnboundedReceiver<AttemptExit>) -> Self {
        self.exits = Some(exits);
        self
    }

    /// The DAG versions and run states this reactor has loaded (shared with the agent service).
    pub fn specs(&self) -> Specs {
        self.specs.clone()
    }

    /// The metrics this reactor keeps.
    pub fn metrics(&self) -> SchedulerMetrics {
        self.metrics.clone()
    }

    /// Whether this reactor leads, now and as it changes.
    pub fn leading(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    /// How many runs the reactor's model holds: the unfinished ones.
    pub fn runs_held(&self) -> Arc<AtomicUsize> {
        self.runs_held.clone()
    }

    /// Signs of life of tries in flight (the agent service records them).
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    /// Waits to become the one active scheduler, then runs until `shutdown` turns true.
    ///
    /// It never stops on its own for a failure it can outlive: a lost database connection, a
    /// lost leader lock or a failed read is logged, leadership is given up (the lock
    /// connection is dropped), and after a backoff it waits for the lock again and rebuilds
    /// its model from the log. Only a corrupt log ends it with the error (the process must
    /// stop: nothing it decides could be trusted).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), ReactorError> {
        let mut failures = 0u32;
        loop {
            let term = std::time::Instant::now();
            let outcome = self.lead_and_react(&mut shutdown).await;
            self.leading.send_replace(false);
            self.metrics.leader.set(0);
            self.live_from = i64::MAX;
            let error = match outcome {
                Ok(()) => return Ok(()),
                Err(error @ ReactorError::Store(StoreError::Corrupt { .. })) => return Err(error),
                Err(error) => error,
            };
            failures = failures_after(failures, term.elapsed());
            // A scheduler that lost its lead waits out a standby's poll: a healthy standby
            // takes over first, not the replica whose database connection just failed.
            let led = self.epoch != 0;
            let delay = if led {
                recovery_delay(failures).max(STANDBY_PRECEDENCE)
            } else {
                recovery_delay(failures)
            };
            tracing::warn!(
                "{error}; stepped down, trying again in {} ms",
                delay.as_millis()
            );
            self.forget_model();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return Ok(()),
            }
            if *shutdown.borrow() {
                return Ok(());
            }
        }
    }

    /// One term as leader: takes the lock, follows the log and acts until shut down or until
    /// something fails.
    async fn lead_and_react(
        &mut self,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ReactorError> {
        let Some(mut leadership) = lead(&self.store, shutdown).await? else {
            return Ok(());
        };
        self.epoch = leadership.epoch;
        self.leading.send_replace(true);
        self.metrics.leader.set(1);
        self.live_from = self.store.head().await?;
        self.deposed.store(false, Ordering::Relaxed);
        self.started_at = Utc::now();
        leadership.beat().await?;
        self.metrics.heartbeats.inc();
        let mut heartbeat = tokio::time::interval(self.supervision.scheduler_heartbeat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.reset();
        let mut subscription = self.store.subscribe(1).await?;
        let mut exits = self.exits.take();
        let room = self.dispatcher.room();
        let result = loop {
            if let Err(error) = self.react_once(&mut subscription).await {
                break Err(error);
            }
            let next_timer = self.act().await;
            if let Some(appended) = self.last_live_event.take() {
                let latency = (Utc::now() - appended).num_microseconds().unwrap_or(0);
                self.metrics
                    .decision_latency
                    .observe(latency.max(0) as f64 / 1e6);
            }
            if self.deposed.load(Ordering::Relaxed) {
                break Err(ReactorError::Deposed(self.epoch));
            }
            let wait = next_timer
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                event = subscription.next() => match event {
                    Ok(event) => if let Err(error) = self.apply(&event).await {
                        break Err(error);
                    },
                    Err(error) => break Err(error.into()),
                },
                Some(exit) = next_exit(&mut exits) => self.agent_exited(exit).await,
                _ = heartbeat.tick() => {
                    if let Err(error) = leadership.beat().await {
                        break Err(error);
                    }
                    self.metrics.heartbeats.inc();
                }
                _ = room.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => break Ok(()),
            }
            if *shutdown.borrow() {
                break Ok(());
            }
        };
        self.exits = exits;
        // A stop for good — asked for, or a corrupt log that ends the process — gives the lock
        // and the heartbeat up, so health says at once that no scheduler is active.
        if matches!(
            result,
            Ok(()) | Err(ReactorError::Store(StoreError::Corrupt { .. }))
        ) {
            leadership.resign().await;
        }
        result
    }

    /// Applies every event already in the log past the model.
    async fn react_once(
        &mut self,
        subscription: &mut leoflow_events::Subscription,
    ) -> Result<(), ReactorError> {
        while let Some(event) = subscription.try_next().await? {
            self.apply(&event).await?;
        }
        Ok(())
    }

    /// Drops what the model holds, so the next term rebuilds it from the log.
    fn forget_model(&mut self) {
        self.epoch = 0;
        self.dags.clear();
        self.generations.clear();
        self.runs.clear();
        self.runs_held.store(0, Ordering::Relaxed);
        self.pools.clear();
        self.in_flight.clear();
    }

    /// Folds one recorded event into the model.
    async fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ReactorError> {
        let folded = self.fold(recorded).await;
        if recorded.position > self.live_from && self.last_live_event.is_none() {
            self.last_live_event = Some(recorded.recorded_at);
        }
        self.runs_held.store(self.runs.len(), Ordering::Relaxed);
        folded
    }

    async fn fold(&mut self, recorded: &RecordedEvent) -> Result<(), ReactorError> {
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
            Event::DagUnpaused(e) => self.dags.entry(e.dag_id.clone()).or_default().paused = false,
            Event::PoolSet(e) => {
                self.pools
                    .insert((e.tenant.clone(), e.name.clone()), e.slots);
            }
            Event::PoolDeleted(e) => {
                self.pools.remove(&(e.tenant.clone(), e.name.clone()));
            }
            Event::RunQueued(e) => self.run_queued(e, recorded, &event).await,
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
        (dag.schedule, dag.task_ids) = match &e.document_hash {
            Some(hash) => load_version(&self.store, hash).await,
            None => (None, Vec::new()),
        };
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
    fn observe(&self, (dag_id, _): &(String, String), recorded: &RecordedEvent, event: &Event) {
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
            | Event::ApiTokenRevoked(_) => {}
        }
    }

    /// Does whatever has become possible; returns the earliest future deadline.
    async fn act(&mut self) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let next_slot = self.create_scheduled_runs(now).await;
        self.start_runs(now).await;
        self.queue_admitted().await;
        self.dispatch_queued().await;
        let next_retry = self.fire_timers(now).await;
        let next_deadline = self.supervise(now).await;
        let running = self
            .in_flight
            .values()
            .filter(|flight| flight.started_at.is_some())
            .count();
        self.metrics.executor_running.set(running as i64);
        self.metrics
            .executor_queued
            .set((self.in_flight.len() - running) as i64);
        [next_slot, next_retry, next_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fails tries whose agents went silent, times out tries past their limit and hands out
    /// again tries an earlier scheduler dispatched that never started; returns the earliest
    /// future deadline.
    async fn supervise(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let silence = chrono::Duration::from_std(self.supervision.heartbeat_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let start_silence = chrono::Duration::from_std(self.supervision.start_timeout)
            .unwrap_or(chrono::Duration::MAX)
            .max(silence);
        let grace = chrono::Duration::from_std(self.supervision.timeout_grace).unwrap_or_default();
        let mut due = Vec::new();
        let mut next: Option<DateTime<Utc>> = None;
        for flight in self.in_flight.values() {
            let seen = self
                .liveness
                .last_seen(&flight.attempt.digest)
                .map(|at| now - chrono::Duration::from_std(at.elapsed()).unwrap_or_default());
            let alive_since = [Some(flight.dispatched_at), Some(self.started_at), seen]
                .into_iter()
                .flatten()
                .max()
                .expect("not empty");
            // Never started, dispatched before this scheduler began, and no agent came forward:
            // the dispatch died with the scheduler that made it (before or in the executor).
            let lost = flight.started_at.is_none() && flight.dispatched_at < self.started_at;
            let never_heard = flight.started_at.is_none() && seen.is_none();
            let silent = match (lost, never_heard) {
                (true, _) => Due::Lost,
                (false, true) => Due::NeverStarted,
                (false, false) => Due::Silent,
            };
            let quiet_for = if never_heard { start_silence } else { silence };
            let mut deadlines = vec![(alive_since + quiet_for, silent)];
            if let (Some(started), Some(limit)) = (flight.started_at, flight.execution_timeout) {
                let limit = chrono::Duration::milliseconds((limit * 1000.0) as i64);
                deadlines.push((started + limit + grace, Due::TimedOut));
            }
            for (deadline, kind) in deadlines {
                if deadline <= now {
                    due.push((flight.attempt.clone(), kind));
                    break;
                }
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        let due = self
            .unless_heard_elsewhere(due, now, silence, &mut next)
            .await;
        for (attempt, kind) in due {
            let settled = match kind {
                Due::Lost => self.dispatch_again(&attempt).await,
                Due::TimedOut => self.end_attempt(&attempt, None).await,
                Due::Silent => {
                    let reason = format!(
                        "no sign of life from the task agent for {} s: the agent, its task or its host stopped",
                        self.supervision.heartbeat_timeout.as_secs()
                    );
                    self.end_attempt(&attempt, Some(reason)).await
                }
                Due::NeverStarted => {
                    let waited = self
                        .supervision
                        .start_timeout
                        .max(self.supervision.heartbeat_timeout);
                    let reason = format!(
                        "the task agent never started: no sign of life within {} s of the \
                         dispatch (its process or pod could not start)",
                        waited.as_secs()
                    );
                    self.end_attempt(&attempt, Some(reason)).await
                }
            };
            if settled {
                self.in_flight.remove(&attempt.ti);
            }
        }
        next
    }

    /// Keeps from `due` the tries this process thinks silent that no process heard from within
    /// `silence` either (agents heartbeat to the process they know, which after a change of
    /// leader may be another one); a try heard elsewhere is due again `silence` after that.
    async fn unless_heard_elsewhere(
        &self,
        due: Vec<(AttemptKey, Due)>,
        now: DateTime<Utc>,
        silence: chrono::Duration,
        next: &mut Option<DateTime<Utc>>,
    ) -> Vec<(AttemptKey, Due)> {
        let quiet: Vec<&AttemptDigest> = due
            .iter()
            .filter(|(_, kind)| !matches!(kind, Due::TimedOut))
            .map(|(attempt, _)| &attempt.digest)
            .collect();
        if quiet.is_empty() {
            return due;
        }
        let seen = match self.liveness.seen_anywhere(&quiet).await {
            Ok(seen) => seen,
            Err(error) => {
                // Failing tries on this process's memory alone could fail live ones: wait.
                tracing::warn!("cannot read the agents' signs of life: {error}");
                let retry = now + chrono::Duration::seconds(1);
                *next = Some(next.map_or(retry, |n| n.min(retry)));
                return due
                    .into_iter()
                    .filter(|(_, kind)| matches!(kind, Due::TimedOut))
                    .collect();
            }
        };
        due.into_iter()
            .filter(|(attempt, kind)| {
                let heard = seen.get(&attempt.digest).map(|at| *at + silence);
                match heard {
                    Some(deadline) if deadline > now && !matches!(kind, Due::TimedOut) => {
                        *next = Some(next.map_or(deadline, |n| n.min(deadline)));
                        false
                    }
                    _ => true,
                }
            })
            .collect()
    }

    /// Hands a lost dispatch out again under a new token (the same try: nothing ran). Returns
    /// whether it was; if not (the try started after all, ended, or the database failed), the
    /// log's next events settle it or the next wake tries again.
    #[tracing::instrument(skip_all, fields(
        dag_id = %lost.ti.dag_id,
        run_id = %lost.ti.run_id,
        task_id = %lost.ti.task_id,
        map_index = lost.ti.map_index,
        try_number = lost.try_number,
    ))]
    async fn dispatch_again(&self, lost: &AttemptKey) -> bool {
        let ti = &lost.ti;
        let attempt = Attempt {
            ti: ti.clone(),
            try_number: lost.try_number,
            attempt_token: Uuid::new_v4(),
            trace_parent: None,
            placement: self.placement(ti),
        };
        let command = Command::Dispatch {
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            try_number: lost.try_number,
            attempt_token: attempt.attempt_token,
            executor: self.dispatcher.executor().name().to_owned(),
            replacing: Some(lost.digest.clone()),
        };
        if !self
            .decide(&ti.dag_id, &ti.run_id, vec![command], Vec::new())
            .await
        {
            return false;
        }
        let _ = task_logs::append_note(
            self.store.pool(),
            ti,
            lost.try_number,
            "[leoflow] the scheduler that dispatched this try stopped before its task agent \
             started; dispatched again",
        )
        .await;
        self.dispatcher.dispatch(attempt);
        true
    }

    /// An agent process ended; if its try is still in flight, it ended without a report.
    async fn agent_exited(&mut self, exit: AttemptExit) {
        let current = self
            .in_flight
            .get(&exit.attempt.ti)
            .is_some_and(|f| f.attempt.digest == exit.attempt.digest);
        if current && self.end_attempt(&exit.attempt, Some(exit.detail)).await {
            self.in_flight.remove(&exit.attempt.ti);
        }
    }

    /// Fails a try in flight with `reason` (or times it out when `None`), if the log still has
    /// it in flight with the same token; notes why in its log and stops it at the executor.
    /// Returns whether the try is settled (ended now, or already over).
    #[tracing::instrument(skip_all, fields(
        dag_id = %attempt.ti.dag_id,
        run_id = %attempt.ti.run_id,
        task_id = %attempt.ti.task_id,
        map_index = attempt.ti.map_index,
        try_number = attempt.try_number,
    ))]
    async fn end_attempt(&self, attempt: &AttemptKey, reason: Option<String>) -> bool {
        let ti = &attempt.ti;
        let run = match runs::load_run(&self.store, &self.specs, &ti.dag_id, &ti.run_id).await {
            Ok(run) => run,
            // Gone with its DAG: nothing to end (its executor was told when it was deleted).
            Err(SubmitError::Deleted { .. }) => return true,
            Err(error) => {
                tracing::warn!("{}/{}: {error}", ti.dag_id, ti.run_id);
                return false;
            }
        };
        let Some(state) = run.state.tis.get(&(ti.task_id.clone(), ti.map_index)) else {
            return true;
        };
        let in_flight = state.state.is_in_flight()
            && state.try_number == attempt.try_number
            && state.attempt_digest.as_ref() == Some(&attempt.digest);
        if !in_flight {
            return true;
        }
        let (task_id, map_index, try_number, at) = (
            ti.task_id.clone(),
            ti.map_index,
            attempt.try_number,
            Utc::now(),
        );
        let mut commands = Vec::new();
        if state.state == TiState::Queued {
            commands.push(Command::ReportStarted {
                task_id: task_id.clone(),
                map_index,
                try_number,
                hostname: String::new(),
                pid: None,
            });
        }
        let note = match reason {
            Some(reason) => {
                commands.push(Command::ReportFinished {
                    task_id,
                    map_index,
                    try_number,
                    outcome: Outcome::Failed {
                        reason: reason.clone(),
                    },
                    at,
                });
                reason
            }
            // Only a running try can time out; a queued one has no start to count from.
            None => {
                commands.push(Command::TimedOut {
                    task_id,
                    map_index,
                    try_number,
                    at,
                });
                "the try ran past its execution_timeout and was stopped by the scheduler".into()
            }
        };
        let _ = task_logs::append_note(
            self.store.pool(),
            ti,
            try_number,
            &format!("[leoflow] {note}"),
        )
        .await;
        self.dispatcher.executor().terminate(attempt, &note);
        self.submit_all(&ti.dag_id, &ti.run_id, commands).await
    }

    /// Queues the runs the timetables say are due (all missed slots with catchup); returns the
    /// earliest future slot.
    async fn create_scheduled_runs(&mut self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
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

    async fn start_runs(&self, now: DateTime<Utc>) {
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

    /// Sets the pools' gauges: open slots, queued and running task instances.
    fn count_pool_slots(
        &self,
        open: &BTreeMap<PoolKey, i32>,
        queued: &BTreeMap<PoolKey, i64>,
        running: &BTreeMap<PoolKey, i64>,
    ) {
        for (pool, slots) in open {
            let pool_label = pool_labels(pool);
            let metrics = &self.metrics;
            metrics
                .pool_open_slots
                .get_or_create(&pool_label)
                .set(i64::from(*slots));
            let count = |by: &BTreeMap<PoolKey, i64>| by.get(pool).copied().unwrap_or(0);
            metrics
                .pool_queued_slots
                .get_or_create(&pool_label)
                .set(count(queued));
            metrics
                .pool_running_slots
                .get_or_create(&pool_label)
                .set(count(running));
        }
    }

    /// Where a try of `ti` runs: its DAG's tenant and image, its task's leoflow.yaml settings
    /// in the run's version.
    fn placement(&self, ti: &TaskInstanceKey) -> Arc<Placement> {
        let dag = self.dags.get(&ti.dag_id);
        let task = self
            .runs
            .get(&(ti.dag_id.clone(), ti.run_id.clone()))
            .and_then(|run| run.spec.tasks.get(&ti.task_id));
        Arc::new(Placement {
            tenant: self.tenant_of(&ti.dag_id).to_owned(),
            image: dag.and_then(|dag| dag.image.clone()),
            resources: task.and_then(|t| t.resources.clone()),
            pod: task.and_then(|t| t.pod.clone()),
            execution_timeout: task.and_then(|t| t.execution_timeout),
        })
    }

    /// The tenant that owns `dag_id` (the default one for a DAG this model does not know).
    fn tenant_of(&self, dag_id: &str) -> &str {
        self.dags
            .get(dag_id)
            .map_or(DEFAULT_TENANT, |dag| dag.tenant.as_str())
    }

    /// The slots of every tenant's pools: those a `PoolSet` recorded, and the `default_pool`
    /// of each tenant known (the default tenant, those owning a DAG or a pool) with
    /// [`DEFAULT_POOL_SLOTS`] until a `PoolSet` of it — as the projector's pools read model
    /// lists them. A pool a tenant does not have is missing, as a pool nobody has.
    fn pool_slots(&self) -> BTreeMap<PoolKey, i32> {
        let mut slots = self.pools.clone();
        let tenants: BTreeSet<&str> = std::iter::once(DEFAULT_TENANT)
            .chain(self.dags.values().map(|dag| dag.tenant.as_str()))
            .chain(self.pools.keys().map(|(tenant, _)| tenant.as_str()))
            .collect();
        for tenant in tenants {
            slots
                .entry((tenant.to_owned(), DEFAULT_POOL.to_owned()))
                .or_insert(DEFAULT_POOL_SLOTS);
        }
        slots
    }

    /// The candidates their previous run lets go (`depends_on_past`): one whose previous run's
    /// instance — or, with `wait_for_downstream`, its direct downstream ones there — has not
    /// succeeded or been skipped stays scheduled, as in Airflow, until that run moves on.
    async fn past_allows(&self, candidates: Vec<Candidate>) -> Vec<Candidate> {
        // The tasks whose previous instances matter, by run: one read per run, however many of
        // its task instances wait.
        let mut asked: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for candidate in &candidates {
            let task = self.task_of(&candidate.key);
            if task.past.waits() {
                let key = &candidate.key;
                let ids = asked
                    .entry((key.dag_id.clone(), key.run_id.clone()))
                    .or_default();
                ids.insert(task.task_id.clone());
                if task.past.wait_for_downstream {
                    ids.extend(task.downstream.iter().cloned());
                }
            }
        }
        let mut past = HashMap::new();
        for ((dag_id, run_id), task_ids) in asked {
            let rows = self.previous_instances(&dag_id, &run_id, task_ids).await;
            past.insert((dag_id, run_id), rows);
        }
        candidates
            .into_iter()
            .filter(|candidate| {
                let key = &candidate.key;
                let task = self.task_of(key);
                !task.past.waits()
                    || past[&(key.dag_id.clone(), key.run_id.clone())]
                        .as_deref()
                        .is_some_and(|rows| past_done(rows, task))
            })
            .collect()
    }

    fn task_of(&self, key: &TaskInstanceKey) -> &TaskSpec {
        &self.runs[&(key.dag_id.clone(), key.run_id.clone())]
            .spec
            .tasks[&key.task_id]
    }

    /// The instances of `task_ids` in the run before `run_id`; `None` when they cannot be read
    /// (the task instances then wait for the next pass).
    async fn previous_instances(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: BTreeSet<String>,
    ) -> Option<Vec<PastInstance>> {
        // With catchup, Airflow's previous run is the previous scheduled one.
        let scheduled_only = self
            .dags
            .get(dag_id)
            .and_then(|dag| dag.schedule.as_ref())
            .is_some_and(|schedule| schedule.catchup);
        let task_ids: Vec<String> = task_ids.into_iter().collect();
        let pool = self.store.pool();
        match read::runs::previous_instances(pool, dag_id, run_id, &task_ids, scheduled_only).await
        {
            Ok(rows) => Some(rows),
            Err(error) => {
                tracing::warn!(%error, dag_id, run_id, "reading the previous run failed; its task instances wait");
                None
            }
        }
    }

    async fn queue_admitted(&self) {
        let mut candidates = Vec::new();
        let (mut pool_queued, mut pool_running) = (BTreeMap::new(), BTreeMap::new());
        let mut open_slots = self.pool_slots();
        let mut capacity = Capacity::default();
        for ((dag_id, run_id), run) in &self.runs {
            if run.state.status != RunStatus::Running {
                continue;
            }
            let tenant = self.tenant_of(dag_id);
            for ((task_id, map_index), ti) in &run.state.tis {
                let task = &run.spec.tasks[task_id];
                // The task's pool is its DAG's tenant's pool of that name.
                let pool = || (tenant.to_owned(), task.pool.clone());
                match ti.state {
                    TiState::Scheduled => candidates.push(Candidate {
                        key: TaskInstanceKey::mapped(dag_id, run_id, task_id, *map_index),
                        pool: admission_pool(&pool()),
                        pool_slots: task.pool_slots,
                        priority_weight: task.priority_weight,
                        logical_date: run.run_after,
                        concurrency: task.concurrency,
                    }),
                    TiState::Queued | TiState::Running => {
                        *capacity.active_tasks.entry(dag_id.clone()).or_default() += 1;
                        let task_key = (dag_id.clone(), task_id.clone());
                        *capacity.active_per_task.entry(task_key).or_default() += 1;
                        let run_task = (dag_id.clone(), run_id.clone(), task_id.clone());
                        *capacity.active_per_run_task.entry(run_task).or_default() += 1;
                        let pool = pool();
                        if let Some(slots) = open_slots.get_mut(&pool) {
                            *slots -= task.pool_slots;
                        }
                        let by_pool = if ti.state == TiState::Queued {
                            &mut pool_queued
                        } else {
                            &mut pool_running
                        };
                        *by_pool.entry(pool).or_default() += 1;
                    }
                    _ => {}
                }
            }
        }
        for (dag_id, dag) in &self.dags {
            capacity
                .max_active_tasks
                .insert(dag_id.clone(), dag.max_active_tasks);
        }
        self.count_pool_slots(&open_slots, &pool_queued, &pool_running);
        capacity.pool_open_slots = open_slots
            .iter()
            .map(|(pool, slots)| (admission_pool(pool), *slots))
            .collect();
        let candidates = self.past_allows(candidates).await;
        let admission = admit(&candidates, &capacity);
        // Queue and dispatch in one append per run: one transaction for a whole fan-out.
        let mut by_run: BTreeMap<(String, String), Vec<Attempt>> = BTreeMap::new();
        // What is left under the executor's own caps, counted down as this pass admits.
        let mut room: HashMap<String, usize> = HashMap::new();
        for candidate in admission.queue {
            // Backpressure: with a full dispatch queue the task instance stays scheduled.
            if !self.dispatcher.has_room() {
                break;
            }
            let ti = candidate.key.clone();
            let placement = self.placement(&ti);
            // Over the executor's own cap (Pro's pods per namespace), the task instance stays
            // scheduled, as over its pool's slots; others may still fit.
            if let Some(cap) = self.dispatcher.executor().room(&placement) {
                let free = room.entry(cap.group).or_insert(cap.free);
                if *free == 0 {
                    continue;
                }
                *free -= 1;
            }
            let run = &self.runs[&(ti.dag_id.clone(), ti.run_id.clone())];
            let try_number = run.state.tis[&(ti.task_id.clone(), ti.map_index)].try_number;
            by_run
                .entry((ti.dag_id.clone(), ti.run_id.clone()))
                .or_default()
                .push(Attempt {
                    ti,
                    try_number,
                    attempt_token: Uuid::new_v4(),
                    trace_parent: None,
                    placement,
                });
        }
        for ((dag_id, run_id), attempts) in by_run {
            let mut commands = Vec::new();
            for attempt in &attempts {
                commands.push(Command::Queue {
                    task_id: attempt.ti.task_id.clone(),
                    map_index: attempt.ti.map_index,
                });
                commands.push(Command::Dispatch {
                    task_id: attempt.ti.task_id.clone(),
                    map_index: attempt.ti.map_index,
                    try_number: attempt.try_number,
                    attempt_token: attempt.attempt_token,
                    executor: self.dispatcher.executor().name().to_owned(),
                    replacing: None,
                });
            }
            self.decide(&dag_id, &run_id, commands, attempts).await;
        }
    }

    async fn dispatch_queued(&self) {
        for ((dag_id, run_id), run) in &self.runs {
            for ((task_id, map_index), ti) in &run.state.tis {
                if ti.state != TiState::Queued || ti.attempt_digest.is_some() {
                    continue;
                }
                if !self.dispatcher.has_room() {
                    return;
                }
                let attempt_token = Uuid::new_v4();
                let command = Command::Dispatch {
                    task_id: task_id.clone(),
                    map_index: *map_index,
                    try_number: ti.try_number,
                    attempt_token,
                    executor: self.dispatcher.executor().name().to_owned(),
                    replacing: None,
                };
                // Only a dispatch that was recorded is started: the token is then the fence.
                let key = TaskInstanceKey::mapped(dag_id, run_id, task_id, *map_index);
                let attempt = Attempt {
                    placement: self.placement(&key),
                    ti: key,
                    try_number: ti.try_number,
                    attempt_token,
                    trace_parent: None,
                };
                self.decide(dag_id, run_id, vec![command], vec![attempt])
                    .await;
            }
        }
    }

    /// Fires what waits for a time: retries after their delay, rescheduled sensors, time
    /// triggers of deferred tries and deferrals past their timeout. Returns the earliest time
    /// still to come.
    async fn fire_timers(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut next: Option<DateTime<Utc>> = None;
        let mut due = Vec::new();
        for ((dag_id, run_id), run) in &self.runs {
            let mut commands = Vec::new();
            for ((task_id, map_index), ti) in &run.state.tis {
                let Some((due, timer)) = timer_of(ti) else {
                    continue;
                };
                if due > now {
                    next = Some(next.map_or(due, |n| n.min(due)));
                    continue;
                }
                commands.push(timer.command(task_id.clone(), *map_index, ti.try_number, due, now));
            }
            if !commands.is_empty() {
                due.push((dag_id, run_id, commands));
            }
        }
        // Runs are streams of their own: their decisions are appended side by side, a few at a
        // time (each holds one of the store's connections while it appends).
        stream::iter(due)
            .for_each_concurrent(
                TIMER_APPENDS_AT_ONCE,
                |(dag_id, run_id, commands)| async move {
                    self.submit_all(dag_id, run_id, commands).await;
                },
            )
            .await;
        next
    }

    /// Submits a decision; a rejection only means the model was behind the log.
    async fn submit(&self, dag_id: &str, run_id: &str, command: Command) -> bool {
        self.submit_all(dag_id, run_id, vec![command]).await
    }

    /// Submits decisions appended together; see [`Reactor::submit`].
    async fn submit_all(&self, dag_id: &str, run_id: &str, commands: Vec<Command>) -> bool {
        self.decide(dag_id, run_id, commands, Vec::new()).await
    }

    /// Submits decisions about a run and starts the `attempts` they dispatch once they are
    /// recorded (the token is then the fence). The decision is a span in the trace of the run's
    /// latest event, so what caused it and what it causes read as one trace.
    async fn decide(
        &self,
        dag_id: &str,
        run_id: &str,
        commands: Vec<Command>,
        attempts: Vec<Attempt>,
    ) -> bool {
        let span = tracing::info_span!(
            "schedule",
            dag_id = %dag_id,
            run_id = %run_id,
            trace_id = tracing::field::Empty,
        );
        let cause = self.runs.get(&(dag_id.to_owned(), run_id.to_owned()));
        leoflow_telemetry::adopt(&span, cause.and_then(|run| run.trace.as_deref()));
        leoflow_telemetry::record_trace_id(&span);
        async {
            let recorded = self.submit_recorded(dag_id, run_id, commands).await;
            if recorded {
                for attempt in attempts {
                    self.dispatcher.dispatch(attempt);
                }
            }
            recorded
        }
        .instrument(span)
        .await
    }

    async fn submit_recorded(&self, dag_id: &str, run_id: &str, commands: Vec<Command>) -> bool {
        let submitted = submit_as_leader(
            &self.store,
            &self.specs,
            dag_id,
            run_id,
            self.tenant_of(dag_id),
            self.epoch,
            commands,
        );
        match submitted.await {
            Ok(events) => !events.is_empty(),
            // Deleted with its DAG: the model drops the run when it folds the delete.
            Err(SubmitError::Rejected(_) | SubmitError::Deleted { .. }) => false,
            Err(SubmitError::Deposed { .. }) => {
                // The loop steps down after this round of actions.
                self.deposed.store(true, Ordering::Relaxed);
                false
            }
            Err(error) => {
                // Not lost: the work is still pending in the log and is retried on the next wake.
                tracing::warn!("{dag_id}/{run_id}: {error}");
                false
            }
        }
    }
}

/// A tenant's pool as the core's admission names it, which knows pools by one string: the
/// pool's stream name (`pool:{name}` in the default tenant, `pool@{tenant}:{name}` in another),
/// the one spelling of a tenant's pool, so two tenants' pools of one name never share slots.
fn admission_pool((tenant, name): &PoolKey) -> String {
    owned_stream("pool", tenant, name)
}

/// The labels of a pool's gauges: `pool`, and `tenant` beside it for a pool of a tenant other
/// than the default one, so the default tenant's series (every series before tenants owned
/// pools) keep their labels.
fn pool_labels((tenant, name): &PoolKey) -> Labels {
    let mut labels = label("pool", name);
    if tenant != DEFAULT_TENANT {
        labels.push(("tenant".to_owned(), tenant.clone()));
    }
    labels
}

async fn next_exit(
    exits: &mut Option<mpsc::UnboundedReceiver<AttemptExit>>,
) -> Option<AttemptExit> {
    match exits {
        Some(exits) => exits.recv().await,
        None => std::future::pending().await,
    }
}

/// The schedule of a DAG version's document (`None`, with a message, when it cannot be read)
/// and its tasks.
async fn load_version(store: &EventStore, document_hash: &str) -> (Option<Schedule>, Vec<String>) {
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

/// A term that lasted this long was healthy: the failure that ended it starts the backoff over.
/// How many runs' timer decisions are appended at once: enough to overlap the appends' round
/// trips, few enough to leave the store's pool (8 in Lite) to the rest of the control plane.
const TIMER_APPENDS_AT_ONCE: usize = 4;

const HEALTHY_TERM: Duration = Duration::from_secs(60);

/// The count of failures in a row once a term that lasted `term` failed: an outage long after
/// the last one is a first failure again, not the seventh of a series.
fn failures_after(failures: u32, term: Duration) -> u32 {
    if term >= HEALTHY_TERM {
        1
    } else {
        failures.saturating_add(1)
    }
}

/// How long to wait before the `failures`-th attempt to lead again: 250 ms doubling to 8 s.
fn recovery_delay(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(6).saturating_sub(1)))
        .min(Duration::from_secs(10))
}

/// The active scheduler's hold on the leader lock: the dedicated connection the session
/// advisory lock lives on, which also carries its heartbeat — so a leader whose lock
/// connection is gone finds out at its next beat, and stops.
struct Leadership {
    conn: PgConnection,
    id: Uuid,
    /// The version of the leader stream after this term's election.
    epoch: i64,
    /// This host's name, read once (every beat records it).
    hostname: String,
}

impl Leadership {
    /// Records a sign of life (`GET /api/v2/monitor/health` reports it). Fails when the lock
    /// connection is gone: the lock went with it, so the caller is no longer the leader.
    async fn beat(&mut self) -> Result<(), ReactorError> {
        sqlx::query(
            "INSERT INTO scheduler_heartbeat \
               (scheduler_id, hostname, pid, leading_since, last_heartbeat) \
             VALUES ($1, $2, $3, now(), now()) \
             ON CONFLICT (scheduler_id) DO UPDATE SET last_heartbeat = now()",
        )
        .bind(self.id)
        .bind(&self.hostname)
        .bind(std::process::id() as i32)
        .execute(&mut self.conn)
        .await
        .map_err(ReactorError::LeadershipLost)?;
        Ok(())
    }

    /// Gives the lock up on a clean stop and removes the heartbeat, so health says at once
    /// that no scheduler is active (and a standby takes over without waiting).
    async fn resign(mut self) {
        let _ = sqlx::query("DELETE FROM scheduler_heartbeat WHERE scheduler_id = $1")
            .bind(self.id)
            .execute(&mut self.conn)
            .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(SCHEDULER_LOCK_KEY)
            .execute(&mut self.conn)
            .await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default()
}

/// Records this scheduler's election; the leader stream's new version is its epoch. Only the
/// lock holder elects, so epochs only grow; a predecessor that still decides under an older
/// epoch is refused by the log from this append on.
async fn elect(store: &EventStore, id: Uuid, hostname: &str) -> Result<i64, ReactorError> {
    let elected = SchedulerElected {
        scheduler_id: id,
        hostname: hostname.to_owned(),
        pid: std::process::id() as i32,
    };
    let batch = AppendBatch::new().push(elected, &Metadata::actor("scheduler"));
    let outcome = store.append(batch).await?;
    Ok(outcome.events[0].stream_version)
}

/// Takes the scheduler lock on a dedicated connection, waiting while another scheduler holds
/// it. Returns `None` if shut down while waiting.
async fn lead(
    store: &EventStore,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<Leadership>, ReactorError> {
    // Detached from the pool: the session lock must end with this connection, not linger on a
    // pooled one after the reactor stops.
    let mut conn = store.pool().acquire().await?.detach();
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(SCHEDULER_LOCK_KEY)
            .fetch_one(&mut conn)
            .await?;
        if locked {
            // Heartbeats of schedulers that died while leading say nothing any more.
            sqlx::query("DELETE FROM scheduler_heartbeat")
                .execute(&mut conn)
                .await?;
            let (id, hostname) = (Uuid::new_v4(), hostname());
            let epoch = elect(store, id, &hostname).await?;
            return Ok(Some(Leadership {
                conn,
                id,
                epoch,
                hostname,
            }));
        }
        tokio::select! {
            _ = tokio::time::sleep(STANDBY_POLL) => {}
            _ = shutdown.changed() => return Ok(None),
        }
        if *shutdown.borrow() {
            return Ok(None);
        }
    }
}

/// Whether `task`'s past lets it go, from the previous run's instances (`rows`, which may hold
/// other tasks' too): none means no previous run; a previous run without the task holds it back
/// unless `ignore_first_depends_on_past`; else its instances — and with `wait_for_downstream`
/// its direct downstream ones — must have succeeded or been skipped.
fn past_done(rows: &[PastInstance], task: &TaskSpec) -> bool {
    if rows.is_empty() {
        return true;
    }
    let own = |row: &&PastInstance| row.task_id.as_deref() == Some(task.task_id.as_str());
    if !rows.iter().any(|row| own(&row)) {
        return task.past.ignore_first_depends_on_past;
    }
    let downstream = |row: &&PastInstance| {
        task.past.wait_for_downstream
            && row
                .task_id
                .as_ref()
                .is_some_and(|id| task.downstream.contains(id))
    };
    rows.iter()
        .filter(|row| own(row) || downstream(row))
        .all(|row| matches!(row.state.as_deref(), Some("success" | "skipped")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_in_a_series_of_failures_and_starts_over_after_a_healthy_term() {
        let quick = Duration::from_millis(10);
        let mut failures = 0;
        let mut delays = Vec::new();
        for _ in 0..8 {
            failures = failures_after(failures, quick);
            delays.push(recovery_delay(failures).as_millis());
        }
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        // Hours of leading later, the next outage waits 250 ms again, not 10 s.
        failures = failures_after(failures, Duration::from_secs(3 * 3600));
        assert_eq!(recovery_delay(failures), Duration::from_millis(250));
    }
}
