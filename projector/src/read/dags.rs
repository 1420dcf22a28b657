//! `dag`: what the commands read of a DAG before deciding.

use sqlx::PgPool;

/// Whether a DAG is paused; `None` when there is no such DAG.
pub async fn is_paused(pool: &PgPool, dag_id: &str) -> Result<Option<bool>, sqlx::Error> {
    sqlx::query_scalar("SELECT is_paused FROM dag WHERE dag_id = $1")
        .bind(dag_id)
        .fetch_optional(pool)
        .await
}

/// The latest version hash of each of `dag_ids` that exists, as `(dag_id, version_hash)`.
pub async fn latest_versions(
    pool: &PgPool,
    dag_ids: &[String],
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as("SELECT dag_id, latest_version_hash FROM dag WHERE dag_id = ANY($1)")
        .bind(dag_ids)
        .fetch_all(pool)
        .await
}
