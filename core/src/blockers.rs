//! Why a task instance is not running, as Airflow's task-instance dependencies route lists it
//! (`GET …/taskInstances/{task_id}/dependencies`, the UI's "Dependencies Blocking Task From
//! Getting Scheduled"): each blocker has Airflow's dependency name and a reason.

use chrono::{DateTime, Utc};

use crate::run::{RunState, RunStatus, TaskInstance, TiState};
use crate::spec::{DagSpec, TaskSpec};
use crate::trigger::{TriggerRule, Verdict};

/// One reason a task instance does not run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocker {
    /// Airflow's name of the dependency (`Trigger Rule`, `Pool Slots Available`, …).
    pub name: &'static str,
    /// Why it is not met.
    pub reason: String,
}

/// How full a pool is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolUse {
    /// The pool.
    pub name: String,
    /// Its slots not taken by queued or running task instances.
    pub open_slots: i64,
}

/// What the blockers of a task instance are judged against, besides its run.
#[derive(Debug, Clone)]
pub struct Surroundings {
    /// Whether the DAG is paused.
    pub dag_paused: bool,
    /// The DAG's `max_active_tasks`, and its task instances queued or running now.
    pub active_tasks: (i64, i64),
    /// The task's pool.
    pub pool: PoolUse,
    /// Now.
    pub now: DateTime<Utc>,
}

/// The blockers of task instance (`task_id`, `map_index`) of `state`; empty when nothing
/// stands in its way (or it is unknown).
pub fn blockers(
    spec: &DagSpec,
    state: &RunState,
    task_id: &str,
    map_index: i32,
    around: &Surroundings,
) -> Vec<Blocker> {
    let (Some(task), Some(ti)) = (
        spec.tasks.get(task_id),
        state.tis.get(&(task_id.to_owned(), map_index)),
    ) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    state_blockers(spec, state, ti, around, &mut found);
    if ti.state == TiState::Pending {
        trigger_rule_blocker(spec, state, task, map_index, &mut found);
    }
    if matches!(ti.state, TiState::Pending | TiState::Scheduled) {
        capacity_blockers(spec, task, around, &mut found);
    }
    found
}

/// What the instance's own state, its DAG's pause and its run's state hold up.
fn state_blockers(
    spec: &DagSpec,
    state: &RunState,
    ti: &TaskInstance,
    around: &Surroundings,
    found: &mut Vec<Blocker>,
) {
    let mut add = |name, reason: String| found.push(Blocker { name, reason });
    if !matches!(
        ti.state,
        TiState::Pending | TiState::Scheduled | TiState::UpForRetry | TiState::UpForReschedule
    ) {
        add(
            "Task Instance State",
            format!("Task is in the '{}' state.", ti.state.airflow_name()),
        );
    }
    if around.dag_paused {
        add(
            "Dag Not Paused",
            format!("Task's DAG '{}' is paused.", spec.dag_id),
        );
    }
    if state.status != RunStatus::Running {
        add(
            "Dagrun Running",
            format!(
                "Task instance's dagrun was not in the '{}' state but in the state '{}'.",
                RunStatus::Running.airflow_name(),
                state.status.airflow_name()
            ),
        );
    }
    if ti.state == TiState::UpForRetry
        && let Some(at) = ti.due_at.filter(|at| *at > around.now)
    {
        add(
            "Not In Retry Period",
            format!(
                "Task is not ready for retry yet but will be retried automatically. Current \
                 date is {} and task will be retried at {}.",
                around.now.to_rfc3339(),
                at.to_rfc3339()
            ),
        );
    }
    if ti.state == TiState::UpForReschedule
        && let Some(at) = ti.due_at.filter(|at| *at > around.now)
    {
        add(
            "Ready To Reschedule",
            format!(
                "Task is not ready for reschedule yet but will be rescheduled automatically. \
                 Current date is {} and task will be rescheduled at {}.",
                around.now.to_rfc3339(),
                at.to_rfc3339()
            ),
        );
    }
}

/// A pending instance's trigger rule, while its upstream has not decided it.
fn trigger_rule_blocker(
    spec: &DagSpec,
    state: &RunState,
    task: &TaskSpec,
    map_index: i32,
    found: &mut Vec<Blocker>,
) {
    let mut add = |name, reason: String| found.push(Blocker { name, reason });
    if state.verdict(spec, task, map_index) != Verdict::Wait {
        return;
    }
    let up = state.upstream_counts(spec, task, map_index);
    if task.trigger_rule.evaluate(&up) == Verdict::Wait {
        add(
            "Trigger Rule",
            format!(
                "Task's trigger rule '{}' is not met yet: of {} upstream task instances, \
                 {} succeeded, {} skipped, {} failed, {} upstream_failed, {} not done; \
                 upstream_task_ids={:?}",
                rule_name(task.trigger_rule),
                up.total,
                up.success,
                up.skipped,
                up.failed,
                up.upstream_failed,
                up.total - up.done(),
                task.upstream
            ),
        );
    } else if !state.all_done(&task.setups.scope) {
        add(
            "Trigger Rule",
            format!(
                "Task's trigger rule '{}' requires all tasks between setup and teardown to \
                 have completed; in_scope_task_ids={:?}",
                rule_name(task.trigger_rule),
                task.setups.scope
            ),
        );
    } else {
        add(
            "Trigger Rule",
            format!(
                "All setup tasks must complete successfully. Relevant setups: {:?}",
                task.setups.indirect_setups
            ),
        );
    }
}

/// The pool's open slots and the DAG's cap on running tasks.
fn capacity_blockers(
    spec: &DagSpec,
    task: &TaskSpec,
    around: &Surroundings,
    found: &mut Vec<Blocker>,
) {
    let mut add = |name, reason: String| found.push(Blocker { name, reason });
    if around.pool.open_slots < i64::from(task.pool_slots) {
        add(
            "Pool Slots Available",
            format!(
                "Not scheduling since there are {} open slots in pool {} and require {} \
                 pool slots",
                around.pool.open_slots.max(0),
                around.pool.name,
                task.pool_slots
            ),
        );
    }
    let (limit, active) = around.active_tasks;
    if active >= limit {
        add(
            "Task Concurrency",
            format!(
                "The maximum number of running tasks ({limit}) for this task's DAG '{}' \
                 has been reached.",
                spec.dag_id
            ),
        );
    }
}

fn rule_name(rule: TriggerRule) -> String {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}
