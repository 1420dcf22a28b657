//! `/ui/config`, `/ui/auth/me`, `/ui/auth/menus` and other small answers of every page.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Value, json};

use crate::auth::User;
use crate::error::ApiResult;
use crate::query::Params;
use crate::state::ApiState;

/// `GET /ui/config`: the instance name is what the navbar shows ("Leoflow Lite").
pub async fn config(State(state): State<ApiState>) -> Json<Value> {
    Json(json!({
        "fallback_page_limit": crate::query::DEFAULT_LIMIT,
        "auto_refresh_interval": 3,
        "hide_paused_dags_by_default": false,
        "instance_name": state.settings.instance_name,
        "enable_swagger_ui": false,
        "require_confirmation_dag_change": false,
        "default_wrap": false,
        "test_connection": "Disabled",
        "dashboard_alert": [],
        "show_external_log_redirect": false,
        "external_log_name": null,
        "theme": null,
        "multi_team": false,
    }))
}

/// `GET /ui/auth/me`.
pub async fn me(Extension(user): Extension<User>) -> Json<Value> {
    Json(json!({"id": user.username, "username": user.username}))
}

/// `GET /ui/auth/menus`: the pages Leoflow has (no assets, jobs, plugins, providers or
/// required actions). Lite's editor is not an extra menu item: the UI frames those under
/// "Security" and navigates away from any page outside `/auth/`; it reaches the navigation bar
/// as a plugin's external view instead (`/api/v2/plugins`).
pub async fn menus() -> Json<Value> {
    Json(json!({
        "authorized_menu_items": [
            "Audit Log", "Config", "Connections", "Dags", "Docs", "Pools", "Variables", "XComs",
        ],
        "extra_menu_items": [],
    }))
}

/// `GET /ui/backfills`: Leoflow keeps no backfill records (catchup runs are scheduled runs).
pub async fn backfills(params: Params) -> ApiResult<Json<Value>> {
    params.page()?;
    Ok(Json(json!({"backfills": [], "total_entries": 0})))
}

/// `GET /ui/connections/hook_meta`: the connection types the form offers, with no extra fields.
pub async fn hook_meta() -> Json<Value> {
    let types = [
        ("generic", "Generic"),
        ("http", "HTTP"),
        ("postgres", "Postgres"),
        ("mysql", "MySQL"),
        ("sqlite", "Sqlite"),
        ("aws", "Amazon Web Services"),
        ("google_cloud_platform", "Google Cloud"),
        ("ssh", "SSH"),
        ("fs", "File (path)"),
    ];
    Json(Value::Array(
        types
            .iter()
            .map(|(connection_type, name)| {
                json!({
                    "connection_type": connection_type,
                    "hook_class_name": null,
                    "default_conn_name": null,
                    "hook_name": name,
                    "standard_fields": null,
                    "extra_fields": null,
                })
            })
            .collect(),
    ))
}

/// `GET /ui/dependencies`: the asset and cross-DAG graph. Leoflow DAGs have no assets nor
/// cross-DAG triggers, so it has no nodes.
pub async fn dependencies() -> Json<Value> {
    Json(json!({"edges": [], "nodes": []}))
}
