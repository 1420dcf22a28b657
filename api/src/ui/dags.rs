//! The DAGs list of the UI (`/ui/dags`, with each DAG's latest runs), a DAG's latest run, and
//! the home page's dashboard counts.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;

use crate::auth::User;
use crate::error::ApiResult;
use crate::query::Params;
use crate::state::ApiState;
use crate::v2::dags::{latest_runs, list_dags, merge, next_runs};
use crate::v2::models::{RUN_COLUMNS, RunRecord, load_dag};

/// `GET /ui/dags`: the DAGs list, each with its `dag_runs_limit` latest runs.
pub async fn dags(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    params: Params,
) -> ApiResult<Json<Value>> {
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
    let list: Vec<Value> = dags
        .iter()
        .map(|dag| {
            let mut body = dag.json(next.get(&dag.dag_id));
            let runs: Vec<Value> = latest
                .get(&dag.dag_id)
                .map(|runs| runs.iter().map(RunRecord::light_json).collect())
                .unwrap_or_default();
            merge(
                &mut body,
                json!({
                    "asset_expression": null,
                    "latest_dag_runs": runs,
                    "pending_actions": [],
                    "is_favorite": favorites.contains(&dag.dag_id),
                }),
            );
            body
        })
        .collect();
    Ok(Json(json!({"total_entries": total, "dags": list})))
}

/// `GET /ui/dags/{dag_id}/latest_run`: the newest run, or `null`.
pub async fn latest_run(
    State(state): State<ApiState>,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    load_dag(&state, &dag_id).await?;
    let run: Option<RunRecord> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 ORDER BY r.run_after DESC LIMIT 1"
    )))
    .bind(&dag_id)
    .fetch_optional(state.store.pool())
    .await?;
    Ok(Json(
        run.as_ref().map_or(Value::Null, RunRecord::light_json),
    ))
}

/// `GET /ui/dashboard/dag_stats`: DAGs that are active (unpaused), and those whose latest run
/// failed, runs or waits.
pub async fn dag_stats(State(state): State<ApiState>) -> ApiResult<Json<Value>> {
    let (active, failed, running, queued): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT d.is_paused), \
                count(*) FILTER (WHERE lr.state = 'failed'), \
                count(*) FILTER (WHERE lr.state = 'running'), \
                count(*) FILTER (WHERE lr.state = 'queued') \
         FROM dag d LEFT JOIN LATERAL (SELECT state FROM dag_run r WHERE r.dag_id = d.dag_id \
           ORDER BY r.run_after DESC LIMIT 1) lr ON true WHERE NOT d.is_stale",
    )
    .fetch_one(state.store.pool())
    .await?;
    Ok(Json(json!({
        "active_dag_count": active,
        "failed_dag_count": failed,
        "running_dag_count": running,
        "queued_dag_count": queued,
    })))
}

/// `GET /ui/dashboard/historical_metrics_data?start_date=…&end_date=…`: run and task-instance
/// counts by state for runs after `start_date` (and before `end_date`).
pub async fn historical_metrics(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<Value>> {
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
    let mut ti_states = serde_json::Map::new();
    ti_states.insert("no_status".into(), json!(ti_count(None)));
    for s in crate::v2::task_instances::TI_STATES {
        ti_states.insert(s.into(), json!(ti_count(Some(s))));
    }
    Ok(Json(json!({
        "dag_run_states": {
            "queued": run_count("queued"),
            "running": run_count("running"),
            "success": run_count("success"),
            "failed": run_count("failed"),
        },
        "task_instance_states": ti_states,
        "state_count_limit": 1000,
    })))
}
