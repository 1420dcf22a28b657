//! Variables, Connections and Pools (`/api/v2/variables`, `/connections`, `/pools`) in
//! Airflow's shapes. Reads come from the `variable`, `connection` and `slot_pool` read models;
//! every change is an event (`VariableSet`, `ConnectionDeleted`, `PoolSet`, …). A write reads
//! the rows it decides on, decides, and appends expecting their streams unchanged; when a
//! concurrent write got there first it decides again on what is there now.
//!
//! Responses mask secrets as Airflow's secrets masker does: values under sensitive names read
//! `***`. Connection passwords are encrypted before their event is appended and never returned.
//!
//! The three kinds share everything but their rows and rules: [`entity`] is how one is
//! validated, decided on and recorded, [`bulk`] runs Airflow's bulk actions over any of them,
//! [`redact`] masks what responses show; list endpoints page with `crate::read::page`.

mod bulk;
mod connections;
mod entity;
pub(crate) mod pools;
pub(crate) mod redact;
mod variables;

pub use connections::{
    bulk_connections, delete_connection, get_connection, get_connections, patch_connection,
    post_connection, post_connection_action,
};
pub use pools::{bulk_pools, delete_pool, get_pool, get_pools, patch_pool, post_pool};
pub use variables::{
    bulk_variables, delete_variable, get_variable, get_variables, patch_variable, post_variable,
};
