//! The private `/ui` routes Airflow's web UI calls (`_private_ui.yaml`).

mod common;

use axum::Router;
use axum::routing::get;

use crate::state::ApiState;

/// The `/ui` router (nested under `/ui`, behind the auth middleware).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/config", get(common::config))
        .route("/auth/me", get(common::me))
        .route("/auth/menus", get(common::menus))
        .route("/backfills", get(common::backfills))
        .route("/connections/hook_meta", get(common::hook_meta))
}
