//! Mapped task groups: every task of the group runs once per map index of the group, and an
//! instance waits only for the same map index of the group's other tasks, as in Airflow.

mod common;

use common::*;
use leoflow_core::run::{Command, Outcome, RunState, RunStatus, TiState};
use leoflow_core::spec::{DagSpec, MapLength, TaskKind, TaskSpec};
use leoflow_core::trigger::TriggerRule::*;

fn in_group(id: &str, upstream: &[&str], sources: Vec<MapLength>) -> TaskSpec {
    TaskSpec {
        mapped: Some(sources),
        mapped_group: Some("g".into()),
        ..task(id, upstream, AllSuccess, 0, TaskKind::Plain)
    }
}

/// `nums >> g.add >> g.double >> total`, the group `g` mapped over the result of `nums`.
fn group_over_a_result() -> DagSpec {
    let over_nums = || vec![MapLength::FromTask("nums".into())];
    spec(vec![
        task("nums", &[], AllSuccess, 0, TaskKind::Plain),
        in_group("g.add", &["nums"], over_nums()),
        in_group("g.double", &["g.add"], over_nums()),
        task("total", &["g.double"], AllDone, 0, TaskKind::Plain),
    ])
}

fn succeed_with_length(spec: &DagSpec, state: &mut RunState, task_id: &str, length: i64) {
    let try_number = start_instance(spec, state, task_id, -1);
    apply(
        spec,
        state,
        push(task_id.into(), -1, try_number, Some(length)),
    );
    finish_instance(spec, state, task_id, -1, try_number, Outcome::Success);
}

fn ti_state(state: &RunState, task_id: &str, map_index: i32) -> TiState {
    state.tis[&(task_id.to_owned(), map_index)].state
}

#[test]
fn each_map_index_of_a_group_goes_on_its_own() {
    let spec = group_over_a_result();
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    succeed_with_length(&spec, &mut state, "nums", 3);
    // Both tasks of the group expand once the group's length is known.
    for task_id in ["g.add", "g.double"] {
        let indexes: Vec<i32> = state.instances(task_id).map(|((_, i), _)| *i).collect();
        assert_eq!(indexes, [0, 1, 2], "{task_id}");
    }
    assert_eq!(ti_state(&state, "g.double", 1), TiState::Pending);

    // `add` 1 succeeding lets `double` 1 go, while the other indexes still run.
    let events = run_instance(&spec, &mut state, "g.add", 1, Outcome::Success);
    assert_eq!(
        types(&events),
        ["TaskSucceeded:g.add", "TaskScheduled:g.double"]
    );
    assert_eq!(events[1].task_instance().unwrap().map_index, 1);

    // `add` 0 failing fails `double` 0 upstream, and no other index.
    let events = run_instance(
        &spec,
        &mut state,
        "g.add",
        0,
        Outcome::Failed {
            reason: "boom".into(),
        },
    );
    assert_eq!(
        types(&events),
        ["TaskFailed:g.add", "TaskUpstreamFailed:g.double"]
    );
    assert_eq!(ti_state(&state, "g.double", 2), TiState::Pending);
    run_instance(&spec, &mut state, "g.add", 2, Outcome::Success);
    run_instance(&spec, &mut state, "g.double", 1, Outcome::Success);
    // The task after the group waits for every index.
    assert_eq!(ti_state(&state, "total", -1), TiState::Pending);
    let events = run_instance(&spec, &mut state, "g.double", 2, Outcome::Success);
    assert_eq!(
        types(&events),
        ["TaskSucceeded:g.double", "TaskScheduled:total"]
    );
    run_task(&spec, &mut state, "total", Outcome::Success);
    assert_eq!(state.status, RunStatus::Success);
}

#[test]
fn a_group_task_not_using_what_the_group_maps_over_still_waits_for_it() {
    // `g.fixed` takes nothing from `nums`, yet runs once per element of its result.
    let over_nums = || vec![MapLength::FromTask("nums".into())];
    let spec = spec(vec![
        task("nums", &[], AllSuccess, 0, TaskKind::Plain),
        in_group("g.fixed", &[], over_nums()),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    let events = apply(&spec, &mut state, Command::Start);
    assert_eq!(types(&events), ["RunStarted", "TaskScheduled:nums"]);
    succeed_with_length(&spec, &mut state, "nums", 2);
    let indexes: Vec<i32> = state.instances("g.fixed").map(|((_, i), _)| *i).collect();
    assert_eq!(indexes, [0, 1]);

    // A failed source fails the group's tasks upstream instead.
    let mut state = RunState::queued(&spec, "r2");
    apply(&spec, &mut state, Command::Start);
    let events = run_task(
        &spec,
        &mut state,
        "nums",
        Outcome::Failed {
            reason: "boom".into(),
        },
    );
    assert_eq!(
        types(&events),
        ["TaskFailed:nums", "TaskUpstreamFailed:g.fixed", "RunFailed"]
    );
}

#[test]
fn an_index_waits_for_the_same_index_of_a_group_task_not_expanded_yet() {
    // `g.late` waits for `slow` (outside the group) before it expands; `g.after` expands at
    // once, and its instances wait for `g.late`'s placeholder until then.
    let spec = spec(vec![
        task("slow", &[], AllSuccess, 0, TaskKind::Plain),
        in_group("g.late", &["slow"], vec![MapLength::Literal(2)]),
        in_group("g.after", &["g.late"], vec![MapLength::Literal(2)]),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    assert_eq!(ti_state(&state, "g.after", 0), TiState::Pending);
    assert_eq!(ti_state(&state, "g.late", -1), TiState::Pending);
    run_task(&spec, &mut state, "slow", Outcome::Success);
    assert_eq!(ti_state(&state, "g.late", 0), TiState::Scheduled);
    assert_eq!(ti_state(&state, "g.after", 0), TiState::Pending);
}
