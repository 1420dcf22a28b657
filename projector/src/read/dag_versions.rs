//! `dag_version`: the recorded versions of each DAG, and the blobs a version points at.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, FromRow, PgPool};
use uuid::Uuid;

use super::filter::{Bind, Conditions};
use super::page::{ListQuery, Window, fetch_page};

/// The expressions a version list orders by.
pub mod columns {
    /// The version's id.
    pub const ID: &str = "v.id";
    /// The version's number (1 for a DAG's first).
    pub const VERSION_NUMBER: &str = "v.version_number";
    /// The version's bundle.
    pub const BUNDLE_NAME: &str = "v.bundle_name";
    /// When the version was recorded.
    pub const CREATED_AT: &str = "v.created_at";
}

/// A `dag_version` row.
#[derive(Debug, Clone, FromRow)]
pub struct VersionRecord {
    /// The version's id.
    pub id: Uuid,
    /// Its DAG.
    pub dag_id: String,
    /// Its number (1 for the DAG's first).
    pub version_number: i32,
    /// The hash of its compiled document.
    pub version_hash: String,
    /// Its DAG file's blob, when recorded.
    pub source_hash: Option<String>,
    /// Its compiled document's blob, when recorded.
    pub document_hash: Option<String>,
    /// Its file.
    pub fileloc: String,
    /// Its bundle.
    pub bundle_name: String,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// The git commit a pushed version was compiled from.
    pub bundle_version: Option<String>,
    /// The task image a pushed version was built with.
    pub image: Option<String>,
}

const VERSION_COLUMNS: &str = "v.id, v.dag_id, v.version_number, v.version_hash, v.source_hash, \
    v.document_hash, v.fileloc, v.bundle_name, v.created_at, v.bundle_version, v.image";

/// The versions of the DAGs named, oldest first.
pub async fn of_dags(pool: &PgPool, dag_ids: &[String]) -> sqlx::Result<Vec<VersionRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM dag_version v WHERE v.dag_id = ANY($1) \
         ORDER BY v.version_number"
    )))
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

/// The version with id `id`, if recorded.
pub async fn by_id(pool: &PgPool, id: Uuid) -> sqlx::Result<Option<VersionRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM dag_version v WHERE v.id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Version `number` of a DAG, if recorded.
pub async fn by_number(
    pool: &PgPool,
    dag_id: &str,
    number: i32,
) -> sqlx::Result<Option<VersionRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM dag_version v WHERE v.dag_id = $1 AND v.version_number = $2"
    )))
    .bind(dag_id)
    .bind(number)
    .fetch_optional(pool)
    .await
}

/// A DAG's newest version, if it has one.
pub async fn latest(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<VersionRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM dag_version v WHERE v.dag_id = $1 \
         ORDER BY v.version_number DESC LIMIT 1"
    )))
    .bind(dag_id)
    .fetch_optional(pool)
    .await
}

/// The versions of `dag_id` (of every DAG when `None`) in `window`, in `order` (expressions
/// of [`columns`]), and how many there are in all.
pub async fn page(
    pool: &PgPool,
    dag_id: Option<&str>,
    scope: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<VersionRecord>, i64)> {
    let mut conditions = scope.clone();
    if let Some(dag_id) = dag_id {
        conditions.eq("v.dag_id", Bind::Text(dag_id.to_owned()));
    }
    let list = ListQuery {
        select: &format!("SELECT {VERSION_COLUMNS} FROM dag_version v"),
        count_from: "FROM dag_version v",
        conditions: &conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// The column naming a version's DAG in [`page`]'s conditions.
pub const DAG_ID: &str = "v.dag_id";

/// Adds to a list of runs or task instances (`r.` their run): the run was queued with one of
/// the versions numbered `numbers`.
pub fn run_on_version(conditions: &mut Conditions, numbers: Vec<i32>) {
    conditions.push(
        "EXISTS (SELECT 1 FROM dag_version v WHERE v.dag_id = r.dag_id \
         AND v.version_hash = r.dag_version_hash AND v.version_number = ANY({}))",
        vec![Bind::Ints(numbers)],
    );
}

/// The blobs of a DAG version: its compiled document and its source file.
#[derive(Debug, Clone, FromRow)]
pub struct VersionBlobs {
    /// The dag.json document's blob, when recorded.
    pub document_hash: Option<String>,
    /// The DAG file's blob, when recorded.
    pub source_hash: Option<String>,
}

/// The blobs of version `version_hash` of a DAG. A version hash can be recorded more than
/// once (a DAG re-added after a delete); the newest record wins.
pub async fn blobs(
    pool: &PgPool,
    dag_id: &str,
    version_hash: &str,
) -> Result<Option<VersionBlobs>, sqlx::Error> {
    sqlx::query_as(
        "SELECT document_hash, source_hash FROM dag_version \
         WHERE dag_id = $1 AND version_hash = $2 ORDER BY version_number DESC LIMIT 1",
    )
    .bind(dag_id)
    .bind(version_hash)
    .fetch_optional(pool)
    .await
}
