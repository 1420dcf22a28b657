//! `dag_version`: the blobs a recorded DAG version points at.

use sqlx::{FromRow, PgPool};

/// The blobs of a DAG version: its compiled document and its source file.
#[derive(Debug, Clone, FromRow)]
pub struct VersionBlobs {
    /// The dag.json document's blob, when recorded.
    pub document_hash: Option<String>,
    /// The DAG file's blob, when recorded.
    pub source_hash: Option<String>,
}

/// The blobs of version `version_hash` of a DAG. A version hash can be recorded more than
/// once (a DAG re-added after a delete); the newest record wins.
pub async fn blobs(
    pool: &PgPool,
    dag_id: &str,
    version_hash: &str,
) -> Result<Option<VersionBlobs>, sqlx::Error> {
    sqlx::query_as(
        "SELECT document_hash, source_hash FROM dag_version \
         WHERE dag_id = $1 AND version_hash = $2 ORDER BY version_number DESC LIMIT 1",
    )
    .bind(dag_id)
    .bind(version_hash)
    .fetch_optional(pool)
    .await
}
