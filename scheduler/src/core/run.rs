//! A dag run's state machine: `decide(spec, state, command)` says which events a command
//! causes (or why it is rejected); `evolve(state, event)` applies an event.
//!
//! `decide` also works out the consequences of its own events: task instances whose trigger
//! rule is now met are scheduled, ones that can never run are skipped or marked
//! `upstream_failed` (cascading down the DAG), and a run whose task instances are all done
//! succeeds or fails by its leaves, as in Airflow.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leoflow_events::Event;
use leoflow_events::catalog::*;

use crate::core::spec::{DagSpec, TaskKind, TaskSpec};
use crate::core::trigger::{UpstreamCounts, Verdict};

/// A task instance's state, with Airflow's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum TiState {
    /// Not scheduled yet (Airflow's `None`).
    Pending,
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    UpForRetry,
    Skipped,
    UpstreamFailed,
}

impl TiState {
    /// Whether the task instance is done for this run (until cleared).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TiState::Success | TiState::Failed | TiState::Skipped | TiState::UpstreamFailed
        )
    }
}

/// One task instance of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInstance {
    /// Its state.
    pub state: TiState,
    /// The current (or last) try; 0 before the first.
    pub try_number: i32,
    /// When a retry is due (in `UpForRetry`).
    pub retry_at: Option<DateTime<Utc>>,
}

/// Where a dag run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum RunStatus {
    Queued,
    Running,
    Success,
    Failed,
}

/// A dag run as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Its status.
    pub status: RunStatus,
    /// Every task instance, by task id.
    pub tis: BTreeMap<String, TaskInstance>,
}

/// What can happen to a dag run.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// The run may start (its DAG is unpaused and a run slot is free).
    Start,
    /// The dispatcher took a scheduled task instance (its pool had room).
    Queue {
        /// The task.
        task_id: String,
    },
    /// The agent of a try reported that it runs.
    ReportStarted {
        /// The task.
        task_id: String,
        /// The try the report is about.
        try_number: i32,
        /// Host it runs on.
        hostname: String,
    },
    /// The agent of a try reported its outcome.
    ReportFinished {
        /// The task.
        task_id: String,
        /// The try the report is about.
        try_number: i32,
        /// What happened.
        outcome: Outcome,
        /// When.
        at: DateTime<Utc>,
    },
    /// A retry's timer fired.
    RetryDue {
        /// The task.
        task_id: String,
        /// The try that failed.
        try_number: i32,
        /// Now.
        at: DateTime<Utc>,
    },
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Success.
    Success,
    /// A branch task succeeded and chose these direct downstream tasks.
    Branch(Vec<String>),
    /// A short-circuit task succeeded with this (truthy or not) result.
    ShortCircuit(bool),
    /// The try failed.
    Failed {
        /// Why, for the log and the UI.
        reason: String,
    },
}

/// Why a command was not applied. Rejections are recorded, never applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The DAG has no such task.
    #[error("the DAG has no task {0:?}")]
    UnknownTask(String),
    /// A report from a try that is not the current one (fencing).
    #[error("report for try {reported} of {task_id:?}, but the current try is {current}")]
    StaleTry {
        /// The task.
        task_id: String,
        /// The try the report named.
        reported: i32,
        /// The current try.
        current: i32,
    },
    /// The transition is not allowed from the task instance's state.
    #[error("{command} is not allowed for {task_id:?} in state {state:?}")]
    IllegalTransition {
        /// The task.
        task_id: String,
        /// Its state.
        state: TiState,
        /// What was asked.
        command: &'static str,
    },
    /// The run is not running (not started, or finished).
    #[error("the dag run is {0:?}")]
    RunNotRunning(RunStatus),
    /// A retry timer fired early.
    #[error("the retry of {task_id:?} is due at {due}")]
    RetryNotDue {
        /// The task.
        task_id: String,
        /// When it is due.
        due: DateTime<Utc>,
    },
    /// The outcome does not fit the task (a branch choice from a plain task, say).
    #[error("{0}")]
    BadOutcome(String),
}

impl RunState {
    /// A queued run of `spec` (what `RunQueued` creates).
    pub fn queued(spec: &DagSpec, run_id: &str) -> Self {
        Self {
            dag_id: spec.dag_id.clone(),
            run_id: run_id.to_owned(),
            status: RunStatus::Queued,
            tis: spec
                .tasks
                .keys()
                .map(|id| {
                    (
                        id.clone(),
                        TaskInstance {
                            state: TiState::Pending,
                            try_number: 0,
                            retry_at: None,
                        },
                    )
                })
                .collect(),
        }
    }

    fn ti(&self, task_id: &str) -> Result<&TaskInstance, Rejection> {
        self.tis
            .get(task_id)
            .ok_or_else(|| Rejection::UnknownTask(task_id.to_owned()))
    }

    fn key(&self, task_id: &str) -> TaskInstanceKey {
        TaskInstanceKey::new(&self.dag_id, &self.run_id, task_id)
    }

    /// Counts the states of `task`'s direct upstream task instances.
    pub fn upstream_counts(&self, task: &TaskSpec) -> UpstreamCounts {
        let mut counts = UpstreamCounts {
            total: task.upstream.len(),
            ..UpstreamCounts::default()
        };
        for up in &task.upstream {
            match self.tis[up].state {
                TiState::Success => counts.success += 1,
                TiState::Skipped => counts.skipped += 1,
                TiState::Failed => counts.failed += 1,
                TiState::UpstreamFailed => counts.upstream_failed += 1,
                _ => {}
            }
        }
        counts
    }
}

/// Applies one event to the run's state. Events of other runs and event types that do not
/// change scheduling state (`XComPushed`, `TaskDispatched`) leave it as it is.
pub fn evolve(mut state: RunState, event: &Event) -> RunState {
    let set = |state: &mut RunState, ti: &TaskInstanceKey, new: TiState| {
        if let Some(t) = state.tis.get_mut(&ti.task_id) {
            t.state = new;
        }
    };
    match event {
        Event::RunStarted(_) => state.status = RunStatus::Running,
        Event::RunSucceeded(_) => state.status = RunStatus::Success,
        Event::RunFailed(_) => state.status = RunStatus::Failed,
        Event::RunCleared(_) => state.status = RunStatus::Queued,
        Event::TaskScheduled(e) => {
            if let Some(t) = state.tis.get_mut(&e.ti.task_id) {
                t.state = TiState::Scheduled;
                t.try_number = e.try_number;
                t.retry_at = None;
            }
        }
        Event::TaskQueued(e) => set(&mut state, &e.ti, TiState::Queued),
        Event::TaskStarted(e) => set(&mut state, &e.ti, TiState::Running),
        Event::TaskSucceeded(e) => set(&mut state, &e.ti, TiState::Success),
        Event::TaskFailed(e) => set(&mut state, &e.ti, TiState::Failed),
        Event::TaskUpForRetry(e) => {
            if let Some(t) = state.tis.get_mut(&e.ti.task_id) {
                t.state = TiState::UpForRetry;
                t.retry_at = Some(e.retry_at);
            }
        }
        Event::TaskSkipped(e) => set(&mut state, &e.ti, TiState::Skipped),
        Event::TaskUpstreamFailed(e) => set(&mut state, &e.ti, TiState::UpstreamFailed),
        Event::TaskCleared(e) => {
            if let Some(t) = state.tis.get_mut(&e.ti.task_id) {
                t.state = TiState::Pending;
                t.retry_at = None;
            }
        }
        _ => {}
    }
    state
}

/// The events `command` causes in `state`, consequences included, or why it is rejected.
pub fn decide(spec: &DagSpec, state: &RunState, command: Command) -> Result<Vec<Event>, Rejection> {
    let mut events = Vec::new();
    match command {
        Command::Start => {
            if state.status != RunStatus::Queued {
                return Err(Rejection::RunNotRunning(state.status));
            }
            events.push(
                RunStarted {
                    dag_id: state.dag_id.clone(),
                    run_id: state.run_id.clone(),
                }
                .into(),
            );
        }
        Command::Queue { task_id } => {
            running(state)?;
            let (task, ti) = (task(spec, &task_id)?, state.ti(&task_id)?);
            if ti.state != TiState::Scheduled {
                return Err(illegal(&task_id, ti.state, "queue"));
            }
            events.push(
                TaskQueued {
                    ti: state.key(&task_id),
                    try_number: ti.try_number,
                    pool: task.pool.clone(),
                    pool_slots: task.pool_slots,
                    priority_weight: task.priority_weight,
                    queue: task.queue.clone(),
                }
                .into(),
            );
        }
        Command::ReportStarted {
            task_id,
            try_number,
            hostname,
        } => {
            running(state)?;
            let ti = current_try(state, &task_id, try_number)?;
            if ti.state != TiState::Queued {
                return Err(illegal(&task_id, ti.state, "report started"));
            }
            events.push(
                TaskStarted {
                    ti: state.key(&task_id),
                    try_number,
                    hostname,
                    pid: None,
                }
                .into(),
            );
        }
        Command::ReportFinished {
            task_id,
            try_number,
            outcome,
            at,
        } => {
            running(state)?;
            let ti = current_try(state, &task_id, try_number)?;
            if ti.state != TiState::Running {
                return Err(illegal(&task_id, ti.state, "report finished"));
            }
            finished(
                spec,
                state,
                task(spec, &task_id)?,
                try_number,
                outcome,
                at,
                &mut events,
            )?;
        }
        Command::RetryDue {
            task_id,
            try_number,
            at,
        } => {
            running(state)?;
            let ti = current_try(state, &task_id, try_number)?;
            if ti.state != TiState::UpForRetry {
                return Err(illegal(&task_id, ti.state, "retry"));
            }
            if let Some(due) = ti.retry_at
                && at < due
            {
                return Err(Rejection::RetryNotDue { task_id, due });
            }
            events.push(
                TaskScheduled {
                    ti: state.key(&task_id),
                    try_number: try_number + 1,
                }
                .into(),
            );
        }
    }
    consequences(spec, state, &mut events);
    Ok(events)
}

/// The events of a try's end: success (with branch or short-circuit skips), retry or failure.
fn finished(
    spec: &DagSpec,
    state: &RunState,
    task: &TaskSpec,
    try_number: i32,
    outcome: Outcome,
    at: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<(), Rejection> {
    let key = state.key(&task.task_id);
    let skip = |task_id: &str, reason: String| -> Event {
        TaskSkipped {
            ti: state.key(task_id),
            reason: Some(reason),
        }
        .into()
    };
    let succeeded = || -> Event {
        TaskSucceeded {
            ti: key.clone(),
            try_number,
        }
        .into()
    };
    match (outcome, task.kind) {
        (Outcome::Success, TaskKind::Plain) => events.push(succeeded()),
        (Outcome::Branch(chosen), TaskKind::Branch) => {
            let unknown: Vec<&String> = chosen
                .iter()
                .filter(|c| !task.downstream.contains(c))
                .collect();
            if !unknown.is_empty() {
                // Airflow fails a branch that names tasks it cannot follow.
                return failed(
                    state,
                    task,
                    try_number,
                    format!(
                        "branch returned {unknown:?}, which are not directly downstream of {:?}",
                        task.task_id
                    ),
                    at,
                    events,
                );
            }
            events.push(succeeded());
            for down in &task.downstream {
                if !chosen.contains(down) && state.tis[down].state == TiState::Pending {
                    events.push(skip(
                        down,
                        format!("not chosen by branch {:?}", task.task_id),
                    ));
                }
            }
        }
        (
            Outcome::ShortCircuit(proceed),
            TaskKind::ShortCircuit {
                ignore_downstream_trigger_rules,
            },
        ) => {
            events.push(succeeded());
            if !proceed {
                let targets: BTreeSet<String> = if ignore_downstream_trigger_rules {
                    spec.all_downstream(&task.task_id)
                } else {
                    task.downstream.iter().cloned().collect()
                };
                for down in targets {
                    if state.tis[&down].state == TiState::Pending {
                        events.push(skip(
                            &down,
                            format!("short-circuited by {:?}", task.task_id),
                        ));
                    }
                }
            }
        }
        (Outcome::Failed { reason }, _) => {
            return failed(state, task, try_number, reason, at, events);
        }
        (outcome, kind) => {
            return Err(Rejection::BadOutcome(format!(
                "{outcome:?} does not fit task {:?}, a {kind:?} task",
                task.task_id
            )));
        }
    }
    Ok(())
}

fn failed(
    state: &RunState,
    task: &TaskSpec,
    try_number: i32,
    reason: String,
    at: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<(), Rejection> {
    let ti = state.key(&task.task_id);
    if task.retry.should_retry(try_number) {
        let identity = format!("{}#{}#{}", state.dag_id, task.task_id, state.run_id);
        let delay = task.retry.delay_seconds(&identity, try_number);
        let retry_at = at + Duration::milliseconds((delay * 1000.0).round() as i64);
        events.push(
            TaskUpForRetry {
                ti,
                try_number,
                reason,
                retry_at,
            }
            .into(),
        );
    } else {
        events.push(
            TaskFailed {
                ti,
                try_number,
                reason,
            }
            .into(),
        );
    }
    Ok(())
}

/// Appends what follows from `events`: newly runnable task instances are scheduled, ones that
/// never will run are skipped or marked upstream-failed (to a fixed point), and a run whose
/// task instances are all final ends.
fn consequences(spec: &DagSpec, state: &RunState, events: &mut Vec<Event>) {
    let mut scratch = events.iter().fold(state.clone(), evolve);
    if scratch.status != RunStatus::Running {
        return;
    }
    loop {
        let mut new = Vec::new();
        for task in spec.tasks.values() {
            let ti = &scratch.tis[&task.task_id];
            if ti.state != TiState::Pending {
                continue;
            }
            let key = scratch.key(&task.task_id);
            match task.trigger_rule.evaluate(&scratch.upstream_counts(task)) {
                Verdict::Wait => {}
                Verdict::Run => new.push(
                    TaskScheduled {
                        ti: key,
                        try_number: ti.try_number + 1,
                    }
                    .into(),
                ),
                Verdict::Skip => new.push(
                    TaskSkipped {
                        ti: key,
                        reason: Some(format!(
                            "trigger rule {:?} cannot be met",
                            task.trigger_rule
                        )),
                    }
                    .into(),
                ),
                Verdict::UpstreamFailed => new.push(TaskUpstreamFailed { ti: key }.into()),
            }
        }
        if new.is_empty() {
            break;
        }
        scratch = new.iter().fold(scratch, evolve);
        events.extend(new);
    }
    if scratch.tis.values().all(|t| t.state.is_final()) {
        let (dag_id, run_id) = (scratch.dag_id.clone(), scratch.run_id.clone());
        let leaf_failed = spec.leaves().any(|leaf| {
            matches!(
                scratch.tis[&leaf.task_id].state,
                TiState::Failed | TiState::UpstreamFailed
            )
        });
        events.push(if leaf_failed {
            RunFailed {
                dag_id,
                run_id,
                reason: Some("a leaf task failed or its upstream failed".to_owned()),
            }
            .into()
        } else {
            RunSucceeded { dag_id, run_id }.into()
        });
    }
}

fn running(state: &RunState) -> Result<(), Rejection> {
    match state.status {
        RunStatus::Running => Ok(()),
        other => Err(Rejection::RunNotRunning(other)),
    }
}

fn task<'a>(spec: &'a DagSpec, task_id: &str) -> Result<&'a TaskSpec, Rejection> {
    spec.tasks
        .get(task_id)
        .ok_or_else(|| Rejection::UnknownTask(task_id.to_owned()))
}

fn current_try<'a>(
    state: &'a RunState,
    task_id: &str,
    try_number: i32,
) -> Result<&'a TaskInstance, Rejection> {
    let ti = state.ti(task_id)?;
    if ti.try_number != try_number {
        return Err(Rejection::StaleTry {
            task_id: task_id.to_owned(),
            reported: try_number,
            current: ti.try_number,
        });
    }
    Ok(ti)
}

fn illegal(task_id: &str, state: TiState, command: &'static str) -> Rejection {
    Rejection::IllegalTransition {
        task_id: task_id.to_owned(),
        state,
        command,
    }
}
