//! The read side: the read models' rows as typed structs (`sqlx::FromRow`) and the queries
//! that load them, so handlers shape responses and never spell the tables' columns; and the
//! one paging helper (count, page, cursors) every list uses.

pub mod dags;
pub mod page;
pub mod runs;
pub mod task_instances;
