//! `dag_favorite`: the DAGs each user starred.

use sqlx::PgPool;

/// Whether `username` starred `dag_id`.
pub async fn is_favorite(pool: &PgPool, dag_id: &str, username: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dag_favorite WHERE dag_id = $1 AND username = $2)",
    )
    .bind(dag_id)
    .bind(username)
    .fetch_one(pool)
    .await
}

/// Those of `dag_ids` that `username` starred.
pub async fn among(pool: &PgPool, username: &str, dag_ids: &[String]) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT dag_id FROM dag_favorite WHERE username = $1 AND dag_id = ANY($2)")
        .bind(username)
        .bind(dag_ids)
        .fetch_all(pool)
        .await
}

/// Whether `username` starred `dag_id`, or `None` when there is no such DAG (one query, so
/// the answer is about a DAG that existed when read).
pub async fn of_existing_dag(
    pool: &PgPool,
    dag_id: &str,
    username: &str,
) -> sqlx::Result<Option<bool>> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dag_favorite WHERE dag_id = d.dag_id AND username = $2) \
         FROM dag d WHERE d.dag_id = $1",
    )
    .bind(dag_id)
    .bind(username)
    .fetch_optional(pool)
    .await
}
