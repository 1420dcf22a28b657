//! The private `/ui` routes Airflow's web UI calls (`_private_ui.yaml`).

mod assets;
mod common;
mod dags;
mod dependencies;
mod external;
mod grid;

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
        .route("/dependencies", get(dependencies::dependencies))
        .route("/next_run_assets/{dag_id}", get(assets::next_run_assets))
        .route("/dags", get(dags::dags))
        .route("/dags/{dag_id}/latest_run", get(dags::latest_run))
        .route("/dashboard/dag_stats", get(dags::dag_stats))
        .route(
            "/dashboard/historical_metrics_data",
            get(dags::historical_metrics),
        )
        .route("/grid/runs/{dag_id}", get(grid::runs))
        .route("/grid/structure/{dag_id}", get(grid::structure))
        .route("/grid/ti_summaries/{dag_id}", get(grid::ti_summaries))
        .route("/structure/structure_data", get(grid::structure_data))
        .route("/gantt/{dag_id}/{run_id}", get(grid::gantt))
        .route("/calendar/{dag_id}", get(grid::calendar))
}
