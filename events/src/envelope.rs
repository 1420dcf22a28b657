//! What surrounds an event in the log.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::catalog::{DecodeError, Event};

/// Who caused an event and in answer to what. Stored as the `metadata` column.
///
/// Every field is optional and left out when empty, so the metadata of events recorded before
/// a field existed still decodes (and an event's JSON holds only what is known of it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// The user, agent or component that caused the event (`admin`, `token:<id>`, `scheduler`,
    /// `agent`, …): the subject the audit trail filters by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The name people know the actor by, when it is not the subject itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The tenant the actor acted in: a caller's (`None` for one acting in every tenant, as
    /// Lite's admin), or for the scheduler and the agents the tenant of the DAG they acted for
    /// (`None` for what belongs to no DAG, as an election).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The address the actor's request came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<IpAddr>,
    /// The id of the credential the actor presented (a session's or an API token's id): which
    /// token did it, never the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
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

/// Who causes the events a command appends: a person or a machine as they authenticated, or
/// one of Leoflow's own components (`scheduler`, `agent`, `cli`) known by name only. Holds no
/// secret: a credential is known by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Who they are: a username, `token:<id>`, or a component's name.
    pub subject: String,
    /// The name people know them by.
    pub display_name: String,
    /// Their tenant (Pro).
    pub tenant: Option<String>,
    /// The address their request came from.
    pub client: Option<IpAddr>,
    /// The id of the credential they presented.
    pub token_id: Option<String>,
}

impl Actor {
    /// An actor known by name only (Leoflow's own components, the local CLI).
    pub fn named(subject: impl Into<String>) -> Self {
        let subject = subject.into();
        Self {
            display_name: subject.clone(),
            subject,
            tenant: None,
            client: None,
            token_id: None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.subject)
    }
}

impl From<&Actor> for Metadata {
    /// The metadata recording `actor`; the display name only when it says more than the
    /// subject.
    fn from(actor: &Actor) -> Self {
        Self {
            display_name: (actor.display_name != actor.subject).then(|| actor.display_name.clone()),
            tenant: actor.tenant.clone(),
            client: actor.client,
            token_id: actor.token_id.clone(),
            ..Self::actor(actor.subject.clone())
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn machine() -> Actor {
        Actor {
            subject: "token:4f2a9c".into(),
            display_name: "deploy bot".into(),
            tenant: Some("acme".into()),
            client: Some("127.0.0.1".parse().unwrap()),
            token_id: Some("4f2a9c".into()),
        }
    }

    #[test]
    fn an_actor_is_recorded_whole_and_read_back() {
        let metadata = Metadata::from(&machine());
        let stored = serde_json::to_value(&metadata).unwrap();
        assert_eq!(
            stored,
            json!({"actor": "token:4f2a9c", "display_name": "deploy bot", "tenant": "acme",
                   "client": "127.0.0.1", "token_id": "4f2a9c"})
        );
        assert_eq!(
            serde_json::from_value::<Metadata>(stored).unwrap(),
            metadata
        );
    }

    #[test]
    fn an_actor_known_by_name_records_only_the_name() {
        let stored = serde_json::to_value(Metadata::from(&Actor::named("cli"))).unwrap();
        assert_eq!(stored, json!({"actor": "cli"}));
    }

    #[test]
    fn metadata_recorded_before_the_actor_fields_still_decodes() {
        let old =
            json!({"actor": "admin", "correlation_id": "6f1c2b2e-0d7e-4a52-9a35-1f1c7a1d2b3c"});
        let metadata: Metadata = serde_json::from_value(old).unwrap();
        assert_eq!(metadata.actor.as_deref(), Some("admin"));
        assert!(metadata.correlation_id.is_some());
        assert_eq!(
            (
                metadata.display_name,
                metadata.tenant,
                metadata.client,
                metadata.token_id
            ),
            (None, None, None, None)
        );
        assert_eq!(
            serde_json::from_value::<Metadata>(json!({})).unwrap(),
            Metadata::default()
        );
    }
}
