//! What the scheduler of this process tells Prometheus, kept as it happens (so a scrape reads
//! numbers, never the read models): whether it leads, its heartbeats, Airflow's dag-run and
//! task-instance metrics under Airflow's names, pools' slots and the executor's queue, the
//! reactor's decision latency, and the log janitor's work.
//!
//! Counters count what the leader saw happen while it led: a term starts by replaying the log
//! from the beginning, and those events are not counted again. Summed over the replicas (only
//! one leads at a time) they are the deployment's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Liveness;

/// Label sets: `[("dag_id", …)]`, `[("pool", …)]`.
pub type Labels = Vec<(String, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 10 ms to ~3 h.
    Histogram::new(exponential_buckets(0.01, 3.0, 14))
}

fn latency_histogram() -> Histogram {
    // 0.1 ms to ~6.5 s.
    Histogram::new(exponential_buckets(0.0001, 3.0, 11))
}

/// The scheduler's metrics (cheap to clone: every part is shared).
#[derive(Debug, Clone)]
pub struct SchedulerMetrics {
    /// 1 while this process's scheduler leads.
    pub leader: Gauge,
    /// Heartbeats recorded by this process as leader (Airflow's `scheduler_heartbeat`).
    pub heartbeats: Counter,
    /// Unfinished runs the reactor holds (the reactor's own count).
    pub runs_held: Arc<AtomicUsize>,
    /// Tries started (Airflow's `ti.start`), by DAG.
    pub ti_starts: Family<Labels, Counter>,
    /// Tries that succeeded (Airflow's `ti_successes`).
    pub ti_successes: Counter,
    /// Tries that failed, retried or not (Airflow's `ti_failures`).
    pub ti_failures: Counter,
    /// Seconds from a run's start to its end, by DAG and outcome (Airflow's
    /// `dagrun.duration.success` / `.failed`).
    pub dagrun_duration: HistogramFamily,
    /// Seconds from when a run was due to its start, by DAG (Airflow's `dagrun.schedule_delay`).
    pub dagrun_schedule_delay: HistogramFamily,
    /// Slots of each pool not taken (Airflow's `pool.open_slots`).
    pub pool_open_slots: Family<Labels, Gauge>,
    /// Task instances queued in each pool (Airflow's `pool.queued_slots`).
    pub pool_queued_slots: Family<Labels, Gauge>,
    /// Task instances running in each pool (Airflow's `pool.running_slots`).
    pub pool_running_slots: Family<Labels, Gauge>,
    /// Tries handed to the executor and not started yet (Airflow's `executor.queued_tasks`).
    pub executor_queued: Gauge,
    /// Tries running (Airflow's `executor.running_tasks`).
    pub executor_running: Gauge,
    /// Seconds from an event's append to the reactor's decision on it.
    pub decision_latency: Histogram,
    /// Task log lines the janitor deleted.
    pub log_lines_pruned: Counter,
    /// The signs of life this process's agent service records (agents connected to it).
    pub liveness: Option<Liveness>,
}

/// An agent heard from within this window counts as connected (agents beat every 5 s).
const CONNECTED_WINDOW: Duration = Duration::from_secs(30);

impl Default for SchedulerMetrics {
    fn default() -> Self {
        Self {
            leader: Gauge::default(),
            heartbeats: Counter::default(),
            runs_held: Arc::default(),
            ti_starts: Family::default(),
            ti_successes: Counter::default(),
            ti_failures: Counter::default(),
            dagrun_duration: Family::new_with_constructor(seconds_histogram),
            dagrun_schedule_delay: Family::new_with_constructor(seconds_histogram),
            pool_open_slots: Family::default(),
            pool_queued_slots: Family::default(),
            pool_running_slots: Family::default(),
            executor_queued: Gauge::default(),
            executor_running: Gauge::default(),
            decision_latency: latency_histogram(),
            log_lines_pruned: Counter::default(),
            liveness: None,
        }
    }
}

impl SchedulerMetrics {
    /// Registers Airflow's metrics under `airflow_` and Leoflow's own under `leoflow_`.
    pub fn register(&self, root: &mut Registry) {
        self.register_airflow(root.sub_registry_with_prefix("airflow"));
        self.register_leoflow(root.sub_registry_with_prefix("leoflow"));
    }

    fn register_airflow(&self, airflow: &mut Registry) {
        airflow.register(
            "scheduler_heartbeat",
            "Heartbeats of the leading scheduler",
            self.heartbeats.clone(),
        );
        airflow.register("ti_start", "Tries started", self.ti_starts.clone());
        airflow.register(
            "ti_successes",
            "Tries that succeeded",
            self.ti_successes.clone(),
        );
        airflow.register("ti_failures", "Tries that failed", self.ti_failures.clone());
        airflow.register(
            "dagrun_duration_seconds",
            "Dag run duration, start to end, by outcome",
            self.dagrun_duration.clone(),
        );
        airflow.register(
            "dagrun_schedule_delay_seconds",
            "Delay between a run being due and its start",
            self.dagrun_schedule_delay.clone(),
        );
        airflow.register(
            "pool_open_slots",
            "Open slots per pool",
            self.pool_open_slots.clone(),
        );
        airflow.register(
            "pool_queued_slots",
            "Queued task instances per pool",
            self.pool_queued_slots.clone(),
        );
        airflow.register(
            "pool_running_slots",
            "Running task instances per pool",
            self.pool_running_slots.clone(),
        );
        airflow.register(
            "executor_queued_tasks",
            "Tries handed to the executor, not started",
            self.executor_queued.clone(),
        );
        airflow.register(
            "executor_running_tasks",
            "Tries running",
            self.executor_running.clone(),
        );
    }

    fn register_leoflow(&self, leoflow: &mut Registry) {
        leoflow.register(
            "scheduler_leader",
            "1 while this process's scheduler leads",
            self.leader.clone(),
        );
        let runs_held = Gauge::<i64>::default();
        runs_held.set(self.runs_held.load(Ordering::Relaxed) as i64);
        leoflow.register(
            "scheduler_runs_held",
            "Unfinished runs the scheduler holds",
            runs_held,
        );
        leoflow.register(
            "reactor_decision_latency_seconds",
            "From an event's append to the scheduler's decision on it",
            self.decision_latency.clone(),
        );
        leoflow.register(
            "task_log_lines_pruned",
            "Task log lines deleted by the retention janitor",
            self.log_lines_pruned.clone(),
        );
        if let Some(liveness) = &self.liveness {
            let connected = Gauge::<i64>::default();
            connected.set(liveness.heard_within(CONNECTED_WINDOW) as i64);
            leoflow.register(
                "agents_connected",
                "Task agents heard from by this replica in the last 30 s",
                connected,
            );
        }
    }
}

/// A label set of one name and value.
pub fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), value.to_owned())]
}
