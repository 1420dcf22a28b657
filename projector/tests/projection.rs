//! Inline projections, replay, verify and catch-up against a real Postgres.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use leoflow_events::catalog::*;
use leoflow_events::sample::Workload;
use leoflow_events::{AppendBatch, AppendError, Event, EventStore, Metadata};
use leoflow_postgres::testing::fresh_database;
use leoflow_projector::replay::{self, Until};
use leoflow_projector::rows::*;
use leoflow_projector::{ProjectError, ReadModels};
use serde_json::json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

fn store(pool: &PgPool) -> EventStore {
    EventStore::new(pool.clone()).with_projection(Arc::new(ReadModels))
}

async fn append(store: &EventStore, events: Vec<Event>) -> Result<(), AppendError> {
    let mut batch = AppendBatch::new();
    for event in events {
        batch = batch.push(event, &Metadata::actor("test"));
    }
    store.append(batch).await.map(|_| ())
}

fn parsed(dag_id: &str, hash: &str) -> Event {
    DagParsed {
        dag_id: dag_id.into(),
        fileloc: format!("dags/{dag_id}/dag.py"),
        bundle_name: "dags-folder".into(),
        version_hash: hash.into(),
        source_hash: None,
        document_hash: None,
        description: Some("ETL".into()),
        owners: vec!["ana".into(), "bo".into()],
        tags: vec!["etl".into()],
        timetable_summary: Some("@daily".into()),
        max_active_runs: 16,
        max_active_tasks: 16,
        catchup: false,
        is_paused_upon_creation: true,
        access_control: Default::default(),
        tenant: leoflow_events::DEFAULT_TENANT.into(),
        provenance: None,
        asset_expression: None,
        asset_references: Vec::new(),
        alias_references: Vec::new(),
    }
    .into()
}

fn queued(dag_id: &str, run_id: &str) -> Event {
    RunQueued {
        dag_id: dag_id.into(),
        run_id: run_id.into(),
        run_type: RunType::Manual,
        logical_date: None,
        data_interval_start: None,
        data_interval_end: None,
        run_after: "2026-11-23T10:00:00Z".parse().unwrap(),
        conf: json!({"x": 1}),
        triggered_by: "rest_api".into(),
        dag_version_hash: Some("h1".into()),
        task_ids: Vec::new(),
        consumed_asset_events: Vec::new(),
    }
    .into()
}

async fn scalar<T>(pool: &PgPool, sql: &'static str) -> T
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + Send + Unpin,
{
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn dag_versions_pause_and_import_errors_are_projected() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    append(&store, vec![parsed("etl", "h1")]).await.unwrap();
    // Same hash: no new version.
    append(&store, vec![parsed("etl", "h1")]).await.unwrap();
    append(
        &store,
        vec![
            DagImportFailed {
                fileloc: "dags/etl/dag.py".into(),
                bundle_name: "dags-folder".into(),
                error: "SyntaxError: line 3".into(),
                tenant: "default".into(),
            }
            .into(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        scalar::<i64>(&db.pool, "SELECT count(*) FROM import_error").await,
        1
    );

    append(
        &store,
        vec![
            parsed("etl", "h2"),
            DagUnpaused {
                dag_id: "etl".into(),
            }
            .into(),
        ],
    )
    .await
    .unwrap();
    let dag = sqlx::query("SELECT * FROM dag WHERE dag_id = 'etl'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!dag.get::<bool, _>("is_paused"));
    assert_eq!(dag.get::<i32, _>("latest_version_number"), 2);
    assert_eq!(dag.get::<String, _>("owners"), "ana, bo");
    let versions: Vec<(i32, String)> =
        sqlx::query_as("SELECT version_number, version_hash FROM dag_version ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(versions, [(1, "h1".into()), (2, "h2".into())]);
    // Parsing again cleared the import error.
    assert_eq!(
        scalar::<i64>(&db.pool, "SELECT count(*) FROM import_error").await,
        0
    );
}

#[tokio::test]
async fn task_lifecycle_with_a_retry_keeps_every_try() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let ti = TaskInstanceKey::new("etl", "r1", "load");
    let token = Uuid::new_v4();
    let attempt = |n: i32| -> Vec<Event> {
        vec![
            TaskScheduled {
                ti: ti.clone(),
                try_number: n,
            }
            .into(),
            TaskQueued {
                ti: ti.clone(),
                try_number: n,
                pool: "default_pool".into(),
                pool_slots: 1,
                priority_weight: 3,
                queue: "default".into(),
            }
            .into(),
            TaskDispatched {
                ti: ti.clone(),
                try_number: n,
                attempt_digest: leoflow_events::AttemptDigest::of(&token),
                executor: "subprocess".into(),
            }
            .into(),
            TaskStarted {
                ti: ti.clone(),
                try_number: n,
                hostname: "host".into(),
                pid: Some(42),
            }
            .into(),
        ]
    };
    let mut events = vec![parsed("etl", "h1"), queued("etl", "r1")];
    events.push(
        RunStarted {
            dag_id: "etl".into(),
            run_id: "r1".into(),
        }
        .into(),
    );
    events.extend(attempt(1));
    events.push(
        TaskUpForRetry {
            ti: ti.clone(),
            try_number: 1,
            reason: "boom".into(),
            retry_at: "2026-11-23T10:05:00Z".parse().unwrap(),
        }
        .into(),
    );
    append(&store, events).await.unwrap();
    // The second try arrives in later appends, one event per transaction.
    for event in attempt(2) {
        append(&store, vec![event]).await.unwrap();
    }
    append(
        &store,
        vec![
            TaskSucceeded {
                ti: ti.clone(),
                try_number: 2,
            }
            .into(),
            XComPushed {
                ti: ti.clone(),
                try_number: 2,
                key: "return_value".into(),
                value_hash: "abc".into(),
                size_bytes: 3,
                length: None,
            }
            .into(),
            RunSucceeded {
                dag_id: "etl".into(),
                run_id: "r1".into(),
            }
            .into(),
        ],
    )
    .await
    .unwrap();

    let row = sqlx::query("SELECT * FROM task_instance")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(
        row.get::<Option<String>, _>("state").as_deref(),
        Some("success")
    );
    assert_eq!(row.get::<i32, _>("try_number"), 2);
    assert_eq!(row.get::<Option<String>, _>("failure_reason"), None);
    assert_eq!(row.get::<Option<i32>, _>("priority_weight"), Some(3));
    let start: DateTime<Utc> = row.get::<Option<DateTime<Utc>>, _>("start_date").unwrap();
    let end: DateTime<Utc> = row.get::<Option<DateTime<Utc>>, _>("end_date").unwrap();
    assert!(end >= start);

    let tries: Vec<(i32, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT try_number, state, failure_reason FROM task_instance_try ORDER BY try_number",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        tries,
        [
            (1, Some("up_for_retry".into()), Some("boom".into())),
            (2, Some("success".into()), None)
        ]
    );
    let run = sqlx::query("SELECT * FROM dag_run")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(run.get::<String, _>("state"), "success");
    assert_eq!(
        run.get::<i64, _>("id"),
        2,
        "the run id is its RunQueued position"
    );
    assert_eq!(
        scalar::<i64>(&db.pool, "SELECT count(*) FROM xcom").await,
        1
    );
    let checkpoints: Vec<(String, i64)> =
        sqlx::query_as("SELECT projection, position FROM projection_checkpoints ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let head = store.head().await.unwrap();
    assert_eq!(checkpoints.len(), 4);
    assert!(
        checkpoints.iter().all(|(_, p)| *p == head),
        "{checkpoints:?}"
    );
}

#[tokio::test]
async fn an_event_the_read_models_contradict_is_refused_and_nothing_is_written() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let err = append(
        &store,
        vec![
            VariableSet {
                key: "k".into(),
                value: Sealed::clear("v"),
                description: None,
                tenant: leoflow_events::DEFAULT_TENANT.into(),
            }
            .into(),
            RunStarted {
                dag_id: "etl".into(),
                run_id: "never-queued".into(),
            }
            .into(),
        ],
    )
    .await
    .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("position 2"), "{message}");
    assert!(
        message.contains("unknown dag run etl/never-queued"),
        "{message}"
    );
    assert_eq!(store.head().await.unwrap(), 0);
    assert_eq!(
        scalar::<i64>(&db.pool, "SELECT count(*) FROM variable").await,
        0
    );
}

#[tokio::test]
async fn row_structs_match_their_tables() {
    let db = fresh_database().await;
    async fn check<R: ReadModelRow>(pool: &PgPool) {
        let mut in_db: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = $1",
        )
        .bind(R::TABLE)
        .fetch_all(pool)
        .await
        .unwrap();
        in_db.sort();
        assert_eq!(in_db, columns::<R>(), "columns of {}", R::TABLE);
    }
    check::<DagRow>(&db.pool).await;
    check::<DagVersionRow>(&db.pool).await;
    check::<ImportErrorRow>(&db.pool).await;
    check::<DagRunRow>(&db.pool).await;
    check::<TaskInstanceRow>(&db.pool).await;
    check::<TaskInstanceTryRow>(&db.pool).await;
    check::<XComRow>(&db.pool).await;
    check::<VariableRow>(&db.pool).await;
    check::<ConnectionRow>(&db.pool).await;
    check::<PoolRow>(&db.pool).await;
}

async fn randomized_workload(store: &EventStore, seed: u64, min_events: usize) -> i64 {
    for batch in Workload::new(seed, 4).batches(min_events, 30) {
        append(store, batch).await.unwrap();
    }
    store.head().await.unwrap()
}

#[tokio::test]
async fn replay_verify_is_equal_after_a_randomized_workload_and_finds_a_corrupted_row() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let head = randomized_workload(&store, 11, 3000).await;

    let report = replay::verify(&db.pool).await.unwrap();
    assert_eq!(report.head, head);
    assert_eq!(report.events as i64, head);
    assert!(report.is_equal(), "{report:#?}");
    assert!(
        report
            .tables
            .iter()
            .any(|t| t.table == "task_instance" && t.live.rows > 10)
    );

    // Hand-corrupt one task instance.
    let changed = sqlx::query(
        "UPDATE task_instance SET state = 'success' WHERE ctid = \
         (SELECT ctid FROM task_instance WHERE state = 'failed' LIMIT 1)",
    )
    .execute(&db.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(
        changed, 1,
        "the workload has a failed task instance to corrupt"
    );
    let report = replay::verify(&db.pool).await.unwrap();
    assert!(!report.is_equal());
    let different: Vec<_> = report.tables.iter().filter(|t| !t.is_equal()).collect();
    assert_eq!(different.len(), 1);
    assert_eq!(different[0].table, "task_instance");
    let sides: Vec<&str> = different[0]
        .differing_rows
        .iter()
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(sides, ["live only", "replay only"]);
    assert!(
        different[0].differing_rows[0]
            .1
            .contains("\"state\": \"success\"")
    );
    assert!(
        different[0].differing_rows[1]
            .1
            .contains("\"state\": \"failed\"")
    );

    // Verify leaves nothing behind; rebuild repairs the live models.
    let schemas: i64 = scalar(
        &db.pool,
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'leoflow_verify%'",
    )
    .await;
    assert_eq!(schemas, 0);
    let rebuilt = replay::rebuild(&db.pool).await.unwrap();
    assert_eq!(rebuilt.last_position, head);
    assert!(replay::verify(&db.pool).await.unwrap().is_equal());
}

#[tokio::test]
async fn replay_stops_at_an_unknown_event_naming_its_position_and_changes_nothing() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let head = randomized_workload(&store, 5, 200).await;
    // Corrupt an event in the middle of the log by hand (appends only write catalog events).
    let corrupt = head / 2;
    sqlx::query("UPDATE events SET type = 'DagExploded' WHERE position = $1")
        .bind(corrupt)
        .execute(&db.pool)
        .await
        .unwrap();
    let before: i64 = scalar(&db.pool, "SELECT count(*) FROM task_instance").await;

    let err = replay::rebuild(&db.pool).await.unwrap_err();
    match &err {
        ProjectError::Decode {
            position,
            event_type,
            ..
        } => {
            assert_eq!(*position, corrupt);
            assert_eq!(event_type, "DagExploded");
        }
        other => panic!("expected a decode error, got {other}"),
    }
    assert!(
        err.to_string()
            .contains("unknown event type \"DagExploded\""),
        "{err}"
    );
    // The rebuild was rolled back: live models are as they were.
    assert_eq!(
        scalar::<i64>(&db.pool, "SELECT count(*) FROM task_instance").await,
        before
    );
    assert!(
        replay::verify(&db.pool).await.is_err(),
        "verify stops at the same event"
    );

    // A payload that does not match its schema stops replay the same way.
    sqlx::query(
        "UPDATE events SET type = 'DagPaused', payload = '{\"dag\": 1}' WHERE position = $1",
    )
    .bind(corrupt)
    .execute(&db.pool)
    .await
    .unwrap();
    let err = replay::rebuild(&db.pool).await.unwrap_err().to_string();
    assert!(err.contains(&format!("position {corrupt}")), "{err}");
    assert!(err.contains("does not match its schema"), "{err}");
}

#[tokio::test]
async fn replay_until_builds_a_point_in_time_copy_and_leaves_live_models_alone() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    append(&store, vec![parsed("etl", "h1"), queued("etl", "r1")])
        .await
        .unwrap();
    append(
        &store,
        vec![
            RunStarted {
                dag_id: "etl".into(),
                run_id: "r1".into(),
            }
            .into(),
        ],
    )
    .await
    .unwrap();
    let report = replay::rebuild_for_inspection(&db.pool, Until::Position(2))
        .await
        .unwrap();
    assert_eq!((report.events, report.last_position), (2, 2));
    let then: String = scalar(&db.pool, "SELECT state FROM leoflow_replay.dag_run").await;
    let now: String = scalar(&db.pool, "SELECT state FROM public.dag_run").await;
    assert_eq!((then.as_str(), now.as_str()), ("queued", "running"));

    let at: DateTime<Utc> = scalar(
        &db.pool,
        "SELECT recorded_at FROM events WHERE position = 1",
    )
    .await;
    let report = replay::rebuild_for_inspection(&db.pool, Until::Time(at))
        .await
        .unwrap();
    assert_eq!(
        report.events, 2,
        "both events of the first append share its time"
    );
}

#[tokio::test]
async fn catch_up_fills_a_projection_that_lags_behind_the_log() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    randomized_workload(&store, 3, 400).await;
    let variables: i64 = scalar(&db.pool, "SELECT count(*) FROM variable").await;
    let pools: i64 = scalar(&db.pool, "SELECT count(*) FROM slot_pool").await;
    assert!(variables + pools > 0, "the workload touched config");

    // As if the config projection had just been added: empty, checkpoint gone.
    sqlx::query("TRUNCATE variable, connection, slot_pool")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM projection_checkpoints WHERE projection = 'config'")
        .execute(&db.pool)
        .await
        .unwrap();
    let applied = replay::catch_up(&db.pool).await.unwrap();
    assert_eq!(applied as i64, store.head().await.unwrap());
    assert_eq!(
        scalar::<i64>(&db.pool, "SELECT count(*) FROM variable").await,
        variables
    );
    assert!(replay::verify(&db.pool).await.unwrap().is_equal());
    assert_eq!(
        replay::catch_up(&db.pool).await.unwrap(),
        0,
        "nothing left to catch up"
    );
}

#[tokio::test]
async fn a_mapped_task_replaces_its_placeholder_with_its_instances() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let placeholder = TaskInstanceKey::new("etl", "r1", "each");
    append(&store, vec![parsed("etl", "h1"), queued("etl", "r1")])
        .await
        .unwrap();
    append(
        &store,
        vec![
            TaskMapped {
                ti: placeholder.clone(),
                count: 2,
            }
            .into(),
            TaskScheduled {
                ti: TaskInstanceKey::mapped("etl", "r1", "each", 0),
                try_number: 1,
            }
            .into(),
            TaskScheduled {
                ti: TaskInstanceKey::mapped("etl", "r1", "each", 1),
                try_number: 1,
            }
            .into(),
        ],
    )
    .await
    .unwrap();
    let indexes: Vec<i32> =
        sqlx::query_scalar("SELECT map_index FROM task_instance ORDER BY map_index")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(indexes, [0, 1]);
    assert!(replay::verify(&db.pool).await.unwrap().is_equal());
}

#[tokio::test]
async fn deleting_a_dag_forgets_its_runs_and_favorites_and_replay_agrees() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let note = RunNoteSet {
        dag_id: "etl".into(),
        run_id: "r1".into(),
        note: Some("looked at it".into()),
    };
    let star = |dag_id: &str| DagFavorited {
        dag_id: dag_id.into(),
        username: "admin".into(),
    };
    append(
        &store,
        vec![
            parsed("etl", "h1"),
            parsed("other", "h1"),
            queued("etl", "r1"),
            queued("other", "r1"),
            note.into(),
            star("etl").into(),
            star("other").into(),
            DagUnfavorited {
                dag_id: "other".into(),
                username: "admin".into(),
            }
            .into(),
        ],
    )
    .await
    .unwrap();
    let (note, user): (Option<String>, Option<String>) = sqlx::query_as(
        "SELECT note, triggering_user_name FROM dag_run WHERE dag_id = 'etl' AND run_id = 'r1'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(note.as_deref(), Some("looked at it"));
    assert_eq!(
        user.as_deref(),
        Some("test"),
        "a rest_api trigger names its actor"
    );
    let favorites: Vec<String> = sqlx::query_scalar("SELECT dag_id FROM dag_favorite")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(favorites, ["etl"]);

    // Deleted, then parsed again in the same batch: the delete lands between the two.
    append(
        &store,
        vec![
            DagDeleted {
                dag_id: "etl".into(),
            }
            .into(),
            parsed("etl", "h2"),
        ],
    )
    .await
    .unwrap();
    let runs: i64 = scalar(
        &db.pool,
        "SELECT count(*) FROM dag_run WHERE dag_id = 'etl'",
    )
    .await;
    assert_eq!(runs, 0);
    let others: i64 = scalar(
        &db.pool,
        "SELECT count(*) FROM dag_run WHERE dag_id = 'other'",
    )
    .await;
    assert_eq!(others, 1, "other DAGs keep their runs");
    let stars: i64 = scalar(&db.pool, "SELECT count(*) FROM dag_favorite").await;
    assert_eq!(stars, 0);
    let version: i32 = scalar(
        &db.pool,
        "SELECT latest_version_number FROM dag WHERE dag_id = 'etl'",
    )
    .await;
    assert_eq!(version, 1, "the DAG came back as new");
    assert!(replay::verify(&db.pool).await.unwrap().is_equal());
}

/// A pool on `db` whose sessions start with `default_transaction_isolation` = `level`.
async fn pool_defaulting_to(db: &leoflow_postgres::testing::TestDatabase, level: &str) -> PgPool {
    let sql = format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation = '{level}'",
        db.name
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .unwrap();
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(5)
        .connect_with(db.options.clone())
        .await
        .unwrap();
    let default: String = scalar(&pool, "SHOW default_transaction_isolation").await;
    assert_eq!(default, level);
    pool
}

/// The backend of this database's session named `application_name` while it is inside a
/// transaction. By name, not as "any other session in a transaction": autovacuum's workers show
/// in `pg_stat_activity` with this database and a transaction, and a watch that took one for the
/// rebuild waited for a swap that worker would never try.
async fn transaction_of(pool: &PgPool, application_name: &str) -> Option<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1 \
           AND xact_start IS NOT NULL",
    )
    .bind(application_name)
    .fetch_optional(pool)
    .await
    .unwrap()
}

/// Whether backend `pid` waits for a lock.
async fn waits_for_a_lock(pool: &PgPool, pid: i32) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)")
        .bind(pid)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Replays a log of `min_events` while a reader reads `dag_run` and `task_instance` the way the
/// API does and a writer appends: neither waits for the replay, and the swapped-in read models
/// are a replay of the whole log, the events appended meanwhile included.
///
/// A long reader (an open transaction that has read `projection_checkpoints`) holds the
/// rebuild back until the test lets it go, so "while the rebuild runs" needs no timing.
///
/// `reads_begin` is how the reader begins each read's transaction: a rebuild's swap, like a
/// `TRUNCATE`, is not MVCC-safe, so a REPEATABLE READ snapshot taken before it sees the new
/// tables empty.
async fn rebuild_under_load(pool: PgPool, min_events: usize, reads_begin: &'static str) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    use tokio::time::timeout;
    /// How long a read or an append may take before the test calls it blocked: generous, it
    /// only has to be shorter than forever.
    const BLOCKED: Duration = Duration::from_secs(20);

    let store = store(&pool);
    for batch in Workload::new(23, 6).batches(min_events, 200) {
        append(&store, batch).await.unwrap();
    }
    let head_before = store.head().await.unwrap();
    let runs_before: i64 = scalar(&pool, "SELECT count(*) FROM dag_run").await;
    assert!(runs_before > 100, "{runs_before} runs");

    let mut long_reader = pool.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM projection_checkpoints")
        .execute(&mut *long_reader)
        .await
        .unwrap();

    const REBUILDER: &str = "the rebuild under test";
    let rebuild_pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            (*pool.connect_options())
                .clone()
                .application_name(REBUILDER),
        )
        .await
        .unwrap();
    let rebuild = tokio::spawn(async move { replay::rebuild(&rebuild_pool).await });
    let deadline = Instant::now() + Duration::from_secs(300);
    let rebuilding = loop {
        if let Some(pid) = transaction_of(&pool, REBUILDER).await {
            break pid;
        }
        assert!(Instant::now() < deadline, "the rebuild never began");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };

    // An API-like reader for the whole replay, the swap included: every read answers, and
    // never from an empty or half-built table.
    let reading = Arc::new(AtomicBool::new(true));
    let reader = tokio::spawn({
        let (pool, reading) = (pool.clone(), reading.clone());
        async move {
            let mut reads = 0u64;
            let mut slowest = Duration::ZERO;
            while reading.load(Ordering::Relaxed) {
                let started = Instant::now();
                let mut tx = pool.begin_with(reads_begin).await.unwrap();
                let runs: i64 = timeout(
                    BLOCKED,
                    sqlx::query_scalar("SELECT count(*) FROM dag_run").fetch_one(&mut *tx),
                )
                .await
                .expect("a read of dag_run answers while the rebuild runs")
                .expect("a read of dag_run succeeds");
                assert!(
                    runs >= runs_before,
                    "{runs} runs read, {runs_before} before"
                );
                // `SELECT *`, prepared once per connection as sqlx does: a statement planned
                // against the old table is planned again against the new one, with the same
                // columns (the old table has dropped columns, the new one none).
                let instances = sqlx::query(
                    "SELECT * FROM task_instance ORDER BY dag_id, run_id, task_id LIMIT 5",
                )
                .fetch_all(&mut *tx)
                .await
                .expect("a read of task_instance succeeds");
                assert_eq!(instances.len(), 5);
                tx.commit().await.unwrap();
                slowest = slowest.max(started.elapsed());
                reads += 1;
                // Paced, as a UI polls: a busy loop would starve the rebuild on a small machine.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (reads, slowest)
        }
    });

    // While the rebuild builds, a read answers and appends commit, and show in the live models.
    let runs: i64 = timeout(
        BLOCKED,
        sqlx::query_scalar("SELECT count(*) FROM dag_run").fetch_one(&pool),
    )
    .await
    .expect("a read of dag_run answers while the rebuild runs")
    .unwrap();
    assert_eq!(runs, runs_before);
    let mut late_runs = 0;
    let append_late = async |events: Vec<Event>| {
        timeout(BLOCKED, append(&store, events))
            .await
            .expect("an append commits while the rebuild runs")
            .unwrap();
        // Paced, as a scheduler appends: a busy loop would starve the rebuild.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    append_late(vec![parsed("late", "h1")]).await;
    append_late(vec![queued("late", "during_0")]).await;
    late_runs += 1;
    let late: i64 = scalar(&pool, "SELECT count(*) FROM dag_run WHERE dag_id = 'late'").await;
    assert_eq!(late, 1, "the live read models show the append at once");
    assert!(!rebuild.is_finished());

    // The build done, the swap waits for the long reader; appends still get through. They go
    // on beside the watch for the waiting swap: an append waits while a swap attempt holds the
    // log lock, and a watch taking turns with the appends would look only between attempts.
    let appending = Arc::new(AtomicBool::new(true));
    let appender = tokio::spawn({
        let (store, appending, first) = (store.clone(), appending.clone(), late_runs);
        async move {
            let mut next = first;
            while appending.load(Ordering::Relaxed) {
                let events = vec![queued("late", &format!("during_{next}"))];
                timeout(BLOCKED, append(&store, events))
                    .await
                    .expect("an append commits while the rebuild waits to swap")
                    .unwrap();
                next += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            next
        }
    });
    while !waits_for_a_lock(&pool, rebuilding).await {
        if rebuild.is_finished() {
            panic!(
                "the rebuild ended under a reader: {:?}",
                rebuild.await.unwrap()
            );
        }
        assert!(Instant::now() < deadline, "the rebuild never tried to swap");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    appending.store(false, Ordering::Relaxed);
    late_runs = appender.await.unwrap();
    for _ in 0..3 {
        append_late(vec![queued("late", &format!("during_{late_runs}"))]).await;
        late_runs += 1;
    }
    assert!(!rebuild.is_finished(), "the rebuild swapped under a reader");
    long_reader.rollback().await.unwrap();
    while !rebuild.is_finished() {
        append_late(vec![queued("late", &format!("during_{late_runs}"))]).await;
        late_runs += 1;
        assert!(Instant::now() < deadline, "the rebuild did not finish");
    }
    let report = rebuild.await.unwrap().unwrap();
    assert!(report.last_position > head_before + 5, "{report:?}");
    append(&store, vec![queued("late", "after")]).await.unwrap();
    reading.store(false, Ordering::Relaxed);
    let (reads, slowest) = reader.await.unwrap();
    eprintln!(
        "rebuild of {head_before} events took {:?}; {late_runs} runs appended meanwhile; \
         {reads} reads, the slowest {slowest:?}",
        report.elapsed
    );

    let late: i64 = scalar(&pool, "SELECT count(*) FROM dag_run WHERE dag_id = 'late'").await;
    assert_eq!(late, late_runs + 1);
    let verify = replay::verify(&pool).await.unwrap();
    assert!(verify.is_equal(), "{verify:#?}");
    let scratch: i64 = scalar(
        &pool,
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'leoflow_rebuild%'",
    )
    .await;
    assert_eq!(scratch, 0, "the rebuild leaves no schema behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_rebuild_blocks_neither_reads_nor_appends_and_keeps_what_they_appended() {
    let db = fresh_database().await;
    rebuild_under_load(db.pool.clone(), 40_000, "BEGIN").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_rebuild_keeps_what_was_appended_meanwhile_when_the_database_defaults_to_repeatable_read()
{
    let db = fresh_database().await;
    let pool = pool_defaulting_to(&db, "repeatable read").await;
    // Leoflow's readers would see the tables empty for an instant after the swap here (see
    // `rebuild_under_load`), so this reader asks for READ COMMITTED.
    rebuild_under_load(pool.clone(), 20_000, "BEGIN ISOLATION LEVEL READ COMMITTED").await;
    pool.close().await;
}

/// Everything about a read-model table that is not its rows: indexes and constraints with their
/// names and definitions, owner, privileges, storage parameters.
async fn read_model_catalog(pool: &PgPool) -> Vec<String> {
    let mut tables: Vec<&str> = READ_MODEL_TABLES.to_vec();
    tables.push("projection_checkpoints");
    sqlx::query_scalar(
        "SELECT format('index %s on %s: %s', indexname, tablename, indexdef) FROM pg_indexes \
           WHERE schemaname = 'public' AND tablename = ANY($1) \
         UNION ALL \
         SELECT format('constraint %s on %s: %s', conname, conrelid::regclass, \
                       pg_get_constraintdef(oid)) FROM pg_constraint \
           WHERE conrelid::regclass::text = ANY($1) \
         UNION ALL \
         SELECT format('table %s: owner %s, acl %s, options %s', relname, \
                       pg_get_userbyid(relowner), relacl, reloptions) FROM pg_class \
           WHERE relnamespace = 'public'::regnamespace AND relname = ANY($1) \
         ORDER BY 1",
    )
    .bind(tables)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rebuild_keeps_the_names_of_indexes_and_constraints_and_the_grants() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    randomized_workload(&store, 3, 300).await;
    let reader = format!("leoflow_reader_{}", Uuid::new_v4().simple());
    for sql in [
        format!("CREATE ROLE {reader} NOLOGIN"),
        format!("GRANT SELECT ON dag_run, task_instance TO {reader}"),
        "ALTER TABLE task_instance SET (autovacuum_vacuum_scale_factor = 0.05)".to_owned(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
    let before = read_model_catalog(&db.pool).await;
    assert!(
        before
            .iter()
            .any(|l| l.contains("dag_run_dag_id_run_after")),
        "{before:#?}"
    );

    replay::rebuild(&db.pool).await.unwrap();
    let after = read_model_catalog(&db.pool).await;
    assert_eq!(after, before);
    // A later migration that names an index or a constraint still finds it.
    for sql in [
        "ALTER INDEX dag_run_state RENAME TO dag_run_state_renamed",
        "ALTER TABLE dag_version RENAME CONSTRAINT dag_version_number_unique TO dvn",
    ] {
        sqlx::query(sql).execute(&db.pool).await.unwrap();
    }
    for sql in [
        format!("DROP OWNED BY {reader}"),
        format!("DROP ROLE {reader}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db.pool)
            .await
            .unwrap();
    }
}

/// `parsed`, granting `access_control`.
fn guarded(dag_id: &str, hash: &str, access_control: AccessControl) -> Event {
    let Event::DagParsed(e) = parsed(dag_id, hash) else {
        unreachable!("parsed builds a DagParsed")
    };
    DagParsed {
        access_control,
        ..e
    }
    .into()
}

fn grant(dags: &[DagAction], dag_runs: &[DagAction]) -> DagGrant {
    DagGrant {
        dags: dags.iter().copied().collect(),
        dag_runs: dag_runs.iter().copied().collect(),
    }
}

async fn readable_by(pool: &PgPool, dag_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT readable_by FROM dag WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The DAGs that one of `roles` may read, as the API filters its lists.
async fn listed_for(pool: &PgPool, roles: &[&str]) -> Vec<String> {
    use leoflow_projector::read::dags::{self, columns};
    let mut conditions = leoflow_projector::read::filter::Conditions::new();
    conditions.push(
        &format!("{} && {{}}", columns::READABLE_BY),
        vec![leoflow_projector::read::filter::Bind::Texts(
            roles.iter().map(|r| r.to_string()).collect(),
        )],
    );
    let window = leoflow_projector::read::page::Window {
        limit: 10,
        offset: 0,
    };
    let (page, total) = dags::page(pool, &conditions, columns::DAG_ID, window)
        .await
        .unwrap();
    assert_eq!(total, page.len() as i64);
    page.into_iter().map(|d| d.dag_id).collect()
}

#[tokio::test]
async fn a_dags_access_control_is_projected_with_its_readers_and_survives_a_rebuild() {
    use DagAction::*;
    use leoflow_projector::read::dags;
    let db = fresh_database().await;
    let store = store(&db.pool);
    let access = AccessControl::from([
        ("team-a".into(), grant(&[CanRead, CanEdit], &[CanCreate])),
        // Neither editing the DAG nor triggering its runs lets a role read it.
        ("editors".into(), grant(&[CanEdit], &[CanRead, CanCreate])),
        ("viewers".into(), grant(&[CanRead], &[])),
    ]);
    append(
        &store,
        vec![guarded("etl", "h1", access.clone()), parsed("open", "h1")],
    )
    .await
    .unwrap();

    assert_eq!(readable_by(&db.pool, "etl").await, ["team-a", "viewers"]);
    assert!(readable_by(&db.pool, "open").await.is_empty());
    let stored: serde_json::Value = scalar(
        &db.pool,
        "SELECT access_control FROM dag WHERE dag_id = 'etl'",
    )
    .await;
    assert_eq!(
        stored["team-a"],
        json!({"DAGs": ["can_read", "can_edit"], "DAG Runs": ["can_create"]})
    );
    assert_eq!(
        dags::access_control(&db.pool, "etl").await.unwrap(),
        Some(access.clone())
    );
    assert_eq!(
        dags::access_control(&db.pool, "open").await.unwrap(),
        Some(AccessControl::new())
    );
    assert_eq!(dags::access_control(&db.pool, "gone").await.unwrap(), None);
    let record = dags::find(&db.pool, "etl").await.unwrap().unwrap();
    assert_eq!(record.access_control, access);
    assert_eq!(listed_for(&db.pool, &["viewers", "nobody"]).await, ["etl"]);
    assert!(listed_for(&db.pool, &["editors"]).await.is_empty());

    // A new version's grant replaces the last one's.
    let narrowed = AccessControl::from([("viewers".into(), grant(&[CanRead], &[]))]);
    append(&store, vec![guarded("etl", "h2", narrowed.clone())])
        .await
        .unwrap();
    assert_eq!(readable_by(&db.pool, "etl").await, ["viewers"]);
    assert!(listed_for(&db.pool, &["team-a"]).await.is_empty());

    // The log alone rebuilds both columns.
    replay::rebuild(&db.pool).await.unwrap();
    assert_eq!(readable_by(&db.pool, "etl").await, ["viewers"]);
    assert_eq!(
        dags::access_control(&db.pool, "etl").await.unwrap(),
        Some(narrowed)
    );
    assert!(replay::verify(&db.pool).await.unwrap().is_equal());
}

/// `parsed`, into `tenant`.
fn parsed_into(tenant: &str, dag_id: &str, hash: &str) -> Event {
    let Event::DagParsed(e) = parsed(dag_id, hash) else {
        unreachable!("parsed builds a DagParsed")
    };
    DagParsed {
        tenant: tenant.into(),
        provenance: None,
        ..e
    }
    .into()
}

#[tokio::test]
async fn a_dag_belongs_to_the_tenant_it_was_parsed_into_until_it_is_deleted() {
    use leoflow_projector::read::dags::{self, DagOwner};
    let db = fresh_database().await;
    let store = store(&db.pool);
    let access = AccessControl::from([(
        "team-a".into(),
        grant(&[DagAction::CanRead], &[DagAction::CanCreate]),
    )]);
    append(
        &store,
        vec![
            guarded("etl", "h1", access.clone()),
            parsed_into("acme", "acme_etl", "h1"),
        ],
    )
    .await
    .unwrap();
    let etl = dags::owner(&db.pool, "etl").await.unwrap();
    assert_eq!(
        etl,
        Some(DagOwner {
            tenant: leoflow_events::DEFAULT_TENANT.into(),
            access_control: access,
        })
    );
    let acme = dags::owner(&db.pool, "acme_etl").await.unwrap().unwrap();
    assert_eq!(acme.tenant, "acme");
    assert_eq!(dags::owner(&db.pool, "gone").await.unwrap(), None);
    let record = dags::find(&db.pool, "acme_etl").await.unwrap().unwrap();
    assert_eq!(record.tenant, "acme");

    // Another tenant's parse of the same key is refused (registering keys a DAG in its tenant,
    // so only a DAG keyed before keys can meet this), and nothing of its batch lands.
    let head = store.head().await.unwrap();
    let refused = append(&store, vec![parsed_into("beta", "acme_etl", "h2")])
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("DAG key \"acme_etl\" belongs to tenant \"acme\""),
        "{refused}"
    );
    assert_eq!(store.head().await.unwrap(), head);
    // Its own tenant's new version is welcome.
    append(&store, vec![parsed_into("acme", "acme_etl", "h2")])
        .await
        .unwrap();

    // The log alone rebuilds the column.
    replay::rebuild(&db.pool).await.unwrap();
    let acme = dags::owner(&db.pool, "acme_etl").await.unwrap().unwrap();
    assert_eq!(acme.tenant, "acme");
    assert!(replay::verify(&db.pool).await.unwrap().is_equal());

    // A deleted DAG's id is free for any tenant.
    append(
        &store,
        vec![
            DagDeleted {
                dag_id: "acme_etl".into(),
            }
            .into(),
            parsed_into("beta", "acme_etl", "h3"),
        ],
    )
    .await
    .unwrap();
    let beta = dags::owner(&db.pool, "acme_etl").await.unwrap().unwrap();
    assert_eq!(beta.tenant, "beta");
}

#[tokio::test]
async fn a_deferred_try_keeps_its_first_start_and_resumes_with_its_event_and_replay_agrees() {
    let db = fresh_database().await;
    let store = store(&db.pool);
    let ti = TaskInstanceKey::new("etl", "r1", "wait");
    let started = |pid| -> Event {
        TaskStarted {
            ti: ti.clone(),
            try_number: 1,
            hostname: "host".into(),
            pid: Some(pid),
        }
        .into()
    };
    let moment: DateTime<Utc> = "2026-11-23T11:00:00Z".parse().unwrap();
    let mut events = vec![parsed("etl", "h1"), queued("etl", "r1")];
    events.push(
        TaskScheduled {
            ti: ti.clone(),
            try_number: 1,
        }
        .into(),
    );
    events.push(started(1));
    events.push(
        TaskDeferred {
            ti: ti.clone(),
            try_number: 1,
            trigger: DeferredTrigger::Time {
                moment,
                end_from_trigger: false,
            },
            next_method: "execute_complete".into(),
            next_kwargs: Sealed::clear(r#"{"n": 1}"#),
            timeout_at: Some(moment + chrono::Duration::hours(1)),
        }
        .into(),
    );
    append(&store, events).await.unwrap();
    let row = sqlx::query(
        "SELECT state, next_method, trigger->>'kind' AS kind, trigger_timeout, start_date \
         FROM task_instance WHERE task_id = 'wait'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("state"), "deferred");
    assert_eq!(row.get::<String, _>("next_method"), "execute_complete");
    assert_eq!(row.get::<String, _>("kind"), "time");
    let first_start: DateTime<Utc> = row.get("start_date");

    // Resumed with the trigger's event, the try starts again and keeps its first start.
    let event = json!({"__type": "datetime", "__var": 1795435200.0});
    append(
        &store,
        vec![
            TaskResumed {
                ti: ti.clone(),
                try_number: 1,
                trigger_event: Some(event.clone()),
                failure: None,
            }
            .into(),
            started(2),
        ],
    )
    .await
    .unwrap();
    let row = sqlx::query(
        "SELECT state, try_number, trigger, trigger_event, start_date, pid \
         FROM task_instance WHERE task_id = 'wait'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row.get::<String, _>("state"), "running");
    assert_eq!(row.get::<i32, _>("try_number"), 1);
    assert_eq!(row.get::<Option<serde_json::Value>, _>("trigger"), None);
    assert_eq!(
        row.get::<Option<serde_json::Value>, _>("trigger_event"),
        Some(event)
    );
    assert_eq!(row.get::<DateTime<Utc>, _>("start_date"), first_start);
    assert_eq!(row.get::<i32, _>("pid"), 2);

    let report = replay::verify(&db.pool).await.unwrap();
    assert!(report.is_equal(), "{report:#?}");
}
