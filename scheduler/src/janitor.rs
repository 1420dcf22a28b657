//! The log retention janitor: task log lines older than an age are deleted, a batch at a time,
//! by the leading scheduler only (one replica prunes; the others would only contend). The
//! event log is never pruned here: it is the truth.

use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use sqlx::PgPool;
use tokio::sync::watch;

/// Lines deleted per statement: a pass never holds locks or bloats WAL for long.
const BATCH: i64 = 10_000;

/// How the janitor prunes.
#[derive(Debug, Clone)]
pub struct Retention {
    /// Lines older than this are deleted.
    pub max_age: Duration,
    /// Time between passes.
    pub every: Duration,
}

/// Deletes the lines logged before `cutoff`; returns how many.
pub async fn prune(pool: &PgPool, cutoff: DateTime<Utc>) -> sqlx::Result<u64> {
    let mut deleted = 0;
    loop {
        let batch = sqlx::query(
            "DELETE FROM task_log WHERE ctid IN \
               (SELECT ctid FROM task_log WHERE logged_at < $1 LIMIT $2)",
        )
        .bind(cutoff)
        .bind(BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += batch;
        if batch < BATCH as u64 {
            return Ok(deleted);
        }
    }
}

/// Prunes every `retention.every` while `leading` is true, until `shutdown`; counts the lines
/// it deleted in `pruned`. A failed pass is logged and tried again at the next one.
pub async fn run(
    pool: PgPool,
    retention: Retention,
    mut leading: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
    pruned: Counter,
) {
    loop {
        tokio::select! {
            led = leading.wait_for(|leading| *leading) => if led.is_err() { return },
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let max_age =
            chrono::Duration::from_std(retention.max_age).unwrap_or(chrono::Duration::MAX);
        match prune(&pool, Utc::now() - max_age).await {
            Ok(0) => {}
            Ok(lines) => {
                pruned.inc_by(lines);
                tracing::info!("pruned {lines} task log lines older than {max_age}");
            }
            Err(error) => tracing::warn!("pruning old task logs failed: {error}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.every) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
