//! Tenants that cannot see each other: over every `GET` route Leoflow serves, a caller of tenant
//! `acme` never gets anything of tenant `beta` — a route about one of beta's DAGs answers 404 as
//! for a DAG that does not exist, and no list, count, search, dashboard or audit log entry names
//! beta's DAG, run, Variable, Connection or Pool — while a platform admin (every tenant) sees
//! both. Then the writes: each tenant's Variables, Connections and Pools are its own, under the
//! same keys.

mod common;

use common::TestApi;
use leoflow_api::permissions::ROUTES;
use serde_json::{Value, json};

fn dag(dag_id: &str) -> String {
    format!(
        r#"
from airflow.sdk import DAG, task

@task
def work():
    return "{dag_id} says hello"

with DAG("{dag_id}", schedule=None, is_paused_upon_creation=False, tags=["{dag_id}_tag"]):
    work()
"#
    )
}

async fn get(api: &TestApi, token: &str, path: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .get(format!("{}{path}", api.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// `template` with its parameters naming `beta`'s objects (`ids`: its run, an event of its
/// DAG, its import error), or `~` where Airflow lists across.
fn fill(template: &str, [beta_run, event, import_error]: [&str; 3], tilde: bool) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{dag_id}" if tilde => "~".to_owned(),
            "{dag_run_id}" | "{run_id}" if tilde => "~".to_owned(),
            "{task_id}" if tilde => "~".to_owned(),
            "{dag_id}" => "beta_etl".to_owned(),
            "{dag_run_id}" | "{run_id}" => common::segment(beta_run),
            "{task_id}" => "work".to_owned(),
            "{try_number}" | "{task_try_number}" | "{version_number}" => "1".to_owned(),
            "{map_index}" => "-1".to_owned(),
            "{xcom_key}" => "return_value".to_owned(),
            "{event_log_id}" => event.to_owned(),
            "{import_error_id}" => import_error.to_owned(),
            // Keys acme does not have, so a leak cannot hide behind acme's own.
            "{variable_key}" => "beta_only_var".to_owned(),
            "{connection_id}" => "beta_only_conn".to_owned(),
            "{pool_name}" => "beta_only_pool".to_owned(),
            other if other.starts_with('{') => "no_such".to_owned(),
            other => other.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_nothing_of_another_on_any_route() {
    let api = TestApi::start(&dag("open_etl")).await;
    api.register_into("acme", &dag("acme_etl"), "acme").await;
    api.register_into("beta", &dag("beta_etl"), "beta").await;
    api.register_failing_into("beta_broken", "beta").await;
    // Lite's admin sees every tenant, and their DAGs by their keys.
    api.run("acme:acme_etl", json!({})).await;
    let beta_run = api.run("beta:beta_etl", json!({})).await;
    let event: i64 = sqlx::query_scalar(
        "SELECT position FROM events WHERE payload->>'dag_id' = 'beta:beta_etl' ORDER BY position LIMIT 1",
    )
    .fetch_one(&api.db.pool)
    .await
    .unwrap();
    let import_error: i64 = sqlx::query_scalar("SELECT id FROM import_error WHERE tenant = 'beta'")
        .fetch_one(&api.db.pool)
        .await
        .unwrap();
    let (event, import_error) = (event.to_string(), import_error.to_string());
    let acme = api.admin_of(Some("acme"));
    let platform = api.admin_of(None);
    let beta = api.admin_of(Some("beta"));
    for (path, body) in [
        (
            "/api/v2/variables",
            json!({"key": "beta_only_var", "value": "beta_etl says hello"}),
        ),
        (
            "/api/v2/connections",
            json!({"connection_id": "beta_only_conn", "conn_type": "http", "host": "beta_etl.internal"}),
        ),
        (
            "/api/v2/pools",
            json!({"name": "beta_only_pool", "slots": 7, "description": "beta_etl's"}),
        ),
    ] {
        let (status, created) = api
            .call_as(&beta, reqwest::Method::POST, path, Some(body))
            .await;
        assert_eq!(
            (status, &created["team_name"]),
            (201, &json!("beta")),
            "{path}: {created}"
        );
    }

    // Every GET route, once naming beta's objects and once across (`~`).
    let mut checked = 0;
    for (method, template, _) in ROUTES.iter().filter(|(m, _, _)| *m == "GET") {
        for tilde in [false, true] {
            let path = fill(template, [&beta_run, &event, &import_error], tilde);
            let (status, body) = get(&api, &acme, &path).await;
            assert!(status < 500, "{method} {path}: {status} {body}");
            // An answer never shows beta's DAG, run or XCom value (a refusal may repeat the id
            // it was asked about, nothing more).
            let leaked = body.contains("beta_etl says hello")
                || (status < 300
                    && ["beta_etl", "beta_broken", &beta_run]
                        .iter()
                        .any(|s| body.contains(s)));
            assert!(
                !leaked,
                "{method} {path} ({status}) shows tenant beta's: {body}"
            );
            if !tilde && template.contains("{dag_id}") {
                // As for a DAG that exists nowhere (most answer 404; a list of a DAG's queued
                // asset events is empty).
                let nowhere = path.replace("beta_etl", "no_such_dag");
                let (status_nowhere, body_nowhere) = get(&api, &acme, &nowhere).await;
                assert!(
                    (status, body.replace("beta_etl", "no_such_dag"))
                        == (status_nowhere, body_nowhere.clone()),
                    "{path}: beta's DAG must not exist for acme ({status} {body}; for a DAG \
                     that does not exist: {status_nowhere} {body_nowhere})"
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 150, "only {checked} requests");

    // What acme does see: its own, counted, searched and in its audit log.
    let (_, dags) = get(&api, &acme, "/api/v2/dags").await;
    let dags: Value = serde_json::from_str(&dags).unwrap();
    assert_eq!(dags["total_entries"], 1);
    assert_eq!(dags["dags"][0]["dag_id"], "acme_etl");
    let (_, found) = get(&api, &acme, "/api/v2/dags?dag_id_pattern=etl").await;
    assert_eq!(
        serde_json::from_str::<Value>(&found).unwrap()["total_entries"],
        1
    );
    let (_, tags) = get(&api, &acme, "/api/v2/dagTags").await;
    assert_eq!(
        serde_json::from_str::<Value>(&tags).unwrap()["tags"],
        json!(["acme_etl_tag"])
    );
    let (_, stats) = get(&api, &acme, "/ui/dashboard/dag_stats").await;
    assert_eq!(
        serde_json::from_str::<Value>(&stats).unwrap()["active_dag_count"],
        1
    );
    let (_, metrics) = get(&api, &acme, "/ui/dashboard/historical_metrics_data").await;
    let metrics: Value = serde_json::from_str(&metrics).unwrap();
    assert_eq!(metrics["dag_run_states"]["success"], 1, "{metrics}");
    let (_, log) = get(&api, &acme, "/api/v2/eventLogs?limit=1000").await;
    assert!(
        log.contains("acme_etl") && !log.contains("open_etl"),
        "{log}"
    );
    let (_, xcoms) = get(
        &api,
        &acme,
        "/api/v2/dags/~/dagRuns/~/taskInstances/~/xcomEntries",
    )
    .await;
    assert!(xcoms.contains("acme_etl"), "{xcoms}");

    let (_, errors) = get(&api, &acme, "/api/v2/importErrors").await;
    assert_eq!(
        serde_json::from_str::<Value>(&errors).unwrap()["total_entries"],
        0,
        "{errors}"
    );

    for list in ["variables", "connections"] {
        let (_, listed) = get(&api, &acme, &format!("/api/v2/{list}")).await;
        assert_eq!(
            serde_json::from_str::<Value>(&listed).unwrap()["total_entries"],
            0,
            "{listed}"
        );
    }
    // acme has its own default_pool, and only that.
    let (_, pools) = get(&api, &acme, "/api/v2/pools").await;
    let pools: Value = serde_json::from_str(&pools).unwrap();
    assert_eq!(pools["total_entries"], 1, "{pools}");
    assert_eq!(pools["pools"][0]["name"], "default_pool");
    assert_eq!(pools["pools"][0]["team_name"], "acme");

    // A platform admin sees every tenant.
    let (_, variables) = get(&api, &platform, "/api/v2/variables").await;
    let variables: Value = serde_json::from_str(&variables).unwrap();
    assert_eq!(
        variables["variables"][0]["team_name"], "beta",
        "{variables}"
    );
    let (_, pools) = get(&api, &platform, "/api/v2/pools?limit=100").await;
    let teams: Vec<String> = serde_json::from_str::<Value>(&pools).unwrap()["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| format!("{}/{}", p["team_name"], p["name"].as_str().unwrap()))
        .collect();
    // Every tenant that owns a DAG has its default_pool; Lite's tenant is Airflow's "no team".
    assert_eq!(
        teams,
        [
            "\"beta\"/beta_only_pool",
            "\"acme\"/default_pool",
            "\"beta\"/default_pool",
            "null/default_pool"
        ],
        "{pools}"
    );
    let (_, errors) = get(&api, &platform, "/api/v2/importErrors").await;
    assert!(errors.contains("beta_broken"), "{errors}");
    let (_, all) = get(&api, &platform, "/api/v2/dags").await;
    assert_eq!(
        serde_json::from_str::<Value>(&all).unwrap()["total_entries"],
        3
    );
    let (_, log) = get(&api, &platform, "/api/v2/eventLogs?limit=1000").await;
    assert!(log.contains("acme_etl") && log.contains("beta_etl"));
    let (status, _) = get(
        &api,
        &platform,
        &format!(
            "/api/v2/dags/beta:beta_etl/dagRuns/{}",
            common::segment(&beta_run)
        ),
    )
    .await;
    assert_eq!(status, 200);
}

/// A project with DAGs `etl` and `starter`, tagged with its tenant's `marker`.
fn etl_project(marker: &str) -> String {
    format!(
        r#"
from airflow.sdk import DAG, task

@task
def work():
    return "{marker} says hello"

with DAG("etl", schedule=None, is_paused_upon_creation=False, tags=["{marker}_tag"]):
    work()

with DAG("starter", schedule=None, is_paused_upon_creation=False):
    work()
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_ids_repeat_across_tenants_each_seeing_and_running_its_own() {
    let api = TestApi::start(&etl_project("open")).await;
    api.register_into("acme", &etl_project("acme"), "acme")
        .await;
    api.register_into("beta", &etl_project("beta"), "beta")
        .await;
    let (acme, beta) = (api.admin_of(Some("acme")), api.admin_of(Some("beta")));

    // Each tenant triggers its own `etl` by its id. (What its task sees, and a task of it
    // triggering `etl`: `cli/tests/remote.rs`, with real runners.)
    let mut runs = Vec::new();
    for (token, key) in [(&acme, "acme:etl"), (&beta, "beta:etl")] {
        let (status, run) = api
            .call_as(
                token,
                reqwest::Method::POST,
                "/api/v2/dags/etl/dagRuns",
                Some(json!({"logical_date": null})),
            )
            .await;
        assert_eq!((status, &run["dag_id"]), (200, &json!("etl")), "{run}");
        let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
        assert_eq!(api.wait_for(key, &run_id).await, "success");
        runs.push(run_id);
    }
    let (acme_run, beta_run) = (&runs[0], &runs[1]);

    // Every GET route, those about one DAG naming acme's `etl`, its run and its task: acme's,
    // by its names, and nothing of beta's `etl` nor any key (the audit log's payloads too).
    let mut checked = 0;
    for (method, template, _) in ROUTES.iter().filter(|(m, _, _)| *m == "GET") {
        let path = template
            .split('/')
            .map(|segment| match segment {
                "{dag_id}" => "etl".to_owned(),
                "{dag_run_id}" | "{run_id}" => common::segment(acme_run),
                "{task_id}" => "work".to_owned(),
                "{try_number}" | "{task_try_number}" | "{version_number}" => "1".to_owned(),
                "{map_index}" => "-1".to_owned(),
                "{xcom_key}" => "return_value".to_owned(),
                other if other.starts_with('{') => "no_such".to_owned(),
                other => other.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let (status, body) = get(&api, &acme, &path).await;
        assert!(status < 500, "{method} {path}: {status} {body}");
        for leak in ["beta says", "beta_tag", beta_run.as_str(), "acme:", "beta:"] {
            assert!(
                !body.contains(leak),
                "{method} {path} ({status}) shows {leak:?}: {body}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 80, "only {checked} routes");
    let (status, _) = get(&api, &acme, "/api/v2/dags/etl").await;
    assert_eq!(status, 200);

    // Lists, searches, bodies and the dependency graph: each tenant's own, by name.
    let (_, dags) = api
        .call_as(
            &beta,
            reqwest::Method::GET,
            "/api/v2/dags?dag_id_pattern=etl",
            None,
        )
        .await;
    assert_eq!(dags["total_entries"], 1, "{dags}");
    assert_eq!(
        (
            &dags["dags"][0]["dag_id"],
            &dags["dags"][0]["tags"][0]["name"]
        ),
        (&json!("etl"), &json!("beta_tag")),
        "{dags}"
    );
    let (_, listed) = api
        .call_as(
            &acme,
            reqwest::Method::POST,
            "/api/v2/dags/~/dagRuns/list",
            Some(json!({"dag_ids": ["etl"]})),
        )
        .await;
    assert_eq!(listed["total_entries"], 1, "{listed}");
    assert!(
        listed["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|run| run["dag_id"] == "etl" && run["dag_run_id"] != json!(beta_run)),
        "{listed}"
    );
    let (_, grid) = api
        .call_as(
            &acme,
            reqwest::Method::GET,
            "/ui/dags?dag_ids=etl&dag_ids=starter",
            None,
        )
        .await;
    assert_eq!(grid["total_entries"], 2, "{grid}");
    let (status, paused) = api
        .call_as(
            &acme,
            reqwest::Method::PATCH,
            "/api/v2/dags/etl",
            Some(json!({"is_paused": true})),
        )
        .await;
    assert_eq!(
        (status, &paused["dag_id"]),
        (200, &json!("etl")),
        "{paused}"
    );
    let paused: Vec<String> =
        sqlx::query_scalar("SELECT dag_id FROM dag WHERE is_paused ORDER BY dag_id")
            .fetch_all(&api.db.pool)
            .await
            .unwrap();
    assert_eq!(paused, ["acme:etl"]);
    // A key of another tenant names nothing for acme.
    let (status, _) = get(&api, &acme, "/api/v2/dags/beta:etl").await;
    assert_eq!(status, 404);

    // Who sees every tenant sees the three by their keys.
    let (_, all) = api
        .call(
            reqwest::Method::GET,
            "/api/v2/dags?dag_id_pattern=etl",
            None,
        )
        .await;
    let keys: Vec<&str> = all["dags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|dag| dag["dag_id"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["acme:etl", "beta:etl", "etl"], "{all}");
}
