//! Leoflow's scheduler.
//!
//! * [`core`] — the pure decision core: the DAG as the scheduler sees it ([`core::spec`]),
//!   Airflow's trigger rules ([`core::trigger`]), retry timing ([`core::retry`]), Airflow 3's
//!   timetables ([`core::timetable`]), pools and concurrency limits ([`core::admission`]),
//!   triggering with `conf` checked against params and pausing ([`core::commands`]) and the dag-run state machine ([`core::run`]) as
//!   `decide(spec, state, command) -> events` and `evolve(state, event) -> state`. No I/O: it is
//!   tested without a database.
//!
//! * [`reactor`] — the event loop that feeds the core events and timers and appends what it
//!   decides; it hands tries to an executor ([`leoflow_executors::Executor`]).
//! * [`agents`] — the control plane's end of the task agent protocol (gRPC).
//! * [`liveness`] — when each in-flight attempt last showed a sign of life, shared by the
//!   control plane's processes.
//! * [`control`] — trigger, pause, clear, mark and cancel, as the API and CLI call them.
//! * [`task_logs`] — each try's log lines, stored per try.

pub mod agents;
pub mod control;
pub mod core;
pub mod liveness;
pub mod reactor;
pub mod task_logs;
