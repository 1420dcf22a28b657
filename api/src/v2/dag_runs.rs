//! Dag runs: list (one DAG, or all with `~`), one run, trigger, mark, note, clear.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use leoflow_core::commands::{TriggerRejection, TriggerRequest};
use leoflow_core::state::RunStatus;
use leoflow_events::{Actor, Event};
use leoflow_projector::read;
use leoflow_projector::read::runs::columns as run;
use leoflow_scheduler::control;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::User;
use crate::body::Body;
use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, BodyParams, Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;
use crate::states::{failed_names, run_state_names};
use crate::v2::control_error;
use crate::v2::models::{
    Cursors, DagRunCollection, DagRunResponse, RunRecord, TaskCatalog, TaskInstanceCollection,
    load_dag, load_run, versions_by_hash,
};
const RUN_TYPES: [&str; 5] = [
    "backfill",
    "scheduled",
    "manual",
    "asset_triggered",
    "asset_materialization",
];

/// The run filters of a list request.
fn run_conditions(params: &Params, dag_id: Option<&str>) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    if let Some(dag_id) = dag_id {
        c.eq(run::DAG_ID, Bind::Text(dag_id.to_owned()));
    }
    let dag_ids = params.list("dag_ids", None)?;
    if !dag_ids.is_empty() {
        c.one_of(run::DAG_ID, dag_ids, false);
    }
    for (name, column) in [
        ("run_after", run::RUN_AFTER),
        ("logical_date", run::LOGICAL_DATE),
        ("start_date", run::START_DATE),
        ("end_date", run::END_DATE),
        ("updated_at", run::UPDATED_AT),
    ] {
        c.time_range(params, name, column)?;
    }
    c.number_range(params, "duration", run::DURATION)?;
    c.any_of(params, "state", run::STATE, Some(&run_state_names()))?;
    c.any_of(params, "run_type", run::RUN_TYPE, Some(&RUN_TYPES))?;
    c.patterns(params, "run_id", run::RUN_ID);
    c.patterns(params, "dag_id", run::DAG_ID);
    c.patterns(params, "triggering_user_name", run::TRIGGERING_USER_NAME);
    if let Some(text) = params.str("conf_contains").filter(|t| !t.is_empty()) {
        c.push(
            &format!("{} LIKE {{}}", run::CONF_TEXT),
            vec![Bind::Text(format!("%{text}%"))],
        );
    }
    let versions: Vec<i32> = params
        .list("dag_version", None)?
        .iter()
        .map(|v| crate::query::path_int("dag_version", v))
        .collect::<ApiResult<_>>()?;
    if !versions.is_empty() {
        read::dag_versions::run_on_version(&mut c, versions);
    }
    if params.str("bundle_version").is_some_and(|v| !v.is_empty())
        || params
            .str("partition_key_pattern")
            .is_some_and(|v| !v.is_empty())
        || params
            .str("partition_key_prefix_pattern")
            .is_some_and(|v| !v.is_empty())
        || params
            .str("consuming_asset_pattern")
            .is_some_and(|v| !v.is_empty())
    {
        // Unversioned bundles, no partitions, no assets: nothing matches.
        c.push("false", vec![]);
    }
    Ok(c)
}

fn run_order(params: &Params) -> ApiResult<String> {
    params.order_by(
        &[
            ("id", run::ID),
            ("state", run::STATE),
            ("dag_id", run::DAG_ID),
            ("run_id", run::RUN_ID),
            ("logical_date", run::LOGICAL_DATE),
            ("run_after", run::RUN_AFTER),
            ("start_date", run::START_DATE),
            ("end_date", run::END_DATE),
            ("updated_at", run::UPDATED_AT),
            ("conf", run::CONF_TEXT),
            ("duration", run::DURATION),
            ("dag_run_id", run::RUN_ID),
            ("run_type", run::RUN_TYPE),
            ("queued_at", run::QUEUED_AT),
        ],
        "id",
        run::ID,
    )
}

/// One page of runs as `DAGRunResponse`s, with the total.
pub async fn page_of_runs(
    state: &ApiState,
    params: &Params,
    dag_id: Option<&str>,
    scope: &DagScope,
) -> ApiResult<DagRunCollection> {
    let page = params.page()?;
    let mut conditions = run_conditions(params, dag_id)?;
    scope.restrict(&mut conditions, run::DAG_ID);
    let order = run_order(params)?;
    let pool = state.store.pool();
    let paged = read_page(page, |w| read::runs::page(pool, &conditions, &order, w)).await?;
    Ok(DagRunCollection {
        dag_runs: runs_response(state, &paged.rows).await?,
        total_entries: paged.total,
        cursors: Some(Cursors::of(&paged)),
    })
}

/// `DAGRunResponse`s of `runs`, with their DAG versions.
pub async fn runs_response(state: &ApiState, runs: &[RunRecord]) -> ApiResult<Vec<DagRunResponse>> {
    let mut dag_ids: Vec<String> = runs.iter().map(|r| r.dag_id.clone()).collect();
    dag_ids.sort();
    dag_ids.dedup();
    let versions = versions_by_hash(state, &dag_ids).await?;
    Ok(runs
        .iter()
        .map(|run| {
            let version = run
                .dag_version_hash
                .as_ref()
                .and_then(|h| versions.get(&(run.dag_id.clone(), h.clone())));
            DagRunResponse::new(run, version)
        })
        .collect())
}

/// `DAGRunResponse` of one run.
pub async fn run_response(
    state: &ApiState,
    dag_id: &str,
    run_id: &str,
) -> ApiResult<DagRunResponse> {
    let run = load_run(state, dag_id, run_id).await?;
    Ok(runs_response(state, std::slice::from_ref(&run))
        .await?
        .remove(0))
}

fn dag_scope(dag_id: &str) -> Option<&str> {
    (dag_id != "~").then_some(dag_id)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns`.
pub async fn get_runs(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<DagRunCollection>> {
    if let Some(dag_id) = dag_scope(&dag_id) {
        load_dag(&state, dag_id).await?;
    }
    Ok(Json(
        page_of_runs(&state, &params, dag_scope(&dag_id), &scope).await?,
    ))
}

/// `POST /api/v2/dags/{dag_id}/dagRuns/list` body (Airflow's `DAGRunsBatchBody`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsBatch {
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    page_offset: Option<i64>,
    #[serde(default)]
    page_limit: Option<i64>,
    #[serde(default)]
    dag_ids: Option<Vec<String>>,
    #[serde(default)]
    states: Option<Vec<Option<String>>>,
    #[serde(flatten)]
    ranges: std::collections::BTreeMap<String, Value>,
}

/// The list parameters a batch body stands for (the list's filters take it from there).
fn batch_params(batch: &RunsBatch) -> ApiResult<Params> {
    let mut query = BodyParams::default();
    if let Some(order) = &batch.order_by {
        query.append_pair("order_by", order);
    }
    query.append_pair("offset", &batch.page_offset.unwrap_or(0).to_string());
    query.append_pair("limit", &batch.page_limit.unwrap_or(100).to_string());
    for dag_id in batch.dag_ids.iter().flatten() {
        query.append_pair("dag_ids", dag_id);
    }
    for state in batch.states.iter().flatten() {
        query.append_pair("state", state.as_deref().unwrap_or("none"));
    }
    append_ranges(&mut query, &batch.ranges, &["conf_contains"])?;
    query.finish()
}

/// Adds a batch body's range filters (`run_after_gte`, `duration_lt`…) and `extra` plain
/// fields to a query; any other field is refused as pydantic would.
pub fn append_ranges(
    query: &mut BodyParams,
    ranges: &std::collections::BTreeMap<String, Value>,
    extra: &[&str],
) -> ApiResult<()> {
    const RANGES: [&str; 5] = [
        "run_after",
        "logical_date",
        "start_date",
        "end_date",
        "duration",
    ];
    for (name, value) in ranges {
        let known = extra.contains(&name.as_str())
            || RANGES.iter().any(|r| {
                name.strip_prefix(r)
                    .is_some_and(|s| matches!(s, "_gte" | "_gt" | "_lte" | "_lt"))
            });
        if !known {
            return Err(ApiError::invalid(
                &["body", name],
                "extra_forbidden",
                "Extra inputs are not permitted",
                value.clone(),
            ));
        }
        match value {
            Value::Null => {}
            Value::String(s) => {
                query.append_pair(name, s);
            }
            Value::Number(n) => {
                query.append_pair(name, &n.to_string());
            }
            other => {
                return Err(ApiError::invalid(
                    &["body", name],
                    "value_error",
                    "Input should be a string or a number",
                    other.clone(),
                ));
            }
        }
    }
    Ok(())
}

/// `POST /api/v2/dags/~/dagRuns/list`: the list with its filters in the body.
pub async fn list_runs_batch(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    scope: DagScope,
    Body(batch): Body<RunsBatch>,
) -> ApiResult<Json<DagRunCollection>> {
    tilde_only(&["path", "dag_id"], &dag_id)?;
    let params = batch_params(&batch)?;
    Ok(Json(page_of_runs(&state, &params, None, &scope).await?))
}

/// The 422 FastAPI gives a path segment Airflow types `Literal["~"]` (the batch lists take
/// their DAGs and runs in the body) when it is anything else.
pub fn tilde_only(loc: &[&str], value: &str) -> ApiResult<()> {
    if value == "~" {
        return Ok(());
    }
    Err(ApiError::invalid(
        loc,
        "literal_error",
        "Input should be '~'",
        json!(value),
    ))
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`.
pub async fn get_run(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<DagRunResponse>> {
    Ok(Json(run_response(&state, &dag_id, &run_id).await?))
}

/// `POST /api/v2/dags/{dag_id}/dagRuns` body (Airflow's `TriggerDAGRunPostBody`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(default)]
    dag_run_id: Option<String>,
    #[serde(default)]
    data_interval_start: Option<DateTime<Utc>>,
    #[serde(default)]
    data_interval_end: Option<DateTime<Utc>>,
    logical_date: Option<DateTime<Utc>>,
    #[serde(default)]
    run_after: Option<DateTime<Utc>>,
    #[serde(default)]
    conf: Option<Value>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    partition_key: Option<String>,
}

/// `POST /api/v2/dags/{dag_id}/dagRuns`: triggers a run; `conf` is checked against the DAG's
/// params.
pub async fn trigger(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(dag_id): Path<String>,
    Body(body): Body<TriggerBody>,
) -> ApiResult<Json<DagRunResponse>> {
    if body.data_interval_start.is_some() != body.data_interval_end.is_some() {
        return Err(ApiError::invalid(
            &["body"],
            "value_error",
            "Value error, Either both data_interval_start and data_interval_end must be provided or both must be None",
            Value::Null,
        ));
    }
    if body.data_interval_start.is_some() || body.run_after.is_some() {
        return Err(ApiError::bad_request(
            "Leoflow derives a manual run's data interval and run_after from its logical date; \
             leave data_interval_start, data_interval_end and run_after out",
        ));
    }
    if body.partition_key.is_some() {
        return Err(ApiError::bad_request(
            "Leoflow has no partitioned DAGs: leave partition_key out",
        ));
    }
    if let Some(conf) = &body.conf
        && !conf.is_object()
    {
        return Err(ApiError::invalid(
            &["body", "conf"],
            "dict_type",
            "Input should be a valid dictionary",
            conf.clone(),
        ));
    }
    if let Some(run_id) = &body.dag_run_id
        && (run_id.is_empty() || run_id.len() > 250)
    {
        return Err(ApiError::invalid(
            &["body", "dag_run_id"],
            "string_too_long",
            "A run id has 1 to 250 characters",
            json!(run_id),
        ));
    }
    let request = TriggerRequest {
        run_id: body.dag_run_id,
        logical_date: body.logical_date,
        conf: body.conf,
        triggered_by: "rest_api".into(),
    };
    let recorded = control::trigger_dag(&state.store, &dag_id, request, &Actor::from(&user))
        .await
        .map_err(|e| match e {
            control::ControlError::Trigger(rejection @ TriggerRejection::DuplicateRunId(_)) => {
                ApiError::conflict(rejection.to_string())
            }
            other => control_error(other),
        })?;
    let Ok(Event::RunQueued(queued)) = recorded.decode() else {
        return Err(ApiError::internal(
            "trigger recorded something else than RunQueued",
        ));
    };
    if let Some(note) = body.note {
        control::set_run_note(
            &state.store,
            &dag_id,
            &queued.run_id,
            Some(note),
            &Actor::from(&user),
        )
        .await
        .map_err(control_error)?;
    }
    Ok(Json(run_response(&state, &dag_id, &queued.run_id).await?))
}

/// `PATCH /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPatch {
    #[serde(default)]
    state: Option<String>,
    #[serde(default, deserialize_with = "present")]
    note: Option<Option<String>>,
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

/// `PATCH /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`: mark success / failed, re-queue, note.
pub async fn patch_run(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path((dag_id, run_id)): Path<(String, String)>,
    params: Params,
    Body(patch): Body<RunPatch>,
) -> ApiResult<Json<DagRunResponse>> {
    load_run(&state, &dag_id, &run_id).await?;
    let mask = params.list("update_mask", None)?;
    let wants = |field: &str| mask.is_empty() || mask.iter().any(|m| m == field);
    for field in &mask {
        if field != "state" && field != "note" {
            return Err(ApiError::bad_request(format!(
                "Invalid field `{field}` in update mask"
            )));
        }
    }
    if wants("state")
        && let Some(new_state) = &patch.state
    {
        match RunStatus::from_airflow_name(new_state) {
            Some(wanted @ (RunStatus::Success | RunStatus::Failed)) => {
                control::mark_run(
                    &state.store,
                    &state.specs,
                    &dag_id,
                    &run_id,
                    wanted == RunStatus::Success,
                    &Actor::from(&user),
                )
                .await
                .map_err(control_error)?;
            }
            Some(RunStatus::Queued) => {
                control::clear_run(
                    &state.store,
                    &state.specs,
                    &dag_id,
                    &run_id,
                    false,
                    &Actor::from(&user),
                )
                .await
                .map_err(control_error)?;
            }
            Some(RunStatus::Running) | None => {
                return Err(ApiError::invalid(
                    &["body", "state"],
                    "enum",
                    "Input should be 'queued', 'success' or 'failed'",
                    json!(new_state),
                ));
            }
        }
    }
    if wants("note")
        && let Some(note) = patch.note
    {
        control::set_run_note(&state.store, &dag_id, &run_id, note, &Actor::from(&user))
            .await
            .map_err(control_error)?;
    }
    Ok(Json(run_response(&state, &dag_id, &run_id).await?))
}

/// `DELETE /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}`: refused, clearly.
pub async fn delete_run(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    load_run(&state, &dag_id, &run_id).await?;
    Err(ApiError::bad_request(
        "Leoflow keeps every dag run in its event log and does not delete single runs; \
         clear the run to run it again, or delete the whole DAG",
    ))
}

/// `POST …/dagRuns/{dag_run_id}/clear` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearRunBody {
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    only_failed: Option<bool>,
    #[serde(default)]
    only_new: Option<bool>,
    #[serde(default)]
    run_on_latest_version: Option<bool>,
}

/// `POST /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/clear`: with `dry_run` (the default, as in
/// Airflow) the task instances that would run again; otherwise clears them.
pub async fn clear_run(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path((dag_id, run_id)): Path<(String, String)>,
    Body(body): Body<ClearRunBody>,
) -> ApiResult<Response> {
    load_run(&state, &dag_id, &run_id).await?;
    if body.only_new == Some(true) || body.run_on_latest_version == Some(true) {
        return Err(ApiError::bad_request(
            "a cleared run runs again on the DAG version it was queued with: only_new and \
             run_on_latest_version are not supported",
        ));
    }
    let only_failed = body.only_failed.unwrap_or(false);
    if body.dry_run.unwrap_or(true) {
        let states = if only_failed {
            failed_names()
        } else {
            Vec::new()
        };
        let tis = crate::read::task_instances::of_run(&state, &dag_id, &run_id, &states).await?;
        let catalog = TaskCatalog::load(&state, &tis).await?;
        let collection = TaskInstanceCollection {
            task_instances: tis.iter().map(|t| catalog.response(t)).collect(),
            total_entries: tis.len() as i64,
            cursors: None,
        };
        return Ok(Json(collection).into_response());
    }
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
    Ok((
        StatusCode::OK,
        Json(run_response(&state, &dag_id, &run_id).await?),
    )
        .into_response())
}
