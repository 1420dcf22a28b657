//! Projects the event log into Airflow-shaped read models, and rebuilds them from the log.
//!
//! * [`rows`] — one struct per read-model table (the struct's fields are the columns).
//! * [`table`] — the rows a batch touches, loaded and written back in bulk.
//! * [`apply`] — the pure part: which rows an event needs and how it changes them.
//! * [`read`] — the queries every other crate reads the tables with, as typed rows.
//! * [`replay`] — rebuild (into a scratch schema, swapped in), point-in-time inspection,
//!   verify and catch-up.
//!
//! [`ReadModels`] is the inline projection the event store runs inside every append, so
//! the API never reads a half-applied state.
#![warn(missing_docs)]

pub mod apply;
mod assets;
pub mod point_in_time;
pub mod read;
pub mod replay;
pub mod rows;
pub mod table;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use leoflow_events::{
    DecodeError, Event, InlineProjection, ProjectionError, RecordedEvent, StoreError,
};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::apply::{ApplyError, Projection, WorkingSet};

/// The schema holding the live read models.
pub const LIVE_SCHEMA: &str = "public";

/// Why events could not be projected. Nothing is skipped: the batch (or replay) stops at
/// the first event that cannot be applied, naming its position.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The stored event is unreadable (unknown type, bad payload, newer schema).
    #[error("event at position {position} ({event_type}) cannot be decoded: {source}")]
    Decode {
        /// Where in the log.
        position: i64,
        /// Its type column.
        event_type: String,
        /// Why.
        source: DecodeError,
    },
    /// The event contradicts the read models (e.g. a run that was never queued).
    #[error("event at position {position} ({event_type}) cannot be applied: {source}")]
    Apply {
        /// Where in the log.
        position: i64,
        /// Its type.
        event_type: String,
        /// Why.
        source: ApplyError,
    },
    /// Postgres failed.
    #[error("read-model database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rebuild could not swap its tables in; the live read models were left as they were.
    #[error("the rebuilt read models were not swapped in: {0}")]
    Swap(String),
}

/// Each projection's checkpoint: the last position it has applied.
pub type Checkpoints = BTreeMap<Projection, i64>;

/// Applies `events` (in position order) to the read models in `schema` and advances every
/// projection's checkpoint to the last event. With `checkpoints`, an event a projection has
/// already applied is not applied to it again (catch-up after a projection was added).
pub async fn project(
    conn: &mut PgConnection,
    schema: &str,
    events: &[RecordedEvent],
    checkpoints: Option<&Checkpoints>,
) -> Result<(), ProjectError> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    let mut decoded = Vec::with_capacity(events.len());
    for recorded in events {
        let event = decode(recorded)?;
        let done = checkpoints
            .and_then(|c| c.get(&Projection::of(&event)))
            .is_some_and(|&checkpoint| recorded.position <= checkpoint);
        if !done {
            decoded.push((recorded, event));
        }
    }

    // `DagDeleted` removes rows by DAG rather than by key: what precedes it is applied and
    // written first, then the DAG's rows are deleted, then the rest goes on.
    for segment in decoded.split_inclusive(|(_, e)| matches!(e, Event::DagDeleted(_))) {
        let (deleted, keyed) = match segment.split_last() {
            Some(((_, Event::DagDeleted(e)), rest)) => (Some(e.dag_id.as_str()), rest),
            _ => (None, segment),
        };
        apply_keyed(conn, schema, keyed).await?;
        if let Some(dag_id) = deleted {
            delete_dag(conn, schema, dag_id).await?;
        }
    }

    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO \"{schema}\".projection_checkpoints (projection, position) \
         SELECT unnest($1::text[]), $2 \
         ON CONFLICT (projection) DO UPDATE \
         SET position = GREATEST(projection_checkpoints.position, EXCLUDED.position)"
    )))
    .bind(Projection::ALL.map(Projection::name).to_vec())
    .bind(last.position)
    .execute(conn)
    .await?;
    Ok(())
}

/// Applies events that change rows by key, in bulk: load what they touch, apply, write back.
async fn apply_keyed(
    conn: &mut PgConnection,
    schema: &str,
    events: &[(&RecordedEvent, Event)],
) -> Result<(), ProjectError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut rows = WorkingSet::default();
    for (_, event) in events {
        rows.want(event);
    }
    rows.load(conn, schema).await?;
    for (recorded, event) in events {
        rows.apply(recorded, event)
            .map_err(|source| ProjectError::Apply {
                position: recorded.position,
                event_type: recorded.event_type.clone(),
                source,
            })?;
    }
    rows.flush(conn, schema).await?;
    Ok(())
}

/// Deletes a DAG and everything of its runs from the read models (its file's import error
/// belongs to the file and stays).
async fn delete_dag(
    conn: &mut PgConnection,
    schema: &str,
    dag_id: &str,
) -> Result<(), ProjectError> {
    for table in [
        "xcom",
        "task_instance_try",
        "task_instance",
        "dag_run",
        "dag_favorite",
        "dag_version",
        "dag",
        "asset_event_dag_run",
    ] {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM \"{schema}\".\"{table}\" WHERE dag_id = $1"
        )))
        .bind(dag_id)
        .execute(&mut *conn)
        .await?;
    }
    // Its queued asset events go with it; the events themselves stay (an asset's history is
    // not the DAG's), as in Airflow.
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM \"{schema}\".asset_dag_run_queue WHERE target_dag_id = $1"
    )))
    .bind(dag_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The inline projection of the live read models, for [`leoflow_events::EventStore::with_projection`].
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadModels;

impl InlineProjection for ReadModels {
    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            project(conn, LIVE_SCHEMA, events, None)
                .await
                .map_err(|e| Box::new(e) as ProjectionError)
        })
    }
}

/// Decodes a recorded event, naming its position on failure.
pub fn decode(recorded: &RecordedEvent) -> Result<Event, ProjectError> {
    recorded.decode().map_err(|source| ProjectError::Decode {
        position: recorded.position,
        event_type: recorded.event_type.clone(),
        source,
    })
}
