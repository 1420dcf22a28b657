//! The event store against a real Postgres (one fresh database per test).

use std::collections::HashMap;
use std::time::Duration;

use leoflow_events::catalog::{DagPaused, DagUnpaused, Sealed, VariableSet};
use leoflow_events::sample::Workload;
use leoflow_events::{
    AppendBatch, AppendError, EventStore, ExpectedVersion, Metadata, NOTIFY_CHANNEL, StoreError,
};
use leoflow_postgres::testing::fresh_database;
use sqlx::postgres::PgListener;

fn var(key: &str, value: &str) -> VariableSet {
    VariableSet {
        key: key.into(),
        value: Sealed::clear(value),
        description: None,
        tenant: leoflow_events::DEFAULT_TENANT.into(),
    }
}

#[tokio::test]
async fn append_assigns_positions_and_stream_versions() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let meta = Metadata::actor("admin");
    let outcome = store
        .append(
            AppendBatch::new()
                .push(var("a", "1"), &meta)
                .push(var("b", "1"), &meta)
                .push(var("a", "2"), &meta)
                .expect("variable:a", ExpectedVersion::NoStream),
        )
        .await
        .unwrap();
    let summary: Vec<_> = outcome
        .events
        .iter()
        .map(|e| (e.position, e.stream.as_str(), e.stream_version))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "variable:a", 1),
            (2, "variable:b", 1),
            (3, "variable:a", 2)
        ]
    );
    assert_eq!(store.head().await.unwrap(), 3);

    let stream = store.read_stream("variable:a", 1).await.unwrap();
    assert_eq!(stream.len(), 2);
    assert_eq!(stream[1].decode().unwrap(), var("a", "2").into());
    assert_eq!(stream[1].metadata.actor.as_deref(), Some("admin"));
    assert_eq!(store.read_from(2, 10).await.unwrap().len(), 2);
    assert_eq!(store.read_backward(3, 1).await.unwrap()[0].position, 3);
}

#[tokio::test]
async fn conflicting_append_is_a_typed_error_and_writes_nothing() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let meta = Metadata::default();
    store
        .append(AppendBatch::new().push(var("a", "1"), &meta))
        .await
        .unwrap();

    let err = store
        .append(
            AppendBatch::new()
                .push(var("b", "1"), &meta)
                .push(var("a", "2"), &meta)
                .expect("variable:a", ExpectedVersion::Exact(0)),
        )
        .await
        .unwrap_err();
    match err {
        AppendError::Conflict {
            stream,
            expected,
            actual,
        } => {
            assert_eq!(stream, "variable:a");
            assert_eq!(expected, ExpectedVersion::Exact(0));
            assert_eq!(actual, Some(1));
        }
        other => panic!("expected a conflict, got {other}"),
    }
    let err = store
        .append(
            AppendBatch::new()
                .push(var("a", "3"), &meta)
                .expect("variable:a", ExpectedVersion::NoStream),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AppendError::Conflict { .. }), "{err}");
    // Neither batch wrote anything, not even the event on the other stream.
    assert_eq!(store.head().await.unwrap(), 1);
    assert!(store.read_stream("variable:b", 1).await.unwrap().is_empty());

    // The right expectation goes through.
    store
        .append(
            AppendBatch::new()
                .push(var("a", "2"), &meta)
                .expect("variable:a", ExpectedVersion::Exact(1)),
        )
        .await
        .unwrap();
    assert_eq!(store.head().await.unwrap(), 2);
}

#[tokio::test]
async fn one_notification_per_transaction_carrying_the_new_head() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let mut listener = PgListener::connect_with(&db.pool).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();

    let mut batch = AppendBatch::new();
    for i in 0..10 {
        batch = batch.push(var(&format!("k{i}"), "v"), &Metadata::default());
    }
    store.append(batch).await.unwrap();

    let first = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .unwrap();
    assert_eq!(first.payload(), "10");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "a single append must notify once"
    );
}

#[tokio::test]
async fn subscriber_wakes_on_append() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let mut subscription = store.subscribe(1).await.unwrap();
    assert!(subscription.try_next().await.unwrap().is_none());

    let writer = store.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        writer
            .append(AppendBatch::new().push(
                DagPaused {
                    dag_id: "etl".into(),
                },
                &Metadata::default(),
            ))
            .await
            .unwrap();
    });
    let event = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("the subscriber is woken")
        .unwrap();
    assert_eq!(event.position, 1);
    assert_eq!(event.event_type, "DagPaused");
    assert_eq!(subscription.next_position(), 2);
}

/// A store's subscriptions share one `LISTEN` connection and, while they wait, query nothing
/// through the pool: three followers on a pool of two connections all see an append (with a
/// connection each, the third could never start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_share_one_listener_and_leave_the_pool_free() {
    let db = fresh_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(3))
        .connect_with(db.options.clone())
        .await
        .unwrap();
    let store = EventStore::new(pool);
    let mut followers = Vec::new();
    for _ in 0..3 {
        let mut subscription = store.subscribe(1).await.expect("a subscription starts");
        followers.push(tokio::spawn(async move { subscription.next().await }));
    }
    // Several poll periods pass with everyone waiting: the writer still gets a connection.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    store
        .append(AppendBatch::new().push(
            DagPaused {
                dag_id: "etl".into(),
            },
            &Metadata::default(),
        ))
        .await
        .expect("the pool has room for the writer");
    for follower in followers {
        let event = tokio::time::timeout(Duration::from_secs(10), follower)
            .await
            .expect("every follower is woken")
            .unwrap()
            .unwrap();
        assert_eq!(
            (event.position, event.event_type.as_str()),
            (1, "DagPaused")
        );
    }
}

/// 8 concurrent writers append 20,000 events while a subscriber tails: it must see every
/// event exactly once, in position order, with no gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_and_a_tailing_subscriber_see_every_event_once_in_order() {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 2500;
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let mut subscription = store.subscribe(1).await.unwrap();

    let reader = tokio::spawn(async move {
        let mut seen = Vec::with_capacity(WRITERS * PER_WRITER);
        while seen.len() < WRITERS * PER_WRITER {
            let event = tokio::time::timeout(Duration::from_secs(60), subscription.next())
                .await
                .expect("the subscriber keeps receiving")
                .unwrap();
            seen.push(event);
        }
        seen
    });

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut written = 0;
            let mut batch_size = 1 + w; // each writer its own batch size, 1..=8 and growing
            while written < PER_WRITER {
                let n = batch_size.min(PER_WRITER - written);
                let mut batch = AppendBatch::new();
                for i in written..written + n {
                    // Alternate streams so batches span several streams.
                    let key = format!("w{w}-s{}", i % 3);
                    batch = batch.push(var(&key, &format!("{w}:{i}")), &Metadata::default());
                }
                store.append(batch).await.unwrap();
                written += n;
                batch_size = batch_size % 40 + 1;
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    let seen = reader.await.unwrap();

    let positions: Vec<i64> = seen.iter().map(|e| e.position).collect();
    let expected: Vec<i64> = (1..=(WRITERS * PER_WRITER) as i64).collect();
    assert_eq!(positions, expected, "gap-free, in order, each once");

    // Each writer's events arrive in the order it wrote them, each exactly once.
    let mut next_per_writer: HashMap<usize, usize> = HashMap::new();
    for event in &seen {
        let value = event.payload["value"]["text"].as_str().unwrap();
        let (w, i) = value.split_once(':').unwrap();
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        let next = next_per_writer.entry(w).or_default();
        assert_eq!(i, *next, "writer {w}'s events in order, none twice");
        *next += 1;
    }
    assert!(next_per_writer.values().all(|&n| n == PER_WRITER));

    // Stream versions are gap-free too.
    let stream = store.read_stream("w0-s0", 1).await;
    assert!(
        stream.unwrap().is_empty(),
        "streams are named variable:<key>"
    );
    let stream = store.read_stream("variable:w0-s0", 1).await.unwrap();
    let versions: Vec<i64> = stream.iter().map(|e| e.stream_version).collect();
    assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
}

#[tokio::test]
async fn blobs_are_content_addressed_and_idempotent() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let a = store.put_blob("application/json", "[1,2,3]").await.unwrap();
    let b = store.put_blob("application/json", "[1,2,3]").await.unwrap();
    assert_eq!(a, b);
    let blob = store.get_blob(&a).await.unwrap().unwrap();
    assert_eq!(blob.content, "[1,2,3]");
    assert!(store.get_blob("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn corrupt_envelope_is_reported_with_its_position() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    store
        .append(AppendBatch::new().push(
            DagUnpaused {
                dag_id: "etl".into(),
            },
            &Metadata::default(),
        ))
        .await
        .unwrap();
    sqlx::query("UPDATE events SET metadata = '{\"actor\": 42}' WHERE position = 1")
        .execute(&db.pool)
        .await
        .unwrap();
    match store.read_from(1, 10).await.unwrap_err() {
        StoreError::Corrupt { position, reason } => {
            assert_eq!(position, 1);
            assert!(reason.contains("metadata"), "{reason}");
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[tokio::test]
async fn sample_workload_appends_cleanly() {
    let db = fresh_database().await;
    let store = EventStore::new(db.pool.clone());
    let mut total = 0;
    for batch in Workload::new(7, 3).batches(500, 25) {
        total += batch.len();
        let mut append = AppendBatch::new();
        for event in batch {
            append = append.push(event, &Metadata::actor("sample"));
        }
        store.append(append).await.unwrap();
    }
    assert_eq!(store.head().await.unwrap(), total as i64);
    // Every stored event decodes to the current catalog.
    for event in store.read_from(1, total as i64).await.unwrap() {
        event.decode().unwrap();
    }
}

/// The append protocol needs READ COMMITTED: the statement after the lock must see the previous
/// holder's commit. A server (or database) whose default isolation is REPEATABLE READ would
/// give it a snapshot taken before the lock was granted, so it would read a stale head.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_stay_gap_free_when_the_database_defaults_to_repeatable_read() {
    const WRITERS: usize = 6;
    const PER_WRITER: usize = 40;
    let db = fresh_database().await;
    let sql = format!(
        "ALTER DATABASE \"{}\" SET default_transaction_isolation = 'repeatable read'",
        db.name
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&db.pool)
        .await
        .unwrap();
    // The setting applies to new sessions: a new pool.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(WRITERS as u32)
        .connect_with(db.options.clone())
        .await
        .unwrap();
    let default: String = sqlx::query_scalar("SHOW default_transaction_isolation")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(default, "repeatable read");
    let store = EventStore::new(pool.clone());

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_WRITER {
                let batch = AppendBatch::new()
                    .push(var(&format!("w{w}"), &i.to_string()), &Metadata::default())
                    .push(var("shared", &format!("{w}:{i}")), &Metadata::default());
                if let Err(e) = store.append(batch).await {
                    panic!("writer {w}'s append {i} failed: {e}");
                }
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }

    let total = (WRITERS * PER_WRITER * 2) as i64;
    assert_eq!(store.head().await.unwrap(), total);
    let positions: Vec<i64> = store
        .read_from(1, total + 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    let shared = store.read_stream("variable:shared", 1).await.unwrap();
    let versions: Vec<i64> = shared.iter().map(|e| e.stream_version).collect();
    assert_eq!(
        versions,
        (1..=(WRITERS * PER_WRITER) as i64).collect::<Vec<_>>()
    );
    pool.close().await;
}
