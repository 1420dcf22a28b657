//! `task_instance`: lookups more than one crate needs.

use sqlx::PgPool;

/// Whether a task of a run is mapped (has instances with a map index).
pub async fn is_mapped(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index >= 0)",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .fetch_one(pool)
    .await
}

/// The current try number of a task instance, if the run has it.
pub async fn try_number(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT try_number FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(pool)
    .await
}

/// How many task instances of a DAG are in one of `states`.
pub async fn count_in_states(
    pool: &PgPool,
    dag_id: &str,
    states: &[&str],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM task_instance WHERE dag_id = $1 AND state = ANY($2)")
        .bind(dag_id)
        .bind(states)
        .fetch_one(pool)
        .await
}
