//! Leoflow's event log: the one source of truth.
//!
//! * [`catalog`] — every event type Leoflow records, typed and versioned, with the stream each
//!   belongs to and the upcasters that lift older schema versions to the current one.
//! * [`tenant`] — tenant names: who owns a DAG, and the default tenant of everything else.
//! * [`envelope`] — what surrounds an event in the log: position, stream, version, metadata.
//! * [`store`] (feature `store`) — appending batches under the log's advisory lock with
//!   per-stream optimistic concurrency, reading by position or stream, and blobs for large
//!   payloads.
//! * `sample` (feature `sample`) — deterministic workloads for tests and benchmarks.
//! * [`subscribe`] (feature `store`) — following the log from a position: `LISTEN` wakes,
//!   polling backs it up.
//!
//! Without the `store` feature the crate is the catalog alone, free of sqlx and tokio: what the
//! scheduling core (`leoflow-core`) and the projector's pure apply need.
//!
//! The invariant everything else relies on: positions are gap-free and assigned in commit
//! order, so a reader that has seen position N has seen every event below N.
#![warn(missing_docs)]

pub mod catalog;
pub mod digest;
pub mod envelope;
#[cfg(feature = "store")]
pub mod metrics;
#[cfg(feature = "sample")]
pub mod sample;
#[cfg(feature = "store")]
pub mod store;
#[cfg(feature = "store")]
pub mod subscribe;
pub mod tenant;

pub use catalog::{
    AccessControl, DagAction, DagGrant, DecodeError, Event, RunType, TaskInstanceKey,
};
pub use digest::AttemptDigest;
pub use envelope::{Actor, Metadata, NewEvent, RecordedEvent};
#[cfg(feature = "store")]
pub use store::{
    AppendBatch, AppendError, AppendOutcome, EventStore, ExpectedVersion, InlineProjection,
    ProjectionError, StoreError,
};
#[cfg(feature = "store")]
pub use subscribe::Subscription;
pub use tenant::{DEFAULT_TENANT, check_tenant, dag_key, dag_key_prefix, dag_name};

/// The channel on which every append `NOTIFY`s the new head position.
pub const NOTIFY_CHANNEL: &str = "leoflow_events";

/// Key of the transaction-scoped advisory lock that serializes appends (and replays).
/// Arbitrary but fixed: "LEOFLOWE" in ASCII.
pub const LOG_LOCK_KEY: i64 = 0x4c45_4f46_4c4f_5745;
