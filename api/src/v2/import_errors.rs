//! Import errors (`/api/v2/importErrors`): the DAG files that failed to parse, from the
//! `import_error` read model (a `DagImportFailed` records one; the file parsing again clears
//! it). As in Airflow 3, `filename` is relative to its bundle.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use leoflow_projector::read::import_errors::{self, ImportErrorRow, columns};
use serde::Serialize;
use serde_json::json;

use crate::dag_access::DagScope;
use crate::error::{ApiError, ApiResult};
use crate::query::{Bind, Conditions, ParamFilters, Params};
use crate::read::page::read_page;
use crate::state::ApiState;

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

impl From<&ImportErrorRow> for ImportErrorResponse {
    fn from(row: &ImportErrorRow) -> Self {
        ImportErrorResponse {
            import_error_id: row.id,
            timestamp: row.timestamp,
            filename: row.filename.clone(),
            bundle_name: row.bundle_name.clone(),
            stack_trace: row.stacktrace.clone(),
        }
    }
}

/// `GET /api/v2/importErrors`.
pub async fn get_import_errors(
    State(state): State<ApiState>,
    scope: DagScope,
    params: Params,
) -> ApiResult<Json<ImportErrorCollection>> {
    let page = params.page()?;
    let mut conditions = Conditions::new();
    if let Some(tenant) = &scope.tenant {
        conditions.eq(columns::TENANT, Bind::Text(tenant.clone()));
    }
    conditions.patterns(&params, "filename", columns::FILENAME);
    let order = params.order_by(
        &[
            ("id", columns::ID),
            ("import_error_id", columns::ID),
            ("timestamp", columns::TIMESTAMP),
            ("filename", columns::FILENAME),
            ("bundle_name", columns::BUNDLE_NAME),
            ("stacktrace", columns::STACKTRACE),
        ],
        "id",
        columns::ID,
    )?;
    let pool = state.store.pool();
    let listed = read_page(page, |w| import_errors::page(pool, &conditions, &order, w)).await?;
    Ok(Json(ImportErrorCollection {
        import_errors: listed.rows.iter().map(ImportErrorResponse::from).collect(),
        total_entries: listed.total,
    }))
}

/// `GET /api/v2/importErrors/{import_error_id}`.
pub async fn get_import_error(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    scope: DagScope,
) -> ApiResult<Json<ImportErrorResponse>> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::invalid(
            &["path", "import_error_id"],
            "int_parsing",
            "Input should be a valid integer, unable to parse string as an integer",
            json!(id),
        )
    })?;
    // Another tenant's import error does not exist for the caller.
    let row = import_errors::by_id(state.store.pool(), id)
        .await?
        .filter(|row| scope.tenant.as_ref().is_none_or(|t| *t == row.tenant));
    let row = row.ok_or_else(|| {
        ApiError::not_found(format!(
            "The ImportError with import_error_id: `{id}` was not found"
        ))
    })?;
    Ok(Json(ImportErrorResponse::from(&row)))
}
