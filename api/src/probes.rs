//! Kubernetes' probes for `leoflow server`: `/healthz` says the process answers (liveness);
//! `/readyz` says this replica can serve: its datastores answer, the schema is its own, and it
//! is not shutting down (readiness: a Service routes only to ready replicas). A check that only
//! degrades the replica (Redis: shared state that is never the truth) is reported without
//! making it unready: every replica would otherwise leave the Service at once.
//!
//! The checks are the server's (it knows its Redis and its schema); this module only answers
//! them in one shape, each check with a deadline so a hung datastore reads as not ready rather
//! than as a probe timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

/// How long one readiness check may take before it counts as failed.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(2);

/// One readiness check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked (`postgres`, `schema`, `redis`, `serving`).
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// Whether failing it makes the replica unready (else it is only degraded).
    pub required: bool,
    /// What was found (an error, a version).
    pub detail: String,
}

/// The checks behind `/readyz`.
pub trait Readiness: Send + Sync + 'static {
    /// Runs every check (each is cut off at [`CHECK_DEADLINE`] by the caller).
    fn checks(&self) -> Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>>;
}

#[derive(Serialize)]
struct ReadyBody {
    /// `ready`, `degraded` (ready, an optional check failing) or `not ready`.
    status: &'static str,
    checks: Vec<Check>,
}

/// `/healthz` and `/readyz`.
pub fn router(readiness: Arc<dyn Readiness>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

/// Alive: the process's event loop answers. Nothing else is asked, so a datastore outage never
/// gets a replica restarted (it is not ready instead).
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<Arc<dyn Readiness>>) -> Response {
    let checks = match tokio::time::timeout(CHECK_DEADLINE, readiness.checks()).await {
        Ok(checks) => checks,
        Err(_) => vec![Check {
            name: "deadline",
            ok: false,
            required: true,
            detail: format!("the checks took longer than {CHECK_DEADLINE:?}"),
        }],
    };
    let ready = checks.iter().all(|check| check.ok || !check.required);
    let (code, status) = if !ready {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    } else if checks.iter().all(|check| check.ok) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::OK, "degraded")
    };
    (code, Json(ReadyBody { status, checks })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    struct Fixed(Vec<Check>);

    impl Readiness for Fixed {
        fn checks(&self) -> Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>> {
            Box::pin(async move { self.0.clone() })
        }
    }

    struct Hung;

    impl Readiness for Hung {
        fn checks(&self) -> Pin<Box<dyn Future<Output = Vec<Check>> + Send + '_>> {
            Box::pin(std::future::pending())
        }
    }

    async fn status(readiness: Arc<dyn Readiness>, path: &str) -> (StatusCode, String) {
        let response = router(readiness)
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let code = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (code, String::from_utf8(body.to_vec()).unwrap())
    }

    fn check(name: &'static str, ok: bool) -> Check {
        Check {
            name,
            ok,
            required: name != "redis",
            detail: String::new(),
        }
    }

    #[tokio::test]
    async fn ready_only_when_every_check_passes_and_alive_regardless() {
        let good = Arc::new(Fixed(vec![check("postgres", true), check("redis", true)]));
        assert_eq!(status(good, "/readyz").await.0, StatusCode::OK);
        let degraded = Arc::new(Fixed(vec![check("postgres", true), check("redis", false)]));
        let (code, body) = status(degraded, "/readyz").await;
        assert_eq!(code, StatusCode::OK, "losing Redis only degrades");
        assert!(body.contains("\"status\":\"degraded\""), "{body}");
        let bad = Arc::new(Fixed(vec![check("postgres", false), check("redis", true)]));
        let (code, body) = status(bad.clone(), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            body.contains("\"name\":\"postgres\",\"ok\":false"),
            "{body}"
        );
        assert_eq!(status(bad, "/healthz").await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_hung_check_is_not_ready_within_the_deadline() {
        let (code, body) = status(Arc::new(Hung), "/readyz").await;
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("deadline"), "{body}");
    }
}
