//! `dag`: one DAG, the DAG list, tags and ids, and what the commands read of a DAG before
//! deciding.

use chrono::{DateTime, Utc};
use leoflow_events::AccessControl;
use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::filter::{Bind, Conditions};
use super::page::{ListQuery, Window, fetch_page};

/// The expressions a DAG list filters and orders by (`d.` the DAG, `lr.` its latest run).
pub mod columns {
    /// The DAG's id.
    pub const DAG_ID: &str = "d.dag_id";
    /// Whether the DAG is paused.
    pub const IS_PAUSED: &str = "d.is_paused";
    /// Whether the DAG's file no longer defines it.
    pub const IS_STALE: &str = "d.is_stale";
    /// The DAG's bundle.
    pub const BUNDLE_NAME: &str = "d.bundle_name";
    /// The DAG's tags (a JSON array of strings).
    pub const TAGS: &str = "d.tags";
    /// The DAG's owners as a `text[]`.
    pub const OWNER_LIST: &str = "string_to_array(d.owners, ', ')";
    /// Whether the DAG's file has an import error.
    pub const HAS_IMPORT_ERRORS: &str =
        "EXISTS (SELECT 1 FROM import_error ie WHERE ie.filename = d.fileloc)";
    /// The state of the DAG's latest run.
    pub const LAST_RUN_STATE: &str = "lr.state";
    /// The start of the DAG's latest run.
    pub const LAST_RUN_START_DATE: &str = "lr.start_date";
    /// The roles the DAG's `access_control` lets read it, a `text[]` (GIN-indexed: filter
    /// with `&&`, as in `d.readable_by && $roles`).
    pub const READABLE_BY: &str = "d.readable_by";
    /// The tenant that owns the DAG (indexed with the DAG's id: `(tenant, dag_id)`).
    pub const TENANT: &str = "d.tenant";
}

/// A `dag` row, with whether its file has an import error.
#[derive(Debug, Clone, FromRow)]
pub struct DagRecord {
    /// The DAG's id.
    pub dag_id: String,
    /// Whether it is paused.
    pub is_paused: bool,
    /// Whether its file no longer defines it.
    pub is_stale: bool,
    /// Its file, under its bundle (`bundle/dag.py`).
    pub fileloc: String,
    /// Its bundle.
    pub bundle_name: String,
    /// Its description.
    pub description: Option<String>,
    /// Its owners, comma-separated.
    pub owners: String,
    /// Its tags (a JSON array of strings).
    pub tags: Value,
    /// Its schedule, when it has one.
    pub timetable_summary: Option<String>,
    /// Runs at most active at once.
    pub max_active_runs: i32,
    /// Task instances at most active at once.
    pub max_active_tasks: i32,
    /// Whether missed intervals are run.
    pub catchup: bool,
    /// When its file was last compiled.
    pub last_parsed_time: DateTime<Utc>,
    /// Its latest version's id.
    pub latest_version_id: Uuid,
    /// Its latest version's hash.
    pub latest_version_hash: String,
    /// Whether its file has an import error.
    pub has_import_errors: bool,
    /// Per-DAG access: role → what it may do with this DAG.
    #[sqlx(json)]
    pub access_control: AccessControl,
    /// The tenant that owns it.
    pub tenant: String,
}

const DAG_COLUMNS: &str = "d.dag_id, d.is_paused, d.is_stale, d.fileloc, d.bundle_name, \
    d.description, d.owners, d.tags, d.timetable_summary, d.max_active_runs, d.max_active_tasks, \
    d.catchup, d.last_parsed_time, d.latest_version_id, d.latest_version_hash, d.access_control, \
    d.tenant, EXISTS (SELECT 1 FROM import_error ie WHERE ie.filename = d.fileloc) AS has_import_errors";

/// DAGs with their latest run (`lr.`), which a list filters and orders by.
const LIST_FROM: &str = "FROM dag d LEFT JOIN LATERAL (SELECT r.state, r.start_date FROM dag_run r \
    WHERE r.dag_id = d.dag_id ORDER BY r.run_after DESC LIMIT 1) lr ON true";

/// The DAG `dag_id`, if there is one.
pub async fn find(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<DagRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {DAG_COLUMNS} FROM dag d WHERE d.dag_id = $1"
    )))
    .bind(dag_id)
    .fetch_optional(pool)
    .await
}

/// The DAGs under `conditions` in `window`, in `order` (expressions of [`columns`]), and how
/// many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<DagRecord>, i64)> {
    let list = ListQuery {
        select: &format!("SELECT {DAG_COLUMNS} {LIST_FROM}"),
        count_from: LIST_FROM,
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Adds to a DAG list's `conditions`: the DAG has a run matching `runs` (conditions on
/// `dag_run r`, e.g. [`super::runs::columns`]).
pub fn has_run(conditions: &mut Conditions, runs: &Conditions) {
    conditions.exists("SELECT 1 FROM dag_run r", "r.dag_id = d.dag_id", runs);
}

/// Adds to a DAG list's `conditions`: whether `username` marked the DAG as a favorite is
/// `favorite`.
pub fn favorite_of(conditions: &mut Conditions, username: &str, favorite: bool) {
    conditions.push(
        "EXISTS (SELECT 1 FROM dag_favorite f WHERE f.dag_id = d.dag_id AND f.username = {}) = {}",
        vec![Bind::Text(username.to_owned()), Bind::Bool(favorite)],
    );
}

/// The ids of the DAGs (`d`) under `conditions`, sorted.
pub async fn ids(pool: &PgPool, conditions: &Conditions) -> sqlx::Result<Vec<String>> {
    let mut query = QueryBuilder::<Postgres>::new("SELECT d.dag_id FROM dag d");
    conditions.apply(&mut query);
    query.push(" ORDER BY d.dag_id");
    query.build_query_scalar().fetch_all(pool).await
}

/// The distinct tags of the DAGs (`d`) under `conditions`, sorted, matching the `ILIKE`
/// `pattern` and starting with `prefix` (either ignored when empty).
pub async fn tags(
    pool: &PgPool,
    pattern: &str,
    prefix: &str,
    conditions: &Conditions,
) -> sqlx::Result<Vec<String>> {
    let mut c = conditions.clone();
    if !pattern.is_empty() {
        c.push("tag ILIKE {}", vec![Bind::Text(pattern.to_owned())]);
    }
    if !prefix.is_empty() {
        c.push("starts_with(tag, {})", vec![Bind::Text(prefix.to_owned())]);
    }
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT DISTINCT tag FROM dag d, jsonb_array_elements_text(d.tags) AS tag",
    );
    c.apply(&mut query);
    query.push(" ORDER BY tag");
    query.build_query_scalar().fetch_all(pool).await
}

/// Whether a DAG is paused and its `max_active_tasks`; [`sqlx::Error::RowNotFound`] when
/// there is no such DAG (callers have found the DAG already).
pub async fn pause_and_task_limit(pool: &PgPool, dag_id: &str) -> sqlx::Result<(bool, i32)> {
    sqlx::query_as("SELECT is_paused, max_active_tasks FROM dag WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_one(pool)
        .await
}

/// Who may reach one DAG: the tenant that owns it and its per-DAG access.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct DagOwner {
    /// The tenant that owns the DAG.
    pub tenant: String,
    /// Per-DAG access: role → what it may do with the DAG.
    #[sqlx(json)]
    pub access_control: AccessControl,
}

/// The tenant and the per-DAG access of a DAG; `None` when there is no such DAG. What every
/// request about one DAG checks, so it reads only these two columns, by primary key.
pub async fn owner(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<DagOwner>> {
    sqlx::query_as("SELECT tenant, access_control FROM dag WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
}

/// A DAG's per-DAG access (role → what it may do with the DAG); `None` when there is no such
/// DAG. [`owner`] without the tenant.
pub async fn access_control(pool: &PgPool, dag_id: &str) -> sqlx::Result<Option<AccessControl>> {
    Ok(owner(pool, dag_id).await?.map(|owner| owner.access_control))
}

/// Whether a DAG is paused; `None` when there is no such DAG.
pub async fn is_paused(pool: &PgPool, dag_id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT is_paused FROM dag WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
}

/// A registered DAG's latest version and its tenant: what registering a project compares
/// its compiled DAGs with.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct LatestVersion {
    /// The DAG's id.
    pub dag_id: String,
    /// The tenant that owns it.
    pub tenant: String,
    /// Its latest version's hash.
    pub version_hash: String,
}

/// The latest version of each of `dag_ids` that exists, with its tenant.
pub async fn latest_versions(
    pool: &PgPool,
    dag_ids: &[String],
) -> Result<Vec<LatestVersion>, sqlx::Error> {
    sqlx::query_as(
        "SELECT dag_id, tenant, latest_version_hash AS version_hash FROM dag \
         WHERE dag_id = ANY($1) ORDER BY dag_id",
    )
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

/// What triggering a DAG reads of it: its latest version and that version's document, with
/// the DAG's generation read at the same time.
#[derive(Debug, Clone, FromRow)]
pub struct TriggerTarget {
    /// The DAG's latest version's hash.
    pub latest_version_hash: String,
    /// That version's dag.json blob, when recorded.
    pub document_hash: Option<String>,
    /// The version of the DAG's generation stream; `None` before its first delete.
    pub generation: Option<i64>,
}

/// What triggering `dag_id` reads of it, `None` when there is no such DAG. The generation is
/// the version of the event stream `generation_stream` (the events crate's `event_streams`),
/// read as a subselect of the same query so a delete after this read refuses the run.
pub async fn trigger_target(
    pool: &PgPool,
    dag_id: &str,
    generation_stream: &str,
) -> sqlx::Result<Option<TriggerTarget>> {
    sqlx::query_as(
        "SELECT d.latest_version_hash, v.document_hash, \
           (SELECT version FROM event_streams WHERE stream = $2) AS generation \
         FROM dag d JOIN dag_version v ON v.id = d.latest_version_id WHERE d.dag_id = $1",
    )
    .bind(dag_id)
    .bind(generation_stream)
    .fetch_optional(pool)
    .await
}

/// The generation of `dag_id` (the version of the event stream `generation_stream`, `None`
/// inside when the stream has none yet), or `None` when there is no such DAG. The stream's
/// version is a subselect of the query that finds the DAG, so both are read at once.
pub async fn generation(
    pool: &PgPool,
    dag_id: &str,
    generation_stream: &str,
) -> sqlx::Result<Option<Option<i64>>> {
    sqlx::query_scalar(
        "SELECT (SELECT version FROM event_streams WHERE stream = $2) FROM dag WHERE dag_id = $1",
    )
    .bind(dag_id)
    .bind(generation_stream)
    .fetch_optional(pool)
    .await
}
