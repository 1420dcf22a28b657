//! A DAG's own callbacks on a real Lite: once a run ends, the triggerer runs the DAG's
//! `on_failure_callback` / `on_success_callback` with the context of the task instance that
//! last ended in the run's state and Airflow's `reason`; what they print, and the traceback of
//! one that raises, is in that try's log, and the run's state is the run's. A callback is in
//! the log until it ran: one interrupted by a kill -9 of Lite runs again after the restart,
//! and one that ran does not. Callbacks read Variables, Connections and their run's XComs as
//! the DAG's tasks do.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lite::{Client, LiteProject};
use common::log_text;
use reqwest::Method;
use serde_json::json;

const DAG: &str = r#"
import os
import time
from airflow.sdk import DAG, Connection, Variable, task

OUT = "SCRATCH"


def record(name):
    def callback(context):
        ti = context.get("ti")
        who = f"{ti.task_id} try {ti.try_number}" if ti else "none"
        print(f"{name}: reason={context['reason']} ti={who} run={context['run_id']}")
        with open(os.path.join(OUT, name), "a") as out:
            out.write(f"{context['reason']} {who} {context['run_id']}\n")
    return callback


def broken(context):
    raise RuntimeError("the pager is down")


def lookups(context):
    pager = Connection.get("pager")
    print(f"pulled {context['ti'].xcom_pull(task_ids='first')} for {Variable.get('channel')} "
          f"through {pager.host} with {pager.password}")


def slow(context):
    with open(os.path.join(OUT, "started"), "a") as out:
        out.write("started\n")
    while not os.path.exists(os.path.join(OUT, "go")):
        time.sleep(0.1)
    with open(os.path.join(OUT, "ran"), "a") as out:
        out.write("ran\n")


with DAG("fails", schedule=None, on_failure_callback=[broken, record("failure"), lookups],
         on_success_callback=record("unexpected")):
    @task
    def first():
        return "the first result"

    @task(retries=1, retry_delay=0)
    def boom():
        raise ValueError("no")

    first() >> boom()


with DAG("succeeds", schedule=None, on_success_callback=record("success"),
         on_failure_callback=record("unexpected")):
    @task
    def a():
        pass

    @task
    def b():
        pass

    a() >> b()


with DAG("slow", schedule=None, on_success_callback=slow):
    @task
    def only():
        pass

    only()
"#;

async fn trigger(client: &Client, dag_id: &str) -> String {
    let path = format!("/api/v2/dags/{dag_id}");
    let (status, body) = client
        .call(Method::PATCH, &path, Some(json!({"is_paused": false})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, run) = client
        .call(
            Method::POST,
            &format!("{path}/dagRuns"),
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    run["dag_run_id"].as_str().unwrap().to_owned()
}

async fn ended(client: &Client, dag_id: &str, run_id: &str) -> String {
    let run = client
        .until(&format!("/api/v2/dags/{dag_id}/dagRuns/{run_id}"), |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    run["state"].as_str().unwrap().to_owned()
}

/// The lines of `file` once it has at least `count`.
async fn lines(file: &Path, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= count {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} never had {count} lines: {text:?}",
            file.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log of a try, once it holds `needle`.
async fn log_with(client: &Client, path: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = log_text(&client.get(path).await);
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never said {needle:?}: {log}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_callbacks_run_once_each_run_ends_with_the_last_task_instances_context_and_survive_a_kill()
 {
    let project = LiteProject::new("dag-callbacks", DAG);
    let out = project.scratch.join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        project.project.join("dag.py"),
        DAG.replace("SCRATCH", out.to_str().unwrap()),
    )
    .unwrap();
    let mut lite = project.lite();
    let client = Client::login(&lite.base).await;
    let (status, body) = client
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "channel", "value": "#ops"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let pager = json!({"connection_id": "pager", "conn_type": "http", "host": "pager.example", "password": "s3cret"});
    let (status, body) = client
        .call(Method::POST, "/api/v2/connections", Some(pager))
        .await;
    assert_eq!(status, 201, "{body}");

    // A failed run: its failure callbacks, with the failed task's last try as their context;
    // the one that raises is logged, the next still runs, the run stays failed.
    let failed = trigger(&client, "fails").await;
    assert_eq!(ended(&client, "fails", &failed).await, "failed");
    assert_eq!(
        lines(&out.join("failure"), 1).await,
        [format!("task_failure boom try 2 {failed}")]
    );
    let boom_log = format!("/api/v2/dags/fails/dagRuns/{failed}/taskInstances/boom/logs/2");
    // Waited for by the last callback's line: the lines come as the callbacks run.
    let log = log_with(&client, &boom_log, "[dag callback] pulled the first result").await;
    assert!(
        log.contains("[dag callback] INFO - Executing on_failure_callback broken of DAG fails (reason: task_failure)"),
        "{log}"
    );
    assert!(
        log.contains("[dag callback] RuntimeError: the pager is down"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "[dag callback] failure: reason=task_failure ti=boom try 2 run={failed}"
        )),
        "{log}"
    );
    // The callbacks read the DAG's tenant's Variables and Connections, and their run's XComs.
    assert!(
        log.contains("[dag callback] pulled the first result for #ops through pager.example with"),
        "{log}"
    );
    // The task's own failure comes first; the callback's lines follow it.
    assert!(
        log.find("ValueError: no").unwrap() < log.find("[dag callback]").unwrap(),
        "{log}"
    );

    // A successful run: its success callback, with the last task to succeed as its context.
    let succeeded = trigger(&client, "succeeds").await;
    assert_eq!(ended(&client, "succeeds", &succeeded).await, "success");
    assert_eq!(
        lines(&out.join("success"), 1).await,
        [format!("success b try 1 {succeeded}")]
    );

    // A callback running when Lite is killed runs again once Lite is back.
    let slow = trigger(&client, "slow").await;
    assert_eq!(ended(&client, "slow", &slow).await, "success");
    lines(&out.join("started"), 1).await;
    assert!(!lite.signal(libc::SIGKILL).success());
    let lite = project.lite();
    let client = Client::login(&lite.base).await;
    assert_eq!(lines(&out.join("started"), 2).await.len(), 2);
    std::fs::write(out.join("go"), "").unwrap();
    assert_eq!(lines(&out.join("ran"), 1).await, ["ran"]);
    let only_log = format!("/api/v2/dags/slow/dagRuns/{slow}/taskInstances/only/logs/1");
    log_with(
        &client,
        &only_log,
        "Executing on_success_callback slow of DAG slow (reason: success)",
    )
    .await;

    // The callbacks that had run did not run again after the restart, and none ran for an end
    // the DAG has no such callback for.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (file, count) in [("failure", 1), ("success", 1), ("ran", 1), ("started", 2)] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert_eq!(text.lines().count(), count, "{file}: {text}");
    }
    assert!(!out.join("unexpected").exists());
    drop(lite);
}
