//! Property test of the dag-run state machine: random DAGs with random, mostly wrong commands.
//! Whatever is accepted must keep the run legal, and a well-behaved executor must always be able
//! to finish the run.

mod common;

use std::collections::BTreeMap;

use chrono::Duration;
use common::*;
use leoflow_core::run::{Command, Outcome, RunState, RunStatus, TiState, decide, evolve};
use leoflow_core::spec::{DagSpec, MapLength, TaskKind};
use leoflow_core::trigger::{TriggerRule, Verdict};
use leoflow_events::Event;
use proptest::prelude::*;

fn arb_spec() -> impl Strategy<Value = DagSpec> {
    (2usize..8).prop_flat_map(|n| {
        let tasks = proptest::collection::vec(
            (
                proptest::collection::vec(any::<bool>(), n),
                0..TriggerRule::ALL.len(),
                0u32..3,
                0u8..5,
                0u8..6,
            ),
            n,
        );
        tasks.prop_map(move |raw| {
            let specs = raw
                .into_iter()
                .enumerate()
                .map(|(i, (edges, rule, retries, kind, mapping))| {
                    let upstream: Vec<String> = (0..i)
                        .filter(|j| edges[*j])
                        .map(|j| format!("t{j}"))
                        .collect();
                    let kind = match kind {
                        0 => TaskKind::Branch,
                        1 => TaskKind::ShortCircuit {
                            ignore_downstream_trigger_rules: retries.is_multiple_of(2),
                        },
                        _ => TaskKind::Plain,
                    };
                    let mut t = task(&format!("t{i}"), &[], TriggerRule::ALL[rule], retries, kind);
                    t.mapped = match (mapping, upstream.first()) {
                        (0, _) => Some(vec![MapLength::Literal(0)]),
                        (1, _) => Some(vec![MapLength::Literal(3)]),
                        (2, Some(first)) => Some(vec![MapLength::FromTask(first.clone())]),
                        (3, Some(first)) => Some(vec![
                            MapLength::FromTask(first.clone()),
                            MapLength::Literal(2),
                        ]),
                        _ => None,
                    };
                    t.upstream = upstream;
                    t
                })
                .collect();
            spec(specs)
        })
    })
}

#[derive(Debug, Clone)]
enum Step {
    Queue(usize, i32),
    Start(usize, i32, i32),
    Push(usize, i32, i32, Option<i64>),
    Finish(usize, i32, i32, u8),
    Retry(usize, i32, i32, i64),
    Clear(usize, bool),
    Cancel(usize, i32),
    MarkRun(bool),
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let map_index = -1i32..3;
    proptest::collection::vec(
        prop_oneof![
            (0usize..8, map_index.clone()).prop_map(|(t, m)| Step::Queue(t, m)),
            (0usize..8, map_index.clone(), 0i32..4).prop_map(|(t, m, n)| Step::Start(t, m, n)),
            (
                0usize..8,
                map_index.clone(),
                0i32..4,
                proptest::option::of(0i64..4)
            )
                .prop_map(|(t, m, n, l)| Step::Push(t, m, n, l)),
            (0usize..8, map_index.clone(), 0i32..4, 0u8..8)
                .prop_map(|(t, m, n, o)| Step::Finish(t, m, n, o)),
            (0usize..8, map_index.clone(), 0i32..4, 0i64..30)
                .prop_map(|(t, m, n, s)| Step::Retry(t, m, n, s)),
            (0usize..8, map_index).prop_map(|(t, m)| Step::Cancel(t, m)),
            (0usize..8, any::<bool>()).prop_map(|(t, d)| Step::Clear(t, d)),
            any::<bool>().prop_map(Step::MarkRun),
        ],
        0..80,
    )
}

fn outcome_for(spec: &DagSpec, task_id: &str, pick: u8) -> Outcome {
    let task = &spec.tasks[task_id];
    match (pick, task.kind) {
        (0 | 1, _) => Outcome::Failed {
            reason: "random".into(),
        },
        (2, _) => Outcome::FailedWithoutRetry {
            reason: "random, no retry".into(),
        },
        (3, _) => Outcome::Skipped {
            reason: "the task skipped itself".into(),
        },
        (_, TaskKind::Branch) => Outcome::Branch(
            task.downstream
                .iter()
                .take(pick as usize % 2 + 1)
                .cloned()
                .collect(),
        ),
        (_, TaskKind::ShortCircuit { .. }) => Outcome::ShortCircuit(pick.is_multiple_of(2)),
        _ => Outcome::Success,
    }
}

fn command_for(spec: &DagSpec, step: &Step) -> Command {
    let ids: Vec<&String> = spec.tasks.keys().collect();
    let id = |i: usize| ids[i % ids.len()].clone();
    match step {
        Step::Queue(t, m) => Command::Queue {
            task_id: id(*t),
            map_index: *m,
        },
        Step::Start(t, m, n) => Command::ReportStarted {
            task_id: id(*t),
            map_index: *m,
            try_number: *n,
            hostname: "h".into(),
            pid: None,
        },
        Step::Push(t, m, n, l) => push(id(*t), *m, *n, *l),
        Step::Finish(t, m, n, o) => {
            let task_id = id(*t);
            Command::ReportFinished {
                outcome: outcome_for(spec, &task_id, *o),
                task_id,
                map_index: *m,
                try_number: *n,
                at: t0(),
                outlet_events: Default::default(),
            }
        }
        Step::Clear(t, downstream) => Command::Clear {
            task_ids: vec![id(*t)],
            only_map_indexes: Default::default(),
            downstream: *downstream,
        },
        Step::Cancel(t, m) => Command::Cancel {
            task_id: id(*t),
            map_index: *m,
        },
        Step::MarkRun(success) => Command::MarkRun { success: *success },
        Step::Retry(t, m, n, s) => Command::RetryDue {
            task_id: id(*t),
            map_index: *m,
            try_number: *n,
            at: t0() + Duration::seconds(*s),
        },
    }
}

/// Checks one accepted batch of events against the state it was decided in.
fn check_events(spec: &DagSpec, before: &RunState, events: &[Event]) -> Result<(), TestCaseError> {
    let mut state = before.clone();
    for event in events {
        // Only a clear touches a finished run.
        if !matches!(event, Event::TaskCleared(_) | Event::RunCleared(_)) {
            prop_assert!(
                !matches!(state.status, RunStatus::Success | RunStatus::Failed),
                "event {:?} after the run ended",
                event.event_type()
            );
        }
        if let Some(ti) = event.task_instance() {
            let id = (ti.task_id.clone(), ti.map_index);
            let task = &spec.tasks[&ti.task_id];
            let current = state.tis.get(&id).cloned();
            let current_state = current.as_ref().map(|t| t.state);
            match event {
                Event::TaskScheduled(e) => {
                    let current = current.expect("scheduled instances exist");
                    prop_assert!(
                        matches!(current.state, TiState::Pending | TiState::UpForRetry),
                        "scheduled from {:?}",
                        current.state
                    );
                    prop_assert_eq!(
                        e.try_number,
                        current.try_number + 1,
                        "tries go up one at a time"
                    );
                    prop_assert!(
                        task.mapped.is_none() || ti.map_index >= 0,
                        "a mapped task runs only once expanded"
                    );
                    if current.state == TiState::Pending {
                        let verdict = state.verdict(spec, task, ti.map_index);
                        prop_assert_eq!(
                            verdict,
                            Verdict::Run,
                            "{} scheduled against its trigger rule",
                            ti.task_id
                        );
                    }
                }
                Event::TaskMapped(e) => {
                    prop_assert!(
                        task.mapped.is_some() && ti.map_index == -1,
                        "only a mapped placeholder expands"
                    );
                    prop_assert_eq!(current_state, Some(TiState::Pending));
                    prop_assert!(e.count > 0, "an empty expansion is a skip, not a mapping");
                }
                Event::TaskSkipped(e) if e.reason.as_deref() == Some("the task skipped itself") => {
                    prop_assert_eq!(
                        current_state,
                        Some(TiState::Running),
                        "only a running try skips itself"
                    );
                }
                Event::TaskSkipped(_) | Event::TaskUpstreamFailed(_) => {
                    prop_assert_eq!(
                        current_state,
                        Some(TiState::Pending),
                        "only pending task instances are skipped"
                    );
                }
                Event::TaskCleared(_) => {
                    prop_assert!(
                        !matches!(
                            current_state,
                            Some(TiState::Queued | TiState::Running) | None
                        ),
                        "cleared from {:?}",
                        current_state
                    );
                }
                Event::TaskFailed(e) if e.try_number == 0 => {
                    prop_assert!(
                        task.mapped.is_some() && ti.map_index == -1,
                        "only an expansion fails without a try"
                    );
                    prop_assert_eq!(current_state, Some(TiState::Pending));
                }
                Event::TaskFailed(e) if e.reason.starts_with("cancelled") => {
                    prop_assert!(
                        matches!(current_state, Some(TiState::Queued | TiState::Running)),
                        "only a try in flight is cancelled, not one in {:?}",
                        current_state
                    );
                }
                Event::TaskSucceeded(_)
                | Event::TaskFailed(_)
                | Event::TaskUpForRetry(_)
                | Event::XComPushed(_) => {
                    prop_assert_eq!(
                        current_state,
                        Some(TiState::Running),
                        "only running tries end or push"
                    );
                }
                _ => {}
            }
        }
        if matches!(event, Event::RunSucceeded(_) | Event::RunFailed(_)) {
            let next = evolve(state.clone(), event);
            prop_assert!(
                next.tis.values().all(|t| t.state.is_final()),
                "run ended with unfinished task instances"
            );
        }
        state = evolve(state, event);
    }
    Ok(())
}

/// A user's mark of the whole run: it ends as asked, every task instance final, and what was
/// already as wanted (or skipped, or left alone by a failure mark) untouched.
fn check_mark_run(before: &RunState, events: &[Event], success: bool) -> Result<(), TestCaseError> {
    let after = events.iter().fold(before.clone(), evolve);
    let wanted = if success {
        RunStatus::Success
    } else {
        RunStatus::Failed
    };
    prop_assert_eq!(after.status, wanted);
    for (id, ti) in &before.tis {
        let now = after.tis[id].state;
        prop_assert!(now.is_final(), "{:?} left {:?} by the mark", id, now);
        match (success, ti.state) {
            (true, TiState::Success | TiState::Skipped) => prop_assert_eq!(now, ti.state),
            (true, _) => prop_assert_eq!(now, TiState::Success),
            (false, state) if state.is_final() => prop_assert_eq!(now, state),
            (false, TiState::Queued | TiState::Running) => prop_assert_eq!(now, TiState::Failed),
            (false, _) => prop_assert_eq!(now, TiState::Skipped),
        }
    }
    Ok(())
}

/// A well-behaved executor: runs whatever is scheduled (pushing a two-item result, then
/// succeeding), and fires due retries.
fn drive_to_completion(spec: &DagSpec, state: &mut RunState) -> Result<(), TestCaseError> {
    for _ in 0..500 {
        if matches!(state.status, RunStatus::Success | RunStatus::Failed) {
            return Ok(());
        }
        if state.status == RunStatus::Queued {
            let events = decide(spec, state, Command::Start)
                .map_err(|r| TestCaseError::fail(format!("start rejected: {r}")))?;
            check_events(spec, state, &events)?;
            *state = events.iter().fold(state.clone(), evolve);
            continue;
        }
        let Some((id, ti)) = state
            .tis
            .iter()
            .find(|(_, t)| !t.state.is_final() && t.state != TiState::Pending)
            .map(|(id, ti)| (id.clone(), ti.clone()))
        else {
            return Err(TestCaseError::fail(format!(
                "deadlock: nothing runnable and the run has not ended: {state:?}"
            )));
        };
        let (task_id, map_index) = id;
        let mut commands = Vec::new();
        match ti.state {
            TiState::Scheduled => commands.push(Command::Queue { task_id, map_index }),
            TiState::Queued => commands.push(Command::ReportStarted {
                task_id,
                map_index,
                try_number: ti.try_number,
                hostname: "h".into(),
                pid: None,
            }),
            TiState::Running => {
                commands.push(push(task_id.clone(), map_index, ti.try_number, Some(2)));
                commands.push(Command::ReportFinished {
                    outcome: outcome_for(spec, &task_id, 2),
                    task_id,
                    map_index,
                    try_number: ti.try_number,
                    at: t0(),
                    outlet_events: Default::default(),
                });
            }
            TiState::UpForRetry => commands.push(Command::RetryDue {
                task_id,
                map_index,
                try_number: ti.try_number,
                at: ti.due_at.unwrap(),
            }),
            other => return Err(TestCaseError::fail(format!("unexpected state {other:?}"))),
        }
        for command in commands {
            let events = decide(spec, state, command)
                .map_err(|r| TestCaseError::fail(format!("rejected: {r}")))?;
            check_events(spec, state, &events)?;
            *state = events.iter().fold(state.clone(), evolve);
        }
    }
    Err(TestCaseError::fail("the run did not finish in 500 steps"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_never_produce_an_illegal_state(spec in arb_spec(), steps in arb_steps()) {
        let mut state = RunState::queued(&spec, "r");
        let events = decide(&spec, &state, Command::Start).unwrap();
        check_events(&spec, &state, &events)?;
        state = events.iter().fold(state, evolve);
        let mut successes: BTreeMap<(String, i32, i32), usize> = BTreeMap::new();
        for step in &steps {
            let before = state.clone();
            match decide(&spec, &state, command_for(&spec, step)) {
                Ok(events) => {
                    match step {
                        Step::MarkRun(success) => check_mark_run(&state, &events, *success)?,
                        _ => check_events(&spec, &state, &events)?,
                    }
                    // Executions, not a user's marks, are what must never succeed twice.
                    let executed = if matches!(step, Step::MarkRun(_)) { &[][..] } else { &events[..] };
                    for e in executed {
                        if let Event::TaskSucceeded(s) = e {
                            *successes.entry((s.ti.task_id.clone(), s.ti.map_index, s.try_number)).or_default() += 1;
                        }
                    }
                    state = events.iter().fold(state, evolve);
                }
                Err(_) => prop_assert_eq!(&state, &before, "a rejection changes nothing"),
            }
            for (id, ti) in &before.tis {
                // A user may override a final state by clearing, or by marking the whole run.
                if ti.state.is_final() && !matches!(step, Step::Clear(..) | Step::MarkRun(_)) {
                    prop_assert_eq!(state.tis[id].state, ti.state, "final states stay final");
                }
            }
        }
        prop_assert!(successes.values().all(|n| *n == 1), "no try succeeds twice: {:?}", successes);
        drive_to_completion(&spec, &mut state)?;
    }
}
