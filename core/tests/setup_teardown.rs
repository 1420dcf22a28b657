//! Setup and teardown tasks: when a teardown runs, what a setup holds back, what decides the
//! run, what a clear takes along — each as Airflow 3.2 does it.

mod common;

use std::collections::BTreeMap;

use common::*;
use leoflow_core::run::{ClearScope, Command, Outcome, RunState, RunStatus, TiState};
use leoflow_core::setup_teardown::TaskRole;
use leoflow_core::spec::{DagSpec, TaskKind, TaskSpec};
use leoflow_core::trigger::TriggerRule::{self, *};

fn work(id: &str, upstream: &[&str], rule: TriggerRule) -> TaskSpec {
    task(id, upstream, rule, 0, TaskKind::Plain)
}

fn setup(id: &str, upstream: &[&str]) -> TaskSpec {
    TaskSpec {
        role: TaskRole::Setup,
        ..work(id, upstream, AllSuccess)
    }
}

fn teardown(id: &str, upstream: &[&str], fails_run: bool) -> TaskSpec {
    TaskSpec {
        role: TaskRole::Teardown { fails_run },
        ..work(id, upstream, AllDoneSetupSuccess)
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        reason: "boom".into(),
    }
}

fn started(spec: &DagSpec) -> RunState {
    let mut state = RunState::queued(spec, "r1");
    apply(spec, &mut state, Command::Start);
    state
}

/// `create >> work >> delete`, `delete` being `create`'s teardown.
fn bracket(fails_run: bool) -> DagSpec {
    spec(vec![
        setup("create", &[]),
        work("work", &["create"], AllSuccess),
        teardown("delete", &["work", "create"], fails_run),
    ])
}

#[test]
fn a_teardown_runs_after_its_work_fails_and_the_run_fails_by_the_work() {
    let spec = bracket(false);
    let mut state = started(&spec);
    run_task(&spec, &mut state, "create", Outcome::Success);
    let events = run_task(&spec, &mut state, "work", failed());
    assert_eq!(types(&events), ["TaskFailed:work", "TaskScheduled:delete"]);
    let events = run_task(&spec, &mut state, "delete", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:delete", "RunFailed"]);
}

#[test]
fn a_failing_teardown_leaves_the_run_successful_unless_it_fails_the_run() {
    for (fails_run, outcome) in [(false, "RunSucceeded"), (true, "RunFailed")] {
        let spec = bracket(fails_run);
        let mut state = started(&spec);
        run_task(&spec, &mut state, "create", Outcome::Success);
        run_task(&spec, &mut state, "work", Outcome::Success);
        let events = run_task(&spec, &mut state, "delete", failed());
        assert_eq!(
            types(&events),
            ["TaskFailed:delete", outcome],
            "{fails_run}"
        );
    }
}

#[test]
fn a_failed_setup_fails_its_teardown_upstream_and_the_run() {
    let spec = bracket(false);
    let mut state = started(&spec);
    let events = run_task(&spec, &mut state, "create", failed());
    assert_eq!(
        types(&events),
        [
            "TaskFailed:create",
            "TaskUpstreamFailed:work",
            "TaskUpstreamFailed:delete",
            "RunFailed"
        ]
    );
}

#[test]
fn a_task_waits_for_the_setups_it_runs_within_not_only_its_direct_upstream() {
    // `report` runs whatever `work` did, but within `create`: a failed `create` fails it
    // upstream, where `all_done` alone would have run it.
    let spec = spec(vec![
        setup("create", &[]),
        work("work", &["create"], AllSuccess),
        work("report", &["work"], AllDone),
        teardown("delete", &["report", "create"], false),
    ]);
    assert_eq!(spec.tasks["report"].setups.indirect_setups, ["create"]);
    let mut state = started(&spec);
    let events = run_task(&spec, &mut state, "create", failed());
    assert_eq!(
        types(&events),
        [
            "TaskFailed:create",
            "TaskUpstreamFailed:report",
            "TaskUpstreamFailed:work",
            "TaskUpstreamFailed:delete",
            "RunFailed"
        ]
    );
}

#[test]
fn a_teardown_waits_for_every_task_between_its_setup_and_it() {
    // `merge` goes on the first success, but `delete` waits for `slow` too.
    let spec = spec(vec![
        setup("create", &[]),
        work("fast", &["create"], AllSuccess),
        work("slow", &["create"], AllSuccess),
        work("merge", &["fast", "slow"], OneSuccess),
        teardown("delete", &["merge", "create"], false),
    ]);
    assert_eq!(spec.tasks["delete"].setups.scope, ["fast", "slow"]);
    let mut state = started(&spec);
    run_task(&spec, &mut state, "create", Outcome::Success);
    let slow = start_instance(&spec, &mut state, "slow", -1);
    run_task(&spec, &mut state, "fast", Outcome::Success);
    let events = run_task(&spec, &mut state, "merge", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:merge"]);
    assert_eq!(state.tis[&("delete".into(), -1)].state, TiState::Pending);
    let events = finish_instance(&spec, &mut state, "slow", -1, slow, Outcome::Success);
    assert_eq!(
        types(&events),
        ["TaskSucceeded:slow", "TaskScheduled:delete"]
    );
    run_task(&spec, &mut state, "delete", Outcome::Success);
    assert_eq!(state.status, RunStatus::Success);
}

#[test]
fn clearing_a_task_clears_the_setups_it_runs_within_and_their_teardowns() {
    let spec = spec(vec![
        setup("create", &[]),
        work("work", &["create"], AllSuccess),
        teardown("delete", &["work", "create"], false),
        work("after", &["delete"], AllSuccess),
        setup("unrelated", &[]),
        teardown("unrelated_teardown", &["unrelated"], false),
    ]);
    let scope = |targets: &[&str], downstream: bool| {
        let ids: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        ClearScope::of(&spec, &ids, &BTreeMap::new(), downstream).whole_tasks
    };
    assert_eq!(scope(&["work"], false), ["create", "delete", "work"]);
    // A setup alone takes its teardowns along; a teardown alone goes alone.
    assert_eq!(scope(&["create"], false), ["create", "delete"]);
    assert_eq!(scope(&["delete"], false), ["delete"]);
    assert_eq!(
        scope(&["work"], true),
        ["after", "create", "delete", "work"]
    );
    // A task downstream of the teardown is outside the bracket.
    assert_eq!(scope(&["after"], false), ["after"]);
}

#[test]
fn a_dag_without_setups_links_nothing() {
    let spec = spec(vec![
        work("a", &[], AllSuccess),
        work("b", &["a"], AllDoneSetupSuccess),
    ]);
    assert!(spec.tasks.values().all(|t| t.setups == Default::default()));
    let mut state = started(&spec);
    let events = run_task(&spec, &mut state, "a", failed());
    // Without setups, `all_done_setup_success` is `all_done`.
    assert_eq!(types(&events), ["TaskFailed:a", "TaskScheduled:b"]);
}

#[test]
fn a_run_marked_by_hand_leaves_its_teardown_to_do_its_work() {
    let spec = bracket(false);
    let mut state = started(&spec);
    run_task(&spec, &mut state, "create", Outcome::Success);
    start_instance(&spec, &mut state, "work", -1);
    let events = apply(&spec, &mut state, Command::MarkRun { success: false });
    // The work fails; the teardown, still pending, is not skipped but scheduled.
    assert_eq!(types(&events), ["TaskFailed:work", "TaskScheduled:delete"]);
    assert_eq!(state.status, RunStatus::Running);
    let events = run_task(&spec, &mut state, "delete", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:delete", "RunFailed"]);

    // Marked successful while its teardown runs: the run ends when the teardown does.
    let mut state = started(&spec);
    run_task(&spec, &mut state, "create", Outcome::Success);
    run_task(&spec, &mut state, "work", Outcome::Success);
    let delete = start_instance(&spec, &mut state, "delete", -1);
    let events = apply(&spec, &mut state, Command::MarkRun { success: true });
    assert!(events.is_empty(), "{:?}", types(&events));
    let events = finish_instance(&spec, &mut state, "delete", -1, delete, failed());
    assert_eq!(types(&events), ["TaskFailed:delete", "RunSucceeded"]);
}
