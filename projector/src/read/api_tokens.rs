//! `api_token`: the API tokens issued for machines, looked up by id when one is presented and
//! listed for `leoflow tokens list`.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

/// An `api_token` row.
#[derive(Debug, Clone, FromRow)]
pub struct ApiTokenRecord {
    /// Its id.
    pub token_id: String,
    /// The role its bearer acts with.
    pub role: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// The custom roles its bearer also holds: each reaches the DAGs whose `access_control`
    /// names it.
    pub dag_roles: Vec<String>,
    /// SHA-256 of its secret, hex.
    pub digest: String,
    /// What it is for.
    pub description: Option<String>,
    /// Who issued it.
    pub created_by: Option<String>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "token_id, role, tenant, dag_roles, digest, description, created_by, \
    created_at, expires_at, revoked_at";

/// The token `token_id`, if it was issued.
pub async fn find(pool: &PgPool, token_id: &str) -> sqlx::Result<Option<ApiTokenRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_token WHERE token_id = $1"
    )))
    .bind(token_id)
    .fetch_optional(pool)
    .await
}

/// Every token issued, newest first.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<ApiTokenRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM api_token ORDER BY created_at DESC, token_id"
    )))
    .fetch_all(pool)
    .await
}
