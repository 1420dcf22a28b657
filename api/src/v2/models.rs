//! The Airflow response shapes (`DAGResponse`, `DAGRunResponse`, `TaskInstanceResponse`,
//! `DagVersionResponse`, …) as structs, and how read-model rows become them. One place for each
//! shape, so every endpoint that returns it returns it the same way; the rows and their queries
//! are `leoflow_projector::read`'s (with the API's 404s in `crate::read`).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::state::ApiState;

pub use crate::read::dags::{
    DagRecord, VersionRecord, dag_not_found, load_dag, load_version, versions_by_hash,
};
pub use crate::read::runs::{RunRecord, load_run};
pub use crate::read::task_instances::TiRecord;

/// Airflow's `DagTagResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagTagResponse {
    /// The tag.
    pub name: String,
    /// Its DAG.
    pub dag_id: String,
    /// Its DAG's display name.
    pub dag_display_name: String,
}

/// Airflow's `DAGResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagResponse {
    pub dag_id: String,
    pub dag_display_name: String,
    pub is_paused: bool,
    pub is_stale: bool,
    pub last_parsed_time: DateTime<Utc>,
    pub last_parse_duration: Option<f64>,
    pub last_expired: Option<DateTime<Utc>>,
    pub bundle_name: String,
    pub bundle_version: Option<String>,
    pub relative_fileloc: String,
    pub fileloc: String,
    pub description: Option<String>,
    pub timetable_summary: Option<String>,
    pub timetable_description: String,
    pub timetable_partitioned: bool,
    pub tags: Vec<DagTagResponse>,
    pub max_active_tasks: i32,
    pub max_active_runs: i32,
    pub max_consecutive_failed_dag_runs: i32,
    pub has_task_concurrency_limits: bool,
    pub has_import_errors: bool,
    pub next_dagrun_logical_date: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_start: Option<DateTime<Utc>>,
    pub next_dagrun_data_interval_end: Option<DateTime<Utc>>,
    pub next_dagrun_run_after: Option<DateTime<Utc>>,
    pub allowed_run_types: Option<Vec<String>>,
    pub owners: Vec<String>,
    pub file_token: String,
}

/// The tags of a DAG as `DagTagResponse`s.
fn tag_responses(dag: &DagRecord) -> Vec<DagTagResponse> {
    dag.tags
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|name| DagTagResponse {
            name: name.to_owned(),
            dag_id: dag.dag_id.clone(),
            dag_display_name: dag.dag_id.clone(),
        })
        .collect()
}

/// The owners of a DAG as a list.
fn owners_list(dag: &DagRecord) -> Vec<String> {
    dag.owners
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A DAG's file relative to its bundle (`dag.py` of `hello/dag.py`).
fn relative_fileloc(dag: &DagRecord) -> &str {
    dag.fileloc
        .strip_prefix(&format!("{}/", dag.bundle_name))
        .unwrap_or(&dag.fileloc)
}

impl DagResponse {
    /// `DAGResponse` of a DAG. `next` is the next scheduled run, when the DAG has a schedule.
    pub fn new(dag: &DagRecord, next: Option<&NextRun>) -> Self {
        Self {
            dag_id: dag.dag_id.clone(),
            dag_display_name: dag.dag_id.clone(),
            is_paused: dag.is_paused,
            is_stale: dag.is_stale,
            last_parsed_time: dag.last_parsed_time,
            last_parse_duration: None,
            last_expired: None,
            bundle_name: dag.bundle_name.clone(),
            bundle_version: None,
            relative_fileloc: relative_fileloc(dag).to_owned(),
            fileloc: dag.fileloc.clone(),
            description: dag.description.clone(),
            timetable_summary: dag.timetable_summary.clone(),
            timetable_description: timetable_description(dag.timetable_summary.as_deref()),
            timetable_partitioned: false,
            tags: tag_responses(dag),
            max_active_tasks: dag.max_active_tasks,
            max_active_runs: dag.max_active_runs,
            max_consecutive_failed_dag_runs: 0,
            has_task_concurrency_limits: false,
            has_import_errors: dag.has_import_errors,
            next_dagrun_logical_date: next.map(|n| n.logical_date),
            next_dagrun_data_interval_start: next.map(|n| n.data_interval_start),
            next_dagrun_data_interval_end: next.map(|n| n.data_interval_end),
            next_dagrun_run_after: next.map(|n| n.run_after),
            allowed_run_types: None,
            owners: owners_list(dag),
            file_token: file_token(&dag.bundle_name, relative_fileloc(dag)),
        }
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
        Some("Asset") => "Triggered by assets".into(),
        Some(either) if either.starts_with("Asset or ") => format!(
            "Triggered by assets or {}",
            timetable_description(either.strip_prefix("Asset or "))
        ),
        // A cron expression; a timedelta's, several crons' or events' summary says itself.
        Some(cron) if cron.split_whitespace().count() == 5 => format!("Cron schedule: {cron}"),
        Some(other) => other.to_owned(),
    }
}

/// The opaque token Airflow gives each DAG file (the UI passes it back to re-parse a file).
pub fn file_token(bundle_name: &str, relative_fileloc: &str) -> String {
    let payload = json!({"bundle_name": bundle_name, "relative_fileloc": relative_fileloc});
    URL_SAFE_NO_PAD.encode(payload.to_string())
}

/// Airflow's `DAGCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagCollection {
    /// The page.
    pub dags: Vec<DagResponse>,
    /// DAGs in the whole list.
    pub total_entries: i64,
}

/// Airflow's `DagVersionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagVersionResponse {
    pub id: Uuid,
    pub version_number: i32,
    pub dag_id: String,
    pub bundle_name: String,
    pub bundle_version: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dag_display_name: String,
    pub bundle_url: Option<String>,
}

impl From<&VersionRecord> for DagVersionResponse {
    fn from(version: &VersionRecord) -> Self {
        Self {
            id: version.id,
            version_number: version.version_number,
            dag_id: version.dag_id.clone(),
            bundle_name: version.bundle_name.clone(),
            bundle_version: version.bundle_version.clone(),
            created_at: version.created_at,
            dag_display_name: version.dag_id.clone(),
            bundle_url: None,
        }
    }
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

/// Airflow's `DAGRunResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagRunResponse {
    pub dag_run_id: String,
    pub dag_id: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub last_scheduling_decision: Option<DateTime<Utc>>,
    pub run_type: String,
    pub state: String,
    pub triggered_by: &'static str,
    pub triggering_user_name: Option<String>,
    pub conf: Value,
    pub note: Option<String>,
    pub dag_versions: Vec<DagVersionResponse>,
    pub bundle_version: Option<String>,
    pub dag_display_name: String,
    pub partition_key: Option<String>,
}

/// Airflow's `DAGRunCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct DagRunCollection {
    /// The page.
    pub dag_runs: Vec<DagRunResponse>,
    /// Runs in the whole list.
    pub total_entries: i64,
    /// The cursors.
    #[serde(flatten)]
    pub cursors: Option<Cursors>,
}

/// Airflow's `DAGRunLightResponse` (the grid's and the DAGs list's latest runs).
#[derive(Debug, Clone, Serialize)]
pub struct DagRunLightResponse {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub state: String,
    pub duration: Option<f64>,
}

impl DagRunResponse {
    /// `DAGRunResponse` of a run, with its DAG version when known.
    pub fn new(run: &RunRecord, version: Option<&VersionRecord>) -> Self {
        Self {
            dag_run_id: run.run_id.clone(),
            dag_id: run.dag_id.clone(),
            logical_date: run.logical_date,
            queued_at: run.queued_at,
            start_date: run.start_date,
            end_date: run.end_date,
            duration: duration(run.start_date, run.end_date),
            data_interval_start: run.data_interval_start,
            data_interval_end: run.data_interval_end,
            run_after: run.run_after,
            last_scheduling_decision: run.end_date.or(run.start_date),
            run_type: run.run_type.clone(),
            state: run.state.clone(),
            triggered_by: triggered_by(&run.triggered_by),
            triggering_user_name: run.triggering_user_name.clone(),
            conf: run.conf.clone(),
            note: run.note.clone(),
            dag_versions: version.map(DagVersionResponse::from).into_iter().collect(),
            bundle_version: None,
            dag_display_name: run.dag_id.clone(),
            partition_key: None,
        }
    }
}

impl From<&RunRecord> for DagRunLightResponse {
    fn from(run: &RunRecord) -> Self {
        Self {
            id: run.id,
            dag_id: run.dag_id.clone(),
            run_id: run.run_id.clone(),
            logical_date: run.logical_date,
            run_after: run.run_after,
            start_date: run.start_date,
            end_date: run.end_date,
            state: run.state.clone(),
            duration: duration(run.start_date, run.end_date),
        }
    }
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

/// Airflow's `TaskInstanceResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInstanceResponse {
    pub id: Uuid,
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i32,
    pub logical_date: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub state: Option<String>,
    pub try_number: i32,
    pub max_tries: i64,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: String,
    pub priority_weight: i64,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<DateTime<Utc>>,
    pub scheduled_when: Option<DateTime<Utc>>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    /// Airflow prints the executor config as a string (`"{}"`).
    pub executor_config: String,
    pub note: Option<String>,
    pub rendered_map_index: Option<String>,
    /// The current try's rendered template fields (`{}` in lists).
    pub rendered_fields: Value,
    pub trigger: Option<TriggerResponse>,
    pub triggerer_job: Option<Value>,
    pub dag_version: Option<DagVersionResponse>,
}

/// Airflow's `TriggerResponse`: what a deferred task instance waits for.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerResponse {
    /// The position of the `TaskDeferred` event that set it.
    pub id: i64,
    pub classpath: String,
    /// Its arguments as Airflow prints them (a Python dict's repr).
    pub kwargs: String,
    pub created_date: DateTime<Utc>,
    pub queue: Option<String>,
    /// Leoflow's triggerer is the control plane's own process, not a job with an id.
    pub triggerer_id: Option<i64>,
}

impl TriggerResponse {
    /// The trigger of a task instance that waits deferred, if it does.
    fn of(ti: &TiRecord) -> Option<Self> {
        if ti.state.as_deref() != Some("deferred") {
            return None;
        }
        let trigger = ti.trigger.as_ref()?;
        let classpath = match trigger["kind"].as_str() {
            Some("python") => trigger["classpath"].as_str(),
            // The control plane waits for the answer itself (`hitlDetails` shows the request).
            Some("person") => Some("airflow.providers.standard.triggers.hitl.HITLTrigger"),
            _ => None,
        };
        if let Some(classpath) = classpath {
            // A trigger's arguments are sealed in the log (they may hold credentials): masked
            // here, as Airflow masks secrets it shows.
            return Some(Self {
                id: ti.trigger_id?,
                classpath: classpath.to_owned(),
                kwargs: "***".to_owned(),
                created_date: ti.trigger_created_at?,
                queue: None,
                triggerer_id: None,
            });
        }
        // A moment (`DateTimeTrigger`; a `TimeDeltaTrigger` is one, and Airflow records it as
        // one too).
        let moment: DateTime<Utc> = serde_json::from_value(trigger["moment"].clone()).ok()?;
        let end_from_trigger = trigger["end_from_trigger"].as_bool().unwrap_or(false);
        Some(Self {
            id: ti.trigger_id?,
            classpath: "airflow.providers.standard.triggers.temporal.DateTimeTrigger".to_owned(),
            kwargs: format!(
                "{{'moment': {}, 'end_from_trigger': {}}}",
                python_datetime(moment),
                if end_from_trigger { "True" } else { "False" }
            ),
            created_date: ti.trigger_created_at?,
            queue: None,
            triggerer_id: None,
        })
    }
}

/// A UTC moment as Python prints a pendulum `DateTime` (what Airflow's trigger kwargs hold).
fn python_datetime(moment: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let micros = moment.nanosecond() / 1_000;
    let fraction = if micros > 0 {
        format!(", {micros}")
    } else {
        String::new()
    };
    format!(
        "DateTime({}, {}, {}, {}, {}, {}{fraction}, tzinfo=Timezone('UTC'))",
        moment.year(),
        moment.month(),
        moment.day(),
        moment.hour(),
        moment.minute(),
        moment.second()
    )
}

/// Airflow's `TaskInstanceHistoryResponse`: one try of a task instance.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInstanceHistoryResponse {
    pub task_id: String,
    pub dag_id: String,
    pub dag_run_id: String,
    pub map_index: i32,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub duration: Option<f64>,
    pub state: Option<String>,
    pub try_number: i32,
    pub max_tries: i64,
    pub task_display_name: String,
    pub dag_display_name: String,
    pub hostname: Option<String>,
    pub unixname: Option<String>,
    pub pool: String,
    pub pool_slots: i64,
    pub queue: String,
    pub priority_weight: i64,
    pub operator: Option<String>,
    pub operator_name: Option<String>,
    pub queued_when: Option<DateTime<Utc>>,
    pub scheduled_when: Option<DateTime<Utc>>,
    pub pid: Option<i32>,
    pub executor: Option<String>,
    pub executor_config: String,
    pub dag_version: Option<DagVersionResponse>,
}

/// Airflow's `TaskInstanceCollectionResponse` (and its cursors when the client pages by
/// cursor).
#[derive(Debug, Clone, Serialize)]
pub struct TaskInstanceCollection {
    /// The page.
    pub task_instances: Vec<TaskInstanceResponse>,
    /// Task instances in the whole list.
    pub total_entries: i64,
    /// The cursors, on the list routes.
    #[serde(flatten)]
    pub cursors: Option<Cursors>,
}

/// Airflow's `TaskInstanceHistoryCollectionResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskInstanceHistoryCollection {
    /// The tries.
    pub task_instances: Vec<TaskInstanceHistoryResponse>,
    /// How many.
    pub total_entries: usize,
}

/// The cursors of a page, as the UI's cursor paging reads them.
#[derive(Debug, Clone, Serialize)]
pub struct Cursors {
    /// The next page's cursor, if there is one.
    pub next_cursor: Option<String>,
    /// The previous page's cursor, if there is one.
    pub previous_cursor: Option<String>,
}

impl Cursors {
    /// The cursors of a page.
    pub fn of<T>(paged: &crate::read::page::Paged<T>) -> Self {
        let (next_cursor, previous_cursor) = paged.cursors();
        Self {
            next_cursor,
            previous_cursor,
        }
    }
}

impl TaskInstanceResponse {
    /// `TaskInstanceResponse` of a task instance, with its task's facts and its DAG version.
    pub fn new(ti: &TiRecord, task: &TaskFacts, version: Option<&VersionRecord>) -> Self {
        Self {
            id: ti.id,
            task_id: ti.task_id.clone(),
            dag_id: ti.dag_id.clone(),
            dag_run_id: ti.run_id.clone(),
            map_index: ti.map_index,
            logical_date: ti.logical_date,
            run_after: ti.run_after,
            start_date: ti.start_date,
            end_date: ti.end_date,
            duration: ti.duration,
            state: ti.state.clone(),
            try_number: ti.try_number,
            max_tries: task.retries,
            task_display_name: task.display_name.clone(),
            dag_display_name: ti.dag_id.clone(),
            hostname: ti.hostname.clone(),
            unixname: ti.hostname.as_ref().map(|_| unixname()),
            pool: task.pool_of(ti),
            pool_slots: task.pool_slots_of(ti),
            queue: task.queue_of(ti),
            priority_weight: task.priority_weight_of(ti),
            operator: task.operator.clone(),
            operator_name: task.operator_name.clone(),
            queued_when: ti.queued_dttm,
            scheduled_when: ti.scheduled_dttm,
            pid: ti.pid,
            executor: ti.executor.clone(),
            executor_config: "{}".into(),
            note: None,
            rendered_map_index: (ti.map_index >= 0).then(|| ti.map_index.to_string()),
            rendered_fields: Value::Object(Default::default()),
            trigger: TriggerResponse::of(ti),
            triggerer_job: None,
            dag_version: version.map(DagVersionResponse::from),
        }
    }
}

impl TaskFacts {
    /// A task instance's pool, else the task's (a task instance not queued yet has none).
    pub fn pool_of(&self, ti: &TiRecord) -> String {
        ti.pool.clone().unwrap_or_else(|| self.pool.clone())
    }

    /// A task instance's pool slots, else the task's.
    pub fn pool_slots_of(&self, ti: &TiRecord) -> i64 {
        ti.pool_slots.map(i64::from).unwrap_or(self.pool_slots)
    }

    /// A task instance's queue, else the task's.
    pub fn queue_of(&self, ti: &TiRecord) -> String {
        ti.queue.clone().unwrap_or_else(|| self.queue.clone())
    }

    /// A task instance's priority weight, else the task's.
    pub fn priority_weight_of(&self, ti: &TiRecord) -> i64 {
        ti.priority_weight
            .map(i64::from)
            .unwrap_or(self.priority_weight)
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
    pub fn response(&self, ti: &TiRecord) -> TaskInstanceResponse {
        let (facts, version) = self.facts(ti);
        TaskInstanceResponse::new(ti, &facts, version)
    }
}

#[cfg(test)]
mod tests {
    use super::timetable_description;

    #[test]
    fn only_a_cron_expression_is_described_as_one() {
        assert_eq!(
            timetable_description(Some("0 6 * * 1-5")),
            "Cron schedule: 0 6 * * 1-5"
        );
        assert_eq!(timetable_description(Some("@daily")), "At 00:00");
        // A timedelta's, several crons' or an events timetable's summary says itself.
        assert_eq!(timetable_description(Some("6:00:00")), "6:00:00");
        assert_eq!(
            timetable_description(Some("0 9 * * *, 0 17 * * *")),
            "0 9 * * *, 0 17 * * *"
        );
        assert_eq!(timetable_description(Some("Match days")), "Match days");
        assert_eq!(timetable_description(None), "Never, external triggers only");
    }
}
