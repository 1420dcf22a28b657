//! Airflow 3.2.2's own example DAGs, unmodified from the `apache-airflow-core` wheel, run on
//! Lite to the task states they reach on Airflow 3.2.2, their templates rendered by Jinja:
//! `tutorial` (a `{% for %}` loop with `macros.ds_add`), `example_xcom` (`ti.xcom_push` inside a
//! bash command's template, XComs pulled into a bash task's `env` through `str(XComArg)`),
//! `example_trigger_target_dag` (`dag_run.conf.get("message")` in a template),
//! `tutorial_taskflow_templates` (`templates_exts` reading a `.sql` template file, a task's
//! `render_template`), `example_bash_operator` (`task_instance_key_str`, a skip by exit code) and
//! `example_params_trigger_ui` and `example_params_ui_tutorial` (their DAG ids
//! `Path(__file__).stem`: each file keeps its name); and custom operators (`BaseOperator`
//! subclasses of the DAG file): `example_skip_dag` (one raising `AirflowSkipException`) and
//! `example_dynamic_task_mapping_with_no_taskflow_operators` (a mapped one, and one summing the
//! mapped results through a template field); and the standard provider's branching operators:
//! `example_latest_only` and `example_latest_only_with_trigger` (`LatestOnlyOperator`),
//! `example_branch_datetime_operator` and `example_branch_day_of_week_operator`; and the standard
//! provider's sensors: `example_sensors`; edge labels: `example_branch_labels`; a task in a
//! virtualenv with its requirements from the package index: `tutorial_taskflow_api_virtualenv`;
//! a run triggered by a task: `example_trigger_controller_dag` (TriggerDagRunOperator) runs
//! `example_trigger_target_dag` with its conf; `depends_on_past`:
//! `example_branch_python_dop_operator_3`; setup and teardown tasks: `example_setup_teardown`
//! and `example_setup_teardown_taskflow` (the graph marks them, a clear takes them along);
//! mapped task groups: `example_dynamic_task_mapping`; a clear's dry run listing what an
//! `ExternalTaskMarker` clears in another DAG: `example_external_task_marker_dag`; a custom
//! operator calling `httpx` with its `@dag` function's argument: `example_dag_decorator`.
//! Real processes: `leoflow lite --no-ui` on a folder holding the files as projects (each with
//! the wheel's `sql/` folder beside it), a fresh test database, task agents and runners.
//!
//! The wheel is the one the SDK's tests fetch (`.venv/artifacts`, or `LEOFLOW_ARTIFACTS`),
//! checked against its pinned SHA-256; `LEOFLOW_AIRFLOW_WHEEL` names a local copy, and pip
//! fetches it when it is missing. It is never part of the checkout.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chrono::{Datelike, Timelike};
use leoflow_postgres::testing::{TestDatabase, fresh_database, test_cluster};
use reqwest::Method;
use serde_json::{Value, json};

mod common;

use common::lite::{Client, Lite, PASSWORD, scratch};
use common::{encode, log_text, repo, terminate};

const WHEEL: &str = "apache_airflow_core-3.2.2-py3-none-any.whl";
const WHEEL_SHA256: &str = "877be429d59193b5e9aab1ae69f44066134bf483c633e9f7c59a9220ebfcc013";
/// The example DAG files this test runs (`airflow/example_dags/{path}.py`), each a project.
const EXAMPLES: [&str; 31] = [
    "tutorial",
    "example_branch_python_dop_operator_3",
    "standard/example_trigger_controller_dag",
    "tutorial_taskflow_api_virtualenv",
    "example_branch_labels",
    "standard/example_sensors",
    "standard/example_latest_only",
    "example_latest_only_with_trigger",
    "standard/example_branch_datetime_operator",
    "standard/example_branch_day_of_week_operator",
    "example_skip_dag",
    "example_dynamic_task_mapping_with_no_taskflow_operators",
    "example_params_trigger_ui",
    "example_params_ui_tutorial",
    "example_xcom",
    "example_trigger_target_dag",
    "tutorial_taskflow_templates",
    "standard/example_bash_operator",
    "example_setup_teardown",
    "example_setup_teardown_taskflow",
    "example_dynamic_task_mapping",
    "standard/example_external_task_marker_dag",
    "example_dag_decorator",
    "example_assets",
    "example_outlet_event_extra",
    "example_inlet_event_extra",
    "example_asset_alias",
    "example_asset_alias_with_no_taskflow",
    "example_asset_decorator",
    "example_asset_with_watchers",
    "standard/example_hitl_operator",
];

/// Fetches (when missing), checks and opens the wheel with the test venv's Python, writing each
/// example under its own name, `{folder}/{stem}/{stem}.py` (the project's single `*.py` file is its
/// DAG file), with the `sql/` templates of its folder in the wheel.
const EXTRACT: &str = r#"
import hashlib, pathlib, posixpath, subprocess, sys, zipfile
wheel, sha256, folder = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
if not wheel.exists():
    wheel.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "apache-airflow-core==3.2.2", "-d", str(wheel.parent)], check=True)
digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
assert digest == sha256, f"{wheel} has SHA-256 {digest}, not the pinned {sha256}"
with zipfile.ZipFile(wheel) as archive:
    for example in sys.argv[4:]:
        path = f"airflow/example_dags/{example}.py"
        project = folder / posixpath.basename(example)
        (project / "sql").mkdir(parents=True)
        (project / posixpath.basename(path)).write_bytes(archive.read(path))
        sql = posixpath.join(posixpath.dirname(path), "sql") + "/"
        for name in archive.namelist():
            if name.startswith(sql) and "/" not in name[len(sql):]:
                (project / "sql" / name[len(sql):]).write_bytes(archive.read(name))
"#;

fn python() -> PathBuf {
    std::env::var_os("LEOFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

fn wheel() -> PathBuf {
    if let Some(wheel) = std::env::var_os("LEOFLOW_AIRFLOW_WHEEL") {
        return PathBuf::from(wheel);
    }
    std::env::var_os("LEOFLOW_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/artifacts"))
        .join(WHEEL)
}

fn extract_examples(folder: &Path) {
    let status = Command::new(python())
        .args(["-c", EXTRACT])
        .arg(wheel())
        .arg(WHEEL_SHA256)
        .arg(folder)
        .args(EXAMPLES)
        .status()
        .expect("run the test venv's Python");
    assert!(status.success(), "the Airflow wheel's examples: {status}");
}

/// Lite on the folder of examples, on a database of the test cluster.
struct Examples {
    lite: Lite,
    client: Client,
    folder: PathBuf,
    _db: TestDatabase,
}

impl Drop for Examples {
    fn drop(&mut self) {
        terminate(&mut self.lite.child);
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

impl Examples {
    async fn start() -> Self {
        let folder = scratch("airflow-examples");
        let dags = folder.join("dags");
        extract_examples(&dags);
        let db = fresh_database().await;
        let url = format!(
            "postgres://leoflow@localhost/{}?host={}",
            db.name,
            test_cluster().socket_dir().display()
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
        command
            .args(["lite", dags.to_str().unwrap()])
            .env("LEOFLOW_HOME", folder.join("home"))
            .env("LEOFLOW_ADMIN_PASSWORD", PASSWORD)
            .env("LEOFLOW_DATABASE_URL", &url)
            .env("LEOFLOW_PYTHON", python())
            .env_remove("LEOFLOW_POSTGRES");
        let lite = Lite::start(command);
        assert!(!lite.banner.contains("import error"), "{}", lite.banner);
        let client = Client::login(&lite.base).await;
        Self {
            lite,
            client,
            folder,
            _db: db,
        }
    }

    /// Unpauses `dag_id`, triggers a run with `body` (its `conf`, `logical_date`) and waits for
    /// it to end, or for a try to fail (a retry would wait minutes); returns its id and its task
    /// instances' states by task id.
    async fn run(&self, dag_id: &str, body: Value) -> (String, Vec<(String, String)>) {
        self.unpause(dag_id).await;
        let (status, run) = self
            .client
            .call(
                Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(body),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
        let path = format!("/api/v2/dags/{dag_id}/dagRuns/{}", encode(&run_id));
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let run = self.client.get(&path).await;
            let states = self.states(&path).await;
            let failing = states
                .iter()
                .any(|(_, state)| state == "up_for_retry" || state == "failed");
            if run["state"] == "success" || run["state"] == "failed" || failing {
                return (run_id, states);
            }
            assert!(Instant::now() < deadline, "{run_id} did not finish: {run}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn unpause(&self, dag_id: &str) {
        let (status, answer) = self
            .client
            .call(
                Method::PATCH,
                &format!("/api/v2/dags/{dag_id}"),
                Some(json!({"is_paused": false})),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }

    /// The (run type, state) of each run of `dag_id` once it has at least `at_least` runs and
    /// every one of them ended.
    async fn settled_runs(&self, dag_id: &str, at_least: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = self
                .client
                .get(&format!("/api/v2/dags/{dag_id}/dagRuns?limit=100"))
                .await;
            let runs: Vec<(String, String)> = list["dag_runs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|run| {
                    let field = |name: &str| run[name].as_str().unwrap_or_default().to_owned();
                    (field("run_type"), field("state"))
                })
                .collect();
            let ended = runs
                .iter()
                .all(|(_, state)| state == "success" || state == "failed");
            if runs.len() >= at_least && ended {
                return runs;
            }
            assert!(Instant::now() < deadline, "{dag_id}: {runs:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The run's human-in-the-loop details once `ready` holds for them.
    async fn until_hitl(&self, run_path: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let list = self.client.get(&format!("{run_path}/hitlDetails")).await;
            let details = list["hitl_details"].as_array().cloned().unwrap_or_default();
            if ready(&details) {
                return details;
            }
            assert!(Instant::now() < deadline, "{run_path}: {list}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The run's task instances' states, by task id.
    async fn states(&self, run_path: &str) -> Vec<(String, String)> {
        let list = self
            .client
            .get(&format!("{run_path}/taskInstances?limit=100"))
            .await;
        let mut states: Vec<(String, String)> = list["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ti| {
                (
                    ti["task_id"].as_str().unwrap().to_owned(),
                    ti["state"].as_str().unwrap_or("none").to_owned(),
                )
            })
            .collect();
        states.sort();
        states
    }

    /// Asserts the run's task instances ended in `expected` (task id, state), showing the logs
    /// of those that did not succeed when they did not.
    async fn assert_states(
        &self,
        dag_id: &str,
        run: &str,
        states: &[(String, String)],
        expected: &[(&str, &str)],
    ) {
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(task, state)| (task.to_string(), state.to_string()))
            .collect();
        expected.sort();
        if states != expected {
            let mut logs = String::new();
            for (task, state) in states {
                if state != "success" {
                    let log = self.log(dag_id, run, task).await;
                    logs.push_str(&format!("--- {task} ({state}):\n{log}"));
                }
            }
            panic!("{dag_id} {run}: {states:?}, expected {expected:?}\n{logs}");
        }
    }

    /// The graph view of `dag_id` (`/ui/structure/structure_data`).
    async fn graph(&self, dag_id: &str) -> Value {
        self.client
            .get(&format!("/ui/structure/structure_data?dag_id={dag_id}"))
            .await
    }

    fn ti_path(&self, dag_id: &str, run_id: &str, task_id: &str) -> String {
        format!(
            "/api/v2/dags/{dag_id}/dagRuns/{}/taskInstances/{task_id}",
            encode(run_id)
        )
    }

    /// The log of a task instance's first try, as text.
    async fn log(&self, dag_id: &str, run_id: &str, task_id: &str) -> String {
        let log = self
            .client
            .get(&format!("{}/logs/1", self.ti_path(dag_id, run_id, task_id)))
            .await;
        log_text(&log)
    }

    async fn xcom(&self, dag_id: &str, run_id: &str, task_id: &str, key: &str) -> Value {
        let entry = self
            .client
            .get(&format!(
                "{}/xcomEntries/{}",
                self.ti_path(dag_id, run_id, task_id),
                encode(key)
            ))
            .await;
        entry["value"].clone()
    }
}

/// `field` of the graph view's node `id`, if there is one.
fn node_field(graph: &Value, id: &str, field: &str) -> Option<Value> {
    graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .map(|n| n[field].clone())
}

/// Each of `tasks` with state success.
fn succeeded<'a>(tasks: &[&'a str]) -> Vec<(&'a str, &'static str)> {
    tasks.iter().map(|task| (*task, "success")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn airflow_s_examples_with_templates_run_to_airflow_s_states() {
    let examples = Examples::start().await;
    let on_leap_day_eve = json!({"logical_date": "2024-02-28T00:00:00Z", "conf": {}});

    // tutorial: `{% for i in range(5) %} echo "{{ ds }}" echo "{{ macros.ds_add(ds, 7)}}"`.
    let (run, states) = examples.run("tutorial", on_leap_day_eve.clone()).await;
    let tasks = succeeded(&["print_date", "sleep", "templated"]);
    examples
        .assert_states("tutorial", &run, &states, &tasks)
        .await;
    let log = examples.log("tutorial", &run, "templated").await;
    assert_eq!(log.matches("2024-02-28\n").count(), 5, "{log}");
    // ds_add across the leap day, as Airflow's macro computes it.
    assert_eq!(log.matches("2024-03-06\n").count(), 5, "{log}");
    assert!(!log.contains("{{"), "{log}");

    // example_params_trigger_ui: its DAG id is `Path(__file__).stem`, so its file keeps its
    // name; the branch picks every language, each greeting mapped over the three names.
    let dag = "example_params_trigger_ui";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let mut tasks = succeeded(&["get_names", "print_greetings", "select_languages"]);
    for language in ["english", "german", "french"] {
        let greeting: &'static str = match language {
            "english" => "generate_english_greeting",
            "german" => "generate_german_greeting",
            _ => "generate_french_greeting",
        };
        tasks.extend([(greeting, "success"); 3]);
    }
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "print_greetings").await;
    for greeting in [
        "Hello Linda!",
        "Sehr geehrter Herr/Frau Thomas.",
        "Bonjour Martha!",
    ] {
        assert!(log.contains(greeting), "{greeting:?} not in {log}");
    }

    // example_params_ui_tutorial: its id from its file's stem too; the defaults of its many
    // kinds of params reach the task, with its one required param given (as Airflow's form
    // requires).
    let dag = "example_params_ui_tutorial";
    let conf = json!({"required_field": "given by the test"});
    let (run, states) = examples
        .run(dag, json!({"logical_date": null, "conf": conf}))
        .await;
    examples
        .assert_states(dag, &run, &states, &succeeded(&["show_params"]))
        .await;
    let log = examples.log(dag, &run, "show_params").await;
    assert!(
        log.contains("This DAG was triggered with the following parameters")
            && log.contains("\"hidden_secret_field\": \"constant value\"")
            && log.contains("\"required_field\": \"given by the test\""),
        "{log}"
    );

    // example_xcom: XComs pushed by returning, by `ti.xcom_push` in task code and inside a bash
    // command's template, and pulled into a bash task's env through `str(XComArg)`.
    let (run, states) = examples
        .run("example_xcom", json!({"logical_date": null}))
        .await;
    let tasks = succeeded(&[
        "bash_pull",
        "bash_push",
        "pull_value_from_bash_push",
        "push",
        "push_by_returning",
        "puller",
    ]);
    examples
        .assert_states("example_xcom", &run, &states, &tasks)
        .await;
    assert_eq!(
        examples
            .xcom("example_xcom", &run, "bash_push", "manually_pushed_value")
            .await,
        json!("manually_pushed_value")
    );
    let log = examples.log("example_xcom", &run, "bash_pull").await;
    assert!(
        log.contains("The xcom pushed manually is 'manually_pushed_value'")
            && log.contains("The returned_value xcom is 'value_by_return'"),
        "{log}"
    );

    // example_trigger_target_dag: the run's conf in task code and in a template.
    let dag = "example_trigger_target_dag";
    let (run, states) = examples
        .run(
            dag,
            json!({"logical_date": null, "conf": {"message": "hello from the test"}}),
        )
        .await;
    let tasks = succeeded(&["bash_task", "run_this"]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "bash_task").await;
    assert!(
        log.contains("Here is the message: hello from the test"),
        "{log}"
    );
    let log = examples.log(dag, &run, "run_this").await;
    assert!(
        log.contains("Remotely received value of hello from the test for key=message"),
        "{log}"
    );

    // example_trigger_controller_dag: its TriggerDagRunOperator triggers the target with
    // `{"message": "Hello World"}`, which the target's tasks then read.
    let controller = "example_trigger_controller_dag";
    let (run, states) = examples
        .run(controller, json!({"logical_date": null}))
        .await;
    examples
        .assert_states(
            controller,
            &run,
            &states,
            &succeeded(&["test_trigger_dagrun"]),
        )
        .await;
    let triggered = examples
        .xcom(controller, &run, "test_trigger_dagrun", "trigger_run_id")
        .await;
    let triggered = triggered
        .as_str()
        .expect("the triggered run's id")
        .to_owned();
    assert!(triggered.starts_with("manual__"), "{triggered}");
    let path = format!("/api/v2/dags/{dag}/dagRuns/{}", encode(&triggered));
    let deadline = Instant::now() + Duration::from_secs(120);
    let target = loop {
        let target = examples.client.get(&path).await;
        if target["state"] == "success" || target["state"] == "failed" {
            break target;
        }
        assert!(
            Instant::now() < deadline,
            "{triggered} did not finish: {target}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(target["state"], "success", "{target}");
    assert_eq!(
        target["conf"],
        json!({"message": "Hello World"}),
        "{target}"
    );
    let log = examples.log(dag, &triggered, "bash_task").await;
    assert!(log.contains("Here is the message: Hello World"), "{log}");

    // example_branch_python_dop_operator_3 (depends_on_past on every task): an even minute
    // runs empty_task_1, the next, odd one empty_task_2, each run after the previous one's.
    let dag = "example_branch_dop_operator_v3";
    let even = json!({"logical_date": "2024-01-01T00:00:00Z"});
    let (run, states) = examples.run(dag, even).await;
    let tasks = [
        ("should_run", "success"),
        ("empty_task_1", "success"),
        ("empty_task_2", "skipped"),
    ];
    examples.assert_states(dag, &run, &states, &tasks).await;
    let odd = json!({"logical_date": "2024-01-01T00:01:00Z"});
    let (run, states) = examples.run(dag, odd).await;
    let tasks = [
        ("should_run", "success"),
        ("empty_task_1", "skipped"),
        ("empty_task_2", "success"),
    ];
    examples.assert_states(dag, &run, &states, &tasks).await;

    // tutorial_taskflow_templates: a `.sql` argument read from the DAG's folder and rendered
    // (with the task's params over the DAG's), a `{{ run_id }}` argument, `render_template`.
    let dag = "tutorial_taskflow_templates";
    let (run, states) = examples.run(dag, on_leap_day_eve.clone()).await;
    examples
        .assert_states(dag, &run, &states, &succeeded(&["template_test"]))
        .await;
    let log = examples.log(dag, &run, "template_test").await;
    for expected in [
        "sql: /*".to_owned(),
        "select * from test_data".to_owned(),
        format!("and run_id = '{run}'"),
        "and something_else = 'param_from_task'".to_owned(),
        format!("test_var: {run}"),
        "data_interval_end: 2024-02-28 00:00:00+00:00".to_owned(),
        format!("rendered template: run_id: {run}; params.other_param: from_dag"),
    ] {
        assert!(log.contains(&expected), "{expected:?} not in {log}");
    }

    // example_bash_operator: `{{ task_instance_key_str }}`; exit code 99 skips a task, and
    // the task after it, as Airflow's all_success rule does.
    let dag = "example_bash_operator";
    let (run, states) = examples.run(dag, on_leap_day_eve).await;
    let mut tasks = succeeded(&[
        "also_run_this",
        "run_after_loop",
        "runme_0",
        "runme_1",
        "runme_2",
    ]);
    tasks.extend([("run_this_last", "skipped"), ("this_will_skip", "skipped")]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "also_run_this").await;
    assert!(
        log.contains("ti_key=example_bash_operator__also_run_this__20240228"),
        "{log}"
    );

    // example_skip_dag: a custom operator raising AirflowSkipException; the all_success join
    // skips with it, the one_success join runs, as on Airflow.
    let dag = "example_skip_dag";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let mut tasks = succeeded(&["always_true_1", "always_true_2", "one_success", "final_2"]);
    tasks.extend([
        ("skip_operator_1", "skipped"),
        ("skip_operator_2", "skipped"),
        ("all_success", "skipped"),
        ("final_1", "skipped"),
    ]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    // The API shows the custom class as Airflow would: its name, module and colour.
    let task = examples
        .client
        .get("/api/v2/dags/example_skip_dag/tasks/skip_operator_1")
        .await;
    assert_eq!(task["operator_name"], "EmptySkipOperator", "{task}");
    assert_eq!(
        task["class_ref"]["class_name"], "EmptySkipOperator",
        "{task}"
    );
    assert_eq!(
        task["class_ref"]["module_path"], "example_skip_dag",
        "{task}"
    );
    assert_eq!(task["ui_color"], "#e8b7e4", "{task}");

    // example_dynamic_task_mapping_with_no_taskflow_operators: AddOneOperator mapped over
    // [1, 2, 3], SumItOperator summing the three results of its `values` template field.
    let dag = "example_dynamic_task_mapping_with_no_taskflow_operators";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&["add_one", "add_one", "add_one", "sum_it"]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    assert_eq!(
        examples.xcom(dag, &run, "sum_it", "return_value").await,
        json!(9)
    );
    let log = examples.log(dag, &run, "sum_it").await;
    assert!(log.contains("Total was 9"), "{log}");

    // LatestOnlyOperator lets a manual run through; its class and colour are Airflow's.
    let (run, states) = examples
        .run("latest_only", json!({"logical_date": null}))
        .await;
    let tasks = succeeded(&["latest_only", "task1"]);
    examples
        .assert_states("latest_only", &run, &states, &tasks)
        .await;
    let task = examples
        .client
        .get("/api/v2/dags/latest_only/tasks/latest_only")
        .await;
    assert_eq!(
        task["class_ref"]["module_path"], "airflow.providers.standard.operators.latest_only",
        "{task}"
    );
    assert_eq!(task["ui_color"], "#e9ffdb", "{task}");
    let dag = "latest_only_with_trigger";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&["latest_only", "task1", "task2", "task3", "task4"]);
    examples.assert_states(dag, &run, &states, &tasks).await;

    // BranchDateTimeOperator: now is past the 2020 window; the logical date inside it.
    let dag = "example_branch_datetime_operator";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = [
        ("datetime_branch", "success"),
        ("date_outside_range", "success"),
        ("date_in_range", "skipped"),
    ];
    examples.assert_states(dag, &run, &states, &tasks).await;
    let dag = "example_branch_datetime_operator_3";
    let inside = json!({"logical_date": "2020-10-10T14:30:00Z"});
    let (run, states) = examples.run(dag, inside).await;
    let tasks = [
        ("datetime_branch", "success"),
        ("date_in_range", "success"),
        ("date_outside_range", "skipped"),
    ];
    examples.assert_states(dag, &run, &states, &tasks).await;

    // BranchDayOfWeekOperator: Monday or not, then weekend or not, of today in UTC.
    let dag = "example_weekday_branch_operator";
    let today = chrono::Utc::now().weekday();
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = match today {
        chrono::Weekday::Mon => vec![
            ("make_choice", "success"),
            ("branch_true", "success"),
            ("branch_false", "skipped"),
            ("make_weekend_choice", "skipped"),
            ("branch_weekend", "skipped"),
            ("branch_mid_week", "skipped"),
        ],
        day => {
            let weekend = matches!(day, chrono::Weekday::Sat | chrono::Weekday::Sun);
            let state = |chosen: bool| if chosen { "success" } else { "skipped" };
            vec![
                ("make_choice", "success"),
                ("branch_true", "skipped"),
                ("branch_false", "success"),
                ("make_weekend_choice", "success"),
                ("branch_weekend", state(weekend)),
                ("branch_mid_week", state(!weekend)),
            ]
        }
    };
    examples.assert_states(dag, &run, &states, &tasks).await;

    // example_sensors: time, bash, file, Python and weekday sensors, those with soft_fail
    // skipped when they time out. Its TimeSensors wait for a time of day an hour after the file
    // is run: from 23:00 UTC that is early today, already past, and they succeed (on Airflow too).
    let dag = "example_sensors";
    let now = chrono::Utc::now();
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let state = |done: bool| if done { "success" } else { "skipped" };
    let mut tasks = succeeded(&[
        "wait_some_seconds",
        "wait_some_seconds_async",
        "fire_immediately",
        "fire_immediately_async",
        "Sensor_succeeds",
        "remove_file",
        "wait_for_file",
        "wait_for_file_async",
        "create_file_after_3_seconds",
        "success_sensor_python",
        "print_date_in_bash",
    ]);
    let late = now.hour() == 23;
    let monday = now.weekday() == chrono::Weekday::Mon;
    tasks.extend([
        ("timeout_after_second_date_in_the_future", state(late)),
        ("timeout_after_second_date_in_the_future_async", state(late)),
        ("Sensor_fails_after_3_seconds", "skipped"),
        ("failure_timeout_sensor_python", "skipped"),
        ("week_day_sensor_failing_on_timeout", state(monday)),
    ]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples
        .log(dag, &run, "Sensor_fails_after_3_seconds")
        .await;
    assert!(log.contains("sensor timed out after 3 s"), "{log}");
    // The graph view shows the sensors as sensors.
    let graph = examples.graph("example_sensors").await;
    let kind = |id: &str| node_field(&graph, id, "type");
    assert_eq!(kind("wait_for_file"), Some(json!("sensor")), "{graph}");
    assert_eq!(kind("remove_file"), Some(json!("task")), "{graph}");

    // example_branch_labels: every task runs; the graph view names its two labelled edges.
    let dag = "example_branch_labels";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&[
        "ingest",
        "analyze",
        "check_integrity",
        "describe_integrity",
        "email_error",
        "save",
        "report",
    ]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let graph = examples.graph("example_branch_labels").await;
    let mut labels: Vec<(String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            Some((
                e["target_id"].as_str()?.to_owned(),
                e["label"].as_str()?.to_owned(),
            ))
        })
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            ("describe_integrity".to_owned(), "Errors found".to_owned()),
            ("save".to_owned(), "No errors".to_owned())
        ],
        "{graph}"
    );

    // tutorial_taskflow_api_virtualenv: `extract` runs in a virtualenv without the system's
    // packages, with `funcsigs` installed from the package index; its dict flows on.
    let dag = "tutorial_taskflow_api_virtualenv";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&["extract", "transform", "load"]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "load").await;
    assert!(log.contains("Total order value is: 1236.70"), "{log}");

    setup_and_teardown(&examples).await;
    mapped_task_groups(&examples).await;
    a_dry_run_shows_what_markers_clear(&examples).await;
    dag_decorator(&examples).await;
    assets(&examples).await;
    human_in_the_loop(&examples).await;
}

/// `standard/example_hitl_operator`, answered through `hitlDetails` as a person answers in the
/// UI: each question waits without a process; `wait_for_default_option` takes its default when
/// its 1 s `execution_timeout` passes; the approval's body renders the answers before it; the
/// branch follows the task the person chose. Bad answers are refused, saying why, and change
/// nothing.
async fn human_in_the_loop(examples: &Examples) {
    let dag = "example_hitl_operator";
    examples.unpause(dag).await;
    let (status, run) = examples
        .client
        .call(
            Method::POST,
            &format!("/api/v2/dags/{dag}/dagRuns"),
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let run_path = format!("/api/v2/dags/{dag}/dagRuns/{}", encode(&run_id));
    let detail = |task: &str| format!("{run_path}/taskInstances/{task}/-1/hitlDetails");
    let answer = |task: &'static str, body: Value| {
        let path = detail(task);
        async move { examples.client.call(Method::PATCH, &path, Some(body)).await }
    };
    // The four first questions wait, the timed one answered by its default.
    let waiting = examples
        .until_hitl(&run_path, |details| {
            details.len() == 4
                && details.iter().any(|d| {
                    d["task_instance"]["task_id"] == "wait_for_default_option"
                        && d["response_received"] == true
                })
        })
        .await;
    let timed = waiting
        .iter()
        .find(|d| d["task_instance"]["task_id"] == "wait_for_default_option")
        .unwrap();
    assert_eq!(timed["chosen_options"], json!(["option 7"]), "{timed}");
    assert!(timed["responded_by_user"].is_null(), "{timed}");
    let option = examples.client.get(&detail("wait_for_option")).await;
    assert_eq!(option["subject"], "Please choose one option to proceed: ");
    assert_eq!(
        option["options"],
        json!(["option 1", "option 2", "option 3"])
    );
    assert_eq!(option["response_received"], false, "{option}");
    assert_eq!(option["task_instance"]["state"], "deferred", "{option}");
    let input = examples.client.get(&detail("wait_for_input")).await;
    assert_eq!(input["params"]["information"]["value"], "", "{input}");

    // Bad answers: refused, nothing recorded.
    let (status, body) = answer("wait_for_option", json!({"chosen_options": ["option 9"]})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("option 9"), "{body}");
    let two = json!({"chosen_options": ["option 1", "option 2"]});
    let (status, body) = answer("wait_for_option", two).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = answer("wait_for_option", json!({"chosen_options": []})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = answer("task_1", json!({"chosen_options": ["x"]})).await;
    assert_eq!(status, 404, "{body}");

    let info = json!({"chosen_options": ["OK"], "params_input": {"information": "from the test"}});
    let (status, body) = answer("wait_for_input", info).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["responded_by"]["id"], "admin", "{body}");
    let (status, body) = answer("wait_for_option", json!({"chosen_options": ["option 2"]})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = answer("wait_for_option", json!({"chosen_options": ["option 3"]})).await;
    assert_eq!(status, 409, "a second answer: {body}");
    let both = json!({"chosen_options": ["option 4", "option 6"]});
    let (status, body) = answer("wait_for_multiple_options", both).await;
    assert_eq!(status, 200, "{body}");

    // The approval asks about the answers, rendered into its body.
    let approval = examples
        .until_hitl(&run_path, |details| {
            details
                .iter()
                .any(|d| d["task_instance"]["task_id"] == "valid_input_and_options")
        })
        .await;
    let approval = approval
        .iter()
        .find(|d| d["task_instance"]["task_id"] == "valid_input_and_options")
        .unwrap();
    let asked = approval["body"].as_str().unwrap();
    for line in [
        "Input: from the test",
        "Option: ['option 2']",
        "Multiple Options: ['option 4', 'option 6']",
        "Timeout Option: ['option 7']",
    ] {
        assert!(asked.contains(line), "{line:?} not in {asked}");
    }
    assert_eq!(approval["options"], json!(["Approve", "Reject"]));
    let (status, body) = answer(
        "valid_input_and_options",
        json!({"chosen_options": ["Approve"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    examples
        .until_hitl(&run_path, |details| {
            details
                .iter()
                .any(|d| d["task_instance"]["task_id"] == "choose_a_branch_to_run")
        })
        .await;
    let (status, body) = answer(
        "choose_a_branch_to_run",
        json!({"chosen_options": ["task_2"]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let ended = examples
        .client
        .until(&run_path, |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    let states = examples.states(&run_path).await;
    let mut expected = succeeded(&[
        "wait_for_input",
        "wait_for_option",
        "wait_for_multiple_options",
        "wait_for_default_option",
        "valid_input_and_options",
        "choose_a_branch_to_run",
        "task_2",
    ]);
    expected.extend([("task_1", "skipped"), ("task_3", "skipped")]);
    examples
        .assert_states(dag, &run_id, &states, &expected)
        .await;
    assert_eq!(ended["state"], "success", "{ended}");
    // The answers are the tasks' results, as Airflow's.
    let result = examples
        .xcom(dag, &run_id, "wait_for_input", "return_value")
        .await;
    assert_eq!(
        result["params_input"],
        json!({"information": "from the test"}),
        "{result}"
    );
    assert_eq!(result["chosen_options"], json!(["OK"]), "{result}");
    // The notifier ran with the question's template rendered, and the success callback.
    let log = examples.log(dag, &run_id, "wait_for_option").await;
    assert!(
        log.contains("Subject: Please choose one option to proceed:"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Url to respond http://localhost:28080/dags/{dag}/runs/"
        )) && log.contains("/tasks/wait_for_option/required_actions?map_index=-1"),
        "{log}"
    );
    // A try's question and answer, as Airflow's `HITLDetailHistory`.
    let first = examples
        .client
        .get(&format!("{}/tries/1", detail("wait_for_option")))
        .await;
    assert_eq!(first["chosen_options"], json!(["option 2"]), "{first}");
    assert_eq!(first["task_instance"]["try_number"], 1, "{first}");
    let (status, body) = examples
        .client
        .call(
            Method::GET,
            &format!("{}/tries/2", detail("wait_for_option")),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // The list filters as the UI's "Required Actions" page asks it to.
    let pending = examples
        .client
        .get("/api/v2/dags/~/dagRuns/~/hitlDetails?response_received=false&state=deferred")
        .await;
    assert_eq!(pending["total_entries"], 0, "{pending}");
    let answered = examples
        .client
        .get(&format!(
            "/api/v2/dags/{dag}/dagRuns/~/hitlDetails?response_received=true&order_by=task_id"
        ))
        .await;
    assert_eq!(answered["total_entries"], 6, "{answered}");
}

/// `example_assets`, as its docstring tells it: `asset_produces_1` triggers the DAGs that need
/// its asset alone (or either asset); `asset_consumes_1_and_2` and the `and` expression wait for
/// `asset_produces_2` too; the two "never scheduled" DAGs never run.
async fn assets(examples: &Examples) {
    let consumers = [
        "asset_consumes_1",
        "asset_consumes_1_and_2",
        "asset_consumes_1_never_scheduled",
        "asset_consumes_unknown_never_scheduled",
        "consume_1_and_2_with_asset_expressions",
        "consume_1_or_2_with_asset_expressions",
        "consume_1_or_both_2_and_3_with_asset_expressions",
        "conditional_asset_and_time_based_timetable",
    ];
    for dag in consumers {
        examples.unpause(dag).await;
    }
    let body = json!({"logical_date": null});
    let (run, states) = examples.run("asset_produces_1", body.clone()).await;
    let produced = succeeded(&["producing_task_1"]);
    examples
        .assert_states("asset_produces_1", &run, &states, &produced)
        .await;
    // Unpaused, the @daily producer may also run its latest interval: one run or two of
    // each consumer, as the two updates come together or apart.
    asset_triggered(examples, "asset_produces_1", 1).await;
    assert!(asset_triggered(examples, "asset_consumes_1", 1).await >= 1);
    assert!(asset_triggered(examples, "consume_1_or_2_with_asset_expressions", 1).await >= 1);
    let either = "consume_1_or_both_2_and_3_with_asset_expressions";
    assert!(asset_triggered(examples, either, 1).await >= 1);
    for waiting in [
        "asset_consumes_1_and_2",
        "consume_1_and_2_with_asset_expressions",
        "conditional_asset_and_time_based_timetable",
    ] {
        assert_eq!(asset_triggered(examples, waiting, 0).await, 0, "{waiting}");
    }

    let (run, states) = examples.run("asset_produces_2", body).await;
    let produced = succeeded(&["producing_task_2"]);
    examples
        .assert_states("asset_produces_2", &run, &states, &produced)
        .await;
    for both in [
        "asset_consumes_1_and_2",
        "consume_1_and_2_with_asset_expressions",
        "conditional_asset_and_time_based_timetable",
    ] {
        assert_eq!(asset_triggered(examples, both, 1).await, 1, "{both}");
    }
    assert!(asset_triggered(examples, "consume_1_or_2_with_asset_expressions", 2).await >= 2);
    for never in [
        "asset_consumes_1_never_scheduled",
        "asset_consumes_unknown_never_scheduled",
    ] {
        assert_eq!(asset_triggered(examples, never, 0).await, 0, "{never}");
    }
    asset_event_extras(examples).await;
    asset_aliases(examples).await;
    asset_decorator(examples).await;
    asset_watchers(examples).await;
}

/// `example_asset_with_watchers`: while the DAG is unpaused, the triggerer runs its asset's
/// `FileDeleteTrigger` on `/tmp/test` (the path the example names); a file there is deleted and
/// updates the asset (extra `{"from_trigger": true, "payload": true}`, as Airflow records it),
/// which triggers the DAG — each time a file appears.
async fn asset_watchers(examples: &Examples) {
    let dag = "example_asset_with_watchers";
    let file = Path::new("/tmp/test");
    let _ = std::fs::remove_file(file);
    examples.unpause(dag).await;
    for time in 1..=2 {
        std::fs::write(file, "an external event").unwrap();
        // The trigger looks every 5 s (its default poke_interval).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while file.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the watcher never took {}",
                file.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(asset_triggered(examples, dag, time).await, time);
    }
    let events = examples
        .client
        .get("/api/v2/assets/events?order_by=-timestamp&limit=100")
        .await;
    let watched: Vec<&Value> = events["asset_events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["uri"] == "example_asset")
        .collect();
    assert_eq!(watched.len(), 2, "{events}");
    for event in watched {
        assert_eq!(
            event["extra"],
            json!({"from_trigger": true, "payload": true}),
            "{event}"
        );
    }
}

/// The asset-triggered runs of `dag` once it has at least `at_least` runs and all of them
/// ended, each checked to have succeeded.
async fn asset_triggered(examples: &Examples, dag: &str, at_least: usize) -> usize {
    let runs = examples.settled_runs(dag, at_least).await;
    let triggered: Vec<&(String, String)> = runs
        .iter()
        .filter(|(kind, _)| kind == "asset_triggered")
        .collect();
    assert!(
        triggered.iter().all(|(_, state)| state == "success"),
        "{dag}: {runs:?}"
    );
    triggered.len()
}

/// `example_asset_alias` and its `_with_no_taskflow` twin, as their docstring tells it: a plain
/// update of the producer's asset triggers the DAG scheduled on it, not the one on the alias,
/// which is unresolved; an update through the alias triggers the alias's consumer, which reads
/// the event through `inlet_events` of the alias. Both aliases add `s3://bucket/my-task` (the
/// twin's plain producer updates `s3://bucket/my-task-with-no-taskflow`), so each alias's
/// update triggers `asset_s3_bucket_consumer` once more.
async fn asset_aliases(examples: &Examples) {
    let body = json!({"logical_date": null});
    let my_task_consumer = "asset_s3_bucket_consumer";
    for (suffix, my_task_runs) in [("", 2), ("_with_no_taskflow", 3)] {
        let on_asset = format!("asset_s3_bucket_consumer{suffix}");
        let on_alias = format!("asset_alias_example_alias_consumer{suffix}");
        examples.unpause(&on_asset).await;
        examples.unpause(&on_alias).await;
        let producer = format!("asset_s3_bucket_producer{suffix}");
        let (run, states) = examples.run(&producer, body.clone()).await;
        let tasks = succeeded(&["produce_asset_events"]);
        examples
            .assert_states(&producer, &run, &states, &tasks)
            .await;
        assert_eq!(
            asset_triggered(examples, &on_asset, 1).await,
            1,
            "{on_asset}"
        );
        assert_eq!(
            asset_triggered(examples, &on_alias, 0).await,
            0,
            "{on_alias}"
        );

        let producer = format!("asset_alias_example_alias_producer{suffix}");
        let (run, states) = examples.run(&producer, body.clone()).await;
        let task = format!("produce_asset_events_through_asset_alias{suffix}");
        let tasks = succeeded(&[task.as_str()]);
        examples
            .assert_states(&producer, &run, &states, &tasks)
            .await;
        assert_eq!(
            asset_triggered(examples, &on_alias, 1).await,
            1,
            "{on_alias}"
        );
        // The taskflow consumer's task is this; the other's is `consume_asset_event_from_asset_alias`.
        let list = examples
            .client
            .get(&format!("/api/v2/dags/{on_alias}/dagRuns?limit=10"))
            .await;
        let run = list["dag_runs"][0]["dag_run_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let log = examples
            .log(&on_alias, &run, "consume_asset_event_from_asset_alias")
            .await;
        assert!(log.contains("s3://bucket/my-task"), "{log}");
        // The alias's event is an update of `s3://bucket/my-task`.
        let runs = asset_triggered(examples, my_task_consumer, my_task_runs).await;
        assert_eq!(runs, my_task_runs, "{my_task_consumer}");
    }
}

/// `example_asset_decorator`: `@asset` functions are DAGs of one task updating their asset;
/// an update of `asset1_producer` triggers `consumes_asset_decorator` (`asset1 | asset2`), and
/// `asset2_producer` reads its inlet's events from its context.
async fn asset_decorator(examples: &Examples) {
    let body = json!({"logical_date": null});
    examples.unpause("consumes_asset_decorator").await;
    let (run, states) = examples.run("asset1_producer", body.clone()).await;
    let tasks = succeeded(&["asset1_producer"]);
    examples
        .assert_states("asset1_producer", &run, &states, &tasks)
        .await;
    let consumer = "consumes_asset_decorator";
    assert_eq!(asset_triggered(examples, consumer, 1).await, 1);
    let (run, states) = examples.run("asset2_producer", body).await;
    let tasks = succeeded(&["asset2_producer"]);
    examples
        .assert_states("asset2_producer", &run, &states, &tasks)
        .await;
    let log = examples
        .log("asset2_producer", &run, "asset2_producer")
        .await;
    assert!(log.contains("s3://bucket/asset1_producer"), "{log}");
}

/// `example_outlet_event_extra`'s three ways of giving an outlet's event an extra succeed, and
/// `example_inlet_event_extra` reads the events back: its TaskFlow task succeeds, and its
/// classic task, whose `for_asset(uri=...)` finds its inlet `Asset("s3://output/1.txt")` (a name
/// of its own, so not the producers' `test-asset`) without events, fails rendering `[-1]` as on
/// Airflow.
async fn asset_event_extras(examples: &Examples) {
    let body = json!({"logical_date": null});
    for (dag, task) in [
        ("asset_with_extra_by_yield", "asset_with_extra_by_yield"),
        ("asset_with_extra_by_context", "asset_with_extra_by_context"),
        (
            "asset_with_extra_from_classic_operator",
            "asset_with_extra_from_classic_operator",
        ),
    ] {
        let (run, states) = examples.run(dag, body.clone()).await;
        examples
            .assert_states(dag, &run, &states, &succeeded(&[task]))
            .await;
    }
    let events = examples
        .client
        .get("/api/v2/assets/events?name_pattern=test-asset&limit=100")
        .await;
    let extras: Vec<&Value> = events["asset_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["extra"])
        .collect();
    assert!(extras.len() >= 3, "{events}");
    assert!(
        extras.iter().all(|e| **e == json!({"hi": "bye"})),
        "{events}"
    );

    let dag = "read_asset_event";
    let (run, states) = examples.run(dag, body.clone()).await;
    examples
        .assert_states(dag, &run, &states, &succeeded(&[dag]))
        .await;
    let dag = "read_asset_event_from_classic";
    let (run, states) = examples.run(dag, body).await;
    examples
        .assert_states(dag, &run, &states, &[(dag, "failed")])
        .await;
    // Jinja turns the IndexError into an undefined value, whose `.extra` fails the render.
    let log = examples.log(dag, &run, dag).await;
    assert!(
        log.contains("UndefinedError") && log.contains("has no element -1"),
        "{log}"
    );
}

/// `example_external_task_marker_dag`: the dry run of clearing the parent's marker lists the
/// child run's marked task and what is downstream of it, as Airflow's does.
async fn a_dry_run_shows_what_markers_clear(examples: &Examples) {
    let at = json!({"logical_date": "2024-03-01T00:00:00Z", "conf": {}});
    let parent = "example_external_task_marker_parent";
    let (parent_run, states) = examples.run(parent, at.clone()).await;
    examples
        .assert_states(parent, &parent_run, &states, &succeeded(&["parent_task"]))
        .await;
    // The child's run of the same logical date: its first sensor sees the parent's task done,
    // its second waits for a task group the parent does not have (for minutes, as on Airflow);
    // the run need not end here.
    let child = "example_external_task_marker_child";
    let (status, _) = examples
        .client
        .call(
            Method::PATCH,
            &format!("/api/v2/dags/{child}"),
            Some(json!({"is_paused": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, child_run) = examples
        .client
        .call(
            Method::POST,
            &format!("/api/v2/dags/{child}/dagRuns"),
            Some(at),
        )
        .await;
    assert_eq!(status, 200, "{child_run}");
    let child_run = child_run["dag_run_id"].as_str().unwrap().to_owned();
    examples
        .client
        .until(
            &format!(
                "/api/v2/dags/{child}/dagRuns/{}/taskInstances",
                encode(&child_run)
            ),
            // The run starts with its three task instances, as Airflow's does.
            |tis| tis["total_entries"] == 3,
        )
        .await;
    let (status, listed) = examples
        .client
        .call(
            Method::POST,
            &format!("/api/v2/dags/{parent}/clearTaskInstances"),
            Some(json!({"dag_run_id": parent_run, "task_ids": ["parent_task"], "dry_run": true})),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let mut shown: Vec<(String, String, String)> = listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| {
            (
                ti["dag_id"].as_str().unwrap().to_owned(),
                ti["dag_run_id"].as_str().unwrap().to_owned(),
                ti["task_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    shown.sort();
    let expected: Vec<(String, String, String)> = [
        // `child_task3` too, not scheduled yet (it waits for the sensor): its instance exists,
        // without a state.
        (child, &child_run, "child_task1"),
        (child, &child_run, "child_task2"),
        (child, &child_run, "child_task3"),
        (parent, &parent_run, "parent_task"),
    ]
    .iter()
    .map(|(d, r, t)| (d.to_string(), r.to_string(), t.to_string()))
    .collect();
    assert_eq!(shown, expected, "{listed}");
    assert_eq!(listed["total_entries"], 4, "{listed}");
}

/// `example_dynamic_task_mapping`'s three DAGs: a mapped task summed, a task mapped over a
/// mapped task, and a task group mapped over `[1, 2, 3]` whose `mul_2` receives the result of
/// `add_1` of its own map index.
async fn mapped_task_groups(examples: &Examples) {
    let dag = "example_dynamic_task_mapping";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&["add_one", "add_one", "add_one", "sum_it"]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "sum_it").await;
    assert!(log.contains("Total was 9"), "{log}");

    let dag = "example_task_mapping_second_order";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let mut tasks = succeeded(&["get_nums"]);
    tasks.extend(succeeded(&["times_2"; 3]));
    tasks.extend(succeeded(&["add_10"; 3]));
    examples.assert_states(dag, &run, &states, &tasks).await;

    let dag = "example_task_group_mapping";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let mut tasks = succeeded(&["op.add_1"; 3]);
    tasks.extend(succeeded(&["op.mul_2"; 3]));
    examples.assert_states(dag, &run, &states, &tasks).await;
    let mut results = Vec::new();
    for map_index in 0..3 {
        let entry = examples
            .client
            .get(&format!(
                "{}/xcomEntries/return_value?map_index={map_index}",
                examples.ti_path(dag, &run, "op.mul_2")
            ))
            .await;
        results.push(entry["value"].clone());
    }
    // (num + 1) * 2 for each num, in map-index order.
    assert_eq!(results, [json!(4), json!(6), json!(8)]);
    // The grid shows the group and its tasks as mapped, as Airflow's does.
    let grid = examples
        .client
        .get(&format!("/ui/grid/structure/{dag}"))
        .await;
    let group = grid
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "op")
        .unwrap();
    assert_eq!(group["is_mapped"], true, "{grid}");
    assert_eq!(group["children"][0]["is_mapped"], true, "{grid}");
}

/// `example_dag_decorator`: its custom operator GETs the `url` param (here a local server's,
/// not the internet's) with `httpx`, a `multiple_outputs` task reads the address it answers and
/// a bash task echoes it.
async fn dag_decorator(examples: &Examples) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/get", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            answer_with_origin(stream);
        }
    });
    let dag = "example_dag_decorator";
    let body = json!({"logical_date": null, "conf": {"url": url}});
    let (run, states) = examples.run(dag, body).await;
    let tasks = succeeded(&["echo_ip_info", "get_ip", "prepare_command"]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "echo_ip_info").await;
    assert!(
        log.contains(
            "Seems like today your server executing Airflow is connected from IP 127.0.0.1"
        ),
        "{log}"
    );
}

/// Answers one HTTP request with httpbingo's shape of `GET /get`: who asked.
fn answer_with_origin(mut stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Write};
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let body = r#"{"origin": "127.0.0.1"}"#;
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `example_setup_teardown` and `example_setup_teardown_taskflow` run every task; the graph and
/// the grid mark setups and teardowns as Airflow's do; a clear of a task takes its setup and
/// teardown along.
async fn setup_and_teardown(examples: &Examples) {
    let dag = "example_setup_teardown";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&[
        "root_setup",
        "normal",
        "root_teardown",
        "section_1.taskgroup_setup",
        "section_1.normal",
        "section_1.taskgroup_teardown",
    ]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let dag = "example_setup_teardown_taskflow";
    let (run, states) = examples.run(dag, json!({"logical_date": null})).await;
    let tasks = succeeded(&[
        "my_first_task",
        "my_second_task",
        "my_third_task",
        "outer_setup",
        "outer_work",
        "outer_teardown",
        "section_1.inner_setup",
        "section_1.inner_work",
        "section_1.inner_teardown",
    ]);
    examples.assert_states(dag, &run, &states, &tasks).await;
    let log = examples.log(dag, &run, "section_1.inner_teardown").await;
    assert!(
        log.contains("tearing down cluster_id='some_cluster_id'"),
        "{log}"
    );

    let graph = examples.graph(dag).await;
    let kind = |id: &str| node_field(&graph, id, "setup_teardown_type");
    assert_eq!(kind("my_first_task"), Some(json!("setup")), "{graph}");
    assert_eq!(kind("my_third_task"), Some(json!("teardown")), "{graph}");
    assert_eq!(kind("my_second_task"), Some(Value::Null), "{graph}");
    let bracket: Vec<(&str, &str)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["is_setup_teardown"] == true)
        .map(|e| {
            (
                e["source_id"].as_str().unwrap(),
                e["target_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        bracket.contains(&("outer_setup", "outer_teardown")),
        "{graph}"
    );
    assert!(!bracket.contains(&("outer_setup", "outer_work")), "{graph}");
    let grid = examples
        .client
        .get(&format!("/ui/grid/structure/{dag}"))
        .await;
    let first = grid
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "my_first_task");
    assert_eq!(first.unwrap()["setup_teardown_type"], "setup", "{grid}");

    // Clearing the work task clears its setup and its teardown too (the example's comment).
    let (status, cleared) = examples
        .client
        .call(
            Method::POST,
            &format!("/api/v2/dags/{dag}/clearTaskInstances"),
            Some(json!({"dag_run_id": run, "task_ids": ["my_second_task"], "dry_run": true})),
        )
        .await;
    assert_eq!(status, 200, "{cleared}");
    let mut ids: Vec<&str> = cleared["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| ti["task_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["my_first_task", "my_second_task", "my_third_task"]);
}
