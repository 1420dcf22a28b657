//! `/api/v2` and `/ui` against a real Postgres with runs made by the real scheduler and agent
//! service; every response is checked against Airflow 3.2.2's OpenAPI documents.

mod common;

use common::{TestApi, segment};
use reqwest::Method;
use serde_json::json;

const DAGS: &str = r#"
from datetime import datetime, timezone
from airflow.sdk import DAG, Param, task
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

    extract() >> load(transform.expand(x=[1, 2, 3]))

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
    api.get(&format!("{base}/extract")).await;
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
