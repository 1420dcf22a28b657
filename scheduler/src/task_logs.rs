//! Task logs: the lines each try printed, kept per try in Postgres (table `task_log`), so they
//! are readable after restarts and from any host. Not event-sourced: logs are bulky, and the
//! event log stays small.

use chrono::{DateTime, Utc};
use leoflow_events::TaskInstanceKey;
use sqlx::PgPool;

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogLine {
    /// Its position among the try's lines.
    pub seq: i64,
    /// The text.
    pub line: String,
    /// When the control plane stored it.
    pub logged_at: DateTime<Utc>,
}

/// Stores `lines` as lines `first_seq..` of a try. Lines already stored (a batch sent again
/// after a lost answer) are kept as they were.
pub async fn append(
    pool: &PgPool,
    ti: &TaskInstanceKey,
    try_number: i32,
    first_seq: i64,
    lines: &[String],
) -> Result<(), sqlx::Error> {
    if lines.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = (first_seq..first_seq + lines.len() as i64).collect();
    sqlx::query(
        "INSERT INTO task_log (dag_id, run_id, task_id, map_index, try_number, seq, line) \
         SELECT $1, $2, $3, $4, $5, s, l FROM unnest($6::bigint[], $7::text[]) AS u(s, l) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&ti.dag_id)
    .bind(&ti.run_id)
    .bind(&ti.task_id)
    .bind(ti.map_index)
    .bind(try_number)
    .bind(&seqs)
    .bind(lines)
    .execute(pool)
    .await?;
    Ok(())
}

/// Appends lines after whatever a try has logged so far (the control plane's own notes, such
/// as why an agent that vanished was failed).
pub async fn append_note(
    pool: &PgPool,
    ti: &TaskInstanceKey,
    try_number: i32,
    line: &str,
) -> Result<(), sqlx::Error> {
    let next = next_seq(pool, ti, try_number).await?;
    append(pool, ti, try_number, next, &[line.to_owned()]).await
}

/// The first free line of a try's log: where an attempt carrying the try on after a deferral
/// or a reschedule starts its lines.
pub async fn next_seq(
    pool: &PgPool,
    ti: &TaskInstanceKey,
    try_number: i32,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(max(seq) + 1, 0) FROM task_log \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 AND try_number = $5",
    )
    .bind(&ti.dag_id)
    .bind(&ti.run_id)
    .bind(&ti.task_id)
    .bind(ti.map_index)
    .bind(try_number)
    .fetch_one(pool)
    .await
}

/// The lines of a try from `from_seq` on, in order.
pub async fn read(
    pool: &PgPool,
    ti: &TaskInstanceKey,
    try_number: i32,
    from_seq: i64,
) -> Result<Vec<LogLine>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, line, logged_at FROM task_log \
         WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4 \
           AND try_number = $5 AND seq >= $6 ORDER BY seq",
    )
    .bind(&ti.dag_id)
    .bind(&ti.run_id)
    .bind(&ti.task_id)
    .bind(ti.map_index)
    .bind(try_number)
    .bind(from_seq)
    .fetch_all(pool)
    .await
}
