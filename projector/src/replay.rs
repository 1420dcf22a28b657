//! Rebuilding read models from the log: into a scratch schema swapped in for the live one,
//! into a side schema for point-in-time inspection, or into a throw-away schema to verify the
//! live ones.

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

/// As [`Until::from_str`] reads it (the whole log reads `head`).
impl std::fmt::Display for Until {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Until::Head => f.write_str("head"),
            Until::Position(position) => write!(f, "{position}"),
            Until::Time(time) => {
                f.write_str(&time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }
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

/// Rebuilds the live read models from the whole log without stopping the API or the appends.
///
/// The read models are built in a scratch schema by a transaction that does not hold the log
/// lock, so appends go on (their inline projection keeps the live tables current) and readers
/// keep reading the live tables. Then a short step under the log lock applies what was appended
/// meanwhile to the scratch tables and swaps them in: the live tables are dropped and the scratch
/// ones moved into `public`, already carrying the live tables' index and constraint names, owner,
/// privileges and storage parameters. Readers wait only for that swap (a long transaction on the
/// read models delays it: it is retried, see `SWAP_PATIENCE`) and never see a half-built table.
/// On any error nothing has changed.
///
/// Like `TRUNCATE`, the swap is not MVCC-safe: a READ COMMITTED statement that waited for it reads
/// the new tables, but a REPEATABLE READ or SERIALIZABLE snapshot taken before it sees them empty.
pub async fn rebuild(pool: &PgPool) -> Result<ReplayReport, ProjectError> {
    let started = Instant::now();
    // READ COMMITTED, whatever the server's default: each page must see the appends committed
    // since the previous one, and the catch-up under the log lock must see the last holder's
    // commit (as the append itself must). Under REPEATABLE READ the swap would lose the events
    // appended after the transaction's first statement.
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
    let scratch = format!("{REBUILD_SCHEMA_PREFIX}{}", uuid::Uuid::new_v4().simple());
    create_shadow_schema(&mut tx, &scratch).await?;
    dress_like_live(&mut tx, &scratch).await?;
    // Up to the head as it is now, then once more for what was appended meanwhile, so the step
    // under the lock has little left to apply. Each pass stops at the head it started from:
    // under steady appends "until nothing is new" might never come.
    let (mut events, mut last_position) = (0, 0);
    for _ in 0..2 {
        let until = Until::Position(head(&mut *tx).await?);
        let (applied, last) = replay_after(&mut tx, &scratch, last_position, until).await?;
        events += applied;
        last_position = last;
    }

    let patience = Instant::now() + SWAP_PATIENCE;
    let mut backoff = Duration::from_millis(250);
    loop {
        // A savepoint, so a swap that cannot get its table locks gives the log lock back (to
        // the appends) and is tried again; the scratch schema stays.
        sqlx::query("SAVEPOINT leoflow_swap")
            .execute(&mut *tx)
            .await?;
        match swap_in(&mut tx, &scratch, last_position).await {
            Ok((caught_up, last)) => {
                sqlx::query("RELEASE SAVEPOINT leoflow_swap")
                    .execute(&mut *tx)
                    .await?;
                events += caught_up;
                last_position = last;
                break;
            }
            Err(ProjectError::Database(e)) if is_lock_timeout(&e) && Instant::now() < patience => {
                sqlx::query("ROLLBACK TO SAVEPOINT leoflow_swap")
                    .execute(&mut *tx)
                    .await?;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(4));
                // Catch up without the lock again, so the next swap has little to apply.
                let until = Until::Position(head(&mut *tx).await?);
                let (caught_up, last) =
                    replay_after(&mut tx, &scratch, last_position, until).await?;
                events += caught_up;
                last_position = last;
            }
            Err(ProjectError::Database(e)) if is_lock_timeout(&e) => {
                return Err(ProjectError::Swap(format!(
                    "other transactions kept the live read models locked for {} s (a long \
                     query or an open transaction reading them); nothing was changed",
                    SWAP_PATIENCE.as_secs()
                )));
            }
            Err(e) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(ReplayReport {
        events,
        last_position,
        schema: LIVE_SCHEMA.to_owned(),
        elapsed: started.elapsed(),
    })
}

/// The scratch schemas [`rebuild`] builds in are named this, then a UUID.
pub const REBUILD_SCHEMA_PREFIX: &str = "leoflow_rebuild_";

/// How long [`rebuild`] keeps trying to take the live tables from their readers.
const SWAP_PATIENCE: Duration = Duration::from_secs(300);

/// How long one swap waits for a table lock. Readers queue behind a waiting swap, so this is
/// how long a long transaction on the read models can stall them per attempt.
const SWAP_LOCK_TIMEOUT: &str = "500ms";

/// Under the log lock: applies the events after `after` to `scratch`, then replaces the live
/// read-model tables with the scratch ones. Returns (events applied, last position).
async fn swap_in(
    conn: &mut PgConnection,
    scratch: &str,
    after: i64,
) -> Result<(u64, i64), ProjectError> {
    lock_log(&mut *conn).await?;
    let caught_up = replay_after(&mut *conn, scratch, after, Until::Head).await?;
    // Only now are readers stopped: the catch-up above took the time it needed without them.
    sqlx::query(AssertSqlSafe(format!(
        "SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'"
    )))
    .execute(&mut *conn)
    .await?;
    let live: Vec<String> = rebuilt_tables()
        .map(|t| format!("\"{LIVE_SCHEMA}\".\"{t}\""))
        .collect();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        live.join(", ")
    )))
    .execute(&mut *conn)
    .await?;
    for table in rebuilt_tables() {
        // No CASCADE: an object that depends on a read model (a view, say) stops the swap
        // rather than being dropped with it.
        sqlx::query(AssertSqlSafe(format!(
            "DROP TABLE \"{LIVE_SCHEMA}\".\"{table}\""
        )))
        .execute(&mut *conn)
        .await?;
        sqlx::query(AssertSqlSafe(format!(
            "ALTER TABLE \"{scratch}\".\"{table}\" SET SCHEMA \"{LIVE_SCHEMA}\""
        )))
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{scratch}\"")))
        .execute(&mut *conn)
        .await?;
    Ok(caught_up)
}

/// `lock_not_available`: a `lock_timeout` expired.
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code == "55P03")
}

/// The tables a rebuild replaces: the read models and their checkpoints.
fn rebuilt_tables() -> impl Iterator<Item = &'static str> {
    READ_MODEL_TABLES
        .iter()
        .copied()
        .chain(["projection_checkpoints"])
}

/// Makes the scratch tables indistinguishable from the live ones but for their rows, before
/// they replace them.
///
/// `CREATE TABLE … (LIKE … INCLUDING ALL)` copies columns, defaults, constraints, indexes and
/// comments, but names the indexes (and the constraints they back) its own way, and copies
/// neither the owner, the privileges nor the storage parameters. Migrations name indexes and
/// constraints (`ALTER INDEX dag_run_state …`), and a deployment may have granted a read-only
/// role access to the read models: both must survive a rebuild.
async fn dress_like_live(conn: &mut PgConnection, scratch: &str) -> Result<(), ProjectError> {
    let tables: Vec<&str> = rebuilt_tables().collect();
    // Pair every scratch index with the live one of the same table and definition (the
    // definition from `USING` on: method, columns, INCLUDE, predicate), duplicates in name
    // order. Renaming an index renames the constraint it backs.
    let pairs: Vec<(String, Option<String>, Option<String>)> = sqlx::query_as(
        "WITH idx AS ( \
             SELECT n.nspname AS schema, t.relname AS tbl, i.relname AS name, \
                    x.indisunique AS uniq, x.indisprimary AS prim, \
                    substring(pg_get_indexdef(x.indexrelid) FROM ' USING .*$') AS def \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname IN ($1, $2) AND t.relname = ANY($3)), \
         numbered AS ( \
             SELECT *, row_number() OVER (PARTITION BY schema, tbl, uniq, prim, def \
                                          ORDER BY name) AS k \
             FROM idx), \
         live AS (SELECT * FROM numbered WHERE schema = $1), \
         scratch AS (SELECT * FROM numbered WHERE schema = $2) \
         SELECT coalesce(live.tbl, scratch.tbl), live.name, scratch.name \
         FROM live FULL JOIN scratch USING (tbl, uniq, prim, def, k) \
         ORDER BY 1, 2",
    )
    .bind(LIVE_SCHEMA)
    .bind(scratch)
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    let mut renames = Vec::new();
    for (table, live, copy) in pairs {
        match (live, copy) {
            (Some(live), Some(copy)) => renames.push((copy, live)),
            (live, copy) => {
                return Err(ProjectError::Swap(format!(
                    "index {} of table {table:?} has no twin in the rebuilt table",
                    live.or(copy).unwrap_or_default()
                )));
            }
        }
    }
    // Two passes, so no rename collides with a name another index still has.
    for (i, (copy, _)) in renames.iter().enumerate() {
        sqlx::query(AssertSqlSafe(format!(
            "ALTER INDEX \"{scratch}\".\"{copy}\" RENAME TO \"leoflow_renaming_{i}\""
        )))
        .execute(&mut *conn)
        .await?;
    }
    for (i, (_, live)) in renames.iter().enumerate() {
        sqlx::query(AssertSqlSafe(format!(
            "ALTER INDEX \"{scratch}\".\"leoflow_renaming_{i}\" RENAME TO \"{live}\""
        )))
        .execute(&mut *conn)
        .await?;
    }

    // Owner first, so the grants below are recorded as the owner's, as on the live tables.
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT format('ALTER TABLE %I.%I OWNER TO %I', $2::text, c.relname, \
                       pg_get_userbyid(c.relowner)) \
         FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace AND c.relname = ANY($3) \
           AND c.relowner <> (SELECT relowner FROM pg_class s \
                              WHERE s.relnamespace = $2::regnamespace AND s.relname = c.relname) \
         UNION ALL \
         SELECT format('GRANT %s ON %I.%I TO %s%s', a.privilege_type, $2::text, c.relname, \
                       CASE a.grantee WHEN 0 THEN 'PUBLIC' \
                                      ELSE quote_ident(pg_get_userbyid(a.grantee)) END, \
                       CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) \
         FROM pg_class c, aclexplode(c.relacl) a \
         WHERE c.relnamespace = $1::regnamespace AND c.relname = ANY($3) \
           AND a.grantee <> c.relowner \
         UNION ALL \
         SELECT format('ALTER TABLE %I.%I SET (%s)', $2::text, c.relname, \
                       array_to_string(c.reloptions, ', ')) \
         FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace AND c.relname = ANY($3) \
           AND c.reloptions IS NOT NULL \
         UNION ALL \
         SELECT format('COMMENT ON TABLE %I.%I IS %L', $2::text, c.relname, \
                       obj_description(c.oid, 'pg_class')) \
         FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace AND c.relname = ANY($3) \
           AND obj_description(c.oid, 'pg_class') IS NOT NULL",
    )
    .bind(LIVE_SCHEMA)
    .bind(scratch)
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    for statement in statements {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Builds the read models as of `until` in [`INSPECTION_SCHEMA`], leaving the live ones alone.
pub async fn rebuild_for_inspection(
    pool: &PgPool,
    until: Until,
) -> Result<ReplayReport, ProjectError> {
    let started = Instant::now();
    let mut tx = pool.begin().await?;
    create_shadow_schema(&mut tx, INSPECTION_SCHEMA).await?;
    let (events, last_position) = replay_after(&mut tx, INSPECTION_SCHEMA, 0, until).await?;
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
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .await?;
    // The live tables first, before the snapshot (LOCK takes none): a rebuild's swap cannot then
    // come between the snapshot and the reads of the live tables, which would find the swapped-in
    // tables empty in a snapshot older than them (see `rebuild`).
    let live: Vec<String> = READ_MODEL_TABLES
        .iter()
        .map(|t| format!("\"{LIVE_SCHEMA}\".\"{t}\""))
        .collect();
    sqlx::query(AssertSqlSafe(format!(
        "LOCK TABLE {} IN ACCESS SHARE MODE",
        live.join(", ")
    )))
    .execute(&mut *tx)
    .await?;
    let log_head = head(&mut *tx).await?;
    let schema = format!("leoflow_verify_{}", uuid::Uuid::new_v4().simple());
    create_shadow_schema(&mut tx, &schema).await?;
    let (events, _) = replay_after(&mut tx, &schema, 0, Until::Position(log_head)).await?;
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
    // READ COMMITTED, whatever the server's default: the checkpoints and the log are read after
    // the lock and must include the last append's commit (see `EventStore::append`).
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await?;
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

/// Applies the log after position `after` up to `until` ([`Until::Head`]: until a read finds
/// nothing newer); returns (events applied, the last position applied or else `after`).
pub(crate) async fn replay_after(
    conn: &mut PgConnection,
    schema: &str,
    after: i64,
    until: Until,
) -> Result<(u64, i64), ProjectError> {
    let mut applied = 0;
    let mut last_position = after;
    let mut next = after + 1;
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
pub(crate) async fn create_shadow_schema(
    conn: &mut PgConnection,
    schema: &str,
) -> sqlx::Result<()> {
    sqlx::query(AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut *conn)
        .await?;
    for table in rebuilt_tables() {
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
