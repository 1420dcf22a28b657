//! DAGs: `GET /api/v2/dags` (and the UI's `/ui/dags` with latest runs), one DAG, its details,
//! pausing, tags, stats. Filters and ordering are Airflow's.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use leoflow_core::timetable::{RunInfo, Schedule};
use leoflow_events::Actor;
use leoflow_projector::read;
use leoflow_projector::read::dags::columns as dag;
use leoflow_projector::read::runs::columns as run;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::body::Body;
use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;
use crate::states::{active_run_names, run_state_names};
use crate::v2::models::{
    DagCollection, DagRecord, DagResponse, DagVersionResponse, NextRun, RunRecord, document,
    load_dag,
};

/// The conditions of a DAG list (shared by `/api/v2/dags`, `/ui/dags` and bulk patching).
pub fn dag_conditions(params: &Params, user: Option<&str>) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    let tags: Vec<String> = params.all("tags").iter().map(|t| t.to_string()).collect();
    if !tags.is_empty() {
        match params.str("tags_match_mode").unwrap_or("any") {
            "any" => c.push(&format!("{} ?| {{}}", dag::TAGS), vec![Bind::Texts(tags)]),
            "all" => c.push(&format!("{} ?& {{}}", dag::TAGS), vec![Bind::Texts(tags)]),
            other => {
                return Err(ApiError::invalid(
                    &["query", "tags_match_mode"],
                    "enum",
                    "Input should be 'any' or 'all'",
                    json!(other),
                ));
            }
        };
    }
    let owners: Vec<String> = params.all("owners").iter().map(|o| o.to_string()).collect();
    if !owners.is_empty() {
        c.push(
            &format!("{} && {{}}", dag::OWNER_LIST),
            vec![Bind::Texts(owners)],
        );
    }
    let dag_ids: Vec<String> = params
        .all("dag_ids")
        .iter()
        .map(|o| o.to_string())
        .collect();
    if !dag_ids.is_empty() {
        c.one_of(dag::DAG_ID, dag_ids, false);
    }
    c.patterns(params, "dag_id", dag::DAG_ID);
    c.patterns(params, "dag_display_name", dag::DAG_ID);
    if params.bool("exclude_stale")?.unwrap_or(true) {
        c.push(&format!("NOT {}", dag::IS_STALE), vec![]);
    }
    if let Some(paused) = params.bool("paused")? {
        c.eq(dag::IS_PAUSED, Bind::Bool(paused));
    }
    if let Some(errors) = params.bool("has_import_errors")? {
        c.eq(dag::HAS_IMPORT_ERRORS, Bind::Bool(errors));
    }
    if let Some(bundle) = params.str("bundle_name") {
        c.eq(dag::BUNDLE_NAME, Bind::Text(bundle.to_owned()));
    }
    if let Some(scheduled) = params.bool("has_asset_schedule")? {
        read::assets::scheduled_on_assets(&mut c, scheduled);
    }
    if let Some(asset) = params.str("asset_dependency") {
        read::assets::scheduled_on_asset_like(&mut c, asset);
    }
    // Leoflow's bundles are unversioned and it has no human-in-the-loop tasks: asking for a
    // bundle version or pending actions matches no DAG.
    if params.str("bundle_version").is_some_and(|v| !v.is_empty())
        || params.bool("has_pending_actions")? == Some(true)
    {
        c.push("false", vec![]);
    }
    let run_states = run_state_names();
    let last_states = params.list("last_dag_run_state", Some(&run_states))?;
    if !last_states.is_empty() {
        c.one_of(dag::LAST_RUN_STATE, last_states, false);
    }
    // DAGs with a run in a window or a state.
    let mut runs = Conditions::new();
    runs.time_range(params, "dag_run_start_date", run::START_DATE)?;
    runs.time_range(params, "dag_run_end_date", run::END_DATE)?;
    runs.any_of(params, "dag_run_state", run::STATE, Some(&run_states))?;
    if !runs.is_empty() {
        read::dags::has_run(&mut c, &runs);
    }
    if let Some(favorite) = params.bool("is_favorite")? {
        read::dags::favorite_of(&mut c, user.unwrap_or(""), favorite);
    }
    Ok(c)
}

/// `ORDER BY` of a DAG list.
fn dag_order(params: &Params) -> ApiResult<String> {
    params.order_by(
        &[
            ("dag_id", dag::DAG_ID),
            ("dag_display_name", dag::DAG_ID),
            ("next_dagrun", dag::DAG_ID),
            ("state", dag::LAST_RUN_STATE),
            ("start_date", dag::LAST_RUN_START_DATE),
            ("last_run_state", dag::LAST_RUN_STATE),
            ("last_run_start_date", dag::LAST_RUN_START_DATE),
            ("is_paused", dag::IS_PAUSED),
        ],
        "dag_id",
        dag::DAG_ID,
    )
}

/// One page of DAGs and the total.
pub async fn list_dags(
    state: &ApiState,
    params: &Params,
    user: Option<&str>,
    scope: &DagScope,
) -> ApiResult<(Vec<DagRecord>, i64)> {
    let page = params.page()?;
    let mut conditions = dag_conditions(params, user)?;
    scope.restrict(&mut conditions, dag::DAG_ID);
    let order = dag_order(params)?;
    let pool = state.store.pool();
    let paged = read_page(page, |w| read::dags::page(pool, &conditions, &order, w)).await?;
    Ok((paged.rows, paged.total))
}

/// The next run each scheduled DAG's timetable will create.
pub async fn next_runs(
    state: &ApiState,
    dags: &[DagRecord],
) -> ApiResult<HashMap<String, NextRun>> {
    let scheduled: Vec<&DagRecord> = dags
        .iter()
        .filter(|d| d.timetable_summary.is_some())
        .collect();
    if scheduled.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = scheduled.iter().map(|d| d.dag_id.clone()).collect();
    let last = read::runs::last_scheduled(state.store.pool(), &ids).await?;
    let last: HashMap<String, RunInfo> = last
        .into_iter()
        .map(|run| {
            let info = RunInfo {
                logical_date: run.logical_date,
                run_after: run.run_after,
                data_interval_start: run.data_interval_start.unwrap_or(run.logical_date),
                data_interval_end: run.data_interval_end.unwrap_or(run.logical_date),
            };
            (run.dag_id, info)
        })
        .collect();
    let now = Utc::now();
    let mut next = HashMap::new();
    for dag in scheduled {
        let doc = document(state, &dag.dag_id, &dag.latest_version_hash).await?;
        let Ok(schedule) = Schedule::from_dag_json(&doc) else {
            continue;
        };
        if let Some(run) = schedule.next_run(last.get(&dag.dag_id), now) {
            next.insert(
                dag.dag_id.clone(),
                NextRun {
                    logical_date: run.logical_date,
                    data_interval_start: run.data_interval_start,
                    data_interval_end: run.data_interval_end,
                    run_after: run.run_after,
                },
            );
        }
    }
    Ok(next)
}

/// `GET /api/v2/dags`.
pub async fn get_dags(
    State(state): State<ApiState>,
    user: Option<axum::Extension<crate::auth::User>>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<DagCollection>> {
    let user = user.as_ref().map(|u| u.username.as_str());
    let (dags, total) = list_dags(&state, &params, user, &scope).await?;
    let next = next_runs(&state, &dags).await?;
    let dags = dags
        .iter()
        .map(|d| DagResponse::new(d, next.get(&d.dag_id)))
        .collect();
    Ok(Json(DagCollection {
        dags,
        total_entries: total,
    }))
}

/// `GET /api/v2/dags/{dag_id}`.
pub async fn get_dag(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<DagResponse>> {
    let dag = load_dag(&state, &dag_id).await?;
    let next = next_runs(&state, std::slice::from_ref(&dag)).await?;
    Ok(Json(DagResponse::new(&dag, next.get(&dag_id))))
}

/// Airflow's `DAGDetailsResponse`: a `DAGResponse` and what the DAG's document says.
#[derive(Debug, Clone, Serialize)]
pub struct DagDetailsResponse {
    #[serde(flatten)]
    pub dag: DagResponse,
    pub catchup: bool,
    pub dag_run_timeout: Option<String>,
    pub asset_expression: Option<Value>,
    pub doc_md: Value,
    pub start_date: Value,
    pub end_date: Value,
    pub is_paused_upon_creation: Value,
    pub params: Value,
    pub render_template_as_native_obj: bool,
    pub template_search_path: Option<Vec<String>>,
    pub timezone: String,
    pub last_parsed: DateTime<Utc>,
    pub default_args: serde_json::Map<String, Value>,
    pub owner_links: serde_json::Map<String, Value>,
    pub is_favorite: bool,
    pub active_runs_count: i64,
    pub concurrency: i32,
    pub latest_dag_version: Option<DagVersionResponse>,
}

/// `GET /api/v2/dags/{dag_id}/details`.
pub async fn get_dag_details(
    State(state): State<ApiState>,
    user: Option<axum::Extension<crate::auth::User>>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<DagDetailsResponse>> {
    let dag = load_dag(&state, &dag_id).await?;
    let next = next_runs(&state, std::slice::from_ref(&dag)).await?;
    let doc = document(&state, &dag_id, &dag.latest_version_hash).await?;
    let pool = state.store.pool();
    let version = read::dag_versions::by_id(pool, dag.latest_version_id).await?;
    let active = read::runs::count_in_states(pool, &dag_id, &active_run_names()).await?;
    let favorite = is_favorite(&state, &dag_id, user.as_ref().map(|u| u.username.as_str())).await?;
    let mut expressions = asset_expressions(&state, std::slice::from_ref(&dag)).await?;
    Ok(Json(DagDetailsResponse {
        dag: DagResponse::new(&dag, next.get(&dag_id)),
        catchup: dag.catchup,
        dag_run_timeout: doc["dagrun_timeout"].as_f64().map(iso_duration),
        asset_expression: expressions.remove(&dag_id),
        doc_md: doc["doc_md"].clone(),
        start_date: doc["start_date"].clone(),
        end_date: doc["end_date"].clone(),
        is_paused_upon_creation: doc["is_paused_upon_creation"].clone(),
        params: doc.get("params").cloned().unwrap_or(json!({})),
        render_template_as_native_obj: false,
        template_search_path: None,
        timezone: doc["timezone"].as_str().unwrap_or("UTC").to_owned(),
        last_parsed: dag.last_parsed_time,
        default_args: Default::default(),
        owner_links: Default::default(),
        is_favorite: favorite,
        active_runs_count: active,
        concurrency: dag.max_active_tasks,
        latest_dag_version: version.as_ref().map(DagVersionResponse::from),
    }))
}

/// The asset condition (Airflow's `asset_expression`) of each of `dags` scheduled on assets.
pub async fn asset_expressions(
    state: &ApiState,
    dags: &[DagRecord],
) -> ApiResult<HashMap<String, Value>> {
    let ids: Vec<String> = dags.iter().map(|d| d.dag_id.clone()).collect();
    let expressions = read::assets::expressions(state.store.pool(), &ids).await?;
    Ok(expressions
        .into_iter()
        .map(|(dag_id, expression)| (dag_id, crate::v2::assets::with_asset_ids(expression)))
        .collect())
}

/// Whether `user` marked `dag_id` as a favorite.
pub async fn is_favorite(state: &ApiState, dag_id: &str, user: Option<&str>) -> ApiResult<bool> {
    let Some(user) = user else { return Ok(false) };
    Ok(read::favorites::is_favorite(state.store.pool(), dag_id, user).await?)
}

/// Seconds as an ISO 8601 duration (`P0DT0H30M0S`), as pydantic prints a `timedelta`.
fn iso_duration(seconds: f64) -> String {
    let whole = seconds.trunc() as i64;
    let (days, rest) = (whole / 86_400, whole % 86_400);
    let fraction = seconds.fract();
    let secs = (rest % 60) as f64 + fraction;
    format!("P{days}DT{}H{}M{}S", rest / 3600, (rest % 3600) / 60, secs)
}

/// `PATCH /api/v2/dags/{dag_id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagPatch {
    is_paused: bool,
}

fn check_update_mask(params: &Params) -> ApiResult<()> {
    for field in params.all("update_mask") {
        if field != "is_paused" {
            return Err(ApiError::bad_request(format!(
                "Only `is_paused` can be updated, not {field:?}"
            )));
        }
    }
    Ok(())
}

/// `PATCH /api/v2/dags/{dag_id}`: pause or unpause.
pub async fn patch_dag(
    State(state): State<ApiState>,
    axum::Extension(user): axum::Extension<crate::auth::User>,
    Path(dag_id): Path<String>,
    params: Params,
    Body(patch): Body<DagPatch>,
) -> ApiResult<Json<DagResponse>> {
    check_update_mask(&params)?;
    leoflow_scheduler::control::set_paused(
        &state.store,
        &dag_id,
        patch.is_paused,
        &Actor::from(&user),
    )
    .await
    .map_err(crate::v2::control_error)?;
    get_dag(State(state), Path(dag_id)).await
}

/// `PATCH /api/v2/dags`: pause or unpause every DAG the filters match (`dag_id_pattern`…).
pub async fn patch_dags(
    State(state): State<ApiState>,
    axum::Extension(user): axum::Extension<crate::auth::User>,
    params: Params,
    Body(patch): Body<DagPatch>,
) -> ApiResult<Json<DagCollection>> {
    check_update_mask(&params)?;
    if params.str("dag_id_pattern").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "dag_id_pattern is required to patch several DAGs (`%` matches all)",
        ));
    }
    // Patching several DAGs needs a role that edits every DAG: never a narrowed scope.
    let (dags, total) = list_dags(&state, &params, Some(&user.username), &DagScope::all()).await?;
    let mut changed = Vec::new();
    for dag in &dags {
        leoflow_scheduler::control::set_paused(
            &state.store,
            &dag.dag_id,
            patch.is_paused,
            &Actor::from(&user),
        )
        .await
        .map_err(crate::v2::control_error)?;
        let mut dag = dag.clone();
        dag.is_paused = patch.is_paused;
        changed.push(DagResponse::new(&dag, None));
    }
    Ok(Json(DagCollection {
        dags: changed,
        total_entries: total,
    }))
}

/// Airflow's `DAGTagCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagTagCollection {
    /// The page of tag names.
    pub tags: Vec<String>,
    /// Distinct tags in all.
    pub total_entries: i64,
}

/// `GET /api/v2/dagTags`.
pub async fn get_tags(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<DagTagCollection>> {
    let page = params.page()?;
    let pattern = params.str("tag_name_pattern").unwrap_or("");
    let prefix = params.str("tag_name_prefix_pattern").unwrap_or("");
    let descending = match params.str("order_by").unwrap_or("name") {
        "name" => false,
        "-name" => true,
        // 422 as every other `order_by` of Leoflow's (crate::query::Params::order_by): the
        // status Airflow's spec documents for this route.
        other => {
            return Err(ApiError::invalid(
                &["query", "order_by"],
                "value_error",
                format!(
                    "Ordering with '{other}' is disallowed or the attribute does not exist on \
                     the model; allowed: name"
                ),
                json!(other),
            ));
        }
    };
    let mut dags = Conditions::new();
    scope.restrict(&mut dags, dag::DAG_ID);
    let rows = read::dags::tags(state.store.pool(), pattern, prefix, &dags).await?;
    let total = rows.len() as i64;
    let mut tags = rows;
    if descending {
        tags.reverse();
    }
    let tags: Vec<String> = tags
        .into_iter()
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .collect();
    Ok(Json(DagTagCollection {
        tags,
        total_entries: total,
    }))
}

/// Airflow's `DagStatsStateResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagStatsState {
    /// The run state.
    pub state: &'static str,
    /// Runs in it.
    pub count: i64,
}

/// Airflow's `DagStatsResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagStats {
    pub dag_id: String,
    pub dag_display_name: String,
    pub stats: Vec<DagStatsState>,
}

/// Airflow's `DagStatsCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagStatsCollection {
    pub dags: Vec<DagStats>,
    pub total_entries: usize,
}

/// `GET /api/v2/dagStats?dag_ids=…`: run counts by state.
pub async fn get_dag_stats(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<DagStatsCollection>> {
    let asked: Vec<String> = params
        .all("dag_ids")
        .iter()
        .map(|s| s.to_string())
        .collect();
    let pool = state.store.pool();
    let mut dags = Conditions::new();
    dags.one_of(dag::DAG_ID, asked, false);
    scope.restrict(&mut dags, dag::DAG_ID);
    let dag_ids = read::dags::ids(pool, &dags).await?;
    let counts = read::runs::counts_by_dag_and_state(pool, &dag_ids).await?;
    let dags: Vec<DagStats> = dag_ids
        .iter()
        .map(|dag_id| {
            let stats = run_state_names()
                .into_iter()
                .map(|s| {
                    let count = counts
                        .iter()
                        .find(|(d, st, _)| d == dag_id && st == s)
                        .map_or(0, |c| c.2);
                    DagStatsState { state: s, count }
                })
                .collect();
            DagStats {
                dag_id: dag_id.clone(),
                dag_display_name: dag_id.clone(),
                stats,
            }
        })
        .collect();
    let total_entries = dags.len();
    Ok(Json(DagStatsCollection {
        dags,
        total_entries,
    }))
}

/// The latest `limit` runs of each DAG (newest first).
pub async fn latest_runs(
    state: &ApiState,
    dag_ids: &[String],
    limit: i64,
) -> ApiResult<HashMap<String, Vec<RunRecord>>> {
    let runs = read::runs::latest_of_dags(state.store.pool(), dag_ids, limit).await?;
    let mut by_dag: HashMap<String, Vec<RunRecord>> = HashMap::new();
    for run in runs {
        by_dag.entry(run.dag_id.clone()).or_default().push(run);
    }
    Ok(by_dag)
}

/// `DELETE /api/v2/dags/{dag_id}`: forgets the DAG and its runs (refused, 400, while any of
/// its task instances is queued or running).
pub async fn delete_dag(
    State(state): State<ApiState>,
    axum::Extension(user): axum::Extension<crate::auth::User>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<serde_json::Map<String, Value>>> {
    match leoflow_scheduler::control::delete_dag(&state.store, &dag_id, &Actor::from(&user))
        .await
        .map_err(crate::v2::control_error)?
    {
        // Airflow answers an empty object.
        Ok(_) => Ok(Json(serde_json::Map::new())),
        Err(running) => Err(ApiError::bad_request(running.to_string())),
    }
}

async fn favorite(
    state: &ApiState,
    user: &crate::auth::User,
    dag_id: &str,
    on: bool,
) -> ApiResult<axum::http::StatusCode> {
    leoflow_scheduler::control::set_favorite(&state.store, dag_id, &Actor::from(user), on)
        .await
        .map_err(crate::v2::control_error)?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// `POST /api/v2/dags/{dag_id}/favorite`.
pub async fn favorite_dag(
    State(state): State<ApiState>,
    axum::Extension(user): axum::Extension<crate::auth::User>,
    Path(dag_id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    favorite(&state, &user, &dag_id, true).await
}

/// `POST /api/v2/dags/{dag_id}/unfavorite`.
pub async fn unfavorite_dag(
    State(state): State<ApiState>,
    axum::Extension(user): axum::Extension<crate::auth::User>,
    Path(dag_id): Path<String>,
) -> ApiResult<axum::http::StatusCode> {
    favorite(&state, &user, &dag_id, false).await
}
