//! Assets (Airflow's data-aware scheduling): the assets DAGs name, the asset aliases, the
//! events of assets, recording one, the events queued for DAGs' next asset-triggered runs and
//! clearing them, and the events a run consumed. Read from the `asset*` read models; a recorded
//! event is an `AssetEventRecorded`, a cleared queue an `AssetQueueCleared`.
//!
//! Tenants: an asset is visible to a tenant when one of the tenant's DAGs names it or a task of
//! the tenant added an event of it through an alias; an alias when one of the tenant's DAGs
//! names it or it stands for an asset in the tenant; an event to the tenant it was recorded in,
//! a queue entry to its DAG's tenant; platform admins see all. An asset's `aliases` are those
//! that stand for it in the caller's tenant (a task of the tenant added an event of it through
//! them). Leoflow refuses asset watchers and partitions when it compiles a DAG, so `watchers`
//! are always empty and `partition_key` always null.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use leoflow_events::catalog::{AssetEventRecorded, AssetKey, AssetQueueCleared};
use leoflow_events::{Actor, AppendBatch, Metadata};
use leoflow_projector::read::assets::{
    self, AliasRecord, AssetRecord, ConsumingRun, EventRecord, LastEvent, QueuedRecord,
    ReferenceFilter, ReferenceRecord, StandingAlias, alias_columns, columns, event_columns,
    queue_columns,
};
use leoflow_projector::read::dags::columns as dag;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::User;
use crate::body::Body;
use crate::dag_access::{DagScope, tenant_to_act_in};
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params, path_i64};
use crate::read::page::read_page;
use crate::state::ApiState;
use crate::v2::config::redact::redact;
use crate::v2::models::load_run;

// ---------------------------------------------------------------------------------------------
// Shapes.

/// Airflow's `DagScheduleAssetReference`.
#[derive(Debug, Clone, Serialize)]
pub struct DagScheduleReference {
    pub dag_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Airflow's `TaskOutletAssetReference` and `TaskInletAssetReference`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskReference {
    pub dag_id: String,
    pub task_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Airflow's `LastAssetEventResponse` (both null when the asset has no event).
#[derive(Debug, Clone, Serialize)]
pub struct LastAssetEvent {
    pub id: Option<i64>,
    pub timestamp: Option<DateTime<Utc>>,
}

/// Airflow's `AssetAliasResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct AssetAliasResponse {
    pub id: i64,
    pub name: String,
    pub group: String,
}

impl From<&AliasRecord> for AssetAliasResponse {
    fn from(alias: &AliasRecord) -> Self {
        Self {
            id: alias.id,
            name: alias.name.clone(),
            group: alias.alias_group.clone(),
        }
    }
}

impl From<&StandingAlias> for AssetAliasResponse {
    fn from(alias: &StandingAlias) -> Self {
        Self {
            id: alias.id,
            name: alias.name.clone(),
            group: alias.alias_group.clone(),
        }
    }
}

/// Airflow's `AssetAliasCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct AssetAliasCollection {
    pub asset_aliases: Vec<AssetAliasResponse>,
    pub total_entries: i64,
}

/// Airflow's `AssetResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct AssetResponse {
    pub id: i64,
    pub name: String,
    pub uri: String,
    pub group: String,
    pub extra: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub scheduled_dags: Vec<DagScheduleReference>,
    pub producing_tasks: Vec<TaskReference>,
    pub consuming_tasks: Vec<TaskReference>,
    pub aliases: Vec<AssetAliasResponse>,
    pub watchers: Vec<Value>,
    pub last_asset_event: LastAssetEvent,
}

/// Airflow's `AssetCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct AssetCollection {
    pub assets: Vec<AssetResponse>,
    pub total_entries: i64,
}

impl AssetResponse {
    /// The response of `asset`, with the references of the DAGs the caller sees naming it, the
    /// aliases standing for it where the caller sees, and its latest event the caller sees.
    fn new(
        asset: &AssetRecord,
        references: &[ReferenceRecord],
        aliases: &[StandingAlias],
        last: Option<&LastEvent>,
    ) -> Self {
        let mine = || references.iter().filter(|r| r.asset_id == asset.id);
        let tasks = |role: &str| -> Vec<TaskReference> {
            mine()
                .filter(|r| r.role == role)
                .filter_map(|r| {
                    Some(TaskReference {
                        dag_id: r.dag_id.clone(),
                        task_id: r.task_id.clone()?,
                        created_at: r.last_parsed_time,
                        updated_at: r.last_parsed_time,
                    })
                })
                .collect()
        };
        // A reference's times are its DAG's last parse: the parse that records it (Leoflow keeps
        // no reference rows of its own to date).
        let scheduled_dags = mine()
            .filter(|r| r.role == "schedule")
            .map(|r| DagScheduleReference {
                dag_id: r.dag_id.clone(),
                created_at: r.last_parsed_time,
                updated_at: r.last_parsed_time,
            })
            .collect();
        Self {
            id: asset.id,
            name: asset.name.clone(),
            uri: asset.uri.clone(),
            group: asset.asset_group.clone(),
            extra: redact(&asset.extra),
            created_at: asset.created_at,
            updated_at: asset.updated_at,
            scheduled_dags,
            producing_tasks: tasks("outlet"),
            consuming_tasks: tasks("inlet"),
            aliases: aliases
                .iter()
                .filter(|alias| alias.asset_id == asset.id)
                .map(AssetAliasResponse::from)
                .collect(),
            watchers: Vec::new(),
            last_asset_event: LastAssetEvent {
                id: last.map(|e| e.id),
                timestamp: last.map(|e| e.timestamp),
            },
        }
    }
}

/// Airflow's `DagRunAssetReference`: a run that consumed an asset event.
#[derive(Debug, Clone, Serialize)]
pub struct DagRunAssetReference {
    pub run_id: String,
    pub dag_id: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub state: String,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub partition_key: Option<String>,
}

impl From<&ConsumingRun> for DagRunAssetReference {
    fn from(run: &ConsumingRun) -> Self {
        Self {
            run_id: run.run_id.clone(),
            dag_id: run.dag_id.clone(),
            logical_date: run.logical_date,
            start_date: run.start_date,
            end_date: run.end_date,
            state: run.state.clone(),
            data_interval_start: run.data_interval_start,
            data_interval_end: run.data_interval_end,
            partition_key: None,
        }
    }
}

/// Airflow's `AssetEventResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct AssetEventResponse {
    pub id: i64,
    pub asset_id: i64,
    pub uri: Option<String>,
    pub name: Option<String>,
    pub group: Option<String>,
    pub extra: Value,
    pub source_task_id: Option<String>,
    pub source_dag_id: Option<String>,
    pub source_run_id: Option<String>,
    pub source_map_index: i32,
    pub created_dagruns: Vec<DagRunAssetReference>,
    pub timestamp: DateTime<Utc>,
    pub partition_key: Option<String>,
}

/// Airflow's `AssetEventCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct AssetEventCollection {
    pub asset_events: Vec<AssetEventResponse>,
    pub total_entries: i64,
}

impl AssetEventResponse {
    /// The response of `event`, with the runs among `runs` that consumed it.
    fn new(event: &EventRecord, runs: &[ConsumingRun]) -> Self {
        Self {
            id: event.id,
            asset_id: event.asset_id,
            uri: event.uri.clone(),
            name: event.name.clone(),
            group: event.asset_group.clone(),
            extra: redact(&event.extra),
            source_task_id: event.source_task_id.clone(),
            source_dag_id: event.source_dag_id.clone(),
            source_run_id: event.source_run_id.clone(),
            // Airflow's default for an event no mapped task recorded.
            source_map_index: event.source_map_index.unwrap_or(-1),
            created_dagruns: runs
                .iter()
                .filter(|run| run.event_id == event.id)
                .map(DagRunAssetReference::from)
                .collect(),
            timestamp: event.timestamp,
            partition_key: None,
        }
    }
}

/// Airflow's `QueuedEventResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedEventResponse {
    pub dag_id: String,
    pub asset_id: i64,
    pub created_at: DateTime<Utc>,
    pub dag_display_name: String,
}

/// Airflow's `QueuedEventCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedEventCollection {
    pub queued_events: Vec<QueuedEventResponse>,
    pub total_entries: usize,
}

impl From<&QueuedRecord> for QueuedEventResponse {
    fn from(entry: &QueuedRecord) -> Self {
        Self {
            dag_id: entry.dag_id.clone(),
            asset_id: entry.asset_id,
            created_at: entry.created_at,
            // Leoflow DAGs have no display name of their own.
            dag_display_name: entry.dag_id.clone(),
        }
    }
}

impl From<Vec<QueuedRecord>> for QueuedEventCollection {
    fn from(entries: Vec<QueuedRecord>) -> Self {
        Self {
            total_entries: entries.len(),
            queued_events: entries.iter().map(QueuedEventResponse::from).collect(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Asset conditions.

/// `expression` (a DAG's `asset_expression`) with the `id` of each asset leaf, as Airflow's DAG
/// processor stores it: the UI links a leaf to its asset page and finds its update among
/// `/ui/next_run_assets`' events by it. Alias leaves stay as they are, as Airflow's do.
pub fn with_asset_ids(mut expression: Value) -> Value {
    add_asset_ids(&mut expression);
    expression
}

fn add_asset_ids(node: &mut Value) {
    let Value::Object(map) = node else { return };
    if let Some(Value::Object(leaf)) = map.get_mut("asset")
        && let (Some(Value::String(name)), Some(Value::String(uri))) =
            (leaf.get("name"), leaf.get("uri"))
    {
        let key = AssetKey {
            name: name.clone(),
            uri: uri.clone(),
        };
        leaf.insert("id".into(), json!(key.id()));
    }
    for operator in ["all", "any"] {
        if let Some(Value::Array(operands)) = map.get_mut(operator) {
            operands.iter_mut().for_each(add_asset_ids);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Assets.

/// The filters of `GET /api/v2/assets`, within what `tenant` sees.
fn asset_conditions(params: &Params, tenant: Option<&str>) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    assets::visible_to(&mut c, tenant);
    c.patterns(params, "name", columns::NAME);
    c.patterns(params, "uri", columns::URI);
    let dag_ids = params.list("dag_ids", None)?;
    if !dag_ids.is_empty() {
        // Named by one of these DAGs, of the caller's tenant only: another tenant's DAG ids
        // must not tell anything.
        let mut dags = Conditions::new();
        dags.one_of(dag::DAG_ID, dag_ids, false);
        if let Some(tenant) = tenant {
            dags.eq(dag::TENANT, Bind::Text(tenant.to_owned()));
        }
        assets::named_by(&mut c, &dags);
    }
    // Airflow's active assets are those a DAG still names; the rows of the others stay.
    if params.bool("only_active")?.unwrap_or(true) {
        assets::named_by(&mut c, &Conditions::new());
    }
    Ok(c)
}

/// The responses of `rows`, with what `tenant` sees of their DAGs and events.
async fn asset_responses(
    state: &ApiState,
    rows: &[AssetRecord],
    tenant: Option<&str>,
) -> ApiResult<Vec<AssetResponse>> {
    let pool = state.store.pool();
    let ids: Vec<i64> = rows.iter().map(|a| a.id).collect();
    let filter = ReferenceFilter {
        tenant,
        asset_ids: Some(&ids),
        ..Default::default()
    };
    let references = assets::references(pool, filter).await?;
    let aliases = assets::aliases_of(pool, &ids, tenant).await?;
    let last = assets::last_events(pool, &ids, tenant).await?;
    Ok(rows
        .iter()
        .map(|asset| {
            let latest = last.iter().find(|e| e.asset_id == asset.id);
            AssetResponse::new(asset, &references, &aliases, latest)
        })
        .collect())
}

/// `GET /api/v2/assets`.
pub async fn get_assets(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<AssetCollection>> {
    let page = params.page()?;
    let tenant = scope.tenant.as_deref();
    let conditions = asset_conditions(&params, tenant)?;
    let order = params.order_by(
        &[
            ("id", columns::ID),
            ("name", columns::NAME),
            ("uri", columns::URI),
            ("created_at", columns::CREATED_AT),
            ("updated_at", columns::UPDATED_AT),
        ],
        "id",
        columns::ID,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| assets::page(pool, &conditions, &order, w)).await?;
    Ok(Json(AssetCollection {
        assets: asset_responses(&state, &listed.rows, tenant).await?,
        total_entries: listed.total,
    }))
}

/// Asset `id` as `tenant` sees it, or Airflow's 404.
async fn load_asset(state: &ApiState, id: i64, tenant: Option<&str>) -> ApiResult<AssetRecord> {
    assets::find(state.store.pool(), id, tenant)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("The Asset with ID: `{id}` was not found")))
}

/// `GET /api/v2/assets/{asset_id}`.
pub async fn get_asset(
    State(state): State<ApiState>,
    scope: DagScope,
    Path(asset_id): Path<String>,
) -> ApiResult<Json<AssetResponse>> {
    let id = path_i64("asset_id", &asset_id)?;
    let tenant = scope.tenant.as_deref();
    let asset = load_asset(&state, id, tenant).await?;
    let mut responses = asset_responses(&state, std::slice::from_ref(&asset), tenant).await?;
    Ok(Json(responses.remove(0)))
}

// ---------------------------------------------------------------------------------------------
// Asset aliases.

/// `GET /api/v2/assets/aliases`: the aliases the caller sees.
pub async fn get_asset_aliases(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<AssetAliasCollection>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    assets::alias_visible_to(&mut conditions, scope.tenant.as_deref());
    conditions.patterns(&params, "name", alias_columns::NAME);
    let order = params.order_by(
        &[("id", alias_columns::ID), ("name", alias_columns::NAME)],
        "id",
        alias_columns::ID,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| assets::alias_page(pool, &conditions, &order, w)).await?;
    Ok(Json(AssetAliasCollection {
        asset_aliases: listed.rows.iter().map(AssetAliasResponse::from).collect(),
        total_entries: listed.total,
    }))
}

/// `GET /api/v2/assets/aliases/{asset_alias_id}`: Airflow's 404 for an alias the caller does
/// not see.
pub async fn get_asset_alias(
    State(state): State<ApiState>,
    scope: DagScope,
    Path(asset_alias_id): Path<String>,
) -> ApiResult<Json<AssetAliasResponse>> {
    let id = path_i64("asset_alias_id", &asset_alias_id)?;
    let alias = assets::find_alias(state.store.pool(), id, scope.tenant.as_deref())
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("The Asset Alias with ID: `{id}` was not found"))
        })?;
    Ok(Json(AssetAliasResponse::from(&alias)))
}

// ---------------------------------------------------------------------------------------------
// Asset events.

/// The filters of `GET /api/v2/assets/events`, within what `tenant` sees.
fn event_conditions(params: &Params, tenant: Option<&str>) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    if let Some(tenant) = tenant {
        c.eq(event_columns::TENANT, Bind::Text(tenant.to_owned()));
    }
    if let Some(asset_id) = params.int("asset_id")? {
        c.eq(event_columns::ASSET_ID, Bind::BigInt(asset_id));
    }
    for (name, column) in [
        ("source_dag_id", event_columns::SOURCE_DAG_ID),
        ("source_task_id", event_columns::SOURCE_TASK_ID),
        ("source_run_id", event_columns::SOURCE_RUN_ID),
    ] {
        if let Some(value) = params.str(name) {
            c.eq(column, Bind::Text(value.to_owned()));
        }
    }
    if let Some(map_index) = params.int("source_map_index")? {
        c.eq(event_columns::SOURCE_MAP_INDEX, Bind::BigInt(map_index));
    }
    c.patterns(params, "name", event_columns::ASSET_NAME);
    c.time_range(params, "timestamp", event_columns::TIMESTAMP)?;
    Ok(c)
}

/// The responses of `events`, with the runs of what `tenant` sees that consumed them.
async fn event_responses(
    state: &ApiState,
    events: &[EventRecord],
    tenant: Option<&str>,
) -> ApiResult<Vec<AssetEventResponse>> {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let runs = assets::consuming_runs(state.store.pool(), &ids, tenant).await?;
    Ok(events
        .iter()
        .map(|event| AssetEventResponse::new(event, &runs))
        .collect())
}

/// `GET /api/v2/assets/events`.
pub async fn get_asset_events(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<AssetEventCollection>> {
    let page = params.page()?;
    let tenant = scope.tenant.as_deref();
    let conditions = event_conditions(&params, tenant)?;
    let order = params.order_by(
        &[
            ("source_task_id", event_columns::SOURCE_TASK_ID),
            ("source_dag_id", event_columns::SOURCE_DAG_ID),
            ("source_run_id", event_columns::SOURCE_RUN_ID),
            ("source_map_index", event_columns::SOURCE_MAP_INDEX),
            ("timestamp", event_columns::TIMESTAMP),
        ],
        "timestamp",
        event_columns::ID,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| assets::events_page(pool, &conditions, &order, w)).await?;
    Ok(Json(AssetEventCollection {
        asset_events: event_responses(&state, &listed.rows, tenant).await?,
        total_entries: listed.total,
    }))
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/upstreamAssetEvents`: the events an
/// asset-triggered run consumed (none for any other run).
pub async fn get_upstream_asset_events(
    State(state): State<ApiState>,
    scope: DagScope,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<AssetEventCollection>> {
    load_run(&state, &dag_id, &run_id).await?;
    let tenant = scope.tenant.as_deref();
    let mut conditions = Conditions::new();
    assets::consumed_by(&mut conditions, &dag_id, &run_id);
    if let Some(tenant) = tenant {
        conditions.eq(event_columns::TENANT, Bind::Text(tenant.to_owned()));
    }
    let order = format!("{}, {}", event_columns::TIMESTAMP, event_columns::ID);
    let events = assets::all_events(state.store.pool(), &conditions, &order).await?;
    Ok(Json(AssetEventCollection {
        total_entries: events.len() as i64,
        asset_events: event_responses(&state, &events, tenant).await?,
    }))
}

/// `POST /api/v2/assets/events` body (Airflow's `CreateAssetEventsBody`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAssetEventBody {
    asset_id: i64,
    #[serde(default)]
    partition_key: Option<String>,
    // A `Value` rather than a map, so a `null` or a list is refused with pydantic's message.
    #[serde(default = "empty_object")]
    extra: Value,
}

fn empty_object() -> Value {
    json!({})
}

impl CreateAssetEventBody {
    /// The event's `extra`, marked as Airflow marks what its API records; refuses a
    /// `partition_key` (Leoflow has no partitioned assets) and an `extra` that is no object.
    fn extra(&self) -> ApiResult<Value> {
        if let Some(key) = &self.partition_key {
            return Err(ApiError::invalid(
                &["body", "partition_key"],
                "value_error",
                "Value error, Leoflow has no partitioned assets: record the event without a \
                 partition_key",
                json!(key),
            ));
        }
        let Value::Object(mut extra) = self.extra.clone() else {
            return Err(ApiError::invalid(
                &["body", "extra"],
                "dict_type",
                "Input should be a valid dictionary",
                self.extra.clone(),
            ));
        };
        extra.insert("from_rest_api".into(), Value::Bool(true));
        Ok(Value::Object(extra))
    }
}

/// `POST /api/v2/assets/events`: records an update of an asset of the caller's tenant, which
/// queues a run of each of the tenant's unpaused DAGs scheduled on it.
pub async fn create_asset_event(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Body(body): Body<CreateAssetEventBody>,
) -> ApiResult<Json<AssetEventResponse>> {
    let extra = body.extra()?;
    // A platform admin records in the default tenant, as their configuration writes do.
    let tenant = tenant_to_act_in(&user, None, "tenant")?;
    let pool = state.store.pool();
    let asset = assets::find(pool, body.asset_id, Some(&tenant))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("Asset with ID: `{}` was not found", body.asset_id))
        })?;
    let key = AssetKey {
        name: asset.name,
        uri: asset.uri,
    };
    let queued = assets::scheduled_dags(pool, &tenant, &key, &[]).await?;
    let event = AssetEventRecorded {
        asset: key,
        group: asset.asset_group,
        extra,
        source: None,
        source_aliases: Vec::new(),
        queued,
    };
    // The event is the tenant's: its metadata's tenant is the one the projection records.
    let metadata = Metadata {
        tenant: Some(tenant),
        ..Metadata::from(&Actor::from(&user))
    };
    let appended = state
        .store
        .append(AppendBatch::new().push(event, &metadata))
        .await?;
    let id = appended
        .last_position()
        .ok_or_else(|| ApiError::internal("the asset event was not appended"))?;
    let recorded = assets::event(pool, id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("asset event {id} was not projected")))?;
    Ok(Json(AssetEventResponse::new(&recorded, &[])))
}

// ---------------------------------------------------------------------------------------------
// Queued events.

/// The queue entries of `asset_id` and/or `dag_id` the caller sees, queued before the
/// request's `before` when it names a time (as Airflow, no paging).
async fn queued_entries(
    state: &ApiState,
    scope: &DagScope,
    params: &Params,
    asset_id: Option<i64>,
    dag_id: Option<&str>,
) -> ApiResult<Vec<QueuedRecord>> {
    let mut c = Conditions::new();
    if let Some(asset_id) = asset_id {
        c.eq(queue_columns::ASSET_ID, Bind::BigInt(asset_id));
    }
    if let Some(dag_id) = dag_id {
        c.eq(queue_columns::DAG_ID, Bind::Text(dag_id.to_owned()));
    }
    if let Some(before) = params.datetime("before")? {
        c.push(
            &format!("{} < {{}}", queue_columns::CREATED_AT),
            vec![Bind::Time(before)],
        );
    }
    if let Some(tenant) = &scope.tenant {
        c.eq(queue_columns::TENANT, Bind::Text(tenant.clone()));
    }
    Ok(assets::queued(state.store.pool(), &c).await?)
}

/// Clears `entries` (one `AssetQueueCleared` per DAG, in one append), or `nothing` when there
/// are none.
async fn clear(
    state: &ApiState,
    user: &User,
    entries: Vec<QueuedRecord>,
    nothing: ApiError,
) -> ApiResult<StatusCode> {
    if entries.is_empty() {
        return Err(nothing);
    }
    let mut by_dag: BTreeMap<String, BTreeSet<AssetKey>> = BTreeMap::new();
    for entry in entries {
        by_dag.entry(entry.dag_id).or_default().insert(AssetKey {
            name: entry.name,
            uri: entry.uri,
        });
    }
    let metadata = Metadata::from(&Actor::from(user));
    let batch = by_dag
        .into_iter()
        .fold(AppendBatch::new(), |batch, (dag_id, assets)| {
            let cleared = AssetQueueCleared {
                dag_id,
                assets: assets.into_iter().collect(),
            };
            batch.push(cleared, &metadata)
        });
    state.store.append(batch).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v2/assets/{asset_id}/queuedEvents`.
pub async fn get_asset_queued_events(
    State(state): State<ApiState>,
    scope: DagScope,
    Path(asset_id): Path<String>,
    params: Params,
) -> ApiResult<Json<QueuedEventCollection>> {
    let asset_id = path_i64("asset_id", &asset_id)?;
    let entries = queued_entries(&state, &scope, &params, Some(asset_id), None).await?;
    Ok(Json(entries.into()))
}

/// `DELETE /api/v2/assets/{asset_id}/queuedEvents`.
pub async fn delete_asset_queued_events(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    scope: DagScope,
    Path(asset_id): Path<String>,
    params: Params,
) -> ApiResult<StatusCode> {
    let asset_id = path_i64("asset_id", &asset_id)?;
    let entries = queued_entries(&state, &scope, &params, Some(asset_id), None).await?;
    let nothing = ApiError::not_found(format!(
        "Queue event with asset_id: `{asset_id}` was not found"
    ));
    clear(&state, &user, entries, nothing).await
}

/// `GET /api/v2/dags/{dag_id}/assets/queuedEvents`.
pub async fn get_dag_queued_events(
    State(state): State<ApiState>,
    scope: DagScope,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<Json<QueuedEventCollection>> {
    let entries = queued_entries(&state, &scope, &params, None, Some(&dag_id)).await?;
    Ok(Json(entries.into()))
}

/// `DELETE /api/v2/dags/{dag_id}/assets/queuedEvents`.
pub async fn delete_dag_queued_events(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    scope: DagScope,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<StatusCode> {
    let entries = queued_entries(&state, &scope, &params, None, Some(&dag_id)).await?;
    let nothing = ApiError::not_found(format!("Queue event with dag_id: `{dag_id}` was not found"));
    clear(&state, &user, entries, nothing).await
}

/// Airflow's 404 for one DAG's queue entry of one asset.
fn no_queued_event(dag_id: &str, asset_id: i64) -> ApiError {
    ApiError::not_found(format!(
        "Queued event with dag_id: `{dag_id}` and asset_id: `{asset_id}` was not found"
    ))
}

/// `GET /api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents`.
pub async fn get_dag_asset_queued_event(
    State(state): State<ApiState>,
    scope: DagScope,
    Path((dag_id, asset_id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<Json<QueuedEventResponse>> {
    let asset_id = path_i64("asset_id", &asset_id)?;
    let entries = queued_entries(&state, &scope, &params, Some(asset_id), Some(&dag_id)).await?;
    let entry = entries
        .first()
        .ok_or_else(|| no_queued_event(&dag_id, asset_id))?;
    Ok(Json(entry.into()))
}

/// `DELETE /api/v2/dags/{dag_id}/assets/{asset_id}/queuedEvents`.
pub async fn delete_dag_asset_queued_event(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    scope: DagScope,
    Path((dag_id, asset_id)): Path<(String, String)>,
    params: Params,
) -> ApiResult<StatusCode> {
    let asset_id = path_i64("asset_id", &asset_id)?;
    let entries = queued_entries(&state, &scope, &params, Some(asset_id), Some(&dag_id)).await?;
    clear(&state, &user, entries, no_queued_event(&dag_id, asset_id)).await
}
