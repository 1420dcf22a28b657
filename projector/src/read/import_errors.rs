//! `import_error`: the DAG files that failed to compile.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

use super::filter::Conditions;
use super::page::{ListQuery, Window, fetch_page};

/// The file relative to its bundle (Leoflow records `<bundle>/dag.py`), as Airflow 3 shows it.
macro_rules! relative_filename {
    () => {
        "CASE WHEN starts_with(i.filename, i.bundle_name || '/') \
         THEN substr(i.filename, length(i.bundle_name) + 2) ELSE i.filename END"
    };
}

/// The columns a list of import errors filters and orders by.
pub mod columns {
    /// The id.
    pub const ID: &str = "i.id";
    /// The file relative to its bundle.
    pub const FILENAME: &str = relative_filename!();
    /// When the error was recorded.
    pub const TIMESTAMP: &str = "i.timestamp";
    /// The bundle.
    pub const BUNDLE_NAME: &str = "i.bundle_name";
    /// The error.
    pub const STACKTRACE: &str = "i.stacktrace";
    /// The tenant its project was registered into.
    pub const TENANT: &str = "i.tenant";
}

/// An `import_error` row, its file relative to its bundle.
#[derive(Debug, Clone, FromRow)]
pub struct ImportErrorRow {
    /// The id.
    pub id: i64,
    /// The file relative to its bundle.
    pub filename: String,
    /// The bundle.
    pub bundle_name: String,
    /// The error.
    pub stacktrace: String,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
    /// The tenant its project was registered into.
    pub tenant: String,
}

macro_rules! select_import_errors {
    ($tail:literal) => {
        concat!(
            "SELECT i.id, ",
            relative_filename!(),
            " AS filename, i.bundle_name, i.stacktrace, i.timestamp, i.tenant FROM import_error i",
            $tail
        )
    };
}

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

/// Import error `id`, if it exists.
pub async fn by_id(pool: &PgPool, id: i64) -> sqlx::Result<Option<ImportErrorRow>> {
    sqlx::query_as(select_import_errors!(" WHERE i.id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// The import errors under `conditions` in `window`, in `order` (expressions of [`columns`]), and
/// how many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<ImportErrorRow>, i64)> {
    let list = ListQuery {
        select: select_import_errors!(""),
        count_from: "FROM import_error i",
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}
