//! Event-log benchmarks: batched append throughput, single-event append latency,
//! append-commit → subscriber latency, and replay rate.
//!
//! Runs against a managed Postgres cluster with Lite's durable settings (fsync on), started in
//! a temporary directory by the same code Lite uses. Prints a Markdown table for
//! `docs/benchmarks.md`.
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin event_log -- [--events 100000]
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use leoflow_bench::{BenchDatabase, Percentiles, machine_description};
use leoflow_events::catalog::{Sealed, VariableSet};
use leoflow_events::sample::Workload;
use leoflow_events::{AppendBatch, Event, EventStore, Metadata};
use leoflow_projector::ReadModels;
use leoflow_projector::replay;
use tokio::sync::Mutex;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .skip_while(|a| a != "--events")
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let bench = BenchDatabase::start().await?;
    println!("machine: {}", machine_description());
    println!("date: {}", chrono::Utc::now().format("%Y-%m-%d"));
    println!();
    println!("| benchmark | result |");
    println!("|---|---|");

    // 1. Batched append throughput, with and without the inline projection.
    let workload = Workload::new(42, 20).batches(events, 1000);
    let batches: Vec<Vec<Event>> = regroup(workload, 500);
    let raw = EventStore::new(bench.fresh("append_raw").await?);
    let rate = append_all(&raw, &batches).await?;
    println!("| batched append, 500 events/tx, log only | {rate:.0} events/s |");
    let projected_pool = bench.fresh("append_projected").await?;
    let projected = EventStore::new(projected_pool.clone()).with_projection(Arc::new(ReadModels));
    let rate = append_all(&projected, &batches).await?;
    println!("| batched append, 500 events/tx, with inline projections | {rate:.0} events/s |");

    // 2. Replay of that log (the projected database's log, into its live read models).
    let report = replay::rebuild(&projected_pool).await?;
    let rate = report.events as f64 / report.elapsed.as_secs_f64();
    println!(
        "| replay ({} events, rebuild of all read models) | {rate:.0} events/s |",
        report.events
    );
    let report = replay::verify(&projected_pool).await?;
    anyhow::ensure!(report.is_equal(), "verify after replay found differences");
    println!(
        "| replay --verify ({} events) | {} ms |",
        report.events,
        report.elapsed.as_millis()
    );

    // 3. Single-event append latency (one event per transaction, with projections).
    let single =
        EventStore::new(bench.fresh("single").await?).with_projection(Arc::new(ReadModels));
    let mut latencies = Vec::new();
    for i in 0..2000 {
        let started = Instant::now();
        single.append(variable(i)).await?;
        latencies.push(started.elapsed());
    }
    let p = Percentiles::of(&mut latencies);
    println!("| single-event append (commit acknowledged) | {p} |");
    let rate = 2000.0 / latencies.iter().sum::<Duration>().as_secs_f64();
    println!("| single-event appends, one writer, sequential | {rate:.0} events/s |");

    // 4. Append commit → subscriber delivery.
    let (from_commit, from_call) = subscriber_latency(&single, 2000).await?;
    println!("| append commit acknowledged → subscriber delivered | {from_commit} |");
    println!("| append call started → subscriber delivered | {from_call} |");

    bench.stop()?;
    Ok(())
}

/// Concatenates the workload and cuts it into batches of exactly `size` events.
fn regroup(batches: Vec<Vec<Event>>, size: usize) -> Vec<Vec<Event>> {
    let all: Vec<Event> = batches.into_iter().flatten().collect();
    all.chunks(size).map(<[Event]>::to_vec).collect()
}

async fn append_all(store: &EventStore, batches: &[Vec<Event>]) -> anyhow::Result<f64> {
    let meta = Metadata::actor("bench");
    let total: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    for batch in batches {
        let mut append = AppendBatch::new();
        for event in batch {
            append = append.push(event.clone(), &meta);
        }
        store.append(append).await?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

fn variable(i: usize) -> AppendBatch {
    AppendBatch::new().push(
        VariableSet {
            key: format!("k{}", i % 50),
            value: Sealed::clear(i.to_string()),
            description: None,
            tenant: leoflow_events::DEFAULT_TENANT.into(),
        },
        &Metadata::actor("bench"),
    )
}

/// Appends `count` single events at a steady pace while a subscriber follows the log.
/// Returns (commit acknowledged → delivered, append started → delivered).
async fn subscriber_latency(
    store: &EventStore,
    count: usize,
) -> anyhow::Result<(Percentiles, Percentiles)> {
    let head = store.head().await?;
    let mut subscription = store.subscribe(head + 1).await?;
    let delivered: Arc<Mutex<HashMap<i64, Instant>>> = Arc::default();
    let sink = delivered.clone();
    let reader = tokio::spawn(async move {
        for _ in 0..count {
            let event = subscription.next().await?;
            sink.lock().await.insert(event.position, Instant::now());
        }
        anyhow::Ok(())
    });
    let mut sent = Vec::with_capacity(count);
    for i in 0..count {
        let started = Instant::now();
        let outcome = store.append(variable(i)).await?;
        let acknowledged = Instant::now();
        let position = outcome.last_position().expect("one event appended");
        sent.push((position, started, acknowledged));
        // A steady pace, so each event is delivered on its own rather than in a burst.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    reader.await??;
    let delivered = delivered.lock().await;
    let mut from_commit = Vec::new();
    let mut from_call = Vec::new();
    for (position, started, acknowledged) in sent {
        let at = delivered[&position];
        // The subscriber may see the event before the writer's acknowledgement arrives.
        from_commit.push(at.saturating_duration_since(acknowledged));
        from_call.push(at - started);
    }
    Ok((
        Percentiles::of(&mut from_commit),
        Percentiles::of(&mut from_call),
    ))
}
