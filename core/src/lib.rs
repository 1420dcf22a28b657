//! Leoflow's pure scheduling core. Nothing here touches a database, a clock or a process: time
//! comes in with each command, and decisions go out as events. The crate depends on no sqlx,
//! tokio or tonic, not even through a dependency (scripts/test.sh checks it), so the compiler
//! keeps it pure.
//!
//! * [`assets`] — the asset condition a DAG is scheduled on, and a task's outlets.
//! * [`spec`] — the DAG as the scheduler sees it (read from a dag.json document).
//! * [`trigger`] — Airflow's trigger rules.
//! * [`retry`] — retry timing: delay, exponential backoff with deterministic jitter, caps.
//! * [`timetable`] — Airflow 3's trigger timetables.
//! * [`admission`] — pools and concurrency limits (`max_active_tasks`, `max_active_runs`).
//! * [`commands`] — triggering a run with `conf` checked against params, and pausing.
//! * [`blockers`] — why a task instance does not run.
//! * [`state`] — task-instance and run states, each with its Airflow spelling, defined once.
//! * [`setup_teardown`] — Airflow's setup and teardown tasks.
//! * [`run`] — the dag-run state machine: `decide(spec, state, command) -> events` and
//!   `evolve(state, event) -> state`.
#![warn(missing_docs)]

pub mod admission;
pub mod assets;
pub mod blockers;
pub mod commands;
pub mod retry;
pub mod run;
pub mod setup_teardown;
pub mod spec;
pub mod state;
pub mod timetable;
pub mod trigger;
