//! Serving the Airflow UI unmodified, the way Airflow's API server does: `/static/…` is the
//! built UI's folder, `/auth/static/…` the login UI's, and every other page path answers the
//! UI's `index.html` with `{{ backend_server_base_url }}` filled in (the single-page app then
//! routes itself; deep links work). Without the UI installed those pages say how to get it,
//! and the API works all the same.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

use crate::assets::UiDirs;
use crate::error::ApiError;
use crate::state::ApiState;

/// The loaded UI: its folders, its two rendered `index.html` pages, and Airflow's OpenAPI
/// document as JSON (served at `/openapi.json`, as Airflow serves its own).
#[derive(Debug)]
pub struct Ui {
    dirs: UiDirs,
    index: String,
    login: String,
    openapi: String,
}

const BASE_URL_SLOT: &str = "{{ backend_server_base_url }}";

impl Ui {
    /// Loads the installed UI, rendering its pages for `base_url` (`/` unless behind a prefix).
    pub fn load(dirs: UiDirs, base_url: &str) -> std::io::Result<Self> {
        let render = |dir: &Path| -> std::io::Result<String> {
            let page = std::fs::read_to_string(dir.join("index.html"))?;
            Ok(page.replace(BASE_URL_SLOT, base_url))
        };
        let yaml = std::fs::read_to_string(&dirs.openapi)?;
        let document: serde_json::Value = serde_norway::from_str(&yaml)
            .map_err(|e| std::io::Error::other(format!("{}: {e}", dirs.openapi.display())))?;
        Ok(Self {
            index: render(&dirs.ui)?,
            login: render(&dirs.auth)?,
            openapi: document.to_string(),
            dirs,
        })
    }
}

/// The UI's routes; `ui` is `None` when it is not installed. With `login_page`, the simple
/// auth manager's login page is served at `/auth/login` (single sign-on has none).
pub fn routes(ui: Option<Arc<Ui>>, login_page: bool) -> Router<ApiState> {
    let mut router = Router::new();
    if let Some(ui) = &ui {
        router = router
            .nest_service("/static", ServeDir::new(&ui.dirs.ui))
            .nest_service("/auth/static", ServeDir::new(&ui.dirs.auth));
    }
    if login_page {
        let login = ui.clone();
        router = router.route("/auth/login", get(move || page(login.clone(), true)));
    }
    let openapi = ui.clone();
    router
        .route("/openapi.json", get(move || document(openapi.clone())))
        .fallback(move |request: Request| fallback(ui.clone(), request))
}

async fn page(ui: Option<Arc<Ui>>, login: bool) -> Response {
    match ui {
        Some(ui) => {
            let html = if login { &ui.login } else { &ui.index };
            ([(header::CACHE_CONTROL, "no-cache")], Html(html.clone())).into_response()
        }
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Html(
                "<!doctype html><title>Leoflow</title><h1>The Airflow UI is not installed</h1>\
                 <p>Run <code>leoflow setup</code> to fetch it (the apache-airflow-core 3.2.2 \
                 wheel from the package index). The API under <code>/api/v2</code> works \
                 without it.</p>",
            ),
        )
            .into_response(),
    }
}

async fn document(ui: Option<Arc<Ui>>) -> Response {
    match ui {
        Some(ui) => (
            [(header::CONTENT_TYPE, "application/json")],
            ui.openapi.clone(),
        )
            .into_response(),
        None => ApiError::detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Airflow's OpenAPI document comes with the UI: run `leoflow setup` to install it",
        )
        .into_response(),
    }
}

async fn fallback(ui: Option<Arc<Ui>>, request: Request) -> Response {
    let path = request.uri().path();
    let api = ["/api/", "/ui/", "/auth/", "/leoflow/"]
        .iter()
        .any(|prefix| path.starts_with(prefix));
    if api || !matches!(*request.method(), Method::GET | Method::HEAD) {
        return ApiError::not_found("Not Found").into_response();
    }
    page(ui, false).await
}
