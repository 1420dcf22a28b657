//! `import_error`: the DAG files that failed to compile.

use sqlx::PgPool;

/// The error recorded for a DAG file, if it has one.
pub async fn stacktrace(pool: &PgPool, fileloc: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT stacktrace FROM import_error WHERE filename = $1")
        .bind(fileloc)
        .fetch_optional(pool)
        .await
}

/// Whether a DAG file has an import error recorded.
pub async fn exists(pool: &PgPool, fileloc: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM import_error WHERE filename = $1)")
        .bind(fileloc)
        .fetch_one(pool)
        .await
}
