//! Registering a compiled project in the control plane: events, not rows.

use leoflow_core::assets;
use leoflow_events::catalog::{DagImportFailed, DagParsed, Provenance};
use leoflow_events::{
    AccessControl, AppendBatch, AppendError, EventStore, Metadata, StoreError, check_tenant,
    dag_key,
};
use leoflow_projector::read;
use leoflow_projector::read::dags::LatestVersion;
use serde_json::Value;

use crate::document::canonical_json;
use crate::{CompileError, ProjectDocument};

/// What registering did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// DAGs that got a new version (or were re-parsed after an import error).
    pub parsed: Vec<String>,
    /// DAGs whose version hash did not change: no event.
    pub unchanged: Vec<String>,
    /// The import error recorded for the project's file, if compiling failed.
    pub import_error: Option<String>,
}

/// Why registering failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The failure was the machine's, not the project's: nothing is recorded.
    #[error("{0}")]
    Environment(CompileError),
    /// Writing blobs or reading the read models failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending failed.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// Reading the read models failed.
    #[error("reading the dag read model failed: {0}")]
    Database(#[from] sqlx::Error),
    /// The tenant named is not a tenant name: nothing is recorded.
    #[error("{0}")]
    Tenant(String),
    /// DAGs of the project are keyed as DAGs of another tenant (registered there before DAG
    /// ids were keyed by tenant, [`leoflow_events::dag_key`]): nothing is recorded.
    #[error("{}", foreign_message(.0))]
    ForeignDags(Vec<ForeignDag>),
}

/// A DAG id the project declares that another tenant owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignDag {
    /// The DAG.
    pub dag_id: String,
    /// The tenant that owns it.
    pub tenant: String,
}

fn foreign_message(foreign: &[ForeignDag]) -> String {
    let owners: Vec<String> = foreign
        .iter()
        .map(|f| format!("DAG {:?} belongs to tenant {:?}", f.dag_id, f.tenant))
        .collect();
    format!(
        "{}, which registered it before DAG ids were keyed by tenant",
        owners.join(", ")
    )
}

/// The `fileloc` Leoflow records for a project's DAG file `file`: `<project>/<file>`
/// (`hello/dag.py`).
pub fn fileloc(project: &str, file: &str) -> String {
    format!("{project}/{file}")
}

/// Appends what compiling `project` yielded into `tenant`: `DagParsed` for each DAG whose
/// version hash changed (or whose file had an import error), or one `DagImportFailed`.
///
/// Each DAG is recorded under its key in `tenant` ([`leoflow_events::dag_key`]), so DAG ids
/// repeat across tenants. A key another tenant owns (a bare id it registered before keys)
/// stays its own: nothing is appended ([`RegisterError::ForeignDags`]).
pub async fn register(
    store: &EventStore,
    project: &str,
    tenant: &str,
    compiled: &Result<ProjectDocument, CompileError>,
    actor: &str,
) -> Result<Registration, RegisterError> {
    let origin = Origin {
        metadata: Metadata::actor(actor),
        provenance: None,
    };
    register_from(store, project, tenant, compiled, &origin).await
}

/// Who registers a project and, for a pushed artifact, where it came from.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The metadata every appended event carries (its actor).
    pub metadata: Metadata,
    /// Where a pushed artifact came from, recorded on each `DagParsed`.
    pub provenance: Option<Provenance>,
}

/// [`register`] by `origin`'s actor, recording its provenance.
pub async fn register_from(
    store: &EventStore,
    project: &str,
    tenant: &str,
    compiled: &Result<ProjectDocument, CompileError>,
    origin: &Origin,
) -> Result<Registration, RegisterError> {
    check_tenant(tenant).map_err(RegisterError::Tenant)?;
    let fileloc = match compiled {
        Ok(document) => fileloc(project, document.source_file()),
        Err(error) => match error.file() {
            Some(file) => fileloc(project, file),
            None => known_fileloc(store, project, tenant).await?,
        },
    };
    let metadata = &origin.metadata;
    let document = match compiled {
        Ok(document) => document,
        Err(error) if !error.is_project_error() => {
            return Err(RegisterError::Environment(error.clone()));
        }
        Err(error) => {
            let message = error.to_string();
            let recorded = read::import_errors::stacktrace(store.pool(), &fileloc).await?;
            if recorded.as_deref() != Some(message.as_str()) {
                let event = DagImportFailed {
                    fileloc: fileloc.clone(),
                    bundle_name: project.to_owned(),
                    error: message.clone(),
                    tenant: tenant.to_owned(),
                };
                store
                    .append(AppendBatch::new().push(event, metadata))
                    .await?;
            }
            return Ok(Registration {
                import_error: Some(message),
                ..Registration::default()
            });
        }
    };

    let had_import_error = read::import_errors::exists(store.pool(), &fileloc).await?;
    // Each DAG is recorded under its key in the tenant; the registration reports names.
    let keys: Vec<String> = document
        .dags()
        .iter()
        .filter_map(|d| d["dag_id"].as_str().map(|name| dag_key(tenant, name)))
        .collect();
    let latest = read::dags::latest_versions(store.pool(), &keys).await?;
    refuse_foreign(&latest, tenant)?;

    let source_hash = store
        .put_blob("text/x-python", document.source_text())
        .await?;
    let mut batch = AppendBatch::new();
    let mut registration = Registration::default();
    for dag in document.dags() {
        let name = dag["dag_id"].as_str().unwrap_or_default().to_owned();
        let key = dag_key(tenant, &name);
        let version_hash = dag["version_hash"].as_str().unwrap_or_default().to_owned();
        let unchanged = latest
            .iter()
            .any(|dag| dag.dag_id == key && dag.version_hash == version_hash);
        if unchanged && !had_import_error {
            registration.unchanged.push(name);
            continue;
        }
        let document_hash = store
            .put_blob("application/json", &canonical_json(dag))
            .await?;
        let parsed = DagParsed {
            provenance: origin.provenance.clone(),
            ..dag_parsed(
                dag,
                &fileloc,
                project,
                tenant,
                version_hash,
                &source_hash,
                document_hash,
            )
        };
        batch = batch.push(parsed, metadata);
        registration.parsed.push(name);
    }
    store.append(batch).await?;
    Ok(registration)
}

/// The file an error that names no DAG file (the project's DAG file could not be found) is
/// recorded against: the one the project's DAGs or import error already have, else
/// `<project>/dag.py`.
async fn known_fileloc(
    store: &EventStore,
    project: &str,
    tenant: &str,
) -> Result<String, sqlx::Error> {
    let known: Option<String> = sqlx::query_scalar(
        "SELECT fileloc FROM (SELECT fileloc FROM dag WHERE bundle_name = $1 AND tenant = $2 \
         UNION ALL SELECT filename FROM import_error WHERE bundle_name = $1 AND tenant = $2) f \
         ORDER BY fileloc LIMIT 1",
    )
    .bind(project)
    .bind(tenant)
    .fetch_optional(store.pool())
    .await?;
    Ok(known.unwrap_or_else(|| fileloc(project, crate::project::DEFAULT_DAG_FILE)))
}

/// Refuses registering into `tenant` DAG ids that another tenant owns.
fn refuse_foreign(registered: &[LatestVersion], tenant: &str) -> Result<(), RegisterError> {
    let foreign: Vec<ForeignDag> = registered
        .iter()
        .filter(|dag| dag.tenant != tenant)
        .map(|dag| ForeignDag {
            dag_id: dag.dag_id.clone(),
            tenant: dag.tenant.clone(),
        })
        .collect();
    if foreign.is_empty() {
        Ok(())
    } else {
        Err(RegisterError::ForeignDags(foreign))
    }
}

pub(crate) fn dag_parsed(
    dag: &Value,
    fileloc: &str,
    project: &str,
    tenant: &str,
    version_hash: String,
    source_hash: &str,
    document_hash: String,
) -> DagParsed {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    DagParsed {
        dag_id: dag_key(tenant, dag["dag_id"].as_str().unwrap_or_default()),
        fileloc: fileloc.to_owned(),
        bundle_name: project.to_owned(),
        version_hash,
        source_hash: Some(source_hash.to_owned()),
        document_hash: Some(document_hash),
        description: dag["description"].as_str().map(str::to_owned),
        owners: strings(&dag["owners"]),
        tags: strings(&dag["tags"]),
        timetable_summary: dag["timetable_summary"].as_str().map(str::to_owned),
        max_active_runs: dag["max_active_runs"].as_i64().unwrap_or(16) as i32,
        max_active_tasks: dag["max_active_tasks"].as_i64().unwrap_or(16) as i32,
        catchup: dag["catchup"].as_bool().unwrap_or(false),
        // Airflow's default: a DAG seen for the first time starts paused.
        is_paused_upon_creation: dag["is_paused_upon_creation"].as_bool().unwrap_or(true),
        access_control: access_control(dag),
        tenant: tenant.to_owned(),
        provenance: None,
        // The schema checked both shapes before the document got here.
        asset_expression: assets::condition_of(dag)
            .ok()
            .flatten()
            .map(|condition| condition.expression()),
        asset_references: assets::references_of(dag).unwrap_or_default(),
        alias_references: assets::alias_references_of(dag).unwrap_or_default(),
    }
}

/// The DAG's `access_control`: the document's, which already merges dag.py's with leoflow.yaml's
/// (`document::build`). Both were checked before the document was built; were one to slip
/// through malformed, the DAG grants nobody anything rather than something unintended.
fn access_control(dag: &Value) -> AccessControl {
    dag.get("access_control")
        .and_then(|grants| serde_json::from_value(grants.clone()).ok())
        .unwrap_or_default()
}
