//! Deferred time waits held by one control plane (issue 18, part 6): memory, the delay from
//! each wait's moment to its `TaskResumed`, and the time a restarted scheduler takes to take
//! them all up again.
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin deferred_waits [WAITS]
//! ```
//!
//! The log is first written with `WAITS` (default 100,000) tries that deferred themselves to a
//! `DateTimeTrigger` (runs of 1,000 mapped instances, their events decided by the core as the
//! agents' reports would be), the moments spread evenly over one minute. Then a scheduler
//! starts on that log, as after a restart with every wait pending: it rebuilds its model from
//! the log, fires each wait at its moment, and the resumed tries run on an executor that
//! reports them done at once. A calibration run of 1,000 waits a day away is written first (it
//! times the writing, so the window can start after the restart); it stays deferred throughout.
//! Memory is the proportional set size of this process (the scheduler, the store, the
//! executor) and of the Postgres server's processes, once the scheduler holds every wait.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leoflow_bench::instant::InstantExecutor;
use leoflow_bench::{BenchDatabase, Percentiles, machine_description, pss_bytes};
use leoflow_core::commands::{TriggerRequest, trigger};
use leoflow_core::run::{Command, Deferral, Outcome, RunState, TiState, decide, evolve};
use leoflow_core::spec::DagSpec;
use leoflow_events::catalog::{DeferredTrigger, Sealed};
use leoflow_events::sample::parsed_document;
use leoflow_events::{AppendBatch, Event, EventStore, Metadata};
use leoflow_projector::ReadModels;
use leoflow_scheduler::reactor::{Reactor, Specs};
use serde_json::json;
use tokio::sync::watch;

/// Mapped instances per run.
const WIDTH: usize = 1000;
/// The span the moments are spread over.
const WINDOW: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let waits: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 100_000,
    };
    let runs = waits.div_ceil(WIDTH);
    let bench = BenchDatabase::start().await?;
    let pool = bench.fresh("deferrals").await?;
    let store = EventStore::new(pool).with_projection(Arc::new(ReadModels));
    let spec = register(&store, "waits", WIDTH, runs + 2).await?;
    register(&store, "probe", 0, 1).await?;

    // The calibration run times the writing of one run; the window starts once all are
    // written and a scheduler had time to start.
    let written = Instant::now();
    let far = Utc::now() + chrono::Duration::days(1);
    write_deferred_run(&store, &spec, "calibration", |_| far).await?;
    let per_run = written.elapsed();
    let window_start = Utc::now()
        + chrono::Duration::from_std(per_run.mul_f64(runs as f64 * 1.3))?
        + chrono::Duration::seconds(30);
    let spread = WINDOW.as_secs_f64() / waits as f64;
    let started_writing = Instant::now();
    for r in 0..runs {
        let first = r * WIDTH;
        write_deferred_run(&store, &spec, &format!("r{r:04}"), |index| {
            let offset = spread * (first + index).min(waits - 1) as f64;
            window_start + chrono::Duration::microseconds((offset * 1e6) as i64)
        })
        .await?;
    }
    let writing = started_writing.elapsed();
    let head = store.head().await?;
    anyhow::ensure!(
        Utc::now() < window_start,
        "writing the log took {writing:?}, past the window's start: run again"
    );

    // A scheduler starts on the log, every wait pending. It is ready when it has started the
    // probe run queued after them all.
    let probe_head = queue_probe(&store).await?;
    let executor = Arc::new(InstantExecutor {
        store: store.clone(),
        specs: Specs::default(),
    });
    let (stop, stopped) = watch::channel(false);
    let restart = Instant::now();
    let handle = tokio::spawn(Reactor::new(store.clone(), executor).run(stopped));
    wait_for(
        &store,
        probe_head,
        |event| matches!(event, Event::RunStarted(e) if e.dag_id == "probe"),
    )
    .await?;
    let restart = restart.elapsed();
    let held_rss = own_pss();
    let held_postgres: u64 = bench.server_pids().into_iter().map(pss_bytes).sum();
    anyhow::ensure!(
        Utc::now() < window_start,
        "the scheduler took {restart:?} to start, past the window's start: run again"
    );

    let resumed = wait_for_all_resumed(&store, head, waits).await?;
    stop.send(true)?;
    handle.await??;
    let peak_rss = own_peak_rss();
    let mut delays = resume_delays(&store, resumed).await?;

    let mb = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    println!("machine: {}", machine_description());
    println!("date: {}", Utc::now().format("%Y-%m-%d"));
    println!();
    println!("| benchmark | result |");
    println!("|---|---|");
    println!(
        "| writing the log: {waits} deferred tries ({runs} runs of {WIDTH}) | {:.1} s |",
        writing.as_secs_f64()
    );
    println!(
        "| scheduler start on that log, every wait pending: start → first decision | {:.2} s |",
        restart.as_secs_f64()
    );
    println!(
        "| memory holding {} waits: scheduler process PSS + Postgres PSS | {:.0} MB + {:.0} MB = {:.0} MB (scheduler peak RSS {:.0} MB) |",
        waits + WIDTH,
        mb(held_rss),
        mb(held_postgres),
        mb(held_rss + held_postgres),
        mb(peak_rss)
    );
    println!(
        "| moment → TaskResumed recorded, {} waits over {} s | {} |",
        delays.len(),
        WINDOW.as_secs(),
        Percentiles::of(&mut delays)
    );
    bench.stop()?;
    Ok(())
}

/// Records DAG `dag_id`: one task, `wait`, mapped over `width` items (unmapped when 0).
async fn register(
    store: &EventStore,
    dag_id: &str,
    width: usize,
    max_active_runs: usize,
) -> anyhow::Result<DagSpec> {
    let mut task = json!({"task_id": "wait", "operator": "Waiter", "custom": {}, "upstream": [],
        "trigger_rule": "all_success", "retries": 0, "retry_delay": 300.0,
        "retry_exponential_backoff": false, "max_retry_delay": null, "execution_timeout": null,
        "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default"});
    if width > 0 {
        let items: Vec<usize> = (0..width).collect();
        task["mapped"] = json!({"expand": {"n": items}, "expand_kwargs": null});
    }
    let document = json!({"dag_id": dag_id, "tasks": [task]});
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await?;
    let mut parsed = parsed_document(dag_id, "v1", &document_hash);
    parsed.max_active_runs = max_active_runs as i32;
    parsed.max_active_tasks = 100_000;
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("bench")))
        .await?;
    Ok(DagSpec::from_dag_json(&document)?)
}

/// Writes run `run_id` of `waits`, every instance of which deferred itself to a moment of
/// `moment(map_index)`: the events the core decides for it, as the agents' reports lead to.
async fn write_deferred_run(
    store: &EventStore,
    spec: &DagSpec,
    run_id: &str,
    moment: impl Fn(usize) -> DateTime<Utc>,
) -> anyhow::Result<()> {
    let request = TriggerRequest {
        run_id: Some(run_id.to_owned()),
        triggered_by: "bench".into(),
        ..TriggerRequest::default()
    };
    let queued = trigger("waits", &json!({}), "v1", &[], request, Utc::now())?;
    let mut state = evolve(RunState::queued(spec, run_id), &queued);
    let mut events = vec![queued];
    let mut apply = |state: &mut RunState, command: Command| -> anyhow::Result<()> {
        let decided = decide(spec, state, command)?;
        *state = decided.iter().fold(state.clone(), evolve);
        events.extend(decided);
        Ok(())
    };
    apply(&mut state, Command::Start)?;
    let instances: Vec<i32> = state
        .tis
        .iter()
        .filter(|(_, ti)| ti.state == TiState::Scheduled)
        .map(|((_, index), _)| *index)
        .collect();
    for map_index in instances {
        let task_id = "wait".to_owned();
        apply(
            &mut state,
            Command::Queue {
                task_id: task_id.clone(),
                map_index,
            },
        )?;
        apply(
            &mut state,
            Command::Dispatch {
                task_id: task_id.clone(),
                map_index,
                try_number: 1,
                attempt_token: uuid::Uuid::new_v4(),
                executor: "instant".into(),
                replacing: None,
            },
        )?;
        apply(
            &mut state,
            Command::ReportStarted {
                task_id: task_id.clone(),
                map_index,
                try_number: 1,
                hostname: "bench".into(),
                pid: None,
            },
        )?;
        let deferral = Deferral {
            trigger: DeferredTrigger::Time {
                moment: moment(map_index as usize),
                end_from_trigger: false,
            },
            next_method: "execute_complete".into(),
            next_kwargs: Sealed::clear("{}"),
            timeout_at: None,
        };
        apply(
            &mut state,
            Command::ReportFinished {
                task_id,
                map_index,
                try_number: 1,
                outcome: Outcome::Deferred(deferral),
                at: Utc::now(),
                outlet_events: Default::default(),
            },
        )?;
    }
    let metadata = Metadata::actor("bench");
    let batch = events.into_iter().fold(AppendBatch::new(), |batch, event| {
        batch.push(event, &metadata)
    });
    store.append(batch).await?;
    Ok(())
}

/// Queues a run of `probe`; returns the head before it.
async fn queue_probe(store: &EventStore) -> anyhow::Result<i64> {
    let head = store.head().await?;
    let request = TriggerRequest {
        run_id: Some("probe".into()),
        triggered_by: "bench".into(),
        ..TriggerRequest::default()
    };
    let queued = trigger("probe", &json!({}), "v1", &[], request, Utc::now())?;
    store
        .append(AppendBatch::new().push(queued, &Metadata::actor("bench")))
        .await?;
    Ok(head)
}

/// Waits for an event after `head` that `found` accepts.
async fn wait_for(
    store: &EventStore,
    head: i64,
    found: impl Fn(&Event) -> bool,
) -> anyhow::Result<()> {
    let mut subscription = store.subscribe(head + 1).await?;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(600), subscription.next()).await??;
        if event.decode().is_ok_and(|e| found(&e)) {
            return Ok(());
        }
    }
}

/// Follows the log from `head` until `waits` tries of `waits` runs resumed; returns when each
/// instance resumed, by (run, map index).
async fn wait_for_all_resumed(
    store: &EventStore,
    head: i64,
    waits: usize,
) -> anyhow::Result<HashMap<(String, i32), DateTime<Utc>>> {
    let mut resumed = HashMap::new();
    let mut subscription = store.subscribe(head + 1).await?;
    while resumed.len() < waits {
        let event = tokio::time::timeout(Duration::from_secs(600), subscription.next()).await??;
        if let Ok(Event::TaskResumed(e)) = event.decode() {
            resumed.insert((e.ti.run_id, e.ti.map_index), event.recorded_at);
        }
    }
    Ok(resumed)
}

/// Each resumed wait's delay: its `TaskResumed` recorded, less its moment.
async fn resume_delays(
    store: &EventStore,
    resumed: HashMap<(String, i32), DateTime<Utc>>,
) -> anyhow::Result<Vec<Duration>> {
    let mut delays = Vec::with_capacity(resumed.len());
    let mut next = 1;
    loop {
        let page = store.read_from(next, 10_000).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        for recorded in &page {
            if let Ok(Event::TaskDeferred(e)) = recorded.decode()
                && let DeferredTrigger::Time { moment, .. } = e.trigger
                && let Some(at) = resumed.get(&(e.ti.run_id.clone(), e.ti.map_index))
            {
                delays.push((*at - moment).to_std().unwrap_or_default());
            }
        }
    }
    Ok(delays)
}

/// This process's proportional set size.
fn own_pss() -> u64 {
    pss_bytes(std::process::id())
}

/// This process's peak resident set size (`VmHWM`).
fn own_peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kb = line.strip_prefix("VmHWM:")?;
                kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
            })
        })
        .map_or(0, |kb| kb * 1024)
}
