//! Errors in Airflow's shapes: `{"detail": "..."}` for HTTP errors (FastAPI's
//! `HTTPException`), `{"detail": [{"type", "loc", "msg", "input"}]}` for invalid input (422, as
//! pydantic reports it). A handler never answers 500 for bad input: a 500 is a bug or a broken
//! database, and its body says which without leaking internals.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after: Option<u64>,
}

/// The body of an error: FastAPI's `{"detail": …}`.
#[derive(Debug, Serialize)]
struct ErrorBody {
    detail: Detail,
}

/// What an error's `detail` holds.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Detail {
    /// An `HTTPException`'s message.
    Message(String),
    /// Pydantic's validation errors (Leoflow reports the first).
    Invalid(Vec<ValidationError>),
}

/// One of pydantic's validation errors.
#[derive(Debug, Serialize)]
struct ValidationError {
    #[serde(rename = "type")]
    kind: String,
    loc: Vec<String>,
    msg: String,
    input: Value,
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// `{"detail": message}` with `status`.
    pub fn detail(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                detail: Detail::Message(message.into()),
            },
            retry_after: None,
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::NOT_FOUND, message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::BAD_REQUEST, message)
    }

    /// 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::CONFLICT, message)
    }

    /// 401: no credentials, or wrong ones.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::detail(StatusCode::UNAUTHORIZED, message)
    }

    /// 429 with `Retry-After`.
    pub fn too_many(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::detail(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// 422 for one invalid input, located as pydantic does (`["query", "limit"]`,
    /// `["body", "conf"]`, `["path", "map_index"]`).
    pub fn invalid(loc: &[&str], kind: &str, message: impl Into<String>, input: Value) -> Self {
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            body: ErrorBody {
                detail: Detail::Invalid(vec![ValidationError {
                    kind: kind.to_owned(),
                    loc: loc.iter().map(|part| (*part).to_owned()).collect(),
                    msg: message.into(),
                    input,
                }]),
            },
            retry_after: None,
        }
    }

    /// 500: the server failed (a database error, a bug). Logged in full; the client learns
    /// only that it happened.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {error}");
        Self::detail(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Leoflow failed to answer this request; its log says why",
        )
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_str(&seconds.to_string()).expect("digits"),
            );
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(format!("database: {error}"))
    }
}

impl From<leoflow_events::StoreError> for ApiError {
    fn from(error: leoflow_events::StoreError) -> Self {
        Self::internal(format!("event store: {error}"))
    }
}

impl From<leoflow_secrets::VaultError> for ApiError {
    fn from(error: leoflow_secrets::VaultError) -> Self {
        Self::internal(format!("secrets: {error}"))
    }
}

impl From<leoflow_events::AppendError> for ApiError {
    fn from(error: leoflow_events::AppendError) -> Self {
        match error {
            leoflow_events::AppendError::Conflict { stream, .. } => Self::conflict(format!(
                "{stream} changed while this request was decided; try again"
            )),
            other => Self::internal(format!("append: {other}")),
        }
    }
}
