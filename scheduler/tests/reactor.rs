//! The reactor against a real Postgres, with an in-process executor standing in for agents.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use leoflow_core::commands::{TriggerRequest, trigger};
use leoflow_core::run::{Command, Outcome};
use leoflow_events::sample::parsed_document;
use leoflow_events::{Actor, AppendBatch, Event, EventStore, Metadata};
use leoflow_postgres::testing::{TestDatabase, fresh_database};
use leoflow_projector::ReadModels;
use leoflow_scheduler::Liveness;
use leoflow_scheduler::control::submit;
use leoflow_scheduler::reactor::BufferedDispatcher;
use leoflow_scheduler::reactor::Specs;
use leoflow_scheduler::reactor::{Attempt, Executor, Reactor, Supervision};
use serde_json::{Value, json};
use tokio::sync::watch;

/// What the fake executor does with a try: `Some(outcome)` reports it, `None` leaves it running.
type Policy = dyn Fn(&Attempt) -> Option<Outcome> + Send + Sync;

/// Runs each dispatched try "instantly": reports started, then the policy's outcome.
struct FakeExecutor {
    store: EventStore,
    specs: Specs,
    policy: Box<Policy>,
    dispatched: Mutex<Vec<Attempt>>,
    /// The attempts the reactor told it to stop.
    terminated: Mutex<Vec<leoflow_scheduler::reactor::AttemptKey>>,
}

impl Executor for FakeExecutor {
    fn name(&self) -> &str {
        "fake"
    }

    fn dispatch(&self, attempt: Attempt) {
        self.dispatched.lock().unwrap().push(attempt.clone());
        let Some(outcome) = (self.policy)(&attempt) else {
            return;
        };
        let (store, specs) = (self.store.clone(), self.specs.clone());
        tokio::spawn(async move { report(&store, &specs, &attempt, outcome).await });
    }

    fn terminate(&self, attempt: &leoflow_scheduler::reactor::AttemptKey, _reason: &str) {
        // Its tries end at once or never: it only records what it was told to stop.
        self.terminated.lock().unwrap().push(attempt.clone());
    }
}

async fn report(store: &EventStore, specs: &Specs, attempt: &Attempt, outcome: Outcome) {
    let (dag, run) = (&attempt.ti.dag_id, &attempt.ti.run_id);
    let started = Command::ReportStarted {
        task_id: attempt.ti.task_id.clone(),
        map_index: attempt.ti.map_index,
        try_number: attempt.try_number,
        hostname: "test".into(),
        pid: None,
    };
    submit(store, specs, dag, run, started, &Actor::named("agent"))
        .await
        .unwrap();
    let finished = Command::ReportFinished {
        task_id: attempt.ti.task_id.clone(),
        map_index: attempt.ti.map_index,
        try_number: attempt.try_number,
        outcome,
        at: Utc::now(),
        outlet_events: Default::default(),
    };
    submit(store, specs, dag, run, finished, &Actor::named("agent"))
        .await
        .unwrap();
}

fn task(id: &str, upstream: &[&str], retries: u32) -> Value {
    json!({"task_id": id, "operator": "@task", "upstream": upstream, "trigger_rule": "all_success",
           "retries": retries, "retry_delay": 0.2, "retry_exponential_backoff": false, "max_retry_delay": null,
           "execution_timeout": null, "pool": "default_pool", "pool_slots": 1, "priority_weight": 1, "queue": "default"})
}

/// Registers a chain a → b → c (b retries once) and unpauses it.
async fn register_chain(store: &EventStore) {
    let document = json!({"dag_id": "chain", "tasks": [task("a", &[], 0), task("b", &["a"], 1), task("c", &["b"], 0)]});
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let parsed = parsed_document("chain", "v1", &document_hash);
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
        .await
        .unwrap();
}

async fn trigger_run(store: &EventStore, run_id: &str) {
    trigger_run_of(store, "chain", run_id).await;
}

/// Queues run `run_id` of DAG `dag_id` (version `v1`) by hand.
async fn trigger_run_of(store: &EventStore, dag_id: &str, run_id: &str) {
    let request = TriggerRequest {
        run_id: Some(run_id.into()),
        triggered_by: "test".into(),
        ..TriggerRequest::default()
    };
    let event = trigger(dag_id, &json!({}), "v1", &[], request, Utc::now()).unwrap();
    store
        .append(AppendBatch::new().push(event, &Metadata::actor("test")))
        .await
        .unwrap();
}

async fn wait_for_run_end(store: &EventStore, run_id: &str) -> String {
    wait_for_run_end_from(store, 1, run_id).await
}

/// How run `run_id` ends, looking at the log from position `from` on.
async fn wait_for_run_end_from(store: &EventStore, from: i64, run_id: &str) -> String {
    let mut subscription = store.subscribe(from).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("run {run_id} did not end within 30 s"))
            .unwrap()
            .decode()
            .unwrap();
        match event {
            Event::RunSucceeded(e) if e.run_id == run_id => return "success".into(),
            Event::RunFailed(e) if e.run_id == run_id => return "failed".into(),
            _ => {}
        }
    }
}

fn start(
    store: &EventStore,
    executor: Arc<FakeExecutor>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    start_supervised(store, executor, Supervision::default())
}

fn start_supervised(
    store: &EventStore,
    executor: Arc<FakeExecutor>,
    supervision: Supervision,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let reactor = Reactor::new(store.clone(), executor).with_supervision(supervision);
    let handle = tokio::spawn(async move { reactor.run(stopped).await.unwrap() });
    (stop, handle)
}

/// Starts a reactor keeping its signs of life in `liveness`.
fn start_sharing(
    store: &EventStore,
    executor: Arc<FakeExecutor>,
    supervision: Supervision,
    liveness: Liveness,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = watch::channel(false);
    let reactor = Reactor::new(store.clone(), executor)
        .with_supervision(supervision)
        .with_liveness(liveness);
    let handle = tokio::spawn(async move { reactor.run(stopped).await.unwrap() });
    (stop, handle)
}

/// Waits until `executor` was handed its first try.
async fn first_dispatch(executor: &FakeExecutor) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while executor.dispatched.lock().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing was dispatched"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn executor(db: &TestDatabase, policy: Box<Policy>) -> (EventStore, Arc<FakeExecutor>) {
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let executor = Arc::new(FakeExecutor {
        store: store.clone(),
        specs: Specs::default(),
        policy,
        dispatched: Mutex::new(Vec::new()),
        terminated: Mutex::new(Vec::new()),
    });
    (store, executor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_runs_to_success_with_a_retry_on_the_way() {
    let db = fresh_database().await;
    let (store, executor) = executor(
        &db,
        Box::new(|a: &Attempt| {
            Some(if a.ti.task_id == "b" && a.try_number == 1 {
                Outcome::Failed {
                    reason: "flaky".into(),
                }
            } else {
                Outcome::Success
            })
        }),
    );
    register_chain(&store).await;
    let (stop, handle) = start(&store, executor.clone());
    trigger_run(&store, "r1").await;
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    stop.send(true).unwrap();
    handle.await.unwrap();

    let tries: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT task_id, try_number, state FROM task_instance_try ORDER BY task_id, try_number",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let expected: Vec<(String, i32, String)> = [
        ("a", 1, "success"),
        ("b", 1, "up_for_retry"),
        ("b", 2, "success"),
        ("c", 1, "success"),
    ]
    .iter()
    .map(|(t, n, s)| (t.to_string(), *n, s.to_string()))
    .collect();
    assert_eq!(tries, expected);
    let tokens: std::collections::HashSet<uuid::Uuid> = executor
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.attempt_token)
        .collect();
    assert_eq!(tokens.len(), 4, "every try got its own attempt token");
    assert_eq!(
        executor.dispatched.lock().unwrap().len(),
        4,
        "each try dispatched exactly once"
    );
    assert!(
        leoflow_projector::replay::verify(&db.pool)
            .await
            .unwrap()
            .is_equal()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_new_scheduler_carries_on_and_a_reconnecting_agent_finishes_its_report()
{
    let db = fresh_database().await;
    // The first scheduler's executor dies with its tries: nothing reports.
    let (store, dead) = executor(&db, Box::new(|_: &Attempt| None));
    register_chain(&store).await;
    let (stop, handle) = start(&store, dead.clone());
    trigger_run(&store, "r1").await;
    first_dispatch(&dead).await;
    stop.send(true).unwrap();
    handle.await.unwrap();

    // The agent of `a` survived the control plane and now reports.
    let attempt = dead.dispatched.lock().unwrap()[0].clone();
    assert_eq!(attempt.ti.task_id, "a");
    report(&store, &Specs::default(), &attempt, Outcome::Success).await;

    let (_, alive) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let (stop, handle) = start(&store, alive.clone());
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    stop.send(true).unwrap();
    handle.await.unwrap();
    let dispatched: Vec<String> = alive
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .map(|a| a.ti.task_id.clone())
        .collect();
    assert_eq!(dispatched, ["b", "c"], "nothing ran twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_that_died_with_its_scheduler_is_handed_out_again_without_costing_a_try() {
    let db = fresh_database().await;
    // The first scheduler records the dispatch of `a` and dies before any agent starts.
    let (store, dead) = executor(&db, Box::new(|_: &Attempt| None));
    register_chain(&store).await;
    let (stop, handle) = start(&store, dead.clone());
    trigger_run(&store, "r1").await;
    first_dispatch(&dead).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    let lost = dead.dispatched.lock().unwrap()[0].clone();

    let (_, alive) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let supervision = Supervision {
        heartbeat_timeout: Duration::from_millis(500),
        ..Supervision::default()
    };
    let (stop, handle) = start_supervised(&store, alive.clone(), supervision);
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    stop.send(true).unwrap();
    handle.await.unwrap();
    let again = alive.dispatched.lock().unwrap()[0].clone();
    assert_eq!(again.ti, lost.ti);
    assert_eq!(again.try_number, 1, "the lost dispatch cost no try");
    assert_ne!(
        again.attempt_token, lost.attempt_token,
        "the old token is void"
    );
    let tries: Vec<(String, i32, String)> =
        sqlx::query_as("SELECT task_id, try_number, state FROM task_instance_try ORDER BY task_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(tries.len(), 3);
    assert_eq!(tries[0], ("a".into(), 1, "success".into()));
    // The log names the attempt that ran by its token's digest, never by the token.
    let dispatched: Vec<String> = store
        .read_stream("run:chain/r1", 1)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| match e.decode().unwrap() {
            Event::TaskDispatched(d) if d.ti.task_id == "a" => Some(d.attempt_digest.to_string()),
            _ => None,
        })
        .collect();
    let digest = |token| leoflow_events::AttemptDigest::of(&token).to_string();
    assert_eq!(
        dispatched,
        [digest(lost.attempt_token), digest(again.attempt_token)]
    );
    assert!(
        leoflow_projector::replay::verify(&db.pool)
            .await
            .unwrap()
            .is_equal()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_bounded_dispatch_queue_with_workers_every_try_runs_once() {
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    register_chain(&store).await;
    let (stop, stopped) = watch::channel(false);
    let dispatcher = BufferedDispatcher::buffered(executor.clone(), 1, 2);
    let reactor = Reactor::new(store.clone(), executor.clone()).with_dispatcher(dispatcher);
    let handle = tokio::spawn(async move { reactor.run(stopped).await.unwrap() });
    for run in ["r1", "r2", "r3"] {
        trigger_run(&store, run).await;
    }
    for run in ["r1", "r2", "r3"] {
        assert_eq!(wait_for_run_end(&store, run).await, "success");
    }
    stop.send(true).unwrap();
    handle.await.unwrap();
    let mut dispatched: Vec<(String, String)> = executor
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .map(|a| (a.ti.run_id.clone(), a.ti.task_id.clone()))
        .collect();
    dispatched.sort();
    let expected: Vec<(String, String)> = ["r1", "r2", "r3"]
        .iter()
        .flat_map(|r| ["a", "b", "c"].map(|t| (r.to_string(), t.to_string())))
        .collect();
    assert_eq!(dispatched, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_scheduler_waits_and_takes_over_when_the_first_stops() {
    let db = fresh_database().await;
    let (store, first_executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let (_, second_executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    register_chain(&store).await;
    let (stop_first, first) = start(&store, first_executor.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stop_second, second) = start(&store, second_executor.clone());
    trigger_run(&store, "r1").await;
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    assert_eq!(first_executor.dispatched.lock().unwrap().len(), 3);
    assert!(
        second_executor.dispatched.lock().unwrap().is_empty(),
        "the waiting scheduler did nothing"
    );

    stop_first.send(true).unwrap();
    first.await.unwrap();
    trigger_run(&store, "r2").await;
    assert_eq!(wait_for_run_end(&store, "r2").await, "success");
    assert_eq!(
        second_executor.dispatched.lock().unwrap().len(),
        3,
        "the second took over"
    );
    stop_second.send(true).unwrap();
    second.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catchup_creates_and_runs_each_missed_cron_slot_once() {
    let db = fresh_database().await;
    let (store, runner) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    // Daily at midnight UTC, starting two days ago: the slots of two days ago, yesterday and today.
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first_slot = today - chrono::Duration::days(2);
    let document = json!({
        "dag_id": "daily", "tasks": [task("only", &[], 0)],
        "schedule": {"type": "cron", "expression": "0 0 * * *"}, "timezone": "UTC",
        "start_date": first_slot.to_rfc3339(), "end_date": null, "catchup": true,
    });
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let parsed = parsed_document("daily", "v1", &document_hash);
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
        .await
        .unwrap();

    let (stop, handle) = start(&store, runner.clone());
    let expected: Vec<String> = (0..3)
        .map(|d| {
            format!(
                "scheduled__{}",
                (first_slot + chrono::Duration::days(d)).format("%Y-%m-%dT%H:%M:%S+00:00")
            )
        })
        .collect();
    for run_id in &expected {
        assert_eq!(wait_for_run_end(&store, run_id).await, "success");
    }
    stop.send(true).unwrap();
    handle.await.unwrap();

    let runs: Vec<(String, String, chrono::DateTime<Utc>)> =
        sqlx::query_as("SELECT run_id, run_type, logical_date FROM dag_run ORDER BY logical_date")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        expected,
        "each slot once, no more"
    );
    assert!(runs.iter().all(|r| r.1 == "scheduled"));
    assert_eq!(runs[0].2, first_slot);

    // A restarted scheduler finds every slot taken and creates nothing new.
    let head = store.head().await.unwrap();
    let (_, again) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let (stop, handle) = start(&store, again);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    let since: Vec<String> = store
        .read_from(head + 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(since, ["SchedulerElected"], "only its election");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_submissions_to_one_run_are_group_committed_and_each_stands_alone() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let tasks: Vec<Value> = (0..40).map(|i| task(&format!("t{i}"), &[], 0)).collect();
    let document = json!({"dag_id": "chain", "tasks": tasks});
    let hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    store
        .append(AppendBatch::new().push(
            parsed_document("chain", "v1", &hash),
            &Metadata::actor("test"),
        ))
        .await
        .unwrap();
    trigger_run(&store, "r1").await;
    let specs = Specs::default();
    submit(
        &store,
        &specs,
        "chain",
        "r1",
        Command::Start,
        &Actor::named("test"),
    )
    .await
    .unwrap();
    let queue = |task_id: String| Command::Queue {
        task_id,
        map_index: -1,
    };
    let mut submissions = tokio::task::JoinSet::new();
    for i in 0..40 {
        let (store, specs) = (store.clone(), specs.clone());
        submissions.spawn(async move {
            let events = submit(
                &store,
                &specs,
                "chain",
                "r1",
                queue(format!("t{i}")),
                &Actor::named("test"),
            )
            .await;
            (format!("t{i}"), events)
        });
    }
    // Wrong commands in the same burst are rejected without taking the others down.
    let (store2, specs2) = (store.clone(), specs.clone());
    submissions.spawn(async move {
        let events = submit(
            &store2,
            &specs2,
            "chain",
            "r1",
            queue("nope".into()),
            &Actor::named("test"),
        )
        .await;
        ("nope".to_owned(), events)
    });
    let mut recorded_at = std::collections::BTreeSet::new();
    while let Some(joined) = submissions.join_next().await {
        let (task_id, events) = joined.unwrap();
        if task_id == "nope" {
            assert!(
                matches!(
                    events,
                    Err(leoflow_scheduler::reactor::SubmitError::Rejected(_))
                ),
                "{events:?}"
            );
            continue;
        }
        let events = events.unwrap();
        assert_eq!(events.len(), 1, "{task_id}: {events:?}");
        assert_eq!(events[0].event_type, "TaskQueued");
        assert!(
            events[0]
                .payload
                .to_string()
                .contains(&format!("\"{task_id}\""))
        );
        recorded_at.insert(events[0].recorded_at);
    }
    // One append stamps all its events with the same time: far fewer appends than submissions.
    assert!(
        recorded_at.len() <= 20,
        "{} appends for 40 submissions",
        recorded_at.len()
    );
    let queued: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_instance WHERE run_id = 'r1' AND state = 'queued'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(queued, 40);
}

/// The pid of the connection holding the leader lock of this test's database, if any (tests
/// run side by side, each on its own database of one cluster).
async fn lock_holder(store: &EventStore) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND ((classid::bigint << 32) | objid::bigint) = $1 \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY)
    .fetch_optional(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_lock_connection_is_terminated_steps_down_and_one_leader_remains() {
    let db = fresh_database().await;
    let (store, first_executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let (_, second_executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    register_chain(&store).await;
    let quick = Supervision {
        scheduler_heartbeat: Duration::from_millis(200),
        ..Supervision::default()
    };
    let (stop_first, first) = start_supervised(&store, first_executor.clone(), quick.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (stop_second, second) = start_supervised(&store, second_executor.clone(), quick);
    trigger_run(&store, "r1").await;
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    assert_eq!(first_executor.dispatched.lock().unwrap().len(), 3);

    // The lock's backend dies (a failover of the database proxy, an operator's kill).
    let holder = lock_holder(&store).await.expect("a leader holds the lock");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(holder)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(terminated);
    // Within a few heartbeats the old leader has noticed and stepped down, and someone leads.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(lock_holder(&store).await.is_some(), "nobody leads");
    let beating: i64 = sqlx::query_scalar("SELECT count(*) FROM scheduler_heartbeat")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(beating, 1, "exactly one leader records heartbeats");
    let (first_before, second_before) = (
        first_executor.dispatched.lock().unwrap().len(),
        second_executor.dispatched.lock().unwrap().len(),
    );
    for run in ["r2", "r3", "r4"] {
        trigger_run(&store, run).await;
    }
    for run in ["r2", "r3", "r4"] {
        assert_eq!(wait_for_run_end(&store, run).await, "success");
    }
    let by_first = first_executor.dispatched.lock().unwrap().len() - first_before;
    let by_second = second_executor.dispatched.lock().unwrap().len() - second_before;
    assert_eq!(by_first + by_second, 9, "each try dispatched once");
    assert!(
        by_first == 0 || by_second == 0,
        "two schedulers decided after the lock changed hands: {by_first} and {by_second} dispatches"
    );
    assert!(
        !first.is_finished() && !second.is_finished(),
        "neither gave up"
    );
    stop_first.send(true).unwrap();
    stop_second.send(true).unwrap();
    first.await.unwrap();
    second.await.unwrap();
}

/// Events of a run's stream so far.
async fn run_events(store: &EventStore, run_id: &str) -> Vec<Event> {
    let stream = format!("run:chain/{run_id}");
    let events = store.read_stream(&stream, 1).await.unwrap();
    events.iter().map(|e| e.decode().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_that_has_not_noticed_is_refused_by_the_log() {
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    register_chain(&store).await;
    // It beats once an hour, so it cannot notice by itself that its lock is gone.
    let deaf = Supervision {
        scheduler_heartbeat: Duration::from_secs(3600),
        ..Supervision::default()
    };
    let (stop, reactor) = start_supervised(&store, executor.clone(), deaf);
    trigger_run(&store, "r1").await;
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");

    // Its lock's backend dies; a successor (this test) takes the lock and is elected.
    let holder = lock_holder(&store).await.expect("a leader holds the lock");
    let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(holder)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(terminated);
    let mut successor = store.pool().acquire().await.unwrap().detach();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY)
            .fetch_one(&mut successor)
            .await
            .unwrap();
        if locked {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the lock stayed held"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elected = leoflow_events::catalog::SchedulerElected {
        scheduler_id: uuid::Uuid::new_v4(),
        hostname: "successor".into(),
        pid: 1,
    };
    store
        .append(AppendBatch::new().push(elected, &Metadata::actor("test")))
        .await
        .unwrap();

    // The deposed leader sees the new run and decides, but the log takes none of it.
    let dispatched_before = executor.dispatched.lock().unwrap().len();
    trigger_run(&store, "r2").await;
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < watch_until {
        let events = run_events(&store, "r2").await;
        assert_eq!(
            events.len(),
            1,
            "a deposed leader changed the run: {:?}",
            &events[1..]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(executor.dispatched.lock().unwrap().len(), dispatched_before);

    // The successor resigns: the old scheduler leads again under a new epoch and finishes r2.
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY)
        .execute(&mut successor)
        .await
        .unwrap();
    assert_eq!(wait_for_run_end(&store, "r2").await, "success");
    assert_eq!(
        executor.dispatched.lock().unwrap().len(),
        dispatched_before + 3,
        "each try of r2 dispatched once"
    );
    let elections = store.read_stream("scheduler", 1).await.unwrap();
    assert_eq!(elections.len(), 3, "elected, successor, elected again");
    stop.send(true).unwrap();
    reactor.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_checked_before_a_redispatch_is_fenced_at_its_decision() {
    use leoflow_core::run::{Fence, Rejection};
    use leoflow_scheduler::control::{SubmitError, run_state, submit_fenced};
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    register_chain(&store).await;
    trigger_run(&store, "r1").await;
    let specs = Specs::default();
    let decide = |command: Command| {
        let (store, specs) = (store.clone(), specs.clone());
        async move {
            submit(
                &store,
                &specs,
                "chain",
                "r1",
                command,
                &Actor::named("test"),
            )
            .await
        }
    };
    decide(Command::Start).await.unwrap();
    decide(Command::Queue {
        task_id: "a".into(),
        map_index: -1,
    })
    .await
    .unwrap();
    let (old, new) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let dispatch = |token, replacing| Command::Dispatch {
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        attempt_token: token,
        executor: "test".into(),
        replacing,
    };
    decide(dispatch(old, None)).await.unwrap();

    // The old agent's call is checked: at this moment its token is the current one ...
    let fence = Fence {
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        attempt_token: old,
    };
    let checked = run_state(&store, &specs, "chain", "r1").await.unwrap();
    assert!(fence.check(&checked.state).is_ok());
    // ... then, before its report is decided, the try is handed out again under a new token.
    decide(dispatch(new, Some(leoflow_events::AttemptDigest::of(&old))))
        .await
        .unwrap();
    let started = Command::ReportStarted {
        task_id: "a".into(),
        map_index: -1,
        try_number: 1,
        hostname: "old-agent".into(),
        pid: None,
    };
    let refused = submit_fenced(
        &store,
        &specs,
        "chain",
        "r1",
        fence,
        vec![started.clone()],
        &Actor::named("agent"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(refused, SubmitError::Rejected(Rejection::NotTheAttempt(_))),
        "{refused}"
    );
    // Unfenced (the check done only at the call, as before), the same report was accepted:
    // two agents would run the try.
    let unfenced = decide(started).await;
    assert!(unfenced.is_ok(), "the try number alone does not fence it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_runs_leave_the_reactors_memory_and_a_cleared_one_comes_back_from_the_log() {
    let db = fresh_database().await;
    // r4's last task stays running: the one run with work in flight.
    let (store, executor) = executor(
        &db,
        Box::new(|attempt: &Attempt| {
            (attempt.ti.run_id != "r4" || attempt.ti.task_id != "c").then_some(Outcome::Success)
        }),
    );
    register_chain(&store).await;
    let (stop, stopped) = watch::channel(false);
    let reactor = Reactor::new(store.clone(), executor.clone());
    let (held, specs) = (reactor.runs_held(), reactor.specs());
    let handle = tokio::spawn(async move { reactor.run(stopped).await.unwrap() });
    let runs = ["r0", "r1", "r2", "r3", "r4"];
    for run in runs {
        trigger_run(&store, run).await;
    }
    for run in &runs[..4] {
        assert_eq!(wait_for_run_end(&store, run).await, "success");
    }
    let holds = |expected: usize| {
        let (held, specs) = (held.clone(), specs.clone());
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let now = (held.load(Ordering::Relaxed), specs.cached_runs());
                if now.0 == expected && now.1 <= expected {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "(model, cache) hold {now:?} runs, not {expected}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Only r4, whose try is in flight, is still held.
    holds(1).await;

    // Clearing a finished run brings it back: the reactor reloads it and runs c again.
    let from = store.head().await.unwrap() + 1;
    let clear = Command::Clear {
        task_ids: vec!["c".into()],
        only_map_indexes: Default::default(),
        downstream: false,
    };
    submit(
        &store,
        &Specs::default(),
        "chain",
        "r0",
        clear,
        &Actor::named("test"),
    )
    .await
    .unwrap();
    let mut subscription = store.subscribe(from).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let event = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .expect("the cleared run did not end again")
            .unwrap();
        if let Event::RunSucceeded(e) = event.decode().unwrap()
            && e.run_id == "r0"
        {
            break;
        }
    }
    let c_of_r0 = executor
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .filter(|a| a.ti.run_id == "r0" && a.ti.task_id == "c")
        .map(|a| a.try_number)
        .collect::<Vec<_>>();
    assert_eq!(c_of_r0, [1, 2], "c of r0 ran again, as its next try");
    holds(1).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
}

/// Waits until `done` holds, for at most 30 s.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The types of the events about DAG `dag_id` from position `from` on.
async fn dag_events_from(store: &EventStore, from: i64, dag_id: &str) -> Vec<(String, String)> {
    store
        .read_from(from, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| {
            let event = e.decode().unwrap();
            (event.dag_id() == Some(dag_id)).then(|| {
                let run = event.run_id().unwrap_or_default().to_owned();
                (e.event_type, run)
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dag_deleted_while_a_try_runs_stops_the_try_and_its_run_gets_nothing_after_the_delete() {
    use leoflow_core::run::Fence;
    use leoflow_executors::proto::task_agent_server::TaskAgent;
    use leoflow_executors::proto::{AttemptRef, FinishRequest};
    use leoflow_scheduler::agents::AgentService;
    use leoflow_scheduler::control::{SubmitError, submit_fenced};
    let db = fresh_database().await;
    // Tries stay running: their "agent" is this test.
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    register_chain(&store).await;
    trigger_run(&store, "r1").await;
    let (stop, handle) = start(&store, executor.clone());
    first_dispatch(&executor).await;
    let attempt = executor.dispatched.lock().unwrap()[0].clone();
    assert_eq!(attempt.ti.task_id, "a");

    // The agent's side, with its own cache of the run (the agent service's, as in Pro).
    let agent_specs = Specs::default();
    let service = AgentService::new(
        store.clone(),
        agent_specs.clone(),
        Liveness::default(),
        Duration::from_secs(1),
    );
    let reference = AttemptRef {
        dag_id: "chain".into(),
        run_id: "r1".into(),
        task_id: "a".into(),
        map_index: -1,
        try_number: attempt.try_number,
        attempt_token: attempt.attempt_token.to_string(),
    };
    let fence = Fence {
        task_id: "a".into(),
        map_index: -1,
        try_number: attempt.try_number,
        attempt_token: attempt.attempt_token,
    };
    let started = Command::ReportStarted {
        task_id: "a".into(),
        map_index: -1,
        try_number: attempt.try_number,
        hostname: "test".into(),
        pid: None,
    };
    submit_fenced(
        &store,
        &agent_specs,
        "chain",
        "r1",
        fence.clone(),
        vec![started],
        &Actor::named("agent"),
    )
    .await
    .unwrap();
    let beat = service.heartbeat(tonic::Request::new(reference.clone()));
    assert!(!beat.await.unwrap().into_inner().terminate);

    // DELETE refuses while the read models show the try running (as Airflow does) ...
    let refused = leoflow_scheduler::control::delete_dag(&store, "chain", &Actor::named("test"))
        .await
        .unwrap();
    assert!(refused.is_err(), "refused while a try runs");
    // ... but that check reads the read models: a delete checked just before the dispatch
    // lands while the try runs. The log and the scheduler must hold against it.
    let deleted = store
        .append(AppendBatch::new().push(
            leoflow_events::catalog::DagDeleted {
                dag_id: "chain".into(),
            },
            &Metadata::actor("test"),
        ))
        .await
        .unwrap();
    let deleted_at = deleted.events[0].position;

    // The scheduler stops the try at its executor ...
    eventually(
        "the deleted DAG's try was not stopped at the executor",
        || {
            executor
                .terminated
                .lock()
                .unwrap()
                .iter()
                .any(|a| a.ti == attempt.ti && a.try_number == attempt.try_number)
        },
    )
    .await;
    // ... its agent's next heartbeat tells it to stop ...
    let beat = service
        .heartbeat(tonic::Request::new(reference.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(beat.terminate, "the agent is told to stop: {beat:?}");
    // ... and its report, decided on the run as read before the delete, is refused by the log.
    let finished = Command::ReportFinished {
        task_id: "a".into(),
        map_index: -1,
        try_number: attempt.try_number,
        outcome: Outcome::Success,
        at: Utc::now(),
        outlet_events: Default::default(),
    };
    let refused = submit_fenced(
        &store,
        &agent_specs,
        "chain",
        "r1",
        fence,
        vec![finished],
        &Actor::named("agent"),
    )
    .await
    .unwrap_err();
    assert!(matches!(refused, SubmitError::Deleted { .. }), "{refused}");
    let finish = FinishRequest {
        attempt: Some(reference),
        ..FinishRequest::default()
    };
    let refused = service
        .finish(tonic::Request::new(finish))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");

    stop.send(true).unwrap();
    handle.await.unwrap();
    let after = dag_events_from(&store, deleted_at + 1, "chain").await;
    assert!(after.is_empty(), "appended after the delete: {after:?}");
    let verify = leoflow_projector::replay::verify(&db.pool).await.unwrap();
    assert!(verify.is_equal(), "replay differs: {verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_added_dag_starts_clean_and_takes_an_old_run_id_again() {
    use leoflow_scheduler::control::{ControlError, delete_dag, trigger_dag};
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    register_chain(&store).await;
    let request = || TriggerRequest {
        run_id: Some("r1".into()),
        triggered_by: "rest_api".into(),
        ..TriggerRequest::default()
    };
    trigger_dag(&store, "chain", request(), &Actor::named("test"))
        .await
        .unwrap();
    let (stop, handle) = start(&store, executor.clone());
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    delete_dag(&store, "chain", &Actor::named("test"))
        .await
        .unwrap()
        .unwrap();

    // The file is parsed again: the same DAG id, a new DAG.
    register_chain(&store).await;
    let from = store.head().await.unwrap() + 1;
    let queued = trigger_dag(&store, "chain", request(), &Actor::named("test")).await;
    assert!(queued.is_ok(), "the old run id is free again: {queued:?}");
    assert_eq!(wait_for_run_end_from(&store, from, "r1").await, "success");
    // A live run's id is still taken.
    let again = trigger_dag(&store, "chain", request(), &Actor::named("test")).await;
    assert!(
        matches!(
            again,
            Err(ControlError::Trigger(_) | ControlError::Conflict(_))
        ),
        "{again:?}"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();

    // The new run started from scratch: first tries, its own `dag_run` row.
    let tries: Vec<(String, i32, String)> = sqlx::query_as(
        "SELECT task_id, try_number, state FROM task_instance WHERE run_id = 'r1' ORDER BY task_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let first_tries = [("a", 1), ("b", 1), ("c", 1)]
        .map(|(t, n)| (t.to_owned(), n, "success".to_owned()))
        .to_vec();
    assert_eq!(tries, first_tries);
    let run_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM dag_run")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(run_ids, [queued.unwrap().position]);
    let verify = leoflow_projector::replay::verify(&db.pool).await.unwrap();
    assert!(verify.is_equal(), "replay differs: {verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_added_dag_with_catchup_runs_each_slot_again_once() {
    let db = fresh_database().await;
    let (store, runner) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first_slot = today - chrono::Duration::days(2);
    let document = json!({
        "dag_id": "daily", "tasks": [task("only", &[], 0)],
        "schedule": {"type": "cron", "expression": "0 0 * * *"}, "timezone": "UTC",
        "start_date": first_slot.to_rfc3339(), "end_date": null, "catchup": true,
    });
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let parse = || {
        let parsed = parsed_document("daily", "v1", &document_hash);
        let store = store.clone();
        async move {
            store
                .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
                .await
                .unwrap()
        }
    };
    parse().await;
    let expected: Vec<String> = (0..3)
        .map(|d| {
            format!(
                "scheduled__{}",
                (first_slot + chrono::Duration::days(d)).format("%Y-%m-%dT%H:%M:%S+00:00")
            )
        })
        .collect();
    let (stop, handle) = start(&store, runner.clone());
    for run_id in &expected {
        assert_eq!(wait_for_run_end(&store, run_id).await, "success");
    }
    leoflow_scheduler::control::delete_dag(&store, "daily", &Actor::named("test"))
        .await
        .unwrap()
        .unwrap();
    let from = store.head().await.unwrap() + 1;
    parse().await;
    // The timetable starts over from the start date: every slot is run again.
    for run_id in &expected {
        assert_eq!(
            wait_for_run_end_from(&store, from, run_id).await,
            "success",
            "{run_id} again"
        );
    }
    stop.send(true).unwrap();
    handle.await.unwrap();
    // A scheduler started afresh rebuilds the same model from the log: nothing more to queue.
    // (A manual run it runs to its end shows it has looked at the timetable since.)
    let (_, again) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    let (stop, handle) = start(&store, again.clone());
    let request = TriggerRequest {
        run_id: Some("manual".into()),
        triggered_by: "test".into(),
        ..TriggerRequest::default()
    };
    let barrier =
        leoflow_scheduler::control::trigger_dag(&store, "daily", request, &Actor::named("test"))
            .await
            .unwrap();
    assert_eq!(
        wait_for_run_end_from(&store, barrier.position, "manual").await,
        "success"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
    let mut queued: Vec<String> = dag_events_from(&store, from, "daily")
        .await
        .into_iter()
        .filter(|(event_type, run_id)| event_type == "RunQueued" && run_id != "manual")
        .map(|(_, run_id)| run_id)
        .collect();
    queued.sort();
    assert_eq!(queued, expected, "each slot once after the re-add");
    let runs: Vec<(String, String)> = sqlx::query_as(
        "SELECT run_id, state FROM dag_run WHERE run_type = 'scheduled' ORDER BY logical_date",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        runs,
        expected
            .iter()
            .map(|r| (r.clone(), "success".to_owned()))
            .collect::<Vec<_>>()
    );
    let verify = leoflow_projector::replay::verify(&db.pool).await.unwrap();
    assert!(verify.is_equal(), "replay differs: {verify:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_in_another_process_spares_tries_whose_agents_are_alive() {
    let db = fresh_database().await;
    // Tries stay running: their agents live on, heartbeating to the first scheduler's process.
    let (store, first_executor) = executor(&db, Box::new(|_: &Attempt| None));
    let (_, second_executor) = executor(&db, Box::new(|_: &Attempt| None));
    register_chain(&store).await;
    let quick = Supervision {
        heartbeat_timeout: Duration::from_secs(2),
        scheduler_heartbeat: Duration::from_millis(200),
        ..Supervision::default()
    };
    let first_liveness = Liveness::shared(db.pool.clone());
    let (stop_first, first) = start_sharing(
        &store,
        first_executor.clone(),
        quick.clone(),
        first_liveness.clone(),
    );
    trigger_run(&store, "r1").await;
    first_dispatch(&first_executor).await;
    let attempt = first_executor.dispatched.lock().unwrap()[0].clone();
    let started = Command::ReportStarted {
        task_id: attempt.ti.task_id.clone(),
        map_index: attempt.ti.map_index,
        try_number: attempt.try_number,
        hostname: "test".into(),
        pid: None,
    };
    submit(
        &store,
        &Specs::default(),
        "chain",
        "r1",
        started,
        &Actor::named("agent"),
    )
    .await
    .unwrap();

    // The agent heartbeats to the first process (its service records each beat).
    let digest = leoflow_events::AttemptDigest::of(&attempt.attempt_token);
    let (stop_beating, beating) = watch::channel(false);
    let beats = tokio::spawn({
        let liveness = first_liveness.clone();
        let digest = digest.clone();
        async move {
            while !*beating.borrow() {
                liveness.touch(digest.clone());
                liveness.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });

    // The first scheduler steps down; one in another process, with its own memory, leads.
    let (stop_second, second) = start_sharing(
        &store,
        second_executor.clone(),
        quick,
        Liveness::shared(db.pool.clone()),
    );
    stop_first.send(true).unwrap();
    first.await.unwrap();
    let ended = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::TaskFailed(_) | Event::TaskUpForRetry(_)))
    };
    // Well past the 2 s heartbeat timeout counted from the new leader's start: still running.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < watch_until {
        let events = run_events(&store, "r1").await;
        assert!(
            !ended(&events),
            "the new leader failed a live try: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The agent dies: now the new leader fails its try.
    stop_beating.send(true).unwrap();
    beats.await.unwrap();
    assert_eq!(wait_for_run_end(&store, "r1").await, "failed");
    stop_second.send(true).unwrap();
    second.await.unwrap();
}

/// Registers the DAG of dag.json `document` (version `v1`) into `tenant`.
async fn register_in_tenant(store: &EventStore, tenant: &str, document: Value) {
    let dag_id = document["dag_id"].as_str().unwrap().to_owned();
    register_under(store, tenant, &dag_id, document).await;
}

/// Registers `document` into `tenant` as registering does: keyed in the tenant (`acme:etl`),
/// the document keeping its id. ([`register_in_tenant`] keys it by its id, as a non-default
/// tenant's DAG registered before keys is.)
async fn register_keyed(store: &EventStore, tenant: &str, document: Value) {
    let key = leoflow_events::dag_key(tenant, document["dag_id"].as_str().unwrap());
    register_under(store, tenant, &key, document).await;
}

async fn register_under(store: &EventStore, tenant: &str, dag_id: &str, document: Value) {
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let parsed = leoflow_events::catalog::DagParsed {
        tenant: tenant.into(),
        ..parsed_document(dag_id, "v1", &document_hash)
    };
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
        .await
        .unwrap();
}

/// A task with no upstream in `pool`.
fn pooled(id: &str, pool: &str) -> Value {
    let mut task = task(id, &[], 0);
    task["pool"] = json!(pool);
    task
}

/// Records `tenant`'s pool `name` with `slots`.
async fn set_pool(store: &EventStore, tenant: &str, name: &str, slots: i32) {
    let pool = leoflow_events::catalog::PoolSet {
        name: name.into(),
        slots,
        description: None,
        include_deferred: false,
        tenant: tenant.into(),
    };
    store
        .append(AppendBatch::new().push(pool, &Metadata::actor("test")))
        .await
        .unwrap();
}

/// `dag_id.task_id` of every try handed to `executor`, sorted.
fn dispatched_tasks(executor: &FakeExecutor) -> Vec<String> {
    let mut tasks: Vec<String> = executor
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .map(|a| format!("{}.{}", a.ti.dag_id, a.ti.task_id))
        .collect();
    tasks.sort();
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tenant_has_its_own_pools_and_a_pool_of_another_tenant_is_missing_to_it() {
    let db = fresh_database().await;
    // Tries stay queued: each holds its slot for the whole test.
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    set_pool(&store, "acme", "p", 1).await;
    set_pool(&store, "beta", "p", 1).await;
    set_pool(&store, "acme", "acme_only", 8).await;
    // The default tenant's default_pool closed: other tenants' default_pools stay open.
    set_pool(&store, leoflow_events::DEFAULT_TENANT, "default_pool", 0).await;
    register_in_tenant(
        &store,
        "acme",
        json!({"dag_id": "acme_etl",
               "tasks": [pooled("a1", "p"), pooled("a2", "p"), pooled("a3", "default_pool")]}),
    )
    .await;
    register_in_tenant(
        &store,
        "beta",
        json!({"dag_id": "beta_etl", "tasks": [pooled("b1", "p"), pooled("b2", "acme_only")]}),
    )
    .await;
    register_in_tenant(
        &store,
        leoflow_events::DEFAULT_TENANT,
        json!({"dag_id": "plain_etl", "tasks": [pooled("d1", "default_pool")]}),
    )
    .await;
    for dag_id in ["acme_etl", "beta_etl", "plain_etl"] {
        trigger_run_of(&store, dag_id, "r1").await;
    }
    let reactor = Reactor::new(store.clone(), executor.clone());
    let metrics = reactor.metrics();
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(async move { reactor.run(stopped).await.unwrap() });

    eventually("fewer than two tries were dispatched", || {
        executor.dispatched.lock().unwrap().len() >= 2
    })
    .await;
    // The rest of what fits is admitted meanwhile, and nothing else however long the
    // scheduler goes on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks = dispatched_tasks(&executor);
    assert!(
        tasks.contains(&"beta_etl.b1".to_owned()),
        "beta's p is not acme's: {tasks:?}"
    );
    let in_p = ["acme_etl.a1", "acme_etl.a2"];
    let acme = tasks.iter().filter(|t| in_p.contains(&t.as_str())).count();
    assert_eq!(
        acme, 1,
        "acme's p has one slot for its two tasks: {tasks:?}"
    );
    assert!(
        tasks.contains(&"acme_etl.a3".to_owned()),
        "acme's default_pool is not the default tenant's: {tasks:?}"
    );
    // The default tenant's default_pool has no slot, and beta has no pool "acme_only": b2 waits
    // as for a pool nobody has.
    assert_eq!(tasks.len(), 3, "{tasks:?}");

    let scrape = || {
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    let expected = [
        // Each tenant's "p" has its one slot taken by one of its own tasks ...
        r#"airflow_pool_open_slots{pool="p",tenant="acme"} 0"#,
        r#"airflow_pool_queued_slots{pool="p",tenant="acme"} 1"#,
        r#"airflow_pool_open_slots{pool="p",tenant="beta"} 0"#,
        r#"airflow_pool_queued_slots{pool="p",tenant="beta"} 1"#,
        // ... every tenant has a default_pool of its own, and the default tenant's series keep
        // the labels they had before tenants owned pools.
        r#"airflow_pool_open_slots{pool="default_pool"} 0"#,
        r#"airflow_pool_open_slots{pool="default_pool",tenant="acme"} 127"#,
        r#"airflow_pool_open_slots{pool="default_pool",tenant="beta"} 128"#,
    ];
    let text = scrape();
    for line in expected {
        assert!(text.lines().any(|l| l == line), "no {line} in:\n{text}");
    }
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert!(!scrape().contains(r#"pool="acme_only",tenant="beta""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reads_only_its_dags_tenants_variables_and_connections() {
    use leoflow_events::catalog::{ConnectionSet, VariableSet};
    use leoflow_executors::proto::lookup_request::Kind;
    use leoflow_executors::proto::task_agent_server::TaskAgent;
    use leoflow_executors::proto::{AttemptRef, FinishRequest, LookupRequest, finish_request};
    use leoflow_scheduler::agents::AgentService;
    use leoflow_secrets::{MasterKeys, Sealed, SecretKey, Vault};
    let db = fresh_database().await;
    // Tries stay running: their "agent" is this test.
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    let variable = |tenant: &str, key: &str, value: &str| VariableSet {
        key: key.into(),
        value: Sealed::clear(value),
        description: None,
        tenant: tenant.into(),
    };
    let connection = |tenant: &str, conn_id: &str, host: &str| ConnectionSet {
        conn_id: conn_id.into(),
        conn_type: "postgres".into(),
        description: None,
        host: Some(host.into()),
        schema: None,
        login: Some("reader".into()),
        password: Some(Sealed::clear(format!("{tenant}-password"))),
        port: Some(5432),
        extra: None,
        tenant: tenant.into(),
    };
    let test = Metadata::actor("test");
    let default = leoflow_events::DEFAULT_TENANT;
    store
        .append(
            AppendBatch::new()
                .push(variable("acme", "api_url", "https://acme.example"), &test)
                .push(
                    variable(default, "api_url", "https://default.example"),
                    &test,
                )
                .push(variable(default, "default_only", "x"), &test)
                .push(connection("acme", "warehouse", "acme.db"), &test)
                .push(connection(default, "warehouse", "default.db"), &test)
                .push(connection(default, "default_only", "other.db"), &test),
        )
        .await
        .unwrap();
    register_in_tenant(
        &store,
        "acme",
        json!({"dag_id": "acme_etl", "tasks": [task("load", &[], 0)]}),
    )
    .await;
    register_in_tenant(
        &store,
        default,
        json!({"dag_id": "plain_etl", "tasks": [task("load", &[], 0)]}),
    )
    .await;
    trigger_run_of(&store, "acme_etl", "r1").await;
    trigger_run_of(&store, "plain_etl", "r1").await;
    let (stop, handle) = start(&store, executor.clone());
    eventually("both tries were not dispatched", || {
        executor.dispatched.lock().unwrap().len() == 2
    })
    .await;
    let service = AgentService::new(
        store.clone(),
        Specs::default(),
        Liveness::default(),
        Duration::from_secs(1),
    )
    .with_vault(Vault::new(
        db.pool.clone(),
        MasterKeys::new(SecretKey::generate()),
    ));
    let reference = |dag_id: &str| {
        let attempt = executor
            .dispatched
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.ti.dag_id == dag_id)
            .cloned()
            .unwrap();
        AttemptRef {
            dag_id: dag_id.into(),
            run_id: "r1".into(),
            task_id: "load".into(),
            map_index: -1,
            try_number: attempt.try_number,
            attempt_token: attempt.attempt_token.to_string(),
        }
    };
    let lookup = async |dag_id: &str, kind: Kind, key: &str| -> Option<Value> {
        let request = LookupRequest {
            attempt: Some(reference(dag_id)),
            kind: kind as i32,
            key: key.into(),
        };
        let answer = service
            .lookup(tonic::Request::new(request))
            .await
            .unwrap()
            .into_inner();
        answer
            .found
            .then(|| serde_json::from_str(&answer.json).unwrap())
    };

    // The same key in two tenants: each DAG's task reads its own tenant's.
    assert_eq!(
        lookup("acme_etl", Kind::Variable, "api_url").await,
        Some(json!("https://acme.example"))
    );
    assert_eq!(
        lookup("plain_etl", Kind::Variable, "api_url").await,
        Some(json!("https://default.example"))
    );
    let warehouse = lookup("acme_etl", Kind::Connection, "warehouse")
        .await
        .unwrap();
    assert_eq!(
        (&warehouse["host"], &warehouse["password"]),
        (&json!("acme.db"), &json!("acme-password"))
    );
    let warehouse = lookup("plain_etl", Kind::Connection, "warehouse")
        .await
        .unwrap();
    assert_eq!(warehouse["host"], "default.db");
    // A key only another tenant has is not found.
    assert_eq!(
        lookup("acme_etl", Kind::Variable, "default_only").await,
        None
    );
    assert_eq!(
        lookup("acme_etl", Kind::Connection, "default_only").await,
        None
    );

    // What the agent reports of acme's try is recorded in acme.
    let finish = FinishRequest {
        attempt: Some(reference("acme_etl")),
        outcome: finish_request::Outcome::Success as i32,
        ..FinishRequest::default()
    };
    service.finish(tonic::Request::new(finish)).await.unwrap();
    let reported: Vec<Option<String>> = store
        .read_stream("run:acme_etl/r1", 1)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.metadata.actor.as_deref() == Some("agent"))
        .map(|e| e.metadata.tenant)
        .collect();
    assert!(!reported.is_empty(), "the agent's report was not recorded");
    assert!(
        reported.iter().all(|t| t.as_deref() == Some("acme")),
        "{reported:?}"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_scheduler_appends_for_a_dag_is_recorded_in_the_dags_tenant() {
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| Some(Outcome::Success)));
    // Daily, from two days ago: the timetable queues a run of each at once.
    let start_date = Utc::now() - chrono::Duration::days(2);
    let daily = |dag_id: &str| {
        json!({
            "dag_id": dag_id, "tasks": [task("only", &[], 0)],
            "schedule": {"type": "cron", "expression": "0 0 * * *"}, "timezone": "UTC",
            "start_date": start_date.to_rfc3339(), "end_date": null, "catchup": false,
        })
    };
    register_in_tenant(&store, "acme", daily("acme_daily")).await;
    register_in_tenant(&store, leoflow_events::DEFAULT_TENANT, daily("plain_daily")).await;
    let (stop, handle) = start(&store, executor.clone());
    let ended = async |dag_id: &str| {
        let succeeded = |e: &leoflow_events::RecordedEvent| matches!(e.decode().unwrap(), Event::RunSucceeded(r) if r.dag_id == dag_id);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !store
            .read_from(1, 10_000)
            .await
            .unwrap()
            .iter()
            .any(succeeded)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no run of {dag_id} ended"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    ended("acme_daily").await;
    ended("plain_daily").await;
    stop.send(true).unwrap();
    handle.await.unwrap();

    // The scheduler's events: its election belongs to no DAG, and so to no tenant; those about
    // a DAG's runs (queued by the timetable, started, tasks scheduled, queued, dispatched) are
    // recorded in the DAG's tenant — the default one's too, as a person acting in it is.
    let mut by_dag: std::collections::BTreeMap<String, Vec<(String, Option<String>)>> =
        Default::default();
    for recorded in store.read_from(1, 10_000).await.unwrap() {
        if recorded.metadata.actor.as_deref() != Some("scheduler") {
            continue;
        }
        let dag_id = recorded.decode().unwrap().dag_id().unwrap_or("").to_owned();
        by_dag
            .entry(dag_id)
            .or_default()
            .push((recorded.event_type, recorded.metadata.tenant));
    }
    let types =
        |dag_id: &str| -> Vec<&str> { by_dag[dag_id].iter().map(|(t, _)| t.as_str()).collect() };
    for dag_id in ["acme_daily", "plain_daily"] {
        for expected in ["RunQueued", "RunStarted", "TaskScheduled", "TaskDispatched"] {
            assert!(types(dag_id).contains(&expected), "{dag_id}: {by_dag:?}");
        }
    }
    let tenants = |dag_id: &str| -> std::collections::BTreeSet<Option<&str>> {
        by_dag[dag_id].iter().map(|(_, t)| t.as_deref()).collect()
    };
    assert_eq!(tenants("acme_daily"), [Some("acme")].into());
    assert_eq!(tenants("plain_daily"), [Some("default")].into());
    assert_eq!(types(""), ["SchedulerElected"]);
    assert_eq!(tenants(""), [None].into());
}

/// Hands tries to a [`FakeExecutor`] while its tenant has fewer than `cap` in flight, as Pro's
/// pod executor caps pods per namespace.
struct Capped {
    inner: Arc<FakeExecutor>,
    cap: usize,
    in_flight: Mutex<std::collections::HashMap<String, usize>>,
}

impl Executor for Capped {
    fn name(&self) -> &str {
        "capped"
    }

    fn dispatch(&self, attempt: Attempt) {
        *self
            .in_flight
            .lock()
            .unwrap()
            .entry(attempt.placement.tenant.clone())
            .or_default() += 1;
        self.inner.dispatch(attempt);
    }

    fn terminate(&self, attempt: &leoflow_scheduler::reactor::AttemptKey, reason: &str) {
        self.inner.terminate(attempt, reason);
    }

    fn room(
        &self,
        placement: &leoflow_scheduler::reactor::Placement,
    ) -> Option<leoflow_scheduler::reactor::Room> {
        let in_flight = self.in_flight.lock().unwrap();
        let used = in_flight.get(&placement.tenant).copied().unwrap_or(0);
        Some(leoflow_scheduler::reactor::Room {
            group: placement.tenant.clone(),
            free: self.cap.saturating_sub(used),
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_s_cap_holds_a_tenant_s_tries_back_and_each_try_knows_where_it_runs() {
    let db = fresh_database().await;
    let (store, fake) = executor(&db, Box::new(|_: &Attempt| None));
    let capped = Arc::new(Capped {
        inner: fake.clone(),
        cap: 2,
        in_flight: Mutex::default(),
    });
    let mut load = task("load", &[], 0);
    load["execution_timeout"] = json!(60.0);
    load["resources"] = json!({"cpu": "2", "memory": "1Gi"});
    load["pod"] = json!({"node_selector": {"pool": "batch"}});
    let document = json!({"dag_id": "acme_etl",
        "tasks": [task("extract", &[], 0), task("transform", &[], 0), load]});
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let parsed = leoflow_events::catalog::DagParsed {
        tenant: "acme".into(),
        provenance: Some(leoflow_events::catalog::Provenance {
            image: Some("registry.example.com/acme:3".into()),
            git_commit: None,
        }),
        ..parsed_document("acme_etl", "v1", &document_hash)
    };
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
        .await
        .unwrap();
    register_in_tenant(
        &store,
        "beta",
        json!({"dag_id": "beta_etl", "tasks": [task("b1", &[], 0)]}),
    )
    .await;
    trigger_run_of(&store, "acme_etl", "r1").await;
    trigger_run_of(&store, "beta_etl", "r1").await;
    let (exits, exits_rx) = tokio::sync::mpsc::unbounded_channel();
    let reactor = Reactor::new(store.clone(), capped.clone()).with_exits(exits_rx);
    let (stop, stopped) = watch::channel(false);
    let handle = tokio::spawn(async move { reactor.run(stopped).await.unwrap() });

    eventually("three tries were dispatched", || {
        fake.dispatched.lock().unwrap().len() >= 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let tasks = dispatched_tasks(&fake);
    let acme: Vec<&String> = tasks.iter().filter(|t| t.starts_with("acme")).collect();
    assert_eq!(acme.len(), 2, "acme's cap is 2: {tasks:?}");
    assert!(
        tasks.contains(&"beta_etl.b1".to_owned()),
        "beta is not held back: {tasks:?}"
    );

    // Each try carries its DAG's tenant and image, and its task's settings.
    for attempt in fake.dispatched.lock().unwrap().iter() {
        let placement = &attempt.placement;
        match attempt.ti.dag_id.as_str() {
            "acme_etl" => {
                assert_eq!(placement.tenant, "acme");
                assert_eq!(
                    placement.image.as_deref(),
                    Some("registry.example.com/acme:3")
                );
            }
            _ => assert_eq!(
                (placement.tenant.as_str(), placement.image.as_ref()),
                ("beta", None)
            ),
        }
        if attempt.ti.task_id == "load" {
            assert_eq!(
                placement.resources,
                Some(json!({"cpu": "2", "memory": "1Gi"}))
            );
            assert_eq!(
                placement.pod,
                Some(json!({"node_selector": {"pool": "batch"}}))
            );
            assert_eq!(placement.execution_timeout, Some(60.0));
        }
    }

    // One of acme's pods ends: its place is free, and the exit wakes the scheduler.
    let ended = fake
        .dispatched
        .lock()
        .unwrap()
        .iter()
        .find(|a| a.ti.dag_id == "acme_etl")
        .unwrap()
        .clone();
    *capped.in_flight.lock().unwrap().get_mut("acme").unwrap() -= 1;
    exits
        .send(leoflow_scheduler::reactor::AttemptExit {
            attempt: ended.key(),
            detail: "pod ended".into(),
        })
        .unwrap();
    eventually("acme's third task was dispatched", || {
        dispatched_tasks(&fake)
            .iter()
            .filter(|t| t.starts_with("acme"))
            .count()
            == 3
    })
    .await;
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_whose_agent_has_not_started_gets_the_start_timeout() {
    let db = fresh_database().await;
    // The agent never starts (a pod waiting for its image).
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    register_chain(&store).await;
    trigger_run(&store, "r1").await;
    let supervision = Supervision {
        heartbeat_timeout: Duration::from_millis(300),
        start_timeout: Duration::from_secs(3),
        ..Supervision::default()
    };
    let started = tokio::time::Instant::now();
    let (stop, handle) = start_supervised(&store, executor.clone(), supervision);
    first_dispatch(&executor).await;
    // Far past the heartbeat timeout, the try is still given its time to start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(executor.dispatched.lock().unwrap().len(), 1);
    assert_eq!(wait_for_run_end(&store, "r1").await, "failed");
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let reason: String =
        sqlx::query_scalar("SELECT payload->>'reason' FROM events WHERE type = 'TaskFailed'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        reason,
        "the task agent never started: no sign of life within 3 s of the dispatch (its \
         process or pod could not start)"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_triggers_and_reads_runs_of_its_tenants_dags_only() {
    use leoflow_executors::proto::task_agent_server::TaskAgent;
    use leoflow_executors::proto::{ReadDagRunRequest, TriggerDagRunRequest};
    use leoflow_scheduler::agents::AgentService;
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    let default = leoflow_events::DEFAULT_TENANT;
    for (tenant, dag_id) in [
        ("acme", "acme_etl"),
        ("acme", "acme_target"),
        (default, "plain_etl"),
    ] {
        register_keyed(
            &store,
            tenant,
            json!({"dag_id": dag_id, "tasks": [task("load", &[], 0)]}),
        )
        .await;
    }
    // The log keys acme's DAGs `acme:…`; its task names them by their ids.
    trigger_run_of(&store, "acme:acme_etl", "r1").await;
    // The target stays paused: its runs wait queued, none of its tries in flight to stop a
    // reset's clear.
    let actor = leoflow_events::Actor::named("test");
    leoflow_scheduler::control::set_paused(&store, "acme:acme_target", true, &actor)
        .await
        .unwrap();
    let (stop, handle) = start(&store, executor.clone());
    eventually("the try was not dispatched", || {
        !executor.dispatched.lock().unwrap().is_empty()
    })
    .await;
    let service = AgentService::new(
        store.clone(),
        Specs::default(),
        Liveness::default(),
        Duration::from_secs(1),
    );
    let attempt = executor.dispatched.lock().unwrap()[0].clone();
    let reference = attempt_ref(&attempt);
    let trigger = async |dag_id: &str, run_id: &str, reset: bool| {
        let request = TriggerDagRunRequest {
            attempt: Some(reference.clone()),
            dag_id: dag_id.into(),
            run_id: Some(run_id.into()),
            conf_json: r#"{"message": "hi"}"#.into(),
            logical_date: Some("2026-03-04T00:00:00+00:00".into()),
            reset_dag_run: reset,
            fail_when_dag_is_paused: false,
            note: None,
        };
        service
            .trigger_dag_run(tonic::Request::new(request))
            .await
            .map(|answer| serde_json::from_str::<Value>(&answer.into_inner().json).unwrap())
    };
    let read = async |dag_id: &str, logical_date: &str| {
        let request = ReadDagRunRequest {
            attempt: Some(reference.clone()),
            dag_id: dag_id.into(),
            run_id: None,
            logical_date: Some(logical_date.into()),
        };
        let answer = service
            .read_dag_run(tonic::Request::new(request))
            .await
            .unwrap()
            .into_inner();
        answer
            .found
            .then(|| serde_json::from_str::<Value>(&answer.json).unwrap())
    };

    let first = trigger("acme_target", "by_operator", false).await.unwrap();
    assert_eq!(
        first,
        json!({"dag_id": "acme_target", "run_id": "by_operator", "existed": false})
    );
    let again = trigger("acme_target", "by_operator", true).await.unwrap();
    assert_eq!(again["existed"], true);
    let run = store
        .read_stream("run:acme:acme_target/by_operator", 1)
        .await
        .unwrap();
    let queued = run
        .iter()
        .find(|e| e.event_type == "RunQueued")
        .expect("the run was queued");
    assert_eq!(queued.metadata.tenant.as_deref(), Some("acme"));
    assert_eq!(queued.metadata.actor.as_deref(), Some("agent"));
    let seen = read("acme_target", "2026-03-04T00:00:00+00:00")
        .await
        .expect("the run is found by its logical date");
    assert_eq!(seen["run_id"], "by_operator");
    assert_eq!(read("acme_target", "2026-03-05T00:00:00+00:00").await, None);
    // Without such a run, the answer names the DAG's tasks (for `check_existence`).
    let missing = service
        .read_dag_run(tonic::Request::new(ReadDagRunRequest {
            attempt: Some(reference.clone()),
            dag_id: "acme_target".into(),
            run_id: Some("nope".into()),
            logical_date: None,
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!missing.found);
    assert_eq!(
        serde_json::from_str::<Value>(&missing.json).unwrap(),
        json!({"dag_id": "acme_target", "task_ids": ["load"]})
    );
    // A note goes on the new run; a paused DAG is refused when the task asks for it.
    let noted = TriggerDagRunRequest {
        attempt: Some(reference.clone()),
        dag_id: "acme_target".into(),
        run_id: Some("noted".into()),
        conf_json: "{}".into(),
        note: Some("from the parent".into()),
        ..TriggerDagRunRequest::default()
    };
    service
        .trigger_dag_run(tonic::Request::new(noted.clone()))
        .await
        .unwrap();
    let note = leoflow_projector::read::runs::find(store.pool(), "acme:acme_target", "noted")
        .await
        .unwrap()
        .expect("the noted run")
        .note;
    assert_eq!(note.as_deref(), Some("from the parent"));
    let paused = TriggerDagRunRequest {
        run_id: Some("while_paused".into()),
        fail_when_dag_is_paused: true,
        ..noted
    };
    let refused = service
        .trigger_dag_run(tonic::Request::new(paused))
        .await
        .unwrap_err();
    assert_eq!(refused.message(), "Dag acme_target is paused");
    // A DAG of another tenant is not there for acme's task: refused, and not found.
    let refused = trigger("plain_etl", "sneaky", false).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("no DAG \"plain_etl\" to trigger"),
        "{refused:?}"
    );
    for stream in ["run:plain_etl/sneaky", "run:acme:plain_etl/sneaky"] {
        let none = store.read_stream(stream, 1).await.unwrap();
        assert!(none.is_empty(), "{none:?}");
    }
    assert_eq!(read("plain_etl", "2026-03-04T00:00:00+00:00").await, None);
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_s_context_has_the_previous_successful_run_s_dates() {
    use chrono::TimeZone;
    use leoflow_events::Actor;
    use leoflow_executors::proto::task_agent_server::TaskAgent;
    use leoflow_executors::proto::{FinishRequest, RegisterRequest, finish_request};
    use leoflow_scheduler::agents::AgentService;
    use leoflow_scheduler::control;
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    // Registered with its source, as a project is: a try's assignment carries it.
    let document = json!({"dag_id": "inc", "tasks": [task("load", &[], 0)]});
    let document_hash = store
        .put_blob("application/json", &document.to_string())
        .await
        .unwrap();
    let source_hash = store
        .put_blob("text/x-python", "# the DAG file\n")
        .await
        .unwrap();
    let parsed = leoflow_events::catalog::DagParsed {
        source_hash: Some(source_hash),
        ..leoflow_events::sample::parsed_document("inc", "v1", &document_hash)
    };
    store
        .append(AppendBatch::new().push(parsed, &Metadata::actor("test")))
        .await
        .unwrap();
    let (stop, handle) = start(&store, executor.clone());
    let service = AgentService::new(
        store.clone(),
        Specs::default(),
        Liveness::default(),
        Duration::from_secs(1),
    );
    // Triggers a run at `day` of March 2026 and registers its try: its run context.
    let run_at = async |run_id: &str, day: u32| {
        let request = TriggerRequest {
            run_id: Some(run_id.into()),
            logical_date: Some(Utc.with_ymd_and_hms(2026, 3, day, 0, 0, 0).unwrap()),
            triggered_by: "test".into(),
            ..TriggerRequest::default()
        };
        control::trigger_dag(&store, "inc", request, &Actor::named("test"))
            .await
            .unwrap();
        let attempt = loop {
            let found = executor
                .dispatched
                .lock()
                .unwrap()
                .iter()
                .find(|a| a.ti.run_id == run_id)
                .cloned();
            if let Some(attempt) = found {
                break attempt;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let reference = attempt_ref(&attempt);
        let register = RegisterRequest {
            attempt: Some(reference.clone()),
            hostname: "h".into(),
            pid: 1,
        };
        let assignment = service
            .register(tonic::Request::new(register))
            .await
            .unwrap()
            .into_inner();
        (
            reference,
            serde_json::from_str::<Value>(&assignment.run_json).unwrap(),
        )
    };
    let (first, context) = run_at("r1", 1).await;
    assert_eq!(context["prev_success"], Value::Null, "{context}");
    let finish = FinishRequest {
        attempt: Some(first),
        outcome: finish_request::Outcome::Success as i32,
        ..FinishRequest::default()
    };
    service.finish(tonic::Request::new(finish)).await.unwrap();
    assert_eq!(wait_for_run_end(&store, "r1").await, "success");
    let (_, context) = run_at("r2", 2).await;
    let previous = &context["prev_success"];
    assert_eq!(
        previous["data_interval_start"], "2026-03-01T00:00:00+00:00",
        "{context}"
    );
    assert_eq!(
        previous["data_interval_end"], "2026-03-01T00:00:00+00:00",
        "{context}"
    );
    assert!(
        previous["start_date"].is_string() && previous["end_date"].is_string(),
        "{context}"
    );
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_s_max_active_tis_per_dag_holds_its_other_instances_back() {
    use leoflow_executors::proto::task_agent_server::TaskAgent;
    use leoflow_executors::proto::{FinishRequest, finish_request};
    use leoflow_scheduler::agents::AgentService;
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    let mut capped = task("load", &[], 0);
    capped["max_active_tis_per_dag"] = json!(1);
    register_in_tenant(
        &store,
        leoflow_events::DEFAULT_TENANT,
        json!({"dag_id": "capped", "tasks": [capped]}),
    )
    .await;
    trigger_run_of(&store, "capped", "r1").await;
    trigger_run_of(&store, "capped", "r2").await;
    let (stop, handle) = start(&store, executor.clone());
    eventually("no try was dispatched", || {
        !executor.dispatched.lock().unwrap().is_empty()
    })
    .await;
    // Both runs run, but only one instance of `load` at a time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let first = {
        let dispatched = executor.dispatched.lock().unwrap();
        assert_eq!(dispatched.len(), 1, "{dispatched:?}");
        dispatched[0].clone()
    };
    let service = AgentService::new(
        store.clone(),
        Specs::default(),
        Liveness::default(),
        Duration::from_secs(1),
    );
    let finish = FinishRequest {
        attempt: Some(attempt_ref(&first)),
        outcome: finish_request::Outcome::Success as i32,
        ..FinishRequest::default()
    };
    service.finish(tonic::Request::new(finish)).await.unwrap();
    eventually(
        "the other run's instance was not dispatched once the first ended",
        || executor.dispatched.lock().unwrap().len() == 2,
    )
    .await;
    let second = executor.dispatched.lock().unwrap()[1].clone();
    assert_ne!(second.ti.run_id, first.ti.run_id);
    stop.send(true).unwrap();
    handle.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn depends_on_past_holds_a_task_until_its_previous_run_s_instance_succeeded() {
    use chrono::TimeZone;
    use leoflow_events::Actor;
    use leoflow_executors::proto::task_agent_server::TaskAgent;
    use leoflow_executors::proto::{FinishRequest, finish_request};
    use leoflow_scheduler::agents::AgentService;
    use leoflow_scheduler::control;
    let db = fresh_database().await;
    let (store, executor) = executor(&db, Box::new(|_: &Attempt| None));
    let mut load = task("load", &[], 0);
    load["depends_on_past"] = json!(true);
    register_in_tenant(
        &store,
        leoflow_events::DEFAULT_TENANT,
        json!({"dag_id": "past", "tasks": [load]}),
    )
    .await;
    let service = AgentService::new(
        store.clone(),
        Specs::default(),
        Liveness::default(),
        Duration::from_secs(1),
    );
    let trigger_at = async |run_id: &str, day: u32| {
        let request = TriggerRequest {
            run_id: Some(run_id.into()),
            logical_date: Some(Utc.with_ymd_and_hms(2026, 3, day, 0, 0, 0).unwrap()),
            triggered_by: "test".into(),
            ..TriggerRequest::default()
        };
        control::trigger_dag(&store, "past", request, &Actor::named("test"))
            .await
            .unwrap();
    };
    let dispatched_runs = || -> Vec<String> {
        executor
            .dispatched
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.ti.run_id.clone())
            .collect()
    };
    let finish = async |run_id: &str, outcome: finish_request::Outcome| {
        let attempt = executor
            .dispatched
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|a| a.ti.run_id == run_id)
            .cloned()
            .unwrap();
        let request = FinishRequest {
            attempt: Some(attempt_ref(&attempt)),
            outcome: outcome as i32,
            ..FinishRequest::default()
        };
        service.finish(tonic::Request::new(request)).await.unwrap();
    };
    // Both runs are queued before the scheduler starts: the later one waits for the earlier.
    trigger_at("second", 2).await;
    trigger_at("first", 1).await;
    let (stop, handle) = start(&store, executor.clone());
    eventually("the first run's task was not dispatched", || {
        dispatched_runs() == ["first"]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        dispatched_runs(),
        ["first"],
        "the second run's task went before the first's ended"
    );
    finish("first", finish_request::Outcome::Success).await;
    eventually(
        "the second run's task did not go once the first succeeded",
        || dispatched_runs() == ["first", "second"],
    )
    .await;
    // A failed previous instance holds the next run's task back for good (as in Airflow).
    trigger_at("third", 3).await;
    finish("second", finish_request::Outcome::Failed).await;
    assert_eq!(wait_for_run_end(&store, "second").await, "failed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(dispatched_runs(), ["first", "second"]);
    stop.send(true).unwrap();
    handle.await.unwrap();
}

/// The reference an agent gives of its attempt: the try the executor was handed.
fn attempt_ref(attempt: &Attempt) -> leoflow_executors::proto::AttemptRef {
    leoflow_executors::proto::AttemptRef {
        dag_id: attempt.ti.dag_id.clone(),
        run_id: attempt.ti.run_id.clone(),
        task_id: attempt.ti.task_id.clone(),
        map_index: attempt.ti.map_index,
        try_number: attempt.try_number,
        attempt_token: attempt.attempt_token.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_an_external_task_marker_clears_the_task_it_marks_and_follows_on() {
    use leoflow_events::TaskInstanceKey;
    use leoflow_scheduler::control;
    use std::collections::HashMap;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone()).with_projection(Arc::new(ReadModels));
    let marker = |id: &str, dag: &str, task_id: &str, upstream: &[&str]| {
        json!({"task_id": id, "operator": "ExternalTaskMarker", "upstream": upstream, "trigger_rule": "all_success",
               "retries": 0, "retry_delay": 1.0, "retry_exponential_backoff": false, "max_retry_delay": null,
               "execution_timeout": null, "pool": "default_pool", "pool_slots": 1, "priority_weight": 1,
               "queue": "default",
               "custom": {"module": "airflow.providers.standard.sensors.external_task",
                          "class": "ExternalTaskMarker",
                          "arguments": {"external_dag_id": dag, "external_task_id": task_id, "recursion_depth": 2}}})
    };
    let default = leoflow_events::DEFAULT_TENANT;
    // parent.mark → child.wait (→ child.after, child.mark_on → grandchild.wait
    // (→ grandchild.mark_on → great.wait, which the depth of 2 does not reach)).
    let documents = [
        json!({"dag_id": "parent", "tasks": [marker("mark", "child", "wait", &[])]}),
        json!({"dag_id": "child", "tasks": [task("wait", &[], 0), task("after", &["wait"], 0),
                                             task("aside", &[], 0),
                                             marker("mark_on", "grandchild", "wait", &["wait"])]}),
        json!({"dag_id": "grandchild", "tasks": [task("wait", &[], 0),
                                                  marker("mark_on", "great", "wait", &["wait"])]}),
        json!({"dag_id": "great", "tasks": [task("wait", &[], 0)]}),
    ];
    for document in documents {
        register_in_tenant(&store, default, document).await;
    }
    let actor = Actor::named("test");
    let specs = Specs::default();
    let at: chrono::DateTime<Utc> = "2026-03-04T00:00:00Z".parse().unwrap();
    let mut runs = HashMap::new();
    for dag_id in ["parent", "child", "grandchild", "great"] {
        let request = TriggerRequest {
            logical_date: Some(at),
            triggered_by: "test".into(),
            ..TriggerRequest::default()
        };
        let queued = control::trigger_dag(&store, dag_id, request, &actor)
            .await
            .unwrap();
        let Ok(Event::RunQueued(queued)) = queued.decode() else {
            panic!("{queued:?}")
        };
        // Every task instance done (marked), so each has something to clear.
        let tasks: &[&str] = match dag_id {
            "parent" => &["mark"],
            "child" => &["wait", "after", "aside", "mark_on"],
            "grandchild" => &["wait", "mark_on"],
            _ => &["wait"],
        };
        for task_id in tasks {
            let ti = TaskInstanceKey::new(dag_id, &queued.run_id, task_id);
            control::mark_task(&store, &specs, &ti, true, &actor)
                .await
                .unwrap();
        }
        runs.insert(dag_id, queued.run_id);
    }

    // The dry run shows what the clear will clear, in the other DAGs' runs too.
    let scopes = control::clear_scopes(
        &store,
        &specs,
        "parent",
        &runs["parent"],
        vec![("mark".into(), None)],
        false,
    )
    .await
    .unwrap();
    let shown: Vec<(&str, Vec<&str>)> = scopes
        .iter()
        .map(|(dag_id, run_id, scope)| {
            assert_eq!(run_id, &runs[dag_id.as_str()], "{dag_id}");
            let tasks = scope.whole_tasks.iter().map(String::as_str).collect();
            (dag_id.as_str(), tasks)
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("parent", vec!["mark"]),
            ("child", vec!["after", "mark_on", "wait"]),
            ("grandchild", vec!["mark_on", "wait"]),
        ]
    );

    control::clear_tasks(
        &store,
        &specs,
        "parent",
        &runs["parent"],
        vec!["mark".into()],
        false,
        &actor,
    )
    .await
    .unwrap();
    let state = |dag_id: &'static str, task_id: &'static str| {
        let (store, run_id) = (store.clone(), runs[dag_id].clone());
        async move {
            leoflow_projector::read::task_instances::find(
                store.pool(),
                dag_id,
                &run_id,
                task_id,
                -1,
            )
            .await
            .unwrap()
            .and_then(|ti| ti.state)
        }
    };
    // Cleared: the marked task and what is downstream of it, then what its marker marks.
    for (dag_id, task_id) in [
        ("child", "wait"),
        ("child", "after"),
        ("child", "mark_on"),
        ("grandchild", "wait"),
        ("grandchild", "mark_on"),
    ] {
        assert_eq!(state(dag_id, task_id).await, None, "{dag_id}.{task_id}");
    }
    // Not cleared: what the marked task does not lead to, and past the recursion depth.
    assert_eq!(state("child", "aside").await.as_deref(), Some("success"));
    assert_eq!(state("great", "wait").await.as_deref(), Some("success"));
}
