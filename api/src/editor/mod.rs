//! Lite's built-in editor: a page at `/leoflow/editor` listing the project's files and editing
//! them in Monaco (Python and YAML highlighted), saving through a file API under
//! `/leoflow/api/files` that never reaches outside the project directory. Saving only writes
//! the file: Lite's file watcher reloads the project. Without a project directory (Pro) none
//! of these routes exist.

mod files;
mod monaco;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use tower_http::services::ServeDir;

pub use monaco::{
    EditorAssetError, MONACO_VERSION, TARBALL_ENV, TARBALL_FILE, TARBALL_INTEGRITY, TARBALL_URL,
    install_monaco, installed_monaco,
};

use crate::auth;
use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// The editor page, which the UI's menu links to.
pub(crate) const PAGE_PATH: &str = "/leoflow/editor";
/// Where the login page sends the browser back to.
const LOGIN: &str = "/api/v2/auth/login?next=/leoflow/editor";
/// The page, Monaco loaded from `/leoflow/editor/vs`.
const PAGE: &str = include_str!("page.html");

/// What the editor's handlers share.
#[derive(Debug, Clone)]
struct Editor {
    /// The project directory, as configured.
    project: Arc<PathBuf>,
    /// Whether Monaco is installed (else the page says how to install it).
    monaco: bool,
}

impl Editor {
    /// The project directory, canonical, so symbolic links are judged by where they lead.
    fn root(&self) -> ApiResult<PathBuf> {
        self.project.canonicalize().map_err(|e| {
            ApiError::internal(format!(
                "the project directory {}: {e}",
                self.project.display()
            ))
        })
    }
}

/// The editor's routes, behind the login: none without a project directory.
pub fn routes(state: ApiState) -> Router<ApiState> {
    let Some(project) = state.settings.project_dir.clone() else {
        return Router::new();
    };
    let vs = state
        .settings
        .editor_assets
        .as_deref()
        .and_then(monaco::vs_folder);
    let editor = Editor {
        project: Arc::new(project),
        monaco: vs.is_some(),
    };
    let require_user = middleware::from_fn_with_state(state, auth::require_user);
    let files = Router::new()
        .route("/leoflow/api/files", get(files::list))
        .route(
            "/leoflow/api/files/{*path}",
            get(files::read).put(files::save),
        )
        .route_layer(DefaultBodyLimit::max(files::MAX_FILE_SIZE))
        .route_layer(require_user.clone());
    let page = Router::new()
        .route(PAGE_PATH, get(page))
        .route_layer(require_user)
        .route_layer(middleware::from_fn(login_first));
    let router = files.merge(page).with_state(editor);
    match vs {
        // Monaco's own files: public code, like the UI's static files.
        Some(vs) => router.nest_service("/leoflow/editor/vs", ServeDir::new(vs)),
        None => router,
    }
}

/// Sends a browser without a session to the UI's login page (which comes back here) rather
/// than showing it the API's 401.
async fn login_first(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        return Redirect::temporary(LOGIN).into_response();
    }
    response
}

/// `GET /leoflow/editor`.
async fn page(State(editor): State<Editor>) -> Response {
    if editor.monaco {
        return ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE)).into_response();
    }
    let explanation = format!(
        "<!doctype html><title>Editor · Leoflow</title><h1>The editor is not installed</h1>\
         <p>Run <code>leoflow setup</code> to fetch it (Monaco {MONACO_VERSION} from the npm \
         registry), then restart <code>leoflow lite</code>. Without access to the registry, \
         download {TARBALL_URL} elsewhere and pass it with \
         <code>{TARBALL_ENV}=/path/to/{TARBALL_FILE} leoflow setup</code>.</p>\
         <p>The Airflow UI and the API work without it: <a href=\"/\">back to the Airflow \
         UI</a>.</p>"
    );
    (StatusCode::SERVICE_UNAVAILABLE, Html(explanation)).into_response()
}
