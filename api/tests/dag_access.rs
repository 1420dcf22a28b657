//! Per-DAG access (`access_control`): a user whose only roles are custom ones sees, in every
//! list, only the DAGs (and their runs and task instances) their roles may read, and reaches a
//! DAG's own routes only with the actions granted there; everything else answers Airflow's 403.
//! A Leoflow API token holding custom roles (`leoflow tokens create --dag-role`) is held to
//! the same grants.

mod common;

use common::TestApi;
use leoflow_api::api_tokens;
use leoflow_events::catalog::ApiTokenIssued;
use leoflow_events::{AppendBatch, Metadata};
use reqwest::Method;
use serde_json::{Value, json};

const DAGS: &str = r#"
from airflow.sdk import DAG, task

@task
def work():
    return 1

with DAG("team_a_etl", schedule=None, is_paused_upon_creation=False, access_control={
    "team_a": {"DAGs": {"can_read", "can_edit"}, "DAG Runs": {"can_create"}},
}):
    work()

with DAG("team_b_etl", schedule=None, is_paused_upon_creation=False, access_control={"team_b": {"can_read"}}):
    work()

with DAG("open_etl", schedule=None, is_paused_upon_creation=False):
    work()
"#;

/// A session for someone whose role is `role` with the custom roles `dag_roles`, signed as the
/// server signs single sign-on sessions.
fn session(api: &TestApi, role: &str, dag_roles: &[&str]) -> String {
    api.session(json!({
        "sub": format!("someone-{}", dag_roles.join("-")), "role": role, "dag_roles": dag_roles,
    }))
}

async fn call(
    api: &TestApi,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", api.base))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn ids(list: &Value, key: &str, field: &str) -> Vec<String> {
    let mut ids: Vec<String> = list[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {list}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_roles_see_and_do_only_what_access_control_grants() {
    let api = TestApi::start(DAGS).await;
    for dag in ["team_a_etl", "team_b_etl", "open_etl"] {
        api.run(dag, json!({})).await;
    }
    let team_a = session(&api, "Public", &["team_a"]);
    let team_b = session(&api, "Public", &["team_b"]);
    let get = Method::GET;

    // Lists are filtered, not refused: the DAGs, runs and task instances of team_a's DAG only.
    let (status, dags) = call(&api, &team_a, get.clone(), "/api/v2/dags", None).await;
    assert_eq!(status, 200, "{dags}");
    assert_eq!(ids(&dags, "dags", "dag_id"), ["team_a_etl"]);
    assert_eq!(dags["total_entries"], 1, "the count is filtered too");
    let (_, ui) = call(&api, &team_a, get.clone(), "/ui/dags", None).await;
    assert_eq!(ids(&ui, "dags", "dag_id"), ["team_a_etl"]);
    let (_, runs) = call(&api, &team_a, get.clone(), "/api/v2/dags/~/dagRuns", None).await;
    assert_eq!(ids(&runs, "dag_runs", "dag_id"), ["team_a_etl"]);
    let (_, tis) = call(
        &api,
        &team_a,
        get.clone(),
        "/api/v2/dags/~/dagRuns/~/taskInstances",
        None,
    )
    .await;
    assert_eq!(ids(&tis, "task_instances", "dag_id"), ["team_a_etl"]);
    let asked = json!({"dag_ids": ["team_b_etl", "open_etl"]});
    let (status, none) = call(
        &api,
        &team_a,
        Method::POST,
        "/api/v2/dags/~/dagRuns/list",
        Some(asked.clone()),
    )
    .await;
    assert_eq!(
        (status, none["total_entries"].clone()),
        (200, json!(0)),
        "{none}"
    );
    let (_, none) = call(
        &api,
        &team_a,
        Method::POST,
        "/api/v2/dags/~/dagRuns/~/taskInstances/list",
        Some(asked),
    )
    .await;
    assert_eq!(none["total_entries"], 0, "{none}");
    let (_, team_b_dags) = call(&api, &team_b, get.clone(), "/api/v2/dags", None).await;
    assert_eq!(ids(&team_b_dags, "dags", "dag_id"), ["team_b_etl"]);

    // One DAG's routes: what the grant names, and nothing of other DAGs.
    let trigger = json!({"logical_date": null});
    let cases: [(&str, Method, &str, Option<Value>, u16); 9] = [
        ("team_a", get.clone(), "/api/v2/dags/team_a_etl", None, 200),
        (
            "team_a",
            get.clone(),
            "/api/v2/dags/team_a_etl/dagRuns",
            None,
            200,
        ),
        (
            "team_a",
            Method::POST,
            "/api/v2/dags/team_a_etl/dagRuns",
            Some(trigger.clone()),
            200,
        ),
        (
            "team_a",
            Method::PATCH,
            "/api/v2/dags/team_a_etl",
            Some(json!({"is_paused": true})),
            200,
        ),
        (
            "team_a",
            Method::DELETE,
            "/api/v2/dags/team_a_etl",
            None,
            403,
        ),
        ("team_a", get.clone(), "/api/v2/dags/team_b_etl", None, 403),
        (
            "team_a",
            get.clone(),
            "/api/v2/dags/open_etl/dagRuns",
            None,
            403,
        ),
        ("team_b", get.clone(), "/api/v2/dags/team_b_etl", None, 200),
        (
            "team_b",
            Method::POST,
            "/api/v2/dags/team_b_etl/dagRuns",
            Some(trigger.clone()),
            403,
        ),
    ];
    for (who, method, path, body, expected) in cases {
        let token = if who == "team_a" { &team_a } else { &team_b };
        let (status, answer) = call(&api, token, method.clone(), path, body).await;
        assert_eq!(status, expected, "{who} {method} {path}: {answer}");
        if status == 403 {
            assert_eq!(answer, json!({"detail": "Forbidden"}));
        }
    }
    // Counts across DAGs are filtered too; routes that do not filter, and routes about other
    // things, stay refused.
    let (_, stats) = call(&api, &team_a, get.clone(), "/api/v2/dagStats", None).await;
    assert_eq!(ids(&stats, "dags", "dag_id"), ["team_a_etl"]);
    let (status, _) = call(
        &api,
        &team_a,
        Method::PATCH,
        "/api/v2/dags?dag_id_pattern=%25",
        Some(json!({"is_paused": true})),
    )
    .await;
    assert_eq!(status, 403, "bulk pause across DAGs");
    for path in [
        "/api/v2/variables",
        "/api/v2/eventLogs",
        "/api/v2/importErrors",
    ] {
        let (status, _) = call(&api, &team_a, get.clone(), path, None).await;
        assert_eq!(status, 403, "{path}");
    }
    let (_, menus) = call(&api, &team_a, get.clone(), "/ui/auth/menus", None).await;
    assert_eq!(menus["authorized_menu_items"], json!(["Dags"]));

    // A role that reads every DAG is not narrowed by the custom roles it also holds.
    let viewer = session(&api, "Viewer", &["team_a"]);
    let (_, all) = call(&api, &viewer, get.clone(), "/api/v2/dags", None).await;
    assert_eq!(
        ids(&all, "dags", "dag_id"),
        ["open_etl", "team_a_etl", "team_b_etl"]
    );
    let (status, _) = call(
        &api,
        &viewer,
        Method::POST,
        "/api/v2/dags/team_b_etl/dagRuns",
        Some(trigger),
    )
    .await;
    assert_eq!(
        status, 403,
        "a Viewer triggers nothing, whatever its custom roles"
    );
}

/// A Leoflow API token of `role` in the `default` tenant holding the custom roles `dag_roles`,
/// recorded as `leoflow tokens create --role R --dag-role NAME…` records it.
async fn api_token(api: &TestApi, role: &str, dag_roles: &[&str]) -> String {
    let new = api_tokens::generate();
    let issued = ApiTokenIssued {
        token_id: new.id.clone(),
        role: role.to_owned(),
        tenant: "default".into(),
        digest: new.digest,
        expires_at: None,
        description: None,
        dag_roles: dag_roles.iter().map(|r| r.to_string()).collect(),
    };
    api.store
        .append(AppendBatch::new().push(issued, &Metadata::actor("cli")))
        .await
        .unwrap();
    new.token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_with_custom_roles_reaches_what_access_control_grants_them() {
    let api = TestApi::start(DAGS).await;
    let team_a = api_token(&api, "Public", &["team_a"]).await;
    let public = api_token(&api, "Public", &[]).await;
    let get = Method::GET;

    // Exactly what a sign-in mapped to team_a gets: its DAG, filtered lists, its grant.
    let (status, dags) = call(&api, &team_a, get.clone(), "/api/v2/dags", None).await;
    assert_eq!(status, 200, "{dags}");
    assert_eq!(ids(&dags, "dags", "dag_id"), ["team_a_etl"]);
    let cases: [(&str, Method, &str, Option<Value>, u16); 5] = [
        ("team_a", get.clone(), "/api/v2/dags/team_a_etl", None, 200),
        (
            "team_a",
            Method::POST,
            "/api/v2/dags/team_a_etl/dagRuns",
            Some(json!({"logical_date": null})),
            200,
        ),
        ("team_a", get.clone(), "/api/v2/dags/team_b_etl", None, 403),
        ("team_a", get.clone(), "/api/v2/dags/open_etl", None, 403),
        // The same role without the custom one reaches nothing.
        ("public", get.clone(), "/api/v2/dags/team_a_etl", None, 403),
    ];
    for (who, method, path, body, expected) in cases {
        let token = if who == "team_a" { &team_a } else { &public };
        let (status, answer) = call(&api, token, method.clone(), path, body).await;
        assert_eq!(status, expected, "{who} {method} {path}: {answer}");
    }
    let (status, _) = call(&api, &public, get, "/api/v2/dags", None).await;
    assert_eq!(status, 403, "Public alone lists no DAGs");
}
