//! The pure part of projecting: which rows an event needs, and how it changes them.
//!
//! Timestamps come from the envelope's `recorded_at`, ids from positions and UUIDv5 of
//! natural keys, so applying the same events always yields the same rows — the property
//! `replay --verify` checks.

use chrono::{DateTime, Utc};
use leoflow_core::state::{RunStatus, TiState};
use leoflow_events::catalog::*;
use leoflow_events::{Event, RecordedEvent, TaskInstanceKey};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::rows::*;
use crate::table::{NotLoaded, Table};

/// Namespace of the UUIDv5 ids Leoflow derives for read-model rows.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6f66_6c6f_7700_8000_0000_0000_0001);

/// The read models grouped into projections, each with its own checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Projection {
    /// `dag`, `dag_version`, `import_error`, `dag_favorite`.
    Dags,
    /// `dag_run`, `task_instance`, `task_instance_try`.
    Runs,
    /// `xcom`.
    XCom,
    /// `variable`, `connection`, `slot_pool`.
    Config,
}

impl Projection {
    /// Every projection.
    pub const ALL: [Projection; 4] = [
        Projection::Dags,
        Projection::Runs,
        Projection::XCom,
        Projection::Config,
    ];

    /// Its name in `projection_checkpoints`.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Dags => "dags",
            Projection::Runs => "runs",
            Projection::XCom => "xcom",
            Projection::Config => "config",
        }
    }

    /// The projection an event belongs to.
    pub fn of(event: &Event) -> Projection {
        match event {
            Event::DagParsed(_)
            | Event::DagImportFailed(_)
            | Event::DagPaused(_)
            | Event::DagUnpaused(_)
            | Event::DagDeleted(_)
            | Event::DagFavorited(_)
            | Event::DagUnfavorited(_) => Projection::Dags,
            Event::XComPushed(_) => Projection::XCom,
            Event::VariableSet(_)
            | Event::VariableDeleted(_)
            | Event::ConnectionSet(_)
            | Event::ConnectionDeleted(_)
            | Event::PoolSet(_)
            | Event::PoolDeleted(_)
            | Event::ApiTokenIssued(_)
            | Event::ApiTokenRevoked(_) => Projection::Config,
            // With the runs: a run that consumes asset events empties the queue they filled.
            Event::AssetEventRecorded(_) | Event::AssetQueueCleared(_) => Projection::Runs,
            Event::RunNoteSet(_)
            | Event::RunQueued(_)
            | Event::RunStarted(_)
            | Event::RunSucceeded(_)
            | Event::RunFailed(_)
            | Event::RunCleared(_)
            | Event::TaskScheduled(_)
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
            | Event::TaskRendered(_)
            | Event::CommandRejected(_)
            | Event::DagCallbackRequested(_)
            | Event::DagCallbackRan(_)
            | Event::TaskCallbackRequested(_)
            | Event::TaskCallbackRan(_)
            | Event::SchedulerElected(_) => Projection::Runs,
        }
    }
}

/// An event that cannot be applied to the read models as they stand.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The event refers to something the read models do not have (or already have).
    #[error("{0}")]
    Inconsistent(String),
    /// A projection read a row it did not load.
    #[error(transparent)]
    NotLoaded(#[from] NotLoaded),
}

/// The rows one batch of events touches, for every read-model table.
#[derive(Debug, Default)]
pub struct WorkingSet {
    /// `dag` rows.
    pub dags: Table<DagRow>,
    /// `dag_version` rows.
    pub dag_versions: Table<DagVersionRow>,
    /// `import_error` rows.
    pub import_errors: Table<ImportErrorRow>,
    /// `dag_run` rows.
    pub runs: Table<DagRunRow>,
    /// `task_instance` rows: each instance's current try.
    pub task_instances: Table<TaskInstanceRow>,
    /// `task_instance_try` rows: every try.
    pub tries: Table<TaskInstanceTryRow>,
    /// `xcom` rows.
    pub xcoms: Table<XComRow>,
    /// `variable` rows.
    pub variables: Table<VariableRow>,
    /// `connection` rows.
    pub connections: Table<ConnectionRow>,
    /// `slot_pool` rows.
    pub pools: Table<PoolRow>,
    /// `dag_favorite` rows.
    pub favorites: Table<DagFavoriteRow>,
    /// `api_token` rows.
    pub api_tokens: Table<ApiTokenRow>,
    /// `asset` rows.
    pub assets: Table<AssetRow>,
    /// `asset_event` rows.
    pub asset_events: Table<AssetEventRow>,
    /// `asset_alias` rows.
    pub asset_aliases: Table<AssetAliasRow>,
    /// `asset_alias_asset` rows.
    pub alias_assets: Table<AliasAssetRow>,
    /// `asset_dag_run_queue` rows.
    pub asset_queue: Table<AssetQueueRow>,
    /// `asset_event_dag_run` rows.
    pub asset_event_runs: Table<AssetEventRunRow>,
    /// Data keys of the secrets deleted by the batch: destroyed with the live rows, in the
    /// same transaction as the delete events (crypto-shredding).
    pub shredded: Vec<Uuid>,
}

macro_rules! each_table {
    ($ws:expr, |$t:ident| $body:expr) => {{
        {
            let $t = &mut $ws.dags;
            $body
        }
        {
            let $t = &mut $ws.dag_versions;
            $body
        }
        {
            let $t = &mut $ws.import_errors;
            $body
        }
        {
            let $t = &mut $ws.runs;
            $body
        }
        {
            let $t = &mut $ws.task_instances;
            $body
        }
        {
            let $t = &mut $ws.tries;
            $body
        }
        {
            let $t = &mut $ws.xcoms;
            $body
        }
        {
            let $t = &mut $ws.variables;
            $body
        }
        {
            let $t = &mut $ws.connections;
            $body
        }
        {
            let $t = &mut $ws.pools;
            $body
        }
        {
            let $t = &mut $ws.favorites;
            $body
        }
        {
            let $t = &mut $ws.api_tokens;
            $body
        }
        {
            let $t = &mut $ws.assets;
            $body
        }
        {
            let $t = &mut $ws.asset_events;
            $body
        }
        {
            let $t = &mut $ws.asset_aliases;
            $body
        }
        {
            let $t = &mut $ws.alias_assets;
            $body
        }
        {
            let $t = &mut $ws.asset_queue;
            $body
        }
        {
            let $t = &mut $ws.asset_event_runs;
            $body
        }
    }};
}

impl WorkingSet {
    /// Loads every row the wanted keys name, one query per table that wants any.
    pub async fn load(&mut self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        each_table!(self, |t| t.load(conn, schema).await?);
        Ok(())
    }

    /// Writes every changed row back.
    pub async fn flush(&mut self, conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
        each_table!(self, |t| t.flush(conn, schema).await?);
        // A rebuild into another schema replays old deletes; only the live models' deletes
        // destroy keys (those deletes are what made the keys go).
        if schema == crate::LIVE_SCHEMA && !self.shredded.is_empty() {
            sqlx::query("DELETE FROM public.secret_data_key WHERE key_id = ANY($1)")
                .bind(std::mem::take(&mut self.shredded))
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Forgets every row.
    pub fn clear(&mut self) {
        each_table!(self, |t| t.clear());
    }

    /// Marks the rows `event` will read, so [`WorkingSet::load`] fetches them first.
    pub fn want(&mut self, event: &Event) {
        match event {
            Event::DagParsed(e) => {
                self.dags.want(dag_key(&e.dag_id));
                self.want_assets_of(e);
            }
            Event::AssetEventRecorded(e) => self.want_queue_of(e),
            // Removes rows only, which needs nothing loaded.
            Event::AssetQueueCleared(_) => {}
            Event::DagPaused(DagPaused { dag_id }) | Event::DagUnpaused(DagUnpaused { dag_id }) => {
                self.dags.want(dag_key(dag_id))
            }
            Event::DagFavorited(DagFavorited { dag_id, username })
            | Event::DagUnfavorited(DagUnfavorited { dag_id, username }) => {
                self.favorites.want(DagFavoriteKey {
                    dag_id: dag_id.clone(),
                    username: username.clone(),
                })
            }
            Event::RunNoteSet(RunNoteSet { dag_id, run_id, .. }) => {
                self.runs.want(run_key(dag_id, run_id))
            }
            // Deleting a secret reads its row for the data key to destroy.
            Event::VariableDeleted(e) => self.variables.want(VariableKey {
                tenant: e.tenant.clone(),
                key: e.key.clone(),
            }),
            Event::ConnectionDeleted(e) => self.connections.want(ConnectionKey {
                tenant: e.tenant.clone(),
                conn_id: e.conn_id.clone(),
            }),
            Event::RunQueued(RunQueued { dag_id, run_id, .. })
            | Event::RunStarted(RunStarted { dag_id, run_id })
            | Event::RunSucceeded(RunSucceeded { dag_id, run_id })
            | Event::RunFailed(RunFailed { dag_id, run_id, .. })
            | Event::RunCleared(RunCleared { dag_id, run_id }) => {
                self.runs.want(run_key(dag_id, run_id))
            }
            Event::TaskScheduled(TaskScheduled { ti, .. })
            | Event::TaskQueued(TaskQueued { ti, .. })
            | Event::TaskDispatched(TaskDispatched { ti, .. })
            | Event::TaskStarted(TaskStarted { ti, .. })
            | Event::TaskSucceeded(TaskSucceeded { ti, .. })
            | Event::TaskFailed(TaskFailed { ti, .. })
            | Event::TaskUpForRetry(TaskUpForRetry { ti, .. })
            | Event::TaskDeferred(TaskDeferred { ti, .. })
            | Event::TaskRescheduled(TaskRescheduled { ti, .. })
            | Event::TaskResumed(TaskResumed { ti, .. })
            | Event::TaskSkipped(TaskSkipped { ti, .. })
            | Event::TaskUpstreamFailed(TaskUpstreamFailed { ti, .. })
            | Event::TaskCleared(TaskCleared { ti, .. })
            | Event::TaskRendered(TaskRendered { ti, .. }) => {
                self.task_instances.want(ti_key(ti));
                if let Some(try_number) = try_of(event) {
                    self.tries.want(try_key(ti, try_number));
                }
            }
            // Rows written without reading them first (or nothing at all).
            Event::TaskMapped(_)
            | Event::XComPushed(_)
            | Event::DagImportFailed(_)
            | Event::DagDeleted(_)
            | Event::VariableSet(_)
            | Event::ConnectionSet(_)
            | Event::PoolSet(_)
            | Event::PoolDeleted(_)
            | Event::CommandRejected(_)
            | Event::DagCallbackRequested(_)
            | Event::DagCallbackRan(_)
            | Event::TaskCallbackRequested(_)
            | Event::TaskCallbackRan(_)
            | Event::SchedulerElected(_)
            | Event::ApiTokenIssued(_) => {}
            Event::ApiTokenRevoked(e) => self.api_tokens.want(ApiTokenKey {
                token_id: e.token_id.clone(),
            }),
        }
    }

    /// Applies one event. `event` is `recorded` decoded.
    pub fn apply(&mut self, recorded: &RecordedEvent, event: &Event) -> Result<(), ApplyError> {
        let at = recorded.recorded_at;
        match event {
            Event::DagParsed(e) => self.dag_parsed(e, at),
            Event::DagImportFailed(e) => self.import_failed(e, recorded.position, at),
            Event::DagPaused(e) => self.set_paused(&e.dag_id, true),
            Event::DagUnpaused(e) => self.set_paused(&e.dag_id, false),
            Event::DagFavorited(e) => self.set_favorite(&e.dag_id, &e.username, true),
            Event::DagUnfavorited(e) => self.set_favorite(&e.dag_id, &e.username, false),
            Event::DagDeleted(e) => Err(ApplyError::Inconsistent(format!(
                "DagDeleted of {} must be applied by `project`, between batches",
                e.dag_id
            ))),
            Event::RunQueued(e) => {
                self.asset_events_consumed(e);
                self.run_queued(e, recorded, at)
            }
            Event::AssetEventRecorded(e) => self.asset_event_recorded(e, recorded),
            Event::AssetQueueCleared(e) => {
                self.asset_queue_cleared(e);
                Ok(())
            }
            Event::RunStarted(e) => self.run_started(e, at),
            Event::RunSucceeded(e) => self.run_ended(&e.dag_id, &e.run_id, RunStatus::Success, at),
            Event::RunFailed(e) => self.run_ended(&e.dag_id, &e.run_id, RunStatus::Failed, at),
            Event::RunCleared(e) => self.run_cleared(e, at),
            Event::RunNoteSet(e) => self.update_run(&e.dag_id, &e.run_id, "RunNoteSet", |run| {
                run.note = e.note.clone();
            }),
            Event::TaskScheduled(e) => self.task_scheduled(e, at),
            Event::TaskQueued(e) => self.task_queued(e, at),
            Event::TaskDispatched(e) => self.update_ti(&e.ti, Some(e.try_number), |ti, _| {
                ti.executor = Some(e.executor.clone());
            }),
            Event::TaskRendered(e) => self.task_rendered(e),
            Event::TaskStarted(e) => self.task_started(e, at),
            Event::TaskSucceeded(e) => {
                self.task_ended(&e.ti, Some(e.try_number), TiState::Success, at, None)
            }
            Event::TaskFailed(e) => {
                let reason = Some(e.reason.as_str());
                self.task_ended(&e.ti, Some(e.try_number), TiState::Failed, at, reason)
            }
            Event::TaskUpForRetry(e) => {
                let reason = Some(e.reason.as_str());
                self.task_ended(&e.ti, Some(e.try_number), TiState::UpForRetry, at, reason)
            }
            Event::TaskDeferred(e) => self.task_deferred(e, recorded.position, at),
            Event::TaskRescheduled(e) => self.update_ti(&e.ti, Some(e.try_number), |ti, _| {
                ti.state = stored(TiState::UpForReschedule);
            }),
            Event::TaskResumed(e) => self.task_resumed(e, at),
            Event::TaskSkipped(e) => {
                let reason = e.reason.as_deref();
                self.task_ended(&e.ti, None, TiState::Skipped, at, reason)
            }
            Event::TaskUpstreamFailed(e) => {
                self.task_ended(&e.ti, None, TiState::UpstreamFailed, at, None)
            }
            Event::TaskCleared(e) => self.task_cleared(e),
            Event::TaskMapped(e) => {
                // The placeholder never ran; its mapped instances appear as they are scheduled.
                self.task_instances.remove(ti_key(&e.ti));
                Ok(())
            }
            Event::XComPushed(e) => self.xcom_pushed(e, at),
            Event::VariableSet(e) => self.variable_set(e, at),
            Event::VariableDeleted(e) => self.variable_deleted(e),
            Event::ConnectionSet(e) => self.connection_set(e, at),
            Event::ConnectionDeleted(e) => self.connection_deleted(e),
            Event::PoolSet(e) => self.pool_set(e),
            Event::PoolDeleted(e) => {
                self.pools.remove(PoolKey {
                    tenant: e.tenant.clone(),
                    pool: e.name.clone(),
                });
                Ok(())
            }
            // Audit records only: the log (and `events tail`) is where they are read; a DAG
            // callback's output is in the log of the task instance whose context it had.
            Event::CommandRejected(_)
            | Event::DagCallbackRequested(_)
            | Event::DagCallbackRan(_)
            | Event::TaskCallbackRequested(_)
            | Event::TaskCallbackRan(_) => Ok(()),
            // Fences the leader's appends; health reads the leader's heartbeat row instead.
            Event::SchedulerElected(_) => Ok(()),
            Event::ApiTokenIssued(e) => {
                self.api_token_issued(e, recorded);
                Ok(())
            }
            Event::ApiTokenRevoked(e) => self.api_token_revoked(e, at),
        }
    }
}

// DAGs: `dag`, `dag_version`, `import_error`, `dag_favorite`.
impl WorkingSet {
    fn dag_parsed(&mut self, e: &DagParsed, at: DateTime<Utc>) -> Result<(), ApplyError> {
        let existing = self.dags.get(&dag_key(&e.dag_id))?.cloned();
        // Registering checks this too, but only the append's own transaction sees a concurrent
        // registration of the same id into another tenant: refusing here rolls that one back.
        if let Some(dag) = existing.as_ref().filter(|dag| dag.tenant != e.tenant) {
            return Err(ApplyError::Inconsistent(format!(
                "DAG key {:?} belongs to tenant {:?}; a DAG does not move between tenants \
                 (DagParsed into tenant {:?})",
                e.dag_id, dag.tenant, e.tenant
            )));
        }
        // A file that parses again has no import error any more; nor has the project's default
        // file, which an error naming no file (its DAG file not found) was recorded against.
        self.import_errors.remove(ImportErrorKey {
            filename: e.fileloc.clone(),
        });
        self.import_errors.remove(ImportErrorKey {
            filename: format!("{}/{DEFAULT_DAG_FILE}", e.bundle_name),
        });
        let (is_paused, mut version_number, mut version_id, latest_hash) = match &existing {
            Some(dag) => (
                dag.is_paused,
                dag.latest_version_number,
                dag.latest_version_id,
                Some(dag.latest_version_hash.as_str()),
            ),
            None => (e.is_paused_upon_creation, 0, Uuid::nil(), None),
        };
        if latest_hash != Some(e.version_hash.as_str()) {
            version_number += 1;
            version_id = Uuid::new_v5(
                &ID_NAMESPACE,
                format!("dag_version/{}/{version_number}", e.dag_id).as_bytes(),
            );
            self.dag_versions.put(DagVersionRow {
                id: version_id,
                dag_id: e.dag_id.clone(),
                version_number,
                version_hash: e.version_hash.clone(),
                source_hash: e.source_hash.clone(),
                document_hash: e.document_hash.clone(),
                fileloc: e.fileloc.clone(),
                bundle_name: e.bundle_name.clone(),
                created_at: at,
                bundle_version: e.provenance.as_ref().and_then(|p| p.git_commit.clone()),
                image: e.provenance.as_ref().and_then(|p| p.image.clone()),
            });
        }
        self.dags.put(DagRow {
            dag_id: e.dag_id.clone(),
            is_paused,
            is_stale: false,
            fileloc: e.fileloc.clone(),
            bundle_name: e.bundle_name.clone(),
            description: e.description.clone(),
            owners: e.owners.join(", "),
            tags: serde_json::to_value(&e.tags).expect("tags serialize"),
            timetable_summary: e.timetable_summary.clone(),
            max_active_runs: e.max_active_runs,
            max_active_tasks: e.max_active_tasks,
            catchup: e.catchup,
            last_parsed_time: at,
            latest_version_id: version_id,
            latest_version_number: version_number,
            latest_version_hash: e.version_hash.clone(),
            access_control: e.access_control.clone(),
            readable_by: readers(&e.access_control),
            tenant: e.tenant.clone(),
            asset_expression: e.asset_expression.clone(),
            asset_references: serde_json::to_value(&e.asset_references)
                .expect("asset references serialize"),
            alias_references: serde_json::to_value(&e.alias_references)
                .expect("alias references serialize"),
        });
        self.register_aliases(&e.alias_references, at)?;
        self.register_assets(&e.asset_references, at)
    }

    fn set_paused(&mut self, dag_id: &str, paused: bool) -> Result<(), ApplyError> {
        let dag = self
            .dags
            .get_mut(&dag_key(dag_id))?
            .ok_or_else(|| ApplyError::Inconsistent(format!("no DAG {dag_id:?} to (un)pause")))?;
        dag.is_paused = paused;
        Ok(())
    }

    fn import_failed(
        &mut self,
        e: &DagImportFailed,
        position: i64,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        self.import_errors.put(ImportErrorRow {
            filename: e.fileloc.clone(),
            id: position,
            bundle_name: e.bundle_name.clone(),
            stacktrace: e.error.clone(),
            timestamp: at,
            tenant: e.tenant.clone(),
        });
        Ok(())
    }

    fn set_favorite(&mut self, dag_id: &str, username: &str, on: bool) -> Result<(), ApplyError> {
        if on {
            self.favorites.put(DagFavoriteRow {
                dag_id: dag_id.to_owned(),
                username: username.to_owned(),
            });
        } else {
            self.favorites.remove(DagFavoriteKey {
                dag_id: dag_id.to_owned(),
                username: username.to_owned(),
            });
        }
        Ok(())
    }
}

// Runs: `dag_run`.
impl WorkingSet {
    fn run_queued(
        &mut self,
        e: &RunQueued,
        recorded: &RecordedEvent,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let position = recorded.position;
        // A person triggered it through the API or the UI: the actor is their name.
        let triggering_user_name = matches!(e.triggered_by.as_str(), "rest_api" | "ui")
            .then(|| recorded.metadata.actor.clone())
            .flatten();
        if self.runs.get(&run_key(&e.dag_id, &e.run_id))?.is_some() {
            return Err(ApplyError::Inconsistent(format!(
                "dag run {}/{} is queued a second time",
                e.dag_id, e.run_id
            )));
        }
        self.runs.put(DagRunRow {
            dag_id: e.dag_id.clone(),
            run_id: e.run_id.clone(),
            id: position,
            state: RunStatus::Queued.airflow_name().into(),
            run_type: e.run_type.as_str().into(),
            logical_date: e.logical_date,
            data_interval_start: e.data_interval_start,
            data_interval_end: e.data_interval_end,
            run_after: e.run_after,
            queued_at: Some(at),
            start_date: None,
            end_date: None,
            conf: e.conf.clone(),
            triggered_by: e.triggered_by.clone(),
            dag_version_hash: e.dag_version_hash.clone(),
            clear_number: 0,
            note: None,
            triggering_user_name,
        });
        // Its task instances, without a state until they are scheduled, as Airflow creates
        // them with the run (a mapped task's placeholder until it is expanded).
        for task_id in &e.task_ids {
            let key = TaskInstanceKey::new(&e.dag_id, &e.run_id, task_id);
            self.task_instances.put(TaskInstanceRow {
                id: ti_id(&key, 0),
                dag_id: key.dag_id,
                run_id: key.run_id,
                task_id: key.task_id,
                map_index: key.map_index,
                ..Default::default()
            });
        }
        Ok(())
    }

    fn run_started(&mut self, e: &RunStarted, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update_run(&e.dag_id, &e.run_id, "RunStarted", |run| {
            run.state = RunStatus::Running.airflow_name().into();
            run.start_date.get_or_insert(at);
        })
    }

    /// `RunSucceeded` or `RunFailed`.
    fn run_ended(
        &mut self,
        dag_id: &str,
        run_id: &str,
        status: RunStatus,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let what = if status == RunStatus::Failed {
            "RunFailed"
        } else {
            "RunSucceeded"
        };
        self.update_run(dag_id, run_id, what, |run| {
            run.state = status.airflow_name().into();
            run.end_date = Some(at);
        })
    }

    fn run_cleared(&mut self, e: &RunCleared, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update_run(&e.dag_id, &e.run_id, "RunCleared", |run| {
            run.state = RunStatus::Queued.airflow_name().into();
            run.queued_at = Some(at);
            run.start_date = None;
            run.end_date = None;
            run.clear_number += 1;
        })
    }

    fn update_run(
        &mut self,
        dag_id: &str,
        run_id: &str,
        what: &str,
        change: impl FnOnce(&mut DagRunRow),
    ) -> Result<(), ApplyError> {
        let run = self
            .runs
            .get_mut(&run_key(dag_id, run_id))?
            .ok_or_else(|| {
                ApplyError::Inconsistent(format!("{what} for unknown dag run {dag_id}/{run_id}"))
            })?;
        change(run);
        Ok(())
    }
}

// Task instances: `task_instance` and `task_instance_try`.
impl WorkingSet {
    fn task_scheduled(&mut self, e: &TaskScheduled, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update_ti(&e.ti, Some(e.try_number), |ti, _| {
            ti.state = stored(TiState::Scheduled);
            ti.scheduled_dttm = Some(at);
        })
    }

    fn task_queued(&mut self, e: &TaskQueued, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update_ti(&e.ti, Some(e.try_number), |ti, try_row| {
            ti.state = stored(TiState::Queued);
            ti.queued_dttm = Some(at);
            ti.pool = Some(e.pool.clone());
            ti.pool_slots = Some(e.pool_slots);
            ti.priority_weight = Some(e.priority_weight);
            ti.queue = Some(e.queue.clone());
            if let Some(t) = try_row {
                t.queued_dttm = Some(at);
            }
        })
    }

    fn task_rendered(&mut self, e: &TaskRendered) -> Result<(), ApplyError> {
        // A late report of an earlier try must not label the current one.
        let current = self
            .task_instances
            .get(&ti_key(&e.ti))?
            .map(|t| t.try_number);
        if current != Some(e.try_number) {
            return Ok(());
        }
        self.update_ti(&e.ti, None, |ti, _| {
            ti.rendered_fields_hash = Some(e.fields_hash.clone());
        })
    }

    fn task_deferred(
        &mut self,
        e: &TaskDeferred,
        position: i64,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        self.update_ti(&e.ti, Some(e.try_number), |ti, try_row| {
            if let (DeferredTrigger::Person { request, .. }, Some(try_row)) = (&e.trigger, try_row)
            {
                try_row.hitl_request = Some(request.clone());
                try_row.hitl_created_at = Some(at);
                try_row.hitl_response = None;
            }
            ti.state = stored(TiState::Deferred);
            ti.next_method = Some(e.next_method.clone());
            ti.next_kwargs = serde_json::to_value(&e.next_kwargs).ok();
            ti.trigger = serde_json::to_value(&e.trigger).ok();
            ti.trigger_id = Some(position);
            ti.trigger_created_at = Some(at);
            ti.trigger_timeout = e.timeout_at;
            ti.trigger_event = None;
        })
    }

    fn task_resumed(&mut self, e: &TaskResumed, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update_ti(&e.ti, Some(e.try_number), |ti, try_row| {
            // A person's answer (or the defaults taken at the deadline) is the event.
            if let Some(try_row) = try_row
                && try_row.hitl_request.is_some()
                && try_row.hitl_response.is_none()
                && let Some(answer) = &e.trigger_event
                && answer.get("chosen_options").is_some()
            {
                try_row.hitl_response = Some(answer.clone());
            }
            ti.state = stored(TiState::Scheduled);
            ti.scheduled_dttm = Some(at);
            ti.trigger = None;
            ti.trigger_id = None;
            ti.trigger_created_at = None;
            ti.trigger_timeout = None;
            ti.trigger_event = e.trigger_event.clone();
            if let Some(failure) = &e.failure {
                // Airflow's way to fail a wait: the try carries on in `__fail__`, which raises.
                let kwargs = serde_json::json!({ "error": failure }).to_string();
                ti.next_method = Some(FAIL_METHOD.to_owned());
                ti.next_kwargs = serde_json::to_value(Sealed::clear(kwargs)).ok();
            }
        })
    }

    fn task_started(&mut self, e: &TaskStarted, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.update_ti(&e.ti, Some(e.try_number), |ti, try_row| {
            ti.state = stored(TiState::Running);
            // A try resumed after a deferral or a reschedule goes on: it keeps its first start
            // (a sensor's timeout counts from there, as in Airflow).
            let resumed = try_row.and_then(|t| t.start_date);
            ti.start_date = Some(resumed.unwrap_or(at));
            ti.hostname = Some(e.hostname.clone());
            ti.pid = e.pid;
        })
    }

    /// A try's end (or, without a try number, an instance's end without running).
    fn task_ended(
        &mut self,
        key: &TaskInstanceKey,
        try_number: Option<i32>,
        state: TiState,
        at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> Result<(), ApplyError> {
        self.update_ti(key, try_number, |ti, _| finish(ti, state, at, reason))
    }

    fn task_cleared(&mut self, e: &TaskCleared) -> Result<(), ApplyError> {
        self.update_ti(&e.ti, None, |ti, _| {
            ti.state = stored(TiState::Pending);
            ti.start_date = None;
            ti.end_date = None;
            ti.duration = None;
            ti.hostname = None;
            ti.pid = None;
            ti.failure_reason = None;
            ti.next_method = None;
            ti.next_kwargs = None;
            ti.trigger = None;
            ti.trigger_id = None;
            ti.trigger_created_at = None;
            ti.trigger_timeout = None;
            ti.trigger_event = None;
        })
    }

    /// Changes a task instance (created on first sight) and mirrors it into its try row.
    fn update_ti(
        &mut self,
        key: &TaskInstanceKey,
        try_number: Option<i32>,
        change: impl FnOnce(&mut TaskInstanceRow, Option<&mut TaskInstanceTryRow>),
    ) -> Result<(), ApplyError> {
        let mut ti = match self.task_instances.get(&ti_key(key))? {
            Some(row) => row.clone(),
            None => TaskInstanceRow {
                dag_id: key.dag_id.clone(),
                run_id: key.run_id.clone(),
                task_id: key.task_id.clone(),
                map_index: key.map_index,
                ..Default::default()
            },
        };
        if let Some(n) = try_number
            && n != ti.try_number
        {
            // A new try starts from a clean slate; the old try keeps its own row.
            ti = TaskInstanceRow {
                dag_id: ti.dag_id,
                run_id: ti.run_id,
                task_id: ti.task_id,
                map_index: ti.map_index,
                try_number: n,
                pool: ti.pool,
                pool_slots: ti.pool_slots,
                priority_weight: ti.priority_weight,
                queue: ti.queue,
                ..Default::default()
            };
        }
        ti.id = ti_id(key, ti.try_number);
        let mut try_row = match try_number {
            Some(n) => Some(
                self.tries
                    .get(&try_key(key, n))?
                    .cloned()
                    .unwrap_or_else(|| TaskInstanceTryRow {
                        dag_id: key.dag_id.clone(),
                        run_id: key.run_id.clone(),
                        task_id: key.task_id.clone(),
                        map_index: key.map_index,
                        try_number: n,
                        ..Default::default()
                    }),
            ),
            None => None,
        };
        change(&mut ti, try_row.as_mut());
        if let Some(mut t) = try_row {
            t.task_instance_id = ti.id;
            t.state = ti.state.clone();
            t.start_date = ti.start_date;
            t.end_date = ti.end_date;
            t.duration = ti.duration;
            t.hostname = ti.hostname.clone();
            t.pid = ti.pid;
            t.executor = ti.executor.clone();
            t.failure_reason = ti.failure_reason.clone();
            self.tries.put(t);
        }
        self.task_instances.put(ti);
        Ok(())
    }
}

// XComs and config: `xcom`, `variable`, `connection`, `slot_pool`.
impl WorkingSet {
    fn xcom_pushed(&mut self, e: &XComPushed, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.xcoms.put(XComRow {
            dag_id: e.ti.dag_id.clone(),
            run_id: e.ti.run_id.clone(),
            task_id: e.ti.task_id.clone(),
            map_index: e.ti.map_index,
            key: e.key.clone(),
            value_hash: e.value_hash.clone(),
            size_bytes: e.size_bytes,
            timestamp: at,
        });
        Ok(())
    }

    fn variable_set(&mut self, e: &VariableSet, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.variables.put(VariableRow {
            tenant: e.tenant.clone(),
            key: e.key.clone(),
            val: e.value.clone(),
            description: e.description.clone(),
            updated_at: at,
        });
        Ok(())
    }

    fn variable_deleted(&mut self, e: &VariableDeleted) -> Result<(), ApplyError> {
        let key = VariableKey {
            tenant: e.tenant.clone(),
            key: e.key.clone(),
        };
        if let Some(row) = self.variables.get(&key)? {
            self.shredded.extend(row.val.key_id());
        }
        self.variables.remove(key);
        Ok(())
    }

    fn connection_set(&mut self, e: &ConnectionSet, at: DateTime<Utc>) -> Result<(), ApplyError> {
        self.connections.put(ConnectionRow {
            tenant: e.tenant.clone(),
            conn_id: e.conn_id.clone(),
            conn_type: e.conn_type.clone(),
            description: e.description.clone(),
            host: e.host.clone(),
            schema: e.schema.clone(),
            login: e.login.clone(),
            password: e.password.clone(),
            port: e.port,
            extra: e.extra.clone(),
            updated_at: at,
        });
        Ok(())
    }

    fn connection_deleted(&mut self, e: &ConnectionDeleted) -> Result<(), ApplyError> {
        let key = ConnectionKey {
            tenant: e.tenant.clone(),
            conn_id: e.conn_id.clone(),
        };
        if let Some(row) = self.connections.get(&key)? {
            let sealed = row.password.iter().chain(&row.extra);
            self.shredded.extend(sealed.filter_map(Sealed::key_id));
        }
        self.connections.remove(key);
        Ok(())
    }

    fn api_token_issued(&mut self, e: &ApiTokenIssued, recorded: &RecordedEvent) {
        self.api_tokens.put(ApiTokenRow {
            token_id: e.token_id.clone(),
            role: e.role.clone(),
            tenant: e.tenant.clone(),
            dag_roles: e.dag_roles.clone(),
            digest: e.digest.clone(),
            description: e.description.clone(),
            created_by: recorded.metadata.actor.clone(),
            created_at: recorded.recorded_at,
            expires_at: e.expires_at,
            revoked_at: None,
        });
    }

    fn api_token_revoked(
        &mut self,
        e: &ApiTokenRevoked,
        at: DateTime<Utc>,
    ) -> Result<(), ApplyError> {
        let key = ApiTokenKey {
            token_id: e.token_id.clone(),
        };
        let Some(mut row) = self.api_tokens.get(&key)?.cloned() else {
            return Err(ApplyError::Inconsistent(format!(
                "ApiTokenRevoked of unknown token {}",
                e.token_id
            )));
        };
        row.revoked_at.get_or_insert(at);
        self.api_tokens.put(row);
        Ok(())
    }

    fn pool_set(&mut self, e: &PoolSet) -> Result<(), ApplyError> {
        self.pools.put(PoolRow {
            tenant: e.tenant.clone(),
            pool: e.name.clone(),
            slots: e.slots,
            description: e.description.clone(),
            include_deferred: e.include_deferred,
        });
        Ok(())
    }
}

/// A task instance's state as its column holds it.
fn stored(state: TiState) -> Option<String> {
    state.stored_name().map(str::to_owned)
}

fn finish(ti: &mut TaskInstanceRow, state: TiState, at: DateTime<Utc>, reason: Option<&str>) {
    ti.state = stored(state);
    ti.end_date = Some(at);
    // Airflow gives instances that never ran a zero-length interval at the end time.
    let start = *ti.start_date.get_or_insert(at);
    ti.duration = Some((at - start).num_microseconds().unwrap_or(0) as f64 / 1e6);
    ti.failure_reason = reason.map(str::to_owned);
}

/// The method a try whose wait failed carries on in (Airflow's): it raises the failure.
const FAIL_METHOD: &str = "__fail__";

/// The try an event names, when it names one (its `task_instance_try` row is loaded first).
fn try_of(event: &Event) -> Option<i32> {
    match event {
        Event::TaskScheduled(e) => Some(e.try_number),
        Event::TaskQueued(e) => Some(e.try_number),
        Event::TaskDispatched(e) => Some(e.try_number),
        Event::TaskStarted(e) => Some(e.try_number),
        Event::TaskSucceeded(e) => Some(e.try_number),
        Event::TaskFailed(e) => Some(e.try_number),
        Event::TaskUpForRetry(e) => Some(e.try_number),
        Event::TaskDeferred(e) => Some(e.try_number),
        Event::TaskRescheduled(e) => Some(e.try_number),
        Event::TaskResumed(e) => Some(e.try_number),
        // No try of their own: these touch the task instance, or no task instance at all.
        Event::TaskSkipped(_)
        | Event::TaskUpstreamFailed(_)
        | Event::TaskCleared(_)
        | Event::TaskMapped(_)
        | Event::TaskRendered(_)
        | Event::XComPushed(_)
        | Event::CommandRejected(_)
        | Event::RunQueued(_)
        | Event::RunStarted(_)
        | Event::RunSucceeded(_)
        | Event::RunFailed(_)
        | Event::RunCleared(_)
        | Event::RunNoteSet(_)
        | Event::DagParsed(_)
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
        | Event::ApiTokenRevoked(_)
        | Event::AssetEventRecorded(_)
        | Event::AssetQueueCleared(_)
        | Event::DagCallbackRequested(_)
        | Event::DagCallbackRan(_)
        | Event::TaskCallbackRequested(_)
        | Event::TaskCallbackRan(_) => None,
    }
}

/// The roles `access_control` lets read the DAG: those granted `DAGs: can_read`, the permission
/// Airflow's FAB asks for when it lists the DAGs a user may see (`can_edit` or a grant on the
/// DAG's runs alone does not show the DAG).
fn readers(access_control: &AccessControl) -> Vec<String> {
    access_control
        .iter()
        .filter(|(_, grant)| grant.dags.contains(&DagAction::CanRead))
        .map(|(role, _)| role.clone())
        .collect()
}

fn dag_key(dag_id: &str) -> DagKey {
    DagKey {
        dag_id: dag_id.to_owned(),
    }
}

fn run_key(dag_id: &str, run_id: &str) -> DagRunKey {
    DagRunKey {
        dag_id: dag_id.to_owned(),
        run_id: run_id.to_owned(),
    }
}

/// A task instance's id in one try: like Airflow, a new try gets a new id.
fn ti_id(key: &TaskInstanceKey, try_number: i32) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!(
            "task_instance/{}/{}/{}/{}/{try_number}",
            key.dag_id, key.run_id, key.task_id, key.map_index
        )
        .as_bytes(),
    )
}

fn ti_key(ti: &TaskInstanceKey) -> TaskInstanceRowKey {
    TaskInstanceRowKey {
        dag_id: ti.dag_id.clone(),
        run_id: ti.run_id.clone(),
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
    }
}

fn try_key(ti: &TaskInstanceKey, try_number: i32) -> TryKey {
    TryKey {
        dag_id: ti.dag_id.clone(),
        run_id: ti.run_id.clone(),
        task_id: ti.task_id.clone(),
        map_index: ti.map_index,
        try_number,
    }
}
