//! What surrounds an event in the log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{DecodeError, Event};

/// Who caused an event and in answer to what. Stored as the `metadata` column.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The user, agent or component that caused the event (`admin`, `scheduler`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The tenant (Pro); `None` in Lite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Groups every event that stems from one request or trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event or command that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The W3C trace context of the work that appended it, when traces are exported: what the
    /// event causes (a decision, a dispatch) joins the same trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

impl Metadata {
    /// Metadata naming only the actor.
    pub fn actor(actor: impl Into<String>) -> Self {
        Self {
            actor: Some(actor.into()),
            ..Self::default()
        }
    }
}

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The event.
    pub event: Event,
    /// Its metadata.
    pub metadata: Metadata,
}

/// An event as stored in the log. The payload stays raw JSON until [`RecordedEvent::decode`],
/// so a reader can show or skip events it cannot decode without losing them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordedEvent {
    /// Global, gap-free, commit-ordered position (the first event is 1).
    pub position: i64,
    /// The stream the event belongs to.
    pub stream: String,
    /// Version of the stream after this event (the stream's first event is 1).
    pub stream_version: i64,
    /// The event type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The schema version the payload was written with.
    pub schema_version: i32,
    /// The payload as stored.
    pub payload: Value,
    /// The metadata as stored.
    pub metadata: Metadata,
    /// When the append that recorded it took the log lock.
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The typed event, upcast to the current schema.
    pub fn decode(&self) -> Result<Event, DecodeError> {
        Event::decode(&self.event_type, self.schema_version, self.payload.clone())
    }

    /// The event as readers are shown it (`events tail`, the audit log): upcast to the current
    /// schema, so what an old schema held and the current one retired (a v1 `TaskDispatched`'s
    /// attempt token) never reaches them. As stored when it cannot be decoded.
    pub fn shown(&self) -> RecordedEvent {
        let mut shown = self.clone();
        if let Ok(event) = self.decode() {
            shown.schema_version = event.schema_version();
            shown.payload = event.payload();
        }
        shown
    }
}
