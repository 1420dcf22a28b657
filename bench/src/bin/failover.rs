//! Failover time of Pro's replicated scheduler: the leader killed with SIGKILL while work flows
//! → the standby's `SchedulerElected` recorded, and → the new leader's first decision recorded
//! (the first event after that election whose actor is `scheduler`).
//!
//! The deployment is real (`leoflow_bench::deployment`): two `leoflow server --role scheduler`
//! replicas (subprocess executor) and one `--role api` replica on one Postgres over TCP (fsync
//! on) and a `redis-server`. A client triggers a run of a 3-task chain of short Python tasks
//! every 200 ms through the API throughout. Each of the 10 trials lets work flow under the
//! leader for 2 to 2.5 s (a random phase of the standby's 500 ms poll), kills it (its pid is
//! in the newest `SchedulerElected`), times the takeover from the log's own timestamps
//! (`recorded_at`, Postgres's clock on this machine), then starts a fresh scheduler replica so
//! that two run again. At the end it waits for every run to finish and says how they ended.
//!
//! ```sh
//! cargo build --release -p leoflow-cli -p leoflow-bench
//! LEOFLOW_BIN=target/release/leoflow LEOFLOW_PYTHON=.venv/bin/python target/release/failover
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use leoflow_bench::deployment::{self, Deployment, Replica};
use leoflow_bench::machine_description;
use leoflow_events::sample::Rng;
use sqlx::PgPool;

/// Leaders killed.
const TRIALS: usize = 10;

/// How often the client triggers a run.
const TRIGGER_EVERY: Duration = Duration::from_millis(200);

/// A chain of three short tasks; many runs may be active at once.
const WORK_DAG: &str = r#"
import time
from airflow.sdk import DAG, task

@task
def step(x=0):
    time.sleep(0.02)
    return x + 1

with DAG("work", schedule=None, is_paused_upon_creation=False, max_active_runs=64):
    step.override(task_id="c")(step.override(task_id="b")(step.override(task_id="a")()))
"#;

/// An election in the log.
#[derive(Debug, Clone, Copy)]
struct Election {
    pid: i32,
    epoch: i64,
    position: i64,
    at: DateTime<Utc>,
}

/// One trial's figures, from the kill.
struct Trial {
    election: Duration,
    decision: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let deployment = Deployment::start("failover").await?;
    deployment.register("work", WORK_DAG)?;
    let mut schedulers = vec![
        deployment.replica("scheduler")?,
        deployment.replica("scheduler")?,
    ];
    let api = deployment.replica("api")?;
    let pool = deployment.pool().await?;
    let http = reqwest::Client::new();
    let token = deployment::login(&http, &api.base).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(trigger_steadily(
        http.clone(),
        api.base.clone(),
        token,
        stop.clone(),
    ));
    let mut trials = Vec::new();
    let mut rng = Rng::new(14);
    for n in 1..=TRIALS {
        // 2 to 2.5 s of work under each leader: kills at any point of the standby's 500 ms
        // poll (a fixed 2 s is a multiple of it and measured the same phase every time).
        let settle = Duration::from_millis(2000 + rng.below(500));
        let trial = kill_the_leader(&deployment, &mut schedulers, &pool, settle).await?;
        eprintln!(
            "trial {n}: election after {:.0} ms, first decision after {:.0} ms",
            ms(trial.election),
            ms(trial.decision)
        );
        trials.push(trial);
    }
    stop.store(true, Ordering::Relaxed);
    let (triggered, refused) = load.await?;
    let outcome = runs_ended(&pool).await?;
    report(&trials, triggered, refused, &outcome);
    drop(schedulers);
    drop(api);
    Ok(())
}

/// Triggers a run every [`TRIGGER_EVERY`] until `stop`; returns the runs triggered and the
/// triggers refused.
async fn trigger_steadily(
    http: reqwest::Client,
    base: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> (usize, usize) {
    let (triggered, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut tick = tokio::time::interval(TRIGGER_EVERY);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        match deployment::trigger(&http, &base, &token, "work").await {
            Ok(_) => triggered.fetch_add(1, Ordering::Relaxed),
            Err(error) => {
                eprintln!("trigger refused: {error}");
                refused.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
    (triggered.into_inner(), refused.into_inner())
}

/// One trial: waits until the current leader decides, lets work flow under it for `settle`
/// (runs in every state), kills it, times the takeover and starts a replacement replica.
async fn kill_the_leader(
    deployment: &Deployment,
    schedulers: &mut Vec<Replica>,
    pool: &PgPool,
    settle: Duration,
) -> Result<Trial> {
    let leader = current_leader(pool).await?;
    first_decision_after(pool, leader.position).await?;
    tokio::time::sleep(settle).await;
    let index = schedulers
        .iter()
        .position(|replica| replica.pid() == leader.pid)
        .context("the leader is one of the scheduler replicas")?;
    let killed_at = Utc::now();
    schedulers[index].kill();
    schedulers.remove(index);
    let elected = election_after(pool, leader.epoch).await?;
    if elected.pid == leader.pid {
        bail!("the killed replica was elected again");
    }
    let decided_at = first_decision_after(pool, elected.position).await?;
    schedulers.push(deployment.replica("scheduler")?);
    Ok(Trial {
        election: (elected.at - killed_at).to_std()?,
        decision: (decided_at - killed_at).to_std()?,
    })
}

/// The newest election in the log.
async fn newest_election(pool: &PgPool) -> Result<Option<Election>> {
    let row: Option<(i32, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT (payload->>'pid')::int, stream_version, position, recorded_at FROM events \
         WHERE stream = 'scheduler' ORDER BY position DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(pid, epoch, position, at)| Election {
        pid,
        epoch,
        position,
        at,
    }))
}

/// The leader, once one was elected.
async fn current_leader(pool: &PgPool) -> Result<Election> {
    poll("a scheduler elected", || async {
        newest_election(pool).await
    })
    .await
}

/// The first election after `epoch`.
async fn election_after(pool: &PgPool, epoch: i64) -> Result<Election> {
    poll("a new leader elected", || async {
        Ok(newest_election(pool).await?.filter(|e| e.epoch > epoch))
    })
    .await
}

/// When the first decision of a scheduler after log position `position` was recorded.
async fn first_decision_after(pool: &PgPool, position: i64) -> Result<DateTime<Utc>> {
    poll("a decision by the new leader", || async {
        Ok(sqlx::query_scalar(
            "SELECT recorded_at FROM events WHERE position > $1 \
             AND metadata->>'actor' = 'scheduler' AND stream <> 'scheduler' \
             ORDER BY position LIMIT 1",
        )
        .bind(position)
        .fetch_optional(pool)
        .await?)
    })
    .await
}

/// Polls `probe` every 10 ms until it answers (30 s at most).
async fn poll<T, F, Fut>(what: &str, probe: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(answer) = probe().await? {
            return Ok(answer);
        }
        if Instant::now() > deadline {
            bail!("waited 30 s for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits (three minutes at most) until no run is queued or running; returns the count of
/// runs per state.
async fn runs_ended(pool: &PgPool) -> Result<Vec<(String, i64)>> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let states: Vec<(String, i64)> = sqlx::query_as(
            "SELECT state, count(*) FROM dag_run WHERE dag_id = 'work' GROUP BY state \
             ORDER BY state",
        )
        .fetch_all(pool)
        .await?;
        let unfinished = states
            .iter()
            .any(|(state, _)| state == "queued" || state == "running");
        if !unfinished || Instant::now() > deadline {
            return Ok(states);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// Median and max, in ms.
fn median_max(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let median = (samples[(samples.len() - 1) / 2] + samples[samples.len() / 2]) / 2;
    let max = samples[samples.len() - 1];
    format!("median {:.0} ms, max {:.0} ms", ms(median), ms(max))
}

fn report(trials: &[Trial], triggered: usize, refused: usize, runs: &[(String, i64)]) {
    let each = |f: fn(&Trial) -> Duration| trials.iter().map(f).collect::<Vec<_>>();
    let list = |f: fn(&Trial) -> Duration| {
        let samples: Vec<String> = each(f).iter().map(|d| format!("{:.0}", ms(*d))).collect();
        samples.join(", ")
    };
    println!("machine: {}", machine_description());
    println!("date: {}", Utc::now().format("%Y-%m-%d"));
    println!();
    println!(
        "| SIGKILL of the leader ({} trials) | result |",
        trials.len()
    );
    println!("|---|---|");
    println!(
        "| kill → `SchedulerElected` recorded | {} |",
        median_max(each(|t| t.election))
    );
    println!(
        "| kill → new leader's first decision recorded | {} |",
        median_max(each(|t| t.decision))
    );
    println!();
    println!("election, ms: {}", list(|t| t.election));
    println!("decision, ms: {}", list(|t| t.decision));
    println!("runs triggered: {triggered} ({refused} triggers refused); runs by state: {runs:?}");
}
