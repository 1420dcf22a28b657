//! `asset`, `asset_event`, `asset_dag_run_queue`, `asset_event_dag_run`, `asset_alias` and
//! `asset_alias_asset`, and the DAGs scheduled on an asset.
//!
//! An asset belongs to no tenant: it is visible to a tenant when one of the tenant's DAGs names
//! it or a task of the tenant added an event of it through an alias ([`visible_to`]). An alias
//! likewise: when one of the tenant's DAGs names it or it stands for an asset in the tenant
//! ([`alias_visible_to`]); what it stands for is the tenant's (`asset_alias_asset.tenant`). Its
//! events belong to the tenant they were recorded in (`asset_event.tenant`), a DAG's queue to
//! the DAG's tenant.

use chrono::{DateTime, Utc};
use leoflow_events::catalog::AssetKey;
use serde_json::Value;
use sqlx::{AssertSqlSafe, FromRow, PgPool, Postgres, QueryBuilder};

use super::filter::{Bind, Conditions};
use super::page::{ListQuery, Window, fetch_page, page_rows};

/// The DAGs of `tenant` an update of `asset` queues a run for: those not paused (Airflow's asset
/// manager skips paused DAGs) whose latest version is scheduled on the asset, on one of the
/// `aliases` it was added through, or on an alias that already stands for it in the tenant (as
/// Airflow's re-parse resolves an alias to its assets), sorted.
pub async fn scheduled_dags(
    pool: &PgPool,
    tenant: &str,
    asset: &AssetKey,
    aliases: &[String],
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT dag_id FROM dag \
         WHERE tenant = $1 AND NOT is_paused AND asset_expression IS NOT NULL \
           AND (jsonb_path_exists(asset_expression, \
                                  '$.**.asset ? (@.name == $n && @.uri == $u)', \
                                  jsonb_build_object('n', $2::text, 'u', $3::text)) \
                OR EXISTS (SELECT 1 FROM (SELECT unnest($4::text[]) AS alias \
                                          UNION SELECT alias_name FROM asset_alias_asset \
                                          WHERE tenant = $1 AND asset_id = $5) a \
                           WHERE jsonb_path_exists(dag.asset_expression, \
                                                   '$.**.alias ? (@.name == $a)', \
                                                   jsonb_build_object('a', a.alias)))) \
         ORDER BY dag_id",
    )
    .bind(tenant)
    .bind(&asset.name)
    .bind(&asset.uri)
    .bind(aliases)
    .bind(asset.id())
    .fetch_all(pool)
    .await
}

/// The expressions a list of assets filters and orders by (`a.` the asset).
pub mod columns {
    /// The asset's id.
    pub const ID: &str = "a.id";
    /// Its name.
    pub const NAME: &str = "a.name";
    /// Its URI.
    pub const URI: &str = "a.uri";
    /// When a DAG first named it.
    pub const CREATED_AT: &str = "a.created_at";
    /// When a DAG last named it differently.
    pub const UPDATED_AT: &str = "a.updated_at";
}

/// The expressions a list of asset events filters and orders by (`e.` the event, `a.` its
/// asset).
pub mod event_columns {
    /// The event's id (its position in the log).
    pub const ID: &str = "e.id";
    /// Its asset's id.
    pub const ASSET_ID: &str = "e.asset_id";
    /// The tenant it was recorded in.
    pub const TENANT: &str = "e.tenant";
    /// Its source task instance's DAG.
    pub const SOURCE_DAG_ID: &str = "e.source_dag_id";
    /// Its source task.
    pub const SOURCE_TASK_ID: &str = "e.source_task_id";
    /// Its source run.
    pub const SOURCE_RUN_ID: &str = "e.source_run_id";
    /// Its source map index; -1 (Airflow's default) for an event no task recorded.
    pub const SOURCE_MAP_INDEX: &str = "coalesce(e.source_map_index, -1)";
    /// When it was recorded.
    pub const TIMESTAMP: &str = "e.timestamp";
    /// Its asset's name.
    pub const ASSET_NAME: &str = "a.name";
}

/// The expressions a DAG's queue of asset events is chosen by (`q.` the queue entry, `d.` its
/// DAG).
pub mod queue_columns {
    /// The queued asset.
    pub const ASSET_ID: &str = "q.asset_id";
    /// The DAG whose queue it is.
    pub const DAG_ID: &str = "q.target_dag_id";
    /// When the asset was first queued for the DAG.
    pub const CREATED_AT: &str = "q.created_at";
    /// The DAG's tenant.
    pub const TENANT: &str = "d.tenant";
}

/// SQL: the DAG `d` names the asset `a` (in its schedule, or as a task's outlet or inlet).
const NAMES_ASSET: &str = "d.asset_references @> jsonb_build_array(jsonb_build_object(\
    'asset', jsonb_build_object('name', a.name, 'uri', a.uri)))";

/// Adds to a list of assets (`a`): a DAG under `dags` (conditions on `dag d`) names the asset.
pub fn named_by(conditions: &mut Conditions, dags: &Conditions) {
    conditions.exists("SELECT 1 FROM dag d", NAMES_ASSET, dags);
}

/// Adds to a list of assets (`a`): the asset is visible to `tenant` (one of its DAGs names it,
/// or an alias stands for it there: a task of the tenant added an event of it through the
/// alias, though no DAG may name it); `None` (every tenant) adds nothing.
pub fn visible_to(conditions: &mut Conditions, tenant: Option<&str>) {
    if let Some(tenant) = tenant {
        conditions.push(
            &format!(
                "(EXISTS (SELECT 1 FROM dag d WHERE d.tenant = {{}} AND {NAMES_ASSET}) \
                 OR EXISTS (SELECT 1 FROM asset_alias_asset aa \
                            WHERE aa.tenant = {{}} AND aa.asset_id = a.id))"
            ),
            vec![Bind::Text(tenant.to_owned()), Bind::Text(tenant.to_owned())],
        );
    }
}

/// Adds to a DAG list (`d`): whether the DAG is scheduled on assets (or asset aliases) is
/// `scheduled`.
pub fn scheduled_on_assets(conditions: &mut Conditions, scheduled: bool) {
    conditions.push(
        "(d.asset_expression IS NOT NULL) = {}",
        vec![Bind::Bool(scheduled)],
    );
}

/// Adds to a DAG list (`d`): the DAG is scheduled on an asset whose name or URI contains
/// `text` (case-insensitive, its LIKE wildcards kept, as Airflow's `asset_dependency`).
pub fn scheduled_on_asset_like(conditions: &mut Conditions, text: &str) {
    let pattern = format!("%{text}%");
    conditions.push(
        "EXISTS (SELECT 1 FROM jsonb_array_elements(d.asset_references) r \
         WHERE r->>'role' = 'schedule' \
           AND (r->'asset'->>'name' ILIKE {} OR r->'asset'->>'uri' ILIKE {}))",
        vec![Bind::Text(pattern.clone()), Bind::Text(pattern)],
    );
}

/// An `asset` row.
#[derive(Debug, Clone, FromRow)]
pub struct AssetRecord {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// Its group.
    pub asset_group: String,
    /// Its `extra` (a JSON object).
    pub extra: Value,
    /// When a DAG first named it.
    pub created_at: DateTime<Utc>,
    /// When a DAG last named it differently.
    pub updated_at: DateTime<Utc>,
}

const ASSET_SELECT: &str =
    "SELECT a.id, a.name, a.uri, a.asset_group, a.extra, a.created_at, a.updated_at FROM asset a";

/// The assets under `conditions` in `window`, in `order` (expressions of [`columns`]), and how
/// many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<AssetRecord>, i64)> {
    let list = ListQuery {
        select: ASSET_SELECT,
        count_from: "FROM asset a",
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Asset `id`, if it exists and is visible to `tenant` (`None`: every tenant).
pub async fn find(
    pool: &PgPool,
    id: i64,
    tenant: Option<&str>,
) -> sqlx::Result<Option<AssetRecord>> {
    let mut conditions = Conditions::new();
    conditions.eq(columns::ID, Bind::BigInt(id));
    visible_to(&mut conditions, tenant);
    let mut query = QueryBuilder::<Postgres>::new(ASSET_SELECT);
    conditions.apply(&mut query);
    query.build_query_as().fetch_optional(pool).await
}

/// An asset's latest event (the latest timestamp, the highest id among equals), as Airflow's
/// `last_asset_event`.
#[derive(Debug, Clone, FromRow)]
pub struct LastEvent {
    /// The asset.
    pub asset_id: i64,
    /// The event's id.
    pub id: i64,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
}

/// The latest event of each of `asset_ids` recorded in `tenant` (`None`: any tenant).
pub async fn last_events(
    pool: &PgPool,
    asset_ids: &[i64],
    tenant: Option<&str>,
) -> sqlx::Result<Vec<LastEvent>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (asset_id) asset_id, id, timestamp FROM asset_event \
         WHERE asset_id = ANY($1) AND ($2::text IS NULL OR tenant = $2) \
         ORDER BY asset_id, timestamp DESC, id DESC",
    )
    .bind(asset_ids)
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// A DAG's reference to an asset (`DagParsed::asset_references`), with the asset's id and name.
#[derive(Debug, Clone, FromRow)]
pub struct ReferenceRecord {
    /// The asset.
    pub asset_id: i64,
    /// Its name.
    pub asset_name: String,
    /// The DAG naming it.
    pub dag_id: String,
    /// How: `schedule`, `outlet` or `inlet`.
    pub role: String,
    /// The task naming it as an outlet or an inlet.
    pub task_id: Option<String>,
    /// Whether the DAG's file no longer defines it.
    pub is_stale: bool,
    /// When the DAG was last parsed (its references are that parse's).
    pub last_parsed_time: DateTime<Utc>,
}

/// Which references [`references`] reads; each `None` narrows nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReferenceFilter<'a> {
    /// Those of this tenant's DAGs.
    pub tenant: Option<&'a str>,
    /// Those of these DAGs.
    pub dag_ids: Option<&'a [String]>,
    /// Those naming these assets.
    pub asset_ids: Option<&'a [i64]>,
}

/// The references of DAGs to assets under `filter`, by asset, DAG, role and task.
pub async fn references(
    pool: &PgPool,
    filter: ReferenceFilter<'_>,
) -> sqlx::Result<Vec<ReferenceRecord>> {
    sqlx::query_as(
        "SELECT a.id AS asset_id, a.name AS asset_name, d.dag_id, r->>'role' AS role, \
           r->>'task_id' AS task_id, d.is_stale, d.last_parsed_time \
         FROM dag d CROSS JOIN LATERAL jsonb_array_elements(d.asset_references) r \
         JOIN asset a ON a.name = r->'asset'->>'name' AND a.uri = r->'asset'->>'uri' \
         WHERE ($1::text IS NULL OR d.tenant = $1) AND ($2::text[] IS NULL OR d.dag_id = ANY($2)) \
           AND ($3::bigint[] IS NULL OR a.id = ANY($3)) \
         ORDER BY a.id, d.dag_id, r->>'role', r->>'task_id'",
    )
    .bind(filter.tenant)
    .bind(filter.dag_ids)
    .bind(filter.asset_ids)
    .fetch_all(pool)
    .await
}

/// An `asset_event` row with its asset's name, URI and group.
#[derive(Debug, Clone, FromRow)]
pub struct EventRecord {
    /// Its id (its position in the log).
    pub id: i64,
    /// Its asset.
    pub asset_id: i64,
    /// Its asset's name.
    pub name: Option<String>,
    /// Its asset's URI.
    pub uri: Option<String>,
    /// Its asset's group.
    pub asset_group: Option<String>,
    /// Its `extra`.
    pub extra: Value,
    /// Its source task instance's DAG.
    pub source_dag_id: Option<String>,
    /// Its source run.
    pub source_run_id: Option<String>,
    /// Its source task.
    pub source_task_id: Option<String>,
    /// Its source map index.
    pub source_map_index: Option<i32>,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
}

/// An event's asset may be gone from no DAG, but its row stays: the join only adds names.
const EVENT_FROM: &str = "FROM asset_event e LEFT JOIN asset a ON a.id = e.asset_id";

fn event_select() -> String {
    format!(
        "SELECT e.id, e.asset_id, a.name, a.uri, a.asset_group, e.extra, e.source_dag_id, \
         e.source_run_id, e.source_task_id, e.source_map_index, e.timestamp {EVENT_FROM}"
    )
}

/// The asset events under `conditions` in `window`, in `order` (expressions of
/// [`event_columns`]), and how many there are in all.
pub async fn events_page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<EventRecord>, i64)> {
    let list = ListQuery {
        select: &event_select(),
        count_from: EVENT_FROM,
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Every asset event under `conditions`, in `order`.
pub async fn all_events(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
) -> sqlx::Result<Vec<EventRecord>> {
    let all = Window {
        limit: i64::MAX,
        offset: 0,
    };
    page_rows(pool, &event_select(), conditions, order, all).await
}

/// Adds to a list of asset events (`e`): run `run_id` of `dag_id` consumed the event.
pub fn consumed_by(conditions: &mut Conditions, dag_id: &str, run_id: &str) {
    conditions.push(
        "EXISTS (SELECT 1 FROM asset_event_dag_run er \
         WHERE er.event_id = e.id AND er.dag_id = {} AND er.run_id = {})",
        vec![Bind::Text(dag_id.to_owned()), Bind::Text(run_id.to_owned())],
    );
}

/// Asset event `id`, if there is one.
pub async fn event(pool: &PgPool, id: i64) -> sqlx::Result<Option<EventRecord>> {
    sqlx::query_as(AssertSqlSafe(format!("{} WHERE e.id = $1", event_select())))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// A run that consumed an asset event (Airflow's `created_dagruns` of the event).
#[derive(Debug, Clone, FromRow)]
pub struct ConsumingRun {
    /// The event.
    pub event_id: i64,
    /// The run's DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Its logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// When it started; when it was queued, for a run that has not started yet (Airflow's
    /// shape has no room for a missing start).
    pub start_date: DateTime<Utc>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Its state.
    pub state: String,
    /// Start of its data interval.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// End of its data interval.
    pub data_interval_end: Option<DateTime<Utc>>,
}

/// The runs of `tenant`'s DAGs (`None`: any tenant's) that consumed each of `event_ids`.
pub async fn consuming_runs(
    pool: &PgPool,
    event_ids: &[i64],
    tenant: Option<&str>,
) -> sqlx::Result<Vec<ConsumingRun>> {
    sqlx::query_as(
        "SELECT er.event_id, r.dag_id, r.run_id, r.logical_date, \
           coalesce(r.start_date, r.queued_at, r.run_after) AS start_date, r.end_date, r.state, \
           r.data_interval_start, r.data_interval_end \
         FROM asset_event_dag_run er \
         JOIN dag_run r ON r.dag_id = er.dag_id AND r.run_id = er.run_id \
         JOIN dag d ON d.dag_id = r.dag_id \
         WHERE er.event_id = ANY($1) AND ($2::text IS NULL OR d.tenant = $2) \
         ORDER BY er.event_id, r.run_after, r.run_id",
    )
    .bind(event_ids)
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// An `asset_dag_run_queue` row with its asset's name and URI.
#[derive(Debug, Clone, FromRow)]
pub struct QueuedRecord {
    /// The queued asset.
    pub asset_id: i64,
    /// Its name.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// The DAG whose queue it is.
    pub dag_id: String,
    /// When the asset was first queued for the DAG.
    pub created_at: DateTime<Utc>,
}

/// The queue entries under `conditions` (expressions of [`queue_columns`]), by DAG and asset.
pub async fn queued(pool: &PgPool, conditions: &Conditions) -> sqlx::Result<Vec<QueuedRecord>> {
    let mut query = QueryBuilder::<Postgres>::new(
        "SELECT q.asset_id, a.name, a.uri, q.target_dag_id AS dag_id, q.created_at \
         FROM asset_dag_run_queue q JOIN dag d ON d.dag_id = q.target_dag_id \
         JOIN asset a ON a.id = q.asset_id",
    );
    conditions.apply(&mut query);
    query.push(" ORDER BY q.target_dag_id, q.asset_id");
    query.build_query_as().fetch_all(pool).await
}

/// An asset a DAG is scheduled on, and whether its next run has it yet (Airflow's
/// `next_run_assets`).
#[derive(Debug, Clone, FromRow)]
pub struct NextRunAsset {
    /// The asset.
    pub id: i64,
    /// Its URI.
    pub uri: String,
    /// Its name.
    pub name: String,
    /// Its latest update the DAG's queue holds (the latest event of the DAG's tenant since the
    /// asset was queued for it), `None` when the queue does not hold it.
    pub last_update: Option<DateTime<Utc>>,
}

/// The assets `dag_id` is scheduled on, by URI, each with its update waiting in the DAG's queue.
pub async fn next_run_assets(pool: &PgPool, dag_id: &str) -> sqlx::Result<Vec<NextRunAsset>> {
    sqlx::query_as(
        "SELECT DISTINCT a.id, a.uri, a.name, \
           (SELECT max(e.timestamp) FROM asset_event e \
            WHERE e.asset_id = a.id AND e.tenant = d.tenant AND e.timestamp >= q.created_at) \
             AS last_update \
         FROM dag d CROSS JOIN LATERAL jsonb_array_elements(d.asset_references) r \
         JOIN asset a ON a.name = r->'asset'->>'name' AND a.uri = r->'asset'->>'uri' \
         LEFT JOIN asset_dag_run_queue q ON q.asset_id = a.id AND q.target_dag_id = d.dag_id \
         WHERE d.dag_id = $1 AND r->>'role' = 'schedule' \
         ORDER BY a.uri, a.id",
    )
    .bind(dag_id)
    .fetch_all(pool)
    .await
}

/// The asset condition (Airflow's `asset_expression`) of each of `dag_ids` scheduled on assets.
pub async fn expressions(pool: &PgPool, dag_ids: &[String]) -> sqlx::Result<Vec<(String, Value)>> {
    sqlx::query_as(
        "SELECT dag_id, asset_expression FROM dag \
         WHERE dag_id = ANY($1) AND asset_expression IS NOT NULL",
    )
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

/// An asset event as a task reads it (`inlet_events`, `triggering_asset_events`): `{"id",
/// "asset": {"name", "uri", "group", "extra"}, "extra", "source_dag_id", "source_task_id",
/// "source_run_id", "source_map_index", "timestamp"}`.
const TASK_EVENT: &str = "jsonb_build_object('id', e.id, \
     'asset', jsonb_build_object('name', a.name, 'uri', a.uri, 'group', a.asset_group, \
                                 'extra', a.extra), \
     'extra', e.extra, 'source_dag_id', e.source_dag_id, 'source_task_id', e.source_task_id, \
     'source_run_id', e.source_run_id, 'source_map_index', coalesce(e.source_map_index, -1), \
     'timestamp', to_char(e.timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'))";

/// The latest `limit` events of `asset` in `tenant`, oldest first, as a task reads them.
pub async fn events_of(
    pool: &PgPool,
    tenant: &str,
    asset: &AssetKey,
    limit: i64,
) -> sqlx::Result<Vec<serde_json::Value>> {
    let sql = format!(
        "SELECT event FROM (SELECT e.id, {TASK_EVENT} AS event FROM asset_event e \
           JOIN asset a ON a.id = e.asset_id \
           WHERE e.asset_id = $1 AND e.tenant = $2 ORDER BY e.id DESC LIMIT $3) latest \
         ORDER BY id"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(asset.id())
        .bind(tenant)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// The asset events a run consumed (Airflow's `consumed_asset_events`), oldest first, as a
/// task reads them.
pub async fn consumed_by_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
) -> sqlx::Result<Vec<serde_json::Value>> {
    let sql = format!(
        "SELECT {TASK_EVENT} FROM asset_event_dag_run r \
           JOIN asset_event e ON e.id = r.event_id JOIN asset a ON a.id = e.asset_id \
         WHERE r.dag_id = $1 AND r.run_id = $2 ORDER BY e.id"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(dag_id)
        .bind(run_id)
        .fetch_all(pool)
        .await
}

/// The latest `limit` events added through the alias `alias` in `tenant`, oldest first, as a task
/// reads them (`inlet_events[AssetAlias(...)]`).
pub async fn events_through(
    pool: &PgPool,
    tenant: &str,
    alias: &str,
    limit: i64,
) -> sqlx::Result<Vec<serde_json::Value>> {
    let sql = format!(
        "SELECT event FROM (SELECT e.id, {TASK_EVENT} AS event FROM asset_event e \
           JOIN asset a ON a.id = e.asset_id \
           WHERE e.tenant = $1 AND e.source_aliases ? $2 ORDER BY e.id DESC LIMIT $3) latest \
         ORDER BY id"
    );
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(alias)
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// The expressions a list of asset aliases filters and orders by (`al.` the alias).
pub mod alias_columns {
    /// The alias's id.
    pub const ID: &str = "al.id";
    /// Its name.
    pub const NAME: &str = "al.name";
}

/// SQL: the DAG `d` names the alias `al` (in its schedule, or as a task's outlet or inlet).
const NAMES_ALIAS: &str =
    "d.alias_references @> jsonb_build_array(jsonb_build_object('name', al.name))";

/// Adds to a list of asset aliases (`al`): the alias is visible to `tenant` (one of its DAGs
/// names it, or it stands for an asset there); `None` (every tenant) adds nothing.
pub fn alias_visible_to(conditions: &mut Conditions, tenant: Option<&str>) {
    if let Some(tenant) = tenant {
        conditions.push(
            &format!(
                "(EXISTS (SELECT 1 FROM dag d WHERE d.tenant = {{}} AND {NAMES_ALIAS}) \
                 OR EXISTS (SELECT 1 FROM asset_alias_asset aa \
                            WHERE aa.tenant = {{}} AND aa.alias_name = al.name))"
            ),
            vec![Bind::Text(tenant.to_owned()), Bind::Text(tenant.to_owned())],
        );
    }
}

/// An `asset_alias` row.
#[derive(Debug, Clone, FromRow)]
pub struct AliasRecord {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its group.
    pub alias_group: String,
}

const ALIAS_SELECT: &str = "SELECT al.id, al.name, al.alias_group FROM asset_alias al";

/// The asset aliases under `conditions` in `window`, in `order` (expressions of
/// [`alias_columns`]), and how many there are in all.
pub async fn alias_page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<AliasRecord>, i64)> {
    let list = ListQuery {
        select: ALIAS_SELECT,
        count_from: "FROM asset_alias al",
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Asset alias `id`, if it exists and is visible to `tenant` (`None`: every tenant).
pub async fn find_alias(
    pool: &PgPool,
    id: i64,
    tenant: Option<&str>,
) -> sqlx::Result<Option<AliasRecord>> {
    let mut conditions = Conditions::new();
    conditions.eq(alias_columns::ID, Bind::BigInt(id));
    alias_visible_to(&mut conditions, tenant);
    let mut query = QueryBuilder::<Postgres>::new(ALIAS_SELECT);
    conditions.apply(&mut query);
    query.build_query_as().fetch_optional(pool).await
}

/// An alias standing for an asset (Airflow's `AssetModel.aliases`).
#[derive(Debug, Clone, FromRow)]
pub struct StandingAlias {
    /// The asset.
    pub asset_id: i64,
    /// The alias's id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its group.
    pub alias_group: String,
}

/// The aliases standing for each of `asset_ids` in `tenant` (`None`: in any tenant, each
/// once), by asset and alias name.
pub async fn aliases_of(
    pool: &PgPool,
    asset_ids: &[i64],
    tenant: Option<&str>,
) -> sqlx::Result<Vec<StandingAlias>> {
    sqlx::query_as(
        "SELECT DISTINCT aa.asset_id, al.id, al.name, al.alias_group \
         FROM asset_alias_asset aa JOIN asset_alias al ON al.name = aa.alias_name \
         WHERE aa.asset_id = ANY($1) AND ($2::text IS NULL OR aa.tenant = $2) \
         ORDER BY aa.asset_id, al.name, al.id",
    )
    .bind(asset_ids)
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// A DAG's reference to an asset alias (`DagParsed::alias_references`), once per asset the
/// alias stands for in the DAG's tenant (once with none when it stands for none yet).
#[derive(Debug, Clone, FromRow)]
pub struct AliasReferenceRecord {
    /// The alias.
    pub alias_name: String,
    /// The DAG naming it.
    pub dag_id: String,
    /// How: `schedule`, `outlet` or `inlet`.
    pub role: String,
    /// The task naming it as an outlet or an inlet.
    pub task_id: Option<String>,
    /// Whether the DAG's file no longer defines it.
    pub is_stale: bool,
    /// An asset the alias stands for in the DAG's tenant.
    pub asset_id: Option<i64>,
    /// That asset's name.
    pub asset_name: Option<String>,
}

/// The references to asset aliases of the DAGs of `tenant` (`None`: any tenant's) among
/// `dag_ids` (`None`: any), each with the assets the alias stands for in the DAG's tenant; by
/// DAG, role, task, alias and asset name.
pub async fn alias_references(
    pool: &PgPool,
    tenant: Option<&str>,
    dag_ids: Option<&[String]>,
) -> sqlx::Result<Vec<AliasReferenceRecord>> {
    sqlx::query_as(
        "SELECT r->>'name' AS alias_name, d.dag_id, r->>'role' AS role, \
           r->>'task_id' AS task_id, d.is_stale, a.id AS asset_id, a.name AS asset_name \
         FROM dag d CROSS JOIN LATERAL jsonb_array_elements(d.alias_references) r \
         LEFT JOIN asset_alias_asset aa ON aa.tenant = d.tenant AND aa.alias_name = r->>'name' \
         LEFT JOIN asset a ON a.id = aa.asset_id \
         WHERE ($1::text IS NULL OR d.tenant = $1) AND ($2::text[] IS NULL OR d.dag_id = ANY($2)) \
         ORDER BY d.dag_id, r->>'role', r->>'task_id', r->>'name', a.name, a.id",
    )
    .bind(tenant)
    .bind(dag_ids)
    .fetch_all(pool)
    .await
}

/// The assets `dag_id`'s tasks added events of through any of `aliases` in runs of version
/// `version_hash` (Airflow's binding of alias-resolved assets to the tasks updating them): each
/// asset with a task that did, once per pair, by asset and task.
pub async fn added_through_by_tasks(
    pool: &PgPool,
    dag_id: &str,
    version_hash: &str,
    aliases: &[String],
) -> sqlx::Result<Vec<(i64, String)>> {
    sqlx::query_as(
        "SELECT DISTINCT e.asset_id, e.source_task_id FROM asset_event e \
           JOIN dag_run r ON r.dag_id = e.source_dag_id AND r.run_id = e.source_run_id \
         WHERE e.source_dag_id = $1 AND r.dag_version_hash = $2 AND e.source_aliases ?| $3 \
           AND e.source_task_id IS NOT NULL \
         ORDER BY e.asset_id, e.source_task_id",
    )
    .bind(dag_id)
    .bind(version_hash)
    .bind(aliases)
    .fetch_all(pool)
    .await
}
