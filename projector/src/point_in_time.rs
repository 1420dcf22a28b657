//! The runs and task instances as they were at a position or time of the log, one tenant's or
//! every tenant's: what `leoflow events replay --until` shows against a server.
//!
//! The read models are rebuilt up to that point in a schema of the request's own, inside a
//! transaction that is never committed: nothing is left behind, two requests never share a
//! schema, and the live read models are not touched. It replays the log up to that point, so
//! it costs what a replay of that many events costs.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, FromRow, PgPool, Postgres, Transaction};

use crate::ProjectError;
use crate::replay::{Until, create_shadow_schema, replay_after};

/// A dag run as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct RunAsOf {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// Its state then.
    pub state: String,
    /// How it was started (`manual`, `scheduled`, …).
    pub run_type: String,
    /// Its logical date.
    pub logical_date: Option<DateTime<Utc>>,
    /// When it started, if it had.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended, if it had.
    pub end_date: Option<DateTime<Utc>>,
}

/// A task instance as it was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, FromRow)]
pub struct TaskAsOf {
    /// The DAG.
    pub dag_id: String,
    /// The run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// Its map index (-1: not mapped).
    pub map_index: i32,
    /// Its state then (none before it was scheduled).
    pub state: Option<String>,
    /// Its try then.
    pub try_number: i32,
}

/// The runs and task instances of `tenant` (`None`: of every tenant) as they were at `until`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PointInTime {
    /// The last position replayed (0: the log had nothing then).
    pub position: i64,
    /// Events replayed.
    pub events: u64,
    /// The runs, by DAG and run id.
    pub runs: Vec<RunAsOf>,
    /// The task instances, by DAG, run, task and map index.
    pub task_instances: Vec<TaskAsOf>,
}

/// Replays the log up to `until` in a schema of its own and reads `tenant`'s runs and task
/// instances from it, then rolls it all back.
pub async fn point_in_time(
    pool: &PgPool,
    until: Until,
    tenant: Option<&str>,
) -> Result<PointInTime, ProjectError> {
    let schema = format!("leoflow_as_of_{}", uuid::Uuid::new_v4().simple());
    let mut tx: Transaction<'static, Postgres> = pool.begin().await?;
    create_shadow_schema(&mut tx, &schema).await?;
    let (events, position) = replay_after(&mut tx, &schema, 0, until).await?;
    // A tenant's are those of the DAGs it owned then.
    let of_tenant = format!(
        "JOIN \"{schema}\".dag d ON d.dag_id = x.dag_id WHERE ($1::text IS NULL OR d.tenant = $1)"
    );
    let runs = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT x.dag_id, x.run_id, x.state, x.run_type, x.logical_date, x.start_date, \
         x.end_date FROM \"{schema}\".dag_run x {of_tenant} ORDER BY x.dag_id, x.run_id"
    )))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let task_instances = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT x.dag_id, x.run_id, x.task_id, x.map_index, x.state, x.try_number \
         FROM \"{schema}\".task_instance x {of_tenant} \
         ORDER BY x.dag_id, x.run_id, x.task_id, x.map_index"
    )))
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    // Never committed: the schema and everything replayed into it go with the transaction.
    tx.rollback().await?;
    Ok(PointInTime {
        position,
        events,
        runs,
        task_instances,
    })
}
