//! Making an older version of a DAG current again (`leoflow dags rollback`): its recorded
//! document, source and provenance are parsed anew as a `DagParsed`, so the DAG gets a new
//! version that is the old one, and every version before stays in the history.

use leoflow_events::catalog::Provenance;
use leoflow_events::{AppendBatch, EventStore, StoreError};
use leoflow_projector::read;
use serde_json::Value;

use crate::ingest::{Origin, dag_parsed};

/// Why a rollback did nothing.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The DAG has no version of that number.
    #[error("DAG {dag_id:?} has no version {number}")]
    NoVersion {
        /// The DAG.
        dag_id: String,
        /// The number asked for.
        number: i32,
    },
    /// The version's document was not recorded (versions parsed before documents were kept).
    #[error("version {number} of DAG {dag_id:?} has no recorded document to run again")]
    NoDocument {
        /// The DAG.
        dag_id: String,
        /// The version.
        number: i32,
    },
    /// Reading the log or the read models failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appending failed.
    #[error(transparent)]
    Append(#[from] leoflow_events::AppendError),
    /// Reading the read models failed.
    #[error("reading the dag read models failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolledBack {
    /// The version asked for is the current one already: nothing was recorded.
    AlreadyCurrent,
    /// The version asked for is current again.
    Current,
}

/// Makes version `number` of `dag_id` (of `tenant`) current again, as `origin`'s actor.
pub async fn roll_back(
    store: &EventStore,
    tenant: &str,
    dag_id: &str,
    number: i32,
    origin: &Origin,
) -> Result<RolledBack, RollbackError> {
    let pool = store.pool();
    let no_version = || RollbackError::NoVersion {
        dag_id: dag_id.to_owned(),
        number,
    };
    let version = read::dag_versions::by_number(pool, dag_id, number)
        .await?
        .ok_or_else(no_version)?;
    let latest = read::dags::latest_versions(pool, &[dag_id.to_owned()]).await?;
    if latest
        .iter()
        .any(|l| l.version_hash == version.version_hash)
    {
        return Ok(RolledBack::AlreadyCurrent);
    }
    let no_document = || RollbackError::NoDocument {
        dag_id: dag_id.to_owned(),
        number,
    };
    let (Some(document_hash), Some(source_hash)) = (&version.document_hash, &version.source_hash)
    else {
        return Err(no_document());
    };
    let blob = store
        .get_blob(document_hash)
        .await?
        .ok_or_else(no_document)?;
    let dag: Value = serde_json::from_str(&blob.content).map_err(|_| no_document())?;
    let project = version.bundle_name.clone();
    let mut parsed = dag_parsed(
        &dag,
        &version.fileloc,
        &project,
        tenant,
        version.version_hash.clone(),
        source_hash,
        document_hash.clone(),
    );
    // The key it is recorded under already (a DAG keyed before tenants had keys keeps its).
    parsed.dag_id = dag_id.to_owned();
    // The old version's provenance: what runs is the artifact it was.
    parsed.provenance =
        (version.bundle_version.is_some() || version.image.is_some()).then(|| Provenance {
            image: version.image.clone(),
            git_commit: version.bundle_version.clone(),
        });
    store
        .append(AppendBatch::new().push(parsed, &origin.metadata))
        .await?;
    Ok(RolledBack::Current)
}
