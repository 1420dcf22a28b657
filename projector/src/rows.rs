//! One struct per read-model table. Field names are the table's column names: rows travel to
//! and from Postgres as JSON (`to_jsonb` / `jsonb_populate_recordset`), so the struct *is*
//! the column list. A test checks every struct against its table.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use leoflow_events::AccessControl;
use leoflow_events::catalog::Sealed;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A row of a read-model table.
pub trait ReadModelRow:
    Serialize + DeserializeOwned + Clone + PartialEq + Default + Debug + Send + Sync + 'static
{
    /// The row's primary key; serializes to an object of the key columns.
    type Key: Ord + Clone + Serialize + Debug + Send + Sync;
    /// The table name.
    const TABLE: &'static str;
    /// The primary-key columns, as named in the table and in [`Self::Key`].
    const KEY_COLUMNS: &'static [&'static str];
    /// This row's key.
    fn key(&self) -> Self::Key;
}

macro_rules! key_struct {
    ($(#[$doc:meta])* $name:ident { $($field:ident : $ty:ty),* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
        pub struct $name {
            $( #[doc = concat!("The row's `", stringify!($field), "` column.")] pub $field: $ty ),*
        }
    };
}

key_struct!(
    /// Key of [`DagRow`].
    DagKey { dag_id: String }
);
key_struct!(
    /// Key of [`DagVersionRow`].
    DagVersionKey { id: Uuid }
);
key_struct!(
    /// Key of [`ImportErrorRow`].
    ImportErrorKey { filename: String }
);
key_struct!(
    /// Key of [`DagRunRow`].
    DagRunKey { dag_id: String, run_id: String }
);
key_struct!(
    /// Key of [`TaskInstanceRow`].
    TaskInstanceRowKey { dag_id: String, run_id: String, task_id: String, map_index: i32 }
);
key_struct!(
    /// Key of [`TaskInstanceTryRow`].
    TryKey { dag_id: String, run_id: String, task_id: String, map_index: i32, try_number: i32 }
);
key_struct!(
    /// Key of [`XComRow`].
    XComKey { dag_id: String, run_id: String, task_id: String, map_index: i32, key: String }
);
key_struct!(
    /// Key of [`VariableRow`].
    VariableKey { tenant: String, key: String }
);
key_struct!(
    /// Key of [`ConnectionRow`].
    ConnectionKey { tenant: String, conn_id: String }
);
key_struct!(
    /// Key of [`PoolRow`].
    PoolKey { tenant: String, pool: String }
);
key_struct!(
    /// Key of [`ApiTokenRow`].
    ApiTokenKey { token_id: String }
);
key_struct!(
    /// Key of [`DagFavoriteRow`].
    DagFavoriteKey { dag_id: String, username: String }
);
key_struct!(
    /// Key of [`AssetRow`] and [`AssetEventRow`].
    AssetIdKey { id: i64 }
);
key_struct!(
    /// Key of [`AliasAssetRow`].
    AliasAssetKey { tenant: String, alias_name: String, asset_id: i64 }
);
key_struct!(
    /// Key of [`AssetQueueRow`].
    AssetQueueKey { asset_id: i64, target_dag_id: String }
);
key_struct!(
    /// Key of [`AssetEventRunRow`].
    AssetEventRunKey { event_id: i64, dag_id: String, run_id: String }
);

/// `dag`: one row per DAG, its latest parse and its pause state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DagRow {
    /// The DAG.
    pub dag_id: String,
    /// Whether new runs are held back (the DAG was paused).
    pub is_paused: bool,
    /// Airflow's flag for a DAG whose file is gone; always false: deleting a DAG removes its
    /// rows.
    pub is_stale: bool,
    /// Path of the file that defines it.
    pub fileloc: String,
    /// The bundle (project) the file belongs to.
    pub bundle_name: String,
    /// The DAG's description.
    pub description: Option<String>,
    /// Owners of the DAG's tasks, comma-separated as Airflow shows them.
    pub owners: String,
    /// Tags, a JSON list.
    pub tags: Value,
    /// Human summary of the schedule; `None` for an unscheduled DAG.
    pub timetable_summary: Option<String>,
    /// How many of its runs may run at once.
    pub max_active_runs: i32,
    /// How many of its task instances may run at once, across its runs.
    pub max_active_tasks: i32,
    /// Whether the schedule intervals it missed are run (Airflow's `catchup`).
    pub catchup: bool,
    /// When its file was last parsed: the latest `DagParsed`.
    pub last_parsed_time: DateTime<Utc>,
    /// The `dag_version` row of its latest version.
    pub latest_version_id: Uuid,
    /// That version's number.
    pub latest_version_number: i32,
    /// That version's content hash.
    pub latest_version_hash: String,
    /// Per-DAG access from its latest parse: role → what it may do with this DAG.
    pub access_control: AccessControl,
    /// The roles whose grant includes reading the DAG (`DAGs: can_read`), sorted: what DAG
    /// lists filter by.
    pub readable_by: Vec<String>,
    /// The tenant that owns the DAG.
    pub tenant: String,
    /// Its asset condition (Airflow's `asset_expression`), when it is scheduled on assets.
    pub asset_expression: Option<Value>,
    /// Every asset its latest version names (`DagParsed::asset_references`).
    pub asset_references: Value,
    /// Every asset alias its latest version names (`DagParsed::alias_references`).
    pub alias_references: Value,
}

/// `dag_version`: every distinct version of a DAG, numbered from 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DagVersionRow {
    /// UUIDv5 of the DAG and its version number.
    pub id: Uuid,
    /// The DAG.
    pub dag_id: String,
    /// Numbered from 1 in the order versions were first parsed.
    pub version_number: i32,
    /// Canonical content hash of the compiled DAG: the version identity.
    pub version_hash: String,
    /// Blob hash of the DAG file's source text (the UI's Code tab).
    pub source_hash: Option<String>,
    /// Blob hash of the compiled dag.json document.
    pub document_hash: Option<String>,
    /// Path of the file that defined this version.
    pub fileloc: String,
    /// The bundle (project) the file belongs to.
    pub bundle_name: String,
    /// When this version was first parsed.
    pub created_at: DateTime<Utc>,
    /// The git commit a pushed version was compiled from (Airflow's `bundle_version`).
    pub bundle_version: Option<String>,
    /// The task image a pushed version was built with.
    pub image: Option<String>,
}

/// `import_error`: the latest parse failure of a file that does not parse now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportErrorRow {
    /// Path of the file that fails to parse.
    pub filename: String,
    /// The position of its latest `DagImportFailed` event.
    pub id: i64,
    /// The bundle the file belongs to.
    pub bundle_name: String,
    /// What went wrong, with file and line.
    pub stacktrace: String,
    /// When the file last failed to parse.
    pub timestamp: DateTime<Utc>,
    /// The tenant its project was registered into.
    pub tenant: String,
}

/// `dag_run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DagRunRow {
    /// The DAG.
    pub dag_id: String,
    /// The run, unique within its DAG.
    pub run_id: String,
    /// The position of the run's `RunQueued` event: stable under replay.
    pub id: i64,
    /// The run's state, Airflow's name of a `RunStatus`.
    pub state: String,
    /// Airflow's name of its `RunType` (`manual`, `scheduled`, …).
    pub run_type: String,
    /// The logical date; `None` for a manual run triggered without one.
    pub logical_date: Option<DateTime<Utc>>,
    /// Start of the data interval the run covers.
    pub data_interval_start: Option<DateTime<Utc>>,
    /// End of the data interval the run covers.
    pub data_interval_end: Option<DateTime<Utc>>,
    /// The earliest time the run may start.
    pub run_after: DateTime<Utc>,
    /// When it was last queued (again when cleared).
    pub queued_at: Option<DateTime<Utc>>,
    /// When it started running.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// The run's `conf` (a JSON object).
    pub conf: Value,
    /// Who or what triggered it (`ui`, `rest_api`, `timetable`, `cli`, …).
    pub triggered_by: String,
    /// The DAG version the run was created with.
    pub dag_version_hash: Option<String>,
    /// How many times the run was cleared.
    pub clear_number: i32,
    /// The run's note, set from the UI or API.
    pub note: Option<String>,
    /// The user who triggered a manual run through the API or UI.
    pub triggering_user_name: Option<String>,
}

/// `task_instance`: the current try of each task instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInstanceRow {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Index of a mapped instance; -1 for an unmapped one.
    pub map_index: i32,
    /// UUIDv5 of the instance and its try: like Airflow, a new try gets a new id.
    pub id: Uuid,
    /// The number of its current try (0 when it never had one).
    pub try_number: i32,
    /// Airflow's name of its `TiState`; `None` while pending.
    pub state: Option<String>,
    /// When its trigger rule was last met.
    pub scheduled_dttm: Option<DateTime<Utc>>,
    /// When its current try was queued.
    pub queued_dttm: Option<DateTime<Utc>>,
    /// When its current try started.
    pub start_date: Option<DateTime<Utc>>,
    /// When its current try ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds from start to end of the current try.
    pub duration: Option<f64>,
    /// Host the current try runs or ran on.
    pub hostname: Option<String>,
    /// Process id of the current try's runner.
    pub pid: Option<i32>,
    /// The executor the current try was dispatched to.
    pub executor: Option<String>,
    /// The pool it takes slots from.
    pub pool: Option<String>,
    /// How many slots of the pool it takes.
    pub pool_slots: Option<i32>,
    /// Its priority among admitted task instances.
    pub priority_weight: Option<i32>,
    /// The task's queue.
    pub queue: Option<String>,
    /// Why the current try failed, or why it never ran.
    pub failure_reason: Option<String>,
    /// Blob hash of the current try's rendered template fields.
    pub rendered_fields_hash: Option<String>,
    /// The method a deferred try resumes in.
    pub next_method: Option<String>,
    /// Its keyword arguments, sealed (`Sealed` as JSON).
    pub next_kwargs: Option<serde_json::Value>,
    /// What a deferred try waits for (`DeferredTrigger` as JSON), while it waits.
    pub trigger: Option<serde_json::Value>,
    /// Its trigger's id: the position of the `TaskDeferred` event that set it.
    pub trigger_id: Option<i64>,
    /// When its trigger was set.
    pub trigger_created_at: Option<DateTime<Utc>>,
    /// When a deferred try's wait fails, while it waits.
    pub trigger_timeout: Option<DateTime<Utc>>,
    /// The event of the trigger that resumed the try.
    pub trigger_event: Option<serde_json::Value>,
}

/// `task_instance_try`: one row per try (Airflow's task instance history).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskInstanceTryRow {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Index of a mapped instance; -1 for an unmapped one.
    pub map_index: i32,
    /// The try, from 1.
    pub try_number: i32,
    /// The `task_instance.id` this try had.
    pub task_instance_id: Uuid,
    /// The try's state, Airflow's name of a `TiState`.
    pub state: Option<String>,
    /// When the try was queued.
    pub queued_dttm: Option<DateTime<Utc>>,
    /// When the try started.
    pub start_date: Option<DateTime<Utc>>,
    /// When the try ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
    /// Host the try ran on.
    pub hostname: Option<String>,
    /// Process id of the try's runner.
    pub pid: Option<i32>,
    /// The executor the try was dispatched to.
    pub executor: Option<String>,
    /// Why the try failed.
    pub failure_reason: Option<String>,
    /// What the try asks a person (it waits for an answer: Airflow's human-in-the-loop
    /// request, `subject`, `options`, …).
    pub hitl_request: Option<Value>,
    /// When it asked.
    pub hitl_created_at: Option<DateTime<Utc>>,
    /// The answer it got (`chosen_options`, `params_input`, `responded_by_user`,
    /// `responded_at`), or took at its deadline (the defaults).
    pub hitl_response: Option<Value>,
}

/// `xcom`: the index of XCom values (the values are blobs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct XComRow {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task that pushed it.
    pub task_id: String,
    /// Index of the mapped instance that pushed it; -1 for an unmapped one.
    pub map_index: i32,
    /// The XCom key (`return_value` for a task's result).
    pub key: String,
    /// Blob hash of the JSON value.
    pub value_hash: String,
    /// Size of the serialized value in bytes.
    pub size_bytes: i64,
    /// When it was pushed.
    pub timestamp: DateTime<Utc>,
}

/// `variable`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VariableRow {
    /// The tenant that owns it.
    pub tenant: String,
    /// The Variable.
    pub key: String,
    /// Its value, sealed.
    pub val: Sealed,
    /// What it is for.
    pub description: Option<String>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// `connection` (the password and extra columns hold sealed values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRow {
    /// The tenant that owns it.
    pub tenant: String,
    /// The Connection.
    pub conn_id: String,
    /// Its type (`postgres`, `http`, …).
    pub conn_type: String,
    /// What it is for.
    pub description: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Schema (or database).
    pub schema: Option<String>,
    /// Login.
    pub login: Option<String>,
    /// Password, sealed.
    pub password: Option<Sealed>,
    /// Port.
    pub port: Option<i32>,
    /// Extra JSON, sealed.
    pub extra: Option<Sealed>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

/// `slot_pool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolRow {
    /// The tenant that owns it.
    pub tenant: String,
    /// The pool.
    pub pool: String,
    /// How many slots it has.
    pub slots: i32,
    /// What it is for.
    pub description: Option<String>,
    /// Whether deferred task instances count against its slots.
    pub include_deferred: bool,
}

/// `api_token`: the API tokens issued, by the digest of their secret, and whether they hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiTokenRow {
    /// Its id.
    pub token_id: String,
    /// The role its bearer acts with.
    pub role: String,
    /// The tenant it acts in.
    pub tenant: String,
    /// The custom roles its bearer also holds.
    pub dag_roles: Vec<String>,
    /// SHA-256 of its secret, hex.
    pub digest: String,
    /// What it is for.
    pub description: Option<String>,
    /// Who issued it.
    pub created_by: Option<String>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it stops being accepted.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `asset`: every asset a DAG names, by the id its key derives ([`AssetKey::id`]).
///
/// [`AssetKey::id`]: leoflow_events::catalog::AssetKey::id
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetRow {
    /// Its id.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its URI.
    pub uri: String,
    /// Its group.
    pub asset_group: String,
    /// Its `extra`, as the DAG that last named it defines it.
    pub extra: Value,
    /// When a DAG first named it.
    pub created_at: DateTime<Utc>,
    /// When a DAG last named it differently.
    pub updated_at: DateTime<Utc>,
}

/// `asset_event`: every update of an asset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetEventRow {
    /// Its id: the position of its `AssetEventRecorded`.
    pub id: i64,
    /// The asset.
    pub asset_id: i64,
    /// The tenant it was recorded in (its source DAG's, or the API caller's).
    pub tenant: String,
    /// Its `extra`.
    pub extra: Value,
    /// The task instance whose success it is (none for one recorded through the API).
    pub source_dag_id: Option<String>,
    /// Its run.
    pub source_run_id: Option<String>,
    /// Its task.
    pub source_task_id: Option<String>,
    /// Its map index.
    pub source_map_index: Option<i32>,
    /// The aliases it was added through (a JSON list of names).
    pub source_aliases: Value,
    /// When it was recorded.
    pub timestamp: DateTime<Utc>,
}

/// `asset_alias`: every asset alias a DAG names or a task added an event through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetAliasRow {
    /// Its id ([`alias_id`](leoflow_events::catalog::alias_id) of its name).
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its group.
    pub alias_group: String,
    /// When it was first named.
    pub created_at: DateTime<Utc>,
}

/// `asset_alias_asset`: the assets an alias stands for in a tenant (those a task added an event
/// of through it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AliasAssetRow {
    /// The tenant.
    pub tenant: String,
    /// The alias.
    pub alias_name: String,
    /// The asset.
    pub asset_id: i64,
}

/// `asset_dag_run_queue`: the assets updated since a DAG scheduled on them last ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetQueueRow {
    /// The asset.
    pub asset_id: i64,
    /// The DAG.
    pub target_dag_id: String,
    /// When the asset's first event since was recorded.
    pub created_at: DateTime<Utc>,
}

/// `asset_event_dag_run`: which runs consumed which asset events (Airflow's
/// `consumed_asset_events` and `created_dagruns`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetEventRunRow {
    /// The asset event.
    pub event_id: i64,
    /// The run's DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
}

/// `dag_favorite`: the DAGs each user starred.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DagFavoriteRow {
    /// The DAG starred.
    pub dag_id: String,
    /// The user who starred it.
    pub username: String,
}

macro_rules! read_model {
    ($row:ty, $key:ident, $table:literal, [$($col:ident),+]) => {
        impl ReadModelRow for $row {
            type Key = $key;
            const TABLE: &'static str = $table;
            const KEY_COLUMNS: &'static [&'static str] = &[$(stringify!($col)),+];
            fn key(&self) -> $key {
                $key { $($col: self.$col.clone()),+ }
            }
        }
    };
}

read_model!(DagRow, DagKey, "dag", [dag_id]);
read_model!(DagVersionRow, DagVersionKey, "dag_version", [id]);
read_model!(ImportErrorRow, ImportErrorKey, "import_error", [filename]);
read_model!(DagRunRow, DagRunKey, "dag_run", [dag_id, run_id]);
read_model!(
    TaskInstanceRow,
    TaskInstanceRowKey,
    "task_instance",
    [dag_id, run_id, task_id, map_index]
);
read_model!(
    TaskInstanceTryRow,
    TryKey,
    "task_instance_try",
    [dag_id, run_id, task_id, map_index, try_number]
);
read_model!(
    XComRow,
    XComKey,
    "xcom",
    [dag_id, run_id, task_id, map_index, key]
);
read_model!(VariableRow, VariableKey, "variable", [tenant, key]);
read_model!(
    ConnectionRow,
    ConnectionKey,
    "connection",
    [tenant, conn_id]
);
read_model!(PoolRow, PoolKey, "slot_pool", [tenant, pool]);
read_model!(ApiTokenRow, ApiTokenKey, "api_token", [token_id]);
read_model!(
    DagFavoriteRow,
    DagFavoriteKey,
    "dag_favorite",
    [dag_id, username]
);
read_model!(AssetRow, AssetIdKey, "asset", [id]);
read_model!(AssetEventRow, AssetIdKey, "asset_event", [id]);
read_model!(AssetAliasRow, AssetIdKey, "asset_alias", [id]);
read_model!(
    AliasAssetRow,
    AliasAssetKey,
    "asset_alias_asset",
    [tenant, alias_name, asset_id]
);
read_model!(
    AssetQueueRow,
    AssetQueueKey,
    "asset_dag_run_queue",
    [asset_id, target_dag_id]
);
read_model!(
    AssetEventRunRow,
    AssetEventRunKey,
    "asset_event_dag_run",
    [event_id, dag_id, run_id]
);

/// Every read-model table, in a stable order (replay, verify and digests walk this list).
pub const READ_MODEL_TABLES: &[&str] = &[
    DagRow::TABLE,
    DagVersionRow::TABLE,
    ImportErrorRow::TABLE,
    DagRunRow::TABLE,
    TaskInstanceRow::TABLE,
    TaskInstanceTryRow::TABLE,
    XComRow::TABLE,
    VariableRow::TABLE,
    ConnectionRow::TABLE,
    PoolRow::TABLE,
    DagFavoriteRow::TABLE,
    ApiTokenRow::TABLE,
    AssetRow::TABLE,
    AssetEventRow::TABLE,
    AssetAliasRow::TABLE,
    AliasAssetRow::TABLE,
    AssetQueueRow::TABLE,
    AssetEventRunRow::TABLE,
];

/// The column names of a row type, in struct order.
pub fn columns<R: ReadModelRow>() -> Vec<String> {
    match serde_json::to_value(R::default()) {
        Ok(Value::Object(map)) => {
            // serde_json's map is sorted; struct order is not needed by the SQL we build.
            map.keys().cloned().collect()
        }
        _ => unreachable!("read-model rows serialize to JSON objects"),
    }
}
