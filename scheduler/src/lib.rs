//! Leoflow's scheduler: the I/O around the pure core ([`leoflow_core`]).
//!
//! Its public surface is what the rest of Leoflow starts or calls:
//!
//! * [`reactor`] — the event loop that feeds the core events and timers and appends what it
//!   decides; it hands tries to an executor ([`leoflow_executors::Executor`]). Started with
//!   [`reactor::Reactor`]; [`reactor::Specs`] is the run cache it shares with the API.
//! * [`agents`] — the control plane's end of the task agent protocol (gRPC).
//! * [`Liveness`] — when each in-flight attempt last showed a sign of life, shared by the
//!   control plane's processes (the reactor and the agent service take one).
//! * [`control`] — trigger, pause, clear, mark and cancel, as the API and CLI call them.
//! * [`health`] — the active scheduler's last heartbeat, as the API's health check reads it.
//! * [`metrics`] — what the scheduler tells Prometheus, kept as it happens.
//! * [`task_logs`] — each try's log lines, stored per try; [`janitor`] prunes old ones.
#![warn(missing_docs)]

pub mod agents;
pub mod control;
pub mod health;
pub mod janitor;
mod liveness;
mod lookups;
pub mod metrics;
pub mod reactor;
mod run_inputs;
pub mod task_logs;
pub mod xcom_values;

pub use liveness::{Fallback, Liveness, LivenessError, PostgresLiveness, SeenAt, SharedLiveness};
