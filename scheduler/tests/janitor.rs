//! The log retention janitor against a real Postgres: only lines older than the cutoff go, in
//! batches, and only while the scheduler leads.

use std::time::Duration;

use chrono::Utc;
use leoflow_events::TaskInstanceKey;
use leoflow_postgres::testing::fresh_database;
use leoflow_scheduler::janitor::{self, Retention};
use leoflow_scheduler::task_logs;
use prometheus_client::metrics::counter::Counter;
use sqlx::PgPool;
use tokio::sync::watch;

/// Stores `lines` lines for `task_id`, dated `days_ago` days back.
async fn lines(pool: &PgPool, task_id: &str, lines: usize, days_ago: i64) {
    let ti = TaskInstanceKey::new("d", "r", task_id);
    let text: Vec<String> = (0..lines).map(|i| format!("line {i}")).collect();
    task_logs::append(pool, &ti, 1, 0, &text).await.unwrap();
    sqlx::query(
        "UPDATE task_log SET logged_at = now() - make_interval(days => $1) WHERE task_id = $2",
    )
    .bind(days_ago as i32)
    .bind(task_id)
    .execute(pool)
    .await
    .unwrap();
}

async fn count(pool: &PgPool, task_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM task_log WHERE task_id = $1")
        .bind(task_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn prune_deletes_only_lines_older_than_the_cutoff_in_batches() {
    let db = fresh_database().await;
    lines(&db.pool, "old", 25_000, 40).await;
    lines(&db.pool, "recent", 10, 2).await;
    let cutoff = Utc::now() - chrono::Duration::days(30);
    assert_eq!(janitor::prune(&db.pool, cutoff).await.unwrap(), 25_000);
    assert_eq!(count(&db.pool, "old").await, 0);
    assert_eq!(count(&db.pool, "recent").await, 10);
    assert_eq!(janitor::prune(&db.pool, cutoff).await.unwrap(), 0);
}

#[tokio::test]
async fn the_janitor_prunes_only_while_its_scheduler_leads() {
    let db = fresh_database().await;
    lines(&db.pool, "old", 100, 40).await;
    let (leading_tx, leading) = watch::channel(false);
    let (stop, shutdown) = watch::channel(false);
    let pruned = Counter::<u64>::default();
    let retention = Retention {
        max_age: Duration::from_secs(30 * 86_400),
        every: Duration::from_millis(50),
    };
    let janitor = tokio::spawn(janitor::run(
        db.pool.clone(),
        retention,
        leading,
        shutdown,
        pruned.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(&db.pool, "old").await,
        100,
        "a standby prunes nothing"
    );
    leading_tx.send_replace(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&db.pool, "old").await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader never pruned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pruned.get(), 100);
    stop.send_replace(true);
    tokio::time::timeout(Duration::from_secs(5), janitor)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
