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

/// The dashboard's DAG counts over the DAGs (`d`) under `conditions`, with the run states that
/// mean failed, running and queued.
pub async fn dag_counts(
    pool: &PgPool,
    [failed, running, queued]: [&str; 3],
    conditions: &Conditions,
) -> sqlx::Result<DagCounts> {
    let mut c = conditions.clone();
    c.push("NOT d.is_stale", vec![]);
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT count(*) FILTER (WHERE NOT d.is_paused) AS active, count(*) FILTER (WHERE lr.state = ",
    );
    query
        .push_bind(failed.to_owned())
        .push(") AS failed, count(*) FILTER (WHERE lr.state = ")
        .push_bind(running.to_owned())
        .push(") AS running, count(*) FILTER (WHERE lr.state = ")
        .push_bind(queued.to_owned())
        .push(
            ") AS queued FROM dag d LEFT JOIN LATERAL (SELECT state FROM dag_run r \
             WHERE r.dag_id = d.dag_id ORDER BY r.run_after DESC LIMIT 1) lr ON true",
        );
    c.apply(&mut query);
    query.build_query_as().fetch_one(pool).await
}

/// How many runs (`r`) under `conditions` that may start between `start` and `end` (both
/// included; `None`: unbounded) are in each state.
pub async fn runs_by_state(
    pool: &PgPool,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    conditions: &Conditions,
) -> sqlx::Result<Vec<(String, i64)>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT r.state, count(*) FROM dag_run r");
    within(conditions, start, end).apply(&mut query);
    query.push(" GROUP BY r.state");
    query.build_query_as().fetch_all(pool).await
}

/// How many task instances of those runs are in each state (`None`: not scheduled yet).
pub async fn task_instances_by_state(
    pool: &PgPool,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    conditions: &Conditions,
) -> sqlx::Result<Vec<(Option<String>, i64)>> {
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT t.state, count(*) FROM task_instance t JOIN dag_run r \
         ON r.dag_id = t.dag_id AND r.run_id = t.run_id",
    );
    within(conditions, start, end).apply(&mut query);
    query.push(" GROUP BY t.state");
    query.build_query_as().fetch_all(pool).await
}

/// `conditions` and runs (`r`) that may start between `start` and `end`.
fn within(
    conditions: &Conditions,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> Conditions {
    let mut c = conditions.clone();
    if let Some(start) = start {
        c.push("r.run_after >= {}", vec![super::filter::Bind::Time(start)]);
    }
    if let Some(end) = end {
        c.push("r.run_after <= {}", vec![super::filter::Bind::Time(end)]);
    }
    c
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
