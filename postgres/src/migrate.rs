//! The schema: sqlx migrations embedded in the binary.

use std::collections::BTreeSet;

use sqlx::PgPool;
use sqlx::migrate::Migrator;

/// Every migration in `migrations/`, embedded at build time.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call (empty: the schema was already current).
    pub applied: Vec<i64>,
    /// The schema version now.
    pub schema_version: i64,
}

/// Why the schema could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer Leoflow.
    #[error(
        "this database's schema is at version {found}, newer than this Leoflow knows ({known}); \
         nothing was changed. Upgrade leoflow, or point it at another database."
    )]
    NewerSchema {
        /// The newest applied version.
        found: i64,
        /// The newest version this binary has.
        known: i64,
    },
    /// A migration failed (it was rolled back).
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Postgres failed.
    #[error("migrating the database failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applied migration versions (empty for a database never migrated).
pub async fn applied_versions(pool: &PgPool) -> Result<BTreeSet<i64>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(BTreeSet::new());
    }
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM public._sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await?;
    Ok(versions.into_iter().collect())
}

/// Applies the migrations this database lacks, refusing one a newer Leoflow migrated.
pub async fn migrate(pool: &PgPool) -> Result<MigrationReport, MigrateError> {
    let known: BTreeSet<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let before = applied_versions(pool).await?;
    if let Some(&found) = before.iter().rev().find(|v| !known.contains(v)) {
        return Err(MigrateError::NewerSchema {
            found,
            known: latest_version(),
        });
    }
    MIGRATOR.run(pool).await?;
    let after = applied_versions(pool).await?;
    Ok(MigrationReport {
        applied: after.difference(&before).copied().collect(),
        schema_version: after.last().copied().unwrap_or(0),
    })
}

/// Drops everything in the database (the log included) and migrates from scratch.
pub async fn reset(pool: &PgPool) -> Result<MigrationReport, MigrateError> {
    let schemas: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace \
         WHERE nspname = 'public' OR nspname LIKE 'leoflow\\_%'",
    )
    .fetch_all(pool)
    .await?;
    let mut tx = pool.begin().await?;
    for schema in schemas {
        let sql = format!(
            "DROP SCHEMA {} CASCADE",
            crate::cluster::quote_ident(&schema)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("CREATE SCHEMA public")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    migrate(pool).await
}
