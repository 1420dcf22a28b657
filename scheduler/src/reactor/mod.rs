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

mod admission;
mod asks;
mod assets;
mod custom_timetables;
mod dag_callbacks;
mod dispatch;
mod model;
mod scheduled;
mod supervision;
mod timers;
mod triggers;
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
use leoflow_core::run::{Command, RunState, RunStatus, TiState, evolve};
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
            // Past the agent's own grace (`RUNNER_TIMEOUT_GRACE`): the agent times tries out
            // first.
            timeout_grace: leoflow_executors::agent::RUNNER_TIMEOUT_GRACE + Duration::from_secs(10),
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
    /// The latest version's asset condition, when it is scheduled on assets.
    asset_condition: Option<leoflow_core::assets::AssetCondition>,
    /// The asset events queued for its next asset-triggered run (Airflow's
    /// `asset_dag_run_queue`).
    asset_queue: assets::AssetQueue,
    /// The latest version's asset watchers (the triggerer runs them while it is unpaused).
    watchers: Vec<leoflow_core::assets::Watcher>,
    /// The next run its timetable gave, when the timetable is the project's own.
    custom_next: custom_timetables::CustomNext,
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
            asset_condition: None,
            asset_queue: assets::AssetQueue::default(),
            watchers: Vec::new(),
            custom_next: custom_timetables::CustomNext::Unknown,
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
    /// What each asset alias stands for (see [`assets::AliasAssets`]).
    alias_assets: assets::AliasAssets,
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
    /// The triggerer running the triggers that are not time triggers, if there is one.
    triggers: Option<triggers::Triggers>,
    /// The callbacks (DAGs' and tasks') the log asks for that have not run yet.
    callbacks: BTreeMap<dag_callbacks::CallbackKey, dag_callbacks::PendingCallback>,
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
            alias_assets: HashMap::new(),
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
            triggers: None,
            callbacks: BTreeMap::new(),
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

    /// Runs deferred tries' triggers and assets' watchers in `triggerer`, learning what they do
    /// from `reports`; a deferral's arguments are opened with `vault`.
    pub fn with_triggerer(
        mut self,
        triggerer: Arc<dyn leoflow_executors::triggerer::Triggerer>,
        reports: mpsc::UnboundedReceiver<leoflow_executors::triggerer::TriggerReport>,
        vault: Option<leoflow_secrets::Vault>,
    ) -> Self {
        self.triggers = Some(triggers::Triggers::new(triggerer, reports, vault));
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
        leadership.runs_triggerer = self.triggers.is_some();
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
        let mut reports = self.triggers.as_mut().and_then(|t| t.take_reports());
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
                Some(report) = triggers::next_report(&mut reports) => {
                    self.triggers_reported(report, &mut reports).await;
                }
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
        if let Some(triggers) = self.triggers.as_mut() {
            triggers.give_back(reports);
        }
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
        self.alias_assets.clear();
        self.generations.clear();
        self.runs.clear();
        self.runs_held.store(0, Ordering::Relaxed);
        self.pools.clear();
        self.in_flight.clear();
        self.callbacks.clear();
        // Only the leader runs triggers.
        if let Some(triggers) = self.triggers.as_mut() {
            triggers.stop_all();
        }
    }

    /// Does whatever has become possible; returns the earliest future deadline.
    async fn act(&mut self) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let next_slot = self.create_scheduled_runs(now).await;
        self.create_asset_triggered_runs().await;
        self.start_runs(now).await;
        self.queue_admitted().await;
        self.dispatch_queued().await;
        let next_retry = self.fire_timers(now).await;
        self.sync_triggers().await;
        let next_callback = self.sync_callbacks().await;
        let next_ask = self.ask_custom_timetables(now).await;
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
        [
            next_slot,
            next_retry,
            next_deadline,
            next_callback,
            next_ask,
        ]
        .into_iter()
        .flatten()
        .min()
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

async fn next_exit(
    exits: &mut Option<mpsc::UnboundedReceiver<AttemptExit>>,
) -> Option<AttemptExit> {
    match exits {
        Some(exits) => exits.recv().await,
        None => std::future::pending().await,
    }
}

/// A term that lasted this long was healthy: the failure that ended it starts the backoff over.
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
    /// Whether this scheduler runs the triggerer (every beat says so).
    runs_triggerer: bool,
}

impl Leadership {
    /// Records a sign of life (`GET /api/v2/monitor/health` reports it). Fails when the lock
    /// connection is gone: the lock went with it, so the caller is no longer the leader.
    async fn beat(&mut self) -> Result<(), ReactorError> {
        sqlx::query(
            "INSERT INTO scheduler_heartbeat \
               (scheduler_id, hostname, pid, leading_since, last_heartbeat, runs_triggerer) \
             VALUES ($1, $2, $3, now(), now(), $4) \
             ON CONFLICT (scheduler_id) DO UPDATE SET last_heartbeat = now()",
        )
        .bind(self.id)
        .bind(&self.hostname)
        .bind(std::process::id() as i32)
        .bind(self.runs_triggerer)
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
                runs_triggerer: false,
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
