//! Dispatch throughput of a fan-out: Lite's serial dispatcher (each attempt handed to the
//! executor on the scheduler's loop) against Pro's `BufferedDispatcher` (a bounded queue
//! drained by worker tasks), for one run of a task mapped over 1,000 items.
//!
//! The reactor runs in process on a managed Postgres (fsync on) with an executor that reports
//! each try started and succeeded at once through the same group-committed submissions the
//! agent service uses, so only the control plane is measured. Each dispatch optionally costs a
//! blocking sleep on the calling thread (`--cost-ms`, default: 0 and 1 ms), standing in for the
//! subprocess executor's fork/exec, which also blocks the thread that dispatches. The DAG's
//! `max_active_tasks` and `default_pool` are raised to 1,000 so that admission does not cap the
//! fan-out; the runtime has 2 worker threads, as `leoflow server` has.
//!
//! Per configuration, 5 runs one after the other on one reactor; the figures are medians:
//! trigger → `RunSucceeded`, trigger → the executor's 1,000th `dispatch` returned, and the
//! first → the last `dispatch` returned (the dispatcher's own pace: the scheduler decides the
//! whole fan-out in one append, then hands the 1,000 attempts over in one burst).
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin dispatch_throughput [-- --cost-ms 1]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::Utc;
use leoflow_bench::{BenchDatabase, machine_description};
use leoflow_core::commands::{TriggerRequest, trigger};
use leoflow_core::run::{Command, Outcome};
use leoflow_events::catalog::PoolSet;
use leoflow_events::sample::parsed_document;
use leoflow_events::{Actor, AppendBatch, Event, EventStore, Metadata};
use leoflow_projector::ReadModels;
use leoflow_scheduler::control::submit;
use leoflow_scheduler::reactor::{
    Attempt, AttemptKey, BufferedDispatcher, Executor, Reactor, Specs,
};
use serde_json::json;
use tokio::sync::watch;

/// Items the task maps over.
const ITEMS: usize = 1_000;

/// Runs per configuration.
const RUNS: usize = 5;

/// How the reactor hands attempts to the executor.
#[derive(Debug, Clone, Copy)]
enum Dispatch {
    /// Lite: on the scheduler's loop.
    Serial,
    /// Pro: a queue of `buffer` attempts and `workers` tasks.
    Buffered { buffer: usize, workers: usize },
}

impl std::fmt::Display for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dispatch::Serial => write!(f, "serial (Lite)"),
            Dispatch::Buffered { buffer, workers } => {
                write!(f, "buffered {buffer}, {workers} workers")
            }
        }
    }
}

/// Reports each try started and succeeded as soon as it is dispatched, after blocking the
/// dispatching thread for `cost`; counts the dispatches and when the first and the last one
/// returned.
struct InstantExecutor {
    store: EventStore,
    /// The reactor's: reports group-commit with its decisions, as the agent service's do.
    specs: OnceLock<Specs>,
    cost: Duration,
    dispatched: AtomicUsize,
    /// (first, last) since the last [`InstantExecutor::reset`].
    span: Mutex<Option<(Instant, Instant)>>,
}

impl InstantExecutor {
    /// Forgets the dispatches so far; returns how many there were.
    fn reset(&self) -> usize {
        *self.span.lock().expect("not poisoned") = None;
        self.dispatched.swap(0, Ordering::Relaxed)
    }

    /// The first and the last dispatch since the last reset.
    fn span(&self) -> Option<(Instant, Instant)> {
        *self.span.lock().expect("not poisoned")
    }
}

impl Executor for InstantExecutor {
    fn name(&self) -> &str {
        "instant"
    }

    fn dispatch(&self, attempt: Attempt) {
        if !self.cost.is_zero() {
            std::thread::sleep(self.cost);
        }
        self.dispatched.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut span = self.span.lock().expect("not poisoned");
        *span = Some((span.map_or(now, |(first, _)| first), now));
        drop(span);
        let store = self.store.clone();
        let specs = self
            .specs
            .get()
            .expect("set before the reactor runs")
            .clone();
        tokio::spawn(report_success(store, specs, attempt));
    }

    fn terminate(&self, _attempt: &AttemptKey, _reason: &str) {
        // Its tries end at once: there is never anything to stop.
    }
}

/// What an agent reports for a try that ran and succeeded.
async fn report_success(store: EventStore, specs: Specs, attempt: Attempt) {
    let ti = &attempt.ti;
    let started = Command::ReportStarted {
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
        try_number: attempt.try_number,
        hostname: "bench".into(),
        pid: None,
    };
    let finished = Command::ReportFinished {
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
        try_number: attempt.try_number,
        outcome: Outcome::Success,
        at: Utc::now(),
        outlet_events: Default::default(),
    };
    for command in [started, finished] {
        if let Err(e) = submit(
            &store,
            &specs,
            &ti.dag_id,
            &ti.run_id,
            command,
            &Actor::named("agent"),
        )
        .await
        {
            eprintln!("report failed: {e}");
        }
    }
}

/// One configuration's figures (medians over its runs).
struct Figures {
    /// Trigger → `RunSucceeded`.
    wall: Duration,
    /// Trigger → the last dispatch.
    to_last: Duration,
    /// First dispatch → last dispatch: the dispatcher's own pace.
    burst: Duration,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let costs = match cost_argument()? {
        Some(cost) => vec![cost],
        None => vec![Duration::ZERO, Duration::from_millis(1)],
    };
    let configurations = [
        Dispatch::Serial,
        Dispatch::Buffered {
            buffer: 1000,
            workers: 1,
        },
        Dispatch::Buffered {
            buffer: 1000,
            workers: 4,
        },
        Dispatch::Buffered {
            buffer: 1000,
            workers: 8,
        },
        Dispatch::Buffered {
            buffer: 1000,
            workers: 16,
        },
    ];
    let bench = BenchDatabase::start().await?;
    println!("machine: {}", machine_description());
    println!("date: {}", Utc::now().format("%Y-%m-%d"));
    println!();
    println!(
        "| dispatcher | cost per dispatch | trigger → RunSucceeded | trigger → last dispatch \
         | first → last dispatch |"
    );
    println!("|---|---|---|---|---|");
    for (c, cost) in costs.iter().enumerate() {
        for (n, dispatch) in configurations.iter().enumerate() {
            let figures = measure(&bench, &format!("fan_{c}_{n}"), *dispatch, *cost).await?;
            println!(
                "| {dispatch} | {} ms | {:.0} ms | {:.0} ms | {:.0} ms ({:.0} dispatches/s) |",
                cost.as_millis(),
                ms(figures.wall),
                ms(figures.to_last),
                ms(figures.burst),
                (ITEMS - 1) as f64 / figures.burst.as_secs_f64()
            );
        }
    }
    bench.stop()?;
    Ok(())
}

/// `--cost-ms N`, if given.
fn cost_argument() -> Result<Option<Duration>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => Ok(None),
        [flag, ms] if flag == "--cost-ms" => Ok(Some(Duration::from_millis(ms.parse()?))),
        _ => anyhow::bail!("usage: dispatch_throughput [--cost-ms N]"),
    }
}

/// Runs the fan-out [`RUNS`] times on a fresh database with a reactor dispatching as
/// `dispatch`; returns the median figures.
async fn measure(
    bench: &BenchDatabase,
    database: &str,
    dispatch: Dispatch,
    cost: Duration,
) -> Result<Figures> {
    let pool = bench.fresh(database).await?;
    let store = EventStore::new(pool).with_projection(Arc::new(ReadModels));
    register_fan_out(&store).await?;
    let executor = Arc::new(InstantExecutor {
        store: store.clone(),
        specs: OnceLock::new(),
        cost,
        dispatched: AtomicUsize::new(0),
        span: Mutex::new(None),
    });
    let mut reactor = Reactor::new(store.clone(), executor.clone());
    if let Dispatch::Buffered { buffer, workers } = dispatch {
        let dispatcher = BufferedDispatcher::buffered(executor.clone(), buffer, workers);
        reactor = reactor.with_dispatcher(dispatcher);
    }
    let _ = executor.specs.set(reactor.specs());
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(reactor.run(stopped));
    let (mut walls, mut to_last, mut bursts) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..RUNS {
        executor.reset();
        let started = Instant::now();
        run_to_success(&store, &format!("r{r}")).await?;
        walls.push(started.elapsed());
        let (first, last) = executor.span().context("nothing was dispatched")?;
        let count = executor.reset();
        anyhow::ensure!(count == ITEMS, "{count} dispatches for {ITEMS} items");
        to_last.push(last - started);
        bursts.push(last - first);
    }
    stop.send(true)?;
    handle.await??;
    Ok(Figures {
        wall: median(walls),
        to_last: median(to_last),
        burst: median(bursts),
    })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Records the `fan` DAG (one task mapped over [`ITEMS`] literal items) with room for all of
/// them at once: `max_active_tasks` and `default_pool` at [`ITEMS`].
async fn register_fan_out(store: &EventStore) -> Result<()> {
    let items: Vec<usize> = (0..ITEMS).collect();
    let task = json!({"task_id": "fan", "operator": "@task", "upstream": [],
        "trigger_rule": "all_success", "retries": 0, "retry_delay": 300.0,
        "retry_exponential_backoff": false, "max_retry_delay": null, "execution_timeout": null,
        "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default",
        "mapped": {"expand": {"x": items}, "expand_kwargs": null}});
    let document = json!({"dag_id": "fan", "tasks": [task]});
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await?;
    let mut parsed = parsed_document("fan", "v1", &document_hash);
    parsed.max_active_tasks = ITEMS as i32;
    let pool = PoolSet {
        name: "default_pool".into(),
        slots: ITEMS as i32,
        description: None,
        include_deferred: false,
        tenant: leoflow_events::DEFAULT_TENANT.into(),
    };
    let meta = Metadata::actor("bench");
    store
        .append(AppendBatch::new().push(parsed, &meta).push(pool, &meta))
        .await?;
    Ok(())
}

/// Triggers run `run_id` of `fan` and waits for its `RunSucceeded`.
async fn run_to_success(store: &EventStore, run_id: &str) -> Result<()> {
    let request = TriggerRequest {
        run_id: Some(run_id.to_owned()),
        triggered_by: "bench".into(),
        ..TriggerRequest::default()
    };
    let event = trigger("fan", &json!({}), "v1", &[], request, Utc::now())?;
    let head = store.head().await?;
    store
        .append(AppendBatch::new().push(event, &Metadata::actor("bench")))
        .await?;
    let mut subscription = store.subscribe(head + 1).await?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(120), subscription.next()).await??;
        match event.decode() {
            Ok(Event::RunSucceeded(e)) if e.run_id == run_id => return Ok(()),
            Ok(Event::RunFailed(e)) if e.run_id == run_id => anyhow::bail!("run {run_id} failed"),
            _ => {}
        }
    }
}
