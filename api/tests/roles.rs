//! Airflow's roles, route by route: for each of the five roles FAB ships, every `/api/v2` and
//! `/ui` route Leoflow serves answers 403 exactly when Airflow's permissions refuse that role.
//! What Airflow's permissions say is read now from its own artifacts
//! (`apache-airflow-core==3.2.2` and `apache-airflow-providers-fab`) by
//! `api/tests/airflow_permissions.py`, not from Leoflow's table.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::TestApi;
use leoflow_api::api_tokens;
use leoflow_events::catalog::ApiTokenIssued;
use leoflow_events::{AppendBatch, Metadata};
use reqwest::Method;
use serde_json::{Value, json};

/// The role × route table Airflow's artifacts give (`airflow_permissions.py`'s JSON).
fn airflow_permissions() -> Value {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("LEOFLOW_PYTHON")
        .unwrap_or_else(|_| repo.join(".venv/bin/python").display().to_string());
    let output = std::process::Command::new(python)
        .arg(repo.join("api/tests/airflow_permissions.py"))
        .output()
        .expect("run airflow_permissions.py");
    assert!(
        output.status.success(),
        "airflow_permissions.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("its JSON")
}

/// An API token of `role` in every tenant (the matrix is about roles; tenants have their own
/// test), recorded as `leoflow tokens create --tenant '*'` records it.
async fn token_of(api: &TestApi, role: &str) -> String {
    let new = api_tokens::generate();
    let issued = ApiTokenIssued {
        token_id: new.id.clone(),
        role: role.to_owned(),
        tenant: "*".into(),
        digest: new.digest,
        expires_at: None,
        description: None,
        dag_roles: Vec::new(),
    };
    api.store
        .append(AppendBatch::new().push(issued, &Metadata::actor("test")))
        .await
        .unwrap();
    new.token
}

/// `path` with every parameter naming nothing: an allowed role gets 404 or 422, never 403.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(name) => format!("no_such_{}", name.trim_end_matches('}')),
            None => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_exactly_the_roles_airflows_permissions_refuse() {
    let airflow = airflow_permissions();
    let api = TestApi::without_scheduler().await;
    let mut tokens = BTreeMap::new();
    for role in ["Admin", "Op", "User", "Viewer", "Public"] {
        tokens.insert(role, token_of(&api, role).await);
    }
    // Refused to every role by Leoflow's own handler, with the reason (docs/api.md): no
    // provider hooks run in the API server, no default connections are made. A role Airflow
    // refuses must still get 403 there, so only the allowed roles are not checked.
    let refused_by_leoflow = [
        "POST /api/v2/connections/test",
        "POST /api/v2/connections/defaults",
    ];
    let (mut checked, mut absent, mut wrong) = (0, Vec::new(), Vec::new());
    for route in airflow["routes"].as_array().unwrap() {
        let requirement = &route["requirement"];
        // Public routes need no role; a handler that refuses by itself (Airflow's `/ui/teams`
        // without multi-team mode) decides beyond roles.
        if requirement["kind"] == "public"
            || requirement["handler_403"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        {
            continue;
        }
        let method = Method::from_bytes(route["method"].as_str().unwrap().as_bytes()).unwrap();
        let template = route["path"].as_str().unwrap();
        let url = format!("{}{}", api.base, concrete(template));
        let call = |token: Option<&String>| {
            let mut request = api.client.request(method.clone(), &url).json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };
        // A route Leoflow does not serve answers an anonymous caller 404/405, not 401.
        if call(None).await != 401 {
            absent.push(format!("{method} {template}"));
            continue;
        }
        for (role, token) in &tokens {
            let allowed = route["allowed"][role].as_bool().unwrap();
            if allowed && refused_by_leoflow.contains(&format!("{method} {template}").as_str()) {
                continue;
            }
            let status = call(Some(token)).await;
            if (status == 403) == allowed {
                wrong.push(format!(
                    "{method} {template}: {role} got {status}, Airflow {}",
                    if allowed { "allows it" } else { "refuses it" }
                ));
            }
        }
        checked += 1;
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(
        checked > 100,
        "only {checked} routes checked; absent: {absent:?}"
    );
    eprintln!("{checked} routes checked for 5 roles; not served by Leoflow: {absent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn menus_and_the_refusal_body_are_airflows() {
    let airflow = airflow_permissions();
    let api = TestApi::without_scheduler().await;
    for role in ["Admin", "Op", "User", "Viewer", "Public"] {
        let token = token_of(&api, role).await;
        let menus: Value = api
            .client
            .get(format!("{}/ui/auth/menus", api.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        // Airflow's items for the role, among the pages Leoflow has.
        let airflows = &airflow["menus"]["by_role"][role]["authorized_menu_items"];
        for item in menus["authorized_menu_items"].as_array().unwrap() {
            assert!(
                airflows.as_array().unwrap().contains(item),
                "{role} is shown {item}, which Airflow hides from it"
            );
        }
        if role == "Viewer" || role == "Public" {
            let refused = api
                .client
                .get(format!("{}/api/v2/variables", api.base))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            assert_eq!(refused.status(), 403);
            let body: Value = refused.json().await.unwrap();
            assert_eq!(body, airflow["forbidden"]["body"], "{role}");
        }
    }
}
