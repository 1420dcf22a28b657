//! Import errors (`/api/v2/importErrors`): the DAG files that failed to parse, from the
//! `import_error` read model (a `DagImportFailed` records one; the file parsing again clears
//! it). As in Airflow 3, `filename` is relative to its bundle.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{AssertSqlSafe, FromRow};

use crate::error::{ApiError, ApiResult};
use crate::query::{Conditions, ParamFilters, Params};
use crate::read::page::{count_rows, page_rows};
use crate::state::ApiState;

/// The file relative to its bundle (Leoflow records `<bundle>/dag.py`).
const FILENAME: &str = "CASE WHEN starts_with(i.filename, i.bundle_name || '/') \
    THEN substr(i.filename, length(i.bundle_name) + 2) ELSE i.filename END";

/// An `import_error` row.
#[derive(Debug, FromRow)]
struct ImportErrorRow {
    id: i64,
    filename: String,
    bundle_name: String,
    stacktrace: String,
    timestamp: DateTime<Utc>,
}

fn select() -> String {
    format!(
        "SELECT i.id, {FILENAME} AS filename, i.bundle_name, i.stacktrace, i.timestamp \
         FROM import_error i"
    )
}

/// Airflow's `ImportErrorResponse`.
#[derive(Debug, Serialize)]
pub struct ImportErrorResponse {
    pub import_error_id: i64,
    pub timestamp: DateTime<Utc>,
    pub filename: String,
    pub bundle_name: String,
    pub stack_trace: String,
}

/// Airflow's `ImportErrorCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct ImportErrorCollection {
    pub import_errors: Vec<ImportErrorResponse>,
    pub total_entries: i64,
}

impl ImportErrorRow {
    /// `ImportErrorResponse`.
    fn response(&self) -> ImportErrorResponse {
        ImportErrorResponse {
            import_error_id: self.id,
            timestamp: self.timestamp,
            filename: self.filename.clone(),
            bundle_name: self.bundle_name.clone(),
            stack_trace: self.stacktrace.clone(),
        }
    }
}

/// `GET /api/v2/importErrors`.
pub async fn get_import_errors(
    State(state): State<ApiState>,
    params: Params,
) -> ApiResult<Json<ImportErrorCollection>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    conditions.patterns(&params, "filename", FILENAME);
    let order = params.order_by(
        &[
            ("id", "i.id"),
            ("import_error_id", "i.id"),
            ("timestamp", "i.timestamp"),
            ("filename", FILENAME),
            ("bundle_name", "i.bundle_name"),
            ("stacktrace", "i.stacktrace"),
        ],
        "id",
        "i.id",
    )?;
    let total = count_rows(&state, "FROM import_error i", &conditions).await?;
    let rows: Vec<ImportErrorRow> = page_rows(&state, &select(), &conditions, &order, page).await?;
    Ok(Json(ImportErrorCollection {
        import_errors: rows.iter().map(ImportErrorRow::response).collect(),
        total_entries: total,
    }))
}

/// `GET /api/v2/importErrors/{import_error_id}`.
pub async fn get_import_error(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ImportErrorResponse>> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::invalid(
            &["path", "import_error_id"],
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            json!(id),
        )
    })?;
    let row: Option<ImportErrorRow> =
        sqlx::query_as(AssertSqlSafe(format!("{} WHERE i.id = $1", select())))
            .bind(id)
            .fetch_optional(state.store.pool())
            .await?;
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!(
            "The ImportError with import_error_id: `{id}` was not found"
        ))
    })?;
    Ok(Json(row.response()))
}
