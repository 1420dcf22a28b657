//! What the metrics endpoint counts at scrape time: DAGs, runs and task instances by state.

use sqlx::PgPool;

/// The DAGs not stale, counted by whether they are paused, as `(is_paused, count)`.
pub async fn dags_by_paused(pool: &PgPool) -> sqlx::Result<Vec<(bool, i64)>> {
    sqlx::query_as("SELECT is_paused, count(*) FROM dag WHERE NOT is_stale GROUP BY 1")
        .fetch_all(pool)
        .await
}

/// The dag runs counted by state, as `(state, count)`.
pub async fn runs_by_state(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as("SELECT state, count(*) FROM dag_run GROUP BY 1")
        .fetch_all(pool)
        .await
}

/// The task instances counted by state (`None`: no state yet), as `(state, count)`.
pub async fn task_instances_by_state(pool: &PgPool) -> sqlx::Result<Vec<(Option<String>, i64)>> {
    sqlx::query_as("SELECT state, count(*) FROM task_instance GROUP BY 1")
        .fetch_all(pool)
        .await
}
