//! Traces over OTLP: `leoflow server` and its agents send spans to a collector (a receiver
//! this test runs), and one run is one trace, linked parent to child from the API request that
//! triggered it through the command, the append, the scheduler's decisions, the dispatches,
//! the agents and the runners; the run's events keep the trace context in their metadata and
//! the JSON log lines carry the trace id.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use leoflow_telemetry::receiver::{ReceivedSpan, Receiver};
use serde_json::{Value, json};

mod common;

use common::lite::Client;
use common::server::{Deployment, PASSWORD};

/// Two tasks, the second downstream of the first: the second's dispatch is caused by the first
/// one's report, so the trace crosses from one agent to the next through the scheduler.
const PAIR_DAG: &str = r#"
from airflow.sdk import DAG, task

@task
def first():
    return 1

@task
def second(x):
    return x + 1

with DAG("pair", schedule=None, is_paused_upon_creation=False):
    second(first())
"#;

/// The caller's own trace: the request continues it.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The request's span, named as OpenTelemetry names HTTP server spans.
const REQUEST: &str = "POST /api/v2/dags/{dag_id}/dagRuns";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_is_one_trace_from_the_api_request_through_the_agents_to_the_runners() {
    let receiver = Receiver::start().await.unwrap();
    let deployment = Deployment::start("traces").await;
    deployment.register("pair", PAIR_DAG);
    let log_path = deployment.scratch.join("server.jsonl");
    let log = std::fs::File::create(&log_path).unwrap();
    let replica = deployment.replica_with("all", |command| {
        command
            .env("LEOFLOW_OTLP_ENDPOINT", receiver.endpoint())
            // Batches leave every 100 ms instead of every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("LEOFLOW_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,leoflow=info,leoflow_api=debug")
            .stderr(log);
    });

    let client = Client::login_as(&replica.base, PASSWORD).await;
    let response = client
        .http
        .post(format!("{}/api/v2/dags/pair/dagRuns", replica.base))
        .bearer_auth(&client.token)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"logical_date": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let run: Value = response.json().await.unwrap();
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    client
        .until(&format!("/api/v2/dags/pair/dagRuns/{run_id}"), |run| {
            run["state"] == "success"
        })
        .await;

    let spans = trace_with_both_runners(&receiver).await;
    let by_id: BTreeMap<&str, &ReceivedSpan> =
        spans.iter().map(|s| (s.span_id.as_str(), s)).collect();

    // Linked: every span's parent was received too, but for the request's, which is the
    // caller's span.
    for span in &spans {
        match span.parent_span_id.as_deref() {
            Some(CALLER_SPAN) => assert_eq!(span.name, REQUEST, "{span:?}"),
            Some(parent) => assert!(by_id.contains_key(parent), "orphan: {span:?}"),
            None => panic!("a second root in the run's trace: {span:?}"),
        }
    }
    let request = spans.iter().find(|s| s.name == REQUEST).unwrap();
    assert_eq!(
        request.attributes.get("http.route").map(String::as_str),
        Some("/api/v2/dags/{dag_id}/dagRuns"),
        "{request:?}"
    );

    // From the second task's runner up to the request, through both agents and the
    // scheduler, in the processes that did the work.
    let second_runner = spans
        .iter()
        .find(|s| s.name == "runner" && attempt_of(s, &by_id) == Some("second"))
        .expect("the second task's runner span");
    let ancestry = ancestry(second_runner, &by_id);
    let names: Vec<&str> = ancestry.iter().map(|s| s.name.as_str()).collect();
    for step in [
        "runner",
        "attempt",
        "dispatch",
        "schedule",
        "finish",
        "TaskAgent/Finish",
        "trigger_dag",
        "append",
        REQUEST,
    ] {
        assert!(names.contains(&step), "{step} missing from {names:?}");
    }
    let services: BTreeSet<&str> = ancestry.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        BTreeSet::from(["leoflow-agent", "leoflow-server"]),
        "{ancestry:?}"
    );
    assert!(
        spans.iter().any(|s| s.name == "decide"),
        "the appends' decisions"
    );

    // The log: every event of the run carries the trace context.
    let pool = deployment.pool().await;
    let traceparents: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT metadata->>'traceparent' FROM events WHERE stream = $1 ORDER BY position",
    )
    .bind(format!("run:pair/{run_id}"))
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(traceparents.len() >= 8, "{traceparents:?}");
    for traceparent in &traceparents {
        let traceparent = traceparent.as_deref().unwrap_or_default();
        assert!(
            traceparent.starts_with(&format!("00-{CALLER_TRACE}-")),
            "{traceparents:?}"
        );
    }

    // JSON log lines written inside the request carry its trace id.
    drop(replica);
    let logged = std::fs::read_to_string(&log_path).unwrap();
    let traced = logged
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| {
            line["spans"]
                .as_array()
                .is_some_and(|spans| spans.iter().any(|s| s["trace_id"] == CALLER_TRACE))
        })
        .count();
    assert!(
        traced > 0,
        "no JSON log line carries the trace id:\n{logged}"
    );
}

/// The spans of the caller's trace, once both tasks' runner spans arrived (agents send theirs
/// when they exit).
async fn trace_with_both_runners(receiver: &Receiver) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans: Vec<ReceivedSpan> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == CALLER_TRACE)
            .collect();
        let runners = spans.iter().filter(|s| s.name == "runner").count();
        let finishes = spans.iter().filter(|s| s.name == "finish").count();
        if runners == 2 && finishes == 2 {
            // What the last report caused (the run's end) may still be on its way.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return receiver
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == CALLER_TRACE)
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "the trace never got both runners: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The span and its ancestors, innermost first.
fn ancestry<'a>(
    span: &'a ReceivedSpan,
    by_id: &BTreeMap<&str, &'a ReceivedSpan>,
) -> Vec<&'a ReceivedSpan> {
    let mut chain = vec![span];
    while let Some(parent) = chain
        .last()
        .and_then(|s| s.parent_span_id.as_deref())
        .and_then(|id| by_id.get(id))
    {
        chain.push(parent);
    }
    chain
}

/// The task of the attempt span a span is under.
fn attempt_of<'a>(
    span: &'a ReceivedSpan,
    by_id: &BTreeMap<&str, &'a ReceivedSpan>,
) -> Option<&'a str> {
    ancestry(span, by_id)
        .into_iter()
        .find(|s| s.name == "attempt")
        .and_then(|s| s.attributes.get("task_id"))
        .map(String::as_str)
}
