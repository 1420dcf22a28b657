//! Scheduler decision latency: upstream `TaskSucceeded` recorded → downstream `TaskDispatched`
//! recorded, through the reactor, with an in-process executor that reports every try at once
//! (so only the control plane is measured: no processes are started).
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin decision_latency
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use leoflow_bench::instant::InstantExecutor;
use leoflow_bench::{BenchDatabase, Percentiles, machine_description};
use leoflow_core::commands::{TriggerRequest, trigger};
use leoflow_events::sample::parsed_document;
use leoflow_events::{AppendBatch, Event, EventStore, Metadata};
use leoflow_projector::ReadModels;
use leoflow_scheduler::reactor::Reactor;
use leoflow_scheduler::reactor::Specs;
use serde_json::json;
use tokio::sync::watch;

const TASKS: usize = 40;
const RUNS: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let bench = BenchDatabase::start().await?;
    let pool = bench.fresh("decisions").await?;
    let store = EventStore::new(pool).with_projection(Arc::new(ReadModels));
    register_chain(&store).await?;

    let executor = Arc::new(InstantExecutor {
        store: store.clone(),
        specs: Specs::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let reactor = Reactor::new(store.clone(), executor);
    let handle = tokio::spawn(reactor.run(stopped));
    let mut walls = Vec::new();
    for r in 0..RUNS {
        walls.push(run_to_success(&store, &format!("r{r}")).await?);
    }
    stop.send(true)?;
    handle.await??;

    let mut latencies = edge_latencies(&store).await?;
    println!("machine: {}", machine_description());
    println!("date: {}", Utc::now().format("%Y-%m-%d"));
    println!();
    println!("| benchmark | result |");
    println!("|---|---|");
    println!(
        "| upstream TaskSucceeded recorded → downstream TaskDispatched recorded ({} edges) | {} |",
        latencies.len(),
        Percentiles::of(&mut latencies)
    );
    println!(
        "| chain of {TASKS} tasks through the control plane, trigger → RunSucceeded (instant executor) | {} |",
        Percentiles::of(&mut walls)
    );
    bench.stop()?;
    Ok(())
}

/// Records the `chain` DAG: `TASKS` tasks one after the other.
async fn register_chain(store: &EventStore) -> anyhow::Result<()> {
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let upstream: Vec<String> = if i == 0 { vec![] } else { vec![format!("t{:02}", i - 1)] };
            json!({"task_id": format!("t{i:02}"), "operator": "@task", "upstream": upstream,
                   "trigger_rule": "all_success", "retries": 0, "retry_delay": 300.0,
                   "retry_exponential_backoff": false, "max_retry_delay": null, "execution_timeout": null,
                   "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default"})
        })
        .collect();
    let document = json!({"dag_id": "chain", "tasks": tasks});
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await?;
    let parsed = parsed_document("chain", "v1", &document_hash);
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("bench")))
        .await?;
    Ok(())
}

/// Triggers run `run_id` and waits for its `RunSucceeded`: the wall time between.
async fn run_to_success(store: &EventStore, run_id: &str) -> anyhow::Result<Duration> {
    let request = TriggerRequest {
        run_id: Some(run_id.to_owned()),
        triggered_by: "bench".into(),
        ..TriggerRequest::default()
    };
    let started = Instant::now();
    let event = trigger("chain", &json!({}), "v1", &[], request, Utc::now())?;
    let head = store.head().await?;
    store
        .append(AppendBatch::new().push(event, &Metadata::actor("bench")))
        .await?;
    let mut subscription = store.subscribe(head + 1).await?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), subscription.next()).await??;
        if let Ok(Event::RunSucceeded(e)) = event.decode()
            && e.run_id == run_id
        {
            return Ok(started.elapsed());
        }
    }
}

/// Per edge of every run, from the log's own timestamps: upstream `TaskSucceeded` recorded →
/// downstream `TaskDispatched` recorded.
async fn edge_latencies(store: &EventStore) -> anyhow::Result<Vec<Duration>> {
    let mut succeeded: HashMap<(String, String), chrono::DateTime<Utc>> = HashMap::new();
    let mut latencies = Vec::new();
    let mut next = 1;
    loop {
        let page = store.read_from(next, 5000).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        for recorded in &page {
            match recorded.decode()? {
                Event::TaskSucceeded(e) => {
                    succeeded.insert(
                        (e.ti.run_id.clone(), e.ti.task_id.clone()),
                        recorded.recorded_at,
                    );
                }
                Event::TaskDispatched(e) if e.ti.task_id != "t00" => {
                    let index: usize = e.ti.task_id[1..].parse()?;
                    let upstream = format!("t{:02}", index - 1);
                    let done = succeeded[&(e.ti.run_id.clone(), upstream)];
                    latencies.push((recorded.recorded_at - done).to_std()?);
                }
                _ => {}
            }
        }
    }
    Ok(latencies)
}
