//! The event store: appends under the log lock, reads by position and by stream, blobs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, PgPool, Row};
use tracing::Instrument;

use crate::envelope::{Metadata, NewEvent, RecordedEvent};
use crate::subscribe::{HeadWatch, Subscription};
use crate::{LOG_LOCK_KEY, NOTIFY_CHANNEL};

/// What an append expects a stream's version to be before it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be exactly at this version (its last event's `stream_version`).
    Exact(i64),
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// A batch of events appended in one transaction, with the stream versions it expects.
#[derive(Debug, Clone, Default)]
pub struct AppendBatch {
    /// The events, in the order they get positions.
    pub events: Vec<NewEvent>,
    /// Version expectations; a stream may be expected without receiving events.
    pub expectations: Vec<(String, ExpectedVersion)>,
}

impl AppendBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event with its metadata.
    pub fn push(mut self, event: impl Into<crate::Event>, metadata: &Metadata) -> Self {
        self.events.push(NewEvent {
            event: event.into(),
            metadata: metadata.clone(),
        });
        self
    }

    /// Requires `stream` to be at `expected` when the batch is written.
    pub fn expect(mut self, stream: impl Into<String>, expected: ExpectedVersion) -> Self {
        self.expectations.push((stream.into(), expected));
        self
    }
}

/// What an append wrote.
#[derive(Debug, Clone)]
pub struct AppendOutcome {
    /// The recorded events, in position order (empty for an empty batch).
    pub events: Vec<RecordedEvent>,
}

impl AppendOutcome {
    /// The log's head after the append (the last position written), if anything was written.
    pub fn last_position(&self) -> Option<i64> {
        self.events.last().map(|e| e.position)
    }
}

/// Errors of projections applied inside the append transaction.
pub type ProjectionError = Box<dyn std::error::Error + Send + Sync>;

/// Read models updated in the same transaction as the append that changes them, so readers
/// never see a half-applied state.
pub trait InlineProjection: Send + Sync + 'static {
    /// Applies freshly appended events (in position order) on the append's connection.
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;
}

/// Why an append wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// A stream was not at the expected version: someone else wrote to it first.
    #[error("append conflict on stream {stream:?}: expected {expected}, found {}", match .actual { Some(v) => format!("version {v}"), None => "no stream".to_owned() })]
    Conflict {
        /// The stream.
        stream: String,
        /// What the batch expected.
        expected: ExpectedVersion,
        /// Its actual version (`None`: the stream does not exist).
        actual: Option<i64>,
    },
    /// An inline projection refused the events; the transaction was rolled back.
    #[error("inline projection failed, nothing was appended: {0}")]
    Projection(ProjectionError),
    /// Postgres failed; the transaction was rolled back.
    #[error("appending to the event log failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Errors reading the log.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Postgres failed.
    #[error("reading the event log failed: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored envelope is unreadable.
    #[error("event at position {position} is corrupt: {reason}")]
    Corrupt {
        /// Where.
        position: i64,
        /// What is wrong.
        reason: String,
    },
}

/// A stored blob (DAG source, DAG document, XCom value).
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// SHA-256 of the content, hex.
    pub hash: String,
    /// What the content is (`application/json`, `text/x-python`, …).
    pub media_type: String,
    /// The content.
    pub content: String,
}

/// The Postgres event log.
#[derive(Clone)]
pub struct EventStore {
    pool: PgPool,
    projection: Option<Arc<dyn InlineProjection>>,
    head_watch: HeadWatch,
}

impl fmt::Debug for EventStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventStore")
            .field("inline_projection", &self.projection.is_some())
            .finish()
    }
}

/// `SELECT <envelope columns> FROM events` followed by the given clause, as a static string.
macro_rules! select_events {
    ($clause:literal) => {
        concat!(
            "SELECT position, stream, stream_version, type, schema_version, payload, metadata, \
             recorded_at FROM events ",
            $clause
        )
    };
}

impl EventStore {
    /// A store on `pool` without inline projections.
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            projection: None,
            head_watch: HeadWatch::default(),
        }
    }

    /// Applies `projection` inside every append transaction.
    pub fn with_projection(mut self, projection: Arc<dyn InlineProjection>) -> Self {
        self.projection = Some(projection);
        self
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Appends a batch atomically: every event or none.
    ///
    /// One READ COMMITTED transaction takes the log's advisory lock, checks each expected stream
    /// version, assigns positions after the head, inserts the batch, applies the inline
    /// projection and sends one `NOTIFY` with the new head. Holding the lock until commit is
    /// what makes position order equal commit order.
    pub async fn append(&self, batch: AppendBatch) -> Result<AppendOutcome, AppendError> {
        let span = tracing::info_span!("append", events = batch.events.len());
        self.append_traced(batch).instrument(span).await
    }

    async fn append_traced(&self, mut batch: AppendBatch) -> Result<AppendOutcome, AppendError> {
        // The events remember the append's span: a decision they cause continues its trace.
        if let Some(traceparent) = leoflow_telemetry::current() {
            for new in &mut batch.events {
                new.metadata
                    .traceparent
                    .get_or_insert_with(|| traceparent.clone());
            }
        }
        let started = std::time::Instant::now();
        let outcome = self.append_unmeasured(batch).await;
        if let Ok(appended) = &outcome
            && !appended.events.is_empty()
        {
            crate::metrics::appended(appended.events.len(), started.elapsed());
        }
        outcome
    }

    async fn append_unmeasured(&self, batch: AppendBatch) -> Result<AppendOutcome, AppendError> {
        if batch.events.is_empty() && batch.expectations.is_empty() {
            return Ok(AppendOutcome { events: Vec::new() });
        }
        // Serialized before the lock: every append waits for the holder, so it holds it short.
        let prepared: Vec<PreparedEvent> = batch.events.iter().map(PreparedEvent::of).collect();
        let streams: BTreeSet<String> = prepared
            .iter()
            .map(|p| p.stream.clone())
            .chain(batch.expectations.iter().map(|(s, _)| s.clone()))
            .collect();

        // READ COMMITTED, set here rather than left to the server's default: the statement after
        // the lock must take a new snapshot that includes the previous holder's commit. Under
        // REPEATABLE READ (or SERIALIZABLE) the snapshot is the one of the transaction's first
        // statement, the lock statement itself, taken before the lock was granted: the head and
        // the stream versions read would be stale, and the append would fail on the previous
        // holder's rows (a serialization failure) or check its expectations against old versions.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await?;
        let mut locked = LockedLog::lock(&mut tx, streams).await?;
        // A conflict returns with the transaction dropped: rolled back, nothing written.
        locked.check(&batch.expectations)?;
        if prepared.is_empty() {
            return Ok(AppendOutcome { events: Vec::new() });
        }
        let recorded = locked.record(prepared);
        insert_and_notify(&mut tx, &recorded, &locked).await?;
        // In the same transaction: a projection that refuses the events rolls the append back.
        if let Some(projection) = &self.projection {
            projection
                .apply(&mut tx, &recorded)
                .await
                .map_err(AppendError::Projection)?;
        }
        tx.commit().await?;
        Ok(AppendOutcome { events: recorded })
    }

    /// The position of the newest event (0 for an empty log).
    pub async fn head(&self) -> Result<i64, StoreError> {
        head(&self.pool).await
    }

    /// Up to `limit` events from position `from` (inclusive), in position order.
    pub async fn read_from(&self, from: i64, limit: i64) -> Result<Vec<RecordedEvent>, StoreError> {
        read_from(&self.pool, from, limit).await
    }

    /// Up to `limit` events at or below position `upto`, newest first.
    pub async fn read_backward(
        &self,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(select_events!(
            "WHERE position <= $1 ORDER BY position DESC LIMIT $2"
        ))
        .bind(upto)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recorded_from_row).collect()
    }

    /// The events of one stream from `from_version` (inclusive), in order.
    pub async fn read_stream(
        &self,
        stream: &str,
        from_version: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(select_events!(
            "WHERE stream = $1 AND stream_version >= $2 ORDER BY stream_version"
        ))
        .bind(stream)
        .bind(from_version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recorded_from_row).collect()
    }

    /// The version of each of `streams` that has events, as `(stream, version)` (a stream
    /// without events has no entry): what an append's expectations are read from.
    pub async fn stream_versions(
        &self,
        streams: &[String],
    ) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as("SELECT stream, version FROM event_streams WHERE stream = ANY($1)")
                .bind(streams)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Follows the log from position `from` (inclusive): every event once, in order.
    pub async fn subscribe(&self, from: i64) -> Result<Subscription, StoreError> {
        Subscription::start(self.pool.clone(), self.head_watch.clone(), from).await
    }

    /// Stores `content` and returns its hash; storing the same content again is a no-op.
    pub async fn put_blob(&self, media_type: &str, content: &str) -> Result<String, StoreError> {
        let hash = blob_hash(content);
        sqlx::query(
            "INSERT INTO blobs (hash, media_type, content) VALUES ($1, $2, $3) \
             ON CONFLICT (hash) DO NOTHING",
        )
        .bind(&hash)
        .bind(media_type)
        .bind(content)
        .execute(&self.pool)
        .await?;
        Ok(hash)
    }

    /// The blob with this hash, if stored.
    pub async fn get_blob(&self, hash: &str) -> Result<Option<Blob>, StoreError> {
        let row = sqlx::query("SELECT hash, media_type, content FROM blobs WHERE hash = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| -> Result<Blob, sqlx::Error> {
                Ok(Blob {
                    hash: r.try_get("hash")?,
                    media_type: r.try_get("media_type")?,
                    content: r.try_get("content")?,
                })
            })
            .transpose()?)
    }
}

/// An event to append, serialized, still without its position.
struct PreparedEvent {
    stream: String,
    event_type: &'static str,
    schema_version: i32,
    payload: Value,
    metadata: Metadata,
}

impl PreparedEvent {
    fn of(new: &NewEvent) -> Self {
        Self {
            stream: new.event.stream(),
            event_type: new.event.event_type(),
            schema_version: new.event.schema_version(),
            payload: new.event.payload(),
            metadata: new.metadata.clone(),
        }
    }
}

/// The log as an append sees it once it holds the log's lock: the head, the time its events
/// are recorded at, and the versions of the streams it touches (absent: no stream yet).
struct LockedLog {
    head: i64,
    recorded_at: DateTime<Utc>,
    versions: BTreeMap<String, i64>,
}

impl LockedLog {
    /// Takes `pg_advisory_xact_lock(LOG_LOCK_KEY)`, held until the transaction ends: appends
    /// are serialized, so positions are given and committed in the same order and a reader
    /// that has seen position N has seen everything below it.
    async fn lock(conn: &mut PgConnection, streams: BTreeSet<String>) -> Result<Self, AppendError> {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOG_LOCK_KEY)
            .execute(&mut *conn)
            .await?;
        // A separate statement after the lock: its snapshot must include the previous holder.
        let row = sqlx::query(
            "SELECT h.position, clock_timestamp() AS now, \
                    (SELECT coalesce(jsonb_object_agg(stream, version), '{}'::jsonb) \
                       FROM event_streams WHERE stream = ANY($1)) AS versions \
             FROM event_log_head h",
        )
        .bind(streams.iter().collect::<Vec<_>>())
        .fetch_one(&mut *conn)
        .await?;
        let versions: Value = row.try_get("versions")?;
        Ok(Self {
            head: row.try_get("position")?,
            recorded_at: row.try_get("now")?,
            versions: streams
                .into_iter()
                .filter_map(|s| versions.get(&s).and_then(Value::as_i64).map(|v| (s, v)))
                .collect(),
        })
    }

    /// Optimistic concurrency: the batch is written only if every stream it expects is at the
    /// version it expects (read under the lock, so no one can move it before the commit).
    fn check(&self, expectations: &[(String, ExpectedVersion)]) -> Result<(), AppendError> {
        for (stream, expected) in expectations {
            let actual = self.versions.get(stream).copied();
            let ok = match expected {
                ExpectedVersion::Any => true,
                ExpectedVersion::NoStream => actual.is_none(),
                ExpectedVersion::Exact(v) => actual == Some(*v),
            };
            if !ok {
                return Err(AppendError::Conflict {
                    stream: stream.clone(),
                    expected: *expected,
                    actual,
                });
            }
        }
        Ok(())
    }

    /// Gives the events their positions after the head and the next versions of their
    /// streams (kept in `versions`, which the append then writes back).
    fn record(&mut self, prepared: Vec<PreparedEvent>) -> Vec<RecordedEvent> {
        let (head, recorded_at) = (self.head, self.recorded_at);
        prepared
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let version = self.versions.entry(event.stream.clone()).or_insert(0);
                *version += 1;
                RecordedEvent {
                    position: head + 1 + i as i64,
                    stream_version: *version,
                    stream: event.stream,
                    event_type: event.event_type.to_owned(),
                    schema_version: event.schema_version,
                    payload: event.payload,
                    metadata: event.metadata,
                    recorded_at,
                }
            })
            .collect()
    }
}

/// Writes the events, their streams' new versions (`log.versions`, moved on by
/// [`LockedLog::record`]) and the new head in one statement, and
/// queues the `NOTIFY` with the new head (Postgres delivers it at commit, so a subscriber woken
/// by it finds the events there).
async fn insert_and_notify(
    conn: &mut PgConnection,
    recorded: &[RecordedEvent],
    log: &LockedLog,
) -> Result<(), AppendError> {
    let new_head = log.head + recorded.len() as i64;
    let (stream_names, stream_versions): (Vec<&str>, Vec<i64>) =
        log.versions.iter().map(|(s, v)| (s.as_str(), *v)).unzip();
    sqlx::query(
        "WITH ins AS ( \
             INSERT INTO events (position, stream, stream_version, type, schema_version, \
                                 payload, metadata, recorded_at) \
             SELECT p, s, v, t, sv, pl, md, $8 \
             FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::int[], \
                         $6::jsonb[], $7::jsonb[]) AS x(p, s, v, t, sv, pl, md)), \
         str AS ( \
             INSERT INTO event_streams (stream, version) \
             SELECT * FROM unnest($9::text[], $10::bigint[]) \
             ON CONFLICT (stream) DO UPDATE SET version = EXCLUDED.version), \
         hd AS (UPDATE event_log_head SET position = $11) \
         SELECT pg_notify($12, $11::text)",
    )
    .bind(recorded.iter().map(|e| e.position).collect::<Vec<_>>())
    .bind(
        recorded
            .iter()
            .map(|e| e.stream.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        recorded
            .iter()
            .map(|e| e.stream_version)
            .collect::<Vec<_>>(),
    )
    .bind(
        recorded
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        recorded
            .iter()
            .map(|e| e.schema_version)
            .collect::<Vec<_>>(),
    )
    .bind(
        recorded
            .iter()
            .map(|e| e.payload.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        recorded
            .iter()
            .map(|e| serde_json::to_value(&e.metadata).expect("metadata serializes"))
            .collect::<Vec<_>>(),
    )
    .bind(log.recorded_at)
    .bind(stream_names)
    .bind(stream_versions)
    .bind(new_head)
    .bind(NOTIFY_CHANNEL)
    .execute(conn)
    .await?;
    Ok(())
}

/// SHA-256 of a blob's content, lower-case hex: its identity.
pub fn blob_hash(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The head position, read with any executor (a pool, or a connection inside a transaction).
pub async fn head<'e>(executor: impl PgExecutor<'e>) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT position FROM event_log_head")
        .fetch_one(executor)
        .await?)
}

/// Up to `limit` events from position `from` (inclusive), read with any executor.
pub async fn read_from<'e>(
    executor: impl PgExecutor<'e>,
    from: i64,
    limit: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(select_events!(
        "WHERE position >= $1 ORDER BY position LIMIT $2"
    ))
    .bind(from)
    .bind(limit)
    .fetch_all(executor)
    .await?;
    rows.iter().map(recorded_from_row).collect()
}

/// An event from a row holding the envelope's columns (`position`, `stream`, `stream_version`,
/// `type`, `schema_version`, `payload`, `metadata`, `recorded_at`), as any query over `events`
/// selects them.
pub fn recorded_from_row(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position: i64 = row.try_get("position")?;
    let metadata: Value = row.try_get("metadata")?;
    let metadata: Metadata = serde_json::from_value(metadata).map_err(|e| StoreError::Corrupt {
        position,
        reason: format!("metadata: {e}"),
    })?;
    Ok(RecordedEvent {
        position,
        stream: row.try_get("stream")?,
        stream_version: row.try_get("stream_version")?,
        event_type: row.try_get("type")?,
        schema_version: row.try_get("schema_version")?,
        payload: row.try_get("payload")?,
        metadata,
        recorded_at: row.try_get("recorded_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_hash_is_sha256_hex() {
        assert_eq!(
            blob_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn conflict_message_names_stream_and_versions() {
        let err = AppendError::Conflict {
            stream: "dag:etl".into(),
            expected: ExpectedVersion::Exact(3),
            actual: Some(5),
        };
        assert_eq!(
            err.to_string(),
            "append conflict on stream \"dag:etl\": expected version 3, found version 5"
        );
    }
}
