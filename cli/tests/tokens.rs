//! `leoflow tokens` on a database, as a CI job's author runs it: a token created with custom
//! roles (`--dag-role`) records them, lists them and acts with them; a bad name is refused
//! with the flag named, and nothing is recorded.

use std::process::Output;

use leoflow_postgres::testing::{TestDatabase, fresh_database, test_cluster};
use serde_json::Value;

/// The URL of a test database over the cluster's socket.
fn url(db: &TestDatabase) -> String {
    format!(
        "postgres://leoflow@localhost/{}?host={}",
        db.name,
        test_cluster().socket_dir().display()
    )
}

/// `leoflow tokens <args>` on the database at `url`.
fn tokens(url: &str, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_leoflow"))
        .arg("tokens")
        .args(args)
        .env_remove("LEOFLOW_POSTGRES")
        .env("LEOFLOW_DATABASE_URL", url)
        .output()
        .unwrap()
}

/// What a command that must succeed printed, as JSON.
fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_with_custom_roles_lists_and_acts_with_them() {
    let db = fresh_database().await;
    let url = url(&db);
    let created = json(&tokens(
        &url,
        &[
            "create",
            "--role",
            "Public",
            "--dag-role",
            "team_b",
            "--dag-role",
            "team-a",
            "--dag-role",
            "team_b",
            "--output",
            "json",
        ],
    ));
    let (id, token) = (
        created["id"].as_str().unwrap(),
        created["token"].as_str().unwrap(),
    );
    // What every replica sees when the token is presented: the role, and the custom roles a
    // sign-in mapped to them would carry (sorted, once each).
    let user = leoflow_api::api_tokens::authenticate(&db.pool, token)
        .await
        .unwrap()
        .expect("the token holds");
    assert_eq!(
        (user.role.as_str(), user.dag_roles.clone()),
        ("Public", vec!["team-a".to_owned(), "team_b".to_owned()])
    );
    let plain = json(&tokens(
        &url,
        &["create", "--role", "Viewer", "--output", "json"],
    ));
    let plain_id = plain["id"].as_str().unwrap();
    let plain_user =
        leoflow_api::api_tokens::authenticate(&db.pool, plain["token"].as_str().unwrap())
            .await
            .unwrap()
            .unwrap();
    assert!(plain_user.dag_roles.is_empty());

    let listed = json(&tokens(&url, &["list", "--output", "json"]));
    let roles_of = |id: &str| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {listed}"))["dag_roles"]
            .clone()
    };
    assert_eq!(roles_of(id), serde_json::json!(["team-a", "team_b"]));
    assert_eq!(roles_of(plain_id), serde_json::json!([]));
    let table = tokens(&url, &["list"]);
    assert!(table.status.success(), "{table:?}");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.lines().next().unwrap().ends_with("DAG ROLES"),
        "{table}"
    );
    let line = |id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not in {table}"))
            .to_owned()
    };
    assert!(line(id).ends_with(" team-a,team_b"), "{table}");
    assert!(line(plain_id).ends_with(" -"), "{table}");

    // A bad name: refused naming the flag, nothing issued.
    for (name, said) in [
        ("", "--dag-role: a custom role's name cannot be empty"),
        ("team a", "--dag-role: \"team a\" holds whitespace"),
        ("Viewer", "--dag-role: \"Viewer\" is Airflow's role Viewer"),
    ] {
        let refused = tokens(&url, &["create", "--role", "Public", "--dag-role", name]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{name:?} was accepted");
        assert!(stderr.contains(said), "{name:?}: {stderr}");
        assert!(refused.stdout.is_empty(), "{name:?}: no token printed");
    }
    let listed = json(&tokens(&url, &["list", "--output", "json"]));
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
}
