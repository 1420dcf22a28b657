//! What the metrics endpoint reads at scrape time: DAGs by paused, and the runs and task
//! instances still in progress by state. Finished ones are never counted here (a scrape must
//! cost the same after ten runs or ten million): the scheduler counts them as they finish.

use leoflow_core::run::{RunStatus, TiState};
use sqlx::PgPool;

/// The DAGs not stale, counted by whether they are paused, as `(is_paused, count)` (one row
/// per DAG: the table grows with DAGs, not with runs).
pub async fn dags_by_paused(pool: &PgPool) -> sqlx::Result<Vec<(bool, i64)>> {
    sqlx::query_as("SELECT is_paused, count(*) FROM dag WHERE NOT is_stale GROUP BY 1")
        .fetch_all(pool)
        .await
}

/// The unfinished dag runs counted by state, as `(state, count)` (the state index reads only
/// them).
pub async fn unfinished_runs_by_state(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    let states: Vec<&str> = RunStatus::ALL
        .into_iter()
        .filter(|s| !s.is_finished())
        .map(RunStatus::airflow_name)
        .collect();
    sqlx::query_as("SELECT state, count(*) FROM dag_run WHERE state = ANY($1) GROUP BY 1")
        .bind(states)
        .fetch_all(pool)
        .await
}

/// The task instances scheduled, queued, running or waiting to retry, counted by state, as
/// `(state, count)` (the state index reads only them).
pub async fn active_task_instances_by_state(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    let states: Vec<&str> = TiState::ALL
        .into_iter()
        .filter(|s| !s.is_final())
        .filter_map(TiState::stored_name)
        .collect();
    sqlx::query_as("SELECT state, count(*) FROM task_instance WHERE state = ANY($1) GROUP BY 1")
        .bind(states)
        .fetch_all(pool)
        .await
}

/// Each projection's checkpoint, as `(projection, position)`: the last event it applied (the
/// scrape's projection lag is the log's head minus it).
pub async fn projection_positions(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT projection, position FROM projection_checkpoints ORDER BY 1")
        .fetch_all(pool)
        .await
}
