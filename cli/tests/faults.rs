//! Fault injection against a real `leoflow lite` on its managed Postgres, with `fsync` on (the
//! cluster a Lite home gets, not the tests' fast one): nothing lost, nothing doubled.
//!
//! - Postgres killed with SIGKILL while tasks run: Lite starts it again, every run completes.
//! - Postgres restarted (`pg_ctl restart -m fast`) while tasks run: the same.
//! - The leader's lock backend terminated while a second control plane on the same database
//!   waits: one of them leads again, every run completes.
//! - A task agent killed mid-try while the control plane runs: its try fails, its task with
//!   it, and the retry succeeds.
//!
//! Each checks the log afterwards: every (task instance, try) started and succeeded at most
//! once, and `leoflow events replay --verify` finds the read models equal to the log. (The
//! control plane killed mid-run is in `execution.rs`.)

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leoflow_events::{Event, EventStore};
use leoflow_postgres::{ClusterSettings, ManagedCluster, PgBuild};
use leoflow_projector::ReadModels;
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

mod common;

use common::lite::{Client, Lite, LiteProject, PASSWORD, leoflow, output, text};
use common::nothing_doubled;

/// Runs of the DAG each test drives.
const RUNS: usize = 10;

/// Three tasks in a chain, the first two long enough to be running when the fault comes.
const STEADY: &str = r#"
import time
from airflow.sdk import DAG, task

with DAG("steady", schedule=None, is_paused_upon_creation=False, max_active_runs=10):
    @task
    def first():
        time.sleep(1.5)
        return 1

    @task
    def second(x):
        time.sleep(1.5)
        return x + 1

    @task
    def third(x):
        return x * 10

    third(second(first()))
"#;

/// What the fault tests add to a Lite project: its managed cluster and a pool on it.
type Setup = LiteProject;

impl LiteProject {
    /// The home's managed cluster, as Lite made it.
    fn cluster(&self) -> ManagedCluster {
        ManagedCluster::new(self.home.join("postgres"), ClusterSettings::durable()).unwrap()
    }

    /// A pool on Lite's database that outlives server restarts (each checkout is tested).
    async fn pool(&self) -> PgPool {
        PgPoolOptions::new()
            .max_connections(2)
            .connect_with(self.cluster().connect_options("leoflow_dev"))
            .await
            .unwrap()
    }
}

/// Triggers `RUNS` runs of `dag_id` through the API; returns their ids.
async fn trigger_runs(api: &Client, dag_id: &str) -> Vec<String> {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let (status, run) = api
            .call(
                Method::POST,
                &format!("/api/v2/dags/{dag_id}/dagRuns"),
                Some(json!({"logical_date": null})),
            )
            .await;
        assert_eq!(status, 200, "{run}");
        runs.push(run["dag_run_id"].as_str().unwrap().to_owned());
    }
    runs
}

/// Polls `query` (one number) until `done` holds; errors (the server away) count as not yet.
async fn until_count(pool: &PgPool, query: &str, done: impl Fn(i64) -> bool) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last: Option<Result<i64, String>>;
    loop {
        match sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(query.to_owned()))
            .fetch_one(pool)
            .await
        {
            Ok(n) if done(n) => return n,
            Ok(n) => last = Some(Ok(n)),
            Err(e) => last = Some(Err(e.to_string())),
        }
        assert!(
            Instant::now() < deadline,
            "{query} never got there: {last:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until some tries are running: the moment to inject a fault.
async fn tasks_running(pool: &PgPool) {
    until_count(
        pool,
        "SELECT count(*) FROM task_instance WHERE state = 'running'",
        |n| n >= 2,
    )
    .await;
}

/// Waits for every run of `dag_id` to end; returns (run_id, state) of each.
async fn runs_ended(pool: &PgPool, dag_id: &str) -> Vec<(String, String)> {
    let unfinished = format!(
        "SELECT count(*) FROM dag_run WHERE dag_id = '{dag_id}' \
         AND state NOT IN ('success', 'failed')"
    );
    until_count(pool, &unfinished, |n| n == 0).await;
    sqlx::query_as("SELECT run_id, state FROM dag_run WHERE dag_id = $1 ORDER BY run_id")
        .bind(dag_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// `leoflow events replay --verify` on the home's database.
fn replay_verifies(home: &Path) {
    let verify = output(&mut leoflow(home, &["events", "replay", "--verify"]));
    assert!(
        verify.status.success(),
        "replay --verify: {}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
}

/// After a fault: all `runs` succeeded with the right result, exactly `RUNS` runs exist, no try
/// doubled, the read models replay equal, and Lite stops cleanly (it never gave up).
async fn everything_completed(setup: &Setup, lite: &mut Lite, pool: &PgPool, runs: &[String]) {
    let ended = runs_ended(pool, "steady").await;
    assert_eq!(ended.len(), RUNS, "{ended:?}");
    for (run_id, state) in &ended {
        assert_eq!(state, "success", "run {run_id}: {ended:?}");
    }
    let api = Client::login(&lite.base).await;
    for run_id in runs {
        let xcom = api
            .get(&format!(
                "/api/v2/dags/steady/dagRuns/{run_id}/taskInstances/third/xcomEntries/return_value"
            ))
            .await;
        assert_eq!(xcom["value"], 20, "{xcom}");
    }
    let tries = nothing_doubled(pool).await;
    assert_eq!(
        tries.len(),
        3 * RUNS,
        "one try per task instance: {tries:?}"
    );
    replay_verifies(&setup.home);
    assert!(lite.signal(libc::SIGTERM).success(), "Lite stops cleanly");
}

/// The fault suite's Postgres is durable: a fault test on a cluster without fsync proves
/// little about a crash.
async fn fsync_is_on(pool: &PgPool) {
    let fsync: String = sqlx::query_scalar("SHOW fsync")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fsync, "on");
}

/// `pg_ctl` of the cluster's build, run as the account the server runs as.
fn pg_ctl(cluster: &ManagedCluster) -> Command {
    let program = PgBuild::locate().unwrap().tool("pg_ctl");
    match cluster.runs_as() {
        Some(user) => {
            let mut command = Command::new("runuser");
            command.args(["-u", user, "--"]).arg(program);
            command
        }
        None => Command::new(program),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_with_sigkill_during_10_runs_is_restarted_and_every_run_completes() {
    let setup = Setup::new("pgkill", STEADY);
    let mut lite = setup.lite();
    let pool = setup.pool().await;
    fsync_is_on(&pool).await;
    let api = Client::login(&lite.base).await;
    let runs = trigger_runs(&api, "steady").await;
    tasks_running(&pool).await;

    let pid_file = setup.cluster().data_dir().join("postmaster.pid");
    let postmaster: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    // SAFETY: a plain signal to the server this test's Lite started.
    assert_eq!(unsafe { libc::kill(postmaster, libc::SIGKILL) }, 0);
    lite.wait_line("postgres  the managed Postgres stopped without shutting down");
    lite.wait_line("postgres  restarted the managed Postgres");

    everything_completed(&setup, &mut lite, &pool, &runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_with_pg_ctl_during_10_runs_and_every_run_completes() {
    let setup = Setup::new("pgrestart", STEADY);
    let mut lite = setup.lite();
    let pool = setup.pool().await;
    fsync_is_on(&pool).await;
    let api = Client::login(&lite.base).await;
    let runs = trigger_runs(&api, "steady").await;
    tasks_running(&pool).await;

    let cluster = setup.cluster();
    let restart = pg_ctl(&cluster)
        .args(["restart", "-m", "fast", "-w", "-t", "60", "-D"])
        .arg(cluster.data_dir())
        // Without -l the server would write to (and hold open) pg_ctl's output.
        .arg("-l")
        .arg(cluster.log_file())
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "{}{}",
        text(&restart.stdout),
        text(&restart.stderr)
    );

    everything_completed(&setup, &mut lite, &pool, &runs).await;
}

/// The pid of the backend holding the scheduler's leader lock, if any.
async fn lock_holder(pool: &PgPool) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND ((classid::bigint << 32) | objid::bigint) = $1",
    )
    .bind(leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY)
    .fetch_optional(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leaders_lock_backend_terminated_while_a_second_control_plane_waits() {
    let setup = Setup::new("leader", STEADY);
    let mut first = setup.lite();
    let pool = setup.pool().await;
    fsync_is_on(&pool).await;
    // A second control plane on the same database: its own home, the first one's cluster.
    let url = format!(
        "postgres://leoflow@localhost/leoflow_dev?host={}",
        setup.cluster().socket_dir().display()
    );
    let mut command = leoflow(
        &setup.scratch.join("second-home"),
        &["lite", setup.project.to_str().unwrap()],
    );
    command
        .env("LEOFLOW_POSTGRES", "url")
        .env("LEOFLOW_DATABASE_URL", &url)
        .env("LEOFLOW_ADMIN_PASSWORD", PASSWORD);
    let mut second = Lite::start(command);
    let leader = lock_holder(&pool).await.expect("one of them leads");

    let api = Client::login(&first.base).await;
    let runs = trigger_runs(&api, "steady").await;
    tasks_running(&pool).await;
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(leader)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(terminated);
    // Someone leads again, on a new lock connection: the old leader noticed at its next beat.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match lock_holder(&pool).await {
            Some(pid) if pid != leader => break,
            _ => {}
        }
        assert!(Instant::now() < deadline, "nobody took the lead again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let ended = runs_ended(&pool, "steady").await;
    for (run_id, state) in &ended {
        assert_eq!(state, "success", "run {run_id}: {ended:?}");
    }
    assert_eq!(ended.len(), RUNS);
    for run_id in &runs {
        let xcom = api
            .get(&format!(
                "/api/v2/dags/steady/dagRuns/{run_id}/taskInstances/third/xcomEntries/return_value"
            ))
            .await;
        assert_eq!(xcom["value"], 20, "{xcom}");
    }
    nothing_doubled(&pool).await;
    let beating: i64 = sqlx::query_scalar("SELECT count(*) FROM scheduler_heartbeat")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(beating, 1, "exactly one leader records heartbeats");
    replay_verifies(&setup.home);
    assert!(second.signal(libc::SIGTERM).success(), "neither gave up");
    assert!(first.signal(libc::SIGTERM).success(), "neither gave up");
}

/// A task whose first try records its runner's pid and then hangs; the retry succeeds.
const FRAGILE: &str = r#"
import os, time
from datetime import timedelta
from pathlib import Path
from airflow.sdk import DAG, task

with DAG("fragile", schedule=None, is_paused_upon_creation=False):
    @task(retries=1, retry_delay=timedelta(seconds=0))
    def work(ti=None):
        if ti.try_number == 1:
            Path(os.environ["MARKER"]).write_text(str(os.getpid()))
            time.sleep(300)
        return ti.try_number

    @task
    def after(n):
        return n * 100

    after(work())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_try_fails_its_try_takes_its_task_along_and_the_retry_succeeds() {
    let setup = Setup::new("agentkill", FRAGILE);
    let marker = setup.scratch.join("runner-pid");
    std::fs::write(
        setup.project.join("leoflow.yaml"),
        format!(
            "defaults:\n  env: {{MARKER: {:?}}}\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    let mut lite = setup.lite();
    let pool = setup.pool().await;
    let api = Client::login(&lite.base).await;
    let (status, run) = api
        .call(
            Method::POST,
            "/api/v2/dags/fragile/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let runner: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the first try never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));
    let agent = store
        .read_stream(&format!("run:fragile/{run_id}"), 1)
        .await
        .unwrap()
        .iter()
        .find_map(|e| match e.decode().unwrap() {
            Event::TaskStarted(s) => s.pid,
            _ => None,
        })
        .expect("the agent's pid");
    // SAFETY: a plain signal to an agent this test's Lite started.
    assert_eq!(unsafe { libc::kill(agent, libc::SIGKILL) }, 0);

    let run = api
        .until(&format!("/api/v2/dags/fragile/dagRuns/{run_id}"), |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    assert_eq!(run["state"], "success", "{run}");
    let work = api
        .get(&format!(
            "/api/v2/dags/fragile/dagRuns/{run_id}/taskInstances/work"
        ))
        .await;
    assert_eq!(work["try_number"], 2, "{work}");
    let after = api
        .get(&format!(
            "/api/v2/dags/fragile/dagRuns/{run_id}/taskInstances/after/xcomEntries/return_value"
        ))
        .await;
    assert_eq!(after["value"], 200, "the retry's result went on: {after}");
    // The first try's failure names the agent's end.
    let reason = store
        .read_stream(&format!("run:fragile/{run_id}"), 1)
        .await
        .unwrap()
        .iter()
        .find_map(|e| match e.decode().unwrap() {
            Event::TaskUpForRetry(f) if f.try_number == 1 => Some(f.reason),
            _ => None,
        })
        .expect("the first try was failed and retried");
    assert!(reason.contains("SIGKILL"), "{reason}");
    // No task outlives its agent: the first try's runner is gone too.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Path::new(&format!("/proc/{runner}")).exists()
        && !std::fs::read_to_string(format!("/proc/{runner}/stat"))
            .unwrap_or_default()
            .contains(") Z")
    {
        assert!(
            Instant::now() < deadline,
            "the killed agent's runner {runner} still runs"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tries = nothing_doubled(&pool).await;
    let succeeded: u32 = tries.values().map(|(_, s)| s).sum();
    assert_eq!(succeeded, 2, "work's second try and after: {tries:?}");
    replay_verifies(&setup.home);
    assert!(lite.signal(libc::SIGTERM).success());
}
