//! The DAGs list of the UI (`/ui/dags`, with each DAG's latest runs), a DAG's latest run, and
//! the home page's dashboard counts.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use leoflow_core::run::RunStatus;
use serde::Serialize;
use serde_json::Value;
use sqlx::AssertSqlSafe;

use crate::auth::User;
use crate::error::ApiResult;
use crate::query::Params;
use crate::state::ApiState;
use crate::states::{run_state_names, ti_state_names};
use crate::v2::dags::{latest_runs, list_dags, next_runs};
use crate::v2::models::{DagResponse, DagRunLightResponse, RUN_COLUMNS, RunRecord, load_dag};

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
    params: Params,
) -> ApiResult<Json<DagsWithLatestRuns>> {
    let runs_limit = params.int("dag_runs_limit")?.unwrap_or(10).clamp(0, 100);
    let (dags, total) = list_dags(&state, &params, Some(&user.username)).await?;
    let ids: Vec<String> = dags.iter().map(|d| d.dag_id.clone()).collect();
    let latest = latest_runs(&state, &ids, runs_limit).await?;
    let favorites: Vec<String> = sqlx::query_scalar(
        "SELECT dag_id FROM dag_favorite WHERE username = $1 AND dag_id = ANY($2)",
    )
    .bind(&user.username)
    .bind(&ids)
    .fetch_all(state.store.pool())
    .await?;
    let next = next_runs(&state, &dags).await?;
    let dags = dags
        .iter()
        .map(|dag| DagWithLatestRuns {
            dag: dag.response(next.get(&dag.dag_id)),
            asset_expression: None,
            latest_dag_runs: latest
                .get(&dag.dag_id)
                .map(|runs| runs.iter().map(RunRecord::light_response).collect())
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
    let run: Option<RunRecord> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 ORDER BY r.run_after DESC LIMIT 1"
    )))
    .bind(&dag_id)
    .fetch_optional(state.store.pool())
    .await?;
    Ok(Json(run.as_ref().map(RunRecord::light_response)))
}

/// `GET /ui/dashboard/dag_stats`: DAGs that are active (unpaused), and those whose latest run
/// failed, runs or waits.
pub async fn dag_stats(State(state): State<ApiState>) -> ApiResult<Json<DashboardDagStats>> {
    let (active, failed, running, queued): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT d.is_paused), \
                count(*) FILTER (WHERE lr.state = $1), \
                count(*) FILTER (WHERE lr.state = $2), \
                count(*) FILTER (WHERE lr.state = $3) \
         FROM dag d LEFT JOIN LATERAL (SELECT state FROM dag_run r WHERE r.dag_id = d.dag_id \
           ORDER BY r.run_after DESC LIMIT 1) lr ON true WHERE NOT d.is_stale",
    )
    .bind(RunStatus::Failed.airflow_name())
    .bind(RunStatus::Running.airflow_name())
    .bind(RunStatus::Queued.airflow_name())
    .fetch_one(state.store.pool())
    .await?;
    Ok(Json(DashboardDagStats {
        active_dag_count: active,
        failed_dag_count: failed,
        running_dag_count: running,
        queued_dag_count: queued,
    }))
}

/// `GET /ui/dashboard/historical_metrics_data?start_date=…&end_date=…`: run and task-instance
/// counts by state for runs after `start_date` (and before `end_date`).
pub async fn historical_metrics(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<HistoricalMetrics>> {
    let start: DateTime<Utc> = params
        .datetime("start_date")?
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let end: DateTime<Utc> = params
        .datetime("end_date")?
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let runs: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, count(*) FROM dag_run WHERE run_after >= $1 AND run_after <= $2 GROUP BY state",
    )
    .bind(start)
    .bind(end)
    .fetch_all(state.store.pool())
    .await?;
    let tis: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT t.state, count(*) FROM task_instance t JOIN dag_run r \
         ON r.dag_id = t.dag_id AND r.run_id = t.run_id \
         WHERE r.run_after >= $1 AND r.run_after <= $2 GROUP BY t.state",
    )
    .bind(start)
    .bind(end)
    .fetch_all(state.store.pool())
    .await?;
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
