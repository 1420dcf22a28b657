//! `xcom`: what tasks pushed, listed with what the API needs of their runs, and pulled (with
//! their values) by the tasks that read them.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page};

/// The expressions a list of XComs filters and orders by (`x.` the XCom, `r.` its run: see
/// [`super::runs::columns`]).
pub mod columns {
    /// Its DAG.
    pub const DAG_ID: &str = "x.dag_id";
    /// Its run.
    pub const RUN_ID: &str = "x.run_id";
    /// The task that pushed it.
    pub const TASK_ID: &str = "x.task_id";
    /// That task's map index (-1 when not mapped).
    pub const MAP_INDEX: &str = "x.map_index";
    /// Its key.
    pub const KEY: &str = "x.key";
    /// When it was pushed.
    pub const TIMESTAMP: &str = "x.timestamp";
    /// The default order.
    pub const DEFAULT_ORDER: &str = "x.dag_id, x.task_id, x.run_id, x.map_index, x.key";
}

/// An `xcom` row with what its responses need of its run.
#[derive(Debug, Clone, FromRow)]
pub struct XComRecord {
    /// Its DAG.
    pub dag_id: String,
    /// Its run.
    pub run_id: String,
    /// The task that pushed it.
    pub task_id: String,
    /// That task's map index.
    pub map_index: i32,
    /// Its key.
    pub key: String,
    /// The blob of its value (JSON).
    pub value_hash: String,
    /// When it was pushed.
    pub timestamp: DateTime<Utc>,
    /// Its run's logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// When its run may start.
    pub run_after: DateTime<Utc>,
}

const XCOM_COLUMNS: &str = "x.dag_id, x.run_id, x.task_id, x.map_index, x.key, x.value_hash, \
    x.timestamp, r.logical_date, r.run_after";
const XCOM_FROM: &str = "FROM xcom x JOIN dag_run r ON r.dag_id = x.dag_id AND r.run_id = x.run_id";

/// The XComs under `conditions` in `window`, in `order` (expressions of [`columns`] and of
/// the run's), and how many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<XComRecord>, i64)> {
    let list = ListQuery {
        select: &format!("SELECT {XCOM_COLUMNS} {XCOM_FROM}"),
        count_from: XCOM_FROM,
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Where an XCom is: the task instance that pushed it and its key.
#[derive(Debug, Clone, Copy)]
pub struct XComKey<'a> {
    /// Its DAG.
    pub dag_id: &'a str,
    /// Its run.
    pub run_id: &'a str,
    /// The task that pushed it.
    pub task_id: &'a str,
    /// That task's map index.
    pub map_index: i32,
    /// Its key.
    pub key: &'a str,
}

/// The XCom at `at`, if pushed.
pub async fn find(pool: &PgPool, at: XComKey<'_>) -> sqlx::Result<Option<XComRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {XCOM_COLUMNS} {XCOM_FROM} WHERE x.dag_id = $1 AND x.run_id = $2 AND x.task_id = $3 \
         AND x.map_index = $4 AND x.key = $5"
    )))
    .bind(at.dag_id)
    .bind(at.run_id)
    .bind(at.task_id)
    .bind(at.map_index)
    .bind(at.key)
    .fetch_optional(pool)
    .await
}

/// A value a task pulls: where it was pushed, its blob, and its JSON text when it was read
/// with the row.
#[derive(Debug, Clone, FromRow)]
pub struct PulledXCom {
    /// The map index of the task instance that pushed it.
    pub map_index: i32,
    /// Its blob's hash.
    pub value_hash: String,
    /// Its JSON text, when smaller than the pull's `inline_below` (and its blob is there).
    pub content: Option<String>,
}

/// The values `task_id` of a run pushed under `key` (of map index `map_index` only, when
/// given), in map-index order; a value of `inline_below` bytes or more is left for the caller
/// to read by its hash (through a cache), the others come with their rows.
pub async fn pull(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    key: &str,
    map_index: Option<i32>,
    inline_below: i64,
) -> sqlx::Result<Vec<PulledXCom>> {
    sqlx::query_as(
        "SELECT x.map_index, x.value_hash, \
                CASE WHEN x.size_bytes < $6 THEN b.content END AS content \
         FROM xcom x LEFT JOIN blobs b ON b.hash = x.value_hash \
         WHERE x.dag_id = $1 AND x.run_id = $2 AND x.task_id = $3 AND x.key = $4 \
           AND ($5::int IS NULL OR x.map_index = $5) ORDER BY x.map_index",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(key)
    .bind(map_index)
    .bind(inline_below)
    .fetch_all(pool)
    .await
}
