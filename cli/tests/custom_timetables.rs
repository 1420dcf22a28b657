//! A timetable of the project's own on a real Lite: the scheduler asks its Python for each next
//! run through the triggerer, queues the runs it names with their data intervals, and asks
//! again after each; a timetable that raises makes no run and stops nothing else. A restarted
//! Lite goes on from the last scheduled run, which is in the log.

mod common;

use std::time::{Duration, Instant};

use common::lite::{Client, LiteProject};
use reqwest::Method;
use serde_json::{Value, json};

const TIMETABLE: &str = r#"
import datetime as dt

from airflow.timetables.base import DagRunInfo, DataInterval, Timetable


class EveryTwoSeconds(Timetable):
    """A run per two-second window, from the window after the last (or the current one)."""

    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        if last_automated_data_interval is not None:
            start = last_automated_data_interval.end
        else:
            now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
            start = now - dt.timedelta(seconds=now.second % 2)
        return DagRunInfo.interval(start=start, end=start + dt.timedelta(seconds=2))


class NoCalendar(Timetable):
    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        raise ValueError("the calendar service is down")
"#;

const DAG: &str = r#"
import datetime as dt
from airflow.sdk import DAG, task
from timetable import EveryTwoSeconds, NoCalendar

with DAG("ticking", schedule=EveryTwoSeconds(), start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
         catchup=False, is_paused_upon_creation=True):
    @task
    def tick(data_interval_start=None, data_interval_end=None):
        print(f"window {data_interval_start.isoformat()} .. {data_interval_end.isoformat()}")

    tick()

with DAG("stuck", schedule=NoCalendar(), start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
         is_paused_upon_creation=True):
    @task
    def never():
        pass

    never()
"#;

async fn unpause(client: &Client, dag_id: &str, paused: bool) {
    let (status, body) = client
        .call(
            Method::PATCH,
            &format!("/api/v2/dags/{dag_id}"),
            Some(json!({"is_paused": paused})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// The DAG's scheduled runs, oldest first, once there are at least `count`.
async fn scheduled_runs(client: &Client, dag_id: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = client
            .get(&format!(
                "/api/v2/dags/{dag_id}/dagRuns?run_type=scheduled&order_by=logical_date"
            ))
            .await;
        let runs = runs["dag_runs"].as_array().cloned().unwrap_or_default();
        if runs.len() >= count {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{dag_id} has {} runs",
            runs.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn at(run: &Value, key: &str) -> chrono::DateTime<chrono::Utc> {
    run[key].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timetable_of_the_project_s_own_decides_each_next_run_and_one_that_raises_makes_none() {
    let project = LiteProject::new("custom-timetables", DAG);
    std::fs::write(project.project.join("timetable.py"), TIMETABLE).unwrap();
    let mut lite = project.lite();
    let client = Client::login(&lite.base).await;
    let dag = client.get("/api/v2/dags/ticking").await;
    assert_eq!(dag["timetable_summary"], "EveryTwoSeconds", "{dag}");

    unpause(&client, "stuck", false).await;
    unpause(&client, "ticking", false).await;
    let runs = scheduled_runs(&client, "ticking", 2).await;
    // Back to back two-second windows, each run's logical date its window's start, due at its end.
    for pair in runs.windows(2) {
        assert_eq!(
            at(&pair[0], "data_interval_end"),
            at(&pair[1], "data_interval_start")
        );
    }
    for run in &runs {
        let (start, end) = (at(run, "data_interval_start"), at(run, "data_interval_end"));
        assert_eq!((end - start).num_seconds(), 2, "{run}");
        assert_eq!(at(run, "logical_date"), start, "{run}");
        assert!(at(run, "run_after") >= end, "{run}");
        assert_eq!(start.timestamp() % 2, 0, "{run}");
    }

    // Lite killed and started again goes on from the last scheduled run: no window twice, none
    // skipped.
    assert!(!lite.signal(libc::SIGKILL).success());
    let lite = project.lite();
    let client = Client::login(&lite.base).await;
    let before = scheduled_runs(&client, "ticking", 0).await.len();
    let runs = scheduled_runs(&client, "ticking", before + 2).await;
    unpause(&client, "ticking", true).await;
    for pair in runs.windows(2) {
        assert_eq!(
            at(&pair[0], "data_interval_end"),
            at(&pair[1], "data_interval_start"),
            "{runs:?}"
        );
    }
    // The task's context has the timetable's window.
    let first = runs[0]["dag_run_id"].as_str().unwrap();
    let ti = client
        .until(
            &format!("/api/v2/dags/ticking/dagRuns/{first}/taskInstances/tick"),
            |ti| ti["state"] == "success",
        )
        .await;
    assert_eq!(ti["state"], "success");

    // The timetable that raises made no run; the DAG still runs by hand.
    assert_eq!(scheduled_runs(&client, "stuck", 0).await.len(), 0);
    client.run_to_success("stuck").await;
    drop(lite);
}
