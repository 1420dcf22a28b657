//! Leoflow's scheduler.
//!
//! * [`core`] — the pure decision core: the DAG as the scheduler sees it ([`core::spec`]),
//!   Airflow's trigger rules ([`core::trigger`]), retry timing ([`core::retry`]), Airflow 3's
//!   timetables ([`core::timetable`]), pools and concurrency limits ([`core::admission`]),
//!   triggering with `conf` checked against params and pausing ([`core::commands`]) and the dag-run state machine ([`core::run`]) as
//!   `decide(spec, state, command) -> events` and `evolve(state, event) -> state`. No I/O: it is
//!   tested without a database.
//!
//! Not built yet (see the scheduler issue's progress note): dynamic task mapping at run time
//! and the reactor that feeds the core events and timers and
//! appends what it decides.

pub mod control;
pub mod core;
pub mod reactor;
