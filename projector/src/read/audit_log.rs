//! The audit log: the event log itself read as a read model, one entry per event. The DAG,
//! run, task, map index and try an event concerns come from its payload (top level, or `ti`
//! for task events); its actor (the metadata's subject) is the owner, and the rest of what the
//! metadata records of them (display name, tenant, client, credential id) comes along.
//! `/api/v2/eventLogs` and `leoflow audit` read it.

use chrono::{DateTime, Utc};
use leoflow_events::Metadata;
use serde_json::Value;
use sqlx::{FromRow, PgPool};

use super::filter::{Bind, Comparison, Conditions};
use super::page::{Window, count_rows, page_rows};

// The expressions below are the ones the audit indexes of
// `migrations/20261201000005_audit_index.sql` are built on: change both together.
macro_rules! dag_id {
    () => {
        "coalesce(e.payload->>'dag_id', e.payload->'ti'->>'dag_id')"
    };
}
macro_rules! run_id {
    () => {
        "coalesce(e.payload->>'run_id', e.payload->'ti'->>'run_id')"
    };
}
macro_rules! task_id {
    () => {
        "e.payload->'ti'->>'task_id'"
    };
}
macro_rules! owner {
    () => {
        "e.metadata->>'actor'"
    };
}
macro_rules! tenant {
    () => {
        "e.metadata->>'tenant'"
    };
}
macro_rules! logical_date {
    () => {
        "(e.payload->>'logical_date')::timestamptz"
    };
}

/// Narrows `conditions` to what a caller of `tenant` may see of the log: the events about its
/// tenant's DAGs, the events about no DAG that its tenant's people and machines caused, and the
/// changes to its tenant's Variables, Connections and Pools (whoever made them: a platform
/// admin's too).
pub fn within_tenant(conditions: &mut Conditions, tenant: &str) {
    conditions.push(
        &format!(
            "(({dag}) IN (SELECT dag_id FROM dag WHERE tenant = {{}}) \
             OR (({dag}) IS NULL AND ({tenant_column} = {{}} OR {owned_by} = {{}})))",
            dag = columns::DAG_ID,
            tenant_column = columns::TENANT,
            owned_by = columns::OWNING_TENANT,
        ),
        vec![
            Bind::Text(tenant.to_owned()),
            Bind::Text(tenant.to_owned()),
            Bind::Text(tenant.to_owned()),
        ],
    );
}

/// What `leoflow audit`, `leoflow events tail` and the server's event feed narrow the log by;
/// every field left out narrows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// The subject of the actor.
    pub actor: Option<String>,
    /// The tenant the actor acted in.
    pub tenant: Option<String>,
    /// The DAG the events concern.
    pub dag_id: Option<String>,
    /// The dag run they concern.
    pub run_id: Option<String>,
    /// Their stream (`dag:etl`, `variable:key`, …).
    pub stream: Option<String>,
    /// Their types (any of them).
    pub types: Vec<String>,
    /// Recorded at or after.
    pub since: Option<DateTime<Utc>>,
    /// Recorded at or before.
    pub until: Option<DateTime<Utc>>,
}

impl LogFilter {
    /// Narrows `conditions` to the events this filter keeps (values bound, never spliced).
    pub fn narrow(&self, c: &mut Conditions) {
        for (column, value) in [
            (columns::OWNER, &self.actor),
            (columns::TENANT, &self.tenant),
            (columns::DAG_ID, &self.dag_id),
            (columns::RUN_ID, &self.run_id),
            (columns::STREAM, &self.stream),
        ] {
            if let Some(value) = value {
                c.eq(column, Bind::Text(value.clone()));
            }
        }
        c.one_of(columns::EVENT, self.types.clone(), false);
        if let Some(since) = self.since {
            c.compare(columns::RECORDED_AT, Comparison::AtLeast, Bind::Time(since));
        }
        if let Some(until) = self.until {
            c.compare(columns::RECORDED_AT, Comparison::AtMost, Bind::Time(until));
        }
    }

    /// The filter as the event feed's query (`actor`, `tenant`, `dag_id`, `run_id`, `stream`,
    /// `type` repeated, `since`, `until`): what [`LogFilter::narrow`] reads back on the server.
    pub fn query_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        for (name, value) in [
            ("actor", &self.actor),
            ("tenant", &self.tenant),
            ("dag_id", &self.dag_id),
            ("run_id", &self.run_id),
            ("stream", &self.stream),
        ] {
            if let Some(value) = value {
                pairs.push((name, value.clone()));
            }
        }
        pairs.extend(self.types.iter().map(|t| ("type", t.clone())));
        for (name, time) in [("since", self.since), ("until", self.until)] {
            if let Some(time) = time {
                pairs.push((
                    name,
                    time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ));
            }
        }
        pairs
    }
}

/// The columns the audit log filters and orders by.
pub mod columns {
    /// The DAG an event concerns.
    pub const DAG_ID: &str = dag_id!();
    /// The dag run it concerns.
    pub const RUN_ID: &str = run_id!();
    /// The task it concerns.
    pub const TASK_ID: &str = task_id!();
    /// Who caused it: the subject of its actor.
    pub const OWNER: &str = owner!();
    /// The tenant its actor acted in.
    pub const TENANT: &str = tenant!();
    /// The tenant owning what it changed, for the events that name one (a Variable's,
    /// Connection's or Pool's, a DAG's parse).
    pub const OWNING_TENANT: &str = "e.payload->>'tenant'";
    /// The stream it belongs to (`dag:<dag_id>`, `run:<dag_id>/<run_id>`, `variable:<key>`, …).
    pub const STREAM: &str = "e.stream";
    /// The logical date, known for the events that carry one (`RunQueued`).
    pub const LOGICAL_DATE: &str = logical_date!();
    /// The event's type.
    pub const EVENT: &str = "e.type";
    /// The event's position in the log: the entry's id.
    pub const POSITION: &str = "e.position";
    /// When it was recorded.
    pub const RECORDED_AT: &str = "e.recorded_at";
    /// The payload's JSON text.
    pub const PAYLOAD_TEXT: &str = "e.payload::text";
}

/// An event as an audit-log entry.
#[derive(Debug, Clone, FromRow)]
pub struct EventLogRow {
    /// The event's position.
    pub position: i64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Its type.
    pub event: String,
    /// The schema version its payload was written in.
    pub schema_version: i32,
    /// Its payload as stored.
    pub payload: Value,
    /// Who caused it.
    pub owner: Option<String>,
    /// Everything recorded of who caused it and why.
    #[sqlx(json)]
    pub metadata: Metadata,
    /// The stream it belongs to: the resource it changed.
    pub stream: String,
    /// The stream's version after it.
    pub stream_version: i64,
    /// The DAG it concerns.
    pub dag_id: Option<String>,
    /// The dag run it concerns.
    pub run_id: Option<String>,
    /// The task it concerns.
    pub task_id: Option<String>,
    /// The map index of the task instance it concerns.
    pub map_index: Option<i32>,
    /// The try it concerns.
    pub try_number: Option<i32>,
    /// The logical date, for the events that carry one.
    pub logical_date: Option<DateTime<Utc>>,
}

macro_rules! select_entries {
    ($tail:literal) => {
        concat!(
            "SELECT e.position, e.recorded_at, e.type AS event, e.schema_version, e.payload, ",
            owner!(),
            " AS owner, e.metadata, e.stream, e.stream_version, ",
            dag_id!(),
            " AS dag_id, ",
            run_id!(),
            " AS run_id, ",
            task_id!(),
            " AS task_id, (e.payload->'ti'->>'map_index')::int AS map_index, \
             (e.payload->>'try_number')::int AS try_number, ",
            logical_date!(),
            " AS logical_date FROM events e",
            $tail
        )
    };
}

impl EventLogRow {
    /// The event as the log holds it (what `events tail` prints).
    pub fn recorded(self) -> leoflow_events::RecordedEvent {
        leoflow_events::RecordedEvent {
            position: self.position,
            stream: self.stream,
            stream_version: self.stream_version,
            event_type: self.event,
            schema_version: self.schema_version,
            payload: self.payload,
            metadata: self.metadata,
            recorded_at: self.recorded_at,
        }
    }
}

/// Entries whose task instance has map index `map_index`. Compared as JSON numbers, so no
/// cast can fail on a payload.
pub fn map_index_is(conditions: &mut Conditions, map_index: i64) -> &mut Conditions {
    conditions.push(
        "e.payload->'ti'->'map_index' = CAST({} AS jsonb)",
        vec![Bind::Text(map_index.to_string())],
    )
}

/// Entries of try `try_number` (compared as JSON numbers, as [`map_index_is`]).
pub fn try_number_is(conditions: &mut Conditions, try_number: i64) -> &mut Conditions {
    conditions.push(
        "e.payload->'try_number' = CAST({} AS jsonb)",
        vec![Bind::Text(try_number.to_string())],
    )
}

/// Entries of none of the event types `events`.
pub fn event_not_in(conditions: &mut Conditions, events: Vec<String>) -> &mut Conditions {
    conditions.push(
        &format!("NOT ({} = ANY({{}}))", columns::EVENT),
        vec![Bind::Texts(events)],
    )
}

/// How many entries the whole log has. Positions are gap-free, so this needs no scan: count
/// with it when no condition applies.
pub async fn size(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT coalesce(max(position) - min(position) + 1, 0) FROM events")
        .fetch_one(pool)
        .await
}

/// The entry of the event at `position`, if there is one.
pub async fn by_position(pool: &PgPool, position: i64) -> sqlx::Result<Option<EventLogRow>> {
    sqlx::query_as(select_entries!(" WHERE e.position = $1"))
        .bind(position)
        .fetch_optional(pool)
        .await
}

/// The entries under `conditions` in `window`, in `order`, without counting them all: what
/// `leoflow audit` lists.
pub async fn entries(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<Vec<EventLogRow>> {
    page_rows(pool, select_entries!(""), conditions, order, window).await
}

/// The entries under `conditions` in `window`, in `order` (expressions of [`columns`]), and
/// how many there are in all; without conditions, [`size`] counts them without a scan.
pub async fn page(
    pool: &PgPool,
    conditions: &Conditions,
    order: &str,
    window: Window,
) -> sqlx::Result<(Vec<EventLogRow>, i64)> {
    let total = if conditions.is_empty() {
        size(pool).await?
    } else {
        count_rows(pool, "FROM events e", conditions).await?
    };
    let rows = page_rows(pool, select_entries!(""), conditions, order, window).await?;
    Ok((rows, total))
}
