//! What a DAG version holds: its tasks (`/dags/{dag_id}/tasks`), its source
//! (`/dagSources/{dag_id}`), and the versions themselves (`/dags/{dag_id}/dagVersions`).

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use leoflow_projector::read;
use leoflow_projector::read::dag_versions::columns as dag_version;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::ApiState;
use crate::v2::models::{
    DagVersionResponse, VersionRecord, document, load_dag, load_version, operator_class,
    tasks_by_id,
};

/// A `TimeDelta` as Airflow serializes one.
#[derive(Debug, Clone, Serialize)]
pub struct TimeDelta {
    #[serde(rename = "__type")]
    kind: &'static str,
    days: i64,
    seconds: i64,
    microseconds: i64,
}

/// Seconds as a `TimeDelta` (`null` when not a duration).
fn time_delta(seconds: Option<f64>) -> Option<TimeDelta> {
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            let whole = s.trunc() as i64;
            Some(TimeDelta {
                kind: "TimeDelta",
                days: whole / 86_400,
                seconds: whole % 86_400,
                microseconds: (s.fract() * 1e6).round() as i64,
            })
        }
        _ => None,
    }
}

/// The module Airflow's operator classes live in.
fn class_module(class: &str) -> &'static str {
    match class {
        "BashOperator" => "airflow.providers.standard.operators.bash",
        "EmptyOperator" => "airflow.providers.standard.operators.empty",
        "_BashDecoratedOperator" => "airflow.providers.standard.decorators.bash",
        "_BranchPythonDecoratedOperator" => "airflow.providers.standard.decorators.branch_python",
        "_ShortCircuitDecoratedOperator" => "airflow.providers.standard.decorators.short_circuit",
        "DecoratedSensorOperator" => "airflow.providers.standard.decorators.sensor",
        "_PythonDecoratedOperator" => "airflow.providers.standard.decorators.python",
        _ => "airflow.providers.standard.operators.python",
    }
}

/// The template fields of Airflow's operator classes.
fn template_fields(class: &str) -> Vec<&'static str> {
    match class {
        "BashOperator" | "_BashDecoratedOperator" => vec!["bash_command", "env", "cwd"],
        "EmptyOperator" => vec![],
        _ => vec!["templates_dict", "op_args", "op_kwargs"],
    }
}

/// What the UI shows of a task's operator class: a custom operator's as dag.json records it
/// (its `custom` entry), Airflow's own classes' as Airflow defines them.
struct Look {
    module: String,
    template_fields: Vec<String>,
    ui_color: String,
    ui_fgcolor: String,
}

impl Look {
    fn of(task: &Value, class: &str) -> Self {
        let custom = &task["custom"];
        if custom.is_object() {
            let text =
                |key: &str, default: &str| custom[key].as_str().unwrap_or(default).to_owned();
            return Self {
                module: text("module", ""),
                template_fields: custom["template_fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|f| f.as_str().map(str::to_owned))
                    .collect(),
                ui_color: text("ui_color", "#fff"),
                ui_fgcolor: text("ui_fgcolor", "#000"),
            };
        }
        let bash = class == "BashOperator" || class == "_BashDecoratedOperator";
        Self {
            module: class_module(class).to_owned(),
            template_fields: template_fields(class)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            ui_color: if bash { "#f0ede4" } else { "#ffefeb" }.to_owned(),
            ui_fgcolor: "#000".to_owned(),
        }
    }
}

/// Where an operator class lives.
#[derive(Debug, Clone, Serialize)]
pub struct ClassRef {
    /// Its module.
    pub module_path: String,
    /// The class.
    pub class_name: String,
}

/// Airflow's `TaskResponse`; the DAG document's values pass through as they are.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResponse {
    pub task_id: String,
    pub task_display_name: String,
    pub owner: Value,
    pub start_date: Value,
    pub end_date: Value,
    pub trigger_rule: Value,
    pub depends_on_past: bool,
    pub wait_for_downstream: bool,
    pub retries: Option<f64>,
    pub queue: Value,
    pub pool: Value,
    pub pool_slots: Option<f64>,
    pub execution_timeout: Option<TimeDelta>,
    pub retry_delay: Option<TimeDelta>,
    pub retry_exponential_backoff: f64,
    pub priority_weight: Option<f64>,
    pub weight_rule: &'static str,
    pub ui_color: String,
    pub ui_fgcolor: String,
    pub template_fields: Vec<String>,
    pub downstream_task_ids: Vec<String>,
    pub doc_md: Value,
    pub operator_name: String,
    pub params: Value,
    pub class_ref: ClassRef,
    pub is_mapped: bool,
    pub extra_links: Vec<String>,
}

impl TaskResponse {
    /// The order of `GET …/tasks?order_by=<field>` (`field` one of the allowed names); a
    /// number missing on either side leaves the two in place.
    fn compare(&self, other: &Self, field: &str) -> std::cmp::Ordering {
        let numbers = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            _ => std::cmp::Ordering::Equal,
        };
        match field {
            "priority_weight" => numbers(self.priority_weight, other.priority_weight),
            "retries" => numbers(self.retries, other.retries),
            "task_display_name" => self.task_display_name.cmp(&other.task_display_name),
            "operator_name" => self.operator_name.cmp(&other.operator_name),
            _ => self.task_id.cmp(&other.task_id),
        }
    }
}

/// Airflow's `TaskCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskCollection {
    pub tasks: Vec<TaskResponse>,
    pub total_entries: usize,
}

/// `TaskResponse` of a dag.json task entry (with the DAG's dates).
pub fn task_response(task: &Value, downstream: &[&str], dag: &Value) -> TaskResponse {
    let written = task["operator"].as_str().unwrap_or("");
    let class = operator_class(written);
    let task_id = task["task_id"].as_str().unwrap_or("");
    let look = Look::of(task, class);
    TaskResponse {
        task_id: task_id.to_owned(),
        task_display_name: task["display_name"].as_str().unwrap_or(task_id).to_owned(),
        owner: task["owner"].clone(),
        start_date: dag["start_date"].clone(),
        end_date: dag["end_date"].clone(),
        trigger_rule: task["trigger_rule"].clone(),
        depends_on_past: task["depends_on_past"].as_bool() == Some(true),
        wait_for_downstream: task["wait_for_downstream"].as_bool() == Some(true),
        retries: task["retries"].as_f64(),
        queue: task["queue"].clone(),
        pool: task["pool"].clone(),
        pool_slots: task["pool_slots"].as_f64(),
        execution_timeout: time_delta(task["execution_timeout"].as_f64()),
        retry_delay: time_delta(task["retry_delay"].as_f64()),
        retry_exponential_backoff: if task["retry_exponential_backoff"].as_bool() == Some(true) {
            2.0
        } else {
            0.0
        },
        priority_weight: task["priority_weight"].as_f64(),
        weight_rule: match task["weight_rule"].as_str() {
            Some("upstream") => "upstream",
            Some("absolute") => "absolute",
            // dag.json leaves Airflow's default out.
            _ => "downstream",
        },
        ui_color: look.ui_color,
        ui_fgcolor: look.ui_fgcolor,
        template_fields: look.template_fields,
        downstream_task_ids: downstream.iter().map(|d| (*d).to_owned()).collect(),
        doc_md: task["doc_md"].clone(),
        operator_name: written.to_owned(),
        params: task.get("params").cloned().unwrap_or(json!({})),
        class_ref: ClassRef {
            module_path: look.module,
            class_name: class.to_owned(),
        },
        is_mapped: runs_mapped(task),
        extra_links: Vec::new(),
    }
}

/// Whether a task of dag.json runs once per map index: a mapped task, or a task of a mapped
/// task group.
pub(crate) fn runs_mapped(task: &Value) -> bool {
    !task["mapped"].is_null() || !task["mapped_group"].is_null()
}

/// Each task's downstream tasks, from their `upstream` lists.
pub fn downstream_of(document: &Value) -> HashMap<String, Vec<&str>> {
    let mut downstream: HashMap<String, Vec<&str>> = HashMap::new();
    for task in document["tasks"].as_array().into_iter().flatten() {
        let id = task["task_id"].as_str().unwrap_or("");
        downstream.entry(id.to_owned()).or_default();
        for up in task["upstream"].as_array().into_iter().flatten() {
            if let Some(up) = up.as_str() {
                downstream.entry(up.to_owned()).or_default().push(id);
            }
        }
    }
    for list in downstream.values_mut() {
        list.sort_unstable();
    }
    downstream
}

/// `GET /api/v2/dags/{dag_id}/tasks` (of the latest version).
pub async fn get_tasks(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<Json<TaskCollection>> {
    let dag = load_dag(&state, &dag_id).await?;
    let doc = document(&state, &dag_id, &dag.latest_version_hash).await?;
    let downstream = downstream_of(&doc);
    let mut tasks: Vec<TaskResponse> = doc["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let id = t["task_id"].as_str().unwrap_or("");
            task_response(t, &downstream[id], &doc)
        })
        .collect();
    let order = params.str("order_by").unwrap_or("task_id");
    let (field, descending) = match order.strip_prefix('-') {
        Some(f) => (f, true),
        None => (order, false),
    };
    if !matches!(
        field,
        "task_id" | "task_display_name" | "operator_name" | "priority_weight" | "retries"
    ) {
        return Err(ApiError::bad_request(format!(
            "Ordering with '{field}' is disallowed or the attribute does not exist on the model"
        )));
    }
    tasks.sort_by(|a, b| {
        let ordering = a.compare(b, field);
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    Ok(Json(TaskCollection {
        total_entries: tasks.len(),
        tasks,
    }))
}

/// `GET /api/v2/dags/{dag_id}/tasks/{task_id}`.
pub async fn get_task(
    State(state): State<ApiState>,
    Path((dag_id, task_id)): Path<(String, String)>,
) -> ApiResult<Json<TaskResponse>> {
    let dag = load_dag(&state, &dag_id).await?;
    let doc = document(&state, &dag_id, &dag.latest_version_hash).await?;
    let tasks = tasks_by_id(&doc);
    let task = tasks
        .get(task_id.as_str())
        .ok_or_else(|| ApiError::not_found(format!("Task with id {task_id} not found")))?;
    let downstream = downstream_of(&doc);
    Ok(Json(task_response(
        task,
        &downstream[task_id.as_str()],
        &doc,
    )))
}

/// Version `number` of a DAG (its newest when `None`), or Airflow's 404.
async fn version(state: &ApiState, dag_id: &str, number: Option<i32>) -> ApiResult<VersionRecord> {
    match number {
        Some(number) => load_version(state, dag_id, number).await,
        None => read::dag_versions::latest(state.store.pool(), dag_id)
            .await?
            .ok_or_else(|| crate::v2::models::dag_not_found(dag_id)),
    }
}

/// Airflow's `DAGSourceResponse`.
#[derive(Debug, Serialize)]
pub struct DagSource {
    pub content: Option<String>,
    pub dag_id: String,
    pub version_number: i32,
    pub dag_display_name: String,
}

/// `GET /api/v2/dagSources/{dag_id}?version_number=`: the DAG file of a version, as JSON, or
/// as plain text when the client accepts only that.
pub async fn get_source(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    params: Params,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let number = params.int("version_number")?.map(|n| n as i32);
    let version = version(&state, &dag_id, number).await?;
    let content = match &version.source_hash {
        Some(hash) => state.store.get_blob(hash).await?.map(|b| b.content),
        None => None,
    };
    let wants_text = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.starts_with("text/plain"));
    if wants_text {
        return Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            content.unwrap_or_default(),
        )
            .into_response());
    }
    Ok(Json(DagSource {
        content,
        dag_display_name: dag_id.clone(),
        dag_id,
        version_number: version.version_number,
    })
    .into_response())
}

/// `GET /api/v2/dags/{dag_id}/dagVersions`.
pub async fn get_versions(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    dags: crate::dag_access::DagScope,
    params: Params,
) -> ApiResult<Json<DagVersionCollection>> {
    let page = params.page()?;
    let order = params.order_by(
        &[
            ("id", dag_version::ID),
            ("version_number", dag_version::VERSION_NUMBER),
            ("bundle_name", dag_version::BUNDLE_NAME),
            ("bundle_version", dag_version::BUNDLE_NAME),
            ("created_at", dag_version::CREATED_AT),
        ],
        "id",
        dag_version::VERSION_NUMBER,
    )?;
    let dag_filter = if dag_id == "~" {
        None
    } else {
        Some(dag_id.clone())
    };
    if let Some(dag_id) = &dag_filter {
        load_dag(&state, dag_id).await?;
    }
    let pool = state.store.pool();
    let mut scope = crate::query::Conditions::new();
    dags.restrict(&mut scope, read::dag_versions::DAG_ID);
    let (versions, total) =
        read::dag_versions::page(pool, dag_filter.as_deref(), &scope, &order, page.window())
            .await?;
    Ok(Json(DagVersionCollection {
        dag_versions: versions.iter().map(DagVersionResponse::from).collect(),
        total_entries: total,
    }))
}

/// Airflow's `DAGVersionCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagVersionCollection {
    /// The page.
    pub dag_versions: Vec<DagVersionResponse>,
    /// Versions in all.
    pub total_entries: i64,
}

/// `GET /api/v2/dags/{dag_id}/dagVersions/{version_number}`.
pub async fn get_version(
    State(state): State<ApiState>,
    Path((dag_id, number)): Path<(String, String)>,
) -> ApiResult<Json<DagVersionResponse>> {
    let number = crate::query::path_int("version_number", &number)?;
    let version = load_version(&state, &dag_id, number).await?;
    Ok(Json(DagVersionResponse::from(&version)))
}
