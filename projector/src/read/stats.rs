//! Counts the UI's dashboard and calendar show: DAGs by their latest run's state, runs and
//! task instances by state, runs per day or hour.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};

use super::filter::Conditions;

/// How many DAGs (stale ones left out) are active, and how many have their latest run in
/// each of three states.
#[derive(Debug, Clone, Copy, FromRow)]
pub struct DagCounts {
    /// Unpaused DAGs.
    pub active: i64,
    /// DAGs whose latest run failed.
    pub failed: i64,
    /// DAGs whose latest run runs.
    pub running: i64,
    /// DAGs whose latest run waits.
    pub queued: i64,
}

/// The dashboard's DAG counts, with the run states that mean failed, running and queued.
pub async fn dag_counts(
    pool: &PgPool,
    failed: &str,
    running: &str,
    queued: &str,
) -> sqlx::Result<DagCounts> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT d.is_paused) AS active, \
                count(*) FILTER (WHERE lr.state = $1) AS failed, \
                count(*) FILTER (WHERE lr.state = $2) AS running, \
                count(*) FILTER (WHERE lr.state = $3) AS queued \
         FROM dag d LEFT JOIN LATERAL (SELECT state FROM dag_run r WHERE r.dag_id = d.dag_id \
           ORDER BY r.run_after DESC LIMIT 1) lr ON true WHERE NOT d.is_stale",
    )
    .bind(failed)
    .bind(running)
    .bind(queued)
    .fetch_one(pool)
    .await
}

/// How many runs that may start between `start` and `end` (both included) are in each state.
pub async fn runs_by_state(
    pool: &PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT state, count(*) FROM dag_run WHERE run_after >= $1 AND run_after <= $2 GROUP BY state",
    )
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
}

/// How many task instances of those runs are in each state (`None`: not scheduled yet).
pub async fn task_instances_by_state(
    pool: &PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> sqlx::Result<Vec<(Option<String>, i64)>> {
    sqlx::query_as(
        "SELECT t.state, count(*) FROM task_instance t JOIN dag_run r \
         ON r.dag_id = t.dag_id AND r.run_id = t.run_id \
         WHERE r.run_after >= $1 AND r.run_after <= $2 GROUP BY t.state",
    )
    .bind(start)
    .bind(end)
    .fetch_all(pool)
    .await
}

/// The span of time a calendar counts runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// Per day.
    Daily,
    /// Per hour.
    Hourly,
}

impl Granularity {
    fn unit(self) -> &'static str {
        match self {
            Granularity::Daily => "day",
            Granularity::Hourly => "hour",
        }
    }
}

/// Runs under `conditions` (on `dag_run r`) per day or hour of their logical date (their
/// `run_after` when they have none) and state, as `(start of the span, state, count)` in
/// time then state order.
pub async fn calendar(
    pool: &PgPool,
    granularity: Granularity,
    conditions: &Conditions,
) -> sqlx::Result<Vec<(DateTime<Utc>, String, i64)>> {
    let mut query = QueryBuilder::<Postgres>::new(format!(
        "SELECT date_trunc('{}', coalesce(r.logical_date, r.run_after)) AS day, r.state, count(*) FROM dag_run r",
        granularity.unit()
    ));
    conditions.apply(&mut query);
    query.push(" GROUP BY 1, 2 ORDER BY 1, 2");
    query.build_query_as().fetch_all(pool).await
}
