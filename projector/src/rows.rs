//! One struct per read-model table. Field names are the table's column names: rows travel to
//! and from Postgres as JSON (`to_jsonb` / `jsonb_populate_recordset`), so the struct *is*
//! the column list. A test checks every struct against its table.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
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
        pub struct $name { $( #[allow(missing_docs)] pub $field: $ty ),* }
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
    VariableKey { key: String }
);
key_struct!(
    /// Key of [`ConnectionRow`].
    ConnectionKey { conn_id: String }
);
key_struct!(
    /// Key of [`PoolRow`].
    PoolKey { pool: String }
);
key_struct!(
    /// Key of [`DagFavoriteRow`].
    DagFavoriteKey { dag_id: String, username: String }
);

/// `dag`: one row per DAG, its latest parse and its pause state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DagRow {
    pub dag_id: String,
    pub is_paused: bool,
    pub is_stale: bool,
    pub fileloc: String,
    pub bundle_name: String,
    pub description: Option<String>,
    pub owners: String,
    pub tags: Value,
    pub timetable_summary: Option<String>,
    pub max_active_runs: i32,
    pub max_active_tasks: i32,
    pub catchup: bool,
    pub last_parsed_time: DateTime<Utc>,
    pub latest_version_id: Uuid,
    pub latest_version_number: i32,
    pub latest_version_hash: String,
}

/// `dag_version`: every distinct version of a DAG, numbered from 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DagVersionRow {
    pub id: Uuid,
    pub dag_id: String,
    pub version_number: i32,
    pub version_hash: String,
    pub source_hash: Option<String>,
    pub document_hash: Option<String>,
    pub fileloc: String,
    pub bundle_name: String,
    pub created_at: DateTime<Utc>,
}

/// `import_error`: the latest parse failure of a file that does not parse now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ImportErrorRow {
    pub filename: String,
    pub id: i64,
    pub bundle_name: String,
    pub stacktrace: String,
    pub timestamp: DateTime<Utc>,
}

/// `dag_run`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DagRunRow {
    pub dag_id: String,
    pub run_id: String,
    /// The position of the run's `RunQueued` event: stable under replay.
    pub id: i64,
    pub state: String,
    pub run_type: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub conf: Value,
    pub triggered_by: String,
    pub dag_version_hash: Option<String>,
    pub clear_number: i32,
    pub note: Option<String>,
    /// The user who triggered a manual run through the API or UI.
    pub triggering_user_name: Option<String>,
}

/// `task_instance`: the current try of each task instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TaskInstanceRow {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i32,
    /// UUIDv5 of the instance and its try: like Airflow, a new try gets a new id.
    pub id: Uuid,
    pub try_number: i32,
    pub state: Option<String>,
    pub scheduled_dttm: Option<DateTime<Utc>>,
    pub queued_dttm: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    pub pool: Option<String>,
    pub pool_slots: Option<i32>,
    pub priority_weight: Option<i32>,
    pub queue: Option<String>,
    pub failure_reason: Option<String>,
    /// Blob hash of the current try's rendered template fields.
    pub rendered_fields_hash: Option<String>,
}

/// `task_instance_try`: one row per try (Airflow's task instance history).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct TaskInstanceTryRow {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i32,
    pub try_number: i32,
    pub task_instance_id: Uuid,
    pub state: Option<String>,
    pub queued_dttm: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub hostname: Option<String>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    pub failure_reason: Option<String>,
}

/// `xcom`: the index of XCom values (the values are blobs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct XComRow {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i32,
    pub key: String,
    pub value_hash: String,
    pub size_bytes: i64,
    pub timestamp: DateTime<Utc>,
}

/// `variable`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct VariableRow {
    pub key: String,
    pub val: Sealed,
    pub description: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// `connection` (the password and extra columns hold sealed values).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ConnectionRow {
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<Sealed>,
    pub port: Option<i32>,
    pub extra: Option<Sealed>,
    pub updated_at: DateTime<Utc>,
}

/// `slot_pool`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct PoolRow {
    pub pool: String,
    pub slots: i32,
    pub description: Option<String>,
    pub include_deferred: bool,
}

/// `dag_favorite`: the DAGs each user starred.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct DagFavoriteRow {
    pub dag_id: String,
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
read_model!(VariableRow, VariableKey, "variable", [key]);
read_model!(ConnectionRow, ConnectionKey, "connection", [conn_id]);
read_model!(PoolRow, PoolKey, "slot_pool", [pool]);
read_model!(
    DagFavoriteRow,
    DagFavoriteKey,
    "dag_favorite",
    [dag_id, username]
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
