//! The CLI against a running server: `leoflow login` keeps a token in a 0600 profile, `events
//! tail` reads the server's event feed as the caller may see it (a tenant's caller only their
//! tenant's events, followed as they are appended), and refusals end with the exit codes
//! scripts rely on. The server is a real `leoflow server` on a real Postgres and Redis; the CLI
//! runs from a home of its own with no database.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::lite::text;
use common::remote::{cli, login_admin, ok, run, token_file};
use common::server::{Deployment, PASSWORD};
use serde_json::{Value, json};

fn dag(dag_id: &str) -> String {
    format!(
        "from airflow.sdk import DAG, task\n\n@task\ndef work():\n    return 1\n\n\
         with DAG(\"{dag_id}\", schedule=None, is_paused_upon_creation=False):\n    work()\n"
    )
}

/// The event lines of `events tail --json` output: (type, DAG).
fn events(stdout: &[u8]) -> Vec<(String, String)> {
    text(stdout)
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            let dag = event["payload"]["dag_id"]
                .as_str()
                .or(event["payload"]["ti"]["dag_id"].as_str())
                .unwrap_or_default();
            (event["type"].as_str().unwrap().to_owned(), dag.to_owned())
        })
        .collect()
}

async fn trigger(base: &str, token: &str, dag_id: &str) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v2/dags/{dag_id}/dagRuns"))
        .bearer_auth(token)
        .json(&json!({"logical_date": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_keeps_a_profile_and_events_tail_shows_what_the_caller_may_see() {
    let deployment = Deployment::start("remote-cli").await;
    deployment.register_into("acme", &dag("acme_etl"), "acme");
    deployment.register_into("beta", &dag("beta_etl"), "beta");
    let api = deployment.replica("all");
    let base = api.base.as_str();
    let laptop = deployment.scratch.join("laptop");
    let acme = token_file(&deployment, "Admin", "acme");

    // A machine token, as CI logs in: profile "acme", current.
    let login = run(cli(&laptop, &["login", "--server", base, "--token-file"])
        .arg(&acme)
        .args(["--profile", "acme"]));
    assert!(login.status.success(), "{}", text(&login.stderr));
    let profiles = laptop.join("profiles.toml");
    let mode = std::fs::metadata(&profiles).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the profiles file holds tokens");
    // A person with a password: profile "platform", now the current one.
    let password = deployment.password_file.to_str().unwrap();
    login_admin(&laptop, base, password, "platform");
    let file = std::fs::read_to_string(&profiles).unwrap();
    assert!(file.contains("current = \"platform\""), "{file}");
    assert!(!file.contains(PASSWORD), "a password is never kept");

    // The current profile (the admin of every tenant) sees both tenants' DAGs registered;
    // acme's caller only acme's.
    let all = run(cli(&laptop, &["events", "tail", "-n", "100", "--json"]));
    assert!(all.status.success(), "{}", text(&all.stderr));
    let dags: Vec<String> = events(&all.stdout)
        .into_iter()
        .map(|(_, dag)| dag)
        .collect();
    assert!(
        dags.contains(&"acme:acme_etl".into()) && dags.contains(&"beta:beta_etl".into()),
        "{dags:?}"
    );
    let mine = run(cli(
        &laptop,
        &["--profile", "acme", "events", "tail", "-n", "100", "--json"],
    ));
    assert!(mine.status.success(), "{}", text(&mine.stderr));
    let seen = events(&mine.stdout);
    assert!(
        seen.iter()
            .any(|(t, dag)| t == "DagParsed" && dag == "acme_etl"),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|(_, dag)| dag != "beta_etl"),
        "acme sees beta's: {seen:?}"
    );
    // The human format, filtered by type.
    let human = run(cli(
        &laptop,
        &["--profile", "acme", "events", "tail", "--type", "DagParsed"],
    ));
    let human = text(&human.stdout);
    assert!(
        human.contains("DagParsed") && human.contains("dag:acme_etl"),
        "{human}"
    );

    // Followed: beta's run is never shown to acme; acme's arrives as it is queued and runs.
    let mut follower = cli(
        &laptop,
        &[
            "--profile",
            "acme",
            "events",
            "tail",
            "-n",
            "0",
            "--follow",
            "--json",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    let lines = BufReader::new(follower.stdout.take().unwrap());
    let (sender, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = std::fs::read_to_string(token_file(&deployment, "Admin", "*")).unwrap();
    // The admin of every tenant names DAGs by their keys.
    trigger(base, admin.trim(), "beta:beta_etl").await;
    trigger(base, admin.trim(), "acme:acme_etl").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut followed = Vec::new();
    while !followed
        .iter()
        .any(|(t, dag): &(String, String)| t == "RunSucceeded" && dag == "acme_etl")
    {
        let line = received
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("acme's run was not followed: {followed:?}"));
        followed.extend(events(line.as_bytes()));
    }
    assert!(
        followed.iter().all(|(_, dag)| dag != "beta_etl"),
        "{followed:?}"
    );
    let _ = follower.kill();
    let _ = follower.wait();

    // The audit trail through the same feed: acme's caller sees acme's run queued, never
    // beta's; the admin of every tenant both, narrowed by --since and --resource.
    let audit = |profile: &str, more: &[&str]| -> Vec<String> {
        let mut args = vec![
            "--profile",
            profile,
            "audit",
            "--action",
            "RunQueued",
            "--output",
            "json",
        ];
        args.extend_from_slice(more);
        let out = run(cli(&laptop, &args));
        assert!(out.status.success(), "{}", text(&out.stderr));
        let entries: Value = serde_json::from_slice(&out.stdout).unwrap();
        entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].as_str().unwrap().to_owned())
            .collect()
    };
    let acme_runs = audit("acme", &[]);
    assert!(
        acme_runs.len() == 1 && acme_runs[0].starts_with("run:acme_etl/"),
        "{acme_runs:?}"
    );
    assert_eq!(audit("platform", &["--since", "1h"]).len(), 2);
    let beta_runs = audit("platform", &["--resource", "beta:beta_etl"]);
    assert!(
        beta_runs.len() == 1 && beta_runs[0].starts_with("run:beta:beta_etl/"),
        "{beta_runs:?}"
    );
    assert!(audit("platform", &["--until", "2000-01-01T00:00:00Z"]).is_empty());

    // The past as each caller may see it: before the runs were queued there were none; now
    // acme's caller sees its run only, the admin of every tenant both.
    let queued = run(cli(
        &laptop,
        &["events", "tail", "--type", "RunQueued", "--json"],
    ));
    let first: Value = serde_json::from_str(text(&queued.stdout).lines().next().unwrap()).unwrap();
    let before = (first["position"].as_i64().unwrap() - 1).to_string();
    let now = chrono::Utc::now().to_rfc3339();
    for (profile, until, expected) in [
        ("acme", before.as_str(), vec![]),
        ("acme", now.as_str(), vec!["acme_etl"]),
        (
            "platform",
            now.as_str(),
            vec!["acme:acme_etl", "beta:beta_etl"],
        ),
    ] {
        let past = run(cli(
            &laptop,
            &[
                "--profile",
                profile,
                "events",
                "replay",
                "--until",
                until,
                "--json",
            ],
        ));
        assert!(past.status.success(), "{}", text(&past.stderr));
        let past: Value = serde_json::from_slice(&past.stdout).unwrap();
        let dags: Vec<&str> = past["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dag_id"].as_str().unwrap())
            .collect();
        assert_eq!(dags, expected, "{profile} as of {until}: {past}");
        if !expected.is_empty() {
            assert_eq!(past["task_instances"][0]["task_id"], "work", "{past}");
        }
    }
    let human = run(cli(
        &laptop,
        &["--profile", "acme", "events", "replay", "--until", &now],
    ));
    assert!(
        text(&human.stdout).contains("acme_etl"),
        "{}",
        text(&human.stdout)
    );
    let rebuild = run(cli(&laptop, &["--profile", "acme", "events", "replay"]));
    assert_eq!(rebuild.status.code(), Some(1));
    assert!(
        text(&rebuild.stderr).contains("--until"),
        "{}",
        text(&rebuild.stderr)
    );

    // CI without a profile: LEOFLOW_SERVER and LEOFLOW_TOKEN.
    let ci = run(cli(&laptop, &["events", "tail", "-n", "1"])
        .env("LEOFLOW_SERVER", base)
        .env(
            "LEOFLOW_TOKEN",
            std::fs::read_to_string(&acme).unwrap().trim(),
        ));
    assert!(ci.status.success(), "{}", text(&ci.stderr));

    // Exit codes: 3 not logged in (or a token the server does not take), 4 not allowed.
    let no_token = run(cli(&laptop, &["events", "tail"]).env("LEOFLOW_SERVER", base));
    assert_eq!(
        no_token.status.code(),
        Some(3),
        "{}",
        text(&no_token.stderr)
    );
    assert!(
        text(&no_token.stderr).contains("LEOFLOW_TOKEN"),
        "{}",
        text(&no_token.stderr)
    );
    let no_profile = run(cli(&laptop, &["--profile", "nosuch", "events", "tail"]));
    assert_eq!(
        no_profile.status.code(),
        Some(3),
        "{}",
        text(&no_profile.stderr)
    );
    assert!(
        text(&no_profile.stderr).contains("acme, platform"),
        "{}",
        text(&no_profile.stderr)
    );
    let forged = deployment.scratch.join("forged.token");
    std::fs::write(&forged, "lf_not-a-token").unwrap();
    let refused = run(cli(&laptop, &["login", "--server", base, "--token-file"]).arg(&forged));
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    let bad_password = deployment.scratch.join("bad-password");
    std::fs::write(&bad_password, "wrong").unwrap();
    let refused = run(cli(
        &laptop,
        &[
            "login",
            "--server",
            base,
            "--username",
            "admin",
            "--password-file",
        ],
    )
    .arg(&bad_password));
    assert_eq!(refused.status.code(), Some(3), "{}", text(&refused.stderr));
    let public = token_file(&deployment, "Public", "acme");
    let login = run(cli(&laptop, &["login", "--server", base, "--token-file"])
        .arg(&public)
        .args(["--profile", "public"]));
    assert!(login.status.success(), "{}", text(&login.stderr));
    let forbidden = run(cli(&laptop, &["--profile", "public", "events", "tail"]));
    assert_eq!(
        forbidden.status.code(),
        Some(4),
        "{}",
        text(&forbidden.stderr)
    );
    let not_leoflow = run(cli(
        &laptop,
        &["login", "--server", "http://127.0.0.1:9", "--token-file"],
    )
    .arg(&acme));
    assert_eq!(
        not_leoflow.status.code(),
        Some(1),
        "{}",
        text(&not_leoflow.stderr)
    );

    // Logging out forgets the token; the profile file stays 0600.
    let logout = run(cli(&laptop, &["logout", "--profile", "acme"]));
    assert!(logout.status.success(), "{}", text(&logout.stderr));
    let file = std::fs::read_to_string(&profiles).unwrap();
    assert!(!file.contains("[profiles.acme]"), "{file}");
    assert!(file.contains("current = \"public\""), "{file}");
    let mode = std::fs::metadata(&profiles).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

const TWO_STEPS: &str = r#"
import time

from airflow.sdk import DAG, task

@task
def first():
    print("hello from first")

@task
def slow():
    print("slow started")
    time.sleep(120)

with DAG("etl", schedule=None, is_paused_upon_creation=False):
    first() >> slow()
"#;

/// The run's task instances' states, by task, once `done` holds for them (20 s at most).
async fn wait_for_tasks(laptop: &Path, run_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shown: Value = serde_json::from_str(&ok(
            laptop,
            &["runs", "show", "etl", run_id, "--output", "json"],
        ))
        .unwrap();
        let states: serde_json::Map<String, Value> = shown["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ti| {
                (
                    ti["task_id"].as_str().unwrap().to_owned(),
                    ti["state"].clone(),
                )
            })
            .collect();
        let states = Value::Object(states);
        if done(&states) {
            return shown;
        }
        assert!(Instant::now() < deadline, "still {states} ({shown})");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dags_runs_and_tasks_against_a_server() {
    let deployment = Deployment::start("remote-dags").await;
    deployment.register("etl", TWO_STEPS);
    let server = deployment.replica("all");
    let laptop = deployment.scratch.join("laptop");

    // Without a server, the commands that need one say how to get one (exit 3).
    let local = run(cli(&laptop, &["dags", "list"]).env("LEOFLOW_POSTGRES", "url"));
    assert_eq!(local.status.code(), Some(3), "{}", text(&local.stderr));
    assert!(text(&local.stderr).contains("leoflow login --server"));

    let password = deployment.password_file.to_str().unwrap();
    login_admin(&laptop, &server.base, password, "default");

    // DAGs, in each output.
    assert!(
        ok(&laptop, &["dags", "list"])
            .lines()
            .any(|l| l.starts_with("etl "))
    );
    let listed: Value =
        serde_json::from_str(&ok(&laptop, &["dags", "list", "--output", "json"])).unwrap();
    assert_eq!(listed["dags"][0]["dag_id"], "etl", "{listed}");
    assert!(ok(&laptop, &["dags", "list", "--output", "yaml"]).contains("dag_id: etl"));
    let shown: Value =
        serde_json::from_str(&ok(&laptop, &["dags", "show", "etl", "--output", "json"])).unwrap();
    assert_eq!(shown["dag_id"], "etl");
    assert!(ok(&laptop, &["dags", "show", "etl"]).contains("fileloc"));
    assert_eq!(
        ok(&laptop, &["dags", "pause", "etl"]).trim(),
        "etl is now paused."
    );
    let listed: Value =
        serde_json::from_str(&ok(&laptop, &["dags", "list", "--output", "json"])).unwrap();
    assert_eq!(listed["dags"][0]["is_paused"], true);
    ok(&laptop, &["dags", "unpause", "etl"]);

    // A run: triggered, followed, its logs, a try cancelled, cleared, marked.
    let queued = ok(
        &laptop,
        &[
            "dags",
            "trigger",
            "etl",
            "--run-id",
            "r1",
            "--conf",
            r#"{"x": 1}"#,
        ],
    );
    assert_eq!(queued.trim(), "Queued run r1 of etl.");
    wait_for_tasks(&laptop, "r1", |s| s["slow"] == "running").await;
    assert!(ok(&laptop, &["tasks", "logs", "etl", "r1", "first"]).contains("hello from first"));
    assert!(ok(&laptop, &["runs", "list", "etl"]).contains("r1"));
    let cancelled = ok(&laptop, &["tasks", "cancel", "etl", "r1", "slow"]);
    assert!(
        cancelled.starts_with("Cancelled slow of run r1 of etl"),
        "{cancelled}"
    );
    let shown = wait_for_tasks(&laptop, "r1", |s| s["slow"] == "failed").await;
    // The try is over, so following its log ends.
    let followed = ok(&laptop, &["tasks", "logs", "etl", "r1", "slow", "--follow"]);
    assert!(followed.contains("slow started"), "{followed}");
    let finished = wait_for_run(&laptop, "r1", "failed").await;
    assert_eq!(finished["state"], "failed", "{shown}");
    let cleared = ok(&laptop, &["tasks", "clear", "etl", "r1", "slow"]);
    assert!(cleared.starts_with("Cleared 1 task instance"), "{cleared}");
    wait_for_tasks(&laptop, "r1", |s| s["slow"] == "running").await;
    ok(
        &laptop,
        &["tasks", "mark", "etl", "r1", "slow", "--state", "success"],
    );
    wait_for_run(&laptop, "r1", "success").await;

    // Refusals: a task that is not running cannot be cancelled; a DAG is deleted only with
    // --yes; what is gone is not found (exit 5).
    let refused = run(cli(&laptop, &["tasks", "cancel", "etl", "r1", "first"]));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    let refused = run(cli(&laptop, &["dags", "delete", "etl"]));
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("--yes"));
    ok(&laptop, &["dags", "delete", "etl", "--yes"]);
    let gone = run(cli(&laptop, &["dags", "show", "etl"]));
    assert_eq!(gone.status.code(), Some(5), "{}", text(&gone.stderr));
    let gone = run(cli(&laptop, &["runs", "show", "etl", "r1"]));
    assert_eq!(gone.status.code(), Some(5), "{}", text(&gone.stderr));
}

/// The run once it is in `state` (30 s at most).
async fn wait_for_run(laptop: &Path, run_id: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed: Value =
            serde_json::from_str(&ok(laptop, &["runs", "list", "etl", "--output", "json"]))
                .unwrap();
        let run = listed["dag_runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["dag_run_id"] == run_id)
            .cloned()
            .unwrap_or_default();
        if run["state"] == state {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} is {}",
            run["state"]
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// DAGs `etl` and `starter` of tenant `marker`: `etl`'s task answers with its tenant's
/// Variable `greeting` and the DAG id its context gives; `starter`'s triggers `etl`.
fn etl_project(marker: &str) -> String {
    format!(
        r#"
from airflow.sdk import DAG, Variable, task
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator

@task
def work(**context):
    return "{marker}: " + Variable.get("greeting") + " from " + context["dag"].dag_id + "/" + context["ti"].dag_id

with DAG("etl", schedule=None, is_paused_upon_creation=False):
    work()

with DAG("starter", schedule=None, is_paused_upon_creation=False):
    TriggerDagRunOperator(task_id="start_etl", trigger_dag_id="etl", wait_for_completion=True, poke_interval=0.2)
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_id_in_two_tenants_runs_each_tenants_own_code_with_its_own_data() {
    let deployment = Deployment::start("dag-ids-per-tenant").await;
    for tenant in ["acme", "beta", "default"] {
        deployment.register_into(tenant, &etl_project(tenant), tenant);
    }
    let api = deployment.replica("all");
    let base = api.base.as_str();
    let client = reqwest::Client::new();
    let mut tokens = Vec::new();
    for tenant in ["acme", "beta"] {
        let token = std::fs::read_to_string(token_file(&deployment, "Admin", tenant)).unwrap();
        let token = token.trim().to_owned();
        let set = client
            .post(format!("{base}/api/v2/variables"))
            .bearer_auth(&token)
            .json(&json!({"key": "greeting", "value": format!("{tenant} greets")}))
            .send()
            .await
            .unwrap();
        assert_eq!(set.status(), 201, "{}", set.text().await.unwrap());
        tokens.push(token);
    }
    let (acme, beta) = (&tokens[0], &tokens[1]);

    // acme's `starter` triggers `etl` through the agent channel: acme's, not beta's nor the
    // default tenant's. beta triggers its own `etl` through the API.
    trigger(base, acme, "starter").await;
    trigger(base, beta, "etl").await;
    let pool = deployment.pool().await;
    let said = |key: &'static str| {
        let pool = pool.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let said: Option<String> = sqlx::query_scalar(
                    "SELECT b.content::jsonb #>> '{}' FROM xcom x JOIN blobs b ON b.hash = x.value_hash \
                     WHERE x.dag_id = $1 AND x.task_id = 'work'",
                )
                .bind(key)
                .fetch_optional(&pool)
                .await
                .unwrap();
                if let Some(said) = said {
                    return said;
                }
                assert!(Instant::now() < deadline, "{key} never ran");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Each task ran its tenant's code, read its tenant's Variable and knows its DAG as `etl`.
    assert_eq!(said("acme:etl").await, "acme: acme greets from etl/etl");
    assert_eq!(said("beta:etl").await, "beta: beta greets from etl/etl");
    let runs: Vec<(String, String)> =
        sqlx::query_as("SELECT dag_id, state FROM dag_run ORDER BY dag_id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(
        runs.iter()
            .all(|(key, _)| key.starts_with("acme:") || key == "beta:etl"),
        "{runs:?}"
    );

    let get = async |path: &str| -> String {
        let response = client.get(format!("{base}{path}")).bearer_auth(acme);
        response.send().await.unwrap().text().await.unwrap()
    };
    // acme's caller sees its `etl`'s run and what it returned, by the names it knows.
    let answer: Value = serde_json::from_str(&get("/api/v2/dags/etl/dagRuns").await).unwrap();
    assert_eq!(answer["total_entries"], 1, "{answer}");
    let run = &answer["dag_runs"][0];
    assert_eq!(run["dag_id"], "etl", "{answer}");
    let xcom = get(&format!(
        "/api/v2/dags/etl/dagRuns/{}/taskInstances/work/xcomEntries/return_value",
        run["dag_run_id"].as_str().unwrap().replace('+', "%2B")
    ))
    .await;
    let xcom: Value = serde_json::from_str(&xcom).unwrap();
    assert_eq!(xcom["dag_id"], "etl", "{xcom}");

    // The event feed (`events tail`) shows acme its own `etl` by name, and nothing of beta's.
    let feed = get("/leoflow/api/events?lines=1000").await;
    let seen: Vec<(String, String)> = feed
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).unwrap();
            let stream = event["stream"].as_str().unwrap().to_owned();
            (event["type"].as_str().unwrap().to_owned(), stream)
        })
        .collect();
    let queued: Vec<&str> = seen
        .iter()
        .filter(|(kind, _)| kind == "RunQueued")
        .map(|(_, stream)| stream.split('/').next().unwrap())
        .collect();
    assert_eq!(queued, ["run:starter", "run:etl"], "{seen:?}");
    assert!(
        // A key would be a value `"acme:etl"` or in a stream `run:acme:etl/…` (acme's
        // Variables' streams are `variable@acme:…`).
        !feed.contains("\"acme:") && !feed.contains(":acme:") && !feed.contains("beta"),
        "acme's feed shows keys or beta's: {feed}"
    );
    assert!(
        xcom["value"]
            .to_string()
            .contains("acme: acme greets from etl/etl"),
        "{xcom}"
    );
}
