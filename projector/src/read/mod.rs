//! The read side of the read models: typed rows (`sqlx::FromRow`) and the queries that load
//! them, for every crate that reads the tables this crate writes (the API, the scheduler, the
//! authoring crate, the CLI). One home per query, so a column rename touches one file.
//!
//! Every function takes a [`sqlx::PgPool`] and returns [`sqlx::Error`]; callers map it to
//! their own error.

pub mod api_tokens;
pub mod assets;
pub mod audit_log;
pub mod connections;
pub mod dag_versions;
pub mod dags;
pub mod favorites;
pub mod filter;
pub mod grid;
pub mod hitl;
pub mod import_errors;
pub mod metrics;
pub mod page;
pub mod pools;
pub mod runs;
pub mod stats;
pub mod task_instances;
pub mod variables;
pub mod xcoms;
