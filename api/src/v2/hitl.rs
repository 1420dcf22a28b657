//! Human-in-the-loop details (Airflow 3.1's `hitlDetails`): what tries waiting for a person's
//! answer ask, listed and read as the UI's "Required Actions" pages read them, and answered
//! (`PATCH`), which resumes the try with the answer (`Command::Answer`).

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use leoflow_core::run::Command;
use leoflow_events::Actor;
use leoflow_projector::read;
use leoflow_projector::read::hitl::{HitlRecord, columns as hitl};
use leoflow_scheduler::control::{self, SubmitError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::User;
use crate::body::Body;
use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params, path_int};
use crate::read::page::read_page;
use crate::read::task_instances as rows;
use crate::state::ApiState;
use crate::states::ti_state_names;
use crate::v2::models::{
    TaskCatalog, TaskInstanceHistoryResponse, TaskInstanceResponse, TiRecord, load_dag, load_run,
};
use crate::v2::task_instances::tries;

/// Airflow's `HITLUser`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HitlUser {
    pub id: String,
    pub name: String,
}

/// Airflow's `HITLDetail` (with a `TaskInstanceResponse`), and `HITLDetailHistory` (with a
/// `TaskInstanceHistoryResponse`: one try's).
#[derive(Debug, Serialize)]
pub struct HitlDetail<T = TaskInstanceResponse> {
    pub options: Vec<String>,
    pub subject: String,
    pub body: Option<String>,
    pub defaults: Option<Vec<String>>,
    pub multiple: bool,
    pub params: Map<String, Value>,
    pub assigned_users: Vec<HitlUser>,
    pub created_at: DateTime<Utc>,
    pub responded_by_user: Option<HitlUser>,
    pub responded_at: Option<DateTime<Utc>>,
    pub chosen_options: Option<Vec<String>>,
    pub params_input: Map<String, Value>,
    pub response_received: bool,
    pub task_instance: T,
}

/// Airflow's `HITLDetailCollection`.
#[derive(Debug, Serialize)]
pub struct HitlDetailCollection {
    pub hitl_details: Vec<HitlDetail>,
    pub total_entries: i64,
}

/// Airflow's `HITLDetailResponse`: the answer just recorded.
#[derive(Debug, Serialize)]
pub struct HitlDetailResponse {
    pub responded_by: HitlUser,
    pub responded_at: DateTime<Utc>,
    pub chosen_options: Vec<String>,
    pub params_input: Map<String, Value>,
}

/// Airflow's `UpdateHITLDetailPayload`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    chosen_options: Vec<String>,
    #[serde(default)]
    params_input: Map<String, Value>,
}

/// What a try asks, read back from its request.
#[derive(Debug, Default, Deserialize)]
struct Request {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    options: Vec<String>,
    #[serde(default)]
    defaults: Option<Vec<String>>,
    #[serde(default)]
    multiple: bool,
    #[serde(default)]
    params: Map<String, Value>,
    #[serde(default)]
    assigned_users: Vec<HitlUser>,
}

/// An answer, read back from the event the try resumed with.
#[derive(Debug, Default, Deserialize)]
struct Given {
    #[serde(default)]
    chosen_options: Option<Vec<String>>,
    #[serde(default)]
    params_input: Option<Map<String, Value>>,
    #[serde(default)]
    responded_by_user: Option<HitlUser>,
    #[serde(default)]
    responded_at: Option<DateTime<Utc>>,
}

fn detail<T>(record: &HitlRecord, task_instance: T) -> HitlDetail<T> {
    let request: Request = serde_json::from_value(record.request.clone()).unwrap_or_default();
    let given: Given = record
        .response
        .clone()
        .and_then(|r| serde_json::from_value(r).ok())
        .unwrap_or_default();
    HitlDetail {
        options: request.options,
        subject: request.subject,
        body: request.body,
        defaults: request.defaults,
        multiple: request.multiple,
        params: request.params,
        assigned_users: request.assigned_users,
        created_at: record.created_at,
        responded_by_user: given.responded_by_user,
        responded_at: given.responded_at,
        chosen_options: given.chosen_options,
        params_input: given.params_input.unwrap_or_default(),
        response_received: record.response.is_some(),
        task_instance,
    }
}

/// The details of `records`, each with its task instance (read together, not one by one).
async fn details(state: &ApiState, records: &[HitlRecord]) -> ApiResult<Vec<HitlDetail>> {
    let keys: Vec<(&str, &str, &str, i32)> = records
        .iter()
        .map(|r| {
            (
                r.dag_id.as_str(),
                r.run_id.as_str(),
                r.task_id.as_str(),
                r.map_index,
            )
        })
        .collect();
    // A task instance's tries may each have a record: one row serves them all.
    let found = rows::find_many(state, &keys).await?;
    let tis = records
        .iter()
        .map(|r| {
            found
                .iter()
                .find(|ti| {
                    (&ti.dag_id, &ti.run_id, &ti.task_id, ti.map_index)
                        == (&r.dag_id, &r.run_id, &r.task_id, r.map_index)
                })
                .cloned()
                .ok_or_else(|| ApiError::internal(format!("{} has no task instance", r.task_id)))
        })
        .collect::<ApiResult<Vec<TiRecord>>>()?;
    let catalog = TaskCatalog::load(state, &tis).await?;
    Ok(records
        .iter()
        .zip(&tis)
        .map(|(record, ti)| detail(record, catalog.response(ti)))
        .collect())
}

fn scope(id: &str) -> Option<&str> {
    (id != "~").then_some(id)
}

fn conditions(
    params: &Params,
    dag_id: Option<&str>,
    run_id: Option<&str>,
) -> ApiResult<Conditions> {
    let mut c = Conditions::new();
    if let Some(dag_id) = dag_id {
        c.eq(hitl::DAG_ID, Bind::Text(dag_id.to_owned()));
    }
    if let Some(run_id) = run_id {
        c.eq(hitl::RUN_ID, Bind::Text(run_id.to_owned()));
    }
    if let Some(task_id) = params.str("task_id").filter(|t| !t.is_empty()) {
        c.eq(hitl::TASK_ID, Bind::Text(task_id.to_owned()));
    }
    if let Some(map_index) = params.int("map_index")? {
        c.eq(hitl::MAP_INDEX, Bind::BigInt(map_index));
    }
    if let Some(received) = params.bool("response_received")? {
        c.eq(hitl::RESPONSE_RECEIVED, Bind::Bool(received));
    }
    c.any_of(params, "state", hitl::STATE, Some(&ti_state_names()))?;
    c.any_of(params, "responded_by_user_id", hitl::RESPONDED_BY_ID, None)?;
    c.any_of(
        params,
        "responded_by_user_name",
        hitl::RESPONDED_BY_NAME,
        None,
    )?;
    c.patterns(params, "dag_id", hitl::DAG_ID);
    c.patterns(params, "task_id", hitl::TASK_ID);
    for (name, column) in [
        ("subject_search", hitl::SUBJECT),
        ("body_search", hitl::BODY),
    ] {
        if let Some(term) = params.str(name).filter(|t| !t.is_empty()) {
            c.ilike_any(column, vec![format!("%{term}%")]);
        }
    }
    c.time_range(params, "created_at", hitl::CREATED_AT)?;
    Ok(c)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{dag_run_id}/hitlDetails` (`~` for all): the details of
/// the current tries that asked, newest first unless ordered otherwise.
pub async fn list(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
    dags: DagScope,
    params: Params,
) -> ApiResult<Json<HitlDetailCollection>> {
    match (scope(&dag_id), scope(&run_id)) {
        (Some(dag_id), Some(run_id)) => {
            load_run(&state, dag_id, run_id).await?;
        }
        (Some(dag_id), None) => {
            load_dag(&state, dag_id).await?;
        }
        _ => {}
    }
    let mut c = conditions(&params, scope(&dag_id), scope(&run_id))?;
    dags.restrict(&mut c, hitl::DAG_ID);
    let order = params.order_by(
        &[
            ("dag_id", hitl::DAG_ID),
            ("run_id", hitl::RUN_ID),
            ("task_id", hitl::TASK_ID),
            ("ti_id", hitl::TASK_ID),
            ("subject", hitl::SUBJECT),
            ("created_at", hitl::CREATED_AT),
            ("responded_at", hitl::RESPONDED_AT),
            ("response_received", hitl::RESPONSE_RECEIVED),
            ("task_instance_state", hitl::STATE),
        ],
        "-created_at",
        "h.dag_id, h.run_id, h.task_id, h.map_index",
    )?;
    let pool = state.store.pool();
    let paged = read_page(params.page()?, |w| read::hitl::page(pool, &c, &order, w)).await?;
    Ok(Json(HitlDetailCollection {
        hitl_details: details(&state, &paged.rows).await?,
        total_entries: paged.total,
    }))
}

/// The task instance a detail route names: `{dag_id}`, `{dag_run_id}`, `{task_id}`,
/// `{map_index}`.
type TiAddress = (String, String, String, String);

/// The current try's detail of a task instance, with Airflow's 404s.
async fn find(state: &ApiState, address: &TiAddress) -> ApiResult<(HitlRecord, TiRecord)> {
    let (dag_id, run_id, task_id, map_index) = address;
    let map_index = path_int("map_index", map_index)?;
    load_run(state, dag_id, run_id).await?;
    let ti = rows::find(state, dag_id, run_id, task_id, map_index)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: \
                 `{task_id}` and map_index: `{map_index}` was not found"
            ))
        })?;
    let key = (
        dag_id.as_str(),
        run_id.as_str(),
        task_id.as_str(),
        map_index,
    );
    let record = read::hitl::find(state.store.pool(), key, None)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Human-in-the-loop detail does not exist for Task Instance with id {}",
                ti.id
            ))
        })?;
    Ok((record, ti))
}

/// `GET …/taskInstances/{task_id}/{map_index}/hitlDetails`.
pub async fn get(
    State(state): State<ApiState>,
    Path(address): Path<TiAddress>,
) -> ApiResult<Json<HitlDetail>> {
    let (record, ti) = find(&state, &address).await?;
    let catalog = TaskCatalog::load(&state, std::slice::from_ref(&ti)).await?;
    Ok(Json(detail(&record, catalog.response(&ti))))
}

/// `GET …/taskInstances/{task_id}/{map_index}/hitlDetails/tries/{try_number}`: a try's detail
/// (Airflow's `HITLDetailHistory`).
pub async fn get_try(
    State(state): State<ApiState>,
    Path((dag_id, run_id, task_id, map_index, try_number)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
) -> ApiResult<Json<HitlDetail<TaskInstanceHistoryResponse>>> {
    let address = (dag_id, run_id, task_id, map_index);
    let try_number = path_int("try_number", &try_number)?;
    let (_, ti) = find(&state, &address).await?;
    let key = (
        ti.dag_id.as_str(),
        ti.run_id.as_str(),
        ti.task_id.as_str(),
        ti.map_index,
    );
    let missing = || {
        ApiError::not_found(format!(
            "Human-in-the-loop detail does not exist for try {try_number} of Task Instance \
             with id {}",
            ti.id
        ))
    };
    let record = read::hitl::find(state.store.pool(), key, Some(try_number))
        .await?
        .ok_or_else(missing)?;
    let history = tries(&state, &ti, Some(try_number))
        .await?
        .pop()
        .ok_or_else(missing)?;
    Ok(Json(detail(&record, history)))
}

/// `PATCH …/taskInstances/{task_id}/{map_index}/hitlDetails`: answers the question, which
/// resumes the waiting try with the answer. Refused: a second answer (409, as Airflow), a
/// caller who is not among its `assigned_users` (403, as Airflow), and — beyond Airflow, which
/// fails the task later — options it does not offer, several for a single choice, and params it
/// does not ask for (422, naming them).
pub async fn answer(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(address): Path<TiAddress>,
    Body(answer): Body<Answer>,
) -> ApiResult<Json<HitlDetailResponse>> {
    let (record, ti) = find(&state, &address).await?;
    if record.response.is_some() {
        return Err(ApiError::conflict(format!(
            "Human-in-the-loop detail has already been updated for Task Instance with id {} \
             and is not allowed to write again.",
            ti.id
        )));
    }
    let request: Request = serde_json::from_value(record.request.clone()).unwrap_or_default();
    let responder = HitlUser {
        id: user.username.clone(),
        name: user.display_name.clone(),
    };
    check_answer(&request, &answer, &responder)?;
    let responded_at = Utc::now();
    let event = json!({
        "chosen_options": answer.chosen_options,
        "params_input": answer.params_input,
        "responded_by_user": responder,
        "responded_at": responded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "timedout": false,
    });
    let command = Command::Answer {
        task_id: record.task_id.clone(),
        map_index: record.map_index,
        try_number: record.try_number,
        answer: event,
    };
    control::submit(
        &state.store,
        &state.specs,
        &record.dag_id,
        &record.run_id,
        command,
        &Actor::from(&user),
    )
    .await
    .map_err(|error| match error {
        SubmitError::Rejected(rejection) => ApiError::conflict(format!(
            "The task instance no longer waits for an answer: {rejection}"
        )),
        other => ApiError::internal(other),
    })?;
    Ok(Json(HitlDetailResponse {
        responded_by: responder,
        responded_at,
        chosen_options: answer.chosen_options,
        params_input: answer.params_input,
    }))
}

fn check_answer(request: &Request, answer: &Answer, responder: &HitlUser) -> ApiResult<()> {
    if !request.assigned_users.is_empty()
        && !request.assigned_users.iter().any(|u| u.id == responder.id)
    {
        return Err(ApiError::detail(
            axum::http::StatusCode::FORBIDDEN,
            format!(
                "User={} (id={}) is not a respondent for the task.",
                responder.name, responder.id
            ),
        ));
    }
    if answer.chosen_options.is_empty() {
        return Err(ApiError::invalid(
            &["body", "chosen_options"],
            "too_short",
            "List should have at least 1 item after validation, not 0",
            json!([]),
        ));
    }
    let unknown: Vec<&String> = answer
        .chosen_options
        .iter()
        .filter(|o| !request.options.contains(o))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::invalid(
            &["body", "chosen_options"],
            "value_error",
            format!(
                "Value error, responses {unknown:?} are not among the options {:?}",
                request.options
            ),
            json!(answer.chosen_options),
        ));
    }
    if !request.multiple && answer.chosen_options.len() > 1 {
        return Err(ApiError::invalid(
            &["body", "chosen_options"],
            "value_error",
            format!(
                "Value error, only one option may be chosen, not {}",
                answer.chosen_options.len()
            ),
            json!(answer.chosen_options),
        ));
    }
    let unasked: Vec<&String> = answer
        .params_input
        .keys()
        .filter(|k| !request.params.contains_key(*k))
        .collect();
    if !unasked.is_empty() {
        return Err(ApiError::invalid(
            &["body", "params_input"],
            "value_error",
            format!(
                "Value error, params {unasked:?} are not among the params {:?}",
                request.params.keys().collect::<Vec<_>>()
            ),
            Value::Object(answer.params_input.clone()),
        ));
    }
    Ok(())
}
