//! Leoflow's HTTP surface: Airflow 3.2's `/api/v2` and the `/ui` routes its web UI calls, in
//! Airflow's shapes, answered from Leoflow's read models (never by scanning the event log per
//! request); the login flow of Airflow's simple auth manager; and the unmodified Airflow UI.
//! Changes go through the same commands as the CLI's and become events.
//!
//! ```no_run
//! # async fn example(state: leoflow_api::ApiState) -> std::io::Result<()> {
//! let app = leoflow_api::router(state, None);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8088").await?;
//! leoflow_api::serve(listener, app, std::future::pending()).await
//! # }
//! ```

#![warn(missing_docs)]

pub mod api_tokens;
pub mod assets;
pub mod auth;
mod body;
pub mod credentials;
pub mod dag_access;
pub mod editor;
mod error;
pub mod event_log;
pub mod metrics;
pub mod oidc;
pub mod permissions;
pub mod probes;
pub mod push;
mod query;
mod read;
pub mod sessions;
mod spa;
mod state;
mod states;
mod tenant_names;
mod traces;
mod ui;
mod v2;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

pub use error::{ApiError, ApiResult};
pub use spa::Ui;
pub use state::{ApiState, Edition, KUBERNETES_EXECUTOR, SUBPROCESS_EXECUTOR, Settings};

/// The whole application: public login routes, the protected API, the UI.
pub fn router(state: ApiState, ui: Option<Arc<Ui>>) -> Router {
    let protected = Router::new()
        .nest("/api/v2", v2::routes())
        .nest("/ui", ui::routes())
        .route(event_log::FEED_PATH, get(event_log::events))
        .route(event_log::REPLAY_PATH, get(event_log::replay))
        .route(
            v2::task_instances::CANCEL_ROUTE,
            post(v2::task_instances::cancel),
        )
        .route(push::PUSH_ROUTE, axum::routing::put(push::push))
        .route(push::ROLLBACK_ROUTE, post(push::rollback))
        // Layers run outside in: the user is known before their role is checked.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            permissions::authorize,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_user,
        ));
    let sign_in = if state.oidc.is_some() {
        // Single sign-on: the UI's login and logout go through the provider; no passwords.
        Router::new()
            .route("/auth/token", post(oidc::login::no_passwords))
            .route("/api/v2/auth/login", get(oidc::login::begin))
            .route("/auth/login", get(oidc::login::begin))
            .route("/auth/oidc/callback", get(oidc::login::callback))
            .route("/auth/oidc/signed-out", get(oidc::login::signed_out))
            .route("/api/v2/auth/logout", get(oidc::login::logout))
    } else {
        Router::new()
            .route("/auth/token", post(auth::create_token))
            .route("/api/v2/auth/login", get(auth::login_redirect))
            .route("/api/v2/auth/logout", get(auth::logout))
    };
    let app = Router::new()
        .merge(sign_in)
        // Public in Airflow's OpenAPI (no `security`): probes and the official client call
        // them without a token.
        .route("/api/v2/monitor/health", get(v2::monitor::health))
        .route("/api/v2/version", get(v2::misc::version))
        .route(oidc::login::CLI_LOGIN_PATH, get(oidc::login::cli_login))
        .merge(protected)
        .merge(editor::routes(state.clone()))
        .merge(spa::routes(ui, state.oidc.is_none()))
        .layer(middleware::from_fn(metrics::record_request))
        .layer(middleware::from_fn(traces::trace_request))
        .layer(middleware::from_fn(refuse_nul_paths))
        .with_state(state.clone());
    // A caller of one tenant names its DAGs as their files do; the router and the handlers
    // take their keys, so the names are translated before routing, around the whole app.
    let translated = middleware::from_fn_with_state(state, tenant_names::translate);
    Router::new().fallback_service(tower::Layer::layer(&translated, app))
}

/// No id holds a NUL character (Postgres text cannot): such a path names nothing.
async fn refuse_nul_paths(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    if request.uri().path().to_ascii_lowercase().contains("%00") {
        return axum::response::IntoResponse::into_response(ApiError::not_found("Not Found"));
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `shutdown` completes (client addresses are known to the
/// handlers, for the login limiter).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
