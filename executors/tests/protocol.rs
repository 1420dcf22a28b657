//! Both sides of the agent ↔ runner protocol agree on every message: each example of
//! `runner_protocol.json` (which `sdk/python/tests/test_protocol.py` checks against the SDK's
//! TypedDicts) reads as the Rust type and writes back as the same JSON, and every variant has
//! an example.

use std::collections::BTreeSet;

use leoflow_executors::protocol::{
    Operator, OperatorKind, PROTOCOL_VERSION, Reply, Request, RunnerOutcome, Start,
};
use leoflow_executors::zygote::{ForkAnswer, ForkRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/runner_protocol.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Every example of `section`, read as `T` and checked to write back unchanged.
fn round_trip<T: Serialize + DeserializeOwned>(section: &str) -> Vec<T> {
    let examples = fixture()[section].as_array().cloned().unwrap();
    assert!(!examples.is_empty(), "no examples of {section}");
    examples
        .into_iter()
        .map(|example| {
            let message: T = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("{section}: {example} does not read: {e}"));
            assert_eq!(
                serde_json::to_value(&message).unwrap(),
                example,
                "{section}"
            );
            message
        })
        .collect()
}

/// Asserts that `seen` holds every name of `all`.
fn covers(what: &str, seen: impl IntoIterator<Item = &'static str>, all: &[&'static str]) {
    let seen: BTreeSet<_> = seen.into_iter().collect();
    let missing: Vec<_> = all.iter().filter(|v| !seen.contains(*v)).collect();
    assert!(missing.is_empty(), "no example of the {what} {missing:?}");
}

// The matches below have no wildcard: a new variant does not compile until it is listed (and
// then fails until the fixture has an example of it).

fn request_variant(request: &Request) -> &'static str {
    match request {
        Request::Hello { .. } => "hello",
        Request::XcomPull { .. } => "xcom_pull",
        Request::XcomPush { .. } => "xcom_push",
        Request::Variable { .. } => "variable",
        Request::Connection { .. } => "connection",
        Request::TriggerDagRun { .. } => "trigger_dag_run",
        Request::DagRun { .. } => "dag_run",
        Request::AssetEvents { .. } => "asset_events",
        Request::AssetAliasEvents { .. } => "asset_alias_events",
        Request::TriggeringAssetEvents => "triggering_asset_events",
        Request::Rendered { .. } => "rendered",
        Request::Done { .. } => "done",
    }
}

fn outcome_variant(outcome: RunnerOutcome) -> &'static str {
    match outcome {
        RunnerOutcome::Success => "success",
        RunnerOutcome::Skipped => "skipped",
        RunnerOutcome::Failed => "failed",
        RunnerOutcome::FailedNoRetry => "failed_no_retry",
        RunnerOutcome::Deferred => "deferred",
        RunnerOutcome::Rescheduled => "rescheduled",
    }
}

fn reply_variant(reply: &Reply) -> &'static str {
    match reply {
        Reply::Ack => "ack",
        Reply::Found { .. } => "found",
        Reply::Refused { .. } => "refused",
    }
}

fn operator_variant(operator: OperatorKind) -> &'static str {
    match operator {
        OperatorKind::EmptyOperator => "EmptyOperator",
        OperatorKind::PythonOperator => "PythonOperator",
        OperatorKind::BranchPythonOperator => "BranchPythonOperator",
        OperatorKind::ShortCircuitOperator => "ShortCircuitOperator",
        OperatorKind::BashOperator => "BashOperator",
        OperatorKind::Task => "@task",
        OperatorKind::TaskBash => "@task.bash",
        OperatorKind::TaskBranch => "@task.branch",
        OperatorKind::TaskShortCircuit => "@task.short_circuit",
        OperatorKind::TaskSensor => "@task.sensor",
    }
}

fn fork_answer_variant(answer: &ForkAnswer) -> &'static str {
    match answer {
        ForkAnswer::Forked { .. } => "forked",
        ForkAnswer::Refused { .. } => "refused",
    }
}

#[test]
fn the_fixture_is_of_this_protocol_version() {
    assert_eq!(fixture()["protocol"], PROTOCOL_VERSION);
}

#[test]
fn every_request_of_the_runner_reads_and_writes_back_unchanged() {
    let requests: Vec<Request> = round_trip("requests");
    covers(
        "request",
        requests.iter().map(request_variant),
        &[
            "hello",
            "xcom_pull",
            "xcom_push",
            "variable",
            "connection",
            "trigger_dag_run",
            "dag_run",
            "asset_events",
            "asset_alias_events",
            "triggering_asset_events",
            "rendered",
            "done",
        ],
    );
    for request in &requests {
        assert_eq!(request.op(), request_variant(request));
    }
    let outcomes = requests.iter().filter_map(|r| match r {
        Request::Done { outcome, .. } => Some(outcome_variant(*outcome)),
        _ => None,
    });
    covers(
        "outcome",
        outcomes,
        &[
            "success",
            "skipped",
            "failed",
            "failed_no_retry",
            "deferred",
            "rescheduled",
        ],
    );
}

#[test]
fn every_reply_of_the_agent_reads_and_writes_back_unchanged() {
    let replies: Vec<Reply> = round_trip("replies");
    covers(
        "reply",
        replies.iter().map(reply_variant),
        &["ack", "found", "refused"],
    );
}

#[test]
fn start_messages_and_every_operator_read_and_write_back_unchanged() {
    let starts: Vec<Start> = round_trip("start");
    assert!(starts.iter().any(|s| s.task.execution_timeout.is_some()));
    // A custom operator is named by its class; the SDK's own names read as theirs.
    assert!(
        starts
            .iter()
            .any(|s| s.task.operator == Operator::Custom("AddOneOperator".into()))
    );
    assert!(
        starts
            .iter()
            .any(|s| s.task.operator == Operator::Standard(OperatorKind::Task))
    );
    let operators: Vec<OperatorKind> = round_trip("operators");
    covers(
        "operator",
        operators.into_iter().map(operator_variant),
        &[
            "EmptyOperator",
            "PythonOperator",
            "BranchPythonOperator",
            "ShortCircuitOperator",
            "BashOperator",
            "@task",
            "@task.bash",
            "@task.branch",
            "@task.short_circuit",
            "@task.sensor",
        ],
    );
}

#[test]
fn the_zygote_messages_read_and_write_back_unchanged() {
    let _: Vec<ForkRequest> = round_trip("fork_requests");
    let answers: Vec<ForkAnswer> = round_trip("fork_answers");
    covers(
        "fork answer",
        answers.iter().map(fork_answer_variant),
        &["forked", "refused"],
    );
}

#[test]
fn malformed_and_unknown_messages_are_refused_with_a_reason() {
    let refused = |line: &str| {
        serde_json::from_str::<Request>(line)
            .unwrap_err()
            .to_string()
    };
    assert!(refused(r#"{"op":"launch"}"#).contains("unknown variant `launch`"));
    assert!(refused(r#"{"key":"x"}"#).contains("missing field `op`"));
    assert!(refused(r#"{"op":"variable"}"#).contains("missing field `key`"));
    assert!(refused(r#"{"op":"variable","key":"k","extra":1}"#).contains("unknown field"));
    assert!(refused(r#"{"op":"done","outcome":"great"}"#).contains("unknown variant `great`"));
    let reply = serde_json::from_str::<Reply>(r#"{"ok":false}"#).unwrap_err();
    assert!(reply.to_string().contains("a reply is"), "{reply}");
}
