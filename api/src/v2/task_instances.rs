//! Task instances: lists (one run, or across runs and DAGs with `~`), one instance, its tries,
//! marking and clearing.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::{Extension, Json};
use leoflow_core::state::TiState;
use leoflow_events::{Actor, DEFAULT_TENANT};
use leoflow_projector::read;
use leoflow_projector::read::runs::columns as run;
use leoflow_projector::read::task_instances::columns as ti;
use leoflow_scheduler::control;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::User;
use crate::body::Body;
use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, BodyParams, Conditions, ParamFilters, Params, path_int};
use crate::read::page::read_page;
use crate::read::task_instances::{self as rows, TryRecord};
use crate::state::ApiState;
use crate::states::{failed_names, ti_state_names};
use crate::v2::control_error;
use crate::v2::models::{
    Cursors, TaskCatalog, TaskInstanceCollection, TaskInstanceHistoryCollection,
    TaskInstanceHistoryResponse, TaskInstanceResponse, TiRecord, load_dag, load_run,
};

fn ti_conditions(
    params: &Params,
    dag_id: Option<&str>,
    run_id: Option<&str>,
) -> ApiResult<Conditions> {
    for unsupported in [
        "operator",
        "operator_name_pattern",
        "operator_name_prefix_pattern",
        "task_group_id",
        "rendered_map_index_pattern",
        "rendered_map_index_prefix_pattern",
    ] {
        if params.str(unsupported).is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(format!(
                "Leoflow cannot filter task instances by {unsupported}"
            )));
        }
    }
    let mut c = Conditions::new();
    if let Some(dag_id) = dag_id {
        c.eq(ti::DAG_ID, Bind::Text(dag_id.to_owned()));
    }
    if let Some(run_id) = run_id {
        c.eq(ti::RUN_ID, Bind::Text(run_id.to_owned()));
    }
    if let Some(task_id) = params.str("task_id").filter(|t| !t.is_empty()) {
        c.eq(ti::TASK_ID, Bind::Text(task_id.to_owned()));
    }
    for (name, column) in [
        ("run_after", run::RUN_AFTER),
        ("logical_date", run::LOGICAL_DATE),
        ("start_date", ti::START_DATE),
        ("end_date", ti::END_DATE),
        ("updated_at", ti::UPDATED_AT),
    ] {
        c.time_range(params, name, column)?;
    }
    c.number_range(params, "duration", ti::DURATION)?;
    c.patterns(params, "task_display_name", ti::TASK_ID);
    c.patterns(params, "dag_id", ti::DAG_ID);
    c.patterns(params, "run_id", ti::RUN_ID);
    c.patterns(params, "pool_name", ti::POOL);
    c.patterns(params, "queue_name", ti::QUEUE);
    // `none` (always allowed) matches those not scheduled yet.
    c.any_of(params, "state", ti::STATE, Some(&ti_state_names()))?;
    c.any_of(params, "pool", ti::POOL, None)?;
    c.any_of(params, "queue", ti::QUEUE, None)?;
    c.any_of(params, "executor", ti::EXECUTOR, None)?;
    for (name, column) in [("try_number", ti::TRY_NUMBER), ("map_index", ti::MAP_INDEX)] {
        let values: Vec<i32> = params
            .list(name, None)?
            .iter()
            .map(|v| path_int(name, v))
            .collect::<ApiResult<_>>()?;
        if !values.is_empty() {
            c.push(&format!("{column} = ANY({{}})"), vec![Bind::Ints(values)]);
        }
    }
    let versions: Vec<i32> = params
        .list("version_number", None)?
        .iter()
        .map(|v| path_int("version_number", v))
        .collect::<ApiResult<_>>()?;
    if !versions.is_empty() {
        read::dag_versions::run_on_version(&mut c, versions);
    }
    Ok(c)
}

fn ti_order(params: &Params) -> ApiResult<String> {
    params.order_by(
        &[
            ("id", ti::ID),
            ("state", ti::STATE),
            ("duration", ti::DURATION),
            ("start_date", ti::START_DATE),
            ("end_date", ti::END_DATE),
            ("map_index", ti::MAP_INDEX),
            ("try_number", ti::TRY_NUMBER),
            ("logical_date", run::LOGICAL_DATE),
            ("run_after", run::RUN_AFTER),
            ("data_interval_start", run::DATA_INTERVAL_START),
            ("data_interval_end", run::DATA_INTERVAL_END),
            ("rendered_map_index", ti::MAP_INDEX),
            ("task_id", ti::TASK_ID),
            ("dag_id", ti::DAG_ID),
            ("run_id", ti::RUN_ID),
            ("pool", ti::POOL),
            ("queue", ti::QUEUE),
            ("priority_weight", ti::PRIORITY_WEIGHT),
        ],
        "map_index",
        ti::KEY,
    )
}

/// A page of task instances as `TaskInstanceResponse`s, with the total.
async fn page_of_tis(
    state: &ApiState,
    params: &Params,
    c: &Conditions,
) -> ApiResult<TaskInstanceCollection> {
    let page = params.page()?;
    let order = ti_order(params)?;
    let pool = state.store.pool();
    let paged = read_page(page, |w| read::task_instances::page(pool, c, &order, w)).await?;
    let catalog = TaskCatalog::load(state, &paged.rows).await?;
    Ok(TaskInstanceCollection {
        task_instances: paged.rows.iter().map(|t| catalog.response(t)).collect(),
        total_entries: paged.total,
        cursors: Some(Cursors::of(&paged)),
    })
}

/// The first hundred task instances `c` selects, without cursors (what a clear or its dry
/// run answers).
async fn first_hundred(state: &ApiState, c: &Conditions) -> ApiResult<TaskInstanceCollection> {
    let params = Params::parse("limit=100")?;
    let page = page_of_tis(state, &params, c).await?;
    Ok(TaskInstanceCollection {
        cursors: None,
        ..page
    })
}

fn scope(id: &str) -> Option<&str> {
    (id != "~").then_some(id)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances`.
pub async fn get_tis(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    dags: DagScope,
    params: Params,
) -> ApiResult<Json<TaskInstanceCollection>> {
    match (scope(&dag_id), scope(&run_id)) {
        (Some(dag_id), Some(run_id)) => {
            load_run(&state, dag_id, run_id).await?;
        }
        (Some(dag_id), None) => {
            load_dag(&state, dag_id).await?;
        }
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "a run id needs its DAG: use /dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances",
            ));
        }
        (None, None) => {}
    }
    let mut c = ti_conditions(&params, scope(&dag_id), scope(&run_id))?;
    dags.restrict(&mut c, ti::DAG_ID);
    Ok(Json(page_of_tis(&state, &params, &c).await?))
}

/// `POST /api/v2/dags/~/dagRuns/~/taskInstances/list` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TisBatch {
    #[serde(default)]
    dag_ids: Option<Vec<String>>,
    #[serde(default)]
    dag_run_ids: Option<Vec<String>>,
    #[serde(default)]
    task_ids: Option<Vec<String>>,
    #[serde(default)]
    state: Option<Vec<Option<String>>>,
    #[serde(default)]
    pool: Option<Vec<String>>,
    #[serde(default)]
    queue: Option<Vec<String>>,
    #[serde(default)]
    executor: Option<Vec<String>>,
    #[serde(default)]
    page_offset: Option<i64>,
    #[serde(default)]
    page_limit: Option<i64>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(flatten)]
    ranges: std::collections::BTreeMap<String, Value>,
}

/// The list parameters a batch body's filters stand for.
fn batch_params(batch: &TisBatch) -> ApiResult<Params> {
    let mut query = BodyParams::default();
    for state in batch.state.iter().flatten() {
        query.append_pair("state", state.as_deref().unwrap_or("none"));
    }
    for (name, values) in [
        ("pool", &batch.pool),
        ("queue", &batch.queue),
        ("executor", &batch.executor),
    ] {
        for value in values.iter().flatten() {
            query.append_pair(name, value);
        }
    }
    query.append_pair("offset", &batch.page_offset.unwrap_or(0).to_string());
    query.append_pair("limit", &batch.page_limit.unwrap_or(100).to_string());
    if let Some(order) = &batch.order_by {
        query.append_pair("order_by", order);
    }
    crate::v2::dag_runs::append_ranges(&mut query, &batch.ranges, &[])?;
    query.finish()
}

/// `POST /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/list`.
pub async fn list_tis_batch(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    dags: DagScope,
    Body(batch): Body<TisBatch>,
) -> ApiResult<Json<TaskInstanceCollection>> {
    // Airflow types both segments `Literal["~"]`: the DAGs and runs are named in the body.
    crate::v2::dag_runs::tilde_only(&["path", "dag_id"], &dag_id)?;
    crate::v2::dag_runs::tilde_only(&["path", "dag_run_id"], &run_id)?;
    let params = batch_params(&batch)?;
    let mut c = ti_conditions(&params, None, None)?;
    for (column, values) in [
        (ti::DAG_ID, batch.dag_ids),
        (ti::RUN_ID, batch.dag_run_ids),
        (ti::TASK_ID, batch.task_ids),
    ] {
        if let Some(values) = values.filter(|v| !v.is_empty()) {
            c.push(&format!("{column} = ANY({{}})"), vec![Bind::Texts(values)]);
        }
    }
    dags.restrict(&mut c, ti::DAG_ID);
    Ok(Json(page_of_tis(&state, &params, &c).await?))
}

/// Loads one task instance, with Airflow's 404s.
async fn load_ti(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<TiRecord> {
    load_run(state, dag_id, run_id).await?;
    if let Some(ti) = rows::find(state, dag_id, run_id, task_id, map_index).await? {
        return Ok(ti);
    }
    if map_index == -1 && rows::is_mapped(state, dag_id, run_id, task_id).await? {
        return Err(ApiError::not_found(
            "Task instance is mapped, add the map_index value to the URL",
        ));
    }
    Err(ApiError::not_found(format!(
        "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `{map_index}` was not found"
    )))
}

/// The task instance a route names: `{dag_id}`, `{dag_run_id}`, `{task_id}`, and on the
/// mapped routes `{map_index}`; `{task_try_number}` on the routes of one try. One extractor
/// serves each route in both its forms (`…/{task_id}/…` and `…/{task_id}/{map_index}/…`).
pub struct TiPath {
    dag_id: String,
    run_id: String,
    task_id: String,
    /// The `{map_index}` segment, on the mapped routes.
    path_map_index: Option<i32>,
    try_number: Option<String>,
}

impl TiPath {
    /// The path's map index, else -1 (the unmapped instance).
    fn map_index(&self) -> i32 {
        self.path_map_index.unwrap_or(-1)
    }

    /// For the routes that also accept `?map_index=` (PATCH, DELETE): the path's, else the
    /// query's, else -1.
    fn map_index_or_query(&self, params: &Params) -> ApiResult<i32> {
        match self.path_map_index {
            Some(map_index) => Ok(map_index),
            None => Ok(params.int("map_index")?.unwrap_or(-1) as i32),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(mut segments) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut take = |name: &str| segments.remove(name).unwrap_or_default();
        let (dag_id, run_id, task_id) = (take("dag_id"), take("dag_run_id"), take("task_id"));
        let path_map_index = segments
            .remove("map_index")
            .map(|value| path_int("map_index", &value))
            .transpose()?;
        Ok(Self {
            dag_id,
            run_id,
            task_id,
            path_map_index,
            try_number: segments.remove("task_try_number"),
        })
    }
}

/// `GET …/taskInstances/{task_id}` and `…/{task_id}/{map_index}`.
pub async fn get_ti(
    State(state): State<ApiState>,
    ti: TiPath,
) -> ApiResult<Json<TaskInstanceResponse>> {
    ti_response(&state, &ti.dag_id, &ti.run_id, &ti.task_id, ti.map_index())
        .await
        .map(Json)
}

/// Leoflow's route that cancels a try, `POST {CANCEL_ROUTE}` (`?map_index=N` for a mapped
/// instance): authorized as patching the task instance is (`crate::permissions`).
pub const CANCEL_ROUTE: &str =
    "/leoflow/api/dags/{dag_id}/dagRuns/{dag_run_id}/taskInstances/{task_id}/cancel";
/// What [`CANCEL_ROUTE`] ends with.
pub const CANCEL_SUFFIX: &str = "/cancel";

/// `POST {CANCEL_ROUTE}`: the queued or running try fails without retries and its process is
/// stopped (what `leoflow tasks cancel` does); the task instance as it is then.
pub async fn cancel(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    address: TiPath,
    params: Params,
) -> ApiResult<Json<TaskInstanceResponse>> {
    let map_index = address.map_index_or_query(&params)?;
    let (dag_id, run_id, task_id) = (&address.dag_id, &address.run_id, &address.task_id);
    load_ti(&state, dag_id, run_id, task_id, map_index).await?;
    let key = leoflow_events::TaskInstanceKey::mapped(dag_id, run_id, task_id, map_index);
    control::cancel_task(&state.store, &state.specs, &key, &Actor::from(&user))
        .await
        .map_err(crate::v2::control_error)?;
    Ok(Json(
        ti_response(&state, dag_id, run_id, task_id, map_index).await?,
    ))
}

/// One task instance, with its current try's rendered template fields.
async fn ti_response(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<TaskInstanceResponse> {
    let ti = load_ti(state, dag_id, run_id, task_id, map_index).await?;
    let catalog = TaskCatalog::load(state, std::slice::from_ref(&ti)).await?;
    let mut body = catalog.response(&ti);
    if let Some(hash) = &ti.rendered_fields_hash
        && let Some(blob) = state.store.get_blob(hash).await?
    {
        body.rendered_fields = serde_json::from_str(&blob.content).map_err(ApiError::internal)?;
    }
    Ok(body)
}

/// `GET …/taskInstances/{task_id}/listMapped`.
pub async fn list_mapped(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    params: Params,
) -> ApiResult<Json<TaskInstanceCollection>> {
    load_run(&state, &dag_id, &run_id).await?;
    if !rows::is_mapped(&state, &dag_id, &run_id, &task_id).await? {
        return Err(ApiError::not_found(format!(
            "Task id {task_id} is not mapped"
        )));
    }
    let mut c = ti_conditions(&params, Some(&dag_id), Some(&run_id))?;
    c.eq(ti::TASK_ID, Bind::Text(task_id));
    c.push(&format!("{} >= 0", ti::MAP_INDEX), vec![]);
    Ok(Json(page_of_tis(&state, &params, &c).await?))
}

pub(crate) async fn tries(
    state: &ApiState,
    ti: &TiRecord,
    only: Option<i32>,
) -> ApiResult<Vec<TaskInstanceHistoryResponse>> {
    let rows = rows::tries(state, ti, only).await?;
    let catalog = TaskCatalog::load(state, std::slice::from_ref(ti)).await?;
    let (facts, version) = catalog.facts(ti);
    Ok(rows
        .into_iter()
        .map(|t: TryRecord| TaskInstanceHistoryResponse {
            task_id: ti.task_id.clone(),
            dag_id: ti.dag_id.clone(),
            dag_run_id: ti.run_id.clone(),
            map_index: ti.map_index,
            start_date: t.start_date,
            end_date: t.end_date,
            duration: t.duration,
            state: t.state,
            try_number: t.try_number,
            max_tries: facts.retries,
            task_display_name: facts.display_name.clone(),
            dag_display_name: ti.dag_id.clone(),
            unixname: t.hostname.as_ref().map(|_| crate::v2::models::unixname()),
            hostname: t.hostname,
            pool: facts.pool_of(ti),
            pool_slots: facts.pool_slots_of(ti),
            queue: facts.queue_of(ti),
            priority_weight: facts.priority_weight_of(ti),
            operator: facts.operator.clone(),
            operator_name: facts.operator_name.clone(),
            queued_when: t.queued_dttm,
            scheduled_when: ti.scheduled_dttm,
            pid: t.pid,
            executor: t.executor,
            executor_config: "{}".into(),
            dag_version: version.map(crate::v2::models::DagVersionResponse::from),
        })
        .collect())
}

/// The path of a try list: `…/{task_id}/tries` or `…/{task_id}/{map_index}/tries`.
async fn tries_of(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> ApiResult<Json<TaskInstanceHistoryCollection>> {
    let ti = load_ti(state, dag_id, run_id, task_id, map_index).await?;
    let task_instances = tries(state, &ti, None).await?;
    Ok(Json(TaskInstanceHistoryCollection {
        total_entries: task_instances.len(),
        task_instances,
    }))
}

/// `GET …/taskInstances/{task_id}/tries` and `…/{task_id}/{map_index}/tries`.
pub async fn get_tries(
    State(state): State<ApiState>,
    ti: TiPath,
) -> ApiResult<Json<TaskInstanceHistoryCollection>> {
    tries_of(&state, &ti.dag_id, &ti.run_id, &ti.task_id, ti.map_index()).await
}

/// `GET …/taskInstances/{task_id}/tries/{task_try_number}` and
/// `…/{task_id}/{map_index}/tries/{task_try_number}`.
pub async fn get_try(
    State(state): State<ApiState>,
    ti: TiPath,
) -> ApiResult<Json<TaskInstanceHistoryResponse>> {
    let (dag_id, run_id, task_id, map_index) =
        (&ti.dag_id, &ti.run_id, &ti.task_id, ti.map_index());
    let try_number = path_int("task_try_number", ti.try_number.as_deref().unwrap_or(""))?;
    let found = load_ti(&state, dag_id, run_id, task_id, map_index).await?;
    tries(&state, &found, Some(try_number))
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}`, try_number: `{try_number}` and map_index: `{map_index}` was not found"
            ))
        })
}

/// `PATCH …/taskInstances/{task_id}` body (Airflow's `PatchTaskInstanceBody`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiPatch {
    #[serde(default)]
    new_state: Option<String>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    include_upstream: Option<bool>,
    #[serde(default)]
    include_downstream: Option<bool>,
    #[serde(default)]
    include_future: Option<bool>,
    #[serde(default)]
    include_past: Option<bool>,
}

/// `PATCH …/taskInstances/{task_id}` and `…/{task_id}/{map_index}`: mark success or failed;
/// with `DRY_RUN` (the `…/dry_run` routes), what marking would change.
pub async fn patch_ti<const DRY_RUN: bool>(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    address: TiPath,
    params: Params,
    Body(patch): Body<TiPatch>,
) -> ApiResult<Json<TaskInstanceCollection>> {
    let map_index = address.map_index_or_query(&params)?;
    let state = &state;
    let (dag_id, run_id, task_id) = (&address.dag_id, &address.run_id, &address.task_id);
    let ti = load_ti(state, dag_id, run_id, task_id, map_index).await?;
    if patch.include_upstream == Some(true)
        || patch.include_downstream == Some(true)
        || patch.include_future == Some(true)
        || patch.include_past == Some(true)
    {
        return Err(ApiError::bad_request(
            "Leoflow marks one task instance at a time: include_upstream, include_downstream, \
             include_future and include_past are not supported",
        ));
    }
    if patch.note.is_some() {
        return Err(ApiError::bad_request(
            "Leoflow does not keep notes on task instances",
        ));
    }
    let wanted = patch
        .new_state
        .as_deref()
        .map(|name| (name, TiState::from_airflow_name(name)));
    let success = match wanted {
        Some((_, Some(TiState::Success))) => true,
        Some((_, Some(TiState::Failed))) => false,
        Some((other, _)) => {
            return Err(ApiError::invalid(
                &["body", "new_state"],
                "enum",
                "Input should be 'success' or 'failed'",
                json!(other),
            ));
        }
        None => {
            return Err(ApiError::invalid(
                &["body", "new_state"],
                "missing",
                "Field required",
                Value::Null,
            ));
        }
    };
    if !DRY_RUN {
        control::mark_task(
            &state.store,
            &state.specs,
            &leoflow_events::TaskInstanceKey::mapped(dag_id, run_id, task_id, map_index),
            success,
            &Actor::from(&user),
        )
        .await
        .map_err(control_error)?;
    }
    let value = if DRY_RUN {
        let catalog = TaskCatalog::load(state, std::slice::from_ref(&ti)).await?;
        catalog.response(&ti)
    } else {
        ti_response(state, dag_id, run_id, task_id, map_index).await?
    };
    Ok(Json(TaskInstanceCollection {
        task_instances: vec![value],
        total_entries: 1,
        cursors: None,
    }))
}

/// `POST /api/v2/dags/{dag_id}/clearTaskInstances` body (Airflow's `ClearTaskInstancesBody`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    start_date: Option<Value>,
    #[serde(default)]
    end_date: Option<Value>,
    #[serde(default)]
    only_failed: Option<bool>,
    #[serde(default)]
    only_running: Option<bool>,
    #[serde(default)]
    reset_dag_runs: Option<bool>,
    #[serde(default)]
    task_ids: Option<Vec<Value>>,
    #[serde(default)]
    dag_run_id: Option<String>,
    #[serde(default)]
    include_upstream: Option<bool>,
    #[serde(default)]
    include_downstream: Option<bool>,
    #[serde(default)]
    include_future: Option<bool>,
    #[serde(default)]
    include_past: Option<bool>,
    #[serde(default)]
    run_on_latest_version: Option<bool>,
    #[serde(default)]
    prevent_running_task: Option<bool>,
}

/// `POST /api/v2/dags/{dag_id}/clearTaskInstances`: clears tasks of one run (with everything
/// downstream when asked) so they run again; `dry_run` (the default) only lists them.
pub async fn clear_tis(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(dag_id): Path<String>,
    Body(body): Body<ClearBody>,
) -> ApiResult<Json<TaskInstanceCollection>> {
    load_dag(&state, &dag_id).await?;
    let run_id = body.supported_run()?;
    load_run(&state, &dag_id, &run_id).await?;
    let targets = clear_targets(body.task_ids.unwrap_or_default())?;
    let downstream = body.include_downstream.unwrap_or(false);
    let only_failed = body.only_failed.unwrap_or(false);
    let mut c = Conditions::new();
    // What a clear lists: the task instances it clears (or, dry, would clear), in other DAGs'
    // runs too when it clears markers.
    would_clear(
        &state,
        &mut c,
        &dag_id,
        &run_id,
        targets.clone(),
        downstream,
    )
    .await?;
    if body.dry_run.unwrap_or(true) {
        if only_failed {
            c.one_of(ti::STATE, failed_names(), false);
        }
        return Ok(Json(first_hundred(&state, &c).await?));
    }
    if targets.is_empty() {
        control::clear_run(
            &state.store,
            &state.specs,
            &dag_id,
            &run_id,
            only_failed,
            &Actor::from(&user),
        )
        .await
        .map_err(control_error)?;
    } else {
        control::clear_task_instances(
            &state.store,
            &state.specs,
            &dag_id,
            &run_id,
            targets,
            downstream,
            &Actor::from(&user),
        )
        .await
        .map_err(control_error)?;
    }
    Ok(Json(first_hundred(&state, &c).await?))
}

impl ClearBody {
    /// The run a clear names, once the options Leoflow does not support are refused.
    fn supported_run(&self) -> ApiResult<String> {
        let unsupported = [
            ("include_upstream", self.include_upstream),
            ("include_future", self.include_future),
            ("include_past", self.include_past),
            ("only_running", self.only_running),
            ("run_on_latest_version", self.run_on_latest_version),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, v)| *v == Some(true)) {
            return Err(ApiError::bad_request(format!(
                "Leoflow does not support {name} when clearing"
            )));
        }
        if self.start_date.as_ref().is_some_and(|v| !v.is_null())
            || self.end_date.as_ref().is_some_and(|v| !v.is_null())
        {
            return Err(ApiError::bad_request(
                "Leoflow clears task instances of one run: name it with dag_run_id instead of dates",
            ));
        }
        // Accepted and without effect: a clear never resets runs nor stops running tries here.
        let _ = (self.reset_dag_runs, self.prevent_running_task);
        self.dag_run_id.clone().ok_or_else(|| {
            ApiError::bad_request("Leoflow clears task instances of one run: give its dag_run_id")
        })
    }
}

/// Narrows `c` to the task instances a clear of `targets` would touch, as the scheduler's
/// clear decides it (no targets: the whole run).
async fn would_clear(
    state: &ApiState,
    c: &mut Conditions,
    dag_id: &str,
    run_id: &str,
    targets: Vec<(String, Option<i32>)>,
    downstream: bool,
) -> ApiResult<()> {
    if targets.is_empty() {
        c.eq(ti::DAG_ID, Bind::Text(dag_id.to_owned()));
        c.eq(ti::RUN_ID, Bind::Text(run_id.to_owned()));
        return Ok(());
    }
    let scopes = control::clear_scopes(
        &state.store,
        &state.specs,
        dag_id,
        run_id,
        targets,
        downstream,
    )
    .await
    .map_err(ApiError::internal)?;
    read::task_instances::cleared_across(c, &scopes);
    Ok(())
}

/// The task ids of a clear body: plain ids (the whole task) or `[task_id, map_index]` pairs
/// (that instance only).
fn clear_targets(entries: Vec<Value>) -> ApiResult<Vec<(String, Option<i32>)>> {
    entries
        .into_iter()
        .map(|entry| {
            let target = match &entry {
                Value::String(id) => Some((id.clone(), None)),
                Value::Array(pair) => match pair.as_slice() {
                    [Value::String(id), index] => index
                        .as_i64()
                        .and_then(|i| i32::try_from(i).ok())
                        .map(|i| (id.clone(), Some(i))),
                    _ => None,
                },
                _ => None,
            };
            target.ok_or_else(|| {
                ApiError::invalid(
                    &["body", "task_ids"],
                    "value_error",
                    "Each task id is a string or a [task_id, map_index] pair",
                    entry,
                )
            })
        })
        .collect()
}

/// Airflow's `TaskDependencyResponse`: one reason a task instance does not run.
#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    /// The dependency's name (`Trigger Rule`, `Pool Slots Available`, …).
    pub name: &'static str,
    /// Why it is not met.
    pub reason: String,
}

/// Airflow's `TaskDependencyCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct Dependencies {
    /// The unmet dependencies.
    pub dependencies: Vec<Dependency>,
}

/// `GET …/taskInstances/{task_id}/dependencies` (and its mapped form): why the task instance is
/// not running — its state, a paused DAG, a run not running, a retry not due, its trigger rule,
/// a full pool, the DAG's `max_active_tasks` — as Airflow's UI lists them.
pub async fn dependencies(
    State(state): State<ApiState>,
    ti: TiPath,
    params: Params,
) -> ApiResult<Json<Dependencies>> {
    let map_index = ti.map_index_or_query(&params)?;
    load_run(&state, &ti.dag_id, &ti.run_id).await?;
    let run = control::run_state(&state.store, &state.specs, &ti.dag_id, &ti.run_id)
        .await
        .map_err(ApiError::internal)?;
    // A run that has not started has its task instances in the scheduler's state only.
    if !run.state.tis.contains_key(&(ti.task_id.clone(), map_index)) {
        load_ti(&state, &ti.dag_id, &ti.run_id, &ti.task_id, map_index).await?;
    }
    let around = surroundings(&state, &ti.dag_id, &run.spec, &ti.task_id).await?;
    let found =
        leoflow_core::blockers::blockers(&run.spec, &run.state, &ti.task_id, map_index, &around);
    let dependencies = found
        .into_iter()
        .map(|b| Dependency {
            name: b.name,
            reason: b.reason,
        })
        .collect();
    Ok(Json(Dependencies { dependencies }))
}

/// What a task instance's blockers are judged against besides its run: the DAG's pause and
/// active task instances, the task's pool.
async fn surroundings(
    state: &ApiState,
    dag_id: &str,
    spec: &leoflow_core::spec::DagSpec,
    task_id: &str,
) -> ApiResult<leoflow_core::blockers::Surroundings> {
    let pool = state.store.pool();
    let (dag_paused, max_active_tasks) = read::dags::pause_and_task_limit(pool, dag_id).await?;
    let active =
        read::task_instances::count_in_states(pool, dag_id, &control::in_flight_names()).await?;
    let pool = spec
        .tasks
        .get(task_id)
        .map_or(control::DEFAULT_POOL, |t| t.pool.as_str())
        .to_owned();
    // The task holds slots in its DAG's tenant's pool of that name.
    let tenant = read::dags::owner(state.store.pool(), dag_id)
        .await?
        .map_or_else(|| DEFAULT_TENANT.to_owned(), |owner| owner.tenant);
    let open_slots = crate::v2::config::pools::open_slots(state, &tenant, &pool).await?;
    Ok(leoflow_core::blockers::Surroundings {
        dag_paused,
        active_tasks: (i64::from(max_active_tasks), active),
        pool: leoflow_core::blockers::PoolUse {
            name: pool,
            open_slots,
        },
        now: chrono::Utc::now(),
    })
}

/// Airflow's `ExtraLinkCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct ExtraLinks {
    /// Link name → URL.
    pub extra_links: serde_json::Map<String, Value>,
    /// How many.
    pub total_entries: i64,
}

/// `GET …/taskInstances/{task_id}/links`: no operator of Leoflow's has extra links.
pub async fn links(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<ExtraLinks>> {
    load_run(&state, &dag_id, &run_id).await?;
    let _ = task_id;
    Ok(Json(ExtraLinks {
        extra_links: serde_json::Map::new(),
        total_entries: 0,
    }))
}

/// `DELETE …/taskInstances/{task_id}`: refused, clearly (a run's task instances are its DAG
/// version's tasks; clearing runs one again).
pub async fn delete_ti(
    State(state): State<ApiState>,
    ti: TiPath,
    params: Params,
) -> ApiResult<Json<Value>> {
    let map_index = ti.map_index_or_query(&params)?;
    let TiPath {
        dag_id,
        run_id,
        task_id,
        ..
    } = ti;
    load_ti(&state, &dag_id, &run_id, &task_id, map_index).await?;
    Err(ApiError::invalid(
        &["path", "task_id"],
        "value_error",
        "Leoflow keeps every task instance of a run in its event log and does not delete them; \
         clear the task instance to run it again",
        json!(task_id),
    ))
}
