//! Deploying DAGs the GitOps way: `PUT /leoflow/api/projects/{project}` takes a compiled
//! dag.json (what `leoflow push` sends) and registers it with its provenance; `POST
//! /leoflow/api/dags/{dag_id}/rollback` makes an older version current again. Both need the
//! deploy permission (`permissions::DEPLOY`); a push registers into the caller's tenant.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use leoflow_authoring::document::check;
use leoflow_authoring::ingest::{Origin, RegisterError, register_from};
use leoflow_authoring::rollback::{RollbackError, RolledBack, roll_back};
use leoflow_events::catalog::Provenance;
use leoflow_events::{Actor, Metadata};
use leoflow_projector::read;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::User;
use crate::body::Body;
use crate::dag_access::tenant_to_act_in;
use crate::error::{ApiError, ApiResult};
use crate::query::Params;
use crate::state::ApiState;

/// What the push route starts with: `PUT {PROJECTS_PREFIX}{project}`.
pub const PROJECTS_PREFIX: &str = "/leoflow/api/projects/";
/// The push route.
pub const PUSH_ROUTE: &str = "/leoflow/api/projects/{project}";
/// The rollback route: `POST /leoflow/api/dags/{dag_id}{ROLLBACK_SUFFIX}`.
pub const ROLLBACK_ROUTE: &str = "/leoflow/api/dags/{dag_id}/rollback";
/// What the rollback route ends with.
pub const ROLLBACK_SUFFIX: &str = "/rollback";

/// What `leoflow push` sends.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    /// The compiled project (dag.json).
    document: Value,
    /// The task image built with it (`registry/name:tag@sha256:…`).
    #[serde(default)]
    image: Option<String>,
    /// The git commit it was compiled from.
    #[serde(default)]
    git_commit: Option<String>,
}

/// What a push did.
#[derive(Debug, Serialize)]
pub struct Pushed {
    /// The project.
    pub project: String,
    /// The tenant it was registered into.
    pub tenant: String,
    /// The DAGs that got a new version.
    pub parsed: Vec<String>,
    /// The DAGs whose version was already current (the same artifact pushed again).
    pub unchanged: Vec<String>,
}

/// `PUT /leoflow/api/projects/{project}`.
pub async fn push(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(project): Path<String>,
    params: Params,
    Body(body): Body<PushBody>,
) -> ApiResult<(StatusCode, Json<Pushed>)> {
    // A caller of every tenant names the one to register into; anyone else pushes into theirs.
    let tenant = tenant_to_act_in(&user, params.str("tenant"), "tenant")?;
    if let Some(dir) = &state.settings.project_dir
        && hot_reloaded(dir, &project)
    {
        return Err(ApiError::conflict(format!(
            "project {project:?} is the one this Lite hot-reloads from {}: edit its files \
             instead, or push to a Pro or Demo server",
            dir.display()
        )));
    }
    let document = check(body.document).map_err(|e| {
        ApiError::invalid(
            &["body", "document"],
            "value_error",
            e.to_string(),
            Value::Null,
        )
    })?;
    let named = document.json["project"].as_str().unwrap_or_default();
    if named != project {
        return Err(ApiError::bad_request(format!(
            "the dag.json is project {named:?}, pushed as {project:?}: push it under its own name"
        )));
    }
    let origin = Origin {
        metadata: Metadata::from(&Actor::from(&user)),
        provenance: Some(Provenance {
            image: body.image.filter(|i| !i.trim().is_empty()),
            git_commit: body.git_commit.filter(|c| !c.trim().is_empty()),
        }),
    };
    let registration = register_from(&state.store, &project, &tenant, &Ok(document), &origin)
        .await
        .map_err(|error| match error {
            RegisterError::ForeignDags(foreign) => {
                let ids: Vec<&str> = foreign.iter().map(|f| f.dag_id.as_str()).collect();
                ApiError::conflict(format!(
                    "DAG id(s) {} belong to another tenant, which registered them before DAG \
                     ids were keyed by tenant",
                    ids.join(", ")
                ))
            }
            other => ApiError::internal(other),
        })?;
    let status = if registration.parsed.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(Pushed {
            project,
            tenant,
            parsed: registration.parsed,
            unchanged: registration.unchanged,
        }),
    ))
}

/// Whether Lite, watching `dir` (a project, or a folder of projects named by their paths in
/// it), hot-reloads the project named `project`.
fn hot_reloaded(dir: &std::path::Path, project: &str) -> bool {
    if leoflow_authoring::is_project(dir) {
        return leoflow_authoring::project_name(dir) == project;
    }
    let inside = std::path::Path::new(project)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    inside && leoflow_authoring::is_project(&dir.join(project))
}

/// `POST /leoflow/api/dags/{dag_id}/rollback` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackBody {
    /// The version to make current again.
    version_number: i32,
}

/// What a rollback did.
#[derive(Debug, Serialize)]
pub struct RollbackDone {
    /// The DAG.
    pub dag_id: String,
    /// The version asked for.
    pub from_version: i32,
    /// The DAG's current version now (a new number for the old artifact, unless it was
    /// current already).
    pub current_version: i32,
    /// Whether anything changed.
    pub changed: bool,
}

/// `POST /leoflow/api/dags/{dag_id}/rollback`.
pub async fn rollback(
    State(state): State<ApiState>,
    Extension(user): Extension<User>,
    Path(dag_id): Path<String>,
    Body(body): Body<RollbackBody>,
) -> ApiResult<Json<RollbackDone>> {
    let pool = state.store.pool();
    let owner = read::dags::owner(pool, &dag_id)
        .await?
        .ok_or_else(|| crate::read::dags::dag_not_found(&dag_id))?;
    let origin = Origin {
        metadata: Metadata::from(&Actor::from(&user)),
        provenance: None,
    };
    let done = roll_back(
        &state.store,
        &owner.tenant,
        &dag_id,
        body.version_number,
        &origin,
    )
    .await
    .map_err(|error| match error {
        RollbackError::NoVersion { .. } => ApiError::not_found(error.to_string()),
        RollbackError::NoDocument { .. } => ApiError::conflict(error.to_string()),
        other => ApiError::internal(other),
    })?;
    let current = read::dag_versions::latest(pool, &dag_id)
        .await?
        .map_or(body.version_number, |v| v.version_number);
    Ok(Json(RollbackDone {
        dag_id,
        from_version: body.version_number,
        current_version: current,
        changed: done == RolledBack::Current,
    }))
}
