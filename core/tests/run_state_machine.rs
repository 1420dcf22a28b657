//! The dag-run state machine: scenarios, every transition, fencing.

mod common;

use chrono::Duration;
use common::*;
use leoflow_core::run::{
    Command, Deferral, Outcome, Rejection, RunState, RunStatus, TiState, decide,
};
use leoflow_core::spec::{DagSpec, MapLength, TaskKind, TaskSpec};
use leoflow_core::trigger::TriggerRule;
use leoflow_events::Event;
use leoflow_events::catalog::DeferredTrigger;

use TriggerRule::*;

#[test]
fn a_chain_runs_in_order_and_the_run_succeeds() {
    let spec = spec(vec![
        task("a", &[], AllSuccess, 0, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
        task("c", &["b"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    assert_eq!(
        types(&apply(&spec, &mut state, Command::Start)),
        ["RunStarted", "TaskScheduled:a"]
    );
    assert_eq!(
        types(&run_task(&spec, &mut state, "a", Outcome::Success)),
        ["TaskSucceeded:a", "TaskScheduled:b"]
    );
    run_task(&spec, &mut state, "b", Outcome::Success);
    assert_eq!(
        types(&run_task(&spec, &mut state, "c", Outcome::Success)),
        ["TaskSucceeded:c", "RunSucceeded"]
    );
    assert_eq!(state.status, RunStatus::Success);
}

#[test]
fn a_failure_cascades_as_upstream_failed_and_fails_the_run() {
    let spec = spec(vec![
        task("a", &[], AllSuccess, 0, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
        task("c", &["b"], AllSuccess, 0, TaskKind::Plain),
        task("cleanup", &["c"], AllDone, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = run_task(
        &spec,
        &mut state,
        "a",
        Outcome::Failed {
            reason: "boom".into(),
        },
    );
    assert_eq!(
        types(&events),
        [
            "TaskFailed:a",
            "TaskUpstreamFailed:b",
            "TaskUpstreamFailed:c",
            "TaskScheduled:cleanup"
        ]
    );
    let events = run_task(&spec, &mut state, "cleanup", Outcome::Success);
    // The leaf (cleanup) succeeded: like Airflow, the run's outcome is its leaves'.
    assert_eq!(types(&events), ["TaskSucceeded:cleanup", "RunSucceeded"]);
}

#[test]
fn retries_wait_for_their_timer_then_schedule_the_next_try() {
    let spec = spec(vec![task("a", &[], AllSuccess, 1, TaskKind::Plain)]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = run_task(
        &spec,
        &mut state,
        "a",
        Outcome::Failed {
            reason: "flaky".into(),
        },
    );
    let Event::TaskUpForRetry(retry) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(retry.retry_at, t0() + Duration::seconds(10));

    let early = decide(
        &spec,
        &state,
        Command::RetryDue {
            map_index: -1,
            task_id: "a".into(),
            try_number: 1,
            at: t0(),
        },
    );
    assert!(matches!(early, Err(Rejection::NotDue { .. })), "{early:?}");
    let events = apply(
        &spec,
        &mut state,
        Command::RetryDue {
            map_index: -1,
            task_id: "a".into(),
            try_number: 1,
            at: retry.retry_at,
        },
    );
    assert_eq!(types(&events), ["TaskScheduled:a"]);
    assert_eq!(state.tis[&("a".to_owned(), -1)].try_number, 2);
    let events = run_task(
        &spec,
        &mut state,
        "a",
        Outcome::Failed {
            reason: "again".into(),
        },
    );
    assert_eq!(
        types(&events),
        ["TaskFailed:a", "RunFailed"],
        "no retries left"
    );
}

#[test]
fn a_branch_skips_what_it_did_not_choose_and_the_join_still_runs() {
    let spec = spec(vec![
        task("branch", &[], AllSuccess, 0, TaskKind::Branch),
        task("left", &["branch"], AllSuccess, 0, TaskKind::Plain),
        task("right", &["branch"], AllSuccess, 0, TaskKind::Plain),
        task("after_right", &["right"], AllSuccess, 0, TaskKind::Plain),
        task(
            "join",
            &["left", "after_right"],
            NoneFailedMinOneSuccess,
            0,
            TaskKind::Plain,
        ),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = run_task(
        &spec,
        &mut state,
        "branch",
        Outcome::Branch(vec!["left".into()]),
    );
    assert_eq!(
        types(&events),
        [
            "TaskSucceeded:branch",
            "TaskSkipped:right",
            "TaskSkipped:after_right",
            "TaskScheduled:left"
        ]
    );
    let events = run_task(&spec, &mut state, "left", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:left", "TaskScheduled:join"]);
    let events = run_task(&spec, &mut state, "join", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:join", "RunSucceeded"]);
}

#[test]
fn a_branch_choosing_a_task_it_cannot_reach_fails() {
    let spec = spec(vec![
        task("branch", &[], AllSuccess, 0, TaskKind::Branch),
        task("left", &["branch"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = run_task(
        &spec,
        &mut state,
        "branch",
        Outcome::Branch(vec!["elsewhere".into()]),
    );
    assert_eq!(
        types(&events),
        ["TaskFailed:branch", "TaskUpstreamFailed:left", "RunFailed"]
    );
}

#[test]
fn short_circuit_skips_all_downstream_or_only_direct_downstream() {
    for (ignore, expected) in [
        (
            true,
            vec![
                "TaskSucceeded:gate",
                "TaskSkipped:direct",
                "TaskSkipped:final",
                "RunSucceeded",
            ],
        ),
        (
            false,
            vec![
                "TaskSucceeded:gate",
                "TaskSkipped:direct",
                "TaskScheduled:final",
            ],
        ),
    ] {
        let spec = spec(vec![
            task(
                "gate",
                &[],
                AllSuccess,
                0,
                TaskKind::ShortCircuit {
                    ignore_downstream_trigger_rules: ignore,
                },
            ),
            task("direct", &["gate"], AllSuccess, 0, TaskKind::Plain),
            task("final", &["direct"], AllDone, 0, TaskKind::Plain),
        ]);
        let mut state = RunState::queued(&spec, "r1");
        apply(&spec, &mut state, Command::Start);
        assert_eq!(
            types(&run_task(
                &spec,
                &mut state,
                "gate",
                Outcome::ShortCircuit(false)
            )),
            expected
        );
    }
}

#[test]
fn stale_and_forbidden_reports_are_rejected_and_change_nothing() {
    let spec = spec(vec![
        task("a", &[], AllSuccess, 1, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    let not_started = decide(
        &spec,
        &state,
        Command::Queue {
            map_index: -1,
            task_id: "a".into(),
        },
    );
    assert_eq!(
        not_started,
        Err(Rejection::RunNotRunning(RunStatus::Queued))
    );
    apply(&spec, &mut state, Command::Start);
    let finished_early = Command::ReportFinished {
        map_index: -1,
        task_id: "a".into(),
        try_number: 1,
        outcome: Outcome::Success,
        at: t0(),
        outlet_events: Default::default(),
    };
    assert!(matches!(
        decide(&spec, &state, finished_early),
        Err(Rejection::IllegalTransition {
            state: TiState::Scheduled,
            ..
        })
    ));
    let stale = Command::ReportStarted {
        map_index: -1,
        task_id: "a".into(),
        try_number: 7,
        hostname: "h".into(),
        pid: None,
    };
    assert_eq!(
        decide(&spec, &state, stale),
        Err(Rejection::StaleTry {
            task_id: "a".into(),
            reported: 7,
            current: 1
        })
    );
    assert!(matches!(
        decide(
            &spec,
            &state,
            Command::Queue {
                map_index: -1,
                task_id: "zz".into()
            }
        ),
        Err(Rejection::UnknownTask(_))
    ));
    assert!(matches!(
        decide(
            &spec,
            &state,
            Command::Queue {
                map_index: -1,
                task_id: "b".into()
            }
        ),
        Err(Rejection::IllegalTransition {
            state: TiState::Pending,
            ..
        })
    ));
    let wrong_kind = Command::ReportFinished {
        map_index: -1,
        task_id: "a".into(),
        try_number: 1,
        outcome: Outcome::Branch(vec![]),
        at: t0(),
        outlet_events: Default::default(),
    };
    apply(
        &spec,
        &mut state,
        Command::Queue {
            map_index: -1,
            task_id: "a".into(),
        },
    );
    apply(
        &spec,
        &mut state,
        Command::ReportStarted {
            map_index: -1,
            task_id: "a".into(),
            try_number: 1,
            hostname: "h".into(),
            pid: None,
        },
    );
    assert!(matches!(
        decide(&spec, &state, wrong_kind),
        Err(Rejection::BadOutcome(_))
    ));
}

fn mapped(mut t: TaskSpec, sources: Vec<MapLength>) -> TaskSpec {
    t.mapped = Some(sources);
    t
}

fn finish_with_result(
    spec: &DagSpec,
    state: &mut RunState,
    task_id: &str,
    map_index: i32,
    length: Option<i64>,
) -> Vec<Event> {
    let try_number = start_instance(spec, state, task_id, map_index);
    apply(
        spec,
        state,
        push(task_id.into(), map_index, try_number, length),
    );
    finish_instance(
        spec,
        state,
        task_id,
        map_index,
        try_number,
        Outcome::Success,
    )
}

#[test]
fn a_task_maps_over_an_upstream_result_and_the_fan_in_waits_for_every_instance() {
    let spec = spec(vec![
        task("numbers", &[], AllSuccess, 0, TaskKind::Plain),
        mapped(
            task("double", &["numbers"], AllSuccess, 0, TaskKind::Plain),
            vec![MapLength::FromTask("numbers".into())],
        ),
        task("total", &["double"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = finish_with_result(&spec, &mut state, "numbers", -1, Some(3));
    assert_eq!(
        types(&events),
        [
            "TaskSucceeded:numbers",
            "TaskMapped:double",
            "TaskScheduled:double",
            "TaskScheduled:double",
            "TaskScheduled:double"
        ]
    );
    let indexes: Vec<i32> = events
        .iter()
        .skip(2)
        .map(|e| e.task_instance().unwrap().map_index)
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(
        !state.tis.contains_key(&("double".to_owned(), -1)),
        "the placeholder is gone"
    );
    for index in [2, 0] {
        let events = run_instance(&spec, &mut state, "double", index, Outcome::Success);
        assert_eq!(
            types(&events),
            ["TaskSucceeded:double"],
            "total waits for every instance"
        );
    }
    let events = run_instance(&spec, &mut state, "double", 1, Outcome::Success);
    assert_eq!(
        types(&events),
        ["TaskSucceeded:double", "TaskScheduled:total"]
    );
}

#[test]
fn literal_mapping_and_the_cartesian_product() {
    let spec = spec(vec![
        task("source", &[], AllSuccess, 0, TaskKind::Plain),
        mapped(
            task("grid", &["source"], AllSuccess, 0, TaskKind::Plain),
            vec![MapLength::FromTask("source".into()), MapLength::Literal(3)],
        ),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = finish_with_result(&spec, &mut state, "source", -1, Some(2));
    let Event::TaskMapped(mapping) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(mapping.count, 6);
}

#[test]
fn an_empty_expansion_skips_and_a_non_list_result_fails_the_mapped_task() {
    let spec = spec(vec![
        task("source", &[], AllSuccess, 0, TaskKind::Plain),
        mapped(
            task("each", &["source"], AllSuccess, 0, TaskKind::Plain),
            vec![MapLength::FromTask("source".into())],
        ),
        task("after", &["each"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = finish_with_result(&spec, &mut state, "source", -1, Some(0));
    assert_eq!(
        types(&events),
        [
            "TaskSucceeded:source",
            "TaskSkipped:each",
            "TaskSkipped:after",
            "RunSucceeded"
        ]
    );

    let mut state = RunState::queued(&spec, "r2");
    apply(&spec, &mut state, Command::Start);
    let events = finish_with_result(&spec, &mut state, "source", -1, None);
    assert_eq!(
        types(&events),
        [
            "TaskSucceeded:source",
            "TaskFailed:each",
            "TaskUpstreamFailed:after",
            "RunFailed"
        ]
    );
    let Event::TaskFailed(failure) = &events[1] else {
        panic!()
    };
    assert!(
        failure.reason.contains("not a list or a dict"),
        "{}",
        failure.reason
    );
}

#[test]
fn mapping_over_a_mapped_task_counts_its_successful_instances() {
    let spec = spec(vec![
        mapped(
            task("first", &[], AllSuccess, 0, TaskKind::Plain),
            vec![MapLength::Literal(3)],
        ),
        mapped(
            task("second", &["first"], AllDone, 0, TaskKind::Plain),
            vec![MapLength::FromTask("first".into())],
        ),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    let events = apply(&spec, &mut state, Command::Start);
    assert_eq!(types(&events)[..2], ["RunStarted", "TaskMapped:first"]);
    run_instance(&spec, &mut state, "first", 0, Outcome::Success);
    run_instance(
        &spec,
        &mut state,
        "first",
        1,
        Outcome::Failed { reason: "x".into() },
    );
    let events = run_instance(&spec, &mut state, "first", 2, Outcome::Success);
    let Event::TaskMapped(mapping) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(mapping.count, 2);
}

#[test]
fn a_try_past_its_timeout_fails_and_retries_by_policy() {
    let mut timed = task("slow", &[], AllSuccess, 1, TaskKind::Plain);
    timed.execution_timeout = Some(5.0);
    let spec = spec(vec![timed]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    apply(
        &spec,
        &mut state,
        Command::Queue {
            task_id: "slow".into(),
            map_index: -1,
        },
    );
    let not_running = Command::TimedOut {
        task_id: "slow".into(),
        map_index: -1,
        try_number: 1,
        at: t0(),
    };
    assert!(decide(&spec, &state, not_running.clone()).is_err());
    apply(
        &spec,
        &mut state,
        Command::ReportStarted {
            task_id: "slow".into(),
            map_index: -1,
            try_number: 1,
            hostname: "h".into(),
            pid: None,
        },
    );
    let events = apply(&spec, &mut state, not_running);
    let Event::TaskUpForRetry(retry) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(
        retry.reason.contains("execution_timeout of 5 s exceeded"),
        "{}",
        retry.reason
    );
    // The stopped try's late report is fenced off.
    let late = Command::ReportFinished {
        task_id: "slow".into(),
        map_index: -1,
        try_number: 1,
        outcome: Outcome::Success,
        at: t0(),
        outlet_events: Default::default(),
    };
    assert!(matches!(
        decide(&spec, &state, late),
        Err(Rejection::IllegalTransition {
            state: TiState::UpForRetry,
            ..
        })
    ));
}

#[test]
fn clearing_a_finished_run_with_downstream_requeues_it_and_reruns_with_new_tries() {
    let spec = spec(vec![
        task("a", &[], AllSuccess, 0, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
        task("c", &["b"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    run_task(&spec, &mut state, "a", Outcome::Success);
    run_task(
        &spec,
        &mut state,
        "b",
        Outcome::Failed {
            reason: "bug".into(),
        },
    );
    assert_eq!(state.status, RunStatus::Failed);

    let events = apply(
        &spec,
        &mut state,
        Command::Clear {
            task_ids: vec!["b".into()],
            only_map_indexes: Default::default(),
            downstream: true,
        },
    );
    assert_eq!(
        types(&events),
        ["TaskCleared:b", "TaskCleared:c", "RunCleared"]
    );
    assert_eq!(state.status, RunStatus::Queued);
    let events = apply(&spec, &mut state, Command::Start);
    assert_eq!(types(&events), ["RunStarted", "TaskScheduled:b"]);
    assert_eq!(
        state.tis[&("b".to_owned(), -1)].try_number,
        2,
        "a cleared task runs as a new try"
    );
    run_task(&spec, &mut state, "b", Outcome::Success);
    let events = run_task(&spec, &mut state, "c", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:c", "RunSucceeded"]);
}

#[test]
fn clearing_what_runs_is_refused_and_marking_sets_a_final_state() {
    let spec = spec(vec![
        task("a", &[], AllSuccess, 0, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
        task("c", &["b"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    apply(
        &spec,
        &mut state,
        Command::Queue {
            task_id: "a".into(),
            map_index: -1,
        },
    );
    let clear = Command::Clear {
        task_ids: vec!["a".into()],
        only_map_indexes: Default::default(),
        downstream: false,
    };
    assert!(matches!(
        decide(&spec, &state, clear),
        Err(Rejection::IllegalTransition {
            state: TiState::Queued,
            ..
        })
    ));
    assert!(matches!(
        decide(
            &spec,
            &state,
            Command::Clear {
                task_ids: vec!["nope".into()],
                only_map_indexes: Default::default(),
                downstream: false
            }
        ),
        Err(Rejection::UnknownTask(_))
    ));

    // Marking the queued task successful lets the run go on; its agent's report is then fenced off.
    let events = apply(
        &spec,
        &mut state,
        Command::Mark {
            task_id: "a".into(),
            map_index: -1,
            success: true,
        },
    );
    assert_eq!(types(&events), ["TaskSucceeded:a", "TaskScheduled:b"]);
    let late = Command::ReportStarted {
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        hostname: "h".into(),
        pid: None,
    };
    assert!(decide(&spec, &state, late).is_err());
    let events = apply(
        &spec,
        &mut state,
        Command::Mark {
            task_id: "b".into(),
            map_index: -1,
            success: false,
        },
    );
    assert_eq!(
        types(&events),
        ["TaskFailed:b", "TaskUpstreamFailed:c", "RunFailed"]
    );
    assert_eq!(
        decide(
            &spec,
            &state,
            Command::Mark {
                task_id: "b".into(),
                map_index: -1,
                success: true
            }
        ),
        Err(Rejection::RunNotRunning(RunStatus::Failed))
    );
}

#[test]
fn a_custom_operator_branches_when_its_class_does() {
    let task = |id: &str, branch: bool| {
        serde_json::json!({"task_id": id, "operator": "LatestOnlyOperator", "upstream": [], "trigger_rule": "all_success",
            "retries": 0, "retry_delay": 300.0, "retry_exponential_backoff": false, "max_retry_delay": null,
            "execution_timeout": null, "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default",
            "custom": {"module": "m", "class": "C", "branch": branch}})
    };
    let dag =
        serde_json::json!({"dag_id": "d", "tasks": [task("chooses", true), task("works", false)]});
    let spec = DagSpec::from_dag_json(&dag).unwrap();
    assert_eq!(spec.tasks["chooses"].kind, TaskKind::Branch);
    assert_eq!(spec.tasks["works"].kind, TaskKind::Plain);
}

#[test]
fn a_dag_json_dag_becomes_a_spec() {
    let dag = serde_json::json!({
        "dag_id": "d",
        "tasks": [
            {"task_id": "a", "operator": "@task.branch", "upstream": [], "trigger_rule": "all_success", "retries": 2,
             "retry_delay": 30.0, "retry_exponential_backoff": true, "max_retry_delay": 600.0, "execution_timeout": 60.0,
             "pool": "p", "pool_slots": 2, "priority_weight": 5, "queue": "q", "extra": "ignored",
             "max_active_tis_per_dag": 4},
            {"task_id": "b", "operator": "ShortCircuitOperator", "upstream": ["a"], "trigger_rule": "one_failed", "retries": 0,
             "retry_delay": 300.0, "retry_exponential_backoff": false, "max_retry_delay": null, "execution_timeout": null,
             "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default",
             "short_circuit": {"ignore_downstream_trigger_rules": false}}
        ]
    });
    let spec = DagSpec::from_dag_json(&dag).unwrap();
    assert_eq!(spec.tasks["a"].kind, TaskKind::Branch);
    assert_eq!(spec.tasks["a"].downstream, ["b"]);
    assert_eq!(spec.tasks["a"].retry.max_retry_delay, Some(600.0));
    assert_eq!(
        spec.tasks["a"].concurrency,
        leoflow_core::spec::TaskConcurrency {
            per_dag: Some(4),
            per_run: None
        }
    );
    assert_eq!(spec.tasks["b"].concurrency, Default::default());
    assert_eq!(
        spec.tasks["b"].kind,
        TaskKind::ShortCircuit {
            ignore_downstream_trigger_rules: false
        }
    );
    assert_eq!(spec.tasks["b"].trigger_rule, OneFailed);

    let mut bad = dag.clone();
    bad["tasks"][1]["upstream"] = serde_json::json!(["missing"]);
    assert!(
        DagSpec::from_dag_json(&bad)
            .unwrap_err()
            .to_string()
            .contains("unknown upstream task \"missing\"")
    );
    let mut cyclic = dag.clone();
    cyclic["tasks"][0]["upstream"] = serde_json::json!(["b"]);
    assert!(
        DagSpec::from_dag_json(&cyclic)
            .unwrap_err()
            .to_string()
            .contains("cycle")
    );
}

#[test]
fn a_try_is_dispatched_once_unless_a_lost_dispatch_is_replaced_and_then_the_old_token_is_void() {
    let spec = spec(vec![task("a", &[], AllSuccess, 0, TaskKind::Plain)]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    apply(
        &spec,
        &mut state,
        Command::Queue {
            task_id: "a".into(),
            map_index: -1,
        },
    );
    let dispatch = |token: uuid::Uuid, replacing: Option<uuid::Uuid>| Command::Dispatch {
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        attempt_token: token,
        executor: "test".into(),
        replacing: replacing.as_ref().map(leoflow_events::AttemptDigest::of),
    };
    let (first, second, third) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    assert_eq!(
        types(&apply(&spec, &mut state, dispatch(first, None))),
        ["TaskDispatched:a"]
    );
    // A second plain dispatch, or a replacement naming a token that is not the current one,
    // is refused: two agents may never hold the same try.
    for command in [dispatch(second, None), dispatch(second, Some(third))] {
        assert!(matches!(
            decide(&spec, &state, command),
            Err(Rejection::IllegalTransition { .. })
        ));
    }
    assert_eq!(
        types(&apply(&spec, &mut state, dispatch(second, Some(first)))),
        ["TaskDispatched:a"]
    );
    let current = state.tis[&("a".to_owned(), -1)].attempt_digest.clone();
    assert!(current.is_some_and(|d| d.matches(&second)));
    assert_eq!(
        state.tis[&("a".to_owned(), -1)].try_number,
        1,
        "a lost dispatch costs no try"
    );
    // Once the try started, its dispatch is not lost and cannot be replaced.
    apply(
        &spec,
        &mut state,
        Command::ReportStarted {
            task_id: "a".into(),
            map_index: -1,
            try_number: 1,
            hostname: "h".into(),
            pid: None,
        },
    );
    assert!(decide(&spec, &state, dispatch(third, Some(second))).is_err());
}

#[test]
fn blockers_say_why_a_task_instance_does_not_run() {
    use leoflow_core::blockers::{PoolUse, Surroundings, blockers};
    let spec = spec(vec![
        task("a", &[], AllSuccess, 1, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    let calm = Surroundings {
        dag_paused: false,
        active_tasks: (16, 0),
        pool: PoolUse {
            name: "default_pool".into(),
            open_slots: 128,
        },
        now: t0(),
    };
    let names = |state: &RunState, task: &str, around: &Surroundings| -> Vec<&'static str> {
        blockers(&spec, state, task, -1, around)
            .iter()
            .map(|b| b.name)
            .collect()
    };
    assert_eq!(names(&state, "a", &calm), ["Dagrun Running"]);
    apply(&spec, &mut state, Command::Start);
    assert!(names(&state, "a", &calm).is_empty(), "a is about to run");
    assert_eq!(names(&state, "b", &calm), ["Trigger Rule"]);
    let crowded = Surroundings {
        dag_paused: true,
        active_tasks: (16, 16),
        pool: PoolUse {
            name: "default_pool".into(),
            open_slots: 0,
        },
        now: t0(),
    };
    assert_eq!(
        names(&state, "a", &crowded),
        ["Dag Not Paused", "Pool Slots Available", "Task Concurrency"]
    );
    run_task(
        &spec,
        &mut state,
        "a",
        Outcome::Failed {
            reason: "flaky".into(),
        },
    );
    let waiting = blockers(&spec, &state, "a", -1, &calm);
    assert_eq!(waiting[0].name, "Not In Retry Period");
    assert!(waiting[0].reason.contains("will be retried at"));
    let later = Surroundings {
        now: t0() + Duration::seconds(11),
        ..calm.clone()
    };
    assert!(names(&state, "a", &later).is_empty(), "the retry is due");
}

#[test]
fn marking_a_failed_run_successful_makes_every_unsuccessful_instance_successful() {
    // Found by run_properties: a failed task that is no leaf leaves the run successful (as in
    // Airflow); marking the run successful must still make that task successful.
    let mut mapped = task("t1", &["t0"], AllDoneMinOneSuccess, 0, TaskKind::Branch);
    mapped.mapped = Some(vec![MapLength::Literal(0)]);
    let spec = spec(vec![
        task("t0", &[], AllSuccess, 0, TaskKind::Branch),
        mapped,
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    apply(
        &spec,
        &mut state,
        Command::Queue {
            task_id: "t0".into(),
            map_index: -1,
        },
    );
    let cancelled = apply(
        &spec,
        &mut state,
        Command::Cancel {
            task_id: "t0".into(),
            map_index: -1,
        },
    );
    assert_eq!(
        types(&cancelled),
        ["TaskFailed:t0", "TaskSkipped:t1", "RunSucceeded"]
    );
    let marked = apply(&spec, &mut state, Command::MarkRun { success: true });
    assert_eq!(
        types(&marked),
        ["TaskSucceeded:t0"],
        "the run already is successful"
    );
    assert_eq!(state.status, RunStatus::Success);
    assert!(
        state
            .tis
            .values()
            .all(|ti| matches!(ti.state, TiState::Success | TiState::Skipped)),
        "{state:?}"
    );
}

#[test]
fn a_clear_scope_clears_named_tasks_whole_pairs_alone_and_downstream_whole() {
    use leoflow_core::run::ClearScope;
    use std::collections::{BTreeMap, BTreeSet};
    // m (mapped) → d → e; x stands apart.
    let spec = spec(vec![
        task("m", &[], AllSuccess, 0, TaskKind::Plain),
        task("d", &["m"], AllSuccess, 0, TaskKind::Plain),
        task("e", &["d"], AllSuccess, 0, TaskKind::Plain),
        task("x", &[], AllSuccess, 0, TaskKind::Plain),
    ]);
    let only = |pairs: &[(&str, i32)]| {
        let mut map: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        for (id, index) in pairs {
            map.entry(id.to_string()).or_default().insert(*index);
        }
        map
    };
    let ids = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<Vec<_>>();

    // A pair clears its instance only; a task named bare is whole.
    let scope = ClearScope::of(
        &spec,
        &ids(&["m", "x"]),
        &only(&[("m", 2), ("m", 0)]),
        false,
    );
    assert_eq!(scope.whole_tasks, ["x"]);
    assert_eq!(scope.instances, [("m".to_owned(), 0), ("m".to_owned(), 2)]);

    // Downstream of a pair's task is cleared whole; the pair itself stays one instance.
    let scope = ClearScope::of(&spec, &ids(&["m"]), &only(&[("m", 1)]), true);
    assert_eq!(scope.whole_tasks, ["d", "e"]);
    assert_eq!(scope.instances, [("m".to_owned(), 1)]);

    // A pair of a task that is also downstream of another target is cleared whole.
    let scope = ClearScope::of(&spec, &ids(&["m", "d"]), &only(&[("d", 0)]), true);
    assert_eq!(scope.whole_tasks, ["d", "e", "m"]);
    assert!(scope.instances.is_empty());

    // Pairs of tasks not named are ignored, as the command ignores them.
    let scope = ClearScope::of(&spec, &ids(&["x"]), &only(&[("m", 0)]), false);
    assert_eq!(scope.whole_tasks, ["x"]);
    assert!(scope.instances.is_empty());
}

fn resume(task_id: &str, try_number: i32, at: chrono::DateTime<chrono::Utc>) -> Command {
    Command::Resume {
        task_id: task_id.into(),
        map_index: -1,
        try_number,
        trigger_event: Some(serde_json::json!("2026-11-23T11:00:00+00:00")),
        at,
    }
}

fn deferral(timeout_at: Option<chrono::DateTime<chrono::Utc>>) -> Outcome {
    Outcome::Deferred(Deferral {
        trigger: DeferredTrigger::Time {
            moment: t0() + Duration::hours(1),
            end_from_trigger: false,
        },
        next_method: "execute_complete".into(),
        next_kwargs: leoflow_events::catalog::Sealed::clear("{}"),
        timeout_at,
    })
}

#[test]
fn a_deferred_try_waits_for_its_moment_then_resumes_in_the_same_try() {
    let spec = spec(vec![
        task("wait", &[], AllSuccess, 0, TaskKind::Plain),
        task("after", &["wait"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let events = run_task(&spec, &mut state, "wait", deferral(None));
    assert_eq!(types(&events), ["TaskDeferred:wait"]);
    let ti = &state.tis[&("wait".to_owned(), -1)];
    assert_eq!(ti.state, TiState::Deferred);
    assert_eq!(ti.due_at, Some(t0() + Duration::hours(1)));
    assert_eq!(
        state.status,
        RunStatus::Running,
        "a deferred try is not done"
    );

    let early = decide(&spec, &state, resume("wait", 1, t0()));
    assert!(matches!(early, Err(Rejection::NotDue { .. })), "{early:?}");
    let stale = decide(&spec, &state, resume("wait", 2, t0() + Duration::hours(1)));
    assert!(
        matches!(stale, Err(Rejection::StaleTry { .. })),
        "{stale:?}"
    );

    let events = apply(
        &spec,
        &mut state,
        resume("wait", 1, t0() + Duration::hours(1)),
    );
    assert_eq!(types(&events), ["TaskResumed:wait"]);
    let ti = &state.tis[&("wait".to_owned(), -1)];
    assert_eq!((ti.state, ti.try_number), (TiState::Scheduled, 1));
    // It is queued, dispatched and run again as try 1, and ends as any try does.
    let events = run_task(&spec, &mut state, "wait", Outcome::Success);
    assert_eq!(
        types(&events),
        ["TaskSucceeded:wait", "TaskScheduled:after"]
    );
}

#[test]
fn a_try_waiting_for_a_person_resumes_with_their_answer_whenever_it_comes() {
    let spec = spec(vec![task("ask", &[], AllSuccess, 0, TaskKind::Plain)]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let unanswered = serde_json::json!({"chosen_options": ["a"], "timedout": true});
    let person = Outcome::Deferred(Deferral {
        trigger: DeferredTrigger::Person {
            request: serde_json::json!({"options": ["a", "b"]}),
            answer_by: Some(t0() + Duration::hours(1)),
            unanswered,
        },
        next_method: "execute_complete".into(),
        next_kwargs: leoflow_events::catalog::Sealed::clear("{}"),
        timeout_at: None,
    });
    run_task(&spec, &mut state, "ask", person);
    let ti = &state.tis[&("ask".to_owned(), -1)];
    // Due at its deadline (when the defaults are taken), as a time trigger at its moment.
    assert_eq!(ti.due_at, Some(t0() + Duration::hours(1)));
    let answer = |try_number| Command::Answer {
        task_id: "ask".into(),
        map_index: -1,
        try_number,
        answer: serde_json::json!({"chosen_options": ["b"]}),
    };
    let stale = decide(&spec, &state, answer(2));
    assert!(
        matches!(stale, Err(Rejection::StaleTry { .. })),
        "{stale:?}"
    );
    // An answer comes before the deadline: the try carries on at once, with it as its event.
    let events = apply(&spec, &mut state, answer(1));
    assert_eq!(types(&events), ["TaskResumed:ask"]);
    let Event::TaskResumed(resumed) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        resumed.trigger_event,
        Some(serde_json::json!({"chosen_options": ["b"]}))
    );
    // A second answer finds nothing waiting.
    assert!(decide(&spec, &state, answer(1)).is_err());
}

#[test]
fn only_a_try_waiting_for_a_person_takes_an_answer() {
    let spec = spec(vec![task("wait", &[], AllSuccess, 0, TaskKind::Plain)]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    run_task(&spec, &mut state, "wait", deferral(None));
    let answer = Command::Answer {
        task_id: "wait".into(),
        map_index: -1,
        try_number: 1,
        answer: serde_json::json!({"chosen_options": ["b"]}),
    };
    let refused = decide(&spec, &state, answer);
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("waits for no person")),
        "{refused:?}"
    );
}

#[test]
fn a_deferral_that_times_out_carries_on_to_fail_in_the_same_try() {
    let spec = spec(vec![task("wait", &[], AllSuccess, 1, TaskKind::Plain)]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    run_task(
        &spec,
        &mut state,
        "wait",
        deferral(Some(t0() + Duration::minutes(5))),
    );
    assert_eq!(
        state.tis[&("wait".to_owned(), -1)].timeout_at,
        Some(t0() + Duration::minutes(5))
    );
    let fail = |try_number| Command::DeferralFailed {
        task_id: "wait".into(),
        map_index: -1,
        try_number,
        reason: "the trigger did not fire within its timeout".into(),
    };
    // The try carries on, to fail in the task (Airflow's `__fail__`): retries apply as usual.
    let events = apply(&spec, &mut state, fail(1));
    assert_eq!(types(&events), ["TaskResumed:wait"]);
    let Event::TaskResumed(resumed) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        resumed.failure.as_deref(),
        Some("the trigger did not fire within its timeout")
    );
    assert_eq!(state.tis[&("wait".to_owned(), -1)].try_number, 1);
    // A failed deferral of a try that no longer waits is refused.
    let again = decide(&spec, &state, fail(1));
    assert!(
        matches!(again, Err(Rejection::IllegalTransition { .. })),
        "{again:?}"
    );
}

#[test]
fn a_rescheduled_sensor_is_poked_again_in_the_same_try() {
    let spec = spec(vec![task("sense", &[], AllSuccess, 0, TaskKind::Plain)]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let poke_at = t0() + Duration::seconds(30);
    let events = run_task(
        &spec,
        &mut state,
        "sense",
        Outcome::Rescheduled { at: poke_at },
    );
    assert_eq!(types(&events), ["TaskRescheduled:sense"]);
    assert_eq!(
        state.tis[&("sense".to_owned(), -1)].state,
        TiState::UpForReschedule
    );
    let poke = |at| Command::Resume {
        task_id: "sense".into(),
        map_index: -1,
        try_number: 1,
        trigger_event: None,
        at,
    };
    assert!(matches!(
        decide(&spec, &state, poke(t0())),
        Err(Rejection::NotDue { .. })
    ));
    assert_eq!(
        types(&apply(&spec, &mut state, poke(poke_at))),
        ["TaskResumed:sense"]
    );
    let events = run_task(&spec, &mut state, "sense", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:sense", "RunSucceeded"]);
    assert_eq!(state.tis[&("sense".to_owned(), -1)].try_number, 1);
}

#[test]
fn marking_a_run_failed_fails_what_waits_deferred() {
    let spec = spec(vec![
        task("wait", &[], AllSuccess, 0, TaskKind::Plain),
        task("after", &["wait"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    run_task(&spec, &mut state, "wait", deferral(None));
    let events = apply(&spec, &mut state, Command::MarkRun { success: false });
    assert_eq!(
        types(&events),
        ["TaskSkipped:after", "TaskFailed:wait", "RunFailed"]
    );
}

#[test]
fn priorities_follow_airflows_weight_rules() {
    use leoflow_core::spec::WeightRule;
    // a → b, a → c, b → d, c → d: a diamond, each task's own weight 1 but d's, 10.
    let diamond = |rule: WeightRule| {
        let mut tasks = vec![
            task("a", &[], AllSuccess, 0, TaskKind::Plain),
            task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
            task("c", &["a"], AllSuccess, 0, TaskKind::Plain),
            task("d", &["b", "c"], AllSuccess, 0, TaskKind::Plain),
        ];
        for t in &mut tasks {
            t.weight_rule = rule;
        }
        tasks[3].priority_weight = 10;
        let spec = spec(tasks);
        ["a", "b", "c", "d"].map(|id| spec.tasks[id].priority_weight)
    };
    // Each task counts once, however many paths lead to it.
    assert_eq!(diamond(WeightRule::Downstream), [13, 11, 11, 10]);
    assert_eq!(diamond(WeightRule::Upstream), [1, 2, 2, 13]);
    assert_eq!(diamond(WeightRule::Absolute), [1, 1, 1, 10]);
}

#[test]
fn a_deferral_that_ends_from_its_trigger_succeeds_at_its_moment_without_running_again() {
    let spec = spec(vec![
        task("wait", &[], AllSuccess, 0, TaskKind::Plain),
        task("after", &["wait"], AllSuccess, 0, TaskKind::Plain),
    ]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let moment = t0() + Duration::hours(1);
    let ending = Outcome::Deferred(Deferral {
        trigger: DeferredTrigger::Time {
            moment,
            end_from_trigger: true,
        },
        next_method: "execute_complete".into(),
        next_kwargs: leoflow_events::catalog::Sealed::clear("{}"),
        timeout_at: None,
    });
    run_task(&spec, &mut state, "wait", ending);
    let end = |at| Command::EndFromTrigger {
        task_id: "wait".into(),
        map_index: -1,
        try_number: 1,
        at,
    };
    assert!(matches!(
        decide(&spec, &state, end(t0())),
        Err(Rejection::NotDue { .. })
    ));
    let events = apply(&spec, &mut state, end(moment));
    assert_eq!(
        types(&events),
        ["TaskSucceeded:wait", "TaskScheduled:after"]
    );
    // A deferral that carries on is not ended by its trigger.
    let mut other = RunState::queued(&spec, "r2");
    apply(&spec, &mut other, Command::Start);
    run_task(&spec, &mut other, "wait", deferral(None));
    assert!(matches!(
        decide(&spec, &other, end(moment)),
        Err(Rejection::IllegalTransition { .. })
    ));
}

#[test]
fn a_success_updates_its_tasks_outlets_and_a_failure_or_a_skip_does_not() {
    let outlet = |name: &str| leoflow_core::assets::Asset {
        name: name.into(),
        uri: format!("s3://bucket/{name}"),
        group: "asset".into(),
        extra: Default::default(),
    };
    let mut producer = task("produce", &[], AllSuccess, 0, TaskKind::Plain);
    producer.outlets = vec![outlet("a"), outlet("b")];
    let mut failing = task("fail", &[], AllSuccess, 0, TaskKind::Plain);
    failing.outlets = vec![outlet("c")];
    let spec = spec(vec![producer, failing]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);

    let events = run_task(&spec, &mut state, "produce", Outcome::Success);
    let updated: Vec<(String, Option<String>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::AssetEventRecorded(a) => Some((
                a.asset.name.clone(),
                a.source.as_ref().map(|ti| ti.task_id.clone()),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        updated,
        [
            ("a".to_owned(), Some("produce".to_owned())),
            ("b".to_owned(), Some("produce".to_owned()))
        ]
    );
    assert_eq!(types(&events)[0], "TaskSucceeded:produce");

    let reason = "boom".to_owned();
    let events = run_task(
        &spec,
        &mut state,
        "fail",
        Outcome::FailedWithoutRetry { reason },
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::AssetEventRecorded(_))),
        "{events:?}"
    );
}

#[test]
fn events_added_through_the_tasks_outlet_aliases_are_recorded_once_per_asset_and_extra() {
    use leoflow_core::run::{AliasEvent, OutletEvents};
    use leoflow_events::catalog::AssetKey;
    let key = |uri: &str| AssetKey {
        name: uri.into(),
        uri: uri.into(),
    };
    let add = |alias: &str, uri: &str, day: i32| AliasEvent {
        alias: alias.into(),
        asset: key(uri),
        group: "days".into(),
        extra: serde_json::json!({ "day": day }),
    };
    let mut producer = task("produce", &[], AllSuccess, 0, TaskKind::Plain);
    producer.outlet_aliases = vec!["daily".into(), "weekly".into()];
    let spec = spec(vec![producer]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);
    let try_number = start_instance(&spec, &mut state, "produce", -1);
    let command = Command::ReportFinished {
        task_id: "produce".into(),
        map_index: -1,
        try_number,
        outcome: Outcome::Success,
        at: t0(),
        outlet_events: OutletEvents {
            extras: Default::default(),
            through_aliases: vec![
                add("weekly", "s3://d/5", 5),
                add("daily", "s3://d/5", 5),
                add("daily", "s3://d/6", 6),
                // Not one of the task's outlet aliases: ignored, as in Airflow.
                add("monthly", "s3://d/7", 7),
            ],
        },
    };
    let recorded: Vec<(String, Vec<String>, String)> = apply(&spec, &mut state, command)
        .into_iter()
        .filter_map(|e| match e {
            Event::AssetEventRecorded(a) => Some((a.asset.uri, a.source_aliases, a.group)),
            _ => None,
        })
        .collect();
    assert_eq!(
        recorded,
        [
            (
                "s3://d/5".to_owned(),
                vec!["daily".to_owned(), "weekly".to_owned()],
                "days".to_owned()
            ),
            (
                "s3://d/6".to_owned(),
                vec!["daily".to_owned()],
                "days".to_owned()
            ),
        ]
    );
}

#[test]
fn a_run_the_scheduler_ends_asks_for_the_dags_callback_of_its_end_and_a_marked_run_for_none() {
    use leoflow_events::catalog::DagCallback;
    let mut with_callbacks = spec(vec![
        task("a", &[], AllSuccess, 0, TaskKind::Plain),
        task("b", &["a"], AllSuccess, 0, TaskKind::Plain),
    ]);
    with_callbacks.callbacks = [DagCallback::OnFailure].into();
    let asked = |events: &[Event]| -> Vec<(DagCallback, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::DagCallbackRequested(e) => Some((e.callback, e.reason.clone())),
                _ => None,
            })
            .collect()
    };

    // A failure asks for on_failure_callback, after the run's end, with Airflow's reason.
    let mut state = RunState::queued(&with_callbacks, "r1");
    apply(&with_callbacks, &mut state, Command::Start);
    let events = run_task(
        &with_callbacks,
        &mut state,
        "a",
        Outcome::Failed {
            reason: "boom".into(),
        },
    );
    assert_eq!(
        types(&events),
        [
            "TaskFailed:a",
            "TaskUpstreamFailed:b",
            "RunFailed",
            "DagCallbackRequested"
        ]
    );
    assert_eq!(
        asked(&events),
        [(DagCallback::OnFailure, "task_failure".to_owned())]
    );

    // A success asks for nothing: the DAG has no on_success_callback.
    let mut state = RunState::queued(&with_callbacks, "r2");
    apply(&with_callbacks, &mut state, Command::Start);
    run_task(&with_callbacks, &mut state, "a", Outcome::Success);
    let events = run_task(&with_callbacks, &mut state, "b", Outcome::Success);
    assert_eq!(types(&events), ["TaskSucceeded:b", "RunSucceeded"]);

    // With one, it asks with reason "success".
    with_callbacks.callbacks = [DagCallback::OnSuccess, DagCallback::OnFailure].into();
    let mut state = RunState::queued(&with_callbacks, "r3");
    apply(&with_callbacks, &mut state, Command::Start);
    run_task(&with_callbacks, &mut state, "a", Outcome::Success);
    let events = run_task(&with_callbacks, &mut state, "b", Outcome::Success);
    assert_eq!(
        asked(&events),
        [(DagCallback::OnSuccess, "success".to_owned())]
    );

    // A run a user marks failed asks for none (Airflow runs no callback for a marked run).
    let mut state = RunState::queued(&with_callbacks, "r4");
    apply(&with_callbacks, &mut state, Command::Start);
    let events = apply(
        &with_callbacks,
        &mut state,
        Command::MarkRun { success: false },
    );
    assert!(
        types(&events).contains(&"RunFailed".to_owned()),
        "{events:?}"
    );
    assert!(asked(&events).is_empty(), "{events:?}");
}

#[test]
fn a_try_lost_without_its_runner_asks_for_the_task_s_callback_of_its_end() {
    use leoflow_events::catalog::TaskCallback;
    let lost = |try_number| Command::Lost {
        task_id: "load".into(),
        map_index: -1,
        try_number,
        reason: "the task process ended (signal: 9) without reporting an outcome".into(),
        at: t0(),
    };
    let mut load = task("load", &[], AllSuccess, 1, TaskKind::Plain);
    load.callbacks = [TaskCallback::OnRetry, TaskCallback::OnFailure].into();
    let spec = spec(vec![load]);
    let mut state = RunState::queued(&spec, "r1");
    apply(&spec, &mut state, Command::Start);

    // A try with a retry left: up for retry, and its on_retry_callback asked for.
    let first = start_instance(&spec, &mut state, "load", -1);
    let events = apply(&spec, &mut state, lost(first));
    assert_eq!(
        types(&events)[..2],
        ["TaskUpForRetry:load", "TaskCallbackRequested:load"]
    );
    let Event::TaskCallbackRequested(asked) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(
        (asked.callback, asked.try_number, asked.ti.task_id.as_str()),
        (TaskCallback::OnRetry, 1, "load")
    );
    assert!(
        asked.reason.contains("without reporting"),
        "{}",
        asked.reason
    );

    // The last try: failed, and its on_failure_callback asked for.
    apply(
        &spec,
        &mut state,
        Command::RetryDue {
            task_id: "load".into(),
            map_index: -1,
            try_number: first,
            at: t0() + Duration::hours(1),
        },
    );
    let second = start_instance(&spec, &mut state, "load", -1);
    let events = apply(&spec, &mut state, lost(second));
    let asked: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::TaskCallbackRequested(asked) => Some((asked.callback, asked.try_number)),
            _ => None,
        })
        .collect();
    assert_eq!(asked, [(TaskCallback::OnFailure, 2)]);
    assert_eq!(state.status, RunStatus::Failed);

    // A task without callbacks asks for none; a try that reported its own failure neither
    // (its runner ran them).
    let plain = spec_of_one_plain_task();
    let mut state = RunState::queued(&plain, "r1");
    apply(&plain, &mut state, Command::Start);
    let try_number = start_instance(&plain, &mut state, "load", -1);
    let events = apply(&plain, &mut state, lost(try_number));
    assert!(!types(&events).contains(&"TaskCallbackRequested:load".to_owned()));
}

fn spec_of_one_plain_task() -> DagSpec {
    spec(vec![task("load", &[], AllSuccess, 0, TaskKind::Plain)])
}
