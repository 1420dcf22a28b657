//! Leoflow Lite as Airflow users meet it: Airflow's own Python client (`apache-airflow-client`
//! 3.2.2, in the test venv) drives a scenario end to end, and the unmodified Airflow UI is
//! visited page by page in headless Debian Chromium (playwright-core, in `ui-tests/`).
//! Real processes throughout: `leoflow lite`, its Postgres, task agents, Python runners.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use leoflow_postgres::testing::{TestDatabase, fresh_database, test_cluster};
use serde_json::{Value, json};

mod common;

use common::{encode, free_port, repo, terminate};

const PASSWORD: &str = "web-test-admin";

/// A running `leoflow lite` with the web UI, on a project of its own.
struct Lite {
    child: Child,
    base: String,
    dir: PathBuf,
    _db: TestDatabase,
}

impl Drop for Lite {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Lite {
    /// Starts Lite with the UI from the test venv's cached wheel.
    async fn start(dag_py: &str) -> Self {
        Self::start_with(dag_py, false).await
    }

    /// [`Lite::start`], with the editor installed in the home when `editor` says so.
    async fn start_with(dag_py: &str, editor: bool) -> Self {
        let wheel = repo().join(".venv/artifacts/apache_airflow_core-3.2.2-py3-none-any.whl");
        let wheel = std::env::var_os("LEOFLOW_AIRFLOW_WHEEL")
            .map(PathBuf::from)
            .or_else(|| wheel.is_file().then_some(wheel));
        let (lite, with_ui, _) = Self::launch(dag_py, wheel.as_deref(), editor).await;
        assert!(with_ui, "Lite started without the web UI");
        lite
    }

    /// Starts Lite taking the UI from `wheel` (from the package index without one); returns
    /// whether it serves the UI, and what it printed on stderr while starting.
    async fn launch(dag_py: &str, wheel: Option<&Path>, editor: bool) -> (Self, bool, String) {
        let db = fresh_database().await;
        let dir = std::env::temp_dir().join(format!("leoflow-web-{}", uuid::Uuid::new_v4()));
        let project = dir.join("project");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("dag.py"), dag_py).unwrap();
        if editor {
            // What `leoflow setup` installs (from LEOFLOW_MONACO_TGZ or the npm registry).
            leoflow_api::editor::install_monaco(&dir.join("home/editor"))
                .await
                .expect("installing Monaco");
            std::fs::write(project.join("leoflow.yaml"), "owner: editor-test\n").unwrap();
        }
        let url = format!(
            "postgres://leoflow@localhost/{}?host={}",
            db.name,
            test_cluster().socket_dir().display()
        );
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
        command
            .args(["lite", project.to_str().unwrap()])
            .args([
                "--port",
                &port.to_string(),
                "--grpc-port",
                &free_port().to_string(),
                "--metrics-port",
                "0",
            ])
            .env("LEOFLOW_HOME", dir.join("home"))
            .env("LEOFLOW_DATABASE_URL", &url)
            .env_remove("LEOFLOW_POSTGRES")
            .env_remove("LEOFLOW_AIRFLOW_WHEEL")
            .env("LEOFLOW_ADMIN_PASSWORD", PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(wheel) = wheel {
            command.env("LEOFLOW_AIRFLOW_WHEEL", wheel);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.trim_start().starts_with("web UI") {
                    let _ = ready_tx.send(true);
                }
                if line.starts_with("Following the event log") {
                    let _ = ready_tx.send(false);
                }
            }
        });
        let warnings = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let seen = warnings.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                seen.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        let with_ui = ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("lite did not start");
        let warnings = warnings.lock().unwrap().clone();
        let lite = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
            _db: db,
        };
        (lite, with_ui, warnings)
    }

    /// Runs `ui-tests/{script}` in the browser against this Lite (logged in as the admin, with
    /// `SCREENSHOTS` passed on from LEOFLOW_SCREENSHOTS) and returns its JSON report, failing
    /// with the report and the script's stderr when it fails.
    fn browse(&self, script: &str, env: &[(&str, String)], failed: &str) -> Value {
        let mut vars = vec![
            ("BASE_URL", self.base.as_str()),
            ("ADMIN_PASSWORD", PASSWORD),
        ];
        vars.extend(env.iter().map(|(k, v)| (*k, v.as_str())));
        let output = common::ui_script(script, &vars);
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{failed}:\n{report}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str(&report).unwrap_or_else(|e| panic!("{script}: {e}: {report}"))
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    async fn token(&self) -> String {
        let answer: Value = self
            .client()
            .post(format!("{}/auth/token", self.base))
            .json(&json!({"username": "admin", "password": PASSWORD}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    async fn api(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(self.token().await);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// Triggers a run and waits for it to end; returns its id.
    async fn run(&self, dag_id: &str) -> String {
        let run = self
            .api(
                reqwest::Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(json!({"logical_date": null})),
            )
            .await;
        let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let run = self
                .api(
                    reqwest::Method::GET,
                    &format!("/api/v2/dags/{dag_id}/dagRuns/{}", encode(&run_id)),
                    None,
                )
                .await;
            if run["state"] == "success" || run["state"] == "failed" {
                return run_id;
            }
            assert!(Instant::now() < deadline, "{run_id} did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn python() -> String {
    std::env::var("LEOFLOW_PYTHON")
        .unwrap_or_else(|_| repo().join(".venv/bin/python").display().to_string())
}

const SCENARIO_DAG: &str = r#"
from airflow.sdk import DAG, Param, task

with DAG("scenario", schedule=None, params={"count": Param(3, type="integer")}, tags=["scenario"]):
    @task
    def produce(params=None):
        print(f"producing {params['count']} items")
        return list(range(params["count"]))

    @task
    def square(x):
        return x * x

    @task
    def total(values):
        return sum(values)

    total(square.expand(x=produce()))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflows_python_client_drives_a_scenario_end_to_end() {
    let lite = Lite::start(SCENARIO_DAG).await;
    let output = Command::new(python())
        .arg(repo().join("api/tests/airflow_client_scenario.py"))
        .env("LEOFLOW_URL", &lite.base)
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("DAG_ID", "scenario")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && stdout.contains("scenario passed"),
        "the client scenario failed:\n{stdout}\n{stderr}"
    );
}

const UI_DAGS: &str = r#"
from datetime import datetime, timezone
from airflow.sdk import DAG, Asset, task
from airflow.providers.standard.operators.bash import BashOperator

loaded = Asset("s3://lake/loaded", extra={"team": "data"})

with DAG("etl", schedule=None, is_paused_upon_creation=False, tags=["example"],
         start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), doc_md="Extract, transform, load.",
         params={"rows": 10}):
    @task
    def extract():
        print("extracting")
        return [1, 2, 3]

    @task
    def transform(x):
        print(f"transforming item={x}")
        return x * 10

    @task(outlets=[loaded])
    def load(values):
        print("loaded", values)
        return sum(values)

    done = BashOperator(task_id="announce", bash_command="echo done")
    load(transform.expand(x=extract())) >> done

with DAG("nightly", schedule="0 2 * * *", start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False):
    BashOperator(task_id="report", bash_command="echo report")

with DAG("on_load", schedule=[loaded], is_paused_upon_creation=False):
    BashOperator(task_id="summarize", bash_command="echo summarized")

from airflow.providers.standard.operators.hitl import HITLOperator

with DAG("review", schedule=None, is_paused_upon_creation=False):
    HITLOperator(task_id="choose_region", subject="Which region ships first?", options=["eu", "us"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_logs_in_and_every_page_loads_without_errors() {
    let node_modules = repo().join("ui-tests/node_modules/playwright-core");
    assert!(
        node_modules.is_dir() && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and ui-tests' playwright-core: scripts/test.sh installs both"
    );
    let lite = Lite::start(UI_DAGS).await;
    let run = lite.run("etl").await;
    let token = lite.token().await;
    let variable = json!({"key": "region", "value": "eu", "description": "where the data lives"});
    let pool = json!({"name": "etl_pool", "slots": 4});
    let connection =
        json!({"connection_id": "warehouse", "conn_type": "postgres", "host": "db.internal"});
    for (path, body) in [
        ("/api/v2/variables", variable),
        ("/api/v2/pools", pool),
        ("/api/v2/connections", connection),
    ] {
        let response = lite
            .client()
            .post(format!("{}{path}", lite.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let run_path = format!("/dags/etl/runs/{}", encode(&run));
    // A question waiting for its answer: the UI's "Required Actions" pages list and ask it.
    let review = lite
        .api(
            reqwest::Method::POST,
            "/api/v2/dags/review/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    let review_run = review["dag_run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lite
        .api(
            reqwest::Method::GET,
            "/api/v2/dags/review/dagRuns/~/hitlDetails",
            None,
        )
        .await["total_entries"]
        != 1
    {
        assert!(Instant::now() < deadline, "the question was never asked");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let question = format!(
        "/dags/review/runs/{}/tasks/choose_region/required_actions",
        encode(&review_run)
    );
    // The run updated `loaded`, which triggered `on_load`: the asset's page and the DAG's.
    let assets = lite.api(reqwest::Method::GET, "/api/v2/assets", None).await;
    let asset_path = format!("/assets/{}", assets["assets"][0]["id"]);
    let pages = vec![
        "/".to_owned(),
        "/dags".to_owned(),
        "/dags/etl".to_owned(),
        "/dags/etl/runs".to_owned(),
        "/dags/etl/tasks".to_owned(),
        "/dags/etl/calendar".to_owned(),
        "/dags/etl/events".to_owned(),
        "/dags/etl/code".to_owned(),
        "/dags/etl/details".to_owned(),
        run_path.clone(),
        format!("{run_path}/task_instances"),
        format!("{run_path}/tasks/extract"),
        format!("{run_path}/tasks/extract/xcom"),
        format!("{run_path}/tasks/transform/mapped/1"),
        "/dag_runs".to_owned(),
        "/task_instances".to_owned(),
        "/variables".to_owned(),
        "/connections".to_owned(),
        "/pools".to_owned(),
        "/events".to_owned(),
        "/xcoms".to_owned(),
        "/configs".to_owned(),
        "/assets".to_owned(),
        asset_path.clone(),
        "/dags/on_load".to_owned(),
        "/required_actions".to_owned(),
        question.clone(),
    ];
    let shots = json!({
        "/": "home",
        "/dags": "dags",
        "/dags/etl": "dag-grid",
        (run_path.clone()): "run",
        (format!("{run_path}/tasks/extract")): "task-instance-logs",
        "/variables": "variables",
    });
    // What each page must show: its DAG, run and task names, and for tables a column header
    // of Airflow 3.2.2's UI beside a row only the data gives (a blank page fails).
    let tasks = ["extract", "transform", "load", "announce"];
    let expect = json!({
        "/": ["Leoflow Lite"],
        "/dags": ["etl", "nightly"],
        "/dags/etl": tasks,
        "/dags/etl/runs": [run],
        "/dags/etl/tasks": tasks,
        // The calendar draws runs as coloured cells (their counts only in hover cards): what
        // it must show is its controls, which it renders only once `/ui/calendar` answered.
        "/dags/etl/calendar": ["Hourly", "Daily", "Total Runs"],
        // The DAG's audit log, newest first: the run's end is on its first page.
        "/dags/etl/events": ["Event", "When", "RunSucceeded", "TaskSucceeded"],
        // Monaco renders spaces as no-break spaces: single words only.
        "/dags/etl/code": ["extracting", "BashOperator"],
        "/dags/etl/details": ["etl"],
        (run_path.clone()): tasks,
        // `…/task_instances` has no view of its own in Airflow 3.2.2's UI: its router knows
        // `task_instances` under a DAG's task or task group, not under a run (whose own page
        // lists them), so Airflow itself shows its not-found page there and calls no data
        // route (../shared/airflow-3.2.2/UI-CALLS.md, "run-tasks"). It must show that page.
        (format!("{run_path}/task_instances")): ["404", "Page Not Found"],
        (format!("{run_path}/tasks/extract")): ["extracting"],
        (format!("{run_path}/tasks/extract/xcom")): ["return_value"],
        // Map index 1 of `transform` got the item 2: its own log, not another index's.
        (format!("{run_path}/tasks/transform/mapped/1")): ["transform", "item=2"],
        "/dag_runs": [run],
        "/task_instances": tasks,
        "/variables": ["region"],
        "/connections": ["Connection ID", "warehouse", "postgres"],
        "/pools": ["etl_pool"],
        // The whole audit log, newest first: what this test set up just before.
        "/events": ["Event", "User", "ConnectionSet", "PoolSet", "VariableSet"],
        "/xcoms": ["return_value"],
        "/configs": ["Airflow Configuration", "Section", "SubprocessExecutor"],
        "/assets": ["s3://lake/loaded"],
        (asset_path.clone()): ["s3://lake/loaded", "on_load"],
        "/dags/on_load": ["summarize"],
        "/required_actions": ["Which region ships first?", "review"],
        (question.clone()): ["Which region ships first?", "eu", "us"],
    });
    let report = lite.browse(
        "visit.mjs",
        &[
            ("PAGES", serde_json::to_string(&pages).unwrap()),
            ("EXPECT", expect.to_string()),
            ("SHOTS", shots.to_string()),
        ],
        "the UI had problems",
    );
    assert_eq!(report["visited"].as_array().unwrap().len(), pages.len());
    assert_eq!(
        report["instanceNameShown"], true,
        "the home page names Leoflow Lite"
    );

    // Then what users do there: trigger, clear, mark, star — through the UI's own dialogs —
    // and answer the question on its page, which resumes its task.
    lite.browse(
        "actions.mjs",
        &[
            ("DAG_ID", "etl".to_owned()),
            ("QUESTION", question.clone()),
            ("ANSWER", "us".to_owned()),
        ],
        "a UI action failed",
    );
    let detail = format!(
        "/api/v2/dags/review/dagRuns/{}/taskInstances/choose_region/-1/hitlDetails",
        encode(&review_run)
    );
    let answered = lite.api(reqwest::Method::GET, &detail, None).await;
    assert_eq!(answered["responded_by_user"]["id"], "admin", "{answered}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while lite
        .api(
            reqwest::Method::GET,
            &format!("/api/v2/dags/review/dagRuns/{}", encode(&review_run)),
            None,
        )
        .await["state"]
        != "success"
    {
        assert!(
            Instant::now() < deadline,
            "the answered run never succeeded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_editor_opens_from_the_ui_navigation_and_its_save_is_hot_reloaded() {
    let lite = Lite::start_with(UI_DAGS, true).await;
    let versions = |body: Value| body["total_entries"].as_i64().unwrap();
    let before = versions(
        lite.api(reqwest::Method::GET, "/api/v2/dags/etl/dagVersions", None)
            .await,
    );
    let line = "# saved from the browser";
    let report = lite.browse(
        "editor.mjs",
        &[("LINE", line.to_owned())],
        "the editor failed in the browser",
    );
    assert_eq!(report["url"], "/plugin/editor", "{report}");
    assert_eq!(report["languages"]["dag.py"], "python", "{report}");
    assert_eq!(report["languages"]["leoflow.yaml"], "yaml", "{report}");
    let saved = std::fs::read_to_string(lite.dir.join("project/dag.py")).unwrap();
    assert!(
        saved.trim_end().ends_with(line),
        "the line typed in the browser is on disk:\n{saved}"
    );
    assert!(saved.starts_with(UI_DAGS), "nothing else changed");
    let deadline = Instant::now() + Duration::from_secs(30);
    while versions(
        lite.api(reqwest::Method::GET, "/api/v2/dags/etl/dagVersions", None)
            .await,
    ) == before
    {
        assert!(
            Instant::now() < deadline,
            "the save never became a new version"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_fuzzing_from_the_served_openapi_conforms_to_it() {
    let lite = Lite::start(UI_DAGS).await;
    lite.run("etl").await;
    let schema: Value = lite
        .client()
        .get(format!("{}/openapi.json", lite.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        schema["info"]["title"], "Airflow API",
        "the served document is Airflow's"
    );
    let schemathesis = Path::new(&python()).with_file_name("st");
    // The checks live in the config file, with the few operations exempt from one of them
    // (each a deviation docs/api.md lists): no server errors, and every status, content
    // type, header and body as Airflow's spec documents them.
    let config = repo().join("cli/tests/schemathesis.toml");
    let output = Command::new(&schemathesis)
        .arg("--config-file")
        .arg(&config)
        .args([
            "run",
            &format!("{}/openapi.json", lite.base),
            "--url",
            &lite.base,
        ])
        .args([
            "--max-examples",
            "12",
            // One worker: with two threads, hypothesis's lambda descriptions call ast.parse
            // concurrently, which CPython 3.11 does not survive ("AST constructor recursion
            // depth mismatch", a crash of the tool, not a finding).
            "--workers",
            "1",
            "--seed",
            "42",
            "--no-color",
        ])
        .args([
            "--header",
            &format!("Authorization: Bearer {}", lite.token().await),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{} cannot run ({e}): scripts/test.sh installs it in .venv",
                schemathesis.display()
            )
        });
    let report = String::from_utf8_lossy(&output.stdout);
    // "  8472 generated, 8472 passed" or "  8385 generated, 13 found 15 unique failures"
    let summary = report
        .lines()
        .map(str::trim)
        .find(|l| l.split_whitespace().nth(1) == Some("generated,"))
        .unwrap_or("");
    eprintln!("schemathesis: {summary}");
    assert!(
        output.status.success(),
        "schemathesis found server errors or answers Airflow's OpenAPI does not allow \
         (a deliberate deviation belongs in docs/api.md and cli/tests/schemathesis.toml):\n\
         {report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        generated >= 2000,
        "a run of a few thousand requests, not {generated}: {summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_ui_download_is_refused_with_a_clear_message_and_the_api_still_works() {
    let corrupt =
        std::env::temp_dir().join(format!("leoflow-corrupt-{}.whl", uuid::Uuid::new_v4()));
    std::fs::write(&corrupt, b"PK\x03\x04 certainly not the wheel").unwrap();
    let (lite, with_ui, warnings) = Lite::launch(SCENARIO_DAG, Some(&corrupt), false).await;
    let _ = std::fs::remove_file(&corrupt);
    assert!(!with_ui, "no UI from a corrupt wheel");
    assert!(warnings.contains("not the pinned"), "{warnings}");
    assert!(warnings.contains("without the web UI"), "{warnings}");
    let dags = lite.api(reqwest::Method::GET, "/api/v2/dags", None).await;
    assert_eq!(dags["dags"][0]["dag_id"], "scenario");
    let page = lite
        .client()
        .get(format!("{}/", lite.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 503);
    assert!(page.text().await.unwrap().contains("leoflow setup"));
}
