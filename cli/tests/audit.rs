//! The audit trail end to end: a machine with a Leoflow API token (tenant `default`, the one Lite registers its DAGs into) triggers a
//! run and sets a Variable over `/api/v2` on a real Lite; the events record it — subject,
//! tenant, token id, client address, never the token's secret — and `leoflow audit` and the
//! UI's audit log (`/api/v2/eventLogs`) show it; bad filters get a clear error.

use std::path::Path;

use leoflow_postgres::{ClusterSettings, ManagedCluster};
use reqwest::Method;
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;

mod common;

use common::lite::{Client, LiteProject, leoflow, output, text};

const DAG: &str = r#"
from airflow.sdk import DAG, task

with DAG("audited", schedule=None):
    @task
    def hello():
        return 1

    hello()
"#;

/// What the audit test adds to a Lite project: `leoflow` commands on its home.
type Setup = LiteProject;

impl LiteProject {
    /// `leoflow <args>` on this home: its stdout, after checking it succeeded.
    fn leoflow_ok(&self, args: &[&str]) -> String {
        let done = output(&mut leoflow(&self.home, args));
        assert!(
            done.status.success(),
            "leoflow {args:?}: {}",
            text(&done.stderr)
        );
        text(&done.stdout)
    }

    /// `leoflow audit <args> --output json`, parsed.
    fn audit(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["audit"];
        all.extend(args);
        all.extend(["--output", "json"]);
        let printed = self.leoflow_ok(&all);
        serde_json::from_str(&printed).unwrap_or_else(|e| panic!("not JSON ({e}): {printed}"))
    }
}

/// The `metadata` column of every event, as stored.
async fn stored_metadata(home: &Path) -> Vec<String> {
    let cluster = ManagedCluster::new(home.join("postgres"), ClusterSettings::durable()).unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(cluster.connect_options("leoflow_dev"))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT metadata::text FROM events ORDER BY position")
        .fetch_all(&pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machines_changes_are_audited_with_its_token_tenant_and_address_never_its_secret() {
    let setup = Setup::new("audit", DAG);
    let lite = setup.lite();
    let started = chrono::Utc::now();

    let created: Value = serde_json::from_str(&setup.leoflow_ok(&[
        "tokens", "create", "--role", "Admin", "--tenant", "default", "--output", "json",
    ]))
    .unwrap();
    let (id, token) = (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    );
    let secret = token
        .strip_prefix(&format!("lf_{id}_"))
        .expect("a token is lf_<id>_<secret>")
        .to_owned();
    let machine = Client {
        base: lite.base.clone(),
        token: token.clone(),
        http: reqwest::Client::new(),
    };
    let (status, run) = machine
        .call(
            Method::POST,
            "/api/v2/dags/audited/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let (status, variable) = machine
        .call(
            Method::POST,
            "/api/v2/variables",
            Some(json!({"key": "deployed_by", "value": "ci"})),
        )
        .await;
    assert_eq!(status, 201, "{variable}");

    // `leoflow audit --actor`: exactly the machine's two changes, with who, where and how.
    let subject = format!("token:{id}");
    let by_machine = setup.audit(&["--actor", &subject]);
    let actions: Vec<&str> = by_machine
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["RunQueued", "VariableSet"], "{by_machine:#?}");
    for entry in &by_machine {
        assert_eq!(entry["actor"], subject.as_str(), "{entry}");
        assert_eq!(entry["tenant"], "default", "{entry}");
        assert_eq!(entry["token_id"], id.as_str(), "{entry}");
        assert_eq!(entry["client"], "127.0.0.1", "{entry}");
    }
    assert_eq!(
        by_machine[0]["resource"],
        format!("run:audited/{run_id}"),
        "{by_machine:#?}"
    );
    assert_eq!(by_machine[1]["resource"], "variable:deployed_by");

    // The same by tenant, by resource (a DAG id, a stream), by action and time.
    assert_eq!(setup.audit(&["--tenant", "default"]), by_machine);
    assert_eq!(setup.audit(&["--tenant", "globex"]), Vec::<Value>::new());
    assert_eq!(
        setup.audit(&["--actor", &subject, "--resource", "audited"]),
        by_machine[..1]
    );
    assert_eq!(
        setup.audit(&["--resource", "variable:deployed_by"]),
        by_machine[1..]
    );
    let since = started.to_rfc3339();
    let variable_sets = setup.audit(&["--action", "VariableSet", "--since", &since]);
    assert_eq!(variable_sets, by_machine[1..]);
    assert_eq!(
        setup.audit(&[
            "--action",
            "VariableSet",
            "--since",
            "1h",
            "--until",
            &since
        ]),
        Vec::<Value>::new(),
        "nothing of the machine's before the test started"
    );
    let recent = setup.audit(&["--action", "RunQueued", "--since", "10m", "--limit", "1"]);
    assert_eq!(recent, by_machine[..1]);

    // The table for people: the same events, one line each.
    let table = setup.leoflow_ok(&["audit", "--actor", &subject]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("POSITION"), "{table}");
    for (line, action) in lines[1..].iter().zip(["RunQueued", "VariableSet"]) {
        for shown in [subject.as_str(), "default", "127.0.0.1", action] {
            assert!(line.contains(shown), "{shown} not in {line}");
        }
    }

    // The UI's audit log: the subject is the owner, the rest of the actor is in `extra`.
    let admin = Client::login(&lite.base).await;
    let logs = admin
        .get(&format!("/api/v2/eventLogs?owner={subject}&limit=10"))
        .await;
    assert_eq!(logs["total_entries"], 2, "{logs}");
    for entry in logs["event_logs"].as_array().unwrap() {
        let extra: Value = serde_json::from_str(entry["extra"].as_str().unwrap()).unwrap();
        assert_eq!(
            extra["actor"],
            json!({"tenant": "default", "client": "127.0.0.1", "token_id": id}),
            "{entry}"
        );
    }

    // The secret is nowhere: not in what audit prints, not in the log's metadata.
    let everything = setup.leoflow_ok(&["audit", "--output", "json", "--limit", "1000"]);
    let metadata = stored_metadata(&setup.home).await;
    assert!(
        metadata
            .iter()
            .any(|m| m.contains(&format!("\"token_id\": \"{id}\""))),
        "{metadata:#?}"
    );
    for place in [&everything, &table, &logs.to_string(), &metadata.join("\n")] {
        assert!(
            !place.contains(&secret),
            "the token's secret leaked: {place}"
        );
    }

    // Bad filters: one clear error each, nothing listed.
    for (args, said) in [
        (
            &["--since", "yesterday"][..],
            "neither an RFC 3339 time nor a duration",
        ),
        (&["--resource", "run:"][..], "neither a DAG id nor a stream"),
        (&["--limit", "0"][..], "--limit"),
        (
            &[
                "--since",
                "2026-01-02T00:00:00Z",
                "--until",
                "2026-01-01T00:00:00Z",
            ][..],
            "is after --until",
        ),
    ] {
        let mut all = vec!["audit"];
        all.extend(args);
        let refused = output(&mut leoflow(&setup.home, &all));
        assert!(!refused.status.success(), "{args:?} was accepted");
        assert!(
            text(&refused.stderr).contains(said),
            "{args:?}: {}",
            text(&refused.stderr)
        );
        assert!(text(&refused.stdout).is_empty(), "{args:?}");
    }
    drop(lite);
}
