//! `leoflow server` replicated, under the faults production brings: two scheduler-role and two
//! API-role processes on one Postgres (over TCP, fsync on) and a real `redis-server`, tasks run
//! by the subprocess executor (allowed for tests by `--allow-unsandboxed`), agents dialling a
//! forwarder that stands in for the scheduler Service.
//!
//! - The leader killed with SIGKILL during 10 runs of a 20-task chain: the standby leads within
//!   5 s, every run succeeds, no try starts or succeeds twice, the read models replay equal.
//! - The leader's database connections cut (`pg_terminate_backend`): it steps down and the
//!   standby leads; nothing doubled.
//! - SIGTERM of the leader: leadership handed over in under 2 s, no try lost.
//! - Postgres restarted at the same address mid-run: the replicas reconnect, nothing is lost.
//! - Redis killed and restarted mid-run: every run completes; readiness says degraded, then
//!   ready again. Airflow's metrics (and Leoflow's) counted every try and run.
//! - Any API replica serves any request: a session from one is valid on the other; logging
//!   out on one ends the session on both; five failed logins in all (whichever replica took
//!   them) block the client on both, and without Redis each replica still limits.
//! - A replica refuses to start, naming the fix, without its keys, its password, Redis or
//!   Postgres, or on a schema older or newer than its own; it starts nothing half-way.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use sqlx::PgPool;

mod common;

use common::lite::Client;
use common::server::{Deployment, PASSWORD, Replica, elected};
use common::{free_port, nothing_doubled};

/// Runs each test drives.
const RUNS: usize = 10;

/// Tasks in the chain.
const CHAIN: usize = 20;

/// A chain of 20 tasks, each adding one to its upstream's value: the last returns 20.
const CHAIN_DAG: &str = r#"
import time
from airflow.sdk import DAG, task

@task
def step(x=0):
    time.sleep(0.05)
    return x + 1

with DAG("chain", schedule=None, is_paused_upon_creation=False, max_active_runs=10):
    value = step.override(task_id="t00")()
    for i in range(1, 20):
        value = step.override(task_id=f"t{i:02d}")(value)
"#;

/// The deployment every test starts: two scheduler replicas, two API replicas. (Fields drop in
/// order: the replicas before the datastores they use.)
struct Cluster {
    schedulers: Vec<Replica>,
    apis: Vec<Replica>,
    pool: PgPool,
    deployment: Deployment,
}

impl Cluster {
    async fn start(what: &str) -> Self {
        let deployment = Deployment::start(what).await;
        deployment.register("chain", CHAIN_DAG);
        let schedulers = vec![
            deployment.replica("scheduler"),
            deployment.replica("scheduler"),
        ];
        let apis = vec![deployment.replica("api"), deployment.replica("api")];
        let pool = deployment.pool().await;
        Self {
            deployment,
            schedulers,
            apis,
            pool,
        }
    }

    /// The leader's process id and epoch, once one leads.
    async fn leader(&self) -> (i32, i64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(leader) = elected(&self.pool).await {
                return leader;
            }
            assert!(Instant::now() < deadline, "no scheduler was elected");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for an election after `epoch` by another process than `old`; returns how long
    /// after `since` it was recorded, and the new leader's pid.
    async fn new_leader(&self, old: i32, epoch: i64, since: Instant) -> (Duration, i32) {
        let deadline = since + Duration::from_secs(30);
        loop {
            if let Some((pid, new_epoch)) = elected(&self.pool).await
                && new_epoch > epoch
            {
                assert_ne!(pid, old, "the replica that lost its lead led again first");
                return (since.elapsed(), pid);
            }
            assert!(Instant::now() < deadline, "nobody took the lead");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn scheduler(&mut self, pid: i32) -> &mut Replica {
        self.schedulers
            .iter_mut()
            .find(|replica| replica.pid() == pid)
            .expect("the leader is one of the scheduler replicas")
    }

    /// Logs in on the first API replica; the client's session is used on both.
    async fn clients(&self) -> (Client, Client) {
        let first = Client::login_as(&self.apis[0].base, PASSWORD).await;
        let second = Client {
            base: self.apis[1].base.clone(),
            token: first.token.clone(),
            http: reqwest::Client::new(),
        };
        (first, second)
    }

    /// Triggers `RUNS` runs, alternating API replicas; returns their ids.
    async fn trigger_runs(&self) -> Vec<String> {
        let (first, second) = self.clients().await;
        let mut runs = Vec::new();
        for i in 0..RUNS {
            let api = if i % 2 == 0 { &first } else { &second };
            let (status, run) = api
                .call(
                    Method::POST,
                    "/api/v2/dags/chain/dagRuns",
                    Some(json!({"logical_date": null})),
                )
                .await;
            assert_eq!(status, 200, "{run}");
            runs.push(run["dag_run_id"].as_str().unwrap().to_owned());
        }
        runs
    }

    /// Waits until `n` task instances succeeded: the runs are under way.
    async fn succeeded_at_least(&self, n: i64) {
        until(&self.pool, |pool| async move {
            let count: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM task_instance WHERE dag_id = 'chain' AND state = 'success'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (count >= n).then_some(())
        })
        .await;
    }

    /// Every run succeeded with 20 as the last task's result (read through the second API
    /// replica), no try started or succeeded twice, the read models replay equal.
    async fn everything_completed(&self, runs: &[String]) {
        let ended = until(&self.pool, |pool| async move {
            let rows: Vec<(String, String)> = sqlx::query_as(
                "SELECT run_id, state FROM dag_run WHERE dag_id = 'chain' ORDER BY run_id",
            )
            .fetch_all(&pool)
            .await
            .ok()?;
            rows.iter()
                .all(|(_, state)| state == "success" || state == "failed")
                .then_some(rows)
        })
        .await;
        assert_eq!(ended.len(), RUNS, "{ended:?}");
        for (run_id, state) in &ended {
            assert_eq!(state, "success", "run {run_id}: {ended:?}");
        }
        let (_, second) = self.clients().await;
        for run_id in runs {
            let xcom = second
                .get(&format!(
                    "/api/v2/dags/chain/dagRuns/{run_id}/taskInstances/t19/xcomEntries/return_value"
                ))
                .await;
            assert_eq!(xcom["value"], CHAIN, "{xcom}");
        }
        let tries = nothing_doubled(&self.pool).await;
        assert_eq!(tries.len(), RUNS * CHAIN, "one try per task instance");
        self.deployment.replay_verifies();
    }
}

/// Polls `probe` until it answers (three minutes at most).
async fn until<T, F, Fut>(pool: &PgPool, probe: F) -> T
where
    F: Fn(PgPool) -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(answer) = probe(pool.clone()).await {
            return answer;
        }
        assert!(Instant::now() < deadline, "never got there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn readyz(replica: &Replica) -> (u16, Value) {
    let response = reqwest::get(format!("{}/readyz", replica.metrics))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_with_sigkill_during_10_runs_of_a_20_task_chain_fails_over_within_5_s() {
    let mut cluster = Cluster::start("ha-kill").await;
    let (leader, epoch) = cluster.leader().await;
    let runs = cluster.trigger_runs().await;
    cluster.succeeded_at_least(30).await;

    let killed = Instant::now();
    cluster.scheduler(leader).signal(libc::SIGKILL);
    let (took, new_leader) = cluster.new_leader(leader, epoch, killed).await;
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    eprintln!("failover after SIGKILL: {took:?} (new leader {new_leader})");

    cluster.everything_completed(&runs).await;
    for replica in cluster.schedulers.iter_mut().chain(cluster.apis.iter_mut()) {
        if replica.pid() != leader {
            assert!(
                replica.signal(libc::SIGTERM).success(),
                "{} replica",
                replica.role
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_database_connections_are_cut_steps_down_and_the_standby_leads() {
    let cluster = Cluster::start("ha-cut").await;
    let (leader, epoch) = cluster.leader().await;
    let runs = cluster.trigger_runs().await;
    cluster.succeeded_at_least(30).await;

    let cut = Instant::now();
    let terminated: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(format!("leoflow-server scheduler pid {leader}"))
    .fetch_all(&cluster.pool)
    .await
    .unwrap();
    // A connection the leader's pool closed between the listing and the call is not a backend
    // any more (false); the others are cut.
    assert!(terminated.iter().any(|t| *t), "{terminated:?}");
    let (took, _) = cluster.new_leader(leader, epoch, cut).await;
    assert!(took < Duration::from_secs(5), "failover took {took:?}");

    cluster.everything_completed(&runs).await;
    let beating: i64 = sqlx::query_scalar("SELECT count(*) FROM scheduler_heartbeat")
        .fetch_one(&cluster.pool)
        .await
        .unwrap();
    assert_eq!(beating, 1, "exactly one leader records heartbeats");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_leadership_over_in_under_2_s_and_loses_no_try() {
    let mut cluster = Cluster::start("ha-term").await;
    let (leader, epoch) = cluster.leader().await;
    let runs = cluster.trigger_runs().await;
    cluster.succeeded_at_least(30).await;

    let asked = Instant::now();
    // SAFETY: a plain signal to a child of this test.
    unsafe { libc::kill(leader, libc::SIGTERM) };
    let (took, _) = cluster.new_leader(leader, epoch, asked).await;
    assert!(took < Duration::from_secs(2), "handover took {took:?}");
    let status = cluster.scheduler(leader).child.wait().unwrap();
    assert!(status.success(), "the old leader stops cleanly: {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "it stopped within the grace period"
    );

    cluster.everything_completed(&runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_at_the_same_address_mid_run_loses_nothing() {
    let cluster = Cluster::start("ha-pg").await;
    let (_, epoch) = cluster.leader().await;
    let runs = cluster.trigger_runs().await;
    cluster.succeeded_at_least(30).await;

    let postgres = cluster.deployment.cluster.clone();
    tokio::task::spawn_blocking(move || {
        postgres.stop().unwrap();
        postgres.start().unwrap();
    })
    .await
    .unwrap();

    cluster.everything_completed(&runs).await;
    let (_, new_epoch) = cluster.leader().await;
    assert!(
        new_epoch > epoch,
        "the scheduler led again after the restart"
    );
}

/// The keys of Redis at `url` matching `pattern`.
async fn redis_keys(url: &str, pattern: &str) -> Vec<String> {
    let client = redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// `POST /auth/token` on `base`: the status.
async fn login_status(base: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/auth/token"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Logs in with wrong passwords, alternating `bases`, until refused with 429; returns how
/// many attempts were verified (answered 401) before.
async fn wrong_logins_until_refused(bases: &[&str]) -> usize {
    for attempt in 0..20 {
        match login_status(bases[attempt % bases.len()], "wrong-password").await {
            401 => {}
            429 => return attempt,
            other => panic!("a wrong password answered {other}"),
        }
    }
    panic!("20 wrong passwords and still no limit")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_mid_run_degrades_and_every_run_completes() {
    let mut cluster = Cluster::start("ha-redis").await;
    let (leader, _) = cluster.leader().await;
    let before = scrape(cluster.scheduler(leader)).await;
    let (status, body) = readyz(&cluster.apis[0]).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    let runs = cluster.trigger_runs().await;
    cluster.succeeded_at_least(30).await;

    cluster.deployment.redis.kill();
    for replica in cluster.apis.iter().chain(cluster.schedulers.iter()) {
        let (status, body) = readyz(replica).await;
        assert_eq!(status, 200, "losing Redis only degrades: {body}");
        assert_eq!(body["status"], "degraded", "{body}");
    }
    cluster.deployment.redis.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = readyz(&cluster.apis[1]).await;
        if body["status"] == "ready" {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    cluster.everything_completed(&runs).await;
    let (first, _) = cluster.clients().await;
    let config = first.get("/ui/config").await;
    assert_eq!(config["instance_name"], "Leoflow", "{config}");
    metrics_moved(&cluster, leader, before).await;
}

/// The metrics a platform team watches, scraped from the replicas after the runs.
async fn scrape(replica: &Replica) -> String {
    reqwest::get(format!("{}/metrics", replica.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// After `RUNS` runs of the chain under one leader: Airflow's metrics counted every try and
/// run, the pools and the executor are idle again, the standby says it does not lead, and the
/// API replicas timed the requests by route.
async fn metrics_moved(cluster: &Cluster, leader: i32, before: String) {
    assert!(
        !before.contains("airflow_ti_successes_total 200"),
        "{before}"
    );
    let standby = cluster
        .schedulers
        .iter()
        .find(|replica| replica.pid() != leader)
        .unwrap();
    let leading = cluster
        .schedulers
        .iter()
        .find(|replica| replica.pid() == leader)
        .unwrap();
    let text = scrape(leading).await;
    let tries = RUNS * CHAIN;
    for expected in [
        format!("airflow_ti_successes_total {tries}"),
        format!("airflow_ti_start_total{{dag_id=\"chain\"}} {tries}"),
        "airflow_ti_failures_total 0".to_owned(),
        format!(
            "airflow_dagrun_duration_seconds_count{{dag_id=\"chain\",state=\"success\"}} {RUNS}"
        ),
        format!("airflow_dagrun_schedule_delay_seconds_count{{dag_id=\"chain\"}} {RUNS}"),
        "airflow_pool_open_slots{pool=\"default_pool\"} 128".to_owned(),
        "airflow_pool_running_slots{pool=\"default_pool\"} 0".to_owned(),
        "airflow_executor_running_tasks 0".to_owned(),
        "airflow_executor_queued_tasks 0".to_owned(),
        "leoflow_scheduler_leader 1".to_owned(),
        "leoflow_scheduler_runs_held 0".to_owned(),
        "leoflow_postgres_pool_connections{state=\"idle\"}".to_owned(),
        "leoflow_readiness_check_up{check=\"redis\"} 1".to_owned(),
        "leoflow_readiness_check_up{check=\"schema\"} 1".to_owned(),
        "leoflow_event_append_batch_events_count".to_owned(),
        "leoflow_agents_connected ".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected} missing in\n{text}");
    }
    assert!(
        text.lines()
            .filter(|line| line.starts_with("leoflow_projection_lag_events{"))
            .all(|line| line.ends_with(" 0")),
        "read models are applied in the append: {text}"
    );
    assert!(text.contains("leoflow_projection_lag_events{"), "{text}");
    let appends = metric_value(&text, "leoflow_event_append_duration_seconds_count");
    assert!(appends >= (RUNS * CHAIN) as f64, "{text}");
    let heartbeats = metric_value(&text, "airflow_scheduler_heartbeat_total");
    assert!(heartbeats >= 1.0, "{text}");
    let decisions = metric_value(&text, "leoflow_reactor_decision_latency_seconds_count");
    assert!(decisions >= RUNS as f64, "passes over live events: {text}");
    assert!(scrape(standby).await.contains("leoflow_scheduler_leader 0"));
    let api = scrape(&cluster.apis[0]).await;
    let route = "leoflow_http_request_duration_seconds_count{route=\"/api/v2/dags/{dag_id}/dagRuns\",method=\"POST\",status=\"200\"}";
    assert!(metric_value(&api, route) >= 1.0, "{api}");
}

/// The value of the sample named exactly `name` (labels included) in a scrape.
fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_the_login_limit_hold_across_api_replicas_and_without_redis() {
    let mut cluster = Cluster::start("ha-sessions").await;
    let (first, second) = cluster.clients().await;
    let bases = [cluster.apis[0].base.as_str(), cluster.apis[1].base.as_str()];

    // Logging out on one replica ends the session on the other; other sessions stay.
    let leaving = Client::login_as(bases[1], PASSWORD).await;
    let (status, _) = leaving.call(Method::GET, "/api/v2/dags", None).await;
    assert_eq!(status, 200);
    let logout = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}/api/v2/auth/logout", bases[0]))
        .bearer_auth(&leaving.token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 307);
    // The other replica trusts its last check of the session for a second at most.
    let refused_by = Instant::now() + Duration::from_secs(2);
    loop {
        let (status, _) = leaving.call(Method::GET, "/api/v2/dags", None).await;
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < refused_by,
            "never revoked on the other replica"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, _) = second.call(Method::GET, "/api/v2/dags", None).await;
    assert_eq!(status, 200, "only that session ended");
    let revoked = redis_keys(&cluster.deployment.redis.url(), "leoflow:revoked-session:*").await;
    assert_eq!(
        revoked.len(),
        1,
        "kept in Redis, for every replica: {revoked:?}"
    );

    // Five failed logins in all, whichever replica took them; then both refuse.
    assert_eq!(wrong_logins_until_refused(&bases).await, 5);
    assert_eq!(login_status(bases[0], PASSWORD).await, 429);
    assert_eq!(login_status(bases[1], PASSWORD).await, 429);

    // Without Redis no bypass opens: each replica limits logins on its own (the client gets
    // the limit again, per replica, not unlimited attempts); valid sessions keep working.
    cluster.deployment.redis.kill();
    assert_eq!(wrong_logins_until_refused(&bases[..1]).await, 5);
    let (status, _) = first.call(Method::GET, "/api/v2/dags", None).await;
    assert_eq!(status, 200, "valid sessions keep working without Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_refuses_to_start_without_what_it_needs_and_names_the_fix() {
    let deployment = Deployment::start("ha-refuse").await;
    let pool = deployment.pool().await;

    let error = deployment.refusal("api", |c| {
        c.env_remove("LEOFLOW_KEYS_FILE");
    });
    assert!(error.contains("leoflow server keys generate"), "{error}");

    let exposed = deployment.scratch.join("exposed-keys.json");
    std::fs::copy(&deployment.keys_file, &exposed).unwrap();
    std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
    let error = deployment.refusal("scheduler", |c| {
        c.env("LEOFLOW_KEYS_FILE", &exposed);
    });
    assert!(error.contains("chmod 600"), "{error}");

    let short = deployment.scratch.join("short-password");
    std::fs::write(&short, "abc\n").unwrap();
    let error = deployment.refusal("api", |c| {
        c.env("LEOFLOW_ADMIN_PASSWORD_FILE", &short);
    });
    assert!(error.contains("shorter than 8 characters"), "{error}");

    let error = deployment.refusal("all", |c| {
        c.env(
            "LEOFLOW_REDIS_URL",
            format!("redis://127.0.0.1:{}", free_port()),
        );
    });
    assert!(error.contains("unreachable"), "{error}");
    assert!(error.contains("Redis at redis://127.0.0.1:"), "{error}");

    let error = deployment.refusal("all", |c| {
        let url = format!("postgres://leoflow:pw@127.0.0.1:{}/leoflow", free_port());
        c.env("LEOFLOW_DATABASE_URL", url);
    });
    assert!(
        error.contains("cannot connect to Postgres at postgres://leoflow:***@"),
        "{error}"
    );

    let error = deployment.refusal("api", |c| {
        c.env("LEOFLOW_UI_DIR", deployment.scratch.join("no-ui-here"));
    });
    assert!(error.contains("holds no complete Airflow UI"), "{error}");

    // The default executor is Pro's pod executor, which needs the task image.
    let error = deployment.refusal("scheduler", |c| {
        c.env_remove("LEOFLOW_EXECUTOR");
    });
    assert!(error.contains("kubernetes.image: missing"), "{error}");

    let error = deployment.refusal("scheduler", |c| {
        c.env_remove("LEOFLOW_ALLOW_UNSANDBOXED");
    });
    assert!(error.contains("allow_unsandboxed"), "{error}");

    deployment.cluster.ensure_database("empty").await.unwrap();
    let (server, _) = deployment.database_url.rsplit_once('/').unwrap();
    let empty = format!("{server}/empty");
    let error = deployment.refusal("api", |c| {
        c.env("LEOFLOW_DATABASE_URL", &empty);
    });
    assert!(error.contains("no Leoflow schema"), "{error}");
    assert!(error.contains("leoflow db migrate"), "{error}");

    let latest = leoflow_postgres::migrate::latest_version();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from the future', true, '\\x00', 1)",
    )
    .bind(latest + 1)
    .execute(&pool)
    .await
    .unwrap();
    let error = deployment.refusal("scheduler", |_| {});
    assert!(error.contains("newer than this server"), "{error}");

    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(events, 0, "no replica that refused appended anything");
}

/// A client as a Service's users have one: each request to the next replica in turn, retried
/// on another (three tries in all) when a replica refuses the connection, drops it or answers
/// 503. Returns the requests that succeeded and the ones that failed even so.
async fn steady_load(
    bases: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    token: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> (usize, Vec<String>) {
    let http = reqwest::Client::new();
    let (mut ok, mut failed) = (0, Vec::new());
    let mut turn = 0usize;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let mut last = String::new();
        let mut done = false;
        for _ in 0..3 {
            let base = {
                let bases = bases.lock().unwrap();
                turn += 1;
                bases[turn % bases.len()].clone()
            };
            let sent = http
                .get(format!("{base}/api/v2/dags?limit=5"))
                .bearer_auth(&token)
                .send()
                .await;
            match sent {
                Ok(response) if response.status() == 200 => {
                    done = true;
                    break;
                }
                Ok(response) if response.status() == 503 => last = "503".into(),
                Ok(response) => {
                    last = format!("{} from {base}", response.status());
                    break;
                }
                Err(error) => last = format!("{error} from {base}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if done {
            ok += 1;
        } else {
            failed.push(last);
        }
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_the_api_replicas_fails_no_request_a_retrying_client_sends() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut cluster = Cluster::start("ha-roll").await;
    let (first, _) = cluster.clients().await;
    let bases = Arc::new(Mutex::new(
        cluster
            .apis
            .iter()
            .map(|api| api.base.clone())
            .collect::<Vec<_>>(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(steady_load(
                bases.clone(),
                first.token.clone(),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // One replica at a time, as a Deployment's rolling update: the new one serves before the
    // old one is asked to stop; the old one leaves the Service once it has exited.
    for _ in 0..2 {
        let fresh = cluster.deployment.replica("api");
        bases.lock().unwrap().push(fresh.base.clone());
        let mut old = cluster.apis.remove(0);
        let stopped = Instant::now();
        assert!(old.signal(libc::SIGTERM).success(), "a clean stop");
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "within the grace period"
        );
        bases.lock().unwrap().retain(|base| *base != old.base);
        cluster.apis.push(fresh);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for client in clients {
        let (n, failures) = client.await.unwrap();
        ok += n;
        failed.extend(failures);
    }
    assert!(
        failed.is_empty(),
        "{} failed after retries: {failed:?}",
        failed.len()
    );
    assert!(ok > 100, "only {ok} requests were made");
    eprintln!("rolling restart: {ok} requests, none failed");
    // The new replicas take the old session: the keys are shared.
    let (status, _) = Client {
        base: cluster.apis[1].base.clone(),
        token: first.token.clone(),
        http: reqwest::Client::new(),
    }
    .call(Method::GET, "/api/v2/dags", None)
    .await;
    assert_eq!(status, 200);
}

/// A large XCom and six tasks reading it.
const FAN_OUT_DAG: &str = r#"
from airflow.sdk import DAG, task

@task
def produce():
    return "x" * 200_000

@task
def consume(blob, i):
    assert len(blob) == 200_000, len(blob)
    return i

with DAG("fan_out", schedule=None, is_paused_upon_creation=False):
    big = produce()
    for i in range(6):
        consume.override(task_id=f"c{i}")(big, i)
"#;

/// `leoflow_xcom_cache_<what>_total` of a scrape.
fn cache_count(scrape: &str, what: &str) -> u64 {
    let name = format!("leoflow_xcom_cache_{what}_total ");
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(&name))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name}in:\n{scrape}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_xcoms_are_shared_through_redis_and_read_from_postgres_without_it() {
    let mut deployment = Deployment::start("ha-xcom-cache").await;
    deployment.register("fan_out", FAN_OUT_DAG);
    let replica = deployment.replica("all");
    let client = Client::login_as(&replica.base, PASSWORD).await;
    // The configuration names the executor the replica runs (not Pro's default).
    let config = client.get("/api/v2/config").await;
    let core = config["sections"]
        .as_array()
        .and_then(|sections| sections.iter().find(|s| s["name"] == "core"))
        .expect("a core section");
    let executor = core["options"]
        .as_array()
        .and_then(|options| options.iter().find(|o| o["key"] == "executor"));
    assert_eq!(
        executor.map(|o| &o["value"]),
        Some(&json!("SubprocessExecutor"))
    );
    let run = client.run_to_success("fan_out").await;

    // Every reader got the value; it is in Redis under its content's hash.
    let hashes: Vec<String> = sqlx::query_scalar(
        "SELECT value_hash FROM xcom WHERE dag_id = 'fan_out' AND task_id = 'produce'",
    )
    .fetch_all(&deployment.pool().await)
    .await
    .unwrap();
    assert_eq!(hashes.len(), 1);
    let cached = redis_keys(&deployment.redis.url(), "leoflow:xcom-blob:*").await;
    assert_eq!(cached, [format!("leoflow:xcom-blob:{}", hashes[0])]);
    let scraped = scrape(&replica).await;
    let (hits, misses) = (
        cache_count(&scraped, "hits"),
        cache_count(&scraped, "misses"),
    );
    assert_eq!(hits + misses, 6, "one read per consumer:\n{scraped}");
    assert!(misses >= 1, "the first reader read Postgres");

    // Another reader (the API) finds it in Redis.
    let entry = format!(
        "/api/v2/dags/fan_out/dagRuns/{run}/taskInstances/produce/xcomEntries/return_value"
    );
    let value = client.get(&entry).await;
    assert_eq!(value["value"].as_str().map(str::len), Some(200_000));
    assert_eq!(cache_count(&scrape(&replica).await, "hits"), hits + 1);

    // Without Redis the values come from Postgres: nothing is lost, a new run succeeds.
    deployment.redis.kill();
    let value = client.get(&entry).await;
    assert_eq!(value["value"].as_str().map(str::len), Some(200_000));
    client.run_to_success("fan_out").await;
    deployment.redis.restart();
}

/// `leoflow tokens …` on the deployment's database: its stdout.
fn tokens(deployment: &Deployment, args: &[&str]) -> std::process::Output {
    let mut all = vec!["tokens"];
    all.extend_from_slice(args);
    deployment.leoflow(&all).output().unwrap()
}

/// `GET /api/v2/dags` on `base` with `token`: the status.
async fn dags_status(base: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{base}/api/v2/dags"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_works_on_every_replica_and_the_official_client_until_revoked() {
    let deployment = Deployment::start("ha-api-tokens").await;
    let apis = [deployment.replica("api"), deployment.replica("api")];

    let created = tokens(
        &deployment,
        &["create", "--role", "Admin", "--output", "json"],
    );
    assert!(created.status.success(), "{created:?}");
    let created: Value = serde_json::from_slice(&created.stdout).unwrap();
    let (id, token) = (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    );
    for api in &apis {
        assert_eq!(dags_status(&api.base, &token).await, 200);
    }
    // Airflow's own client, as a CI job would use it.
    let client = std::process::Command::new(
        std::env::var("LEOFLOW_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .args([
        "-c",
        "import sys, airflow_client.client as a; from airflow_client.client.api import dag_api; \
         c = a.ApiClient(a.Configuration(host=sys.argv[1], access_token=sys.argv[2])); \
         print(dag_api.DAGApi(c).get_dags().total_entries)",
        &apis[1].base,
        &token,
    ])
    .output()
    .unwrap();
    assert!(client.status.success(), "{client:?}");

    // A wrong secret and an expired token fail; an unknown role is refused at the start.
    let forged = format!("{}x", &token[..token.len() - 1]);
    assert_eq!(dags_status(&apis[0].base, &forged).await, 401);
    let superuser = tokens(&deployment, &["create", "--role", "Superuser"]);
    assert!(!superuser.status.success());
    assert!(
        String::from_utf8_lossy(&superuser.stderr).contains("Admin, Op, User, Viewer and Public"),
        "{superuser:?}"
    );
    // A Viewer's token reads DAGs, but not Variables, and triggers nothing.
    let viewer = tokens(
        &deployment,
        &["create", "--role", "Viewer", "--output", "json"],
    );
    let viewer: Value = serde_json::from_slice(&viewer.stdout).unwrap();
    let viewer = viewer["token"].as_str().unwrap().to_owned();
    assert_eq!(dags_status(&apis[1].base, &viewer).await, 200);
    let http = reqwest::Client::new();
    let variables = http
        .get(format!("{}/api/v2/variables", apis[1].base))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(variables.status(), 403);
    let trigger = http
        .post(format!("{}/api/v2/dags/chain/dagRuns", apis[1].base))
        .bearer_auth(&viewer)
        .json(&json!({"logical_date": null}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 403);
    let brief = tokens(
        &deployment,
        &[
            "create",
            "--role",
            "Admin",
            "--expires-in",
            "1s",
            "--output",
            "json",
        ],
    );
    let brief: Value = serde_json::from_slice(&brief.stdout).unwrap();
    let brief = brief["token"].as_str().unwrap().to_owned();
    assert_eq!(dags_status(&apis[0].base, &brief).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(dags_status(&apis[0].base, &brief).await, 401);

    // The log and the read models keep the digest, never the secret; the list shows no secret.
    let pool = deployment.pool().await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE type = 'ApiTokenIssued' \
         UNION ALL SELECT row_to_json(t)::text FROM api_token t",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // `lf_<id>_<secret>`: the secret is URL-safe base64, which may itself hold a `_`.
    let secret = token.splitn(3, '_').nth(2).unwrap();
    assert!(secret.len() > 40, "{token}");
    assert_eq!(stored.len(), 6);
    assert!(
        stored.iter().all(|text| !text.contains(secret)),
        "{stored:?}"
    );
    let listed = tokens(&deployment, &["list", "--output", "json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(3), "{listed}");
    assert!(!listed.to_string().contains(secret));

    // Revoked through one database, refused by both replicas at once.
    let revoked = tokens(&deployment, &["revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    for api in &apis {
        assert_eq!(dags_status(&api.base, &token).await, 401);
    }
    let listed = tokens(&deployment, &["list", "--output", "json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "revoked").count(),
        1,
        "{listed}"
    );
    assert_eq!(
        states.iter().filter(|s| **s == "expired").count(),
        1,
        "{listed}"
    );
    deployment.replay_verifies();
}
