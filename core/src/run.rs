//! A dag run's state machine: `decide(spec, state, command)` says which events a command
//! causes (or why it is rejected); `evolve(state, event)` applies an event.
//!
//! `decide` also works out the consequences of its own events: task instances whose trigger
//! rule is now met are scheduled, ones that can never run are skipped or marked
//! `upstream_failed` (cascading down the DAG), and a run whose task instances are all done
//! succeeds or fails by its leaves, as in Airflow.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use leoflow_events::AttemptDigest;
use leoflow_events::Event;
use leoflow_events::catalog::*;

pub use crate::state::{RunStatus, TiState};

use crate::spec::{DagSpec, MapLength, TaskKind, TaskSpec};
use crate::trigger::{UpstreamCounts, Verdict};

/// How a trigger ends its task (Airflow's task end events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerEnd {
    /// `TaskSuccessEvent`.
    Success,
    /// `TaskFailedEvent`.
    Failed,
    /// `TaskSkippedEvent`.
    Skipped,
}

/// One task instance of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInstance {
    /// Its state.
    pub state: TiState,
    /// The current (or last) try; 0 before the first.
    pub try_number: i32,
    /// When it is due to be scheduled again: a retry after its delay (`UpForRetry`), a
    /// rescheduled poke (`UpForReschedule`), a time trigger's moment (`Deferred`).
    pub due_at: Option<DateTime<Utc>>,
    /// When a deferred try fails if its trigger has not fired.
    pub timeout_at: Option<DateTime<Utc>>,
    /// A deferred try ends, successful, when its time trigger fires (`end_from_trigger`).
    pub ends_at_due: bool,
    /// What a deferred try waits for, while it waits.
    pub trigger: Option<DeferredTrigger>,
    /// Item count of its `return_value` XCom, when that is a list or dict (what a task mapped
    /// over it expands to).
    pub result_len: Option<i64>,
    /// The digest of the current try's fencing token, once it was handed to an executor.
    pub attempt_digest: Option<AttemptDigest>,
}

impl TaskInstance {
    fn pending() -> Self {
        Self {
            state: TiState::Pending,
            try_number: 0,
            due_at: None,
            timeout_at: None,
            ends_at_due: false,
            trigger: None,
            result_len: None,
            attempt_digest: None,
        }
    }
}

/// A task instance's place in the run: its task and map index (-1 when unmapped, and for a
/// mapped task's placeholder before it expands).
pub type TiId = (String, i32);

/// A dag run as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunState {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Its status.
    pub status: RunStatus,
    /// Every task instance, by task id and map index.
    pub tis: BTreeMap<TiId, TaskInstance>,
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
        /// The map index (-1 when unmapped).
        map_index: i32,
    },
    /// The agent of a try reported that it runs.
    ReportStarted {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try the report is about.
        try_number: i32,
        /// Host it runs on.
        hostname: String,
        /// Process id of the agent, when known.
        pid: Option<i32>,
    },
    /// The agent of a try reported its outcome.
    ReportFinished {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try the report is about.
        try_number: i32,
        /// What happened.
        outcome: Outcome,
        /// When.
        at: DateTime<Utc>,
        /// What a successful try gave its outlets' asset events (Airflow's
        /// `outlet_events[asset].extra`, `yield Metadata(...)`, `outlet_events[alias].add(...)`);
        /// what is not for the task's outlets is ignored, as in Airflow.
        outlet_events: OutletEvents,
    },
    /// The dispatcher handed a queued try to an executor, with the token its agent must present.
    Dispatch {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try.
        try_number: i32,
        /// The attempt's fencing token.
        attempt_token: uuid::Uuid,
        /// Which executor runs it.
        executor: String,
        /// The token digest of an earlier dispatch of this try that never started because the
        /// scheduler that made it died first (Airflow resets such orphaned task instances):
        /// the try is handed out again under the new token, and the old one is refused from
        /// then on. `None` for a try's first dispatch.
        replacing: Option<AttemptDigest>,
    },
    /// A running try pushed an XCom.
    PushXCom(XComPush),
    /// A running try ended without its runner's report: its agent or pod died, or it stopped
    /// answering. It fails, its retries apply, and the task's callback of that end, which its
    /// runner could not run, is asked for ([`TaskCallbackRequested`]), as Airflow's scheduler
    /// asks its DAG processor.
    Lost {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try.
        try_number: i32,
        /// What became of it.
        reason: String,
        /// Now.
        at: DateTime<Utc>,
    },
    /// A running try passed its `execution_timeout` and did not stop by itself (the timer
    /// fired and the reactor killed it): it fails, its retries apply and its callback is asked
    /// for, as for a [`Command::Lost`] try.
    TimedOut {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that ran too long.
        try_number: i32,
        /// Now.
        at: DateTime<Utc>,
    },
    /// A user cleared task instances (and optionally everything downstream) to run them again.
    Clear {
        /// The tasks to clear.
        task_ids: Vec<String>,
        /// Of a task listed here, only these map indexes are cleared (Airflow's
        /// `[task_id, map_index]` pairs); every instance of the other tasks is.
        only_map_indexes: BTreeMap<String, BTreeSet<i32>>,
        /// Also clear every task downstream of them.
        downstream: bool,
    },
    /// A user set a task instance's final state by hand.
    Mark {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// `true` for success, `false` for failed.
        success: bool,
    },
    /// A user set the whole run's state (Airflow's "mark run success / failed"): success marks
    /// every unfinished or failed task instance successful; failed fails the ones in flight and
    /// skips the ones that have not run. Tries in flight are stopped by the executor.
    MarkRun {
        /// `true` for success, `false` for failed.
        success: bool,
    },
    /// A user cancelled a queued or running try: it fails at once, without retries (Airflow's
    /// "mark failed" of a running task), and its agent is told to stop.
    Cancel {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
    },
    /// A deferred try's trigger fired (a time trigger's moment came, or the triggerer sent its
    /// event), or a rescheduled try's time came: it carries on, in the same try.
    Resume {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that waits.
        try_number: i32,
        /// The trigger's event payload (`None` for a rescheduled try).
        trigger_event: Option<serde_json::Value>,
        /// Now.
        at: DateTime<Utc>,
    },
    /// A person answered a deferred try that waits for an answer (Airflow's human-in-the-loop
    /// operators): it carries on, in the same try, with the answer as its trigger's event.
    Answer {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that waits.
        try_number: i32,
        /// The answer, as the operator's `execute_complete` reads it.
        answer: serde_json::Value,
    },
    /// A deferred try's time trigger fired and ends the task (`end_from_trigger`): it succeeds
    /// without running again.
    EndFromTrigger {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that waits.
        try_number: i32,
        /// Now.
        at: DateTime<Utc>,
    },
    /// A deferred try's trigger yielded Airflow's `TaskSuccessEvent`, `TaskFailedEvent` or
    /// `TaskSkippedEvent`: the try ends in that state without running again (a failure with
    /// no retry, as Airflow sets it), after the event's XComs.
    EndedByTrigger {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that waits.
        try_number: i32,
        /// How it ends.
        end: TriggerEnd,
        /// The XComs the event carries (their blobs stored).
        xcoms: Vec<XComPush>,
    },
    /// A deferred try's wait failed: its timeout passed. As in Airflow, the try carries on in
    /// `__fail__`, which raises `TaskDeferralTimeout` in the task: it fails, its retries
    /// applying, or a sensor times out (is skipped with `soft_fail`).
    DeferralFailed {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that waits.
        try_number: i32,
        /// Why.
        reason: String,
    },
    /// A retry's timer fired.
    RetryDue {
        /// The task.
        task_id: String,
        /// The map index.
        map_index: i32,
        /// The try that failed.
        try_number: i32,
        /// Now.
        at: DateTime<Utc>,
    },
}

/// An XCom a running try pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XComPush {
    /// The task.
    pub task_id: String,
    /// The map index.
    pub map_index: i32,
    /// The try pushing it.
    pub try_number: i32,
    /// The XCom key.
    pub key: String,
    /// Blob hash of the value.
    pub value_hash: String,
    /// Its size in bytes.
    pub size_bytes: i64,
    /// Item count for a list or dict.
    pub length: Option<i64>,
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
    /// The try failed and must not be retried (Airflow's `AirflowFailException`).
    FailedWithoutRetry {
        /// Why.
        reason: String,
    },
    /// The task chose to end as skipped (`AirflowSkipException`, a bash `skip_on_exit_code`).
    Skipped {
        /// Why.
        reason: String,
    },
    /// The try deferred itself to a trigger (`self.defer`).
    Deferred(Deferral),
    /// A sensor in reschedule mode is to be poked again at this time.
    Rescheduled {
        /// When.
        at: DateTime<Utc>,
    },
}

/// What a try that deferred itself waits for, and how it carries on.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferral {
    /// The trigger.
    pub trigger: DeferredTrigger,
    /// The method the try resumes in.
    pub next_method: String,
    /// Its keyword arguments, sealed.
    pub next_kwargs: Sealed,
    /// When the wait fails, if the trigger has not fired.
    pub timeout_at: Option<DateTime<Utc>>,
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
    /// A retry, reschedule or time trigger's timer fired early.
    #[error("{task_id:?} is due at {due}")]
    NotDue {
        /// The task.
        task_id: String,
        /// When it is due.
        due: DateTime<Utc>,
    },
    /// The outcome does not fit the task (a branch choice from a plain task, say).
    #[error("{0}")]
    BadOutcome(String),
    /// The caller's attempt token is not the one of the task instance's current try (forged,
    /// or replaced by a re-dispatch). Says nothing of the current try to such a caller.
    #[error("the attempt token is not the current one of {0}")]
    NotTheAttempt(String),
}

/// Who a report must come from: the agent holding the current try's attempt token. Checked
/// against the very state a decision is made on (and appended at), so a token replaced by a
/// re-dispatch between an agent's call and its decision cannot slip through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// The task.
    pub task_id: String,
    /// The map index (-1 when unmapped).
    pub map_index: i32,
    /// The try the caller runs.
    pub try_number: i32,
    /// The token the caller presented.
    pub attempt_token: uuid::Uuid,
}

impl Fence {
    /// Passes when the caller holds the token of the task instance's current try.
    pub fn check(&self, state: &RunState) -> Result<(), Rejection> {
        let ti = state.ti(&self.task_id, self.map_index)?;
        let holds_token = ti
            .attempt_digest
            .as_ref()
            .is_some_and(|digest| digest.matches(&self.attempt_token));
        if ti.try_number == self.try_number && holds_token {
            return Ok(());
        }
        let name = if self.map_index >= 0 {
            format!("{}[{}]", self.task_id, self.map_index)
        } else {
            self.task_id.clone()
        };
        Err(Rejection::NotTheAttempt(name))
    }
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
                .map(|id| ((id.clone(), -1), TaskInstance::pending()))
                .collect(),
        }
    }

    fn ti(&self, task_id: &str, map_index: i32) -> Result<&TaskInstance, Rejection> {
        self.tis
            .get(&(task_id.to_owned(), map_index))
            .ok_or_else(|| Rejection::UnknownTask(format!("{task_id}[{map_index}]")))
    }

    fn key(&self, (task_id, map_index): &TiId) -> TaskInstanceKey {
        TaskInstanceKey::mapped(&self.dag_id, &self.run_id, task_id, *map_index)
    }

    /// Every instance of a task (one, unless it is mapped and expanded).
    pub fn instances<'a>(
        &'a self,
        task_id: &str,
    ) -> impl Iterator<Item = (&'a TiId, &'a TaskInstance)> {
        let from = (task_id.to_owned(), i32::MIN);
        let to = (task_id.to_owned(), i32::MAX);
        self.tis.range(from..=to)
    }

    /// Counts the states of the direct upstream task instances instance `map_index` of `task`
    /// waits for (see [`RunState::awaited`]).
    pub fn upstream_counts(
        &self,
        spec: &DagSpec,
        task: &TaskSpec,
        map_index: i32,
    ) -> UpstreamCounts {
        let mut counts = UpstreamCounts::default();
        for ti in self.awaited(spec, task, map_index) {
            counts.add(ti.state);
        }
        let setups = self.counts(&task.setups.upstream_setups);
        counts.setup_total = setups.total;
        counts.setup_success = setups.success;
        counts.setup_skipped = setups.skipped;
        counts
    }

    /// The upstream task instances instance `map_index` of `task` waits for: every instance of
    /// each direct upstream task — but within a mapped task group, only the same map index of
    /// the group's other tasks (their placeholder until they expand), and a group's task waits
    /// to expand for what the group maps over rather than for them, as Airflow's.
    fn awaited<'a>(
        &'a self,
        spec: &'a DagSpec,
        task: &'a TaskSpec,
        map_index: i32,
    ) -> impl Iterator<Item = &'a TaskInstance> + 'a {
        let same_group = |up: &String| {
            task.mapped_group.is_some() && spec.tasks[up].mapped_group == task.mapped_group
        };
        let from_upstream = task.upstream.iter().flat_map(move |up| {
            let chosen: Box<dyn Iterator<Item = &TaskInstance>> = match (same_group(up), map_index)
            {
                (false, _) => Box::new(self.instances(up).map(|(_, ti)| ti)),
                (true, -1) => Box::new(std::iter::empty()),
                (true, i) => Box::new(
                    self.tis
                        .get(&(up.clone(), i))
                        .or_else(|| self.tis.get(&(up.clone(), -1)))
                        .into_iter(),
                ),
            };
            chosen
        });
        let group_sources = task
            .length_sources()
            .filter(move |source| {
                task.mapped_group.is_some() && map_index == -1 && !task.upstream.contains(source)
            })
            .flat_map(move |source| self.instances(source).map(|(_, ti)| ti));
        from_upstream.chain(group_sources)
    }

    /// Counts the states of every instance of `tasks`.
    fn counts(&self, tasks: &[String]) -> UpstreamCounts {
        let mut counts = UpstreamCounts::default();
        for (_, ti) in tasks.iter().flat_map(|t| self.instances(t)) {
            counts.add(ti.state);
        }
        counts
    }

    /// What a pending instance of `task` does next: its trigger rule over its direct upstream,
    /// held back by the setups it runs within (each must succeed first: one failing marks it
    /// upstream-failed, one skipped skips it) and, for a teardown, by the tasks between its
    /// setups and it (each must be done), as Airflow's trigger-rule dependency decides.
    pub fn verdict(&self, spec: &DagSpec, task: &TaskSpec, map_index: i32) -> Verdict {
        let setups = self.counts(&task.setups.indirect_setups);
        if setups.any_failed() {
            return Verdict::UpstreamFailed;
        }
        if setups.skipped > 0 {
            return Verdict::Skip;
        }
        match task
            .trigger_rule
            .evaluate(&self.upstream_counts(spec, task, map_index))
        {
            Verdict::Run if setups.success < setups.total => Verdict::Wait,
            Verdict::Run if !self.all_done(&task.setups.scope) => Verdict::Wait,
            verdict => verdict,
        }
    }

    /// Whether every instance of `tasks` is done.
    pub fn all_done(&self, tasks: &[String]) -> bool {
        let counts = self.counts(tasks);
        counts.done() == counts.total
    }
}

/// Applies one event to the run's state. Events of other runs and event types that do not
/// change scheduling state (`XComPushed`, `TaskDispatched`) leave it as it is.
pub fn evolve(mut state: RunState, event: &Event) -> RunState {
    fn id(ti: &TaskInstanceKey) -> TiId {
        (ti.task_id.clone(), ti.map_index)
    }
    let set = |state: &mut RunState, ti: &TaskInstanceKey, new: TiState| {
        if let Some(t) = state.tis.get_mut(&id(ti)) {
            t.state = new;
        }
    };
    match event {
        Event::RunStarted(_) => state.status = RunStatus::Running,
        Event::RunSucceeded(_) => state.status = RunStatus::Success,
        Event::RunFailed(_) => state.status = RunStatus::Failed,
        Event::RunCleared(_) => state.status = RunStatus::Queued,
        Event::TaskMapped(e) => {
            state.tis.remove(&id(&e.ti));
            for index in 0..e.count {
                state
                    .tis
                    .insert((e.ti.task_id.clone(), index), TaskInstance::pending());
            }
        }
        Event::TaskScheduled(e) => {
            let t = state
                .tis
                .entry(id(&e.ti))
                .or_insert_with(TaskInstance::pending);
            t.state = TiState::Scheduled;
            t.try_number = e.try_number;
            t.due_at = None;
            t.timeout_at = None;
            t.ends_at_due = false;
            t.trigger = None;
            t.attempt_digest = None;
        }
        Event::TaskDeferred(e) => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.state = TiState::Deferred;
                (t.due_at, t.ends_at_due) = match &e.trigger {
                    DeferredTrigger::Time {
                        moment,
                        end_from_trigger,
                    } => (Some(*moment), *end_from_trigger),
                    // Due when the triggerer says it fired, not at a time.
                    DeferredTrigger::Python { .. } => (None, false),
                    // Due at its deadline, if it has one; an answer may come before.
                    DeferredTrigger::Person { answer_by, .. } => (*answer_by, false),
                };
                t.timeout_at = e.timeout_at;
                t.trigger = Some(e.trigger.clone());
            }
        }
        Event::TaskRescheduled(e) => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.state = TiState::UpForReschedule;
                t.due_at = Some(e.reschedule_at);
            }
        }
        Event::TaskResumed(e) => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.state = TiState::Scheduled;
                t.due_at = None;
                t.timeout_at = None;
                t.trigger = None;
                t.attempt_digest = None;
            }
        }
        Event::TaskQueued(e) => set(&mut state, &e.ti, TiState::Queued),
        Event::TaskDispatched(e) => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.attempt_digest = Some(e.attempt_digest.clone());
            }
        }
        Event::TaskStarted(e) => set(&mut state, &e.ti, TiState::Running),
        Event::TaskSucceeded(e) => set(&mut state, &e.ti, TiState::Success),
        Event::TaskFailed(e) => set(&mut state, &e.ti, TiState::Failed),
        Event::TaskUpForRetry(e) => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.state = TiState::UpForRetry;
                t.due_at = Some(e.retry_at);
            }
        }
        Event::TaskSkipped(e) => set(&mut state, &e.ti, TiState::Skipped),
        Event::TaskUpstreamFailed(e) => set(&mut state, &e.ti, TiState::UpstreamFailed),
        Event::TaskCleared(e) => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.state = TiState::Pending;
                t.due_at = None;
                t.timeout_at = None;
                t.trigger = None;
                t.result_len = None;
            }
        }
        Event::XComPushed(e) if e.key == "return_value" => {
            if let Some(t) = state.tis.get_mut(&id(&e.ti)) {
                t.result_len = e.length;
            }
        }
        // Nothing the state machine decides on: other XComs, the DAG's and the config's
        // events, a run's note, renderings, audit records, asset events and the leader's
        // term. `RunQueued`
        // is where the state starts (`RunState::queued`), not a change of it.
        Event::XComPushed(_)
        | Event::RunQueued(_)
        | Event::RunNoteSet(_)
        | Event::TaskRendered(_)
        | Event::CommandRejected(_)
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
    state
}

/// The events `command` causes in `state`, consequences included, or why it is rejected.
pub fn decide(spec: &DagSpec, state: &RunState, command: Command) -> Result<Vec<Event>, Rejection> {
    let events = match command {
        Command::Start => start(state)?,
        Command::Queue { task_id, map_index } => queue(spec, state, task_id, map_index)?,
        Command::ReportStarted {
            task_id,
            map_index,
            try_number,
            hostname,
            pid,
        } => report_started(state, (task_id, map_index), try_number, hostname, pid)?,
        Command::PushXCom(push) => push_xcom(state, push)?,
        Command::ReportFinished {
            task_id,
            map_index,
            try_number,
            outcome,
            at,
            outlet_events,
        } => {
            let id = (task_id, map_index);
            let report = Report {
                try_number,
                outcome,
                at,
                outlet_events,
            };
            report_finished(spec, state, id, report)?
        }
        Command::Dispatch {
            task_id,
            map_index,
            try_number,
            attempt_token,
            executor,
            replacing,
        } => {
            let attempt = Attempt {
                token: attempt_token,
                executor,
                replacing,
            };
            dispatch(state, (task_id, map_index), try_number, attempt)?
        }
        Command::Lost {
            task_id,
            map_index,
            try_number,
            reason,
            at,
        } => lost(spec, state, (task_id, map_index), try_number, reason, at)?,
        Command::TimedOut {
            task_id,
            map_index,
            try_number,
            at,
        } => timed_out(spec, state, (task_id, map_index), try_number, at)?,
        Command::Clear {
            task_ids,
            only_map_indexes,
            downstream,
        } => clear(spec, state, &task_ids, &only_map_indexes, downstream)?,
        Command::Mark {
            task_id,
            map_index,
            success,
        } => match mark(state, (task_id, map_index), success)? {
            Some(events) => events,
            // Already so: nothing happens, not even consequences.
            None => return Ok(Vec::new()),
        },
        // A run marked by hand ends as marked: no consequences are derived, unless a teardown
        // is left to do its work.
        Command::MarkRun { success } => return Ok(mark_run(spec, state, success)),
        Command::Cancel { task_id, map_index } => cancel(state, (task_id, map_index))?,
        Command::RetryDue {
            task_id,
            map_index,
            try_number,
            at,
        } => retry_due(state, (task_id, map_index), try_number, at)?,
        Command::Resume {
            task_id,
            map_index,
            try_number,
            trigger_event,
            at,
        } => resume(state, (task_id, map_index), try_number, trigger_event, at)?,
        Command::Answer {
            task_id,
            map_index,
            try_number,
            answer,
        } => answered(state, (task_id, map_index), try_number, answer)?,
        Command::DeferralFailed {
            task_id,
            map_index,
            try_number,
            reason,
        } => deferral_failed(state, (task_id, map_index), try_number, reason)?,
        Command::EndedByTrigger {
            task_id,
            map_index,
            try_number,
            end,
            xcoms,
        } => ended_by_trigger(spec, state, (task_id, map_index), try_number, end, xcoms)?,
        Command::EndFromTrigger {
            task_id,
            map_index,
            try_number,
            at,
        } => end_from_trigger(state, (task_id, map_index), try_number, at)?,
    };
    Ok(with_consequences(spec, state, events))
}

/// `events` and what follows from them (see [`consequences`]).
fn with_consequences(spec: &DagSpec, state: &RunState, mut events: Vec<Event>) -> Vec<Event> {
    consequences(spec, state, &mut events);
    events
}

/// [`Command::Start`]: a queued run starts.
fn start(state: &RunState) -> Result<Vec<Event>, Rejection> {
    if state.status != RunStatus::Queued {
        return Err(Rejection::RunNotRunning(state.status));
    }
    Ok(vec![
        RunStarted {
            dag_id: state.dag_id.clone(),
            run_id: state.run_id.clone(),
        }
        .into(),
    ])
}

/// [`Command::Queue`]: a scheduled task instance takes its pool slot.
fn queue(
    spec: &DagSpec,
    state: &RunState,
    task_id: String,
    map_index: i32,
) -> Result<Vec<Event>, Rejection> {
    running(state)?;
    let (task, ti) = (task(spec, &task_id)?, state.ti(&task_id, map_index)?);
    if ti.state != TiState::Scheduled {
        return Err(illegal(&task_id, ti.state, "queue"));
    }
    Ok(vec![
        TaskQueued {
            ti: state.key(&(task_id, map_index)),
            try_number: ti.try_number,
            pool: task.pool.clone(),
            pool_slots: task.pool_slots,
            priority_weight: task.priority_weight,
            queue: task.queue.clone(),
        }
        .into(),
    ])
}

/// [`Command::ReportStarted`]: the agent of a queued try runs it.
fn report_started(
    state: &RunState,
    id: TiId,
    try_number: i32,
    hostname: String,
    pid: Option<i32>,
) -> Result<Vec<Event>, Rejection> {
    current_try_in(
        state,
        &id.0,
        id.1,
        try_number,
        TiState::Queued,
        "report started",
    )?;
    Ok(vec![
        TaskStarted {
            ti: state.key(&id),
            try_number,
            hostname,
            pid,
        }
        .into(),
    ])
}

/// [`Command::PushXCom`]: a running try pushed an XCom.
fn push_xcom(state: &RunState, push: XComPush) -> Result<Vec<Event>, Rejection> {
    current_try_in(
        state,
        &push.task_id,
        push.map_index,
        push.try_number,
        TiState::Running,
        "push an XCom",
    )?;
    Ok(vec![
        XComPushed {
            ti: state.key(&(push.task_id, push.map_index)),
            try_number: push.try_number,
            key: push.key,
            value_hash: push.value_hash,
            size_bytes: push.size_bytes,
            length: push.length,
        }
        .into(),
    ])
}

/// [`Command::ReportFinished`]: a running try ended (see [`finished`]).
fn report_finished(
    spec: &DagSpec,
    state: &RunState,
    id: TiId,
    report: Report,
) -> Result<Vec<Event>, Rejection> {
    current_try_in(
        state,
        &id.0,
        id.1,
        report.try_number,
        TiState::Running,
        "report finished",
    )?;
    let mut events = Vec::new();
    let task = task(spec, &id.0)?;
    finished(spec, state, task, &id, report, &mut events)?;
    Ok(events)
}

/// What an agent reported of a try's end ([`Command::ReportFinished`]).
struct Report {
    try_number: i32,
    outcome: Outcome,
    at: DateTime<Utc>,
    outlet_events: OutletEvents,
}

/// What a successful try gave its outlets' asset events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutletEvents {
    /// The `extra` of each outlet's event, by asset (`{}` for an outlet not named).
    pub extras: BTreeMap<AssetKey, serde_json::Value>,
    /// The events added through aliases (`outlet_events[AssetAlias(...)].add(asset, extra)`).
    pub through_aliases: Vec<AliasEvent>,
}

/// An asset event a try added through one of its task's outlet aliases.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasEvent {
    /// The alias.
    pub alias: String,
    /// The asset (which may be new).
    pub asset: AssetKey,
    /// The asset's group.
    pub group: String,
    /// The event's `extra`.
    pub extra: serde_json::Value,
}

/// How a try is handed to an executor ([`Command::Dispatch`]).
struct Attempt {
    token: uuid::Uuid,
    executor: String,
    replacing: Option<AttemptDigest>,
}

/// [`Command::Dispatch`]: a queued try goes to an executor under a fresh token (once, unless
/// it replaces an orphaned dispatch).
fn dispatch(
    state: &RunState,
    id: TiId,
    try_number: i32,
    attempt: Attempt,
) -> Result<Vec<Event>, Rejection> {
    let ti = current_try_in(state, &id.0, id.1, try_number, TiState::Queued, "dispatch")?;
    if ti.attempt_digest != attempt.replacing {
        return Err(illegal(&id.0, ti.state, "dispatch twice"));
    }
    Ok(vec![
        TaskDispatched {
            ti: state.key(&id),
            try_number,
            attempt_digest: AttemptDigest::of(&attempt.token),
            executor: attempt.executor,
        }
        .into(),
    ])
}

/// [`Command::TimedOut`]: a running try passed its `execution_timeout` and was killed; it is
/// [`lost`] with that reason.
fn timed_out(
    spec: &DagSpec,
    state: &RunState,
    id: TiId,
    try_number: i32,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let limit = task(spec, &id.0)?.execution_timeout.unwrap_or_default();
    // The runner raises `AirflowTaskTimeout` itself at the limit; this is a try that did not
    // stop then, killed by its agent (or the scheduler) a little later.
    let reason = format!(
        "execution_timeout of {limit} s exceeded and the task did not stop by itself; it was killed"
    );
    lost(spec, state, id, try_number, reason, at)
}

/// [`Command::Lost`] and [`Command::TimedOut`]: a running try ended without its runner; it
/// fails (retries apply), and the task's callback of that end is asked for when it has one.
fn lost(
    spec: &DagSpec,
    state: &RunState,
    id: TiId,
    try_number: i32,
    reason: String,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    current_try_in(state, &id.0, id.1, try_number, TiState::Running, "end")?;
    let task = task(spec, &id.0)?;
    let mut events = Vec::new();
    failed(
        state,
        task,
        &id,
        try_number,
        reason.clone(),
        at,
        &mut events,
    )?;
    let callback = match events.last() {
        Some(Event::TaskUpForRetry(_)) => TaskCallback::OnRetry,
        _ => TaskCallback::OnFailure,
    };
    if task.callbacks.contains(&callback) {
        let ti = state.key(&id);
        events.push(
            TaskCallbackRequested {
                ti,
                try_number,
                callback,
                reason,
            }
            .into(),
        );
    }
    Ok(events)
}

/// What a clear touches, by the rules Airflow's clear follows: a task named without a map
/// index is cleared whole, as is every task downstream of a target when asked, and the setups
/// a target runs within with their teardowns; a
/// `[task_id, map_index]` pair clears that instance only, unless its task is cleared whole.
/// [`Command::Clear`] applies it; the API's dry run shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClearScope {
    /// Every instance of these tasks, sorted.
    pub whole_tasks: Vec<String>,
    /// These instances only, sorted.
    pub instances: Vec<(String, i32)>,
}

impl ClearScope {
    /// The scope of clearing `task_ids` (of those in `only_map_indexes`, just those indexes),
    /// with everything downstream when `downstream`. Task ids are not checked here.
    pub fn of(
        spec: &DagSpec,
        task_ids: &[String],
        only_map_indexes: &BTreeMap<String, BTreeSet<i32>>,
        downstream: bool,
    ) -> Self {
        let mut whole: BTreeSet<String> = task_ids
            .iter()
            .filter(|id| !only_map_indexes.contains_key(*id))
            .cloned()
            .collect();
        if downstream {
            for id in task_ids {
                whole.extend(spec.all_downstream(id));
            }
        }
        let targets: BTreeSet<String> = task_ids.iter().cloned().collect();
        whole.extend(spec.setups_and_teardowns_to_clear(&targets, downstream));
        let instances = only_map_indexes
            .iter()
            .filter(|(id, _)| task_ids.contains(id) && !whole.contains(*id))
            .flat_map(|(id, indexes)| indexes.iter().map(move |i| (id.clone(), *i)))
            .collect();
        ClearScope {
            whole_tasks: whole.into_iter().collect(),
            instances,
        }
    }

    /// Every task this scope touches an instance of.
    pub fn tasks(&self) -> impl Iterator<Item = &String> {
        self.whole_tasks
            .iter()
            .chain(self.instances.iter().map(|(id, _)| id))
    }

    /// Whether the scope holds instance `id`.
    pub fn holds(&self, (task_id, map_index): &TiId) -> bool {
        self.whole_tasks.binary_search(task_id).is_ok()
            || self
                .instances
                .binary_search_by(|(t, i)| (t.as_str(), *i).cmp(&(task_id.as_str(), *map_index)))
                .is_ok()
    }
}

/// [`Command::Clear`]: the task instances of the [`ClearScope`] go back to pending; a finished
/// run runs again.
fn clear(
    spec: &DagSpec,
    state: &RunState,
    task_ids: &[String],
    only_map_indexes: &BTreeMap<String, BTreeSet<i32>>,
    downstream: bool,
) -> Result<Vec<Event>, Rejection> {
    for task_id in task_ids {
        task(spec, task_id)?;
    }
    let scope = ClearScope::of(spec, task_ids, only_map_indexes, downstream);
    let tasks: BTreeSet<&String> = scope.tasks().collect();
    let cleared: Vec<(&TiId, &TaskInstance)> = tasks
        .into_iter()
        .flat_map(|task_id| state.instances(task_id))
        .filter(|(id, _)| scope.holds(id))
        .collect();
    if let Some(((task_id, _), ti)) = cleared.iter().find(|(_, ti)| ti.state.is_in_flight()) {
        // Clearing what runs would need the attempt stopped first.
        return Err(illegal(task_id, ti.state, "clear"));
    }
    let mut events: Vec<Event> = Vec::new();
    for (id, ti) in cleared {
        if ti.state != TiState::Pending {
            events.push(TaskCleared { ti: state.key(id) }.into());
        }
    }
    if matches!(state.status, RunStatus::Success | RunStatus::Failed) && !events.is_empty() {
        events.push(
            RunCleared {
                dag_id: state.dag_id.clone(),
                run_id: state.run_id.clone(),
            }
            .into(),
        );
    }
    Ok(events)
}

/// [`Command::Mark`]: a task instance of an unfinished run is set to success or failed by hand;
/// `None` when it already is.
fn mark(state: &RunState, id: TiId, success: bool) -> Result<Option<Vec<Event>>, Rejection> {
    if matches!(state.status, RunStatus::Success | RunStatus::Failed) {
        return Err(Rejection::RunNotRunning(state.status));
    }
    let ti = state.ti(&id.0, id.1)?;
    let wanted = if success {
        TiState::Success
    } else {
        TiState::Failed
    };
    if ti.state == wanted {
        return Ok(None);
    }
    let (key, try_number) = (state.key(&id), ti.try_number);
    Ok(Some(vec![if success {
        TaskSucceeded {
            ti: key,
            try_number,
        }
        .into()
    } else {
        TaskFailed {
            ti: key,
            try_number,
            reason: "marked failed by a user".to_owned(),
        }
        .into()
    }]))
}

/// [`Command::Cancel`]: a queued or running try fails at once, without retries.
fn cancel(state: &RunState, id: TiId) -> Result<Vec<Event>, Rejection> {
    running(state)?;
    let ti = state.ti(&id.0, id.1)?;
    if !ti.state.is_in_flight() {
        return Err(illegal(&id.0, ti.state, "cancel"));
    }
    Ok(vec![
        TaskFailed {
            ti: state.key(&id),
            try_number: ti.try_number,
            reason: "cancelled by a user while it ran".to_owned(),
        }
        .into(),
    ])
}

/// [`Command::RetryDue`]: a try up for retry is scheduled again once its delay is over.
fn retry_due(
    state: &RunState,
    (task_id, map_index): TiId,
    try_number: i32,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let ti = current_try_in(
        state,
        &task_id,
        map_index,
        try_number,
        TiState::UpForRetry,
        "retry",
    )?;
    not_before_due(ti, &task_id, at)?;
    Ok(vec![
        TaskScheduled {
            ti: state.key(&(task_id, map_index)),
            try_number: try_number + 1,
        }
        .into(),
    ])
}

/// [`Command::Resume`]: a deferred try whose trigger fired, or a rescheduled try whose time
/// came, is scheduled again in the same try.
fn resume(
    state: &RunState,
    (task_id, map_index): TiId,
    try_number: i32,
    trigger_event: Option<serde_json::Value>,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    running(state)?;
    let ti = current_try(state, &task_id, map_index, try_number)?;
    if !matches!(ti.state, TiState::Deferred | TiState::UpForReschedule) {
        return Err(illegal(&task_id, ti.state, "resume"));
    }
    not_before_due(ti, &task_id, at)?;
    Ok(vec![
        TaskResumed {
            ti: state.key(&(task_id, map_index)),
            try_number,
            trigger_event,
            failure: None,
        }
        .into(),
    ])
}

/// [`Command::Answer`]: a try waiting for a person's answer carries on with it, whenever it
/// comes before the wait ends.
fn answered(
    state: &RunState,
    (task_id, map_index): TiId,
    try_number: i32,
    answer: serde_json::Value,
) -> Result<Vec<Event>, Rejection> {
    let ti = current_try_in(
        state,
        &task_id,
        map_index,
        try_number,
        TiState::Deferred,
        "answer",
    )?;
    if !matches!(ti.trigger, Some(DeferredTrigger::Person { .. })) {
        return Err(illegal(
            &task_id,
            ti.state,
            "answer (it waits for no person)",
        ));
    }
    Ok(vec![
        TaskResumed {
            ti: state.key(&(task_id, map_index)),
            try_number,
            trigger_event: Some(answer),
            failure: None,
        }
        .into(),
    ])
}

/// [`Command::EndFromTrigger`]: a deferred try whose time trigger ends it succeeds at its time.
fn end_from_trigger(
    state: &RunState,
    (task_id, map_index): TiId,
    try_number: i32,
    at: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let ti = current_try_in(
        state,
        &task_id,
        map_index,
        try_number,
        TiState::Deferred,
        "end",
    )?;
    if !ti.ends_at_due {
        return Err(illegal(&task_id, ti.state, "end from its trigger"));
    }
    not_before_due(ti, &task_id, at)?;
    Ok(vec![succeeded(
        state.key(&(task_id, map_index)),
        try_number,
    )])
}

/// [`Command::EndedByTrigger`]: a deferred try's trigger ended its task.
fn ended_by_trigger(
    spec: &DagSpec,
    state: &RunState,
    id: TiId,
    try_number: i32,
    end: TriggerEnd,
    xcoms: Vec<XComPush>,
) -> Result<Vec<Event>, Rejection> {
    current_try_in(
        state,
        &id.0,
        id.1,
        try_number,
        TiState::Deferred,
        "end from its trigger",
    )?;
    let task = task(spec, &id.0)?;
    let key = state.key(&id);
    let mut events: Vec<Event> = xcoms
        .into_iter()
        .map(|push| {
            XComPushed {
                ti: key.clone(),
                try_number,
                key: push.key,
                value_hash: push.value_hash,
                size_bytes: push.size_bytes,
                length: push.length,
            }
            .into()
        })
        .collect();
    let failed_reason = "its trigger ended it failed (TaskFailedEvent), without a retry";
    // As Airflow, which has its DAG processor run the failure callback of such an end (no
    // runner is there to run it); a success asks for none.
    let callback = (end == TriggerEnd::Failed && task.callbacks.contains(&TaskCallback::OnFailure))
        .then(|| TaskCallbackRequested {
            ti: key.clone(),
            try_number,
            callback: TaskCallback::OnFailure,
            reason: failed_reason.to_owned(),
        });
    events.push(match end {
        TriggerEnd::Success => succeeded(key, try_number),
        TriggerEnd::Failed => TaskFailed {
            ti: key,
            try_number,
            reason: failed_reason.to_owned(),
        }
        .into(),
        TriggerEnd::Skipped => TaskSkipped {
            ti: key,
            reason: Some("its trigger ended it skipped (TaskSkippedEvent)".to_owned()),
        }
        .into(),
    });
    events.extend(callback.map(Event::from));
    Ok(events)
}

/// [`Command::DeferralFailed`]: a deferred try's wait failed; the try carries on, to fail.
fn deferral_failed(
    state: &RunState,
    id: TiId,
    try_number: i32,
    reason: String,
) -> Result<Vec<Event>, Rejection> {
    current_try_in(
        state,
        &id.0,
        id.1,
        try_number,
        TiState::Deferred,
        "fail a deferral",
    )?;
    Ok(vec![
        TaskResumed {
            ti: state.key(&id),
            try_number,
            trigger_event: None,
            failure: Some(reason),
        }
        .into(),
    ])
}

/// The events of marking a whole run (see [`Command::MarkRun`]); none when it and every
/// instance already are so. As Airflow's mark, a teardown not done yet is left to do its work,
/// and the run ends when it does.
fn mark_run(spec: &DagSpec, state: &RunState, success: bool) -> Vec<Event> {
    let wanted = if success {
        RunStatus::Success
    } else {
        RunStatus::Failed
    };
    let mut events: Vec<Event> = Vec::new();
    let mut teardowns_left = false;
    for (id, ti) in &state.tis {
        if !ti.state.is_final() && spec.tasks.get(&id.0).is_some_and(|t| t.role.is_teardown()) {
            teardowns_left = true;
            continue;
        }
        let key = state.key(id);
        let try_number = ti.try_number;
        match (success, ti.state) {
            (true, TiState::Success | TiState::Skipped) => {}
            (true, _) => events.push(
                TaskSucceeded {
                    ti: key,
                    try_number,
                }
                .into(),
            ),
            // Airflow fails what runs, and what waits deferred or to be rescheduled.
            (
                false,
                TiState::Queued | TiState::Running | TiState::Deferred | TiState::UpForReschedule,
            ) => events.push(
                TaskFailed {
                    ti: key,
                    try_number,
                    reason: "the run was marked failed by a user".to_owned(),
                }
                .into(),
            ),
            (false, TiState::Pending | TiState::Scheduled | TiState::UpForRetry) => events.push(
                TaskSkipped {
                    ti: key,
                    reason: Some("the run was marked failed by a user".to_owned()),
                }
                .into(),
            ),
            (false, _) => {}
        }
    }
    if teardowns_left {
        return with_consequences(spec, state, events);
    }
    // A run can already hold the wanted state with instances that do not (a failed task that
    // is no leaf leaves the run successful); Airflow's mark still sets those instances.
    if state.status == wanted {
        return events;
    }
    let (dag_id, run_id) = (state.dag_id.clone(), state.run_id.clone());
    events.push(if success {
        RunSucceeded { dag_id, run_id }.into()
    } else {
        RunFailed {
            dag_id,
            run_id,
            reason: Some("marked failed by a user".to_owned()),
        }
        .into()
    });
    events
}

/// The events of a try's end: success (with branch or short-circuit skips), retry or failure.
fn finished(
    spec: &DagSpec,
    state: &RunState,
    task: &TaskSpec,
    id: &TiId,
    report: Report,
    events: &mut Vec<Event>,
) -> Result<(), Rejection> {
    let key = state.key(id);
    let Report {
        try_number,
        outcome,
        at,
        outlet_events,
    } = report;
    let extras = &outlet_events;
    match (outcome, task.kind) {
        (Outcome::Success, TaskKind::Plain) => {
            succeeded_updating_outlets(task, key, try_number, extras, events)
        }
        (Outcome::Branch(chosen), TaskKind::Branch) => {
            let unknown: Vec<&String> = chosen
                .iter()
                .filter(|c| !task.downstream.contains(c))
                .collect();
            if !unknown.is_empty() {
                // Airflow fails a branch that names tasks it cannot follow.
                let reason = format!(
                    "branch returned {unknown:?}, which are not directly downstream of {:?}",
                    task.task_id
                );
                return failed(state, task, id, try_number, reason, at, events);
            }
            succeeded_updating_outlets(task, key, try_number, extras, events);
            for down in task.downstream.iter().filter(|d| !chosen.contains(d)) {
                let reason = format!("not chosen by branch {:?}", task.task_id);
                skip_pending(state, down, reason, events);
            }
        }
        (
            Outcome::ShortCircuit(proceed),
            TaskKind::ShortCircuit {
                ignore_downstream_trigger_rules,
            },
        ) => {
            succeeded_updating_outlets(task, key, try_number, extras, events);
            if !proceed {
                short_circuit(spec, state, task, ignore_downstream_trigger_rules, events);
            }
        }
        (Outcome::Failed { reason }, _) => {
            return failed(state, task, id, try_number, reason, at, events);
        }
        (Outcome::FailedWithoutRetry { reason }, _) => events.push(
            TaskFailed {
                ti: key,
                try_number,
                reason,
            }
            .into(),
        ),
        (Outcome::Skipped { reason }, _) => events.push(
            TaskSkipped {
                ti: key,
                reason: Some(reason),
            }
            .into(),
        ),
        (Outcome::Deferred(deferral), _) => events.push(
            TaskDeferred {
                ti: key,
                try_number,
                trigger: deferral.trigger,
                next_method: deferral.next_method,
                next_kwargs: deferral.next_kwargs,
                timeout_at: deferral.timeout_at,
            }
            .into(),
        ),
        (Outcome::Rescheduled { at }, _) => events.push(
            TaskRescheduled {
                ti: key,
                try_number,
                reschedule_at: at,
            }
            .into(),
        ),
        (outcome, kind) => {
            return Err(Rejection::BadOutcome(format!(
                "{outcome:?} does not fit task {:?}, a {kind:?} task",
                task.task_id
            )));
        }
    }
    Ok(())
}

fn succeeded(ti: TaskInstanceKey, try_number: i32) -> Event {
    TaskSucceeded { ti, try_number }.into()
}

/// A try's success, and an asset event for each of its task's outlets, as Airflow records them
/// when a task instance succeeds. The DAGs each queues are for the writer to name: this run's
/// state does not know them.
fn succeeded_updating_outlets(
    task: &TaskSpec,
    ti: TaskInstanceKey,
    try_number: i32,
    outlet_events: &OutletEvents,
    events: &mut Vec<Event>,
) {
    events.push(succeeded(ti.clone(), try_number));
    for asset in &task.outlets {
        let key = asset.key();
        let extra = outlet_events.extras.get(&key).cloned();
        events.push(
            AssetEventRecorded {
                asset: key,
                group: asset.group.clone(),
                extra: extra.unwrap_or_else(|| serde_json::Value::Object(Default::default())),
                source: Some(ti.clone()),
                source_aliases: Vec::new(),
                queued: Vec::new(),
            }
            .into(),
        );
    }
    events.extend(through_aliases(task, &ti, &outlet_events.through_aliases));
}

/// The asset events a try added through its task's outlet aliases: one per asset and extra,
/// naming every alias it came through, as Airflow records them (adds through an alias the task
/// does not declare are ignored).
fn through_aliases(task: &TaskSpec, ti: &TaskInstanceKey, added: &[AliasEvent]) -> Vec<Event> {
    let mut grouped: Vec<(&AliasEvent, BTreeSet<String>)> = Vec::new();
    for add in added
        .iter()
        .filter(|a| task.outlet_aliases.contains(&a.alias))
    {
        let same = |(seen, _): &&mut (&AliasEvent, BTreeSet<String>)| {
            seen.asset == add.asset && seen.extra == add.extra
        };
        match grouped.iter_mut().find(same) {
            Some((_, aliases)) => {
                aliases.insert(add.alias.clone());
            }
            None => grouped.push((add, BTreeSet::from([add.alias.clone()]))),
        }
    }
    grouped
        .into_iter()
        .map(|(add, aliases)| {
            AssetEventRecorded {
                asset: add.asset.clone(),
                group: add.group.clone(),
                extra: add.extra.clone(),
                source: Some(ti.clone()),
                source_aliases: aliases.into_iter().collect(),
                queued: Vec::new(),
            }
            .into()
        })
        .collect()
}

/// Skips what a short-circuit task that said "stop" holds back: its direct downstream, or
/// everything downstream when their trigger rules are to be ignored.
fn short_circuit(
    spec: &DagSpec,
    state: &RunState,
    task: &TaskSpec,
    ignore_downstream_trigger_rules: bool,
    events: &mut Vec<Event>,
) {
    let targets: BTreeSet<String> = if ignore_downstream_trigger_rules {
        spec.all_downstream(&task.task_id)
    } else {
        task.downstream.iter().cloned().collect()
    };
    for down in targets {
        let reason = format!("short-circuited by {:?}", task.task_id);
        skip_pending(state, &down, reason, events);
    }
}

/// Skips every instance of `task_id` that has not run yet.
fn skip_pending(state: &RunState, task_id: &str, reason: String, events: &mut Vec<Event>) {
    for (ti_id, ti) in state.instances(task_id) {
        if ti.state == TiState::Pending {
            events.push(
                TaskSkipped {
                    ti: state.key(ti_id),
                    reason: Some(reason.clone()),
                }
                .into(),
            );
        }
    }
}

fn failed(
    state: &RunState,
    task: &TaskSpec,
    id: &TiId,
    try_number: i32,
    reason: String,
    at: DateTime<Utc>,
    events: &mut Vec<Event>,
) -> Result<(), Rejection> {
    let ti = state.key(id);
    if task.retry.should_retry(try_number) {
        let identity = format!(
            "{}#{}#{}#{}",
            state.dag_id, task.task_id, id.1, state.run_id
        );
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
        for (id, ti) in &scratch.tis {
            if ti.state != TiState::Pending {
                continue;
            }
            let task = &spec.tasks[&id.0];
            let key = scratch.key(id);
            match scratch.verdict(spec, task, id.1) {
                Verdict::Wait => {}
                Verdict::Run if task.mapped.is_some() && id.1 == -1 => {
                    new.push(expand(&scratch, task, key))
                }
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
        let leaf_failed = spec.outcome_tasks().into_iter().any(|leaf| {
            scratch
                .instances(&leaf.task_id)
                .any(|(_, ti)| matches!(ti.state, TiState::Failed | TiState::UpstreamFailed))
        });
        let (callback, reason) = if leaf_failed {
            (DagCallback::OnFailure, "task_failure")
        } else {
            (DagCallback::OnSuccess, "success")
        };
        events.push(if leaf_failed {
            RunFailed {
                dag_id: dag_id.clone(),
                run_id: run_id.clone(),
                reason: Some("a leaf task failed or its upstream failed".to_owned()),
            }
            .into()
        } else {
            RunSucceeded {
                dag_id: dag_id.clone(),
                run_id: run_id.clone(),
            }
            .into()
        });
        // As Airflow's scheduler asks its DAG processor, with Airflow's reason; a run a user
        // marks asks for none.
        if spec.callbacks.contains(&callback) {
            events.push(
                DagCallbackRequested {
                    dag_id,
                    run_id,
                    callback,
                    reason: reason.to_owned(),
                }
                .into(),
            );
        }
    }
}

/// Expands a mapped task whose upstream is done: one instance per combination of its mapped
/// arguments (`TaskMapped`), a skip for an empty expansion, a failure when it maps over a
/// result that is not a list or dict.
fn expand(state: &RunState, task: &TaskSpec, placeholder: TaskInstanceKey) -> Event {
    let mut count: i64 = 1;
    for source in task.mapped.iter().flatten() {
        let length = match source {
            MapLength::Literal(n) => *n as i64,
            MapLength::FromTask(from) => {
                let instances: Vec<&TaskInstance> =
                    state.instances(from).map(|(_, ti)| ti).collect();
                let expanded = state.instances(from).any(|((_, index), _)| *index >= 0);
                if expanded {
                    // Mapping over a mapped task: one item per instance that produced a result.
                    instances
                        .iter()
                        .filter(|ti| ti.state == TiState::Success)
                        .count() as i64
                } else {
                    match instances.first() {
                        Some(ti) if ti.state == TiState::Success => match ti.result_len {
                            Some(n) => n,
                            None => {
                                return TaskFailed {
                                    ti: placeholder,
                                    try_number: 0,
                                    reason: format!(
                                        "cannot map over the result of {from:?}: it is not a list or a dict"
                                    ),
                                }
                                .into();
                            }
                        },
                        // An upstream that did not succeed has no result to map over.
                        _ => 0,
                    }
                }
            }
        };
        count = count.saturating_mul(length.max(0));
    }
    if count == 0 {
        return TaskSkipped {
            ti: placeholder,
            reason: Some("mapped over an empty list".to_owned()),
        }
        .into();
    }
    TaskMapped {
        ti: placeholder,
        count: count.min(i32::MAX as i64) as i32,
    }
    .into()
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

/// The current try of a task instance of a running run, in the state a command needs.
fn current_try_in<'a>(
    state: &'a RunState,
    task_id: &str,
    map_index: i32,
    try_number: i32,
    expected: TiState,
    command: &'static str,
) -> Result<&'a TaskInstance, Rejection> {
    running(state)?;
    let ti = current_try(state, task_id, map_index, try_number)?;
    if ti.state != expected {
        return Err(illegal(task_id, ti.state, command));
    }
    Ok(ti)
}

fn current_try<'a>(
    state: &'a RunState,
    task_id: &str,
    map_index: i32,
    try_number: i32,
) -> Result<&'a TaskInstance, Rejection> {
    let ti = state.ti(task_id, map_index)?;
    if ti.try_number != try_number {
        return Err(Rejection::StaleTry {
            task_id: task_id.to_owned(),
            reported: try_number,
            current: ti.try_number,
        });
    }
    Ok(ti)
}

/// Refuses a timer's command that came before the instance's `due_at`.
fn not_before_due(ti: &TaskInstance, task_id: &str, at: DateTime<Utc>) -> Result<(), Rejection> {
    match ti.due_at {
        Some(due) if at < due => Err(Rejection::NotDue {
            task_id: task_id.to_owned(),
            due,
        }),
        _ => Ok(()),
    }
}

fn illegal(task_id: &str, state: TiState, command: &'static str) -> Rejection {
    Rejection::IllegalTransition {
        task_id: task_id.to_owned(),
        state,
        command,
    }
}
