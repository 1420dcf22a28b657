//! `/ui/config`, `/ui/auth/me`, `/ui/auth/menus` and other small answers of every page.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::Value;

use crate::auth::User;
use crate::error::ApiResult;
use crate::permissions::{self, Role};
use crate::query::Params;
use crate::state::ApiState;

/// Airflow's `ConfigResponse` of the UI.
#[derive(Debug, Serialize)]
pub struct UiConfig {
    pub fallback_page_limit: i64,
    pub auto_refresh_interval: i64,
    pub hide_paused_dags_by_default: bool,
    pub instance_name: String,
    pub enable_swagger_ui: bool,
    pub require_confirmation_dag_change: bool,
    pub default_wrap: bool,
    pub test_connection: &'static str,
    pub dashboard_alert: Vec<Value>,
    pub show_external_log_redirect: bool,
    pub external_log_name: Option<String>,
    pub theme: Option<Value>,
    pub multi_team: bool,
}

/// `GET /ui/config`: the instance name is what the navbar shows ("Leoflow Lite").
pub async fn config(State(state): State<ApiState>) -> Json<UiConfig> {
    Json(UiConfig {
        fallback_page_limit: crate::query::DEFAULT_LIMIT,
        auto_refresh_interval: 3,
        hide_paused_dags_by_default: false,
        instance_name: state.settings.instance_name.clone(),
        enable_swagger_ui: false,
        require_confirmation_dag_change: false,
        default_wrap: false,
        test_connection: "Disabled",
        dashboard_alert: Vec::new(),
        show_external_log_redirect: false,
        external_log_name: None,
        theme: None,
        multi_team: false,
    })
}

/// Airflow's `SimpleAuthManagerUser` as `/ui/auth/me` answers it.
#[derive(Debug, Serialize)]
pub struct Me {
    /// The user's id (its name).
    pub id: String,
    /// The user's name.
    pub username: String,
}

/// `GET /ui/auth/me`.
pub async fn me(Extension(user): Extension<User>) -> Json<Me> {
    Json(Me {
        id: user.username.clone(),
        username: user.username,
    })
}

/// Airflow's `MenuItemCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct Menus {
    /// The pages the user may open.
    pub authorized_menu_items: Vec<&'static str>,
    /// Links plugins add.
    pub extra_menu_items: Vec<Value>,
}

/// The pages Leoflow has (no jobs, plugins or providers).
const PAGES: [&str; 10] = [
    "Required Actions",
    "Assets",
    "Audit Log",
    "Config",
    "Connections",
    "Dags",
    "Docs",
    "Pools",
    "Variables",
    "XComs",
];

/// `GET /ui/auth/menus`: the pages Leoflow has that the user's role may open, as FAB decides
/// for the role. Lite's editor is not an extra menu item: the UI frames those under
/// "Security" and navigates away from any page outside `/auth/`; it reaches the navigation bar
/// as a plugin's external view instead (`/api/v2/plugins`).
pub async fn menus(Extension(user): Extension<User>) -> Json<Menus> {
    let role = user.role.parse().unwrap_or(Role::Public);
    let allowed = permissions::menu_items(role);
    // Custom roles open the DAGs their `access_control` grants them.
    let through_dags = !user.dag_roles.is_empty();
    Json(Menus {
        authorized_menu_items: PAGES
            .into_iter()
            .filter(|page| allowed.contains(page) || (through_dags && *page == "Dags"))
            .collect(),
        extra_menu_items: Vec::new(),
    })
}

/// Airflow's `BackfillCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct Backfills {
    /// The backfills (Leoflow keeps none).
    pub backfills: Vec<Value>,
    /// How many.
    pub total_entries: i64,
}

/// `GET /ui/backfills`: Leoflow keeps no backfill records (catchup runs are scheduled runs).
pub async fn backfills(params: Params) -> ApiResult<Json<Backfills>> {
    params.page()?;
    Ok(Json(Backfills {
        backfills: Vec::new(),
        total_entries: 0,
    }))
}

/// Airflow's `ConnectionHookMetaData`: a connection type the form offers.
#[derive(Debug, Serialize)]
pub struct HookMeta {
    pub connection_type: &'static str,
    pub hook_class_name: Option<String>,
    pub default_conn_name: Option<String>,
    pub hook_name: &'static str,
    pub standard_fields: Option<Value>,
    pub extra_fields: Option<Value>,
}

/// `GET /ui/connections/hook_meta`: the connection types the form offers, with no extra fields.
pub async fn hook_meta() -> Json<Vec<HookMeta>> {
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
    Json(
        types
            .into_iter()
            .map(|(connection_type, hook_name)| HookMeta {
                connection_type,
                hook_class_name: None,
                default_conn_name: None,
                hook_name,
                standard_fields: None,
                extra_fields: None,
            })
            .collect(),
    )
}
