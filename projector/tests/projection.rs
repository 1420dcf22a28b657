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
