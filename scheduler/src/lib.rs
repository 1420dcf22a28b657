//! Leoflow's scheduler: the pure decision core (dag-run and task-instance state machines,
//! trigger rules, timetables, retries, mapping) and the reactor that feeds it new events and
//! its own timers, appending the events it decides.
//!
//! Not built yet: the event-driven scheduler is its own issue. This crate exists so the
//! workspace has its final shape.
