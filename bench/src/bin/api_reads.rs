//! Read latency of the routes the Airflow UI calls most, over large read models: 1,000 finished
//! runs of a 50-task DAG (50,000 task instances, each with a try, an XCom and ten log lines),
//! plus 20 small DAGs. The state is built through the event log (so the read models are what
//! projections make), then each route is called repeatedly over HTTP on loopback, one request
//! at a time, and timed at the client.
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin api_reads
//! ```

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use chrono::{Duration as Delta, Utc};
use leoflow_api::auth::Auth;
use leoflow_api::credentials::Credentials;
use leoflow_api::{ApiState, Settings};
use leoflow_bench::{BenchDatabase, Percentiles, machine_description};
use leoflow_events::catalog::*;
use leoflow_events::sample::parsed_document;
use leoflow_events::{AppendBatch, EventStore, Metadata, RunType, TaskInstanceKey};
use leoflow_projector::ReadModels;
use leoflow_scheduler::reactor::Specs;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

const RUNS: usize = 1_000;
const TASKS: usize = 50;
const REQUESTS: usize = 200;

fn document(dag_id: &str, tasks: usize) -> Value {
    let tasks: Vec<Value> = (0..tasks)
        .map(|i| {
            let upstream: Vec<String> = if i == 0 { vec![] } else { vec![format!("t{:02}", i - 1)] };
            json!({"task_id": format!("t{i:02}"), "operator": "@task", "upstream": upstream,
                   "trigger_rule": "all_success", "retries": 0, "retry_delay": 300.0,
                   "retry_exponential_backoff": false, "max_retry_delay": null, "execution_timeout": null,
                   "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default",
                   "owner": "airflow", "mapped": null, "group": null, "display_name": null, "params": {}})
        })
        .collect();
    json!({"dag_id": dag_id, "tasks": tasks, "task_groups": [], "schedule": {"type": "none"},
           "params": {}, "timezone": "UTC", "start_date": null, "end_date": null})
}

/// Appends the events of one finished run of `dag_id`, all its tasks successful.
fn run_events(dag_id: &str, hash: &str, n: usize, tasks: usize, xcom_hash: &str) -> AppendBatch {
    let run_id = format!("manual__run{n:05}");
    let meta = Metadata::actor("bench");
    let after = Utc::now() - Delta::minutes((RUNS - n) as i64);
    let mut batch = AppendBatch::new()
        .push(
            RunQueued {
                dag_id: dag_id.into(),
                run_id: run_id.clone(),
                run_type: RunType::Manual,
                logical_date: None,
                data_interval_start: None,
                data_interval_end: None,
                run_after: after,
                conf: json!({}),
                triggered_by: "rest_api".into(),
                dag_version_hash: Some(hash.into()),
            },
            &meta,
        )
        .push(
            RunStarted {
                dag_id: dag_id.into(),
                run_id: run_id.clone(),
            },
            &meta,
        );
    for t in 0..tasks {
        let ti = TaskInstanceKey::new(dag_id, &run_id, &format!("t{t:02}"));
        batch = batch
            .push(
                TaskScheduled {
                    ti: ti.clone(),
                    try_number: 1,
                },
                &meta,
            )
            .push(
                TaskQueued {
                    ti: ti.clone(),
                    try_number: 1,
                    pool: "default_pool".into(),
                    pool_slots: 1,
                    priority_weight: 1,
                    queue: "default".into(),
                },
                &meta,
            )
            .push(
                TaskDispatched {
                    ti: ti.clone(),
                    try_number: 1,
                    attempt_digest: leoflow_events::AttemptDigest::of(&Uuid::new_v4()),
                    executor: "bench".into(),
                },
                &meta,
            )
            .push(
                TaskStarted {
                    ti: ti.clone(),
                    try_number: 1,
                    hostname: "bench".into(),
                    pid: Some(1),
                },
                &meta,
            )
            .push(
                XComPushed {
                    ti: ti.clone(),
                    try_number: 1,
                    key: "return_value".into(),
                    value_hash: xcom_hash.into(),
                    size_bytes: 2,
                    length: None,
                },
                &meta,
            )
            .push(TaskSucceeded { ti, try_number: 1 }, &meta);
    }
    batch.push(
        RunSucceeded {
            dag_id: dag_id.into(),
            run_id,
        },
        &meta,
    )
}

async fn timed(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    accept: &str,
) -> Result<Percentiles> {
    let mut samples = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS + 10 {
        let start = Instant::now();
        let response = client
            .get(url)
            .bearer_auth(token)
            .header("accept", accept)
            .send()
            .await?;
        let status = response.status();
        let body = response.bytes().await?;
        let elapsed = start.elapsed();
        if !status.is_success() {
            bail!("{url}: {status}: {}", String::from_utf8_lossy(&body));
        }
        // The first requests warm caches (DAG documents, prepared statements).
        if i >= 10 {
            samples.push(elapsed);
        }
    }
    Ok(Percentiles::of(&mut samples))
}

#[tokio::main]
async fn main() -> Result<()> {
    let database = BenchDatabase::start().await?;
    let pool = database.fresh("bench_api").await?;
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));
    let built = Instant::now();
    build_read_models(&store, &pool).await?;
    sqlx::query("ANALYZE").execute(&pool).await?;
    let tis: i64 = sqlx::query_scalar("SELECT count(*) FROM task_instance")
        .fetch_one(&pool)
        .await?;
    let events: i64 = store.head().await?;
    println!("api read benchmark — {}", machine_description());
    println!(
        "read models: {RUNS} runs × {TASKS} tasks ({tis} task instances, {events} events), built in {:.1} s",
        built.elapsed().as_secs_f64()
    );

    let base = serve_api(store.clone()).await?;
    let client = reqwest::Client::new();
    let token = state_token(&client, &base).await?;
    let latest: Vec<String> = sqlx::query_scalar(
        "SELECT run_id FROM dag_run WHERE dag_id = 'big' ORDER BY run_after DESC LIMIT 10",
    )
    .fetch_all(&pool)
    .await?;
    let routes = routes(&latest);
    println!("\n| route | latency ({REQUESTS} requests, one at a time) |\n|---|---|");
    for (name, path, accept) in routes {
        let p = timed(&client, &format!("{base}{path}"), &token, accept).await?;
        println!("| {name} | {p} |");
    }
    database.stop()?;
    Ok(())
}

/// The read models the routes read: one big DAG with its runs (an XCom and ten log lines per
/// try) and twenty small DAGs, appended through the event store as the control plane would.
async fn build_read_models(store: &EventStore, pool: &PgPool) -> Result<()> {
    let xcom_hash = store.put_blob("application/json", "42").await?;
    let doc = document("big", TASKS);
    let doc_hash = store.put_blob("application/json", &doc.to_string()).await?;
    store
        .append(AppendBatch::new().push(
            parsed_document("big", "v1", &doc_hash),
            &Metadata::actor("bench"),
        ))
        .await?;
    for i in 0..20 {
        let dag_id = format!("small_{i:02}");
        let small = document(&dag_id, 3);
        let hash = store
            .put_blob("application/json", &small.to_string())
            .await?;
        store
            .append(AppendBatch::new().push(
                parsed_document(&dag_id, "v1", &hash),
                &Metadata::actor("bench"),
            ))
            .await?;
    }
    for n in 0..RUNS {
        store
            .append(run_events("big", "v1", n, TASKS, &xcom_hash))
            .await?;
    }
    // Ten log lines per try, written as the agent service writes them.
    sqlx::query(
        "INSERT INTO task_log (dag_id, run_id, task_id, map_index, try_number, seq, line) \
         SELECT t.dag_id, t.run_id, t.task_id, t.map_index, 1, s, 'log line ' || s || ' of ' || t.task_id \
         FROM task_instance t, generate_series(0, 9) s",
    )
    .execute(pool)
    .await?;
    Ok(())
}

/// Serves the API on a loopback port; answers its base URL.
async fn serve_api(store: EventStore) -> Result<String> {
    let credentials = Credentials::new("bench");
    let state = ApiState {
        store: store.clone(),
        specs: Specs::default(),
        auth: Arc::new(Auth::new(credentials.clone(), None)),
        vault: leoflow_secrets::Vault::new(store.pool().clone(), credentials.master_keys()),
        settings: Arc::new(Settings::lite()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(leoflow_api::serve(
        listener,
        leoflow_api::router(state, None),
        std::future::pending(),
    ));
    Ok(base)
}

/// The routes measured, with the `Accept` they are asked with: what the UI's pages call.
fn routes(latest: &[String]) -> Vec<(&'static str, String, &'static str)> {
    let run = &latest[0];
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let run_ids: String = latest
        .iter()
        .map(|r| format!("run_ids={}", enc(r)))
        .collect::<Vec<_>>()
        .join("&");
    vec![
        (
            "DAGs list (/api/v2/dags)",
            "/api/v2/dags?limit=50".into(),
            "application/json",
        ),
        (
            "DAGs list with latest runs (/ui/dags)",
            "/ui/dags?dag_runs_limit=10&limit=50&offset=0&exclude_stale=true&order_by=dag_id"
                .into(),
            "application/json",
        ),
        (
            "grid runs",
            "/ui/grid/runs/big?limit=10&order_by=-run_after".into(),
            "application/json",
        ),
        (
            "grid structure",
            "/ui/grid/structure/big?limit=10&order_by=-run_after".into(),
            "application/json",
        ),
        (
            "grid TI summaries (10 runs)",
            format!("/ui/grid/ti_summaries/big?{run_ids}"),
            "application/x-ndjson",
        ),
        (
            "task instances of a run",
            format!(
                "/api/v2/dags/big/dagRuns/{}/taskInstances?limit=50",
                enc(run)
            ),
            "application/json",
        ),
        (
            "task instances, all runs (newest first)",
            "/api/v2/dags/~/dagRuns/~/taskInstances?cursor=&limit=50&order_by=-start_date".into(),
            "application/json",
        ),
        (
            "dag runs, all DAGs",
            "/api/v2/dags/~/dagRuns?cursor=&limit=50&order_by=-run_after".into(),
            "application/json",
        ),
        (
            "task log (JSON)",
            format!(
                "/api/v2/dags/big/dagRuns/{}/taskInstances/t25/logs/1",
                enc(run)
            ),
            "application/json",
        ),
        (
            "task log (NDJSON)",
            format!(
                "/api/v2/dags/big/dagRuns/{}/taskInstances/t25/logs/1",
                enc(run)
            ),
            "application/x-ndjson",
        ),
    ]
}

async fn state_token(client: &reqwest::Client, base: &str) -> Result<String> {
    let answer: Value = client
        .post(format!("{base}/auth/token"))
        .json(&json!({"username": "admin", "password": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    Ok(answer["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned())
}
