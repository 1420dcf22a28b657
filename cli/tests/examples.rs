//! The example projects under `dags/` run green on a fresh install, and each does what it shows.
//! Real processes: `leoflow lite --no-ui` on the example folder itself, a fresh test database,
//! task agents and Python runners; driven only through the HTTP API, as a user would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset};
use leoflow_postgres::testing::{TestDatabase, fresh_database, test_cluster};
use reqwest::Method;
use serde_json::{Value, json};

mod common;

use common::{encode, free_port, log_text, repo, terminate};

const PASSWORD: &str = "examples-test-admin";

fn instant(value: &Value) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a date: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `leoflow lite --no-ui` on one example project, with its own home and database.
struct Lite {
    child: Child,
    base: String,
    token: String,
    home: PathBuf,
    _db: TestDatabase,
}

impl Drop for Lite {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

impl Lite {
    /// Starts Lite on `dags/{example}` and logs in; the example's DAG must register cleanly.
    async fn start(example: &str) -> Self {
        let project = repo().join("dags").join(example);
        assert!(project.join("dag.py").is_file(), "{}", project.display());
        let db = fresh_database().await;
        let url = format!(
            "postgres://leoflow@localhost/{}?host={}",
            db.name,
            test_cluster().socket_dir().display()
        );
        let home = std::env::temp_dir().join(format!("leoflow-example-{}", uuid::Uuid::new_v4()));
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_leoflow"))
            .args(["lite", project.to_str().unwrap(), "--no-ui"])
            .args(["--port", &port.to_string()])
            .args([
                "--grpc-port",
                &free_port().to_string(),
                "--metrics-port",
                "0",
            ])
            .env("LEOFLOW_HOME", &home)
            .env("LEOFLOW_ADMIN_PASSWORD", PASSWORD)
            .env("LEOFLOW_DATABASE_URL", &url)
            .env_remove("LEOFLOW_POSTGRES")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start leoflow lite");
        let stdout = child.stdout.take().unwrap();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut banner = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                eprintln!("[lite] {line}");
                if line.starts_with("Following the event log") {
                    let _ = ready_tx.send(std::mem::take(&mut banner));
                } else {
                    banner.push_str(&line);
                    banner.push('\n');
                }
            }
        });
        let banner = ready_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("leoflow lite did not become ready");
        assert!(!banner.contains("import error"), "{banner}");
        assert!(banner.contains("new version registered"), "{banner}");
        let mut lite = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            token: String::new(),
            home,
            _db: db,
        };
        let login = lite
            .send(
                Method::POST,
                "/auth/token",
                Some(json!({"username": "admin", "password": PASSWORD})),
            )
            .await;
        lite.token = login["access_token"].as_str().unwrap().to_owned();
        lite
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, String) {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, text) = self.request(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    async fn get(&self, path: &str) -> Value {
        self.send(Method::GET, path, None).await
    }

    /// Checks the DAG as a fresh install shows it (paused, as Airflow creates DAGs; the
    /// leoflow.yaml owner and tags), then unpauses it.
    async fn unpause(&self, dag_id: &str) {
        let dag = self.get(&format!("/api/v2/dags/{dag_id}")).await;
        assert_eq!(dag["is_paused"], true, "DAGs start paused: {dag}");
        assert_eq!(dag["owners"], json!(["leoflow"]), "{dag}");
        let tags: Vec<&str> = dag["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert!(tags.contains(&"example"), "{dag}");
        let patched = self
            .send(
                Method::PATCH,
                &format!("/api/v2/dags/{dag_id}"),
                Some(json!({"is_paused": false})),
            )
            .await;
        assert_eq!(patched["is_paused"], false, "{patched}");
    }

    /// Triggers a run with `conf`, waits for it to end and asserts it succeeded; returns its id.
    async fn run(&self, dag_id: &str, conf: Value) -> String {
        let run = self
            .send(
                Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(json!({"logical_date": null, "conf": conf})),
            )
            .await;
        let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let run = self.get(&self.run_path(dag_id, &run_id)).await;
            if run["state"] == "success" || run["state"] == "failed" {
                let tis: Vec<String> = self
                    .task_instances(dag_id, &run_id)
                    .await
                    .iter()
                    .map(|ti| {
                        format!(
                            "{}[{}] {} (try {})",
                            ti["task_id"], ti["map_index"], ti["state"], ti["try_number"]
                        )
                    })
                    .collect();
                assert_eq!(run["state"], "success", "{run_id}: {run}\n{tis:#?}");
                return run_id;
            }
            assert!(Instant::now() < deadline, "{run_id} did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn run_path(&self, dag_id: &str, run_id: &str) -> String {
        format!("/api/v2/dags/{dag_id}/dagRuns/{}", encode(run_id))
    }

    fn ti_path(&self, dag_id: &str, run_id: &str, task_id: &str) -> String {
        format!("{}/taskInstances/{task_id}", self.run_path(dag_id, run_id))
    }

    async fn task_instances(&self, dag_id: &str, run_id: &str) -> Vec<Value> {
        let list = self
            .get(&format!(
                "{}/taskInstances?limit=100",
                self.run_path(dag_id, run_id)
            ))
            .await;
        list["task_instances"].as_array().unwrap().clone()
    }

    /// The run's task instances of `task_id` (every map index), by map index.
    async fn instances_of(&self, dag_id: &str, run_id: &str, task_id: &str) -> Vec<Value> {
        let mut found: Vec<Value> = self
            .task_instances(dag_id, run_id)
            .await
            .into_iter()
            .filter(|ti| ti["task_id"] == task_id)
            .collect();
        found.sort_by_key(|ti| ti["map_index"].as_i64());
        found
    }

    async fn ti(&self, dag_id: &str, run_id: &str, task_id: &str) -> Value {
        self.get(&self.ti_path(dag_id, run_id, task_id)).await
    }

    async fn state(&self, dag_id: &str, run_id: &str, task_id: &str) -> String {
        let ti = self.ti(dag_id, run_id, task_id).await;
        ti["state"].as_str().unwrap_or("none").to_owned()
    }

    /// The `return_value` XCom of a task instance (`map_index` -1 when not mapped).
    async fn xcom(&self, dag_id: &str, run_id: &str, task_id: &str, map_index: i64) -> Value {
        let entry = self
            .get(&format!(
                "{}/xcomEntries/return_value?map_index={map_index}",
                self.ti_path(dag_id, run_id, task_id)
            ))
            .await;
        entry["value"].clone()
    }

    /// The log of one try, as text.
    async fn log(&self, dag_id: &str, run_id: &str, task_id: &str, try_number: i64) -> String {
        let log = self
            .get(&format!(
                "{}/logs/{try_number}",
                self.ti_path(dag_id, run_id, task_id)
            ))
            .await;
        log_text(&log)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_passes_a_greeting_through_xcom() {
    let lite = Lite::start("hello").await;
    lite.unpause("hello").await;
    let run = lite.run("hello", json!({})).await;
    assert_eq!(
        lite.xcom("hello", &run, "greet", -1).await,
        json!("Hello from Leoflow")
    );
    let log = lite.log("hello", &run, "shout", 1).await;
    assert!(log.contains("HELLO FROM LEOFLOW"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in_runs_three_tasks_after_one_and_joins_their_xcoms() {
    let dag = "fan_out_fan_in";
    let lite = Lite::start(dag).await;
    lite.unpause(dag).await;
    let run = lite.run(dag, json!({})).await;

    let counts = [
        ("count_lines", 3),
        ("count_words", 17),
        ("count_characters", 104),
    ];
    let fetched = lite.ti(dag, &run, "fetch_text").await;
    let joined = lite.ti(dag, &run, "summarize").await;
    for (task_id, expected) in counts {
        assert_eq!(lite.xcom(dag, &run, task_id, -1).await, json!(expected));
        let ti = lite.ti(dag, &run, task_id).await;
        assert_eq!(ti["state"], "success", "{ti}");
        assert!(
            instant(&ti["start_date"]) >= instant(&fetched["end_date"]),
            "{task_id} starts after fetch_text: {ti} {fetched}"
        );
        assert!(
            instant(&joined["start_date"]) >= instant(&ti["end_date"]),
            "summarize waits for {task_id}: {joined} {ti}"
        );
    }
    assert_eq!(
        lite.xcom(dag, &run, "summarize", -1).await,
        json!({"lines": 3, "words": 17, "characters": 104})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapped_pipeline_maps_over_as_many_items_as_the_param_says_and_sums_them() {
    let dag = "mapped_pipeline";
    let lite = Lite::start(dag).await;
    lite.unpause(dag).await;

    // conf sets the param: 1..=4 squared.
    let run = lite.run(dag, json!({"items": 4})).await;
    assert_eq!(
        lite.xcom(dag, &run, "make_items", -1).await,
        json!([1, 2, 3, 4])
    );
    let mapped = lite.instances_of(dag, &run, "square").await;
    let indexes: Vec<i64> = mapped
        .iter()
        .map(|ti| ti["map_index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2, 3], "{mapped:#?}");
    for (index, square) in [1, 4, 9, 16].into_iter().enumerate() {
        assert_eq!(mapped[index]["state"], "success", "{:#}", mapped[index]);
        assert_eq!(
            lite.xcom(dag, &run, "square", index as i64).await,
            json!(square)
        );
    }
    assert_eq!(lite.xcom(dag, &run, "total", -1).await, json!(30));

    // The param's default: five items.
    let run = lite.run(dag, json!({})).await;
    assert_eq!(lite.instances_of(dag, &run, "square").await.len(), 5);
    assert_eq!(lite.xcom(dag, &run, "total", -1).await, json!(55));
    let log = lite.log(dag, &run, "total", 1).await;
    assert!(log.contains("sum of 5 squares: 55"), "{log}");

    // The param's schema (1 to 100) is checked when the run is triggered.
    let (status, text) = lite
        .request(
            Method::POST,
            &format!("/api/v2/dags/{dag}/dagRuns"),
            Some(json!({"logical_date": null, "conf": {"items": 0}})),
        )
        .await;
    assert!(status.is_client_error(), "{status}: {text}");
    assert!(text.contains("items"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_takes_the_path_the_param_names_skips_the_other_and_renders_templates() {
    let dag = "branch";
    let lite = Lite::start(dag).await;
    lite.unpause(dag).await;
    for (conf, taken, skipped, outcome) in [
        (json!({}), "quick", "thorough", "checked a sample"),
        (
            json!({"path": "thorough"}),
            "thorough",
            "quick",
            "checked every row",
        ),
    ] {
        let run = lite.run(dag, conf).await;
        assert_eq!(
            lite.xcom(dag, &run, "choose", -1).await,
            json!(format!("{taken}_check"))
        );
        assert_eq!(
            lite.state(dag, &run, &format!("{taken}_check")).await,
            "success"
        );
        assert_eq!(
            lite.state(dag, &run, &format!("{skipped}_check")).await,
            "skipped"
        );
        assert_eq!(lite.state(dag, &run, "report").await, "success");
        assert_eq!(lite.xcom(dag, &run, "report", -1).await, json!(outcome));
        assert_eq!(lite.state(dag, &run, "announce").await, "success");
        let log = lite.log(dag, &run, "announce", 1).await;
        assert!(
            log.contains(&format!("run {run} took the {taken} path")),
            "the bash command's templates are rendered: {log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_demo_fails_its_first_try_and_succeeds_on_the_retry() {
    let dag = "retry_demo";
    let lite = Lite::start(dag).await;
    lite.unpause(dag).await;
    let run = lite.run(dag, json!({})).await;

    let flaky = lite.ti(dag, &run, "flaky").await;
    assert_eq!(flaky["state"], "success", "{flaky}");
    assert_eq!(flaky["try_number"], 2, "{flaky}");
    assert_eq!(
        lite.xcom(dag, &run, "flaky", -1).await,
        json!("succeeded on try 2")
    );
    let tries = lite
        .get(&format!("{}/tries", lite.ti_path(dag, &run, "flaky")))
        .await;
    let tries = tries["task_instances"].as_array().unwrap();
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert_eq!(tries[0]["try_number"], 1, "{tries:#?}");
    assert_ne!(tries[0]["state"], "success", "{tries:#?}");
    assert_eq!(tries[1]["try_number"], 2, "{tries:#?}");
    assert_eq!(tries[1]["state"], "success", "{tries:#?}");
    let waited = instant(&tries[1]["start_date"]) - instant(&tries[0]["end_date"]);
    assert!(
        waited >= chrono::Duration::milliseconds(1900),
        "the retry waits its retry_delay of 2 s, not {waited}: {tries:#?}"
    );

    let first = lite.log(dag, &run, "flaky", 1).await;
    assert!(first.contains("this is try 1"), "{first}");
    assert!(
        first.contains("RuntimeError: the first try fails on purpose"),
        "{first}"
    );
    let second = lite.log(dag, &run, "flaky", 2).await;
    assert!(second.contains("this is try 2"), "{second}");
    let after = lite.log(dag, &run, "after", 1).await;
    assert!(after.contains("flaky said: succeeded on try 2"), "{after}");
}
