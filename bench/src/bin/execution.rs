//! End-to-end execution with real processes: `leoflow lite` (reactor, agent service,
//! subprocess executor) runs no-op Python tasks through `leoflow agent` and the SDK's task
//! runner, on a durable managed Postgres.
//!
//! - chains of 20 and 40 tasks: wall time (run queued → run succeeded, from the log's
//!   timestamps) and the task-to-task gap (upstream `TaskSucceeded` → downstream `TaskStarted`,
//!   i.e. decision + agent start + registration), plus each task's own time (agent registered
//!   → succeeded: Python start, DAG file load, the call, the XCom and the report);
//! - fan-out of 100 and 1,000 mapped tasks plus a reduce: wall time;
//! - `assets_10`: a task updating an asset that 10 DAGs are scheduled on: from its asset event
//!   to each consumer's asset-triggered run queued, and to that run's success;
//! - `deferrals_10`: 10 tasks at once deferring to a trigger of the project that fires at once,
//!   run by the triggerer: from each try's `TaskDeferred` to its `TaskResumed` (the reactor
//!   starts the trigger, the triggerer builds and runs it, its event resumes the try), and the
//!   run's wall time;
//! - `dag_callback`: a one-task DAG with an `on_success_callback`: from its `RunSucceeded` to
//!   the `DagCallbackRan` the triggerer's run of the callback records (the reactor starts the
//!   callback's trigger, the triggerer runs the DAG file again and calls it);
//! - with `--login-storm N`: each DAG again while N clients, each from its own loopback
//!   address (so the per-client limiter lets each verify its 5 attempts), post wrong passwords
//!   to `/auth/token` until the run ends (10 attempts each at most).
//!
//! ```sh
//! cargo build --release -p leoflow-cli
//! LEOFLOW_PYTHON=.venv/bin/python cargo run --release -p leoflow-bench --bin execution \
//!     [--login-storm N] [DAG_ID...]
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use leoflow_bench::{BenchDatabase, Percentiles, leoflow_binary, machine_description};
use leoflow_core::commands::TriggerRequest;
use leoflow_events::{Actor, Event, EventStore, TaskInstanceKey};
use leoflow_projector::ReadModels;
use leoflow_scheduler::control;

const REPEATS: usize = 3;

fn dag_file() -> String {
    let mut source = String::from(
        "from airflow.sdk import DAG, task\n\n\
         @task\ndef noop():\n    return None\n\n\
         @task\ndef item(x):\n    return x\n\n\
         @task\ndef reduce(values):\n    return len(values)\n\n",
    );
    for n in [20, 40] {
        source += &format!(
            "with DAG(\"chain_{n}\", schedule=None, is_paused_upon_creation=False):\n    \
             previous = None\n    \
             for i in range({n}):\n        \
             current = noop.override(task_id=f\"t{{i:02d}}\")()\n        \
             if previous is not None:\n            previous >> current\n        \
             previous = current\n\n"
        );
    }
    for n in [100, 1000] {
        source += &format!(
            "with DAG(\"fan_out_{n}\", schedule=None, is_paused_upon_creation=False, \
             max_active_tasks={n}):\n    reduce(item.expand(x=list(range({n}))))\n\n"
        );
    }
    source += &format!(
        "from airflow.sdk import Asset\n\
         updated = Asset(\"bench://updated\")\n\
         with DAG(\"asset_producer\", schedule=None, is_paused_upon_creation=False):\n    \
         noop.override(task_id=\"update\", outlets=[updated])()\n\n\
         for i in range({ASSET_CONSUMERS}):\n    \
         with DAG(f\"asset_consumer_{{i}}\", schedule=[updated], is_paused_upon_creation=False):\n        \
         noop()\n\n"
    );
    source += &format!(
        "from airflow.sdk import BaseOperator\n\
         from bench_triggers import Now\n\
         class Defers(BaseOperator):\n    \
         def execute(self, context):\n        \
         self.defer(trigger=Now(), method_name=\"done\")\n    \
         def done(self, context, event=None):\n        \
         return None\n\n\
         with DAG(\"deferrals_{DEFERRALS}\", schedule=None, is_paused_upon_creation=False, \
         max_active_tasks={DEFERRALS}):\n    \
         for i in range({DEFERRALS}):\n        \
         Defers(task_id=f\"d{{i}}\")\n\n"
    );
    source += "def called(context):\n    pass\n\n\
         with DAG(\"dag_callback\", schedule=None, is_paused_upon_creation=False, \
         on_success_callback=called):\n    \
         noop()\n";
    source
}

/// The trigger the `deferrals_10` tasks defer to: a module of the project, as a user's trigger.
const BENCH_TRIGGERS: &str = "from airflow.triggers.base import BaseTrigger, TriggerEvent\n\n\
class Now(BaseTrigger):\n    \
def serialize(self):\n        \
return (\"bench_triggers.Now\", {})\n\n    \
async def run(self):\n        \
yield TriggerEvent(\"now\")\n";

/// How many tasks the `deferrals_10` scenario defers at once.
const DEFERRALS: usize = 10;

/// How many DAGs the `assets_10` scenario schedules on the produced asset.
const ASSET_CONSUMERS: usize = 10;

/// One run of `asset_producer`: for each consumer, the time from the asset event to its
/// asset-triggered run's `RunQueued` and to its `RunSucceeded`.
async fn asset_triggered_once(store: &EventStore) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let request = TriggerRequest {
        run_id: None,
        logical_date: None,
        conf: None,
        triggered_by: "bench".into(),
    };
    let producer = Actor::named("bench");
    let queued = control::trigger_dag(store, "asset_producer", request, &producer).await?;
    let mut subscription = store.subscribe(queued.position + 1).await?;
    let mut updated_at = None;
    let mut consumers: HashMap<String, DateTime<Utc>> = HashMap::new();
    let (mut to_queued, mut to_success) = (Vec::new(), Vec::new());
    while to_success.len() < ASSET_CONSUMERS {
        let event = tokio::time::timeout(Duration::from_secs(120), subscription.next())
            .await
            .context("the consumers did not finish within 2 minutes")??;
        match event.decode()? {
            Event::AssetEventRecorded(_) => updated_at = Some(event.recorded_at),
            Event::RunQueued(e) if e.dag_id.starts_with("asset_consumer_") => {
                let updated = updated_at.context("a consumer queued before the update")?;
                to_queued.push(between(updated, event.recorded_at));
                consumers.insert(event.stream.clone(), updated);
            }
            Event::RunSucceeded(_) => {
                if let Some(updated) = consumers.get(&event.stream) {
                    to_success.push(between(*updated, event.recorded_at));
                }
            }
            Event::RunFailed(e) => bail!("run {} of {} failed", e.run_id, e.dag_id),
            _ => {}
        }
    }
    Ok((to_queued, to_success))
}

/// Runs the asset scenario [`REPEATS`] times and prints the percentiles over every consumer.
async fn measure_assets(store: &EventStore) -> Result<()> {
    let (mut to_queued, mut to_success) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        let (queued, succeeded) = asset_triggered_once(store).await?;
        to_queued.extend(queued);
        to_success.extend(succeeded);
    }
    let queued = Percentiles::of(&mut to_queued);
    let succeeded = Percentiles::of(&mut to_success);
    println!(
        "assets_{ASSET_CONSUMERS}    asset event → consumer run queued p50 {} p95 {}; \
         → consumer run succeeded p50 {} p95 {}",
        ms(queued.p50),
        ms(queued.p95),
        ms(succeeded.p50),
        ms(succeeded.p95)
    );
    Ok(())
}

struct Timings {
    wall: Duration,
    gaps: Vec<Duration>,
    task_times: Vec<Duration>,
    /// Each deferred try's `TaskDeferred` → `TaskResumed`; the run's end → its DAG callback's
    /// `DagCallbackRan`.
    waits: Vec<Duration>,
}

fn between(from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
    (to - from).to_std().unwrap_or_default()
}

async fn run_once(store: &EventStore, dag_id: &str) -> Result<Timings> {
    let request = TriggerRequest {
        run_id: None,
        logical_date: None,
        conf: None,
        triggered_by: "bench".into(),
    };
    let queued = control::trigger_dag(store, dag_id, request, &Actor::named("bench")).await?;
    let Event::RunQueued(run) = queued.decode()? else {
        bail!("unexpected event")
    };
    let stream = format!("run:{dag_id}/{}", run.run_id);
    let mut subscription = store.subscribe(queued.position + 1).await?;
    let mut ended = None;
    let mut callback = None;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(600), subscription.next())
            .await
            .context("the run did not finish within 10 minutes")??;
        match event.decode()? {
            Event::RunSucceeded(e) if e.run_id == run.run_id && event.stream == stream => {
                ended = Some(event.recorded_at);
            }
            Event::RunFailed(e) if e.run_id == run.run_id => {
                bail!("run {} of {dag_id} failed", run.run_id)
            }
            Event::DagCallbackRan(e) if e.run_id == run.run_id => {
                if let Some(error) = e.error {
                    bail!("the callback of {dag_id} failed: {error}");
                }
                callback = Some(event.recorded_at);
            }
            _ => {}
        }
        // A DAG with a callback is done once the callback ran.
        if ended.is_some() && (dag_id != "dag_callback" || callback.is_some()) {
            break;
        }
    }
    let events = store.read_stream(&stream, 1).await?;
    let mut succeeded: HashMap<TaskInstanceKey, DateTime<Utc>> = HashMap::new();
    let mut started: HashMap<TaskInstanceKey, DateTime<Utc>> = HashMap::new();
    let mut deferred: HashMap<TaskInstanceKey, DateTime<Utc>> = HashMap::new();
    let mut waits: Vec<Duration> = ended
        .zip(callback)
        .map(|(ended, ran)| between(ended, ran))
        .into_iter()
        .collect();
    let (mut first, mut last) = (None, None);
    for event in &events {
        match event.decode()? {
            Event::TaskDeferred(e) => {
                deferred.insert(e.ti, event.recorded_at);
            }
            Event::TaskResumed(e) => {
                let at = deferred.get(&e.ti).context("resumed before deferred")?;
                waits.push(between(*at, event.recorded_at));
            }
            Event::RunQueued(_) => first = Some(event.recorded_at),
            Event::RunSucceeded(_) => last = Some(event.recorded_at),
            Event::TaskStarted(e) => {
                started.insert(e.ti, event.recorded_at);
            }
            Event::TaskSucceeded(e) => {
                succeeded.insert(e.ti, event.recorded_at);
            }
            _ => {}
        }
    }
    let mut gaps = Vec::new();
    let mut task_times = Vec::new();
    if dag_id.starts_with("chain") {
        let key = |i: usize| TaskInstanceKey::new(dag_id, &run.run_id, &format!("t{i:02}"));
        let n: usize = dag_id.trim_start_matches("chain_").parse()?;
        for i in 0..n {
            task_times.push(between(started[&key(i)], succeeded[&key(i)]));
            if i > 0 {
                gaps.push(between(succeeded[&key(i - 1)], started[&key(i)]));
            }
        }
    }
    Ok(Timings {
        wall: between(
            first.context("no RunQueued")?,
            last.context("no RunSucceeded")?,
        ),
        gaps,
        task_times,
        waits,
    })
}

/// Wrong logins from `clients` loopback addresses (127.0.1.1 …) until `stop` turns true,
/// at most 10 per client; returns (answered 401, answered 429).
async fn login_storm(
    base: String,
    clients: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, usize) {
    let mut attempts = tokio::task::JoinSet::new();
    for i in 0..clients {
        let address = std::net::Ipv4Addr::new(127, 0, 1 + (i / 250) as u8, 1 + (i % 250) as u8);
        let client = reqwest::Client::builder()
            .local_address(std::net::IpAddr::V4(address))
            .build()
            .expect("a client");
        let (url, stop) = (format!("{base}/auth/token"), stop.clone());
        attempts.spawn(async move {
            let (mut refused, mut limited) = (0, 0);
            for _ in 0..10 {
                if *stop.borrow() {
                    break;
                }
                let body = serde_json::json!({"username": "admin", "password": "wrong"});
                match client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                {
                    Ok(401) => refused += 1,
                    Ok(429) => limited += 1,
                    _ => {}
                }
            }
            (refused, limited)
        });
    }
    let mut totals = (0, 0);
    while let Some(Ok((refused, limited))) = attempts.join_next().await {
        totals.0 += refused;
        totals.1 += limited;
    }
    totals
}

/// Runs `dag_id` [`REPEATS`] times, one at a time, and prints the medians.
async fn measure(store: &EventStore, dag_id: &str, label: &str) -> Result<()> {
    let mut walls = Vec::new();
    let mut gaps = Vec::new();
    let mut task_times = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..REPEATS {
        let t = run_once(store, dag_id).await?;
        walls.push(t.wall);
        gaps.extend(t.gaps);
        task_times.extend(t.task_times);
        waits.extend(t.waits);
    }
    walls.sort();
    let wall = walls[walls.len() / 2];
    let range = format!("(min {}, max {})", ms(walls[0]), ms(walls[walls.len() - 1]));
    if !waits.is_empty() {
        let wait = Percentiles::of(&mut waits);
        println!(
            "{dag_id:<13}{label} wall {} {range}; {} p50 {} p95 {}",
            ms(wall),
            if dag_id == "dag_callback" {
                "run's end → its callback ran"
            } else {
                "deferred → resumed by the triggerer"
            },
            ms(wait.p50),
            ms(wait.p95)
        );
    } else if gaps.is_empty() {
        println!("{dag_id:<13}{label} wall {} {range}", ms(wall));
    } else {
        let gap = Percentiles::of(&mut gaps);
        let task = Percentiles::of(&mut task_times);
        println!(
            "{dag_id:<13}{label} wall {} {range}; task-to-task gap p50 {} p95 {}; task itself p50 {}",
            ms(wall),
            ms(gap.p50),
            ms(gap.p95),
            ms(task.p50)
        );
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let binary = leoflow_binary()?;
    // `execution [DAG_ID...]` measures only those DAGs.
    let mut dags: Vec<String> = std::env::args().skip(1).collect();
    let storm = match dags.iter().position(|a| a == "--login-storm") {
        Some(at) => {
            let clients = dags
                .get(at + 1)
                .context("--login-storm N")?
                .parse::<usize>()?;
            dags.drain(at..at + 2);
            Some(clients)
        }
        None => None,
    };
    if dags.is_empty() {
        dags = ["chain_20", "chain_40", "fan_out_100", "fan_out_1000"]
            .map(String::from)
            .to_vec();
    }
    let database = BenchDatabase::start().await?;
    // `leoflow lite` migrates it: the binary under test may be another version than this program
    // (LEOFLOW_BIN), as when comparing before and after a change.
    let pool = database.unmigrated("bench_execution").await?;
    let store = EventStore::new(pool).with_projection(Arc::new(ReadModels));
    let project =
        std::env::temp_dir().join(format!("leoflow-bench-project-{}", std::process::id()));
    std::fs::create_dir_all(&project)?;
    std::fs::write(project.join("dag.py"), dag_file())?;
    std::fs::write(project.join("bench_triggers.py"), BENCH_TRIGGERS)?;

    // Stopped however the benchmark ends: a Lite left running would hold the database.
    struct LiteChild(std::process::Child);
    impl Drop for LiteChild {
        fn drop(&mut self) {
            // SAFETY: plain signal to our own child.
            unsafe {
                libc::kill(self.0.id() as i32, libc::SIGTERM);
            }
            let _ = self.0.wait();
        }
    }
    let mut lite = Command::new(&binary)
        .arg("lite")
        .arg(&project)
        .args(["--grpc-port", "19099", "--port", "18088", "--no-ui"])
        .env("LEOFLOW_DATABASE_URL", database.url("bench_execution"))
        .stdout(Stdio::piped())
        .spawn()
        .map(LiteChild)
        .context("starting leoflow lite")?;
    let stdout = lite.0.stdout.take().expect("piped");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("Following the event log") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(120))
        .context("leoflow lite did not start")?;

    println!("execution benchmark — {}", machine_description());
    println!("{REPEATS} runs of each DAG, one at a time; medians of the runs' figures\n");
    let result = async {
        for dag_id in &dags {
            let dag_id = dag_id.as_str();
            if dag_id == "assets_10" {
                measure_assets(&store).await?;
                continue;
            }
            measure(&store, dag_id, "").await?;
            if let Some(clients) = storm {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let storm = tokio::spawn(login_storm("http://127.0.0.1:18088".into(), clients, stopped));
                measure(&store, dag_id, &format!(" under a storm of {clients} clients")).await?;
                let _ = stop.send(true);
                let (refused, limited) = storm.await?;
                println!("  the storm: {refused} wrong passwords verified (401), {limited} refused unverified (429)");
            }
        }
        anyhow::Ok(())
    }
    .await;
    drop(lite);
    let _ = std::fs::remove_dir_all(&project);
    database.stop()?;
    result
}
