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

use anyhow::Result;
use leoflow_bench::{BenchDatabase, http_api, machine_description, read_models};
use leoflow_events::EventStore;
use leoflow_projector::ReadModels;

const RUNS: usize = 1_000;
const TASKS: usize = 50;
const REQUESTS: usize = 200;

#[tokio::main]
async fn main() -> Result<()> {
    let database = BenchDatabase::start().await?;
    let pool = database.fresh("bench_api").await?;
    let store = EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels));
    let built = Instant::now();
    read_models::build(&store, &pool, RUNS, TASKS).await?;
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

    let base = http_api::serve(store.clone()).await?.base;
    let client = reqwest::Client::new();
    let token = http_api::admin_token(&client, &base, http_api::PASSWORD).await?;
    let latest: Vec<String> = sqlx::query_scalar(
        "SELECT run_id FROM dag_run WHERE dag_id = 'big' ORDER BY run_after DESC LIMIT 10",
    )
    .fetch_all(&pool)
    .await?;
    let routes = routes(&latest);
    println!("\n| route | latency ({REQUESTS} requests, one at a time) |\n|---|---|");
    for (name, path, accept) in routes {
        let p =
            http_api::timed(&client, &format!("{base}{path}"), &token, accept, REQUESTS).await?;
        println!("| {name} | {p} |");
    }
    database.stop()?;
    Ok(())
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
