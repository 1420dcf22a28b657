//! `task_instance` and `task_instance_try`: one instance, lists of instances (with what they
//! need of their runs), a try's history, and lookups more than one crate needs.

use chrono::{DateTime, Utc};
use leoflow_core::run::ClearScope;
use sqlx::{AssertSqlSafe, FromRow, PgPool};
use uuid::Uuid;

use super::filter::{Bind, Conditions};
use super::page::{ListQuery, Window, fetch_page};

/// The expressions a list of task instances filters and orders by (`t.` the instance, `r.`
/// its run: see also [`super::runs::columns`]).
pub mod columns {
    /// The instance's id.
    pub const ID: &str = "t.id";
    /// Its DAG.
    pub const DAG_ID: &str = "t.dag_id";
    /// Its run.
    pub const RUN_ID: &str = "t.run_id";
    /// Its task.
    pub const TASK_ID: &str = "t.task_id";
    /// Its map index (-1 when not mapped).
    pub const MAP_INDEX: &str = "t.map_index";
    /// Its state (NULL before it is scheduled).
    pub const STATE: &str = "t.state";
    /// Its current try.
    pub const TRY_NUMBER: &str = "t.try_number";
    /// When it started.
    pub const START_DATE: &str = "t.start_date";
    /// When it ended.
    pub const END_DATE: &str = "t.end_date";
    /// Seconds it ran.
    pub const DURATION: &str = "t.duration";
    /// Its pool.
    pub const POOL: &str = "t.pool";
    /// Its queue.
    pub const QUEUE: &str = "t.queue";
    /// Its executor.
    pub const EXECUTOR: &str = "t.executor";
    /// Its priority weight.
    pub const PRIORITY_WEIGHT: &str = "t.priority_weight";
    /// When it last changed state.
    pub const UPDATED_AT: &str = "GREATEST(t.queued_dttm, t.start_date, t.end_date)";
    /// The default order: by DAG, run, task and map index.
    pub const KEY: &str = "t.dag_id, t.run_id, t.task_id, t.map_index";
}

/// A `task_instance` row with what its responses need of its run.
#[derive(Debug, Clone, FromRow)]
pub struct TiRecord {
    /// Its DAG.
    pub dag_id: String,
    /// Its run.
    pub run_id: String,
    /// Its task.
    pub task_id: String,
    /// Its map index (-1 when not mapped).
    pub map_index: i32,
    /// Its id.
    pub id: Uuid,
    /// Its current try.
    pub try_number: i32,
    /// Its state (none before it is scheduled).
    pub state: Option<String>,
    /// When it was scheduled.
    pub scheduled_dttm: Option<DateTime<Utc>>,
    /// When it was queued.
    pub queued_dttm: Option<DateTime<Utc>>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds it ran.
    pub duration: Option<f64>,
    /// The host it ran on.
    pub hostname: Option<String>,
    /// Its process id.
    pub pid: Option<i32>,
    /// Its executor.
    pub executor: Option<String>,
    /// Its pool (none before it is queued).
    pub pool: Option<String>,
    /// Its pool slots.
    pub pool_slots: Option<i32>,
    /// Its priority weight.
    pub priority_weight: Option<i32>,
    /// Its queue.
    pub queue: Option<String>,
    /// The blob of its rendered fields.
    pub rendered_fields_hash: Option<String>,
    /// Its run's logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// When its run may start.
    pub run_after: DateTime<Utc>,
    /// The DAG version its run was queued with.
    pub dag_version_hash: Option<String>,
    /// What a deferred try waits for (`DeferredTrigger` as JSON), while it waits.
    pub trigger: Option<serde_json::Value>,
    /// Its trigger's id, while it waits.
    pub trigger_id: Option<i64>,
    /// When its trigger was set, while it waits.
    pub trigger_created_at: Option<DateTime<Utc>>,
}

/// Task instances joined to their runs (`t.`, `r.`).
const TI_FROM: &str =
    "FROM task_instance t JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id";

const TI_COLUMNS: &str = "t.dag_id, t.run_id, t.task_id, t.map_index, t.id, t.try_number, \
    t.state, t.scheduled_dttm, t.queued_dttm, t.start_date, t.end_date, t.duration, t.hostname, \
    t.pid, t.executor, t.pool, t.pool_slots, t.priority_weight, t.queue, t.rendered_fields_hash, \
    r.logical_date, r.run_after, r.dag_version_hash, t.trigger, t.trigger_id, t.trigger_created_at";

/// The task instances under `conditions` in `window`, in `order` (expressions of
/// [`columns`] and of the run's), and how many there are in all.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<TiRecord>, i64)> {
    let list = ListQuery {
        select: &format!("SELECT {TI_COLUMNS} {TI_FROM}"),
        // Counting all task instances needs their runs only when a filter reads them.
        count_from: if conditions.mentions("r.") {
            TI_FROM
        } else {
            "FROM task_instance t"
        },
        conditions,
        order,
    };
    fetch_page(pool, list, window).await
}

/// Adds to a list's `conditions`: the instance is one a clear touches in one of several runs,
/// each `(dag_id, run_id, scope)` (a marker's clear reaches other DAGs' runs).
pub fn cleared_across(conditions: &mut Conditions, scopes: &[(String, String, ClearScope)]) {
    let (mut dags, mut runs, mut tasks) = (Vec::new(), Vec::new(), Vec::new());
    let (mut one_dags, mut one_runs, mut one_tasks, mut indexes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (dag_id, run_id, scope) in scopes {
        for task_id in &scope.whole_tasks {
            dags.push(dag_id.clone());
            runs.push(run_id.clone());
            tasks.push(task_id.clone());
        }
        for (task_id, map_index) in &scope.instances {
            one_dags.push(dag_id.clone());
            one_runs.push(run_id.clone());
            one_tasks.push(task_id.clone());
            indexes.push(*map_index);
        }
    }
    conditions.push(
        "((t.dag_id, t.run_id, t.task_id) IN (SELECT * FROM unnest({}::text[], {}::text[], {}::text[])) \
         OR (t.dag_id, t.run_id, t.task_id, t.map_index) IN \
         (SELECT * FROM unnest({}::text[], {}::text[], {}::text[], {}::int[])))",
        vec![
            Bind::Texts(dags),
            Bind::Texts(runs),
            Bind::Texts(tasks),
            Bind::Texts(one_dags),
            Bind::Texts(one_runs),
            Bind::Texts(one_tasks),
            Bind::Ints(indexes),
        ],
    );
}

/// The task instances of a run in one of `states` (any state when empty), by task and map
/// index.
pub async fn of_run(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    states: &[String],
) -> sqlx::Result<Vec<TiRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TI_COLUMNS} {TI_FROM} \
         WHERE t.dag_id = $1 AND t.run_id = $2 AND (cardinality($3::text[]) = 0 OR t.state = ANY($3)) \
         ORDER BY t.task_id, t.map_index"
    )))
    .bind(dag_id)
    .bind(run_id)
    .bind(states)
    .fetch_all(pool)
    .await
}

/// One task instance, if the run has it.
pub async fn find(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> sqlx::Result<Option<TiRecord>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TI_COLUMNS} {TI_FROM} WHERE t.dag_id = $1 AND t.run_id = $2 AND t.task_id = $3 AND t.map_index = $4"
    )))
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(pool)
    .await
}

/// The task instances of `keys` (dag id, run id, task id, map index) that exist, in one
/// query, in no particular order.
pub async fn find_many(
    pool: &PgPool,
    keys: &[(&str, &str, &str, i32)],
) -> sqlx::Result<Vec<TiRecord>> {
    let mut columns: [Vec<&str>; 3] = Default::default();
    for (dag_id, run_id, task_id, _) in keys {
        columns[0].push(dag_id);
        columns[1].push(run_id);
        columns[2].push(task_id);
    }
    let [dag_ids, run_ids, task_ids] = columns;
    let map_indexes: Vec<i32> = keys.iter().map(|key| key.3).collect();
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {TI_COLUMNS} {TI_FROM} \
         WHERE (t.dag_id, t.run_id, t.task_id, t.map_index) IN \
           (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[]))"
    )))
    .bind(dag_ids)
    .bind(run_ids)
    .bind(task_ids)
    .bind(map_indexes)
    .fetch_all(pool)
    .await
}

/// A try of a task instance (a `task_instance_try` row).
#[derive(Debug, Clone, FromRow)]
pub struct TryRecord {
    /// Its number.
    pub try_number: i32,
    /// Its state.
    pub state: Option<String>,
    /// When it was queued.
    pub queued_dttm: Option<DateTime<Utc>>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Seconds it ran.
    pub duration: Option<f64>,
    /// The host it ran on.
    pub hostname: Option<String>,
    /// Its process id.
    pub pid: Option<i32>,
    /// Its executor.
    pub executor: Option<String>,
}

/// The tries of a task instance (only try `only` when given), oldest first.
pub async fn tries(
    pool: &PgPool,
    ti: &TiRecord,
    only: Option<i32>,
) -> sqlx::Result<Vec<TryRecord>> {
    sqlx::query_as(
        "SELECT try_number, state, queued_dttm, start_date, end_date, duration, hostname, pid, executor \
         FROM task_instance_try WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 \
         AND ($5::int IS NULL OR try_number = $5) ORDER BY try_number",
    )
    .bind(&ti.dag_id)
    .bind(&ti.run_id)
    .bind(&ti.task_id)
    .bind(ti.map_index)
    .bind(only)
    .fetch_all(pool)
    .await
}

/// Whether a run has a task instance `(task_id, map_index)`.
pub async fn exists(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4)",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_one(pool)
    .await
}

/// The current try number and state of a task instance, if the run has it.
pub async fn try_and_state(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> sqlx::Result<Option<(i32, Option<String>)>> {
    sqlx::query_as(
        "SELECT try_number, state FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(pool)
    .await
}

/// The task instance of a run that last ended in `state` (by end date, as Airflow picks the
/// one a DAG callback's context is of): its task id, map index and try number.
pub async fn last_ended(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    state: &str,
) -> sqlx::Result<Option<(String, i32, i32)>> {
    sqlx::query_as(
        "SELECT task_id, map_index, try_number FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 AND state = $3 \
         ORDER BY end_date DESC NULLS LAST, task_id DESC, map_index DESC LIMIT 1",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(state)
    .fetch_optional(pool)
    .await
}

/// Whether a task of a run is mapped (has instances with a map index).
pub async fn is_mapped(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index >= 0)",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .fetch_one(pool)
    .await
}

/// The current try number of a task instance, if the run has it.
pub async fn try_number(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT try_number FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(pool)
    .await
}

/// How many task instances of a DAG are in one of `states`.
pub async fn count_in_states(
    pool: &PgPool,
    dag_id: &str,
    states: &[&str],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM task_instance WHERE dag_id = $1 AND state = ANY($2)")
        .bind(dag_id)
        .bind(states)
        .fetch_one(pool)
        .await
}

/// How the current try of a task instance carries on: when it first started, and, for a try
/// resumed after a deferral, the method it resumes in.
#[derive(Debug, Clone, FromRow)]
pub struct Continuation {
    /// When the try first started (before this attempt when it was deferred or rescheduled).
    pub start_date: Option<DateTime<Utc>>,
    /// The method a deferred try resumes in.
    pub next_method: Option<String>,
    /// Its keyword arguments, sealed (`Sealed` as JSON).
    pub next_kwargs: Option<serde_json::Value>,
    /// The event of the trigger that resumed it.
    pub trigger_event: Option<serde_json::Value>,
}

/// How the current try of a task instance carries on, if the run has the instance.
pub async fn continuation(
    pool: &PgPool,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i32,
) -> sqlx::Result<Option<Continuation>> {
    sqlx::query_as(
        "SELECT start_date, next_method, next_kwargs, trigger_event FROM task_instance \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4",
    )
    .bind(dag_id)
    .bind(run_id)
    .bind(task_id)
    .bind(map_index)
    .fetch_optional(pool)
    .await
}
