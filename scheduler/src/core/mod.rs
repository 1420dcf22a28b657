//! The pure scheduling core. Nothing here touches a database, a clock or a process: time comes
//! in with each command, and decisions go out as events.

pub mod admission;
pub mod blockers;
pub mod commands;
pub mod retry;
pub mod run;
pub mod spec;
pub mod timetable;
pub mod trigger;
