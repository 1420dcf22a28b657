//! Rebuilding read models from the log: in place, into a side schema for point-in-time
//! inspection, or into a throw-away schema to verify the live ones.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leoflow_events::store::{head, read_from};
use leoflow_events::{LOG_LOCK_KEY, RecordedEvent};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row};

use crate::apply::Projection;
use crate::rows::READ_MODEL_TABLES;
use crate::{Checkpoints, LIVE_SCHEMA, ProjectError, project};

/// Where a replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The whole log.
    Head,
    /// Up to and including this position.
    Position(i64),
    /// Every event recorded at or before this time.
    Time(DateTime<Utc>),
}

impl Until {
    fn includes(&self, event: &RecordedEvent) -> bool {
        match self {
            Until::Head => true,
            Until::Position(p) => event.position <= *p,
            Until::Time(t) => event.recorded_at <= *t,
        }
    }
}

impl FromStr for Until {
    type Err = String;

    /// A position (`1234`) or an RFC 3339 time (`2026-11-23T10:00:00Z`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(position) = s.parse::<i64>() {
            return if position >= 0 {
                Ok(Until::Position(position))
            } else {
                Err(format!("position {position} is negative"))
            };
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Until::Time(t.with_timezone(&Utc)))
            .map_err(|e| {
                format!("{s:?} is neither a position nor an RFC 3339 time ({e}); e.g. 1200 or 2026-11-23T10:00:00Z")
            })
    }
}

/// The schema `leoflow events replay --until` builds its point-in-time read models in.
pub const INSPECTION_SCHEMA: &str = "leoflow_replay";

/// Events read and applied per round trip.
const PAGE: i64 = 5000;

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// Events applied.
    pub events: u64,
    /// The last position applied (0: none).
    pub last_position: i64,
    /// The schema the read models were built in.
    pub schema: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// Rebuilds the live read models from the whole log, under the log lock so no append
/// interleaves; readers keep seeing the old models until it commits.
pub async fn rebuild(pool: &PgPool) -> Result<ReplayReport, ProjectError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    lock_log(&mut tx).await?;
    let tables: Vec<String> = READ_MODEL_TABLES
        .iter()
        .chain(&["projection_checkpoints"])
        .map(|t| format!("\"{LIVE_SCHEMA}\".\"{t}\""))
        .collect();
    sqlx::query(AssertSqlSafe(format!("TRUNCATE {}", tables.join(", "))))
        .execute(&mut *tx)
        .await?;
    let (events, last_position) = replay_into(&mut tx, LIVE_SCHEMA, Until::Head).await?;
    tx.commit().await?;
    Ok(ReplayReport {
        events,
        last_position,
        schema: LIVE_SCHEMA.to_owned(),
        elapsed: started.elapsed(),
    })
}

/// Builds the read models as of `until` in [`INSPECTION_SCHEMA`], leaving the live ones alone.
pub async fn rebuild_for_inspection(
    pool: &PgPool,
    until: Until,
) -> Result<ReplayReport, ProjectError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    create_shadow_schema(&mut tx, INSPECTION_SCHEMA).await?;
    let (events, last_position) = replay_into(&mut tx, INSPECTION_SCHEMA, until).await?;
    tx.commit().await?;
    Ok(ReplayReport {
        events,
        last_position,
        schema: INSPECTION_SCHEMA.to_owned(),
        elapsed: started.elapsed(),
    })
}

/// A table's content digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDigest {
    /// Row count.
    pub rows: i64,
    /// MD5 of every row's JSON, sorted.
    pub md5: String,
}

/// One table of the live read models next to its replayed twin.
#[derive(Debug, Clone)]
pub struct TableComparison {
    /// The table.
    pub table: &'static str,
    /// Digest of the live table.
    pub live: TableDigest,
    /// Digest of the replayed table.
    pub replayed: TableDigest,
    /// Up to a few rows present on one side only: (`"live only"` or `"replay only"`, row JSON).
    pub differing_rows: Vec<(String, String)>,
}

impl TableComparison {
    /// Whether both sides hold the same rows.
    pub fn is_equal(&self) -> bool {
        self.live == self.replayed
    }
}

/// What `replay --verify` found.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// Events replayed.
    pub events: u64,
    /// The head the comparison was made at.
    pub head: i64,
    /// Every table compared.
    pub tables: Vec<TableComparison>,
    /// How long it took.
    pub elapsed: Duration,
}

impl VerifyReport {
    /// Whether every table matched.
    pub fn is_equal(&self) -> bool {
        self.tables.iter().all(TableComparison::is_equal)
    }
}

/// Replays the whole log into a throw-away schema and compares it with the live read models.
///
/// Runs in one repeatable-read transaction: the live models and the log are seen at the same
/// instant (projections are inline, so they are consistent there), and appends carry on.
/// The side schema is rolled back, leaving nothing behind.
pub async fn verify(pool: &PgPool) -> Result<VerifyReport, ProjectError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let log_head = head(&mut *tx).await?;
    let schema = format!("leoflow_verify_{}", uuid::Uuid::new_v4().simple());
    create_shadow_schema(&mut tx, &schema).await?;
    let (events, _) = replay_into(&mut tx, &schema, Until::Position(log_head)).await?;
    let mut tables = Vec::new();
    for &table in READ_MODEL_TABLES {
        let live = digest(&mut tx, LIVE_SCHEMA, table).await?;
        let replayed = digest(&mut tx, &schema, table).await?;
        let differing_rows = if live == replayed {
            Vec::new()
        } else {
            differing_rows(&mut tx, &schema, table).await?
        };
        tables.push(TableComparison {
            table,
            live,
            replayed,
            differing_rows,
        });
    }
    tx.rollback().await?;
    Ok(VerifyReport {
        events,
        head: log_head,
        tables,
        elapsed: started.elapsed(),
    })
}

/// Brings projections that lag behind the log (one added by a migration, say) up to the head.
/// Returns the number of events applied. Holds the log lock, so run it before appending.
pub async fn catch_up(pool: &PgPool) -> Result<u64, ProjectError> {
    let mut tx = pool.begin().await?;
    lock_log(&mut tx).await?;
    let rows = sqlx::query(AssertSqlSafe(format!(
        "SELECT projection, position FROM \"{LIVE_SCHEMA}\".projection_checkpoints"
    )))
    .fetch_all(&mut *tx)
    .await?;
    let mut checkpoints = Checkpoints::new();
    for projection in Projection::ALL {
        let position = rows
            .iter()
            .find(|r| r.get::<String, _>("projection") == projection.name())
            .map_or(0, |r| r.get::<i64, _>("position"));
        checkpoints.insert(projection, position);
    }
    let from = checkpoints.values().min().copied().unwrap_or(0) + 1;
    let mut applied = 0;
    let mut next = from;
    loop {
        let page = read_from(&mut *tx, next, PAGE).await?;
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        applied += page.len() as u64;
        project(&mut tx, LIVE_SCHEMA, &page, Some(&checkpoints)).await?;
    }
    tx.commit().await?;
    Ok(applied)
}

async fn lock_log(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(LOG_LOCK_KEY)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Applies the log from position 1 up to `until`; returns (events applied, last position).
async fn replay_into(
    conn: &mut PgConnection,
    schema: &str,
    until: Until,
) -> Result<(u64, i64), ProjectError> {
    let mut applied = 0;
    let mut last_position = 0;
    let mut next = 1;
    loop {
        let mut page = read_from(&mut *conn, next, PAGE).await?;
        let fetched = page.len();
        page.retain(|e| until.includes(e));
        let Some(last) = page.last() else { break };
        next = last.position + 1;
        last_position = last.position;
        applied += page.len() as u64;
        project(conn, schema, &page, None).await?;
        if page.len() < fetched {
            break;
        }
    }
    Ok((applied, last_position))
}

/// (Re)creates `schema` with empty copies of the live read-model tables.
async fn create_shadow_schema(conn: &mut PgConnection, schema: &str) -> sqlx::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut *conn)
        .await?;
    for table in READ_MODEL_TABLES.iter().chain(&["projection_checkpoints"]) {
        sqlx::query(AssertSqlSafe(format!(
            "CREATE TABLE \"{schema}\".\"{table}\" (LIKE \"{LIVE_SCHEMA}\".\"{table}\" INCLUDING ALL)"
        )))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn digest(conn: &mut PgConnection, schema: &str, table: &str) -> sqlx::Result<TableDigest> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT count(*) AS rows, md5(coalesce(string_agg(r, E'\\n' ORDER BY r), '')) AS md5 \
         FROM (SELECT to_jsonb(t)::text AS r FROM \"{schema}\".\"{table}\" t) x"
    )))
    .fetch_one(conn)
    .await?;
    Ok(TableDigest {
        rows: row.try_get("rows")?,
        md5: row.try_get("md5")?,
    })
}

async fn differing_rows(
    conn: &mut PgConnection,
    schema: &str,
    table: &str,
) -> sqlx::Result<Vec<(String, String)>> {
    let live = format!("SELECT to_jsonb(t)::text AS r FROM \"{LIVE_SCHEMA}\".\"{table}\" t");
    let replayed = format!("SELECT to_jsonb(t)::text AS r FROM \"{schema}\".\"{table}\" t");
    let rows = sqlx::query(AssertSqlSafe(format!(
        "(SELECT 'live only' AS side, r FROM ({live} EXCEPT {replayed}) a ORDER BY r LIMIT 5) \
         UNION ALL \
         (SELECT 'replay only' AS side, r FROM ({replayed} EXCEPT {live}) b ORDER BY r LIMIT 5)"
    )))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("side")?, r.try_get("r")?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn until_parses_positions_and_times() {
        assert_eq!("42".parse::<Until>(), Ok(Until::Position(42)));
        assert_eq!(
            "2026-11-23T10:00:00+01:00".parse::<Until>(),
            Ok(Until::Time("2026-11-23T09:00:00Z".parse().unwrap()))
        );
        let err = "yesterday".parse::<Until>().unwrap_err();
        assert!(
            err.contains("neither a position nor an RFC 3339 time"),
            "{err}"
        );
        assert!("-3".parse::<Until>().is_err());
    }
}
