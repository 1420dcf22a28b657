//! The DAG page's views: the grid (runs, structure, per-run task summaries as NDJSON), the
//! graph (`structure_data`), the Gantt chart and the calendar.

use std::collections::{BTreeMap, HashMap, HashSet};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use leoflow_projector::read;
use leoflow_projector::read::grid::SummaryRow;
use leoflow_projector::read::runs::columns as run;
use leoflow_projector::read::stats::Granularity;
use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params};
use crate::state::ApiState;
use crate::states::{run_state_names, summary_precedence};
use crate::v2::dag_versions::runs_mapped;
use crate::v2::models::{
    DagVersionResponse, RunRecord, document, duration, load_dag, load_run, load_version,
    versions_by_hash,
};

/// The runs the grid shows: its filters, newest first by default.
async fn grid_runs_of(
    state: &ApiState,
    dag_id: &str,
    params: &Params,
) -> ApiResult<Vec<RunRecord>> {
    let page = params.page()?;
    let mut c = Conditions::new();
    c.eq(run::DAG_ID, Bind::Text(dag_id.to_owned()));
    c.time_range(params, "run_after", run::RUN_AFTER)?;
    c.any_of(params, "run_type", run::RUN_TYPE, None)?;
    c.any_of(params, "state", run::STATE, Some(&run_state_names()))?;
    if let Some(user) = params.str("triggering_user").filter(|u| !u.is_empty()) {
        c.push(
            &format!("{} ILIKE {{}}", run::TRIGGERING_USER_NAME),
            vec![Bind::Text(user.to_owned())],
        );
    }
    if let Some(prefix) = params
        .str("triggering_user_prefix")
        .filter(|u| !u.is_empty())
    {
        c.push(
            &format!("starts_with({}, {{}})", run::TRIGGERING_USER_NAME),
            vec![Bind::Text(prefix.to_owned())],
        );
    }
    let order = params.order_by(
        &[
            ("id", run::ID),
            ("run_after", run::RUN_AFTER),
            ("logical_date", run::LOGICAL_DATE),
            ("start_date", run::START_DATE),
            ("end_date", run::END_DATE),
            ("state", run::STATE),
        ],
        "id",
        run::ID,
    )?;
    Ok(read::runs::rows(state.store.pool(), &c, &order, page.window()).await?)
}

/// A run of the grid (Airflow's `GridRunsResponse`).
#[derive(Debug, Clone, Serialize)]
pub struct GridRun {
    pub dag_id: String,
    pub run_id: String,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub state: String,
    pub run_type: String,
    pub dag_versions: Vec<DagVersionResponse>,
    pub has_missed_deadline: bool,
    /// Seconds; a running run's up to now, as Airflow reports it.
    pub duration: f64,
}

/// `GET /ui/grid/runs/{dag_id}`.
pub async fn runs(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<Json<Vec<GridRun>>> {
    load_dag(&state, &dag_id).await?;
    let runs = grid_runs_of(&state, &dag_id, &params).await?;
    let versions = versions_by_hash(&state, std::slice::from_ref(&dag_id)).await?;
    let list = runs
        .into_iter()
        .map(|run| {
            let version = run
                .dag_version_hash
                .as_ref()
                .and_then(|h| versions.get(&(run.dag_id.clone(), h.clone())));
            GridRun {
                dag_versions: version.map(DagVersionResponse::from).into_iter().collect(),
                has_missed_deadline: false,
                duration: duration(run.start_date, run.end_date.or(Some(Utc::now())))
                    .unwrap_or(0.0),
                dag_id: run.dag_id,
                run_id: run.run_id,
                queued_at: run.queued_at,
                start_date: run.start_date,
                end_date: run.end_date,
                run_after: run.run_after,
                state: run.state,
                run_type: run.run_type,
            }
        })
        .collect();
    Ok(Json(list))
}

/// A DAG version's task groups and tasks as a tree: (group id → its members), in file order.
struct Tree<'a> {
    tasks: Vec<&'a Value>,
    groups: Vec<&'a Value>,
}

impl<'a> Tree<'a> {
    fn of(document: &'a Value) -> Self {
        Self {
            tasks: topological(
                document["tasks"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or(&[]),
            ),
            groups: document["task_groups"]
                .as_array()
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// The nodes directly in `parent` (`None`: the DAG's top level), built with `node` for
    /// tasks and `group` for groups (given their children).
    fn nodes<T>(
        &self,
        parent: Option<&str>,
        node: &impl Fn(&Value) -> T,
        group: &impl Fn(&Value, Vec<T>) -> T,
    ) -> Vec<T> {
        let mut out = Vec::new();
        for g in &self.groups {
            if g["parent"].as_str() == parent {
                let id = g["group_id"].as_str().unwrap_or("");
                out.push(group(g, self.nodes(Some(id), node, group)));
            }
        }
        for t in &self.tasks {
            if t["group"].as_str() == parent {
                out.push(node(t));
            }
        }
        out
    }
}

/// Tasks upstream first (ties by task id), the order Airflow's views list them in.
fn topological(tasks: &[Value]) -> Vec<&Value> {
    let mut placed: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut order = Vec::with_capacity(tasks.len());
    while order.len() < tasks.len() {
        let ready = tasks.iter().find(|t| {
            let id = t["task_id"].as_str().unwrap_or("");
            !placed.contains(id)
                && t["upstream"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|u| u.as_str().is_none_or(|u| placed.contains(u)))
        });
        // A cycle cannot compile; should one appear, the rest keeps the document's order.
        let Some(task) = ready.or_else(|| {
            tasks
                .iter()
                .find(|t| !placed.contains(t["task_id"].as_str().unwrap_or("")))
        }) else {
            break;
        };
        placed.insert(task["task_id"].as_str().unwrap_or(""));
        order.push(task);
    }
    order
}

fn label_of(id: &str) -> &str {
    id.rsplit('.').next().unwrap_or(id)
}

/// `setup` or `teardown` for such a task of dag.json, as Airflow's graph and grid mark them.
fn setup_teardown_type(task: &Value) -> Option<String> {
    if task["is_setup"] == true {
        Some("setup".to_owned())
    } else if task["is_teardown"] == true {
        Some("teardown".to_owned())
    } else {
        None
    }
}

/// A node of the grid's task tree (Airflow's `GridNodeResponse`): a task, or a group with
/// its children.
#[derive(Debug, Serialize)]
pub struct GridNode {
    /// The task or group id.
    pub id: String,
    /// Its last segment.
    pub label: String,
    /// A group's members (a task has no such field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<GridNode>>,
    /// `true` for a mapped task, else `null`.
    pub is_mapped: Option<bool>,
    /// `setup` or `teardown` for such a task.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_teardown_type: Option<String>,
}

/// A node of the graph view (Airflow's `NodeResponse`).
#[derive(Debug, Serialize)]
pub struct GraphNode {
    pub id: String,
    pub label: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub children: Option<Vec<GraphNode>>,
    pub is_mapped: Option<bool>,
    pub tooltip: Option<String>,
    pub setup_teardown_type: Option<String>,
    pub operator: Value,
    pub asset_condition_type: Option<String>,
}

/// An edge of the graph view (Airflow's `EdgeResponse`).
#[derive(Debug, Serialize)]
pub struct GraphEdge {
    pub source_id: String,
    pub target_id: String,
    pub is_setup_teardown: Option<bool>,
    pub label: Option<String>,
    pub is_source_asset: Option<bool>,
}

/// The graph view's nodes and edges (Airflow's `StructureDataResponse`).
#[derive(Debug, Default, Serialize)]
pub struct Graph {
    /// The edges.
    pub edges: Vec<GraphEdge>,
    /// The nodes.
    pub nodes: Vec<GraphNode>,
}

/// `true` for a mapped task, else `null`, as Airflow's views say it.
fn mapped(task: &Value) -> Option<bool> {
    runs_mapped(task).then_some(true)
}

/// `GET /ui/grid/structure/{dag_id}`: the task tree of the latest version.
pub async fn structure(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<Json<Vec<GridNode>>> {
    let dag = load_dag(&state, &dag_id).await?;
    params.page()?;
    let doc = document(&state, &dag_id, &dag.latest_version_hash).await?;
    let tree = Tree::of(&doc);
    let nodes = tree.nodes(
        None,
        &|t| {
            let id = t["task_id"].as_str().unwrap_or("");
            GridNode {
                id: id.to_owned(),
                label: label_of(id).to_owned(),
                children: None,
                is_mapped: mapped(t),
                setup_teardown_type: setup_teardown_type(t),
            }
        },
        &|g, children| {
            let id = g["group_id"].as_str().unwrap_or("");
            GridNode {
                id: id.to_owned(),
                label: label_of(id).to_owned(),
                children: Some(children),
                is_mapped: (!g["mapped"].is_null()).then_some(true),
                setup_teardown_type: None,
            }
        },
    );
    Ok(Json(nodes))
}

/// `GET /ui/structure/structure_data?dag_id=…&version_number=…&external_dependencies=…`: the
/// graph view's nodes and edges; with `external_dependencies=true`, also the assets, aliases and
/// condition gates around the DAG (see [`super::external`]).
pub async fn structure_data(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<Graph>> {
    let dag_id = params
        .str("dag_id")
        .ok_or_else(|| {
            ApiError::invalid(
                &["query", "dag_id"],
                "missing",
                "Field required",
                Value::Null,
            )
        })?
        .to_owned();
    let external = params.bool("external_dependencies")?.unwrap_or(false);
    let dag = load_dag(&state, &dag_id).await?;
    let hash = match params.int("version_number")? {
        Some(number) => {
            load_version(&state, &dag_id, number as i32)
                .await?
                .version_hash
        }
        None => dag.latest_version_hash.clone(),
    };
    let doc = document(&state, &dag_id, &hash).await?;
    let tree = Tree::of(&doc);
    let nodes = tree.nodes(
        None,
        &|t| {
            let id = t["task_id"].as_str().unwrap_or("");
            let sensor = t["operator"].as_str() == Some("@task.sensor")
                || t["custom"]["sensor"].as_bool() == Some(true);
            GraphNode {
                id: id.to_owned(),
                label: label_of(id).to_owned(),
                kind: if sensor { "sensor" } else { "task" },
                children: None,
                is_mapped: mapped(t),
                tooltip: None,
                setup_teardown_type: setup_teardown_type(t),
                operator: t["operator"].clone(),
                asset_condition_type: None,
            }
        },
        &|g, children| {
            let id = g["group_id"].as_str().unwrap_or("");
            GraphNode {
                id: id.to_owned(),
                label: label_of(id).to_owned(),
                kind: "task",
                children: Some(children),
                is_mapped: (!g["mapped"].is_null()).then_some(true),
                tooltip: g["tooltip"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
                setup_teardown_type: None,
                operator: json!("TaskGroup"),
                asset_condition_type: None,
            }
        },
    );
    // Edge labels (`Label` in the DAG file), by (source, target).
    let labels: HashMap<(&str, &str), &str> = doc["edge_labels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                (e["source_id"].as_str()?, e["target_id"].as_str()?),
                e["label"].as_str()?,
            ))
        })
        .collect();
    let setups: HashSet<&str> = tree
        .tasks
        .iter()
        .filter(|t| t["is_setup"] == true)
        .filter_map(|t| t["task_id"].as_str())
        .collect();
    let mut edges = Vec::new();
    for task in &tree.tasks {
        let target = task["task_id"].as_str().unwrap_or("");
        let teardown = task["is_teardown"] == true;
        for up in task["upstream"].as_array().into_iter().flatten() {
            if let Some(source) = up.as_str() {
                edges.push(GraphEdge {
                    source_id: source.to_owned(),
                    target_id: target.to_owned(),
                    // A setup's edge to its teardown, which the graph draws dashed.
                    is_setup_teardown: (teardown && setups.contains(source)).then_some(true),
                    label: labels.get(&(source, target)).map(|l| (*l).to_owned()),
                    is_source_asset: None,
                });
            }
        }
    }
    let mut graph = Graph { edges, nodes };
    if external {
        super::external::add(&state, &dag_id, &hash, &mut graph).await?;
    }
    Ok(Json(graph))
}

/// Airflow's precedence of states when summarising several (mapped instances, groups).
fn worst(states: &BTreeMap<String, i64>) -> Option<String> {
    summary_precedence()
        .find(|s| states.contains_key(*s))
        .map(str::to_owned)
}

/// `GET /ui/grid/ti_summaries/{dag_id}?run_ids=…`: one NDJSON line per run with each task's
/// (and each group's) summarised state.
pub async fn ti_summaries(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let dag = load_dag(&state, &dag_id).await?;
    let run_ids = params.list("run_ids", None)?;
    let rows = read::grid::summaries(state.store.pool(), &dag_id, &run_ids).await?;
    let doc = document(&state, &dag_id, &dag.latest_version_hash).await?;
    let tree = Tree::of(&doc);
    // Each task's ancestors, so groups summarise their members.
    let group_of: HashMap<&str, Option<&str>> = tree
        .groups
        .iter()
        .map(|g| (g["group_id"].as_str().unwrap_or(""), g["parent"].as_str()))
        .collect();
    let mut lines = String::new();
    for run_id in &run_ids {
        let mut per_task: BTreeMap<&str, Vec<&SummaryRow>> = BTreeMap::new();
        for row in rows.iter().filter(|r| &r.run_id == run_id) {
            per_task.entry(row.task_id.as_str()).or_default().push(row);
        }
        let version_number = per_task.values().flatten().find_map(|r| r.version_number);
        let mut entries = Vec::new();
        let mut group_rows: BTreeMap<&str, Vec<&SummaryRow>> = BTreeMap::new();
        for task in &tree.tasks {
            let id = task["task_id"].as_str().unwrap_or("");
            let instances = per_task.get(id).cloned().unwrap_or_default();
            let mut parent = task["group"].as_str();
            while let Some(group) = parent {
                group_rows
                    .entry(group)
                    .or_default()
                    .extend(instances.iter().copied());
                parent = group_of.get(group).copied().flatten();
            }
            entries.push(summary(
                id,
                task["display_name"].as_str().unwrap_or(label_of(id)),
                &instances,
                runs_mapped(task),
                version_number,
            ));
        }
        for group in &tree.groups {
            let id = group["group_id"].as_str().unwrap_or("");
            let instances = group_rows.get(id).cloned().unwrap_or_default();
            entries.push(summary(id, label_of(id), &instances, true, version_number));
        }
        let line = RunSummary {
            run_id,
            dag_id: &dag_id,
            task_instances: entries,
        };
        lines.push_str(&serde_json::to_string(&line).map_err(ApiError::internal)?);
        lines.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], lines).into_response())
}

/// One NDJSON line of the grid's summaries: a run's tasks and groups.
#[derive(Debug, Serialize)]
struct RunSummary<'a> {
    run_id: &'a str,
    dag_id: &'a str,
    task_instances: Vec<TaskSummary<'a>>,
}

/// A task's (or a group's) summarised state in a run.
#[derive(Debug, Serialize)]
struct TaskSummary<'a> {
    task_id: &'a str,
    task_display_name: &'a str,
    state: Option<String>,
    /// Mapped tasks and groups show how many of their instances are in each state.
    child_states: Option<BTreeMap<String, i64>>,
    min_start_date: Option<DateTime<Utc>>,
    max_end_date: Option<DateTime<Utc>>,
    dag_version_number: Option<i32>,
}

fn summary<'a>(
    id: &'a str,
    label: &'a str,
    instances: &[&SummaryRow],
    several: bool,
    version_number: Option<i32>,
) -> TaskSummary<'a> {
    let mut states: BTreeMap<String, i64> = BTreeMap::new();
    for ti in instances {
        *states
            .entry(ti.state.clone().unwrap_or_else(|| "no_status".into()))
            .or_default() += 1;
    }
    let state = if several {
        worst(&states)
    } else {
        instances.first().and_then(|t| t.state.clone())
    };
    TaskSummary {
        task_id: id,
        task_display_name: label,
        state,
        min_start_date: instances.iter().filter_map(|t| t.start_date).min(),
        max_end_date: instances.iter().filter_map(|t| t.end_date).max(),
        child_states: several.then_some(states),
        dag_version_number: version_number,
    }
}

/// A task of the Gantt chart (Airflow's `GanttTaskInstance`).
#[derive(Debug, Serialize)]
pub struct GanttTask {
    pub task_id: String,
    pub task_display_name: String,
    pub try_number: i32,
    pub state: Option<String>,
    pub scheduled_dttm: Option<DateTime<Utc>>,
    pub queued_dttm: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub is_group: bool,
    pub is_mapped: bool,
}

/// Airflow's `GanttResponse`.
#[derive(Debug, Serialize)]
pub struct Gantt {
    pub dag_id: String,
    pub run_id: String,
    pub task_instances: Vec<GanttTask>,
}

/// `GET /ui/gantt/{dag_id}/{run_id}`.
pub async fn gantt(
    State(state): State<ApiState>,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Gantt>> {
    load_run(&state, &dag_id, &run_id).await?;
    let rows = read::grid::gantt(state.store.pool(), &dag_id, &run_id).await?;
    let task_instances = rows
        .into_iter()
        .map(|r| GanttTask {
            task_display_name: r.task_id.clone(),
            task_id: r.task_id,
            try_number: r.try_number,
            state: r.state,
            scheduled_dttm: r.scheduled_dttm,
            queued_dttm: r.queued_dttm,
            start_date: r.start_date,
            end_date: r.end_date,
            is_group: false,
            is_mapped: r.mapped,
        })
        .collect();
    Ok(Json(Gantt {
        dag_id,
        run_id,
        task_instances,
    }))
}

/// Runs of a day (or hour) in one state (Airflow's `CalendarTimeRangeResponse`).
#[derive(Debug, Serialize)]
pub struct CalendarEntry {
    pub date: DateTime<Utc>,
    pub state: String,
    pub count: i64,
}

/// Airflow's `CalendarTimeRangeCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct Calendar {
    pub total_entries: usize,
    pub dag_runs: Vec<CalendarEntry>,
}

/// `GET /ui/calendar/{dag_id}`: runs per day (or hour) and state, by logical date (run_after
/// for manual runs, which have none).
pub async fn calendar(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
    params: Params,
) -> ApiResult<Json<Calendar>> {
    load_dag(&state, &dag_id).await?;
    let granularity = match params.str("granularity").unwrap_or("daily") {
        "daily" => Granularity::Daily,
        "hourly" => Granularity::Hourly,
        other => {
            return Err(ApiError::invalid(
                &["query", "granularity"],
                "literal_error",
                "Input should be 'hourly' or 'daily'",
                json!(other),
            ));
        }
    };
    let mut c = Conditions::new();
    c.eq(run::DAG_ID, Bind::Text(dag_id));
    c.time_range(&params, "logical_date", run::LOGICAL_DATE_OR_RUN_AFTER)?;
    let rows = read::stats::calendar(state.store.pool(), granularity, &c).await?;
    let dag_runs: Vec<CalendarEntry> = rows
        .into_iter()
        .map(|(date, state, count)| CalendarEntry { date, state, count })
        .collect();
    Ok(Json(Calendar {
        total_entries: dag_runs.len(),
        dag_runs,
    }))
}
