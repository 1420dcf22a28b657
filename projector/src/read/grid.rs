//! What the DAG page's grid and Gantt chart read of task instances: one summary row per
//! instance, one row per task of a run.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};

/// One task instance's part of a grid summary.
#[derive(Debug, Clone, FromRow)]
pub struct SummaryRow {
    /// Its run.
    pub run_id: String,
    /// Its task.
    pub task_id: String,
    /// Its state.
    pub state: Option<String>,
    /// When it started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it ended.
    pub end_date: Option<DateTime<Utc>>,
    /// The number of the DAG version its run was queued with.
    pub version_number: Option<i32>,
}

/// The task instances of the runs `run_ids` of a DAG, as grid summary rows.
pub async fn summaries(
    pool: &PgPool,
    dag_id: &str,
    run_ids: &[String],
) -> sqlx::Result<Vec<SummaryRow>> {
    sqlx::query_as(
        "SELECT t.run_id, t.task_id, t.state, t.start_date, t.end_date, v.version_number \
         FROM task_instance t JOIN dag_run r ON r.dag_id = t.dag_id AND r.run_id = t.run_id \
         LEFT JOIN LATERAL (SELECT version_number FROM dag_version v WHERE v.dag_id = r.dag_id \
           AND v.version_hash = r.dag_version_hash ORDER BY version_number DESC LIMIT 1) v ON true \
         WHERE t.dag_id = $1 AND t.run_id = ANY($2)",
    )
    .bind(dag_id)
    .bind(run_ids)
    .fetch_all(pool)
    .await
}

/// A task of a run on the Gantt chart: its instances folded into one bar.
#[derive(Debug, Clone, FromRow)]
pub struct GanttRow {
    /// The task.
    pub task_id: String,
    /// Its highest try.
    pub try_number: i32,
    /// The state of its first instance.
    pub state: Option<String>,
    /// When it was first scheduled.
    pub scheduled_dttm: Option<DateTime<Utc>>,
    /// When it was first queued.
    pub queued_dttm: Option<DateTime<Utc>>,
    /// When it first started.
    pub start_date: Option<DateTime<Utc>>,
    /// When it last ended.
    pub end_date: Option<DateTime<Utc>>,
    /// Whether it is mapped.
    pub mapped: bool,
}

/// The tasks of a run that started, by start, as Gantt rows.
pub async fn gantt(pool: &PgPool, dag_id: &str, run_id: &str) -> sqlx::Result<Vec<GanttRow>> {
    sqlx::query_as(
        "SELECT task_id, max(try_number) AS try_number, \
           (array_agg(state ORDER BY map_index))[1] AS state, min(scheduled_dttm) AS scheduled_dttm, \
           min(queued_dttm) AS queued_dttm, min(start_date) AS start_date, max(end_date) AS end_date, \
           bool_or(map_index >= 0) AS mapped \
         FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND start_date IS NOT NULL \
         GROUP BY task_id ORDER BY min(start_date), task_id",
    )
    .bind(dag_id)
    .bind(run_id)
    .fetch_all(pool)
    .await
}
