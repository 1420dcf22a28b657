//! Gives Leoflow a migrated Postgres.
//!
//! * [`locate`] — finds a PostgreSQL server build (`LEOFLOW_PG_BIN`, `pg_config --bindir`,
//!   `/usr/lib/postgresql/*/bin`).
//! * [`cluster`] — the managed cluster: a private Postgres under `$LEOFLOW_HOME/postgres`,
//!   Unix socket only, started and stopped with `pg_ctl`, reused when already running. Under
//!   root (initdb and postgres refuse it) the cluster runs as an unprivileged user.
//! * [`datastore`] — picking managed, Docker or a URL, and connecting with errors that name
//!   the target and say how to retry.
//! * [`migrate`] — the embedded migrations, refusing a database a newer Leoflow migrated.
//! * `testing` (feature `testing`) — one managed cluster per test run, a fresh migrated
//!   database per test.
#![warn(missing_docs)]

pub mod cluster;
pub mod datastore;
pub mod locate;
pub mod migrate;
#[cfg(feature = "testing")]
pub mod testing;

pub use cluster::{
    ClusterError, ClusterSettings, DestroyOutcome, ManagedCluster, RelocatedCluster, StartOutcome,
    StopOutcome,
};
pub use datastore::{ConnectError, Database, Datastore, PostgresChoice};
pub use locate::{LocateError, PgBuild};
pub use migrate::{MigrateError, MigrationReport};
