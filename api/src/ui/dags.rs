//! The DAGs list of the UI (`/ui/dags`, with each DAG's latest runs), a DAG's latest run, and
//! the home page's dashboard counts.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use std::collections::BTreeMap;

use leoflow_core::run::RunStatus;
use leoflow_projector::read;
use serde::Serialize;
use serde_json::Value;

use crate::auth::User;
use crate::dag_access::DagScope;
use crate::error::ApiResult;
use crate::query::Conditions;
use crate::query::Params;
use crate::state::ApiState;
use crate::states::{run_state_names, ti_state_names};
use crate::v2::dags::{asset_expressions, latest_runs, list_dags, next_runs};
use crate::v2::models::{DagResponse, DagRunLightResponse, load_dag};

/// A DAG of the UI's list (Airflow's `DAGWithLatestDagRunsResponse`).
#[derive(Debug, Clone, Serialize)]
pub struct DagWithLatestRuns {
    #[serde(flatten)]
    pub dag: DagResponse,
    pub asset_expression: Option<Value>,
    pub latest_dag_runs: Vec<DagRunLightResponse>,
    pub pending_actions: Vec<Value>,
    pub is_favorite: bool,
}

/// Airflow's `DAGWithLatestDagRunsCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagsWithLatestRuns {
    pub total_entries: i64,
    pub dags: Vec<DagWithLatestRuns>,
}

/// Airflow's `DashboardDagStatsResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DashboardDagStats {
    pub active_dag_count: i64,
    pub failed_dag_count: i64,
    pub running_dag_count: i64,
    pub queued_dag_count: i64,
}

impl From<read::stats::DagCounts> for DashboardDagStats {
    fn from(counts: read::stats::DagCounts) -> Self {
        Self {
            active_dag_count: counts.active,
            failed_dag_count: counts.failed,
            running_dag_count: counts.running,
            queued_dag_count: counts.queued,
        }
    }
}

/// Airflow's `HistoricalMetricDataResponse`: runs by state, task instances by state
/// (`no_status` for those not scheduled yet).
#[derive(Debug, Clone, Serialize)]
pub struct HistoricalMetrics {
    pub dag_run_states: BTreeMap<&'static str, i64>,
    pub task_instance_states: BTreeMap<&'static str, i64>,
    pub state_count_limit: i64,
}

/// `GET /ui/dags`: the DAGs list, each with its `dag_runs_limit` latest runs.
pub async fn dags(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<DagsWithLatestRuns>> {
    let runs_limit = params.int("dag_runs_limit")?.unwrap_or(10).clamp(0, 100);
    let (dags, total) = list_dags(&state, &params, Some(&user.username), &scope).await?;
    let ids: Vec<String> = dags.iter().map(|d| d.dag_id.clone()).collect();
    let latest = latest_runs(&state, &ids, runs_limit).await?;
    let favorites = read::favorites::among(state.store.pool(), &user.username, &ids).await?;
    let next = next_runs(&state, &dags).await?;
    let expressions = asset_expressions(&state, &dags).await?;
    let dags = dags
        .iter()
        .map(|dag| DagWithLatestRuns {
            dag: DagResponse::new(dag, next.get(&dag.dag_id)),
            asset_expression: expressions.get(&dag.dag_id).cloned(),
            latest_dag_runs: latest
                .get(&dag.dag_id)
                .map(|runs| runs.iter().map(DagRunLightResponse::from).collect())
                .unwrap_or_default(),
            pending_actions: Vec::new(),
            is_favorite: favorites.contains(&dag.dag_id),
        })
        .collect();
    Ok(Json(DagsWithLatestRuns {
        total_entries: total,
        dags,
    }))
}

/// `GET /ui/dags/{dag_id}/latest_run`: the newest run, or `null`.
pub async fn latest_run(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Option<DagRunLightResponse>>> {
    load_dag(&state, &dag_id).await?;
    let run = read::runs::latest(state.store.pool(), &dag_id).await?;
    Ok(Json(run.as_ref().map(DagRunLightResponse::from)))
}

/// `GET /ui/dashboard/dag_stats`: DAGs that are active (unpaused), and those whose latest run
/// failed, runs or waits.
pub async fn dag_stats(
    State(state): State<ApiState>,
    scope: DagScope,
) -> ApiResult<Json<DashboardDagStats>> {
    let mut dags = Conditions::new();
    scope.restrict(&mut dags, read::dags::columns::DAG_ID);
    let states =
        [RunStatus::Failed, RunStatus::Running, RunStatus::Queued].map(RunStatus::airflow_name);
    let counts = read::stats::dag_counts(state.store.pool(), states, &dags).await?;
    Ok(Json(DashboardDagStats::from(counts)))
}

/// `GET /ui/dashboard/historical_metrics_data?start_date=…&end_date=…`: run and task-instance
/// counts by state for runs after `start_date` (and before `end_date`).
pub async fn historical_metrics(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<HistoricalMetrics>> {
    // Unbounded when not given (a time before Postgres's first would fail the query).
    let start = params.datetime("start_date")?;
    let end = params.datetime("end_date")?;
    let pool = state.store.pool();
    let mut runs = Conditions::new();
    scope.restrict(&mut runs, read::runs::columns::DAG_ID);
    let tis = read::stats::task_instances_by_state(pool, start, end, &runs).await?;
    let runs = read::stats::runs_by_state(pool, start, end, &runs).await?;
    let run_count = |s: &str| runs.iter().find(|(k, _)| k == s).map_or(0, |r| r.1);
    let ti_count = |s: Option<&str>| {
        tis.iter()
            .find(|(k, _)| k.as_deref() == s)
            .map_or(0, |r| r.1)
    };
    let mut task_instance_states = BTreeMap::from([("no_status", ti_count(None))]);
    for s in ti_state_names() {
        task_instance_states.insert(s, ti_count(Some(s)));
    }
    Ok(Json(HistoricalMetrics {
        dag_run_states: run_state_names()
            .into_iter()
            .map(|s| (s, run_count(s)))
            .collect(),
        task_instance_states,
        state_count_limit: 1000,
    }))
}
