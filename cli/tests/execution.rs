//! End to end with real processes: `leoflow lite` (reactor, agent service, subprocess executor)
//! on a real Postgres, task agents and the Python task runner as child processes.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leoflow_core::commands::TriggerRequest;
use leoflow_events::catalog::{ConnectionSet, Sealed, VariableSet};
use leoflow_events::{Actor, AppendBatch, Event, EventStore, Metadata, TaskInstanceKey};
use leoflow_executors::proto::task_agent_client::TaskAgentClient;
use leoflow_executors::proto::{AttemptRef, FinishRequest, PushXComRequest};
use leoflow_postgres::testing::{TestDatabase, fresh_database, test_cluster};
use leoflow_projector::ReadModels;
use leoflow_scheduler::control;
use leoflow_scheduler::reactor::Specs;
use leoflow_scheduler::task_logs;
use serde_json::{Value, json};

mod common;

use common::{free_port, terminate};

/// A running `leoflow lite` on a test database (API only, its own home).
struct Lite {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    project: PathBuf,
    url: String,
    /// Everything it printed, stdout and stderr: what its terminal showed.
    terminal: Arc<Mutex<String>>,
    /// Each reader of its output says when that output ended.
    readers_done: std::sync::mpsc::Receiver<()>,
}

/// The Leoflow home of a project's test runs (credentials; next to the project, so removed
/// with it).
fn home_of(project: &Path) -> PathBuf {
    project.join(".leoflow-home")
}

impl Lite {
    fn start(project: &Path, url: &str) -> Self {
        Self::start_on(project, url, free_port())
    }

    fn start_on(project: &Path, url: &str, grpc_port: u16) -> Self {
        Self::start_with(project, url, grpc_port, |_| {})
    }

    /// [`Lite::start_on`], with `change` applied to its command line first.
    fn start_with(
        project: &Path,
        url: &str,
        grpc_port: u16,
        change: impl FnOnce(&mut Command),
    ) -> Self {
        let http_port = free_port();
        let mut command = lite_command(project, url, grpc_port, http_port);
        change(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start leoflow lite");
        let terminal = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, readers_done) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let (shown, done) = (terminal.clone(), done_tx.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Following the event log") {
                    let _ = ready_tx.send(());
                }
                shown.lock().unwrap().push_str(&format!("{line}\n"));
            }
            let _ = done.send(());
        });
        let stderr = child.stderr.take().unwrap();
        let shown = terminal.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                shown.lock().unwrap().push_str(&format!("{line}\n"));
            }
            let _ = done_tx.send(());
        });
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("leoflow lite did not become ready");
        Self {
            child,
            grpc_port,
            http_port,
            project: project.to_owned(),
            url: url.to_owned(),
            terminal,
            readers_done,
        }
    }

    /// Stops Lite (SIGTERM) and returns everything its terminal showed.
    fn stop(mut self) -> String {
        terminate(&mut self.child);
        // Its children (the zygote) may hold the pipes a moment longer: wait for both ends.
        for _ in 0..2 {
            let _ = self.readers_done.recv_timeout(Duration::from_secs(10));
        }
        self.terminal.lock().unwrap().clone()
    }

    /// SIGKILL: no clean shutdown at all.
    fn kill_hard(mut self) -> (PathBuf, String, u16) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.project.clone(), self.url.clone(), self.grpc_port)
    }
}

impl Drop for Lite {
    fn drop(&mut self) {
        // A child already reaped (stopped, killed) is not signalled: its pid may be reused.
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            terminate(&mut self.child);
        }
    }
}

/// The command line these tests start Lite with, on `url`, serving gRPC on `grpc_port` and
/// HTTP on `http_port`.
fn lite_command(project: &Path, url: &str, grpc_port: u16, http_port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_leoflow"));
    command
        .args(["lite", project.to_str().unwrap(), "--no-ui"])
        .args(["--grpc-port", &grpc_port.to_string(), "--metrics-port", "0"])
        .args(["--port", &http_port.to_string()])
        .env("LEOFLOW_HOME", home_of(project))
        .env("LEOFLOW_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("LEOFLOW_DATABASE_URL", url)
        .env_remove("LEOFLOW_POSTGRES")
        .env("LEOFLOW_HEARTBEAT_INTERVAL", "0.3")
        .env("LEOFLOW_HEARTBEAT_TIMEOUT", "4")
        .env("LEOFLOW_AGENT_RETRY_SECONDS", "30")
        // Stands for the control plane's own secrets: no task may see it.
        .env("CONTROL_PLANE_SECRET", "hunter2")
        .env("LEOFLOW_MAX_XCOM_BYTES", "5000000")
        .stdin(Stdio::null());
    command
}

/// The admin's password of these tests' Lite.
const ADMIN_PASSWORD: &str = "test-admin";

fn url(db: &TestDatabase) -> String {
    format!(
        "postgres://leoflow@localhost/{}?host={}",
        db.name,
        test_cluster().socket_dir().display()
    )
}

/// Gives the project's tasks `MARKER_DIR` (its own directory) through leoflow.yaml.
fn marker_dir_env(project: &Path) {
    std::fs::write(
        project.join("leoflow.yaml"),
        format!(
            "defaults:\n  env: {{MARKER_DIR: {:?}}}\n",
            project.display().to_string()
        ),
    )
    .unwrap();
}

/// A project directory holding `dag_py`.
fn project(dag_py: &str) -> tempfile_dir::Dir {
    let dir = tempfile_dir::Dir::new();
    std::fs::write(dir.path().join("dag.py"), dag_py).unwrap();
    dir
}

mod tempfile_dir {
    use std::path::{Path, PathBuf};

    /// A temporary directory removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("leoflow-e2e-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn setup(dag_py: &str) -> (TestDatabase, EventStore, tempfile_dir::Dir, Lite) {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag_py);
    let lite = Lite::start(dir.path(), &url(&db));
    (db, store, dir, lite)
}

async fn trigger(store: &EventStore, dag_id: &str, conf: Value) -> String {
    let request = TriggerRequest {
        run_id: None,
        logical_date: None,
        conf: Some(conf),
        triggered_by: "test".into(),
    };
    let event = control::trigger_dag(store, dag_id, request, &Actor::named("test"))
        .await
        .unwrap();
    match event.decode().unwrap() {
        Event::RunQueued(e) => e.run_id,
        other => panic!("{other:?}"),
    }
}

/// The attempt token of the running agent of `dag_id`, read from its environment.
async fn agent_token(dag_id: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let ours = args
                .windows(2)
                .any(|w| w[0] == b"--dag-id" && w[1] == dag_id.as_bytes());
            if !(ours && args.get(1) == Some(&&b"agent"[..])) {
                continue;
            }
            let environ = std::fs::read(entry.path().join("environ")).unwrap_or_default();
            if let Some(token) = environ
                .split(|b| *b == 0)
                .find_map(|v| v.strip_prefix(b"LEOFLOW_ATTEMPT_TOKEN="))
            {
                return String::from_utf8_lossy(token).into_owned();
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agent of {dag_id} ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the run is finished; returns its state.
async fn wait_for_run(store: &EventStore, dag_id: &str, run_id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM dag_run WHERE dag_id = $1 AND run_id = $2")
                .bind(dag_id)
                .bind(run_id)
                .fetch_optional(store.pool())
                .await
                .unwrap();
        if let Some(state) = state.clone().filter(|s| s == "success" || s == "failed") {
            return state;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not finish: {state:?}; task instances: {:?}",
            tis(store, dag_id, run_id).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// (task_id, map_index, state, try_number) of every task instance of a run.
async fn tis(store: &EventStore, dag_id: &str, run_id: &str) -> Vec<(String, i32, String, i32)> {
    sqlx::query_as(
        "SELECT task_id, map_index, coalesce(state, 'none'), try_number FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 ORDER BY task_id, map_index",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

async fn ti_state(store: &EventStore, dag_id: &str, run_id: &str, task_id: &str) -> (String, i32) {
    tis(store, dag_id, run_id)
        .await
        .into_iter()
        .find(|t| t.0 == task_id && t.1 == -1)
        .map(|t| (t.2, t.3))
        .unwrap_or_else(|| panic!("no task instance {task_id}"))
}

async fn xcom(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> Value {
    let content: String = sqlx::query_scalar(
        "SELECT b.content FROM xcom x JOIN blobs b ON b.hash = x.value_hash \
         WHERE x.dag_id = $1 AND x.run_id = $2 AND x.task_id = $3 AND x.map_index = $4 \
           AND x.key = 'return_value'",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_one(store.pool())
    .await
    .unwrap_or_else(|e| panic!("no XCom of {task_id}[{map_index}]: {e}"));
    serde_json::from_str(&content).unwrap()
}

async fn log(
    store: &EventStore,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: i32,
) -> String {
    let ti = TaskInstanceKey::new(dag_id, run_id, task_id);
    task_logs::read(store.pool(), &ti, try_number, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn failure_reason(store: &EventStore, dag_id: &str, run_id: &str, task_id: &str) -> String {
    let events = store
        .read_stream(&format!("run:{dag_id}/{run_id}"), 1)
        .await
        .unwrap();
    events
        .iter()
        .rev()
        .find_map(|e| match e.decode().unwrap() {
            Event::TaskFailed(f) if f.ti.task_id == task_id => Some(f.reason),
            Event::TaskUpForRetry(f) if f.ti.task_id == task_id => Some(f.reason),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{task_id} has no failure"))
}

/// Waits for the marker file a task writes when it runs (a number); returns the number.
async fn task_started(marker: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        // The file may exist before the task finished writing its number into it.
        if let Some(number) = std::fs::read_to_string(marker)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return number;
        }
        assert!(Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every event of a run's stream, one line each: what a failing assertion shows.
async fn story(store: &EventStore, dag_id: &str, run_id: &str) -> String {
    let events = store
        .read_stream(&format!("run:{dag_id}/{run_id}"), 1)
        .await
        .unwrap();
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {:?}",
                e.position, e.event_type, e.payload, e.metadata.actor
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn chain_fan_out_mapping_and_fan_in_run_with_airflow_context_xcom_and_logs() {
    let dag = r#"
from airflow.sdk import DAG, Connection, Variable, task, get_current_context
from airflow.providers.standard.operators.bash import BashOperator

with DAG("pipeline", schedule=None, is_paused_upon_creation=False, params={"factor": 2}):
    @task
    def numbers(ti=None, run_id=None, dag_run=None):
        print(f"numbers in {run_id} try {ti.try_number}; conf={dag_run.conf}")
        return [1, 2, 3]

    @task
    def scale(x, params=None):
        return x * params["factor"]

    @task
    def total(values):
        ctx = get_current_context()
        print("variable says", Variable.get("greeting"))
        db = Connection.get("warehouse")
        print(f"connection {db.conn_type}://{db.login}@{db.host}:{db.port} {db.extra_dejson['region']}")
        ctx["ti"].xcom_push(key="count", value=len(values))
        return sum(values)

    @task
    def left(n):
        return n + 1

    @task
    def right(n):
        return n - 1

    @task
    def join(a, b):
        return [a, b]

    t = total(scale.expand(x=numbers()))
    announce = BashOperator(task_id="announce", bash_command="echo 'run {{ run_id }} factor {{ params.factor }}' && echo done-{{ params.factor }}")
    joined = join(left(t), right(t))
    joined >> announce
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let set = VariableSet {
        key: "greeting".into(),
        value: Sealed::clear("hello"),
        description: None,
        tenant: leoflow_events::DEFAULT_TENANT.into(),
    };
    let connection = ConnectionSet {
        conn_id: "warehouse".into(),
        conn_type: "postgres".into(),
        description: None,
        host: Some("db.example".into()),
        schema: None,
        login: Some("reader".into()),
        password: None,
        port: Some(5432),
        extra: Some(Sealed::clear(r#"{"region": "eu"}"#)),
        tenant: leoflow_events::DEFAULT_TENANT.into(),
    };
    store
        .append(
            AppendBatch::new()
                .push(set, &Metadata::actor("test"))
                .push(connection, &Metadata::actor("test")),
        )
        .await
        .unwrap();
    let run = trigger(&store, "pipeline", json!({"factor": 10})).await;
    assert_eq!(wait_for_run(&store, "pipeline", &run).await, "success");

    assert_eq!(
        xcom(&store, "pipeline", &run, "numbers", -1).await,
        json!([1, 2, 3])
    );
    for (i, v) in [10, 20, 30].into_iter().enumerate() {
        assert_eq!(
            xcom(&store, "pipeline", &run, "scale", i as i32).await,
            json!(v)
        );
    }
    assert_eq!(xcom(&store, "pipeline", &run, "total", -1).await, json!(60));
    assert_eq!(
        xcom(&store, "pipeline", &run, "join", -1).await,
        json!([61, 59])
    );
    assert_eq!(
        xcom(&store, "pipeline", &run, "announce", -1).await,
        json!("done-10")
    );

    let numbers_log = log(&store, "pipeline", &run, "numbers", 1).await;
    assert!(
        numbers_log.contains(&format!("numbers in {run} try 1; conf={{'factor': 10}}")),
        "{numbers_log}"
    );
    let total_log = log(&store, "pipeline", &run, "total", 1).await;
    assert!(total_log.contains("variable says hello"), "{total_log}");
    assert!(
        total_log.contains("connection postgres://reader@db.example:5432 eu"),
        "{total_log}"
    );
    let rendered: String = sqlx::query_scalar(
        "SELECT b.content FROM task_instance t JOIN blobs b ON b.hash = t.rendered_fields_hash \
         WHERE t.dag_id = 'pipeline' AND t.run_id = $1 AND t.task_id = 'announce'",
    )
    .bind(&run)
    .fetch_one(store.pool())
    .await
    .unwrap();
    let rendered: Value = serde_json::from_str(&rendered).unwrap();
    assert_eq!(
        rendered["bash_command"],
        json!(format!("echo 'run {run} factor 10' && echo done-10")),
        "the UI's Rendered Templates show the command as it ran"
    );
    let bash_log = log(&store, "pipeline", &run, "announce", 1).await;
    assert!(
        bash_log.contains(&format!("run {run} factor 10")),
        "{bash_log}"
    );
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM xcom WHERE dag_id = 'pipeline' AND run_id = $1 AND task_id = 'total' AND key = 'count'",
    )
    .bind(&run)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn branch_and_short_circuit_skip_what_they_should_and_a_retry_then_succeeds() {
    let dag = r#"
from datetime import timedelta
from airflow.sdk import DAG, task

with DAG("choices", schedule=None, is_paused_upon_creation=False):
    @task.branch
    def pick():
        return "chosen"

    @task
    def chosen():
        return "went here"

    @task
    def ignored():
        return "never"

    @task(trigger_rule="none_failed_min_one_success")
    def after():
        return "joined"

    @task.short_circuit
    def gate():
        return False

    @task
    def gated():
        return "never"

    @task(retries=2, retry_delay=timedelta(seconds=0))
    def flaky(ti=None):
        if ti.try_number == 1:
            raise RuntimeError("first try always fails")
        return ti.try_number

    p = pick()
    p >> [chosen(), ignored()] >> after()
    gate() >> gated()
    flaky()
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "choices", json!({})).await;
    assert_eq!(wait_for_run(&store, "choices", &run).await, "success");
    let states: Vec<(String, String, i32)> = tis(&store, "choices", &run)
        .await
        .into_iter()
        .map(|t| (t.0, t.2, t.3))
        .collect();
    let state = |id: &str| states.iter().find(|s| s.0 == id).unwrap().1.clone();
    assert_eq!(state("chosen"), "success");
    assert_eq!(state("ignored"), "skipped");
    assert_eq!(state("after"), "success");
    assert_eq!(state("gate"), "success");
    assert_eq!(state("gated"), "skipped");
    assert_eq!(
        ti_state(&store, "choices", &run, "flaky").await,
        ("success".into(), 2)
    );
    assert_eq!(xcom(&store, "choices", &run, "flaky", -1).await, json!(2));
    let first = log(&store, "choices", &run, "flaky", 1).await;
    assert!(
        first.contains("RuntimeError: first try always fails"),
        "{first}"
    );
}

#[tokio::test]
async fn bad_tasks_fail_with_a_clear_reason_and_binary_output_is_kept_readable() {
    let dag = r#"
import os, sys
from datetime import timedelta
from airflow.sdk import DAG, task

with DAG("bad", schedule=None, is_paused_upon_creation=False):
    def lost(context):
        ti = context["ti"]
        print(f"the scheduler had the on_failure_callback of {ti.task_id} try {ti.try_number} run")

    @task(on_failure_callback=lost)
    def crashes():
        print("about to vanish", flush=True)
        os._exit(7)

    @task
    def not_json():
        return object()

    @task
    def garbage():
        sys.stderr.buffer.write(b"bin\xff\xfe\x00ary\n")
        return "ok"

    def timed_out(context):
        print(f"on_failure_callback saw {type(context['exception']).__name__}")

    @task(execution_timeout=timedelta(seconds=1), on_failure_callback=timed_out)
    def hangs():
        import time
        time.sleep(120)

    @task(execution_timeout=timedelta(seconds=1), on_failure_callback=lost)
    def ignores_its_timeout():
        import signal, time
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        time.sleep(120)

    crashes(); not_json(); garbage(); hangs(); ignores_its_timeout()
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "bad", json!({})).await;
    assert_eq!(wait_for_run(&store, "bad", &run).await, "failed");
    assert_eq!(ti_state(&store, "bad", &run, "garbage").await.0, "success");
    let garbage = log(&store, "bad", &run, "garbage", 1).await;
    assert!(garbage.contains("bin\u{fffd}\u{fffd}ary"), "{garbage}");

    assert_eq!(ti_state(&store, "bad", &run, "crashes").await.0, "failed");
    let crash = failure_reason(&store, "bad", &run, "crashes").await;
    assert!(crash.contains("without reporting an outcome"), "{crash}");
    assert!(
        log(&store, "bad", &run, "crashes", 1)
            .await
            .contains("about to vanish")
    );

    let not_json = failure_reason(&store, "bad", &run, "not_json").await;
    assert!(not_json.contains("not JSON-serializable"), "{not_json}");

    // Past its execution_timeout the task's code gets Airflow's AirflowTaskTimeout: it fails
    // as any failure does, its on_failure_callback running.
    assert_eq!(ti_state(&store, "bad", &run, "hangs").await.0, "failed");
    let hang = failure_reason(&store, "bad", &run, "hangs").await;
    assert!(hang.contains("AirflowTaskTimeout: Timeout, PID:"), "{hang}");
    let hang_log = log(&store, "bad", &run, "hangs", 1).await;
    assert!(
        hang_log.contains("on_failure_callback saw AirflowTaskTimeout"),
        "{hang_log}"
    );
    // Code that does not stop is killed a little later.
    let ignores = failure_reason(&store, "bad", &run, "ignores_its_timeout").await;
    assert!(
        ignores.contains("execution_timeout of 1 s exceeded and the task did not stop by itself"),
        "{ignores}"
    );
    // A try whose process crashed, or was killed, could not run its on_failure_callback: the
    // scheduler has the triggerer run it, as Airflow's has its DAG processor, into its log.
    for task_id in ["crashes", "ignores_its_timeout"] {
        let ran = format!(
            "[task callback] the scheduler had the on_failure_callback of {task_id} try 1 run"
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = log(&store, "bad", &run, task_id, 1).await;
            if text.contains(&ran) {
                break;
            }
            assert!(Instant::now() < deadline, "{task_id}: {text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test]
async fn cancelling_a_running_try_kills_its_process_and_clearing_reruns_it() {
    let dag = r#"
import os, time
from pathlib import Path
from airflow.sdk import DAG, task

with DAG("slow", schedule=None, is_paused_upon_creation=False):
    @task
    def sleeper(ti=None):
        marker = Path(os.environ["MARKER_DIR"]) / f"try{ti.try_number}.pid"
        if ti.try_number == 1:
            marker.write_text(str(os.getpid()))
            time.sleep(120)
        return "second time quick"

    @task
    def after(value):
        return value.upper()

    after(sleeper())
"#;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag);
    // Tasks see only an allow-listed environment plus their leoflow.yaml `env`.
    marker_dir_env(dir.path());
    let _lite = Lite::start(dir.path(), &url(&db));
    let run = trigger(&store, "slow", json!({})).await;
    let marker = dir.path().join("try1.pid");
    let pid = task_started(&marker).await;
    assert!(alive(pid));
    control::cancel_task(
        &store,
        &Specs::default(),
        &TaskInstanceKey::new("slow", &run, "sleeper"),
        &Actor::named("test"),
    )
    .await
    .unwrap();
    assert_eq!(wait_for_run(&store, "slow", &run).await, "failed");
    let reason = failure_reason(&store, "slow", &run, "sleeper").await;
    assert!(reason.contains("cancelled"), "{reason}");
    let deadline = Instant::now() + Duration::from_secs(15);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the cancelled task's process still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        ti_state(&store, "slow", &run, "after").await.0,
        "upstream_failed"
    );

    control::clear_tasks(
        &store,
        &Specs::default(),
        "slow",
        &run,
        vec!["sleeper".into()],
        true,
        &Actor::named("test"),
    )
    .await
    .unwrap();
    assert_eq!(wait_for_run(&store, "slow", &run).await, "success");
    assert_eq!(
        ti_state(&store, "slow", &run, "sleeper").await,
        ("success".into(), 2)
    );
    assert_eq!(
        xcom(&store, "slow", &run, "after", -1).await,
        json!("SECOND TIME QUICK")
    );
}

#[tokio::test]
async fn catchup_runs_three_missed_daily_slots_with_their_own_dates() {
    // Airflow 3's cron timetable triggers at each slot (today's midnight included), with the
    // logical date and the data interval start at the slot: d-2, d-1 and d.
    let start = (chrono::Utc::now() - chrono::Duration::days(2)).date_naive();
    let dag = format!(
        r#"
from datetime import datetime, timezone
from airflow.sdk import DAG, task

with DAG("daily", schedule="@daily", start_date={start},
         catchup=True, is_paused_upon_creation=False):
    @task
    def report(ds=None, data_interval_start=None):
        return f"{{ds}} {{data_interval_start.isoformat()}}"

    report()
"#,
        start = utc_midnight(start),
    );
    let (_db, store, _dir, _lite) = setup(&dag).await;
    let runs = wait_for_successes(&store, "daily", 3).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    for (i, run_id) in runs.iter().enumerate() {
        let day = start + chrono::Duration::days(i as i64);
        let expected = format!("{day} {day}T00:00:00+00:00");
        assert_eq!(
            xcom(&store, "daily", run_id, "report", -1).await,
            json!(expected)
        );
    }
}

#[tokio::test]
async fn a_data_interval_timetable_runs_each_whole_interval_and_infers_a_manual_run_s() {
    // CronDataIntervalTimetable("@daily"), catching up from three days ago: a run per day that
    // has ended, each due at its interval's end, with Airflow 2's dates (ds is the start).
    let start = (chrono::Utc::now() - chrono::Duration::days(3)).date_naive();
    let dag = format!(
        r#"
from datetime import datetime, timezone
from airflow.sdk import DAG, CronDataIntervalTimetable, task

with DAG("intervals", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date={start}, catchup=True,
         is_paused_upon_creation=False):
    @task
    def report(ds=None, data_interval_start=None, data_interval_end=None):
        return f"{{ds}} {{data_interval_start.isoformat()}} {{data_interval_end.isoformat()}}"

    report()
"#,
        start = utc_midnight(start),
    );
    let (_db, store, _dir, _lite) = setup(&dag).await;
    let runs = wait_for_successes(&store, "intervals", 3).await;
    assert_eq!(runs.len(), 3, "{runs:?}");
    for (i, run_id) in runs.iter().enumerate() {
        let day = start + chrono::Duration::days(i as i64);
        let next = day + chrono::Duration::days(1);
        assert_eq!(run_id, &format!("scheduled__{next}T00:00:00+00:00"));
        assert_eq!(
            xcom(&store, "intervals", run_id, "report", -1).await,
            json!(format!("{day} {day}T00:00:00+00:00 {next}T00:00:00+00:00"))
        );
    }
    // Triggered with a logical date, a run covers the last whole interval before it (its ds
    // is still its logical date's).
    let request = TriggerRequest {
        run_id: Some("by_hand".into()),
        logical_date: Some("2026-03-10T15:00:00Z".parse().unwrap()),
        conf: None,
        triggered_by: "test".into(),
    };
    control::trigger_dag(&store, "intervals", request, &Actor::named("test"))
        .await
        .unwrap();
    let by_hand = wait_for_successes(&store, "intervals", 4).await;
    assert!(by_hand.contains(&"by_hand".to_owned()), "{by_hand:?}");
    assert_eq!(
        xcom(&store, "intervals", "by_hand", "report", -1).await,
        json!("2026-03-10 2026-03-09T00:00:00+00:00 2026-03-10T00:00:00+00:00")
    );
}

#[tokio::test]
async fn assets_trigger_the_dags_scheduled_on_them_as_their_conditions_say_and_survive_a_restart() {
    // example_assets' shape: two producers, consumers on `a`, `a and b`, `a or b`, and one that
    // stays paused (Airflow queues nothing for a paused DAG).
    let dag = r#"
from airflow.sdk import DAG, Asset, task

a = Asset("s3://bucket/a", extra={"team": "x"})
b = Asset("s3://bucket/b")

for producer, outlet in [("produce_a", a), ("produce_b", b)]:
    with DAG(producer, schedule=None, is_paused_upon_creation=False):
        @task(outlets=[outlet])
        def produce():
            return "produced"
        produce()

for consumer, schedule, paused in [("on_a", [a], False), ("on_a_and_b", [a, b], False),
                                   ("on_a_or_b", a | b, False), ("paused_on_a", [a], True)]:
    with DAG(consumer, schedule=schedule, is_paused_upon_creation=paused):
        @task
        def consume():
            return "consumed"
        consume()
"#;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag);
    let lite = Lite::start(dir.path(), &url(&db));
    let produced_a = trigger(&store, "produce_a", json!({})).await;
    assert_eq!(
        wait_for_run(&store, "produce_a", &produced_a).await,
        "success"
    );
    let on_a = wait_for_successes(&store, "on_a", 1).await;
    assert!(on_a[0].starts_with("asset_triggered__"), "{on_a:?}");
    wait_for_successes(&store, "on_a_or_b", 1).await;
    // `a and b` waits for b: its queue holds a, through a restart of the control plane.
    let queued = |dag_id: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT a.name FROM asset_dag_run_queue q JOIN asset a ON a.id = q.asset_id \
                 WHERE q.target_dag_id = $1 ORDER BY a.name",
            )
            .bind(dag_id)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(queued("on_a_and_b").await, ["s3://bucket/a"]);
    assert_eq!(queued("paused_on_a").await, Vec::<String>::new());
    let (project_dir, url, port) = lite.kill_hard();
    let _lite = Lite::start_on(&project_dir, &url, port);
    let produced_b = trigger(&store, "produce_b", json!({})).await;
    assert_eq!(
        wait_for_run(&store, "produce_b", &produced_b).await,
        "success"
    );
    let on_a_and_b = wait_for_successes(&store, "on_a_and_b", 1).await;
    wait_for_successes(&store, "on_a_or_b", 2).await;
    assert_eq!(queued("on_a_and_b").await, Vec::<String>::new());

    // The run consumed both events, each recorded with its source, as Airflow's
    // `consumed_asset_events`; the paused DAG and the one-asset DAG ran no more.
    let consumed: Vec<(String, String, String, Value)> = sqlx::query_as(
        "SELECT a.name, e.source_dag_id, e.source_task_id, e.extra FROM asset_event_dag_run r \
         JOIN asset_event e ON e.id = r.event_id JOIN asset a ON a.id = e.asset_id \
         WHERE r.dag_id = 'on_a_and_b' AND r.run_id = $1 ORDER BY e.id",
    )
    .bind(&on_a_and_b[0])
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        consumed,
        [
            (
                "s3://bucket/a".into(),
                "produce_a".into(),
                "produce".into(),
                json!({})
            ),
            (
                "s3://bucket/b".into(),
                "produce_b".into(),
                "produce".into(),
                json!({})
            ),
        ]
    );
    let runs = |dag_id: &'static str| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM dag_run WHERE dag_id = $1")
                .bind(dag_id)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(runs("on_a").await, 1);
    assert_eq!(runs("paused_on_a").await, 0);
    let (run_type, triggered_by): (String, String) =
        sqlx::query_as("SELECT run_type, triggered_by FROM dag_run WHERE dag_id = 'on_a_and_b'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(
        (run_type.as_str(), triggered_by.as_str()),
        ("asset_triggered", "asset")
    );
}

#[tokio::test]
async fn a_tasks_asset_events_carry_their_extras_to_the_tasks_that_read_them() {
    // Airflow's three ways to annotate an outlet (`outlet_events[...].extra`, `yield
    // Metadata`, none), its two ways to read events (`inlet_events`, and the run's
    // `triggering_asset_events`), through the agent, the control plane and the log.
    let dag = r#"
from airflow.sdk import DAG, Asset, Metadata, task

orders = Asset("s3://lake/orders")
audit = Asset("s3://lake/audit")

with DAG("annotate", schedule=None, is_paused_upon_creation=False):
    @task(outlets=[orders])
    def by_context(*, outlet_events=None):
        outlet_events[orders].extra = {"rows": 3}

    @task(outlets=[orders, audit])
    def by_metadata():
        yield Metadata(orders, {"rows": 5})
        return "yielded"

    by_context() >> by_metadata()

with DAG("read", schedule=[audit], is_paused_upon_creation=False):
    @task(inlets=[orders])
    def read(*, inlet_events=None, triggering_asset_events=None):
        triggered = {asset.uri: [e.extra for e in events]
                     for asset, events in triggering_asset_events.items()}
        return {"inlet": [e.extra for e in inlet_events[orders]],
                "latest": inlet_events[orders][-1].source_task_id,
                "triggered": triggered}
    read()
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "annotate", json!({})).await;
    assert_eq!(wait_for_run(&store, "annotate", &run).await, "success");
    let read = wait_for_successes(&store, "read", 1).await;
    assert_eq!(
        xcom(&store, "read", &read[0], "read", -1).await,
        json!({
            "inlet": [{"rows": 3}, {"rows": 5}],
            "latest": "by_metadata",
            "triggered": {"s3://lake/audit": [{}]},
        })
    );
    assert_eq!(
        xcom(&store, "annotate", &run, "by_metadata", -1).await,
        json!("yielded")
    );
}

#[tokio::test]
async fn an_asset_added_through_an_alias_triggers_the_dags_on_the_alias_and_then_stands_for_it() {
    // example_asset_alias's shape: a task adds an event of an asset through its outlet alias;
    // the DAG scheduled on the alias and the one on the asset run, and from then on the alias
    // stands for the asset: a plain update of the asset triggers the alias's DAG too.
    let dag = r#"
from airflow.sdk import DAG, Asset, AssetAlias, task

daily = AssetAlias("daily")
day = Asset("s3://bucket/2026-12-05")

with DAG("through_alias", schedule=None, is_paused_upon_creation=False):
    @task(outlets=[daily])
    def produce(*, outlet_events=None):
        outlet_events[daily].add(day, extra={"day": 5})
    produce()

with DAG("directly", schedule=None, is_paused_upon_creation=False):
    @task(outlets=[day])
    def update():
        pass
    update()

with DAG("on_alias", schedule=[daily], is_paused_upon_creation=False):
    @task(inlets=[daily])
    def read(*, inlet_events=None, triggering_asset_events=None):
        return {"through": [e.extra for e in inlet_events[daily]],
                "triggered": sorted(asset.uri for asset in triggering_asset_events)}
    read()

with DAG("on_asset", schedule=[day], is_paused_upon_creation=False):
    @task
    def consume():
        pass
    consume()
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "through_alias", json!({})).await;
    assert_eq!(wait_for_run(&store, "through_alias", &run).await, "success");
    let on_alias = wait_for_successes(&store, "on_alias", 1).await;
    wait_for_successes(&store, "on_asset", 1).await;
    assert_eq!(
        xcom(&store, "on_alias", &on_alias[0], "read", -1).await,
        json!({"through": [{"day": 5}], "triggered": ["s3://bucket/2026-12-05"]})
    );
    let run = trigger(&store, "directly", json!({})).await;
    assert_eq!(wait_for_run(&store, "directly", &run).await, "success");
    let on_alias = wait_for_successes(&store, "on_alias", 2).await;
    wait_for_successes(&store, "on_asset", 2).await;
    // The second run read the same alias events: the direct update did not come through it.
    assert_eq!(
        xcom(&store, "on_alias", &on_alias[1], "read", -1).await,
        json!({"through": [{"day": 5}], "triggered": ["s3://bucket/2026-12-05"]})
    );
}

#[tokio::test]
async fn a_run_starts_with_every_task_instance_without_a_state() {
    // As in Airflow: the instances exist from the run's start, and the API finds one that is
    // not scheduled yet (it answered 404 before); a mapped task's placeholder gives way to its
    // instances.
    let dag = r#"
import time
from airflow.sdk import DAG, task

with DAG("upfront", schedule=None, is_paused_upon_creation=False):
    @task
    def slow():
        time.sleep(2)
        return [1, 2]

    @task
    def double(x):
        return 2 * x

    @task
    def last(values):
        return sum(values)

    last(double.expand(x=slow()))
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "upfront", json!({})).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let at_start = loop {
        let tis = tis(&store, "upfront", &run).await;
        if tis.iter().any(|t| t.0 == "slow" && t.2 == "running") {
            break tis;
        }
        assert!(Instant::now() < deadline, "slow never ran: {tis:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let waiting: Vec<_> = at_start.iter().filter(|t| t.0 != "slow").cloned().collect();
    assert_eq!(
        waiting,
        [
            ("double".to_owned(), -1, "none".to_owned(), 0),
            ("last".to_owned(), -1, "none".to_owned(), 0)
        ]
    );
    let found =
        leoflow_projector::read::task_instances::find(store.pool(), "upfront", &run, "last", -1)
            .await
            .unwrap()
            .expect("the API finds an instance that is not scheduled yet");
    assert_eq!((found.state, found.try_number), (None, 0));

    assert_eq!(wait_for_run(&store, "upfront", &run).await, "success");
    let done: Vec<_> = tis(&store, "upfront", &run)
        .await
        .into_iter()
        .map(|t| (t.0, t.1, t.2))
        .collect();
    assert_eq!(
        done,
        [
            ("double".to_owned(), 0, "success".to_owned()),
            ("double".to_owned(), 1, "success".to_owned()),
            ("last".to_owned(), -1, "success".to_owned()),
            ("slow".to_owned(), -1, "success".to_owned())
        ]
    );
}

/// Python for midnight UTC of `day`.
fn utc_midnight(day: chrono::NaiveDate) -> String {
    use chrono::Datelike;
    format!(
        "datetime({}, {}, {}, tzinfo=timezone.utc)",
        day.year(),
        day.month(),
        day.day()
    )
}

/// The run ids of `dag_id` once at least `count` of its runs succeeded (by logical date).
async fn wait_for_successes(store: &EventStore, dag_id: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let runs: Vec<(String, String)> = sqlx::query_as(
            // Asset-triggered runs have no logical date: then in the order they were queued.
            "SELECT run_id, state FROM dag_run WHERE dag_id = $1 ORDER BY logical_date, id",
        )
        .bind(dag_id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        if runs.len() >= count && runs.iter().all(|r| r.1 == "success") {
            return runs.into_iter().map(|r| r.0).collect();
        }
        assert!(Instant::now() < deadline, "runs did not finish: {runs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn forged_and_expired_agent_tokens_are_refused_and_recorded() {
    let dag = r#"
import time
from airflow.sdk import DAG, task

with DAG("tokens", schedule=None, is_paused_upon_creation=False):
    @task
    def quick():
        time.sleep(1.5)
        return 1

    quick()
"#;
    let (_db, store, _dir, lite) = setup(dag).await;
    let run = trigger(&store, "tokens", json!({})).await;
    // The token lives with the agent only: read it where it is, in the agent's environment.
    let token = agent_token("tokens").await;
    assert_eq!(wait_for_run(&store, "tokens", &run).await, "success");
    let recorded = store
        .read_stream(&format!("run:tokens/{run}"), 1)
        .await
        .unwrap();
    let dispatched = recorded
        .iter()
        .find(|e| e.event_type == "TaskDispatched")
        .unwrap();
    let payload = dispatched.payload.to_string();
    assert!(
        !payload.contains(&token) && payload.contains("attempt_digest"),
        "the log holds the token's digest only: {payload}"
    );
    let mut client = TaskAgentClient::connect(format!("http://127.0.0.1:{}", lite.grpc_port))
        .await
        .unwrap();
    let attempt = |token: String| AttemptRef {
        dag_id: "tokens".into(),
        run_id: run.clone(),
        task_id: "quick".into(),
        map_index: -1,
        try_number: 1,
        attempt_token: token,
    };
    let finish = |token: String| FinishRequest {
        attempt: Some(attempt(token)),
        outcome: 1,
        reason: "forged failure".into(),
        branch: vec![],
        proceed: None,
        deferral_json: None,
        reschedule_at: None,
        outlet_events_json: None,
        runner_lost: false,
    };
    let forged = client
        .finish(finish(uuid::Uuid::new_v4().to_string()))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), tonic::Code::PermissionDenied, "{forged}");
    let expired = client.finish(finish(token.clone())).await.unwrap_err();
    assert_eq!(expired.code(), tonic::Code::FailedPrecondition, "{expired}");
    assert!(expired.message().contains("is over"), "{expired}");
    let beat = client
        .heartbeat(attempt(token.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(beat.terminate);

    assert_eq!(ti_state(&store, "tokens", &run, "quick").await.0, "success");
    let rejected: Vec<String> = store
        .read_stream(&format!("rejected:tokens/{run}"), 1)
        .await
        .unwrap()
        .iter()
        .map(|e| match e.decode().unwrap() {
            Event::CommandRejected(r) => r.reason,
            other => panic!("{other:?}"),
        })
        .collect();
    // Only the real agent's late report is kept: a forged token appends nothing.
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert!(rejected[0].contains("is over"), "{rejected:?}");
}

#[tokio::test]
async fn calls_that_are_not_from_a_current_attempt_append_nothing_and_disclose_no_try() {
    let dag = r#"
from airflow.sdk import DAG, task

with DAG("strangers", schedule=None, is_paused_upon_creation=False):
    @task
    def quick():
        return 1

    quick()
"#;
    let (_db, store, _dir, lite) = setup(dag).await;
    let run = trigger(&store, "strangers", json!({})).await;
    assert_eq!(wait_for_run(&store, "strangers", &run).await, "success");
    let head = store.head().await.unwrap();
    let mut client = TaskAgentClient::connect(format!("http://127.0.0.1:{}", lite.grpc_port))
        .await
        .unwrap();
    let attempt = |run_id: &str, try_number: i32, token: &str| AttemptRef {
        dag_id: "strangers".into(),
        run_id: run_id.into(),
        task_id: "quick".into(),
        map_index: -1,
        try_number,
        attempt_token: token.into(),
    };
    let finish = |attempt: AttemptRef| FinishRequest {
        attempt: Some(attempt),
        outcome: 1,
        reason: "forged".into(),
        branch: vec![],
        proceed: None,
        deferral_json: None,
        reschedule_at: None,
        outlet_events_json: None,
        runner_lost: false,
    };
    let random = uuid::Uuid::new_v4().to_string();
    for call in [
        attempt("no-such-run", 1, &random),
        attempt(&run, 1, "not-a-uuid"),
        attempt(&run, 1, &random),
        attempt(&run, 7, &random),
    ] {
        let refused = client.finish(finish(call)).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
        assert!(
            !refused.message().contains("try"),
            "a refusal discloses the try: {refused}"
        );
    }
    for _ in 0..20 {
        let _ = client
            .push_x_com(PushXComRequest {
                attempt: Some(attempt(&run, 1, &random)),
                key: "k".into(),
                value_json: "1".into(),
            })
            .await;
    }
    assert_eq!(store.head().await.unwrap(), head, "the log did not grow");
}

#[tokio::test]
async fn a_control_plane_killed_mid_run_restarts_and_the_live_agent_finishes_its_report() {
    let dag = r#"
import os, time
from pathlib import Path
from airflow.sdk import DAG, task

with DAG("survivor", schedule=None, is_paused_upon_creation=False):
    @task
    def long():
        Path(os.environ["MARKER_DIR"], "started").write_text("1")
        while not Path(os.environ["MARKER_DIR"], "go").exists():
            time.sleep(0.05)
        return "finished after the restart"

    @task
    def next_one(v):
        return v + "!"

    next_one(long())
"#;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag);
    // Tasks see only an allow-listed environment plus their leoflow.yaml `env`.
    marker_dir_env(dir.path());
    let lite = Lite::start(dir.path(), &url(&db));
    let run = trigger(&store, "survivor", json!({})).await;
    task_started(&dir.path().join("started")).await;
    let (project_dir, url, port) = lite.kill_hard();
    // The task finishes while no control plane is up; its agent keeps retrying.
    std::fs::write(dir.path().join("go"), "").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _lite = Lite::start_on(&project_dir, &url, port);
    assert_eq!(wait_for_run(&store, "survivor", &run).await, "success");
    assert_eq!(
        ti_state(&store, "survivor", &run, "long").await,
        ("success".into(), 1)
    );
    assert_eq!(
        xcom(&store, "survivor", &run, "next_one", -1).await,
        json!("finished after the restart!")
    );
}

#[tokio::test]
async fn an_attempt_whose_agent_vanished_with_the_control_plane_is_failed_after_its_heartbeat_deadline_and_retried()
 {
    let dag = r#"
import os, time
from datetime import timedelta
from pathlib import Path
from airflow.sdk import DAG, task

with DAG("orphan", schedule=None, is_paused_upon_creation=False):
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def work(ti=None):
        if ti.try_number == 1:
            Path(os.environ["MARKER_DIR"], "orphan-started").write_text("1")
            time.sleep(120)
        return ti.try_number

    work()
"#;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag);
    // Tasks see only an allow-listed environment plus their leoflow.yaml `env`.
    marker_dir_env(dir.path());
    let lite = Lite::start(dir.path(), &url(&db));
    let run = trigger(&store, "orphan", json!({})).await;
    task_started(&dir.path().join("orphan-started")).await;
    let agent_pid = store
        .read_stream(&format!("run:orphan/{run}"), 1)
        .await
        .unwrap()
        .iter()
        .find_map(|e| match e.decode().unwrap() {
            Event::TaskStarted(s) => s.pid,
            _ => None,
        })
        .expect("the agent's pid");
    let (project_dir, url, port) = lite.kill_hard();
    // The agent (and with it its task) dies too, while nobody watches.
    // SAFETY: plain signal to a process this test's control plane started.
    unsafe { libc::kill(agent_pid, libc::SIGKILL) };
    let _lite = Lite::start_on(&project_dir, &url, port);
    assert_eq!(wait_for_run(&store, "orphan", &run).await, "success");
    assert_eq!(
        ti_state(&store, "orphan", &run, "work").await,
        ("success".into(), 2)
    );
    let reason = failure_reason(&store, "orphan", &run, "work").await;
    assert!(
        reason.contains("no sign of life from the task agent"),
        "{reason}"
    );
    assert!(
        log(&store, "orphan", &run, "work", 1)
            .await
            .contains("no sign of life")
    );
}

/// A small deterministic generator for the crash test's timing (seed printed on failure).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

#[tokio::test]
async fn kill_9_of_the_control_plane_during_20_runs_loses_nothing_and_replay_verifies() {
    let dag = r#"
from datetime import timedelta
from airflow.sdk import DAG, task

with DAG("crashy", schedule=None, is_paused_upon_creation=False, max_active_runs=20):
    @task
    def start(dag_run=None):
        return list(range(3))

    @task(retries=1, retry_delay=timedelta(seconds=0))
    def square(x, ti=None, dag_run=None):
        if dag_run.conf.get("fail") and x == 1:
            raise ValueError("this run is meant to fail")
        return x * x

    @task
    def add(values):
        return sum(values)

    @task
    def finish(total):
        return f"total {total}"

    finish(add(square.expand(x=start())))
"#;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("crash test seed {seed}");
    let mut random = Lcg(seed);
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag);
    let mut lite = Some(Lite::start(dir.path(), &url(&db)));
    let mut runs = Vec::new();
    for i in 0..20 {
        let fail = i % 5 == 4;
        runs.push((trigger(&store, "crashy", json!({"fail": fail})).await, fail));
    }
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(150 + random.next(600))).await;
        let (project_dir, url, port) = lite.take().unwrap().kill_hard();
        tokio::time::sleep(Duration::from_millis(random.next(300))).await;
        lite = Some(Lite::start_on(&project_dir, &url, port));
    }
    for (run, fail) in &runs {
        let expected = if *fail { "failed" } else { "success" };
        let state = wait_for_run(&store, "crashy", run).await;
        assert_eq!(
            state,
            expected,
            "run {run}, seed {seed}:\n{}",
            story(&store, "crashy", run).await
        );
        if !fail {
            assert_eq!(
                xcom(&store, "crashy", run, "finish", -1).await,
                json!("total 5")
            );
        }
    }
    // No task instance succeeded twice.
    let mut successes = std::collections::HashMap::new();
    for event in store.read_from(1, 1_000_000).await.unwrap() {
        if let Event::TaskSucceeded(e) = event.decode().unwrap() {
            *successes.entry(e.ti).or_insert(0) += 1;
        }
    }
    let twice: Vec<_> = successes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "succeeded twice: {twice:?} (seed {seed})");
    drop(lite);
    let verify = Command::new(env!("CARGO_BIN_EXE_leoflow"))
        .args(["events", "replay", "--verify"])
        .env("LEOFLOW_DATABASE_URL", url(&db))
        .env_remove("LEOFLOW_POSTGRES")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "replay --verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test]
async fn tasks_see_an_allow_listed_environment_never_the_control_planes() {
    let dag = r#"
import os
from airflow.sdk import DAG, task
from airflow.providers.standard.operators.bash import BashOperator

with DAG("environment", schedule=None, is_paused_upon_creation=False):
    @task
    def python_env():
        print("names:", " ".join(sorted(os.environ)))
        print("values:", " ".join(sorted(os.environ.values())))

    python_env() >> BashOperator(task_id="bash_env", bash_command="env")
"#;
    let (db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "environment", json!({})).await;
    assert_eq!(wait_for_run(&store, "environment", &run).await, "success");
    let database = url(&db);
    for task in ["python_env", "bash_env"] {
        let log = log(&store, "environment", &run, task, 1).await;
        for secret in [
            "LEOFLOW_DATABASE_URL",
            database.as_str(),
            "CONTROL_PLANE_SECRET",
            "hunter2",
            "LEOFLOW_ATTEMPT_TOKEN",
            "LEOFLOW_ADMIN_PASSWORD",
        ] {
            assert!(!log.contains(secret), "{task} saw {secret}: {log}");
        }
        assert!(log.contains("PATH"), "{task} has a PATH: {log}");
    }
}

#[tokio::test]
async fn an_xcom_over_the_limit_fails_its_task_naming_size_and_limit() {
    let dag = r#"
from airflow.sdk import DAG, task

with DAG("payloads", schedule=None, is_paused_upon_creation=False):
    @task
    def large():
        return "x" * 4_500_000  # over gRPC's default 4 MiB, under the limit

    @task(retries=0)
    def too_large():
        return "x" * 6_000_000

    large()
    too_large()
"#;
    let (_db, store, _dir, _lite) = setup(dag).await;
    let run = trigger(&store, "payloads", json!({})).await;
    assert_eq!(wait_for_run(&store, "payloads", &run).await, "failed");
    assert_eq!(
        ti_state(&store, "payloads", &run, "large").await.0,
        "success"
    );
    assert_eq!(
        ti_state(&store, "payloads", &run, "too_large").await.0,
        "failed"
    );
    let reason = failure_reason(&store, "payloads", &run, "too_large").await;
    assert!(
        reason.contains("6000002 bytes") && reason.contains("limit of 5000000 bytes"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_gap_in_the_log_ends_lite_non_zero_naming_it() {
    let dag = r#"
from airflow.sdk import DAG, task

with DAG("ledger", schedule=None, is_paused_upon_creation=False):
    @task
    def entry():
        return 1

    entry()
"#;
    let (db, store, dir, lite) = setup(dag).await;
    let run = trigger(&store, "ledger", json!({})).await;
    assert_eq!(wait_for_run(&store, "ledger", &run).await, "success");
    lite.stop();

    // An event lost from the middle of the log, as a bad restore or a hand edit would lose it:
    // the gap `StoreError::Corrupt` reports. Below the head, so the next Lite's event follower
    // (which starts past the head) never reads it; only the reactor, rebuilding its model from
    // position 1, does — what ends Lite is the reactor's failure and nothing else.
    let head = store.head().await.unwrap();
    let lost = head / 2;
    assert!(lost > 1, "the log is too short: {head}");
    sqlx::query("DELETE FROM events WHERE position = $1")
        .bind(lost)
        .execute(store.pool())
        .await
        .unwrap();

    let mut child = lite_command(dir.path(), &url(&db), free_port(), free_port())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start leoflow lite");
    let readers = [
        read_all(child.stdout.take().unwrap()),
        read_all(child.stderr.take().unwrap()),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            terminate(&mut child);
            panic!("Lite kept running on a log with a gap at {lost}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let [stdout, stderr] = readers.map(|reader| reader.join().unwrap());
    assert!(!status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(
        stderr.contains("the scheduler failed")
            && stderr.contains(&format!("expected position {lost} next; the log has a gap")),
        "Lite names the failure:\n{stderr}"
    );
    // The reactor fails within milliseconds of its election (it meets the gap rebuilding its
    // model), and Lite exits at once: its own API is gone before `/api/v2/monitor/health` could
    // be asked. What that route reads — the active scheduler's heartbeat — is what any other
    // process would answer from: gone, so `unhealthy`, not a fresh beat of a dead scheduler.
    let heartbeats = leoflow_scheduler::health::latest_heartbeats(store.pool())
        .await
        .unwrap();
    assert_eq!(
        heartbeats,
        Default::default(),
        "the dead scheduler left its heartbeat"
    );
}

/// All a child's output, read to its end on a thread of its own.
fn read_all(mut from: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = from.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[tokio::test]
async fn an_attempt_token_is_shown_nowhere_neither_terminal_tail_audit_api_nor_database() {
    let dag = r#"
import os, time
from pathlib import Path
from airflow.sdk import DAG, task

with DAG("secrecy", schedule=None, is_paused_upon_creation=False):
    @task
    def hold():
        print("holding until the test has looked")
        Path(os.environ["MARKER_DIR"], "started").write_text("1")
        while not Path(os.environ["MARKER_DIR"], "go").exists():
            time.sleep(0.05)
        return "held"

    hold()
"#;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let dir = project(dag);
    marker_dir_env(dir.path());
    // At debug level too: a user chasing a problem turns logging up, and sees no token then.
    let lite = Lite::start_with(dir.path(), &url(&db), free_port(), |command| {
        command.env("RUST_LOG", "warn,leoflow=debug,sqlx::query=error");
    });
    let run = trigger(&store, "secrecy", json!({})).await;
    // The token lives with the agent only: read it where it is, in the agent's environment.
    let token = agent_token("secrecy").await;
    let spellings = [token.clone(), token.replace('-', "")];
    let shows = |what: &str, text: &str| {
        for spelling in &spellings {
            assert!(
                !text.contains(spelling.as_str()),
                "{what} shows the attempt token {spelling}:\n{text}"
            );
        }
    };
    task_started(&dir.path().join("started")).await;

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", lite.http_port);
    let login: Value = http
        .post(format!("{base}/auth/token"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = login["access_token"].as_str().unwrap().to_owned();
    let ti = format!("/api/v2/dags/secrecy/dagRuns/{run}/taskInstances/hold");
    let routes = [
        format!("/api/v2/dags/secrecy/dagRuns/{run}"),
        format!("/api/v2/dags/secrecy/dagRuns/{run}/taskInstances"),
        "/api/v2/dags/~/dagRuns/~/taskInstances".to_owned(),
        ti.clone(),
        format!("{ti}/-1"),
        format!("{ti}/tries"),
        format!("{ti}/tries/1"),
        format!("{ti}/logs/1"),
        format!("{ti}/logs/1?full_content=true"),
        format!("{ti}/dependencies"),
        "/ui/grid/runs/secrecy".to_owned(),
        format!("/ui/grid/ti_summaries/secrecy?run_ids={run}"),
        "/api/v2/eventLogs?limit=1000".to_owned(),
        "/api/v2/eventLogs?event=TaskDispatched".to_owned(),
    ];
    let answers = || async {
        let mut all = String::new();
        for route in &routes {
            let response = http
                .get(format!("{base}{route}"))
                .bearer_auth(&bearer)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let body = response.text().await.unwrap();
            assert!(status.is_success(), "{route}: {status} {body}");
            shows(route, &body);
            all.push_str(&body);
        }
        all
    };
    // While the try runs (what a running try's answers hold) and after it ended.
    let running = answers().await;
    assert!(running.contains("running"), "{running}");
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(wait_for_run(&store, "secrecy", &run).await, "success");
    let ended = answers().await;
    assert!(
        ended.contains("TaskDispatched") && ended.contains("holding until the test has looked"),
        "the audit log and the task log were read: {ended}"
    );

    let database = url(&db);
    for format in [&[][..], &["--json"][..]] {
        let tail = Command::new(env!("CARGO_BIN_EXE_leoflow"))
            .args(["events", "tail", "--from", "1"])
            .args(format)
            .env("LEOFLOW_DATABASE_URL", &database)
            .env_remove("LEOFLOW_POSTGRES")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&tail.stdout),
            String::from_utf8_lossy(&tail.stderr),
        );
        assert!(
            tail.status.success() && stdout.contains("TaskDispatched"),
            "events tail {format:?}: {stdout}{stderr}"
        );
        shows(
            &format!("events tail {format:?}"),
            &format!("{stdout}{stderr}"),
        );
    }

    // At rest: the log as stored, and every other table of the database.
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_schema::text, table_name::text FROM information_schema.tables \
         WHERE table_type = 'BASE TABLE' \
           AND table_schema NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        tables.iter().any(|(_, table)| table == "events"),
        "{tables:?}"
    );
    for (schema, table) in &tables {
        for spelling in &spellings {
            let holding: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM \"{schema}\".\"{table}\" AS t \
                 WHERE strpos(t::text, $1) > 0"
            )))
            .bind(spelling)
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(holding, 0, "{schema}.{table} holds the attempt token");
        }
    }

    let terminal = lite.stop();
    assert!(
        terminal.contains("TaskDispatched"),
        "Lite's terminal was read: {terminal}"
    );
    shows("Lite's terminal", &terminal);
}
