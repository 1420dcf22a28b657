//! Helpers shared by the scheduler core's tests.
#![allow(dead_code)] // each test binary uses its own subset

use chrono::{DateTime, Utc};
use leoflow_core::retry::RetryPolicy;
use leoflow_core::run::{Command, Outcome, RunState, XComPush, decide, evolve};
use leoflow_core::spec::{DagSpec, TaskKind, TaskSpec};
use leoflow_core::trigger::TriggerRule;
use leoflow_events::Event;

pub fn task(
    id: &str,
    upstream: &[&str],
    rule: TriggerRule,
    retries: u32,
    kind: TaskKind,
) -> TaskSpec {
    TaskSpec {
        task_id: id.to_owned(),
        upstream: upstream.iter().map(|u| u.to_string()).collect(),
        downstream: Vec::new(),
        trigger_rule: rule,
        retry: RetryPolicy {
            retries,
            retry_delay: 10.0,
            exponential_backoff: false,
            max_retry_delay: None,
        },
        execution_timeout: None,
        pool: "default_pool".into(),
        pool_slots: 1,
        priority_weight: 1,
        weight_rule: leoflow_core::spec::WeightRule::Downstream,
        queue: "default".into(),
        kind,
        mapped: None,
        mapped_group: None,
        resources: None,
        pod: None,
        concurrency: Default::default(),
        past: Default::default(),
        marks: None,
        role: Default::default(),
        setups: Default::default(),
        outlets: Vec::new(),
        outlet_aliases: Vec::new(),
        callbacks: Default::default(),
    }
}

pub fn spec(tasks: Vec<TaskSpec>) -> DagSpec {
    DagSpec::link(
        "dag".into(),
        tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect(),
    )
    .unwrap()
}

pub fn t0() -> DateTime<Utc> {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// Applies a command, returning the events; panics on rejection.
pub fn apply(spec: &DagSpec, state: &mut RunState, command: Command) -> Vec<Event> {
    let events = decide(spec, state, command.clone())
        .unwrap_or_else(|r| panic!("{command:?} rejected: {r}"));
    *state = events.iter().fold(state.clone(), evolve);
    events
}

pub fn types(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e.task_instance() {
            Some(ti) => format!("{}:{}", e.event_type(), ti.task_id),
            None => e.event_type().to_owned(),
        })
        .collect()
}

/// Queues, starts and finishes the current try of `task_id`.
pub fn run_task(
    spec: &DagSpec,
    state: &mut RunState,
    task_id: &str,
    outcome: Outcome,
) -> Vec<Event> {
    run_instance(spec, state, task_id, -1, outcome)
}

/// Queues, starts and finishes the current try of one instance of `task_id`.
pub fn run_instance(
    spec: &DagSpec,
    state: &mut RunState,
    task_id: &str,
    map_index: i32,
    outcome: Outcome,
) -> Vec<Event> {
    let try_number = start_instance(spec, state, task_id, map_index);
    finish_instance(spec, state, task_id, map_index, try_number, outcome)
}

/// Queues and starts the current try of one instance; returns its try number.
pub fn start_instance(spec: &DagSpec, state: &mut RunState, task_id: &str, map_index: i32) -> i32 {
    let try_number = state.tis[&(task_id.to_owned(), map_index)].try_number;
    let task_id = task_id.to_owned();
    apply(
        spec,
        state,
        Command::Queue {
            task_id: task_id.clone(),
            map_index,
        },
    );
    apply(
        spec,
        state,
        Command::ReportStarted {
            task_id,
            map_index,
            try_number,
            hostname: "h".into(),
            pid: None,
        },
    );
    try_number
}

/// Reports the outcome of a started try.
pub fn finish_instance(
    spec: &DagSpec,
    state: &mut RunState,
    task_id: &str,
    map_index: i32,
    try_number: i32,
    outcome: Outcome,
) -> Vec<Event> {
    let command = Command::ReportFinished {
        task_id: task_id.into(),
        map_index,
        try_number,
        outcome,
        at: t0(),
        outlet_events: Default::default(),
    };
    apply(spec, state, command)
}

pub fn push(task_id: String, map_index: i32, try_number: i32, length: Option<i64>) -> Command {
    Command::PushXCom(XComPush {
        task_id,
        map_index,
        try_number,
        key: "return_value".into(),
        value_hash: "h".into(),
        size_bytes: 2,
        length,
    })
}
