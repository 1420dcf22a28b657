//! `dag_run`: one run, lists of runs, each DAG's latest runs, counts by state, and what the
//! scheduler and its agents read of a run.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page, page_rows};

/// The expressions a list of runs filters and orders by (`r.` the run).
pub mod columns {
    /// The run's row id.
    pub const ID: &str = "r.id";
    /// Its DAG.
    pub const DAG_ID: &str = "r.dag_id";
    /// Its run id.
    pub const RUN_ID: &str = "r.run_id";
    /// Its state.
    pub const STATE: &str = "r.state";
    /// Its run type.
    pub const RUN_TYPE: &str = "r.run_type";
    /// Its logical date.
    pub const LOGICAL_DATE: &str = "r.logical_date";
    /// Its logical date, or when it may start for runs without one.
    pub const LOGICAL_DATE_OR_RUN_AFTER: &str = "coalesce(r.logical_date, r.run_after)";
    /// Start of its data interval.
    pub const DATA_INTERVAL_START: &str = "r.data_interval_start";
    /// End of its data interval.
    pub const DATA_INTERVAL_END: &str = "r.data_interval_end";
    /// When it may start.
    pub const RUN_AFTER: &str = "r.run_after";
    /// When it was queued.
    pub const QUEUED_AT: &str = "r.queued_at";
    /// When it started.
    pub const START_DATE: &str = "r.start_date";
    /// When it ended.
    pub const END_DATE: &str = "r.end_date";
    /// Its conf as JSON text.
    pub const CONF_TEXT: &str = "r.conf::text";
    /// Who triggered it.
    pub const TRIGGERING_USER_NAME: &str = "r.triggering_user_name";
    /// Seconds from its start to its end.
    pub const DURATION: &str = "EXTRACT(EPOCH FROM (r.end_date - r.start_date))";
    /// When it last changed state.
    pub const UPDATED_AT: &str = "GREATEST(r.queued_at, r.start_date, r.end_date)";
}

/// A `dag_run` row.
#[derive(Debug, Clone, FromRow)]
pub struct RunRecord {
    /// Its DAG.
    pub dag_id: String,
    /// Its run id.
    pub run_id: String,
    /// Its row id.
    pub id: i64,
    /// Its state.
    pub state: String,
    /// `manual`, `scheduled`, `backfill` or `asset_triggered`.
    pub run_type: String,
    /// Its logical date (none for runs triggered without one).
    pub logical_date: Option<DateTime<Utc>>,
    /// Start of its data interval.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// End of its data interval.
    pub data_interval_end: Option<DateTime<Utc>>,
    /// When it may start.
    pub run_after: DateTime<Utc>,
    /// When it was queued.
    pub queued_at: Option<DateTime<Utc>>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Its conf (a JSON object).
    pub conf: Value,
    /// What triggered it, as recorded.
    pub triggered_by: String,
    /// The DAG version it was queued with.
    pub dag_version_hash: Option<String>,
    /// Its note.
    pub note: Option<String>,
    /// Who triggered it.
    pub triggering_user_name: Option<String>,
}

const RUN_COLUMNS: &str = "r.dag_id, r.run_id, r.id, r.state, r.run_type, r.logical_date, \
    r.data_interval_start, r.data_interval_end, r.run_after, r.queued_at, r.start_date, \
    r.end_date, r.conf, r.triggered_by, r.dag_version_hash, r.note, r.triggering_user_name";

/// The run of a DAG with logical date `at`, if there is one (the latest queued, should there be
/// several: a logical date names one run in Airflow).
pub async fn by_logical_date(
    pool: &PgPool,
    dag_id: &str,
    at: DateTime<Utc>,
) -> sqlx::Result<Option<RunRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 AND r.logical_date = $2 \
         ORDER BY r.queued_at DESC NULLS LAST LIMIT 1"
    )))
    .bind(dag_id)
    .bind(at)
    .fetch_optional(pool)
    .await
}

/// Run `run_id` of a DAG, if it exists.
pub async fn find(pool: &PgPool, dag_id: &str, run_id: &str) -> sqlx::Result<Option<RunRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 AND r.run_id = $2"
    )))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(pool)
    .await
}

/// The runs under `conditions` in `window`, in `order` (expressions of [`columns`]), and how
/// many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<RunRecord>, i64)> {
    let list = ListQuery {
        select: &format!("SELECT {RUN_COLUMNS} FROM dag_run r"),
        count_from: "FROM dag_run r",
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// The runs under `conditions` in `window`, in `order`, without counting them all.
pub async fn rows(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<Vec<RunRecord>> {
    let select = format!("SELECT {RUN_COLUMNS} FROM dag_run r");
    page_rows(pool, &select, conditions, order, window).await
}

/// The latest `limit` runs (by `run_after`) of each of `dag_ids`, newest first per DAG.
pub async fn latest_of_dags(
    pool: &PgPool,
    dag_ids: &[String],
    limit: i64,
) -> sqlx::Result<Vec<RunRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM unnest($1::text[]) AS ids(dag_id) \
         CROSS JOIN LATERAL (SELECT * FROM dag_run r WHERE r.dag_id = ids.dag_id \
         ORDER BY r.run_after DESC LIMIT $2) r"
    )))
    .bind(dag_ids)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A DAG's latest run (by `run_after`), if it has one.
pub async fn latest(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<RunRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 ORDER BY r.run_after DESC LIMIT 1"
    )))
    .bind(dag_id)
    .fetch_optional(pool)
    .await
}

/// The latest successful run of a DAG before logical date `before` (Airflow's previous
/// successful run, what the `prev_*_success` context values are read from).
pub async fn previous_success(
    pool: &PgPool,
    dag_id: &str,
    before: DateTime<Utc>,
) -> sqlx::Result<Option<RunRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 AND r.state = 'success' \
         AND r.logical_date < $2 ORDER BY r.logical_date DESC LIMIT 1"
    )))
    .bind(dag_id)
    .bind(before)
    .fetch_optional(pool)
    .await
}

/// A task instance of the run before another (`depends_on_past`).
#[derive(Debug, Clone, FromRow)]
pub struct PastInstance {
    /// The previous run.
    pub run_id: String,
    /// One of the tasks asked about; `None` when the previous run has none of them.
    pub task_id: Option<String>,
    /// Its map index.
    pub map_index: Option<i32>,
    /// Its state.
    pub state: Option<String>,
}

/// The instances of `task_ids` in Airflow's previous run of `run_id`: the DAG's run with the
/// latest logical date before its own (only scheduled ones with `scheduled_only`, Airflow's
/// rule for a DAG with catchup). Empty when there is none (a run without a logical date has
/// none); one row with no task when the previous run has none of them.
pub async fn previous_instances(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_ids: &[String],
    scheduled_only: bool,
) -> sqlx::Result<Vec<PastInstance>> {
    sqlx::query_as(
        "SELECT p.run_id, t.task_id, t.map_index, t.state FROM dag_run c \
         JOIN LATERAL (SELECT run_id FROM dag_run p WHERE p.dag_id = c.dag_id \
           AND p.logical_date < c.logical_date AND (NOT $4 OR p.run_type = 'scheduled') \
           ORDER BY p.logical_date DESC LIMIT 1) p ON true \
         LEFT JOIN task_instance t ON t.dag_id = c.dag_id AND t.run_id = p.run_id \
           AND t.task_id = ANY($3) \
         WHERE c.dag_id = $1 AND c.run_id = $2",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_ids)
    .bind(scheduled_only)
    .fetch_all(pool)
    .await
}

/// The latest scheduled run of a DAG: what its timetable continues from.
#[derive(Debug, Clone, FromRow)]
pub struct LastScheduled {
    /// Its DAG.
    pub dag_id: String,
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// When it could start.
    pub run_after: DateTime<Utc>,
    /// Start of its data interval.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// End of its data interval.
    pub data_interval_end: Option<DateTime<Utc>>,
}

/// The latest scheduled run (by logical date) of each of `dag_ids` that has one.
pub async fn last_scheduled(pool: &PgPool, dag_ids: &[String]) -> sqlx::Result<Vec<LastScheduled>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (dag_id) dag_id, logical_date, run_after, data_interval_start, \
             data_interval_end FROM dag_run WHERE dag_id = ANY($1) AND run_type = 'scheduled' \
             AND logical_date IS NOT NULL ORDER BY dag_id, logical_date DESC",
    )
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

/// How many runs of a DAG are in one of `states`.
pub async fn count_in_states(pool: &PgPool, dag_id: &str, states: &[&str]) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM dag_run WHERE dag_id = $1 AND state = ANY($2)")
        .bind(dag_id)
        .bind(states)
        .fetch_one(pool)
        .await
}

/// How many runs each of `dag_ids` has in each state, as `(dag_id, state, count)` (states
/// without runs left out).
pub async fn counts_by_dag_and_state(
    pool: &PgPool,
    dag_ids: &[String],
) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "SELECT dag_id, state, count(*) FROM dag_run WHERE dag_id = ANY($1) GROUP BY dag_id, state",
    )
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

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
