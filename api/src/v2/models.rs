//! Read-model rows and the Airflow response shapes they become (`DAGResponse`,
//! `DAGRunResponse`, `TaskInstanceResponse`, `DagVersionResponse`, …). One place for each
//! shape, so every endpoint that returns it returns it the same way.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, FromRow};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

/// The columns of `dag` (prefixed `d.`), plus whether its file has an import error.
pub const DAG_COLUMNS: &str = "d.dag_id, d.is_paused, d.is_stale, d.fileloc, d.bundle_name, \
    d.description, d.owners, d.tags, d.timetable_summary, d.max_active_runs, d.max_active_tasks, \
    d.catchup, d.last_parsed_time, d.latest_version_id, d.latest_version_hash, \
    EXISTS (SELECT 1 FROM import_error ie WHERE ie.filename = d.fileloc) AS has_import_errors";

/// A `dag` row.
#[derive(Debug, Clone, FromRow)]
#[allow(missing_docs)]
pub struct DagRecord {
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
    pub latest_version_hash: String,
    pub has_import_errors: bool,
}

impl DagRecord {
    /// The tags as `DagTagResponse`s.
    pub fn tags_json(&self) -> Vec<Value> {
        self.tags
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|name| json!({"name": name, "dag_id": self.dag_id, "dag_display_name": self.dag_id}))
            .collect()
    }

    /// The owners as a list.
    pub fn owners_list(&self) -> Vec<&str> {
        self.owners
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .collect()
    }

    /// The file relative to its bundle (`dag.py` of `hello/dag.py`).
    pub fn relative_fileloc(&self) -> &str {
        self.fileloc
            .strip_prefix(&format!("{}/", self.bundle_name))
            .unwrap_or(&self.fileloc)
    }

    /// `DAGResponse`. `next` is the next scheduled run, when the DAG has a schedule.
    pub fn json(&self, next: Option<&NextRun>) -> Value {
        json!({
            "dag_id": self.dag_id,
            "dag_display_name": self.dag_id,
            "is_paused": self.is_paused,
            "is_stale": self.is_stale,
            "last_parsed_time": self.last_parsed_time,
            "last_parse_duration": null,
            "last_expired": null,
            "bundle_name": self.bundle_name,
            "bundle_version": null,
            "relative_fileloc": self.relative_fileloc(),
            "fileloc": self.fileloc,
            "description": self.description,
            "timetable_summary": self.timetable_summary,
            "timetable_description": timetable_description(self.timetable_summary.as_deref()),
            "timetable_partitioned": false,
            "tags": self.tags_json(),
            "max_active_tasks": self.max_active_tasks,
            "max_active_runs": self.max_active_runs,
            "max_consecutive_failed_dag_runs": 0,
            "has_task_concurrency_limits": false,
            "has_import_errors": self.has_import_errors,
            "next_dagrun_logical_date": next.map(|n| n.logical_date),
            "next_dagrun_data_interval_start": next.map(|n| n.data_interval_start),
            "next_dagrun_data_interval_end": next.map(|n| n.data_interval_end),
            "next_dagrun_run_after": next.map(|n| n.run_after),
            "allowed_run_types": null,
            "owners": self.owners_list(),
            "file_token": file_token(&self.bundle_name, self.relative_fileloc()),
        })
    }
}

/// The next run a DAG's timetable will create.
#[derive(Debug, Clone, Copy)]
pub struct NextRun {
    /// Its logical date.
    pub logical_date: DateTime<Utc>,
    /// Its data interval.
    pub data_interval_start: DateTime<Utc>,
    /// Its data interval's end.
    pub data_interval_end: DateTime<Utc>,
    /// When it becomes due.
    pub run_after: DateTime<Utc>,
}

/// Airflow's `timetable_description` for a schedule summary.
pub fn timetable_description(summary: Option<&str>) -> String {
    match summary {
        None => "Never, external triggers only".into(),
        Some("@once") => "Once, as soon as possible".into(),
        Some("@hourly") => "At the start of every hour".into(),
        Some("@daily") => "At 00:00".into(),
        Some("@weekly") => "At 00:00, only on Sunday".into(),
        Some("@monthly") => "At 00:00, on day 1 of the month".into(),
        Some("@quarterly") => "At 00:00, on day 1 of the month, every 3 months".into(),
        Some("@yearly") | Some("@annually") => {
            "At 00:00, on day 1 of the month, only in January".into()
        }
        Some(other) => format!("Cron schedule: {other}"),
    }
}

/// The opaque token Airflow gives each DAG file (the UI passes it back to re-parse a file).
pub fn file_token(bundle_name: &str, relative_fileloc: &str) -> String {
    let payload = json!({"bundle_name": bundle_name, "relative_fileloc": relative_fileloc});
    URL_SAFE_NO_PAD.encode(payload.to_string())
}

/// The columns of `dag_version` (prefixed `v.`).
pub const VERSION_COLUMNS: &str = "v.id, v.dag_id, v.version_number, v.version_hash, v.source_hash, v.document_hash, v.fileloc, \
     v.bundle_name, v.created_at";

/// A `dag_version` row.
#[derive(Debug, Clone, FromRow)]
#[allow(missing_docs)]
pub struct VersionRecord {
    pub id: Uuid,
    pub dag_id: String,
    pub version_number: i32,
    pub version_hash: String,
    pub source_hash: Option<String>,
    pub bundle_name: String,
    pub created_at: DateTime<Utc>,
}

impl VersionRecord {
    /// `DagVersionResponse`.
    pub fn json(&self) -> Value {
        json!({
            "id": self.id,
            "version_number": self.version_number,
            "dag_id": self.dag_id,
            "bundle_name": self.bundle_name,
            "bundle_version": null,
            "created_at": self.created_at,
            "dag_display_name": self.dag_id,
            "bundle_url": null,
        })
    }
}

/// The versions of the DAGs named, by (dag_id, version hash) → the newest version with that
/// hash (a hash can recur when a change is reverted).
pub async fn versions_by_hash(
    state: &ApiState,
    dag_ids: &[String],
) -> ApiResult<HashMap<(String, String), VersionRecord>> {
    let rows: Vec<VersionRecord> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {VERSION_COLUMNS} FROM dag_version v WHERE v.dag_id = ANY($1) \
         ORDER BY v.version_number"
    )))
    .bind(dag_ids)
    .fetch_all(state.store.pool())
    .await?;
    Ok(rows
        .into_iter()
        .map(|v| ((v.dag_id.clone(), v.version_hash.clone()), v))
        .collect())
}

/// The columns of `dag_run` (prefixed `r.`).
pub const RUN_COLUMNS: &str = "r.dag_id, r.run_id, r.id, r.state, r.run_type, r.logical_date, \
    r.data_interval_start, r.data_interval_end, r.run_after, r.queued_at, r.start_date, \
    r.end_date, r.conf, r.triggered_by, r.dag_version_hash, r.note, r.triggering_user_name";

/// A `dag_run` row.
#[derive(Debug, Clone, FromRow)]
#[allow(missing_docs)]
pub struct RunRecord {
    pub dag_id: String,
    pub run_id: String,
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
    pub note: Option<String>,
    pub triggering_user_name: Option<String>,
}

/// Seconds between two times.
pub fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Option<f64> {
    Some((end? - start?).num_microseconds()? as f64 / 1e6)
}

/// Airflow's `DagRunTriggeredByType` for what a `RunQueued` recorded.
pub fn triggered_by(recorded: &str) -> &'static str {
    match recorded {
        "cli" => "cli",
        "timetable" => "timetable",
        "ui" => "ui",
        "test" => "test",
        "backfill" => "backfill",
        _ => "rest_api",
    }
}

impl RunRecord {
    /// `DAGRunResponse`, with the run's DAG version when known.
    pub fn json(&self, version: Option<&VersionRecord>) -> Value {
        json!({
            "dag_run_id": self.run_id,
            "dag_id": self.dag_id,
            "logical_date": self.logical_date,
            "queued_at": self.queued_at,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "duration": duration(self.start_date, self.end_date),
            "data_interval_start": self.data_interval_start,
            "data_interval_end": self.data_interval_end,
            "run_after": self.run_after,
            "last_scheduling_decision": self.end_date.or(self.start_date),
            "run_type": self.run_type,
            "state": self.state,
            "triggered_by": triggered_by(&self.triggered_by),
            "triggering_user_name": self.triggering_user_name,
            "conf": self.conf,
            "note": self.note,
            "dag_versions": version.map(VersionRecord::json).into_iter().collect::<Vec<_>>(),
            "bundle_version": null,
            "dag_display_name": self.dag_id,
            "partition_key": null,
        })
    }

    /// `DAGRunLightResponse` (the grid's and the DAGs list's latest runs).
    pub fn light_json(&self) -> Value {
        json!({
            "id": self.id,
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "logical_date": self.logical_date,
            "run_after": self.run_after,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "state": self.state,
            "duration": duration(self.start_date, self.end_date),
        })
    }
}

/// Loads one run, or Airflow's 404.
pub async fn load_run(state: &ApiState, dag_id: &str, run_id: &str) -> ApiResult<RunRecord> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM dag_run r WHERE r.dag_id = $1 AND r.run_id = $2"
    )))
    .bind(dag_id)
    .bind(run_id)
    .fetch_optional(state.store.pool())
    .await?
    .ok_or_else(|| {
        ApiError::not_found(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        ))
    })
}

/// Loads one DAG, or Airflow's 404.
pub async fn load_dag(state: &ApiState, dag_id: &str) -> ApiResult<DagRecord> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {DAG_COLUMNS} FROM dag d WHERE d.dag_id = $1"
    )))
    .bind(dag_id)
    .fetch_optional(state.store.pool())
    .await?
    .ok_or_else(|| dag_not_found(dag_id))
}

/// Airflow's 404 for a DAG.
pub fn dag_not_found(dag_id: &str) -> ApiError {
    ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found"))
}

/// The dag.json document of a DAG version.
pub async fn document(state: &ApiState, dag_id: &str, version_hash: &str) -> ApiResult<Arc<Value>> {
    state
        .specs
        .document(&state.store, dag_id, version_hash)
        .await
        .map_err(ApiError::internal)
}

/// The task entries of a document, by task id.
pub fn tasks_by_id(document: &Value) -> HashMap<&str, &Value> {
    document["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| Some((t["task_id"].as_str()?, t)))
        .collect()
}

/// The columns of `task_instance` (prefixed `t.`) and of its run (`r.`).
pub const TI_COLUMNS: &str = "t.dag_id, t.run_id, t.task_id, t.map_index, t.id, t.try_number, \
    t.state, t.scheduled_dttm, t.queued_dttm, t.start_date, t.end_date, t.duration, t.hostname, \
    t.pid, t.executor, t.pool, t.pool_slots, t.priority_weight, t.queue, t.rendered_fields_hash, \
    r.logical_date, r.run_after, r.dag_version_hash";

/// A `task_instance` row with what its responses need of its run.
#[derive(Debug, Clone, FromRow)]
#[allow(missing_docs)]
pub struct TiRecord {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i32,
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
    pub rendered_fields_hash: Option<String>,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub dag_version_hash: Option<String>,
}

/// What a task-instance response says about the task itself, from its DAG version.
#[derive(Debug, Clone, Default)]
pub struct TaskFacts {
    /// Airflow's operator class name (`_PythonDecoratedOperator`, `BashOperator`).
    pub operator: Option<String>,
    /// How it was written (`@task`, `BashOperator`).
    pub operator_name: Option<String>,
    /// `retries`.
    pub retries: i64,
    /// `pool` when the row has none yet.
    pub pool: String,
    /// `pool_slots`.
    pub pool_slots: i64,
    /// `priority_weight`.
    pub priority_weight: i64,
    /// `queue`.
    pub queue: String,
    /// The display name.
    pub display_name: String,
}

impl TaskFacts {
    /// The facts of a dag.json task entry.
    pub fn of(task: &Value) -> Self {
        let written = task["operator"].as_str().unwrap_or("");
        let class = operator_class(written);
        let task_id = task["task_id"].as_str().unwrap_or("");
        Self {
            operator: Some(class.to_owned()),
            operator_name: Some(written.to_owned()),
            retries: task["retries"].as_i64().unwrap_or(0),
            pool: task["pool"].as_str().unwrap_or("default_pool").to_owned(),
            pool_slots: task["pool_slots"].as_i64().unwrap_or(1),
            priority_weight: task["priority_weight"].as_i64().unwrap_or(1),
            queue: task["queue"].as_str().unwrap_or("default").to_owned(),
            display_name: task["display_name"].as_str().unwrap_or(task_id).to_owned(),
        }
    }
}

/// The Airflow operator class behind how a task was written.
pub fn operator_class(written: &str) -> &str {
    match written {
        "@task" => "_PythonDecoratedOperator",
        "@task.bash" => "_BashDecoratedOperator",
        "@task.branch" => "_BranchPythonDecoratedOperator",
        "@task.short_circuit" => "_ShortCircuitDecoratedOperator",
        "@task.sensor" => "DecoratedSensorOperator",
        other => other,
    }
}

impl TiRecord {
    /// `TaskInstanceResponse`.
    pub fn json(&self, task: &TaskFacts, version: Option<&VersionRecord>) -> Value {
        json!({
            "id": self.id,
            "task_id": self.task_id,
            "dag_id": self.dag_id,
            "dag_run_id": self.run_id,
            "map_index": self.map_index,
            "logical_date": self.logical_date,
            "run_after": self.run_after,
            "start_date": self.start_date,
            "end_date": self.end_date,
            "duration": self.duration,
            "state": self.state,
            "try_number": self.try_number,
            "max_tries": task.retries,
            "task_display_name": task.display_name,
            "dag_display_name": self.dag_id,
            "hostname": self.hostname,
            "unixname": self.hostname.as_ref().map(|_| unixname()),
            "pool": self.pool.clone().unwrap_or_else(|| task.pool.clone()),
            "pool_slots": self.pool_slots.map(i64::from).unwrap_or(task.pool_slots),
            "queue": self.queue.clone().unwrap_or_else(|| task.queue.clone()),
            "priority_weight": self.priority_weight.map(i64::from).unwrap_or(task.priority_weight),
            "operator": task.operator,
            "operator_name": task.operator_name,
            "queued_when": self.queued_dttm,
            "scheduled_when": self.scheduled_dttm,
            "pid": self.pid,
            "executor": self.executor,
            "executor_config": "{}",
            "note": null,
            "rendered_map_index": (self.map_index >= 0).then(|| self.map_index.to_string()),
            "rendered_fields": {},
            "trigger": null,
            "triggerer_job": null,
            "dag_version": version.map(VersionRecord::json),
        })
    }
}

/// The user tasks run as on this host.
pub fn unixname() -> String {
    std::env::var("USER").unwrap_or_else(|_| "leoflow".into())
}

/// Looks up documents and versions for a set of task instances once per DAG version.
#[derive(Default)]
pub struct TaskCatalog {
    documents: HashMap<(String, String), Arc<Value>>,
    versions: HashMap<(String, String), VersionRecord>,
}

impl TaskCatalog {
    /// Loads what `tis` refer to.
    pub async fn load(state: &ApiState, tis: &[TiRecord]) -> ApiResult<Self> {
        let mut catalog = Self::default();
        let mut dag_ids: Vec<String> = tis.iter().map(|t| t.dag_id.clone()).collect();
        dag_ids.sort();
        dag_ids.dedup();
        catalog.versions = versions_by_hash(state, &dag_ids).await?;
        for ti in tis {
            let Some(hash) = &ti.dag_version_hash else {
                continue;
            };
            let key = (ti.dag_id.clone(), hash.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = catalog.documents.entry(key) {
                slot.insert(document(state, &ti.dag_id, hash).await?);
            }
        }
        Ok(catalog)
    }

    /// The task's facts and its DAG version.
    pub fn facts(&self, ti: &TiRecord) -> (TaskFacts, Option<&VersionRecord>) {
        let key = ti
            .dag_version_hash
            .as_ref()
            .map(|h| (ti.dag_id.clone(), h.clone()));
        let facts = key
            .as_ref()
            .and_then(|k| self.documents.get(k))
            .and_then(|doc| {
                tasks_by_id(doc)
                    .get(ti.task_id.as_str())
                    .map(|t| TaskFacts::of(t))
            })
            .unwrap_or_else(|| TaskFacts {
                display_name: ti.task_id.clone(),
                pool: "default_pool".into(),
                pool_slots: 1,
                queue: "default".into(),
                ..TaskFacts::default()
            });
        (facts, key.as_ref().and_then(|k| self.versions.get(k)))
    }

    /// `TaskInstanceResponse` of `ti`.
    pub fn json(&self, ti: &TiRecord) -> Value {
        let (facts, version) = self.facts(ti);
        ti.json(&facts, version)
    }
}
