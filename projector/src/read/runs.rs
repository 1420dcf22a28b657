//! `dag_run`: what the scheduler and its agents read of a run.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgPool};

/// What a task attempt's context needs of its run.
#[derive(Debug, Clone, FromRow)]
pub struct RunContext {
    /// `manual`, `scheduled`, `backfill` or `asset_triggered`.
    pub run_type: String,
    /// The logical date (none for runs triggered without one).
    pub logical_date: Option<DateTime<Utc>>,
    /// Start of the data interval.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// End of the data interval.
    pub data_interval_end: Option<DateTime<Utc>>,
    /// When the run may start.
    pub run_after: DateTime<Utc>,
    /// The run's conf (a JSON object).
    pub conf: Value,
    /// The DAG version the run was queued with.
    pub dag_version_hash: Option<String>,
}

/// The context of run `run_id` of a DAG, if it exists.
pub async fn context(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
) -> Result<Option<RunContext>, sqlx::Error> {
    sqlx::query_as(
        "SELECT run_type, logical_date, data_interval_start, data_interval_end, run_after, \
         conf, dag_version_hash FROM dag_run WHERE dag_id = $1 AND run_id = $2",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(pool)
    .await
}

/// Whether a DAG has a run `run_id`.
pub async fn exists(pool: &PgPool, dag_id: &str, run_id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT run_id FROM dag_run WHERE dag_id = $1 AND run_id = $2")
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(pool)
            .await?;
    Ok(found.is_some())
}
