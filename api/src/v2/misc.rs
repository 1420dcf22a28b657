//! The small endpoints every UI page calls, and the Airflow features Leoflow does not have,
//! answered truthfully: no plugins but Lite's own (the editor), no providers, backfill
//! records or DAG warnings exist here, so their lists are empty; there is no job table (the
//! triggerer is a process of the control plane, not a job).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::{ApiState, Edition};

/// Airflow's `VersionInfo`.
#[derive(Debug, Serialize)]
pub struct VersionInfo {
    /// The Airflow version whose API Leoflow speaks.
    pub version: &'static str,
    /// Leoflow's own version.
    pub git_version: String,
}

/// `GET /api/v2/version`: the Airflow API version Leoflow speaks, and Leoflow's own.
pub async fn version() -> Json<VersionInfo> {
    Json(VersionInfo {
        version: "3.2.2",
        git_version: format!("leoflow-{}", env!("CARGO_PKG_VERSION")),
    })
}

/// An empty Airflow collection: `{"<key>": [], "total_entries": 0}`.
#[derive(Debug, Clone, Copy)]
pub struct EmptyCollection {
    key: &'static str,
}

impl Serialize for EmptyCollection {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry(self.key, &[] as &[Value])?;
        map.serialize_entry("total_entries", &0)?;
        map.end()
    }
}

/// An empty collection under `key`, after checking the paging parameters.
fn empty(params: &Params, key: &'static str) -> ApiResult<Json<EmptyCollection>> {
    params.page()?;
    Ok(Json(EmptyCollection { key }))
}

/// A view a plugin adds to the UI (Airflow's `ExternalViewResponse`).
#[derive(Debug, Serialize)]
pub struct ExternalView {
    pub name: &'static str,
    pub href: &'static str,
    pub url_route: &'static str,
    pub destination: &'static str,
    pub category: Option<String>,
    pub icon: Option<String>,
    pub icon_dark_mode: Option<String>,
}

/// Airflow's `PluginResponse`; Lite's plugin has nothing but its external view.
#[derive(Debug, Serialize)]
pub struct Plugin {
    pub name: &'static str,
    pub source: &'static str,
    pub macros: Vec<Value>,
    pub flask_blueprints: Vec<Value>,
    pub fastapi_apps: Vec<Value>,
    pub fastapi_root_middlewares: Vec<Value>,
    pub external_views: Vec<ExternalView>,
    pub react_apps: Vec<Value>,
    pub appbuilder_views: Vec<Value>,
    pub appbuilder_menu_items: Vec<Value>,
    pub global_operator_extra_links: Vec<Value>,
    pub operator_extra_links: Vec<Value>,
    pub listeners: Vec<Value>,
    pub timetables: Vec<Value>,
}

/// Airflow's `PluginCollectionResponse`.
#[derive(Debug, Serialize)]
pub struct PluginCollection {
    pub plugins: Vec<Plugin>,
    pub total_entries: i64,
}

/// `GET /api/v2/plugins`: Leoflow loads no Airflow plugins. Lite lists one of its own whose
/// external view puts the built-in editor in the UI's navigation bar (the UI shows it at
/// `/plugin/editor`, in a frame).
pub async fn plugins(State(state): State<ApiState>, params: Params) -> ApiResult<Response> {
    if state.settings.project_dir.is_none() {
        return Ok(empty(&params, "plugins")?.into_response());
    }
    let page = params.page()?;
    let plugin = Plugin {
        name: "leoflow_lite",
        source: "leoflow",
        macros: Vec::new(),
        flask_blueprints: Vec::new(),
        fastapi_apps: Vec::new(),
        fastapi_root_middlewares: Vec::new(),
        external_views: vec![ExternalView {
            name: "Editor",
            href: crate::editor::PAGE_PATH,
            url_route: "editor",
            destination: "nav",
            category: None,
            icon: None,
            icon_dark_mode: None,
        }],
        react_apps: Vec::new(),
        appbuilder_views: Vec::new(),
        appbuilder_menu_items: Vec::new(),
        global_operator_extra_links: Vec::new(),
        operator_extra_links: Vec::new(),
        listeners: Vec::new(),
        timetables: Vec::new(),
    };
    let plugins = std::iter::once(plugin)
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .collect();
    Ok(Json(PluginCollection {
        plugins,
        total_entries: 1,
    })
    .into_response())
}

/// `GET /api/v2/plugins/importErrors`.
pub async fn plugin_import_errors() -> Json<EmptyCollection> {
    Json(EmptyCollection {
        key: "import_errors",
    })
}

/// `GET /api/v2/providers`: operators are built in; no provider packages are installed.
pub async fn providers(params: Params) -> ApiResult<Json<EmptyCollection>> {
    empty(&params, "providers")
}

/// `GET /api/v2/jobs`: Leoflow's scheduler is not a job row; there are no jobs to list.
pub async fn jobs(params: Params) -> ApiResult<Json<EmptyCollection>> {
    empty(&params, "jobs")
}

/// `GET /api/v2/backfills`: Leoflow keeps no backfill records. `dag_id` is required, as in
/// Airflow.
pub async fn backfills(params: Params) -> ApiResult<Json<EmptyCollection>> {
    if params.str("dag_id").is_none() {
        return Err(ApiError::invalid(
            &["query", "dag_id"],
            "missing",
            "Field required",
            Value::Null,
        ));
    }
    params.order_by(&[("id", "id")], "id", "id")?;
    empty(&params, "backfills")
}

/// `POST /api/v2/backfills`: refused with a reason (a 400 Airflow documents) instead of a 405.
pub async fn create_backfill() -> ApiError {
    ApiError::bad_request(
        "Leoflow has no backfills: a DAG with `catchup=True` runs its missed intervals itself, \
         and `POST /api/v2/dags/{dag_id}/dagRuns` triggers a run for a logical date",
    )
}

/// `GET /api/v2/dagWarnings`.
pub async fn dag_warnings(params: Params) -> ApiResult<Json<EmptyCollection>> {
    empty(&params, "dag_warnings")
}

/// An option of Airflow's `Config`.
#[derive(Debug, Serialize)]
pub struct ConfigOption {
    /// Its name.
    pub key: &'static str,
    /// Its value.
    pub value: String,
}

/// A section of Airflow's `Config`.
#[derive(Debug, Serialize)]
pub struct ConfigSection {
    /// Its name.
    pub name: &'static str,
    /// Its options.
    pub options: Vec<ConfigOption>,
}

/// Airflow's `Config`.
#[derive(Debug, Serialize)]
pub struct Config {
    /// The sections.
    pub sections: Vec<ConfigSection>,
}

/// `GET /api/v2/config`: Leoflow's effective settings, in Airflow's sections.
pub async fn config(State(state): State<ApiState>) -> Json<Config> {
    let edition = match state.settings.edition {
        Edition::Lite => "lite",
        Edition::Pro => "pro",
    };
    let executor = state.settings.executor;
    let option = |key, value| ConfigOption { key, value };
    let section = |name, options| ConfigSection { name, options };
    Json(Config {
        sections: vec![
            section(
                "core",
                vec![
                    option("executor", executor.into()),
                    option(
                        "default_pool_task_slot_count",
                        leoflow_scheduler::control::DEFAULT_POOL_SLOTS.to_string(),
                    ),
                    option("dags_are_paused_at_creation", "True".into()),
                ],
            ),
            section(
                "api",
                vec![
                    option(
                        "fallback_page_limit",
                        crate::query::DEFAULT_LIMIT.to_string(),
                    ),
                    option(
                        "maximum_page_limit",
                        crate::query::MAXIMUM_LIMIT.to_string(),
                    ),
                    option("instance_name", state.settings.instance_name.clone()),
                    option("base_url", state.settings.base_url.clone()),
                ],
            ),
            section(
                "leoflow",
                vec![
                    option("edition", edition.into()),
                    option("version", env!("CARGO_PKG_VERSION").into()),
                ],
            ),
        ],
    })
}
