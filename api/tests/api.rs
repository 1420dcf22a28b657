//! `/api/v2` and `/ui` against a real Postgres with runs made by the real scheduler and agent
//! service; every response is checked against Airflow 3.2.2's OpenAPI documents.

mod common;

use common::{TestApi, segment};
use reqwest::Method;
use serde_json::json;

const DAGS: &str = r#"
from datetime import datetime, timezone
from airflow.sdk import DAG, Label, Param, task
from airflow.providers.standard.operators.bash import BashOperator

with DAG(
    "pipeline",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    tags=["api", "test"],
    is_paused_upon_creation=False,
    params={"n": Param(3, type="integer")},
    description="For the API tests",
):
    @task
    def extract():
        return 1

    @task
    def transform(x):
        return x

    @task
    def load(values):
        return values

    extract() >> Label("then load") >> load(transform.expand(x=[1, 2, 3]))

with DAG("nightly", schedule="@daily", start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False, tags=["test"]):
    BashOperator(task_id="echo", bash_command="echo hi")

with DAG("flaky", schedule=None, is_paused_upon_creation=False):
    @task
    def will_fail():
        return None

    @task
    def after(v):
        return v

    after(will_fail())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dags_runs_and_task_instances_answer_in_airflows_shapes() {
    let api = TestApi::start(DAGS).await;
    let dags = api.get("/api/v2/dags").await;
    assert_eq!(dags["total_entries"], 3);
    let ids: Vec<&str> = dags["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["flaky", "nightly", "pipeline"]);
    let tagged = api.get("/api/v2/dags?tags=api").await;
    assert_eq!(tagged["total_entries"], 1);
    let paused = api.get("/api/v2/dags?paused=true").await;
    assert_eq!(paused["dags"][0]["dag_id"], "nightly");
    assert!(
        paused["dags"][0]["next_dagrun_run_after"].is_string(),
        "{paused}"
    );
    let pattern = api
        .get("/api/v2/dags?dag_id_pattern=pipe%25&order_by=-dag_id")
        .await;
    assert_eq!(pattern["total_entries"], 1);

    let run = api.run("pipeline", json!({"n": 4})).await;
    let failed = api.run("flaky", json!({})).await;
    assert_eq!(api.wait_for("flaky", &failed).await, "failed");

    let dag = api.get("/api/v2/dags/pipeline").await;
    assert_eq!(dag["tags"][0]["name"], "api");
    let details = api.get("/api/v2/dags/pipeline/details").await;
    assert_eq!(details["params"]["n"]["default"], 3, "{details}");
    assert_eq!(details["latest_dag_version"]["version_number"], 1);
    let tasks = api.get("/api/v2/dags/pipeline/tasks").await;
    assert_eq!(tasks["total_entries"], 3);
    api.get("/api/v2/dags/pipeline/tasks/transform").await;
    let source = api.get("/api/v2/dagSources/pipeline").await;
    assert!(source["content"].as_str().unwrap().contains("def extract"));
    api.get("/api/v2/dags/pipeline/dagVersions").await;
    api.get("/api/v2/dags/pipeline/dagVersions/1").await;
    api.get("/api/v2/dagTags").await;
    let stats = api
        .get("/api/v2/dagStats?dag_ids=pipeline&dag_ids=flaky")
        .await;
    assert_eq!(stats["total_entries"], 2);

    let runs = api.get("/api/v2/dags/pipeline/dagRuns").await;
    assert_eq!(runs["total_entries"], 1);
    assert_eq!(runs["dag_runs"][0]["conf"]["n"], 4);
    assert_eq!(runs["dag_runs"][0]["triggering_user_name"], "admin");
    let all = api.get("/api/v2/dags/~/dagRuns?limit=5&state=failed").await;
    assert_eq!(all["total_entries"], 1);
    let cursor = api
        .get("/api/v2/dags/~/dagRuns?cursor=&limit=1&order_by=-run_after")
        .await;
    assert!(cursor["next_cursor"].is_string(), "{cursor}");
    let one = api
        .get(&format!("/api/v2/dags/pipeline/dagRuns/{}", segment(&run)))
        .await;
    assert_eq!(one["state"], "success");

    let base = format!(
        "/api/v2/dags/pipeline/dagRuns/{}/taskInstances",
        segment(&run)
    );
    let tis = api.get(&base).await;
    assert_eq!(
        tis["total_entries"], 5,
        "extract, load and 3 mapped transforms: {tis}"
    );
    let extract = api.get(&format!("{base}/extract")).await;
    assert_eq!(
        extract["rendered_fields"]["op_args"],
        json!([-1]),
        "{extract}"
    );
    let mapped = api.get(&format!("{base}/transform/listMapped")).await;
    assert_eq!(mapped["total_entries"], 3);
    api.get(&format!("{base}/transform/1")).await;
    let tries = api.get(&format!("{base}/extract/tries")).await;
    assert_eq!(tries["total_entries"], 1);
    api.get(&format!("{base}/extract/tries/1")).await;
    api.get(&format!("{base}/transform/2/tries")).await;
    let across = api
        .get("/api/v2/dags/~/dagRuns/~/taskInstances?state=failed&state=upstream_failed")
        .await;
    assert_eq!(across["total_entries"], 2);
    let batch = api
        .call(
            Method::POST,
            "/api/v2/dags/~/dagRuns/list",
            Some(json!({"dag_ids": ["flaky"], "page_limit": 10})),
        )
        .await;
    assert_eq!(batch.1["total_entries"], 1);
    let batch = api
        .call(
            Method::POST,
            "/api/v2/dags/~/dagRuns/~/taskInstances/list",
            Some(json!({"dag_ids": ["pipeline"], "state": ["success"]})),
        )
        .await;
    assert_eq!(batch.1["total_entries"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_bodies_and_parameters_get_airflows_errors_never_a_500() {
    let api = TestApi::start(DAGS).await;
    let (status, body) = api.call(Method::GET, "/api/v2/dags/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["detail"], "The Dag with ID: `nope` was not found");
    let (status, _) = api
        .call(Method::GET, "/api/v2/dags/pipeline/dagRuns/nope", None)
        .await;
    assert_eq!(status, 404);
    let (status, body) = api.call(Method::GET, "/api/v2/dags?limit=abc", None).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "limit"]));
    let (status, body) = api
        .call(Method::GET, "/api/v2/dags?order_by=dag_id;drop", None)
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["query", "order_by"]));
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v2/dags/pipeline/dagRuns",
            Some(json!({"conf": {"n": "x"}, "logical_date": null})),
        )
        .await;
    assert_eq!(status, 400, "conf breaking params: {body}");
    assert!(body["detail"].as_str().unwrap().contains("\"n\""), "{body}");
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v2/dags/pipeline/dagRuns",
            Some(json!({"confx": {}, "logical_date": null})),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "confx"]));
    let injection = segment("x' OR '1'='1");
    let (status, _) = api
        .call(Method::GET, &format!("/api/v2/dags/{injection}"), None)
        .await;
    assert_eq!(status, 404);
    let long = "a".repeat(5000);
    let (status, _) = api
        .call(
            Method::GET,
            &format!("/api/v2/dags?dag_id_pattern={long}"),
            None,
        )
        .await;
    assert_eq!(status, 422);
    let unauthenticated = api
        .client
        .get(format!("{}/api/v2/dags", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    let ui = api
        .client
        .get(format!("{}/ui/config", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 401);
    let forged = api
        .client
        .get(format!("{}/api/v2/dags", api.base))
        .bearer_auth("eyJhbGciOiJIUzUxMiJ9.e30.x")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_views_logs_and_xcoms_of_a_run() {
    let api = TestApi::start(DAGS).await;
    let run = api.run("pipeline", json!({})).await;
    let seg = segment(&run);
    for path in [
        "/ui/config",
        "/ui/auth/me",
        "/ui/auth/menus",
        "/ui/dags?dag_runs_limit=5&limit=10&offset=0&tags_match_mode=any&exclude_stale=true&order_by=dag_id",
        "/ui/dags?limit=5&is_favorite=true",
        "/ui/dags/pipeline/latest_run",
        "/ui/dashboard/dag_stats",
        "/ui/dashboard/historical_metrics_data?start_date=2020-01-01T00:00:00Z",
        "/ui/grid/runs/pipeline?limit=10&order_by=-run_after",
        "/ui/grid/structure/pipeline?limit=10&order_by=-run_after",
        "/ui/structure/structure_data?dag_id=pipeline",
        "/ui/structure/structure_data?dag_id=pipeline&external_dependencies=true&version_number=1",
        "/ui/backfills?dag_id=pipeline&active=true",
        "/ui/connections/hook_meta",
        "/ui/dependencies",
        "/ui/calendar/pipeline",
        "/api/v2/version",
        "/api/v2/plugins",
        "/api/v2/monitor/health",
        "/api/v2/dagWarnings?dag_id=pipeline",
        "/api/v2/assets/events?limit=5",
        "/api/v2/config",
    ] {
        api.get(path).await;
    }
    let structure = api.get("/ui/grid/structure/pipeline").await;
    assert_eq!(structure[1]["id"], "transform");
    assert_eq!(structure[1]["is_mapped"], true);
    let graph = api
        .get("/ui/structure/structure_data?dag_id=pipeline")
        .await;
    let edges = graph["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 2);
    // An edge label of the DAG file is the edge's label; an edge without one has none.
    let label = |source: &str| {
        edges
            .iter()
            .find(|e| e["source_id"] == source)
            .map(|e| e["label"].clone())
    };
    assert_eq!(label("extract"), Some(json!("then load")), "{graph}");
    assert_eq!(label("transform"), Some(json!(null)), "{graph}");
    let grid = api.get("/ui/grid/runs/pipeline").await;
    assert_eq!(grid[0]["run_id"], run);
    api.get(&format!("/ui/gantt/pipeline/{seg}")).await;
    let (status, summaries) = api
        .get_text(
            &format!("/ui/grid/ti_summaries/pipeline?run_ids={seg}"),
            "application/x-ndjson",
        )
        .await;
    assert_eq!(status, 200);
    let line: serde_json::Value = serde_json::from_str(summaries.lines().next().unwrap()).unwrap();
    let transform = line["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == "transform")
        .unwrap();
    assert_eq!(transform["child_states"]["success"], 3, "{line}");

    let ti = format!("/api/v2/dags/pipeline/dagRuns/{seg}/taskInstances");
    let logs = api.get(&format!("{ti}/extract/logs/1")).await;
    assert!(
        logs["content"][0]["event"]
            .as_str()
            .unwrap()
            .contains("running extract"),
        "{logs}"
    );
    let more = api
        .get(&format!(
            "{ti}/extract/logs/1?token={}",
            logs["continuation_token"].as_str().unwrap()
        ))
        .await;
    assert_eq!(
        more["content"].as_array().unwrap().len(),
        0,
        "nothing after the token"
    );
    let (status, ndjson) = api
        .get_text(
            &format!("{ti}/transform/logs/1?map_index=2"),
            "application/x-ndjson",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(ndjson.lines().count(), 2);
    assert!(ndjson.contains("running transform [2]"));
    let (status, followed) = api
        .get_text(
            &format!("{ti}/extract/logs/1?follow=true"),
            "application/x-ndjson",
        )
        .await;
    assert_eq!(
        (status, followed.lines().count()),
        (200, 2),
        "a finished try's follow ends"
    );

    let xcoms = api
        .get(&format!("{ti}/transform/xcomEntries?map_index=1"))
        .await;
    assert_eq!(xcoms["total_entries"], 1);
    let value = api
        .get(&format!(
            "{ti}/transform/xcomEntries/return_value?map_index=1"
        ))
        .await;
    assert_eq!(value["value"], json!({"task": "transform", "map_index": 1}));
    let text = api
        .get(&format!(
            "{ti}/extract/xcomEntries/return_value?stringify=true"
        ))
        .await;
    assert!(text["value"].as_str().unwrap().contains("extract"));
    let all = api
        .get("/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries?limit=2")
        .await;
    assert_eq!(all["total_entries"], 5);
    let (status, _) = api
        .call(Method::GET, &format!("{ti}/extract/xcomEntries/nope"), None)
        .await;
    assert_eq!(status, 404);

    let (status, _) = api
        .call(Method::POST, "/api/v2/dags/pipeline/favorite", None)
        .await;
    assert_eq!(status, 204);
    let favorites = api.get("/ui/dags?is_favorite=true").await;
    assert_eq!(favorites["total_entries"], 1);
    assert_eq!(favorites["dags"][0]["is_favorite"], true);
    api.call(Method::POST, "/api/v2/dags/pipeline/unfavorite", None)
        .await;
    assert_eq!(
        api.get("/ui/dags?is_favorite=true").await["total_entries"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_mark_clear_note_and_delete_change_the_log() {
    let api = TestApi::start(DAGS).await;
    let (status, dag) = api
        .call(
            Method::PATCH,
            "/api/v2/dags/nightly",
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!((status, dag["is_paused"].clone()), (200, json!(false)));
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/dags/nightly?update_mask=description",
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, 400);

    let failed = api.run("flaky", json!({})).await;
    let seg = segment(&failed);
    let (status, marked) = api
        .call(
            Method::PATCH,
            &format!("/api/v2/dags/flaky/dagRuns/{seg}"),
            Some(json!({"state": "success", "note": "fixed by hand"})),
        )
        .await;
    assert_eq!(status, 200, "{marked}");
    assert_eq!(marked["state"], "success");
    assert_eq!(marked["note"], "fixed by hand");
    let tis = api
        .get(&format!("/api/v2/dags/flaky/dagRuns/{seg}/taskInstances"))
        .await;
    assert!(
        tis["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["state"] == "success"),
        "{tis}"
    );

    let (status, dry) = api
        .call(
            Method::POST,
            &format!("/api/v2/dags/flaky/dagRuns/{seg}/clear"),
            Some(json!({"dry_run": true})),
        )
        .await;
    assert_eq!((status, dry["total_entries"].clone()), (200, json!(2)));
    let (status, cleared) = api
        .call(
            Method::POST,
            "/api/v2/dags/flaky/clearTaskInstances",
            Some(json!({"dry_run": false, "dag_run_id": failed, "task_ids": ["will_fail"], "include_downstream": true})),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    assert_eq!(
        api.wait_for("flaky", &failed).await,
        "failed",
        "it fails again when re-run"
    );
    let tries = api
        .get(&format!(
            "/api/v2/dags/flaky/dagRuns/{seg}/taskInstances/will_fail/tries"
        ))
        .await;
    assert_eq!(tries["total_entries"], 2);

    let (status, body) = api
        .call(
            Method::PATCH,
            &format!("/api/v2/dags/flaky/dagRuns/{seg}/taskInstances/will_fail"),
            Some(json!({"new_state": "running"})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let events: Vec<String> = sqlx::query_scalar(
        "SELECT type FROM events WHERE metadata->>'actor' = 'admin' ORDER BY position",
    )
    .fetch_all(&api.db.pool)
    .await
    .unwrap();
    for expected in [
        "DagUnpaused",
        "RunQueued",
        "RunNoteSet",
        "RunSucceeded",
        "TaskCleared",
    ] {
        assert!(
            events.iter().any(|e| e == expected),
            "{expected} missing from {events:?}"
        );
    }

    let (status, _) = api.call(Method::DELETE, "/api/v2/dags/flaky", None).await;
    assert_eq!(status, 200);
    let (status, _) = api.call(Method::GET, "/api/v2/dags/flaky", None).await;
    assert_eq!(status, 404);
    let runs = api.get("/api/v2/dags/~/dagRuns?dag_id_pattern=flaky").await;
    assert_eq!(runs["total_entries"], 0, "its runs went with it");

    // Parsed again, the DAG is new: the old run's id can be triggered again.
    api.reparse().await;
    let (status, run) = api
        .call(
            Method::POST,
            "/api/v2/dags/flaky/dagRuns",
            Some(json!({"dag_run_id": failed, "logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    api.wait_for("flaky", &failed).await;
    let tries = api
        .get(&format!("/api/v2/dags/flaky/dagRuns/{seg}/taskInstances"))
        .await;
    assert!(
        tries["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .all(|ti| ti["try_number"].as_i64() <= Some(1)),
        "a new run, from first tries (the old one's will_fail was cleared to try 2): {tries}"
    );
    assert!(
        leoflow_projector::replay::verify(&api.db.pool)
            .await
            .unwrap()
            .is_equal()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_active_schedulers_real_heartbeat() {
    let api = TestApi::start(DAGS).await;
    let health = || async {
        let body = api.get("/api/v2/monitor/health").await;
        (
            body["scheduler"]["status"].clone(),
            body["scheduler"]["latest_scheduler_heartbeat"].clone(),
        )
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let (status, first) = loop {
        let (status, beat) = health().await;
        if status == "healthy" || tokio::time::Instant::now() > deadline {
            break (status, beat);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(status, "healthy");
    let recorded: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT max(last_heartbeat) FROM scheduler_heartbeat")
            .fetch_one(&api.db.pool)
            .await
            .unwrap();
    let reported: chrono::DateTime<chrono::Utc> = serde_json::from_value(first.clone()).unwrap();
    // The heartbeat, not the time of the request (beats are 5 s apart; a new one may land).
    assert!(
        (reported - recorded).num_milliseconds().abs() < 5_500,
        "{reported} vs {recorded}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (_, second) = health().await;
    let later: chrono::DateTime<chrono::Utc> = serde_json::from_value(second).unwrap();
    assert!(
        later == reported || (later - reported).num_milliseconds() >= 4_000,
        "a heartbeat moved by {} ms: it is the clock, not a beat",
        (later - reported).num_milliseconds()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_unhealthy_when_the_last_heartbeat_is_stale_or_missing() {
    let api = TestApi::without_scheduler().await;
    let body = api.get("/api/v2/monitor/health").await;
    assert_eq!(body["metadatabase"]["status"], "healthy");
    assert_eq!(body["scheduler"]["status"], "unhealthy");
    assert_eq!(body["scheduler"]["latest_scheduler_heartbeat"], json!(null));
    // A scheduler that died while leading two minutes ago.
    let stale = chrono::Utc::now() - chrono::TimeDelta::minutes(2);
    sqlx::query("INSERT INTO scheduler_heartbeat VALUES (gen_random_uuid(), 'gone', 1, $1, $1)")
        .bind(stale)
        .execute(&api.db.pool)
        .await
        .unwrap();
    let body = api.get("/api/v2/monitor/health").await;
    assert_eq!(body["scheduler"]["status"], "unhealthy");
    let reported: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["scheduler"]["latest_scheduler_heartbeat"].clone()).unwrap();
    assert_eq!(reported.timestamp_micros(), stale.timestamp_micros());
    // That scheduler ran no triggerer: there is none, as Airflow says without one.
    assert_eq!(
        body["triggerer"],
        json!({"status": null, "latest_triggerer_heartbeat": null})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_triggerer_s_health_is_that_of_the_leader_that_supervises_it() {
    let api = TestApi::without_scheduler().await;
    let lead = |beat: chrono::DateTime<chrono::Utc>| {
        sqlx::query(
            "INSERT INTO scheduler_heartbeat VALUES (gen_random_uuid(), 'h', 1, $1, $1, true)",
        )
        .bind(beat)
        .execute(&api.db.pool)
    };
    let now = chrono::Utc::now();
    lead(now).await.unwrap();
    let body = api.get("/api/v2/monitor/health").await;
    assert_eq!(body["triggerer"]["status"], "healthy", "{body}");
    let reported: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(body["triggerer"]["latest_triggerer_heartbeat"].clone()).unwrap();
    assert_eq!(reported.timestamp_micros(), now.timestamp_micros());
    // Its supervisor died leading: the triggerer is unhealthy with it.
    sqlx::query("DELETE FROM scheduler_heartbeat")
        .execute(&api.db.pool)
        .await
        .unwrap();
    lead(now - chrono::TimeDelta::minutes(2)).await.unwrap();
    let body = api.get("/api/v2/monitor/health").await;
    assert_eq!(body["triggerer"]["status"], "unhealthy", "{body}");
    assert_eq!(body["scheduler"]["status"], "unhealthy", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_one_map_index_clears_only_that_instance() {
    let api = TestApi::start(DAGS).await;
    let run = api.run("pipeline", json!({})).await;
    let tries = || async {
        let tis: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT map_index::bigint, try_number::bigint FROM task_instance \
             WHERE dag_id = 'pipeline' AND run_id = $1 AND task_id = 'transform' ORDER BY 1",
        )
        .bind(&run)
        .fetch_all(&api.db.pool)
        .await
        .unwrap();
        tis
    };
    assert_eq!(tries().await, [(0, 1), (1, 1), (2, 1)]);
    let clear = |dry_run: bool| json!({"dry_run": dry_run, "dag_run_id": run, "task_ids": [["transform", 1]]});
    let (status, listed) = api
        .call(
            Method::POST,
            "/api/v2/dags/pipeline/clearTaskInstances",
            Some(clear(true)),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let listed: Vec<(String, i64)> = listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["task_id"].as_str().unwrap().to_owned(),
                t["map_index"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("transform".to_owned(), 1)]);
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v2/dags/pipeline/clearTaskInstances",
            Some(clear(false)),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(api.wait_for("pipeline", &run).await, "success");
    assert_eq!(
        tries().await,
        [(0, 1), (1, 2), (2, 1)],
        "only transform[1] ran again"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/api/v2/dags/pipeline/clearTaskInstances",
            Some(json!({"dry_run": true, "dag_run_id": run, "task_ids": [["transform", "x"]]})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_instance_dependencies_say_why_it_does_not_run() {
    let api = TestApi::start(DAGS).await;
    let done = api.run("pipeline", json!({})).await;
    let (status, _) = api
        .call(
            Method::PATCH,
            "/api/v2/dags/pipeline",
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, run) = api
        .call(
            Method::POST,
            "/api/v2/dags/pipeline/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let waiting = segment(run["dag_run_id"].as_str().unwrap());
    let names = |body: serde_json::Value| -> Vec<String> {
        body["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let path = |run: &str, task: &str| {
        format!("/api/v2/dags/pipeline/dagRuns/{run}/taskInstances/{task}/dependencies")
    };
    let blocked = api.get(&path(&waiting, "load")).await;
    assert_eq!(
        names(blocked.clone()),
        ["Dag Not Paused", "Dagrun Running", "Trigger Rule"],
        "{blocked}"
    );
    let reason = blocked["dependencies"][2]["reason"].as_str().unwrap();
    assert!(
        reason.contains("'all_success'") && reason.contains("transform"),
        "{reason}"
    );
    // The finished run's instance: its state is why it does not run.
    let finished = api.get(&path(&segment(&done), "extract")).await;
    assert_eq!(
        names(finished.clone()),
        ["Task Instance State", "Dag Not Paused", "Dagrun Running"],
        "{finished}"
    );
    // Mapped instances answer on their own route.
    let mapped = api
        .get(&format!(
            "/api/v2/dags/pipeline/dagRuns/{}/taskInstances/transform/1/dependencies",
            segment(&done)
        ))
        .await;
    assert!(
        mapped["dependencies"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("'success'"),
        "{mapped}"
    );
}
