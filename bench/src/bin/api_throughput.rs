//! API throughput of Pro's `leoflow server --role api` replicas: requests/s and latency under
//! 20 concurrent clients, against one replica and against two (round-robin, as a Service
//! spreads connections).
//!
//! The deployment is real (`leoflow_bench::deployment`): Postgres over TCP (fsync on), a
//! `redis-server`, two API replicas with the default settings (a pool of 10 connections each).
//! The read models hold 500 finished runs of a 20-task DAG plus 20 small DAGs, built through
//! the event log. Each client logs-in once (the token is valid on every replica) and sends, one
//! after the other, the reads of the UI's pages in turn: the DAGs list, the DAGs list with
//! latest runs, a DAG's runs, the grid's runs and structure, a run's task instances. Each
//! configuration is loaded for 3 s of warm-up and 15 s of measurement; the two are measured
//! twice, alternating. The clients run on the same machine as the replicas and Postgres: on
//! 2 cores, two replicas share the cores one replica had.
//!
//! ```sh
//! cargo build --release -p leoflow-cli -p leoflow-bench
//! LEOFLOW_BIN=target/release/leoflow target/release/api_throughput
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::Utc;
use leoflow_bench::deployment::{self, Deployment};
use leoflow_bench::{Percentiles, machine_description, read_models};
use leoflow_events::EventStore;
use leoflow_projector::ReadModels;

/// Concurrent clients.
const CLIENTS: usize = 20;

/// Load before the measurement (connections opened, caches warm).
const WARM_UP: Duration = Duration::from_secs(3);

/// How long each configuration is measured.
const MEASURE: Duration = Duration::from_secs(15);

/// Finished runs of the big DAG, and its tasks.
const RUNS: usize = 500;
const TASKS: usize = 20;

/// What one configuration's clients did within the measurement.
struct Load {
    latencies: Vec<Duration>,
    failed: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let deployment = Deployment::start("api-throughput").await?;
    let pool = deployment.pool().await?;
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));
    read_models::build(&store, &pool, RUNS, TASKS).await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    let apis = [deployment.replica("api")?, deployment.replica("api")?];
    let http = reqwest::Client::new();
    let token = deployment::login(&http, &apis[0].base).await?;
    let latest: Vec<String> = sqlx::query_scalar(
        "SELECT run_id FROM dag_run WHERE dag_id = 'big' ORDER BY run_after DESC LIMIT 10",
    )
    .fetch_all(&pool)
    .await?;
    let paths = Arc::new(ui_reads(&latest));
    let bases: Vec<String> = apis.iter().map(|api| api.base.clone()).collect();
    for base in &bases {
        every_path_answers(&http, base, &token, &paths).await?;
    }

    println!("machine: {}", machine_description());
    println!("date: {}", Utc::now().format("%Y-%m-%d"));
    println!();
    println!("| API replicas | requests/s | latency | failed |");
    println!("|---|---|---|---|");
    for replicas in [1, 2, 1, 2] {
        let targets = Arc::new(bases[..replicas].to_vec());
        let mut load = load(&http, targets, &paths, &token).await;
        if load.latencies.is_empty() {
            bail!(
                "no request succeeded with {replicas} replicas ({} failed)",
                load.failed
            );
        }
        println!(
            "| {replicas} | {:.0} | {} | {} |",
            load.latencies.len() as f64 / MEASURE.as_secs_f64(),
            Percentiles::of(&mut load.latencies),
            load.failed
        );
    }
    drop(apis);
    Ok(())
}

/// The reads of the UI's pages over the big DAG, its ten latest runs in turn for a run's task
/// instances.
fn ui_reads(latest: &[String]) -> Vec<String> {
    let mut paths = vec![
        "/api/v2/dags?limit=50".to_owned(),
        "/ui/dags?dag_runs_limit=10&limit=50&offset=0&exclude_stale=true&order_by=dag_id".into(),
        "/api/v2/dags/big/dagRuns?limit=25&order_by=-run_after".into(),
        "/ui/grid/runs/big?limit=10&order_by=-run_after".into(),
        "/ui/grid/structure/big?limit=10&order_by=-run_after".into(),
    ];
    for run in latest {
        let run: String = form_urlencoded::byte_serialize(run.as_bytes()).collect();
        paths.push(format!(
            "/api/v2/dags/big/dagRuns/{run}/taskInstances?limit=50"
        ));
    }
    paths
}

/// Fails unless every path answers 200 on `base` (a wrong route must not pass for speed).
async fn every_path_answers(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    paths: &[String],
) -> Result<()> {
    for path in paths {
        let response = http
            .get(format!("{base}{path}"))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        if status != 200 {
            bail!("{path} on {base}: {status} {}", response.text().await?);
        }
    }
    Ok(())
}

/// [`CLIENTS`] clients sending reads for [`WARM_UP`] then [`MEASURE`], each request to the
/// next of `bases` in turn; what was answered within the measurement.
async fn load(
    http: &reqwest::Client,
    bases: Arc<Vec<String>>,
    paths: &Arc<Vec<String>>,
    token: &str,
) -> Load {
    let turn = Arc::new(AtomicUsize::new(0));
    let measured_from = Instant::now() + WARM_UP;
    let until = measured_from + MEASURE;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let client = Client {
                http: http.clone(),
                token: token.to_owned(),
                bases: bases.clone(),
                paths: paths.clone(),
                turn: turn.clone(),
                first_path: client,
            };
            tokio::spawn(client.run(measured_from, until))
        })
        .collect();
    let mut all = Load {
        latencies: Vec::new(),
        failed: 0,
    };
    for client in clients {
        let load = client.await.expect("a client does not panic");
        all.latencies.extend(load.latencies);
        all.failed += load.failed;
    }
    all
}

/// One client of [`load`].
struct Client {
    http: reqwest::Client,
    token: String,
    bases: Arc<Vec<String>>,
    paths: Arc<Vec<String>>,
    /// Shared by the clients: which replica the next request goes to.
    turn: Arc<AtomicUsize>,
    /// Where this client starts in the paths (so the clients do not all read the same).
    first_path: usize,
}

impl Client {
    /// Sends one request after the other until `until`; keeps the latencies of those that
    /// started at or after `measured_from` and ended by `until`.
    async fn run(self, measured_from: Instant, until: Instant) -> Load {
        let mut load = Load {
            latencies: Vec::new(),
            failed: 0,
        };
        for n in self.first_path.. {
            let sent = Instant::now();
            if sent >= until {
                break;
            }
            let base = &self.bases[self.turn.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
            let path = &self.paths[n % self.paths.len()];
            let ok = self.get(&format!("{base}{path}")).await;
            let done = Instant::now();
            if sent < measured_from || done > until {
                continue;
            }
            match ok {
                true => load.latencies.push(done - sent),
                false => load.failed += 1,
            }
        }
        load
    }

    /// GET with the token, body read to the end; whether it answered 200.
    async fn get(&self, url: &str) -> bool {
        let sent = self.http.get(url).bearer_auth(&self.token).send().await;
        match sent {
            Ok(response) => {
                let ok = response.status() == 200;
                ok && response.bytes().await.is_ok()
            }
            Err(_) => false,
        }
    }
}
