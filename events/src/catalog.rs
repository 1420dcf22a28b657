//! The event catalog: every fact Leoflow records, in Airflow's words.
//!
//! Each event type has a name (stored in the log's `type` column), a schema version and a
//! payload struct. Payloads reject unknown fields, so a changed shape must get a new schema
//! version and an [`Upcaster`] from the old one: old events are never rewritten, they are
//! lifted when read.
//!
//! Each event also knows its stream — the consistency boundary appends check versions on:
//! `dag:<dag_id>`, `import:<fileloc>`, `run:<dag_id>/<run_id>` (the run and all its task
//! instances), `variable:<key>`, `connection:<conn_id>`, `pool:<name>`, `scheduler` (leader
//! elections: its version is the leader's epoch).

use crate::digest::AttemptDigest;
use chrono::{DateTime, Utc};
pub use leoflow_secrets::Sealed;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Why a stored event could not be turned into a typed [`Event`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The `type` column names no event this Leoflow knows.
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    /// The event was written by a newer Leoflow than this one.
    #[error("{event_type} has schema version {found}, newer than this Leoflow knows ({known})")]
    NewerSchema {
        /// Event type name.
        event_type: String,
        /// Version found in the log.
        found: i32,
        /// Newest version this binary knows.
        known: i32,
    },
    /// An old schema version with no upcaster to the next one.
    #[error("{event_type} v{version} cannot be upcast: no upcaster from that version")]
    NoUpcaster {
        /// Event type name.
        event_type: String,
        /// The version that has no upcaster.
        version: i32,
    },
    /// An upcaster refused the payload.
    #[error("{event_type} v{version} upcast failed: {reason}")]
    UpcastFailed {
        /// Event type name.
        event_type: String,
        /// The version the upcaster started from.
        version: i32,
        /// What the upcaster said.
        reason: String,
    },
    /// The payload does not match the current schema of its type.
    #[error("{event_type} v{version} payload does not match its schema: {reason}")]
    BadPayload {
        /// Event type name.
        event_type: String,
        /// Schema version of the payload.
        version: i32,
        /// serde's description of the mismatch.
        reason: String,
    },
}

/// Lifts a payload of `event_type` from `from_version` to `from_version + 1`.
///
/// Upcasters chain: a v1 event of a type now at v3 passes through the v1 and v2 upcasters.
#[derive(Clone, Copy)]
pub struct Upcaster {
    /// The event type this upcaster applies to.
    pub event_type: &'static str,
    /// The version it reads; it produces `from_version + 1`.
    pub from_version: i32,
    /// The transformation. An error stops decoding with [`DecodeError::UpcastFailed`].
    pub apply: fn(Value) -> Result<Value, String>,
}

/// The upcasters of the current catalog: a schema change adds its upcaster here together with
/// the version bump.
pub const UPCASTERS: &[Upcaster] = &[
    Upcaster {
        event_type: "TaskDispatched",
        from_version: 1,
        apply: task_dispatched_token_to_digest,
    },
    Upcaster {
        event_type: "VariableSet",
        from_version: 1,
        apply: variable_value_to_sealed,
    },
    Upcaster {
        event_type: "ConnectionSet",
        from_version: 1,
        apply: connection_secrets_to_sealed,
    },
    Upcaster {
        event_type: "RunQueued",
        from_version: 1,
        apply: run_queued_without_task_ids,
    },
];

/// `RunQueued` v1 → v2: the run named none of its tasks (their instances appeared as they were
/// scheduled).
fn run_queued_without_task_ids(mut payload: Value) -> Result<Value, String> {
    payload
        .as_object_mut()
        .ok_or("the payload is not an object")?
        .insert("task_ids".into(), Value::Array(Vec::new()));
    Ok(payload)
}

/// `VariableSet` v1 → v2: the value was stored in clear, and is named so.
fn variable_value_to_sealed(mut payload: Value) -> Result<Value, String> {
    let object = payload
        .as_object_mut()
        .ok_or("the payload is not an object")?;
    let value = object.remove("value").ok_or("value is missing")?;
    let text = value.as_str().ok_or("value is not a string")?;
    object.insert(
        "value".into(),
        sealed_json(Sealed::Clear { text: text.into() }),
    );
    Ok(payload)
}

/// `ConnectionSet` v1 → v2: the password was encrypted with the master key itself, the extra
/// stored in clear.
fn connection_secrets_to_sealed(mut payload: Value) -> Result<Value, String> {
    let object = payload
        .as_object_mut()
        .ok_or("the payload is not an object")?;
    let password = match object.remove("password_ciphertext") {
        Some(Value::String(ciphertext)) => sealed_json(Sealed::MasterKey { ciphertext }),
        Some(Value::Null) | None => Value::Null,
        Some(_) => return Err("password_ciphertext is not a string".into()),
    };
    object.insert("password".into(), password);
    let extra = match object.remove("extra") {
        Some(Value::String(text)) => sealed_json(Sealed::Clear { text }),
        Some(Value::Null) | None => Value::Null,
        Some(_) => return Err("extra is not a string".into()),
    };
    object.insert("extra".into(), extra);
    Ok(payload)
}

fn sealed_json(sealed: Sealed) -> Value {
    serde_json::to_value(sealed).expect("a sealed value serializes")
}

/// `TaskDispatched` v1 → v2: the attempt token becomes its digest.
fn task_dispatched_token_to_digest(mut payload: Value) -> Result<Value, String> {
    let object = payload
        .as_object_mut()
        .ok_or("the payload is not an object")?;
    let token = object
        .remove("attempt_token")
        .and_then(|t| t.as_str().and_then(|t| Uuid::parse_str(t).ok()))
        .ok_or("attempt_token is missing or not a UUID")?;
    object.insert(
        "attempt_digest".into(),
        Value::String(AttemptDigest::of(&token).to_string()),
    );
    Ok(payload)
}

/// Lifts `payload` from `version` to `target` with the given upcasters.
pub fn upcast(
    upcasters: &[Upcaster],
    event_type: &str,
    mut version: i32,
    target: i32,
    mut payload: Value,
) -> Result<Value, DecodeError> {
    if version > target {
        return Err(DecodeError::NewerSchema {
            event_type: event_type.to_owned(),
            found: version,
            known: target,
        });
    }
    while version < target {
        let step = upcasters
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == version)
            .ok_or_else(|| DecodeError::NoUpcaster {
                event_type: event_type.to_owned(),
                version,
            })?;
        payload = (step.apply)(payload).map_err(|reason| DecodeError::UpcastFailed {
            event_type: event_type.to_owned(),
            version,
            reason,
        })?;
        version += 1;
    }
    Ok(payload)
}

/// Identifies one task instance: a task of a dag run, with its map index (-1 when unmapped).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskInstanceKey {
    /// The DAG.
    pub dag_id: String,
    /// The dag run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Index among mapped task instances; -1 for an unmapped task (Airflow's convention).
    #[serde(default = "unmapped")]
    pub map_index: i32,
}

fn unmapped() -> i32 {
    -1
}

impl TaskInstanceKey {
    /// Key of an unmapped task instance.
    pub fn new(dag_id: &str, run_id: &str, task_id: &str) -> Self {
        Self::mapped(dag_id, run_id, task_id, -1)
    }

    /// Key of a mapped task instance.
    pub fn mapped(dag_id: &str, run_id: &str, task_id: &str, map_index: i32) -> Self {
        Self {
            dag_id: dag_id.to_owned(),
            run_id: run_id.to_owned(),
            task_id: task_id.to_owned(),
            map_index,
        }
    }
}

/// How a dag run came to be, with Airflow's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    /// Triggered by a user or the API.
    Manual,
    /// Created by the DAG's timetable.
    Scheduled,
    /// Created by a backfill.
    Backfill,
    /// Triggered by asset events.
    AssetTriggered,
}

impl RunType {
    /// Airflow's string for this run type (also the prefix of generated run ids).
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Manual => "manual",
            RunType::Scheduled => "scheduled",
            RunType::Backfill => "backfill",
            RunType::AssetTriggered => "asset_triggered",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads. Timestamps of "when it happened" are the envelope's `recorded_at`; payloads carry
// only times that are decisions (a run's logical date, when a retry is due).
// ---------------------------------------------------------------------------------------------

/// A DAG file was parsed and yielded this DAG. A changed `version_hash` is a new DAG version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagParsed {
    /// The DAG.
    pub dag_id: String,
    /// Path of the file that defines it.
    pub fileloc: String,
    /// The bundle (project) the file belongs to.
    pub bundle_name: String,
    /// Canonical content hash of the compiled DAG: the version identity.
    pub version_hash: String,
    /// Blob hash of the DAG file's source text (the UI's Code tab).
    pub source_hash: Option<String>,
    /// Blob hash of the compiled DAG document.
    pub document_hash: Option<String>,
    /// The DAG's description.
    pub description: Option<String>,
    /// Owners of the DAG's tasks.
    pub owners: Vec<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Human summary of the schedule (`"0 * * * *"`, `"@daily"`, `null` for none).
    pub timetable_summary: Option<String>,
    /// `max_active_runs`.
    pub max_active_runs: i32,
    /// `max_active_tasks`.
    pub max_active_tasks: i32,
    /// `catchup`.
    pub catchup: bool,
    /// Whether a DAG seen for the first time starts paused.
    pub is_paused_upon_creation: bool,
    /// Per-DAG access (Airflow's `access_control`): role → what it may do with this DAG.
    #[serde(default, skip_serializing_if = "AccessControl::is_empty")]
    pub access_control: AccessControl,
    /// The tenant that owns the DAG. A DAG id belongs to one tenant at a time (until the DAG
    /// is deleted). Events recorded before tenants existed have none: they belong to
    /// [`DEFAULT_TENANT`](crate::DEFAULT_TENANT).
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Where a pushed artifact came from (`leoflow push`); absent for what Lite or `compile
    /// --register` parsed from files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// For a DAG scheduled on assets, its condition in Airflow's `asset_expression` shape
    /// (`{"asset": {"name", "uri", "group"}}`, `{"all": [...]}`, `{"any": [...]}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset_expression: Option<Value>,
    /// Every asset the DAG names (in its schedule, or as a task's outlet or inlet), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub asset_references: Vec<AssetReference>,
    /// Every asset alias the DAG names, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alias_references: Vec<AliasReference>,
}

/// An asset alias as a DAG names it (Airflow's `AssetAlias`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasReference {
    /// The alias's name (what identifies it).
    pub name: String,
    /// Its group.
    pub group: String,
    /// How the DAG uses it.
    pub role: AssetRole,
    /// The task naming it as an outlet or an inlet; `None` for the schedule.
    pub task_id: Option<String>,
}

/// An asset as a DAG names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetReference {
    /// The asset.
    pub asset: AssetKey,
    /// Its group (Airflow's default is `asset`).
    pub group: String,
    /// Its `extra`, as the DAG defines it (a JSON object, kept as text so references sort).
    pub extra: String,
    /// How the DAG uses it.
    pub role: AssetRole,
    /// The task naming it as an outlet or an inlet; `None` for the schedule.
    pub task_id: Option<String>,
}

/// How a DAG uses an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetRole {
    /// The DAG is scheduled on it.
    Schedule,
    /// A task updates it.
    Outlet,
    /// A task reads it.
    Inlet,
}

/// Where a pushed DAG artifact came from. Who pushed it is the event's actor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The task image built with it (`registry/name:tag@sha256:…`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The git commit it was compiled from, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

fn default_tenant() -> String {
    crate::DEFAULT_TENANT.to_owned()
}

/// The kinds of the log's streams, the part before the first `:` (`run` of `run:etl/r1`,
/// `variable` of `variable:key`; `variable@acme` of a tenant's Variable is that kind in a
/// tenant). The leader's stream, [`LEADER_STREAM`], has no kind.
pub const STREAM_KINDS: [&str; 13] = [
    "api-token",
    "asset",
    "callback",
    "connection",
    "dag",
    "favorite",
    "generation",
    "import",
    "pool",
    "rejected",
    "rendered",
    "run",
    "variable",
];

/// The kinds of the streams named after a DAG's key (`dag:acme:etl`, `run:acme:etl/r1`).
pub const DAG_STREAM_KINDS: [&str; 6] = [
    "callback",
    "dag",
    "generation",
    "rejected",
    "rendered",
    "run",
];

/// The stream of a Variable, Connection or Pool (`kind`) named `key` in `tenant`:
/// `variable:{key}` in the default tenant (as before tenants existed, so Lite's streams and
/// every older stream keep their names), `variable@{tenant}:{key}` in another. A tenant name
/// holds neither `@` nor `:`, so no two tenants' streams can be the same.
pub fn owned_stream(kind: &str, tenant: &str, key: &str) -> String {
    if tenant == crate::DEFAULT_TENANT {
        format!("{kind}:{key}")
    } else {
        format!("{kind}@{tenant}:{key}")
    }
}

/// Airflow's `access_control` of a DAG: for each role named, the DAG-level actions it grants
/// (`{"team-a": {"DAGs": ["can_read", "can_edit"], "DAG Runs": ["can_create"]}}`).
pub type AccessControl = std::collections::BTreeMap<String, DagGrant>;

/// What `access_control` grants one role on one DAG.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagGrant {
    /// Actions on the DAG itself: `can_read`, `can_edit`, `can_delete`.
    #[serde(
        rename = "DAGs",
        default,
        skip_serializing_if = "std::collections::BTreeSet::is_empty"
    )]
    pub dags: std::collections::BTreeSet<DagAction>,
    /// Actions on its runs: `can_read`, `can_create`, `can_delete`.
    #[serde(
        rename = "DAG Runs",
        default,
        skip_serializing_if = "std::collections::BTreeSet::is_empty"
    )]
    pub dag_runs: std::collections::BTreeSet<DagAction>,
}

/// An action `access_control` grants, as FAB names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DagAction {
    /// `can_read`.
    CanRead,
    /// `can_edit`.
    CanEdit,
    /// `can_create` (runs only).
    CanCreate,
    /// `can_delete`.
    CanDelete,
}

/// A project's DAG file when it names none: an import error whose file could not be found (no
/// DAG file, or several candidates) is recorded against `<project>/dag.py`, and the project's
/// next `DagParsed` clears it, whatever its file.
pub const DEFAULT_DAG_FILE: &str = "dag.py";

/// A DAG file failed to parse; shown as an import error until the file parses again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagImportFailed {
    /// Path of the file.
    pub fileloc: String,
    /// The bundle the file belongs to.
    pub bundle_name: String,
    /// What went wrong, with file and line.
    pub error: String,
    /// The tenant the project was registered into (failures recorded before tenants existed
    /// are the default tenant's).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A DAG was deleted with its runs, task instances and XComs (Airflow's "delete DAG"). The
/// events that made them stay in the log; the read models forget them. Parsing the file again
/// brings the DAG back as new.
///
/// Recorded on the DAG's generation stream ([`generation_stream`]), whose version is the
/// DAG's **generation**: every append to one of the DAG's runs expects that stream at the
/// generation the run was queued in, so nothing of a deleted run can land after its delete.
/// (Before generations, it was recorded on `dag:<dag_id>`; such events stay there.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagDeleted {
    /// The DAG.
    pub dag_id: String,
}

/// A user marked a DAG as a favorite (the UI's star).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagFavorited {
    /// The DAG.
    pub dag_id: String,
    /// The user.
    pub username: String,
}

/// A user took a DAG off their favorites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagUnfavorited {
    /// The DAG.
    pub dag_id: String,
    /// The user.
    pub username: String,
}

/// A note was set on a dag run (or cleared, with `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunNoteSet {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The note.
    pub note: Option<String>,
}

/// A DAG was paused: no new runs are created and queued runs wait.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagPaused {
    /// The DAG.
    pub dag_id: String,
}

/// A DAG was unpaused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagUnpaused {
    /// The DAG.
    pub dag_id: String,
}

/// A dag run was created and waits to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunQueued {
    /// The DAG.
    pub dag_id: String,
    /// The run's id, unique within the DAG.
    pub run_id: String,
    /// How the run came to be.
    pub run_type: RunType,
    /// Airflow's logical date (`None` for runs triggered without one).
    pub logical_date: Option<DateTime<Utc>>,
    /// Start of the data interval.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// End of the data interval.
    pub data_interval_end: Option<DateTime<Utc>>,
    /// Earliest time the run may start.
    pub run_after: DateTime<Utc>,
    /// The run's `conf` (a JSON object).
    pub conf: Value,
    /// Who or what triggered it (`ui`, `rest_api`, `timetable`, `cli`, …).
    pub triggered_by: String,
    /// The DAG version the run executes.
    pub dag_version_hash: Option<String>,
    /// The tasks of that version: the run starts with an instance of each, without a state,
    /// as Airflow creates them with the run (a mapped task's stands for its instances until
    /// it is expanded). Runs queued before v2 name none: their instances appear as they are
    /// scheduled.
    pub task_ids: Vec<String>,
    /// For an asset-triggered run, the asset events it consumes (Airflow's
    /// `consumed_asset_events`): every event queued for the DAG since its last such run. Their
    /// queue entries go with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumed_asset_events: Vec<ConsumedAssetEvent>,
}

/// An asset event a run consumed: the event's log position (its id) and its asset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumedAssetEvent {
    /// The `AssetEventRecorded` event's position in the log (Airflow's asset event id).
    pub event_id: i64,
    /// Its asset.
    pub asset: AssetKey,
}

/// What identifies an asset, as in Airflow 3: its name and URI together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetKey {
    /// The asset's name.
    pub name: String,
    /// The asset's URI.
    pub uri: String,
}

impl AssetKey {
    /// The asset's id in the API (Airflow's `asset_id`): derived from the key, the same in
    /// every replay and on every replica.
    pub fn id(&self) -> i64 {
        derived_id(&[self.name.as_bytes(), b"\n", self.uri.as_bytes()].concat())
    }
}

/// An asset alias's id in the API: derived from its name, as [`AssetKey::id`].
pub fn alias_id(name: &str) -> i64 {
    derived_id(format!("alias\n{name}").as_bytes())
}

/// 48 bits of [`stable_hash`] of `bytes`, so JavaScript numbers hold it; never 0 (Airflow's
/// ids start at 1).
fn derived_id(bytes: &[u8]) -> i64 {
    ((stable_hash(bytes) >> 16) as i64).max(1)
}

/// FNV-1a of `bytes`: the same in every build, process and replay (unlike std's hasher), for
/// what Leoflow derives from the log (ids, run ids).
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An asset was updated (Airflow's asset event): a task listing it in `outlets` succeeded, or
/// someone recorded it through the API. The DAGs scheduled on the asset that were not paused
/// then queue it, as Airflow's asset manager queues them; the writer names them, so the queue
/// is a fold of the log and needs no lookup on replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetEventRecorded {
    /// The asset.
    pub asset: AssetKey,
    /// The asset's group (an asset a task adds through an alias may be new: it is registered
    /// with this group).
    pub group: String,
    /// The event's `extra` (a JSON object).
    pub extra: Value,
    /// The task instance whose success it is; `None` for an event recorded through the API.
    pub source: Option<TaskInstanceKey>,
    /// The aliases the task added it through (`outlet_events[AssetAlias(...)].add(...)`),
    /// sorted: from then on each alias stands for the asset too, as Airflow resolves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_aliases: Vec<String>,
    /// The DAGs it queues a run for, sorted.
    pub queued: Vec<String>,
}

impl AssetEventRecorded {
    /// The stream it is appended to: its task instance's run (with the success it comes from),
    /// or the asset's own.
    fn stream(&self) -> String {
        match &self.source {
            Some(ti) => run_stream(&ti.dag_id, &ti.run_id),
            None => format!("asset:{}|{}", self.asset.name, self.asset.uri),
        }
    }
}

/// Someone cleared queued asset events of a DAG (the API's `DELETE .../queuedEvents`): the
/// DAG's queue entries of these assets no longer count towards its next run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetQueueCleared {
    /// The DAG whose queue it is.
    pub dag_id: String,
    /// The assets whose entries go (those the DAG's queue held), sorted.
    pub assets: Vec<AssetKey>,
}

/// A dag run began executing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunStarted {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
}

/// A dag run finished successfully.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSucceeded {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
}

/// A dag run finished in failure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFailed {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Why, when there is more to say than "a leaf task failed".
    pub reason: Option<String>,
}

/// Which of a DAG's own callbacks (Airflow's DAG-level `on_success_callback` /
/// `on_failure_callback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DagCallback {
    /// `on_success_callback`: the run succeeded.
    OnSuccess,
    /// `on_failure_callback`: the run failed.
    OnFailure,
}

impl DagCallback {
    /// Its name in dag.py (`on_success_callback`).
    pub fn name(self) -> &'static str {
        match self {
            DagCallback::OnSuccess => "on_success_callback",
            DagCallback::OnFailure => "on_failure_callback",
        }
    }
}

/// A run ended as the scheduler decided it, and its DAG has the callback of that end: the
/// callback is to run (appended with the run's end, so a control plane that stops before it
/// ran runs it when it starts again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagCallbackRequested {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The callback.
    pub callback: DagCallback,
    /// Airflow's reason, the context's `reason`: `success` or `task_failure`.
    pub reason: String,
}

/// A DAG callback ran (its own failures are only logged, as Airflow logs them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagCallbackRan {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The callback.
    pub callback: DagCallback,
    /// What went wrong, when something did (a function that raised, a DAG file that failed to
    /// load, a control plane with no triggerer to run it).
    pub error: Option<String>,
}

/// Which of a task's callbacks a try's end asks for, when its runner could not run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskCallback {
    /// `on_failure_callback`: the try failed and no retry is left.
    OnFailure,
    /// `on_retry_callback`: the try failed and the task will be retried.
    OnRetry,
}

impl TaskCallback {
    /// Its name in dag.py (`on_failure_callback`).
    pub fn name(self) -> &'static str {
        match self {
            TaskCallback::OnFailure => "on_failure_callback",
            TaskCallback::OnRetry => "on_retry_callback",
        }
    }
}

/// A try ended without its runner (its agent or pod died, it stopped answering, it was killed
/// past its `execution_timeout`), so the runner could not run the task's callback of that end,
/// and the task has one: it is to run (Airflow's scheduler asks its DAG processor the same, a
/// `TaskCallbackRequest`). Appended with the try's end.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCallbackRequested {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try that ended.
    pub try_number: i32,
    /// The callback.
    pub callback: TaskCallback,
    /// Why the try ended.
    pub reason: String,
}

/// A task callback of [`TaskCallbackRequested`] ran (its own failures are only logged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCallbackRan {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try that ended.
    pub try_number: i32,
    /// The callback.
    pub callback: TaskCallback,
    /// What went wrong, when something did (a function that raised, a DAG file that failed to
    /// load, a task the DAG no longer has).
    pub error: Option<String>,
}

/// A dag run was cleared and is queued again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunCleared {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
}

/// A task instance's dependencies are met; `try_number` is the try about to be made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskScheduled {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try this scheduling is for (1 for the first).
    pub try_number: i32,
}

/// A task instance got its pool slots and waits for an executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskQueued {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// The pool whose slots it holds.
    pub pool: String,
    /// How many slots.
    pub pool_slots: i32,
    /// Effective priority weight.
    pub priority_weight: i32,
    /// Executor queue.
    pub queue: String,
}

/// A task attempt was handed to an executor, with the token its agent must present (only its
/// digest is recorded: the token lives with the executor and the agent).
///
/// Schema version 2; version 1 held the token itself (`attempt_token`), which the upcaster
/// turns into its digest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDispatched {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// Digest of this attempt's fencing token: reports without the token are rejected.
    pub attempt_digest: AttemptDigest,
    /// Which executor runs it.
    pub executor: String,
}

/// The task's agent reported that the attempt is running.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskStarted {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// Host the attempt runs on.
    pub hostname: String,
    /// Process id of the attempt, when known.
    pub pid: Option<i32>,
}

/// The attempt succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSucceeded {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
}

/// The attempt failed and no retry is left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFailed {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// Why it failed, as a user should read it.
    pub reason: String,
}

/// The attempt failed and the task will be retried at `retry_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskUpForRetry {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try that failed.
    pub try_number: i32,
    /// Why it failed.
    pub reason: String,
    /// When the next try becomes due.
    pub retry_at: DateTime<Utc>,
}

/// The try deferred itself (`self.defer(trigger=…)`): it holds no process until its trigger
/// fires (then [`TaskResumed`] carries it on in `next_method`, in the same try) or its
/// `timeout_at` passes (then it fails, retries applying), as in Airflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskDeferred {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try that deferred.
    pub try_number: i32,
    /// What it waits for.
    pub trigger: DeferredTrigger,
    /// The operator's method the try resumes in.
    pub next_method: String,
    /// The keyword arguments of `next_method`: a JSON object, sealed with the run's data key
    /// (Airflow encrypts a trigger's arguments; they may hold credentials).
    pub next_kwargs: Sealed,
    /// When the wait fails, if its trigger has not fired by then.
    pub timeout_at: Option<DateTime<Utc>>,
}

/// What a deferred try waits for: a moment (a timer of the scheduler), or a trigger the
/// triggerer runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DeferredTrigger {
    /// A moment (Airflow's `DateTimeTrigger`, and `TimeDeltaTrigger`, which is one): a timer of
    /// the scheduler, whose event is the moment.
    Time {
        /// When it fires.
        moment: DateTime<Utc>,
        /// The task ends there, successful, without carrying on (Airflow's
        /// `end_from_trigger=True`): no process runs again.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        end_from_trigger: bool,
    },
    /// Any other trigger (Airflow's `BaseTrigger` subclasses): the triggerer builds it again
    /// from its class and arguments and runs it until it yields an event.
    Python {
        /// The trigger's class, `module.Class`, as its `serialize()` names it.
        classpath: String,
        /// Its keyword arguments, a JSON object (datetimes tagged as Airflow tags them), sealed
        /// with the run's data key: Airflow encrypts a trigger's arguments too.
        kwargs: Sealed,
    },
    /// A person's answer (Airflow's human-in-the-loop operators): the API's answer resumes the
    /// try with it as the event; at `answer_by`, if none came, the try resumes with `unanswered`.
    Person {
        /// What the person is asked (Airflow's `HITLDetail` request: `subject`, `body`,
        /// `options`, `defaults`, `multiple`, `params`, `assigned_users`).
        request: serde_json::Value,
        /// When the wait ends without an answer, if it does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        answer_by: Option<DateTime<Utc>>,
        /// The event the try resumes with at `answer_by` (the defaults chosen, or an error).
        unanswered: serde_json::Value,
    },
}

/// A try waits to be poked again (a sensor in `mode="reschedule"`): it holds no process
/// until `reschedule_at`, then [`TaskResumed`] runs it again in the same try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRescheduled {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// When it runs again.
    pub reschedule_at: DateTime<Utc>,
}

/// A deferred try's trigger fired, or its wait failed, or a rescheduled try's time came: the
/// task instance is scheduled again, in the same try, to carry on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResumed {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try, which goes on.
    pub try_number: i32,
    /// The trigger's event payload (JSON, datetimes as Airflow serialises them); `None` for a
    /// rescheduled try.
    pub trigger_event: Option<serde_json::Value>,
    /// Why the wait failed (its timeout passed): the try carries on in Airflow's `__fail__`,
    /// which raises `TaskDeferralTimeout` in the task (a sensor makes it its own timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// A try rendered its template fields (what Airflow's "Rendered Templates" shows); the values
/// are a JSON object in a blob. Kept on a stream of its own: it decides nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskRendered {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try.
    pub try_number: i32,
    /// Blob hash of the rendered fields (a JSON object).
    pub fields_hash: String,
}

/// The task instance was skipped (branching, short-circuit, trigger rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSkipped {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// Why, when known.
    pub reason: Option<String>,
}

/// An upstream failure means this task instance will not run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskUpstreamFailed {
    /// The task instance.
    pub ti: TaskInstanceKey,
}

/// The task instance was cleared and will be scheduled again; its tries are kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskCleared {
    /// The task instance.
    pub ti: TaskInstanceKey,
}

/// A mapped task was expanded: its placeholder instance (`ti`, map index -1) gives way to
/// `count` instances with map indexes `0..count`, as Airflow does at run time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMapped {
    /// The placeholder task instance (map index -1).
    pub ti: TaskInstanceKey,
    /// How many mapped instances there are (at least 1; an empty expansion is a skip).
    pub count: i32,
}

/// A task attempt pushed an XCom; its value is the blob `value_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XComPushed {
    /// The task instance.
    pub ti: TaskInstanceKey,
    /// The try that pushed it.
    pub try_number: i32,
    /// XCom key (`return_value` for a task's result).
    pub key: String,
    /// Blob hash of the JSON value.
    pub value_hash: String,
    /// Size of the serialized value in bytes.
    pub size_bytes: i64,
    /// For a list or dict value, its number of items: what a task mapped over it expands to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
}

/// A report or request of a task agent was refused: a forged or expired attempt token, a
/// stale try, or a transition the state machine forbids. Recorded so the refusal is audited;
/// nothing else changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandRejected {
    /// The task instance the command named.
    pub ti: TaskInstanceKey,
    /// The try it named.
    pub try_number: i32,
    /// What was asked (`register`, `finish`, `push_xcom`, …).
    pub command: String,
    /// Why it was refused.
    pub reason: String,
}

/// A Variable was created or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableSet {
    /// Variable key.
    pub key: String,
    /// Its value, sealed with the Variable's data key (v1 held it in clear; its upcaster
    /// names that form).
    pub value: Sealed,
    /// Description.
    pub description: Option<String>,
    /// The tenant that owns it (events recorded before tenants existed: the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A Variable was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariableDeleted {
    /// Variable key.
    pub key: String,
    /// The tenant that owns it (events recorded before tenants existed: the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A Connection was created or changed. The password and the extra are sealed with the
/// Connection's data key by whoever builds the event, so the log never holds them in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSet {
    /// Connection id.
    pub conn_id: String,
    /// Connection type (`postgres`, `http`, …).
    pub conn_type: String,
    /// Description.
    pub description: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Schema.
    pub schema: Option<String>,
    /// Login.
    pub login: Option<String>,
    /// The password, sealed.
    pub password: Option<Sealed>,
    /// Port.
    pub port: Option<i32>,
    /// Extra (a JSON string, as in Airflow), sealed.
    pub extra: Option<Sealed>,
    /// The tenant that owns it (events recorded before tenants existed: the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A Connection was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionDeleted {
    /// Connection id.
    pub conn_id: String,
    /// The tenant that owns it (events recorded before tenants existed: the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A pool was created or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSet {
    /// Pool name.
    pub name: String,
    /// Number of slots.
    pub slots: i32,
    /// Description.
    pub description: Option<String>,
    /// Whether deferred tasks count against the slots.
    pub include_deferred: bool,
    /// The tenant that owns it (events recorded before tenants existed: the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A pool was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolDeleted {
    /// Pool name.
    pub name: String,
    /// The tenant that owns it (events recorded before tenants existed: the default tenant).
    #[serde(default = "default_tenant")]
    pub tenant: String,
}

/// A Leoflow API token was issued, for a machine (CI, GitOps) to call `/api/v2` with
/// `Authorization: Bearer`. Its secret is never recorded: only the SHA-256 digest of it, which
/// a presented token is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenIssued {
    /// The token's id (the public part of the token, listed and revoked by it).
    pub token_id: String,
    /// The Airflow role its bearer acts with.
    pub role: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// SHA-256 of its secret, hex.
    pub digest: String,
    /// When it stops being accepted; `None`: until revoked.
    pub expires_at: Option<DateTime<Utc>>,
    /// What it is for.
    pub description: Option<String>,
    /// The custom roles its bearer also holds (`leoflow tokens create --dag-role`): each
    /// reaches the DAGs whose `access_control` names it, as a sign-in mapped to it does.
    /// Tokens issued before tokens had custom roles have none, and a token without any
    /// records none, so its payload is what it always was.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dag_roles: Vec<String>,
}

/// An API token was revoked: it is refused from then on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTokenRevoked {
    /// The token's id.
    pub token_id: String,
}

/// A scheduler became the active one. The stream's version after this event is the leader's
/// **epoch**: every append the leader makes expects the stream still at that version, so once
/// a successor is elected the log refuses whatever the deposed leader still decides (it may
/// not have noticed yet that its lock is gone).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerElected {
    /// The scheduler's id for this term (its heartbeat row carries it too).
    pub scheduler_id: Uuid,
    /// Its host.
    pub hostname: String,
    /// Its process id.
    pub pid: i32,
}

/// The stream of [`SchedulerElected`]: its version is the current leader's epoch.
pub const LEADER_STREAM: &str = "scheduler";

/// The stream of a dag run, `run:<dag_id>/<run_id>`: every run and task-instance event of
/// that run, so a decision can expect one version for the whole run.
pub fn run_stream(dag_id: &str, run_id: &str) -> String {
    format!("run:{dag_id}/{run_id}")
}

/// The stream of a DAG's deletes, `generation:<dag_id>`: its version is how many times the
/// DAG was deleted, its generation (0, no stream, until the first delete). Apart from
/// `dag:<dag_id>` so that parsing or pausing the DAG does not move it: a run's appends expect
/// it, and only a delete must fence them.
pub fn generation_stream(dag_id: &str) -> String {
    format!("generation:{dag_id}")
}

/// Declares the catalog: the [`Event`] enum, each variant's type name, schema version and
/// stream, and decoding from the log with upcasting.
macro_rules! catalog {
    ($( $(#[$doc:meta])* $name:ident v $version:literal, stream |$e:ident| $stream:expr; )*) => {
        /// Every event Leoflow records.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $( $(#[$doc])* $name($name), )*
        }

        /// Every event type with its current schema version.
        pub const EVENT_TYPES: &[(&str, i32)] = &[ $( (stringify!($name), $version), )* ];

        impl Event {
            /// The type name stored in the log.
            pub fn event_type(&self) -> &'static str {
                match self { $( Event::$name(_) => stringify!($name), )* }
            }

            /// The schema version this binary writes for this type.
            pub fn schema_version(&self) -> i32 {
                match self { $( Event::$name(_) => $version, )* }
            }

            /// The stream this event belongs to.
            pub fn stream(&self) -> String {
                match self { $( Event::$name($e) => $stream, )* }
            }

            /// The payload as stored in the log.
            pub fn payload(&self) -> Value {
                let payload = match self { $( Event::$name(p) => serde_json::to_value(p), )* };
                // Payloads are plain structs of strings, numbers and JSON values.
                payload.expect("event payloads always serialize")
            }

            /// Decodes a stored event, upcasting older schema versions with [`UPCASTERS`].
            pub fn decode(event_type: &str, version: i32, payload: Value) -> Result<Event, DecodeError> {
                Self::decode_with(UPCASTERS, event_type, version, payload)
            }

            /// [`Event::decode`] with an explicit upcaster set.
            pub fn decode_with(
                upcasters: &[Upcaster],
                event_type: &str,
                version: i32,
                payload: Value,
            ) -> Result<Event, DecodeError> {
                match event_type {
                    $( stringify!($name) => {
                        let payload = upcast(upcasters, event_type, version, $version, payload)?;
                        serde_json::from_value(payload).map(Event::$name).map_err(|e| {
                            DecodeError::BadPayload {
                                event_type: event_type.to_owned(),
                                version,
                                reason: e.to_string(),
                            }
                        })
                    } )*
                    other => Err(DecodeError::UnknownType(other.to_owned())),
                }
            }
        }

        $( impl From<$name> for Event {
            fn from(payload: $name) -> Self { Event::$name(payload) }
        } )*
    };
}

catalog! {
    /// See [`DagParsed`].
    DagParsed v 1, stream |e| format!("dag:{}", e.dag_id);
    /// See [`DagImportFailed`].
    DagImportFailed v 1, stream |e| format!("import:{}", e.fileloc);
    /// See [`DagPaused`].
    DagPaused v 1, stream |e| format!("dag:{}", e.dag_id);
    /// See [`DagUnpaused`].
    DagUnpaused v 1, stream |e| format!("dag:{}", e.dag_id);
    /// See [`DagDeleted`].
    DagDeleted v 1, stream |e| generation_stream(&e.dag_id);
    /// See [`DagFavorited`].
    DagFavorited v 1, stream |e| format!("favorite:{}", e.username);
    /// See [`DagUnfavorited`].
    DagUnfavorited v 1, stream |e| format!("favorite:{}", e.username);
    /// See [`RunNoteSet`].
    RunNoteSet v 1, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`RunQueued`].
    RunQueued v 2, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`RunStarted`].
    RunStarted v 1, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`RunSucceeded`].
    RunSucceeded v 1, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`RunFailed`].
    RunFailed v 1, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`RunCleared`].
    RunCleared v 1, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`DagCallbackRequested`].
    DagCallbackRequested v 1, stream |e| run_stream(&e.dag_id, &e.run_id);
    /// See [`DagCallbackRan`].
    DagCallbackRan v 1, stream |e| format!("callback:{}/{}", e.dag_id, e.run_id);
    /// See [`TaskCallbackRequested`].
    TaskCallbackRequested v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskCallbackRan`].
    TaskCallbackRan v 1, stream |e| format!("callback:{}/{}", e.ti.dag_id, e.ti.run_id);
    /// See [`TaskScheduled`].
    TaskScheduled v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskQueued`].
    TaskQueued v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskDispatched`].
    TaskDispatched v 2, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskStarted`].
    TaskStarted v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskSucceeded`].
    TaskSucceeded v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskFailed`].
    TaskFailed v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskUpForRetry`].
    TaskUpForRetry v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskDeferred`].
    TaskDeferred v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskRescheduled`].
    TaskRescheduled v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskResumed`].
    TaskResumed v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskSkipped`].
    TaskSkipped v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskUpstreamFailed`].
    TaskUpstreamFailed v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskCleared`].
    TaskCleared v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskMapped`].
    TaskMapped v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`XComPushed`].
    XComPushed v 1, stream |e| run_stream(&e.ti.dag_id, &e.ti.run_id);
    /// See [`TaskRendered`].
    TaskRendered v 1, stream |e| format!("rendered:{}/{}", e.ti.dag_id, e.ti.run_id);
    /// See [`CommandRejected`].
    CommandRejected v 1, stream |e| format!("rejected:{}/{}", e.ti.dag_id, e.ti.run_id);
    /// See [`VariableSet`].
    VariableSet v 2, stream |e| owned_stream("variable", &e.tenant, &e.key);
    /// See [`VariableDeleted`].
    VariableDeleted v 1, stream |e| owned_stream("variable", &e.tenant, &e.key);
    /// See [`ConnectionSet`].
    ConnectionSet v 2, stream |e| owned_stream("connection", &e.tenant, &e.conn_id);
    /// See [`ConnectionDeleted`].
    ConnectionDeleted v 1, stream |e| owned_stream("connection", &e.tenant, &e.conn_id);
    /// See [`PoolSet`].
    PoolSet v 1, stream |e| owned_stream("pool", &e.tenant, &e.name);
    /// See [`PoolDeleted`].
    PoolDeleted v 1, stream |e| owned_stream("pool", &e.tenant, &e.name);
    /// See [`SchedulerElected`].
    SchedulerElected v 1, stream |_e| LEADER_STREAM.to_owned();
    /// See [`ApiTokenIssued`].
    ApiTokenIssued v 1, stream |e| format!("api-token:{}", e.token_id);
    /// See [`ApiTokenRevoked`].
    ApiTokenRevoked v 1, stream |e| format!("api-token:{}", e.token_id);
    /// See [`AssetEventRecorded`].
    AssetEventRecorded v 1, stream |e| e.stream();
    /// See [`AssetQueueCleared`].
    AssetQueueCleared v 1, stream |e| format!("dag:{}", e.dag_id);
}

impl Event {
    /// The DAG this event concerns, if any (used by filters such as `events tail --dag`).
    pub fn dag_id(&self) -> Option<&str> {
        match self {
            Event::DagParsed(e) => Some(&e.dag_id),
            Event::DagPaused(e) => Some(&e.dag_id),
            Event::DagUnpaused(e) => Some(&e.dag_id),
            Event::DagDeleted(e) => Some(&e.dag_id),
            Event::DagFavorited(e) => Some(&e.dag_id),
            Event::DagUnfavorited(e) => Some(&e.dag_id),
            Event::RunNoteSet(e) => Some(&e.dag_id),
            Event::RunQueued(e) => Some(&e.dag_id),
            Event::RunStarted(e) => Some(&e.dag_id),
            Event::RunSucceeded(e) => Some(&e.dag_id),
            Event::RunFailed(e) => Some(&e.dag_id),
            Event::RunCleared(e) => Some(&e.dag_id),
            Event::DagCallbackRequested(e) => Some(&e.dag_id),
            Event::DagCallbackRan(e) => Some(&e.dag_id),
            Event::CommandRejected(e) => Some(&e.ti.dag_id),
            Event::AssetQueueCleared(e) => Some(&e.dag_id),
            Event::AssetEventRecorded(e) => e.source.as_ref().map(|ti| ti.dag_id.as_str()),
            Event::TaskScheduled(_)
            | Event::TaskQueued(_)
            | Event::TaskDispatched(_)
            | Event::TaskStarted(_)
            | Event::TaskSucceeded(_)
            | Event::TaskFailed(_)
            | Event::TaskUpForRetry(_)
            | Event::TaskDeferred(_)
            | Event::TaskRescheduled(_)
            | Event::TaskResumed(_)
            | Event::TaskSkipped(_)
            | Event::TaskUpstreamFailed(_)
            | Event::TaskCleared(_)
            | Event::TaskMapped(_)
            | Event::XComPushed(_)
            | Event::TaskCallbackRequested(_)
            | Event::TaskCallbackRan(_)
            | Event::TaskRendered(_) => self.task_instance().map(|ti| ti.dag_id.as_str()),
            // An import error is a file's, not a DAG's; configuration and elections are global.
            Event::DagImportFailed(_)
            | Event::VariableSet(_)
            | Event::VariableDeleted(_)
            | Event::ConnectionSet(_)
            | Event::ConnectionDeleted(_)
            | Event::PoolSet(_)
            | Event::PoolDeleted(_)
            | Event::SchedulerElected(_)
            | Event::ApiTokenIssued(_)
            | Event::ApiTokenRevoked(_) => None,
        }
    }

    /// The dag run this event concerns, if any.
    pub fn run_id(&self) -> Option<&str> {
        match self {
            Event::AssetEventRecorded(e) => e.source.as_ref().map(|ti| ti.run_id.as_str()),
            Event::AssetQueueCleared(_) => None,
            Event::RunNoteSet(e) => Some(&e.run_id),
            Event::RunQueued(e) => Some(&e.run_id),
            Event::RunStarted(e) => Some(&e.run_id),
            Event::RunSucceeded(e) => Some(&e.run_id),
            Event::RunFailed(e) => Some(&e.run_id),
            Event::RunCleared(e) => Some(&e.run_id),
            Event::DagCallbackRequested(e) => Some(&e.run_id),
            Event::DagCallbackRan(e) => Some(&e.run_id),
            Event::CommandRejected(e) => Some(&e.ti.run_id),
            Event::TaskScheduled(_)
            | Event::TaskQueued(_)
            | Event::TaskDispatched(_)
            | Event::TaskStarted(_)
            | Event::TaskSucceeded(_)
            | Event::TaskFailed(_)
            | Event::TaskUpForRetry(_)
            | Event::TaskDeferred(_)
            | Event::TaskRescheduled(_)
            | Event::TaskResumed(_)
            | Event::TaskSkipped(_)
            | Event::TaskUpstreamFailed(_)
            | Event::TaskCleared(_)
            | Event::TaskMapped(_)
            | Event::XComPushed(_)
            | Event::TaskCallbackRequested(_)
            | Event::TaskCallbackRan(_)
            | Event::TaskRendered(_) => self.task_instance().map(|ti| ti.run_id.as_str()),
            Event::DagParsed(_)
            | Event::DagImportFailed(_)
            | Event::DagPaused(_)
            | Event::DagUnpaused(_)
            | Event::DagDeleted(_)
            | Event::DagFavorited(_)
            | Event::DagUnfavorited(_)
            | Event::VariableSet(_)
            | Event::VariableDeleted(_)
            | Event::ConnectionSet(_)
            | Event::ConnectionDeleted(_)
            | Event::PoolSet(_)
            | Event::PoolDeleted(_)
            | Event::SchedulerElected(_)
            | Event::ApiTokenIssued(_)
            | Event::ApiTokenRevoked(_) => None,
        }
    }

    /// The task instance this event concerns, if any.
    pub fn task_instance(&self) -> Option<&TaskInstanceKey> {
        match self {
            Event::TaskScheduled(e) => Some(&e.ti),
            Event::TaskQueued(e) => Some(&e.ti),
            Event::TaskDispatched(e) => Some(&e.ti),
            Event::TaskStarted(e) => Some(&e.ti),
            Event::TaskSucceeded(e) => Some(&e.ti),
            Event::TaskFailed(e) => Some(&e.ti),
            Event::TaskUpForRetry(e) => Some(&e.ti),
            Event::TaskDeferred(e) => Some(&e.ti),
            Event::TaskRescheduled(e) => Some(&e.ti),
            Event::TaskResumed(e) => Some(&e.ti),
            Event::TaskSkipped(e) => Some(&e.ti),
            Event::TaskUpstreamFailed(e) => Some(&e.ti),
            Event::TaskCleared(e) => Some(&e.ti),
            Event::TaskMapped(e) => Some(&e.ti),
            Event::XComPushed(e) => Some(&e.ti),
            Event::TaskRendered(e) => Some(&e.ti),
            Event::TaskCallbackRequested(e) => Some(&e.ti),
            Event::TaskCallbackRan(e) => Some(&e.ti),
            // A refused command names a task instance but changes nothing there, so it is no
            // event of the instance's; `dag_id` and `run_id` still name its run for filters.
            // Nor does an asset event change its source instance.
            Event::CommandRejected(_) | Event::AssetEventRecorded(_) => None,
            Event::AssetQueueCleared(_) => None,
            Event::DagParsed(_)
            | Event::DagImportFailed(_)
            | Event::DagPaused(_)
            | Event::DagUnpaused(_)
            | Event::DagDeleted(_)
            | Event::DagFavorited(_)
            | Event::DagUnfavorited(_)
            | Event::RunNoteSet(_)
            | Event::RunQueued(_)
            | Event::RunStarted(_)
            | Event::RunSucceeded(_)
            | Event::RunFailed(_)
            | Event::RunCleared(_)
            | Event::DagCallbackRequested(_)
            | Event::DagCallbackRan(_)
            | Event::VariableSet(_)
            | Event::VariableDeleted(_)
            | Event::ConnectionSet(_)
            | Event::ConnectionDeleted(_)
            | Event::PoolSet(_)
            | Event::PoolDeleted(_)
            | Event::SchedulerElected(_)
            | Event::ApiTokenIssued(_)
            | Event::ApiTokenRevoked(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_recorded_attempt_token_is_read_back_as_its_digest() {
        let token = Uuid::new_v4();
        let v1 = json!({"ti": {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1},
                        "try_number": 1, "attempt_token": token, "executor": "subprocess"});
        let Event::TaskDispatched(e) = Event::decode("TaskDispatched", 1, v1).unwrap() else {
            panic!("not a TaskDispatched");
        };
        assert!(e.attempt_digest.matches(&token));
        let stored = serde_json::to_string(&Event::TaskDispatched(e.clone()).payload()).unwrap();
        assert!(!stored.contains(&token.to_string()), "{stored}");
        let broken = json!({"ti": {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1},
                            "try_number": 1, "executor": "subprocess"});
        assert!(Event::decode("TaskDispatched", 1, broken).is_err());
    }

    fn sample_events() -> Vec<Event> {
        let ti = TaskInstanceKey::mapped("etl", "manual__1", "load", 3);
        vec![
            DagPaused {
                dag_id: "etl".into(),
            }
            .into(),
            RunQueued {
                dag_id: "etl".into(),
                run_id: "manual__1".into(),
                run_type: RunType::Manual,
                logical_date: None,
                data_interval_start: None,
                data_interval_end: None,
                run_after: "2026-11-23T10:00:00Z".parse().unwrap(),
                conf: json!({"n": 3}),
                triggered_by: "rest_api".into(),
                dag_version_hash: Some("abc".into()),
                task_ids: vec!["extract".into(), "load".into()],
                consumed_asset_events: Vec::new(),
            }
            .into(),
            TaskDispatched {
                ti: ti.clone(),
                try_number: 2,
                attempt_digest: AttemptDigest::of(&Uuid::nil()),
                executor: "subprocess".into(),
            }
            .into(),
            VariableSet {
                key: "k".into(),
                value: Sealed::DataKey {
                    key_id: Uuid::nil(),
                    ciphertext: "c2VhbGVk".into(),
                },
                description: None,
                tenant: "acme".into(),
            }
            .into(),
        ]
    }

    #[test]
    fn secrets_of_v1_events_are_read_in_the_form_they_were_stored() {
        let variable = Event::decode(
            "VariableSet",
            1,
            json!({"key": "k", "value": "in clear", "description": null}),
        )
        .unwrap();
        let Event::VariableSet(variable) = variable else {
            unreachable!()
        };
        assert_eq!(variable.value, Sealed::clear("in clear"));
        let connection = Event::decode(
            "ConnectionSet",
            1,
            json!({"conn_id": "db", "conn_type": "postgres", "description": null, "host": null,
                   "schema": null, "login": null, "password_ciphertext": "bWFzdGVy", "port": null,
                   "extra": "{\"a\": 1}"}),
        )
        .unwrap();
        let Event::ConnectionSet(connection) = connection else {
            unreachable!()
        };
        assert_eq!(
            connection.password,
            Some(Sealed::MasterKey {
                ciphertext: "bWFzdGVy".into()
            })
        );
        assert_eq!(connection.extra, Some(Sealed::clear("{\"a\": 1}")));
        let bare = json!({"conn_id": "db", "conn_type": "http", "description": null, "host": null,
                          "schema": null, "login": null, "password_ciphertext": null,
                          "port": null, "extra": null});
        let Event::ConnectionSet(bare) = Event::decode("ConnectionSet", 1, bare).unwrap() else {
            unreachable!()
        };
        assert_eq!((bare.password, bare.extra), (None, None));
    }

    #[test]
    fn a_run_queued_before_v2_names_no_tasks() {
        let old = json!({"dag_id": "etl", "run_id": "manual__1", "run_type": "manual",
                         "logical_date": null, "data_interval_start": null,
                         "data_interval_end": null, "run_after": "2026-11-23T10:00:00Z",
                         "conf": {}, "triggered_by": "ui", "dag_version_hash": "abc"});
        let Event::RunQueued(run) = Event::decode("RunQueued", 1, old).unwrap() else {
            unreachable!()
        };
        assert!(run.task_ids.is_empty());
    }

    #[test]
    fn a_dag_parsed_before_tenants_existed_belongs_to_the_default_tenant() {
        let old = json!({"dag_id": "etl", "fileloc": "proj/dag.py", "bundle_name": "proj",
                         "version_hash": "abc", "source_hash": null, "document_hash": null,
                         "description": null, "owners": [], "tags": [],
                         "timetable_summary": null, "max_active_runs": 16,
                         "max_active_tasks": 16, "catchup": false,
                         "is_paused_upon_creation": true});
        let Event::DagParsed(parsed) = Event::decode("DagParsed", 1, old.clone()).unwrap() else {
            unreachable!()
        };
        assert_eq!(parsed.tenant, crate::DEFAULT_TENANT);
        // A tenant recorded is a tenant read back.
        let mut acme = old;
        acme["tenant"] = json!("acme");
        let Event::DagParsed(parsed) = Event::decode("DagParsed", 1, acme).unwrap() else {
            unreachable!()
        };
        assert_eq!(parsed.tenant, "acme");
        assert_eq!(Event::DagParsed(parsed).payload()["tenant"], "acme");
    }

    #[test]
    fn configuration_recorded_before_tenants_existed_is_the_default_tenants() {
        for (event_type, version, payload) in [
            ("VariableDeleted", 1, json!({"key": "k"})),
            ("ConnectionDeleted", 1, json!({"conn_id": "k"})),
            ("PoolDeleted", 1, json!({"name": "k"})),
            (
                "VariableSet",
                1,
                json!({"key": "k", "value": "v", "description": null}),
            ),
        ] {
            let event = Event::decode(event_type, version, payload).unwrap();
            assert_eq!(
                event.payload()["tenant"],
                crate::DEFAULT_TENANT,
                "{event_type}"
            );
            // The default tenant's streams keep the names they had before tenants existed.
            assert_eq!(
                event.stream().split_once(':').unwrap().1,
                "k",
                "{event_type}"
            );
            assert!(!event.stream().contains('@'), "{event_type}");
        }
    }

    #[test]
    fn a_key_in_two_tenants_is_two_streams() {
        let deleted = |tenant: &str| -> Event {
            VariableDeleted {
                key: "api_url".into(),
                tenant: tenant.into(),
            }
            .into()
        };
        assert_eq!(deleted(crate::DEFAULT_TENANT).stream(), "variable:api_url");
        assert_eq!(deleted("acme").stream(), "variable@acme:api_url");
        assert_eq!(owned_stream("pool", "beta", "p:1"), "pool@beta:p:1");
    }

    #[test]
    fn every_event_round_trips_through_its_stored_form() {
        for event in sample_events() {
            let decoded =
                Event::decode(event.event_type(), event.schema_version(), event.payload()).unwrap();
            assert_eq!(decoded, event);
        }
    }

    #[test]
    fn every_stream_is_of_a_known_kind() {
        for event in sample_events() {
            let stream = event.stream();
            let kind = stream.split([':', '@']).next().unwrap();
            assert!(
                STREAM_KINDS.contains(&kind) || stream == LEADER_STREAM,
                "{stream} of {}",
                event.event_type()
            );
        }
        assert!(DAG_STREAM_KINDS.iter().all(|k| STREAM_KINDS.contains(k)));
    }

    #[test]
    fn streams_group_a_run_with_its_task_instances() {
        let events = sample_events();
        assert_eq!(events[0].stream(), "dag:etl");
        assert_eq!(events[1].stream(), "run:etl/manual__1");
        assert_eq!(events[2].stream(), "run:etl/manual__1");
        assert_eq!(events[3].stream(), "variable@acme:k");
        assert_eq!(events[2].dag_id(), Some("etl"));
        assert_eq!(events[2].task_instance().unwrap().map_index, 3);
    }

    #[test]
    fn unknown_type_is_an_error_naming_it() {
        let err = Event::decode("DagExploded", 1, json!({})).unwrap_err();
        assert_eq!(err, DecodeError::UnknownType("DagExploded".into()));
    }

    #[test]
    fn payload_with_missing_or_extra_fields_is_rejected() {
        let err = Event::decode("DagPaused", 1, json!({})).unwrap_err();
        assert!(matches!(err, DecodeError::BadPayload { .. }), "{err}");
        let err = Event::decode("DagPaused", 1, json!({"dag_id": "a", "x": 1})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }

    #[test]
    fn newer_schema_is_refused() {
        let err = Event::decode("DagPaused", 2, json!({"dag_id": "a"})).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NewerSchema {
                event_type: "DagPaused".into(),
                found: 2,
                known: 1
            }
        );
    }

    fn rename_name_to_dag_id(mut v: Value) -> Result<Value, String> {
        let name = v
            .as_object_mut()
            .and_then(|o| o.remove("name"))
            .ok_or("no `name` field")?;
        v["dag_id"] = name;
        Ok(v)
    }

    fn identity(v: Value) -> Result<Value, String> {
        Ok(v)
    }

    #[test]
    fn upcasters_chain_from_old_versions_to_the_current_one() {
        let upcasters = [
            Upcaster {
                event_type: "DagPaused",
                from_version: -1,
                apply: identity,
            },
            Upcaster {
                event_type: "DagPaused",
                from_version: 0,
                apply: rename_name_to_dag_id,
            },
        ];
        let event =
            Event::decode_with(&upcasters, "DagPaused", -1, json!({"name": "etl"})).unwrap();
        assert_eq!(
            event,
            DagPaused {
                dag_id: "etl".into()
            }
            .into()
        );

        let err = Event::decode_with(&upcasters, "DagPaused", 0, json!({"x": 1})).unwrap_err();
        assert!(
            matches!(err, DecodeError::UpcastFailed { version: 0, .. }),
            "{err}"
        );

        let err = Event::decode_with(&upcasters, "DagPaused", -2, json!({})).unwrap_err();
        assert_eq!(
            err,
            DecodeError::NoUpcaster {
                event_type: "DagPaused".into(),
                version: -2
            }
        );
    }

    #[test]
    fn catalog_lists_every_type_once() {
        let mut names: Vec<_> = EVENT_TYPES.iter().map(|(n, _)| *n).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), EVENT_TYPES.len());
        assert!(names.contains(&"XComPushed"));
    }
}
