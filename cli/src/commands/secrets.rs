//! `leoflow secrets`: the master key of secrets at rest.
//!
//! `rotate-key` makes a new master key and re-wraps every data key with it; no event and no
//! sealed value changes. It is safe to interrupt: the new key is written next to the old one
//! first, the data keys are re-wrapped in one transaction, and only then does the new key
//! replace the old one; running it again finishes an interrupted rotation.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use leoflow_api::credentials::Credentials;
use leoflow_scheduler::reactor::SCHEDULER_LOCK_KEY;
use leoflow_secrets::{SecretKey, Vault};
use sqlx::PgPool;

use crate::datastore::DatastoreArgs;

/// `leoflow secrets …`
#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Replace the master key: re-wrap every Variable's and Connection's data key with a new
    /// one. The control plane must be stopped (a running one keeps the old key in memory).
    RotateKey,
}

/// Runs a `secrets` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: SecretsCommand) -> Result<ExitCode> {
    match command {
        SecretsCommand::RotateKey => rotate_key(datastore).await,
    }
}

async fn rotate_key(datastore: &DatastoreArgs) -> Result<ExitCode> {
    let home = datastore.home();
    let mut credentials = Credentials::load(&home)?;
    let database = datastore.open().await?;
    let pool = &database.pool;
    let _lock = hold_scheduler_lock(pool).await?;
    refuse_master_sealed(pool).await?;
    if credentials.pending_connection_key.is_none() {
        credentials.pending_connection_key = Some(SecretKey::generate());
        credentials.save(&home)?;
    } else {
        eprintln!("an interrupted rotation is finished with the key it had made");
    }
    let vault = Vault::new(pool.clone(), credentials.master_keys());
    let rewrapped = vault
        .rewrap_all()
        .await
        .context("re-wrapping the data keys (nothing changed; the old key still works)")?;
    let new_key = credentials
        .pending_connection_key
        .take()
        .expect("set above or found pending");
    credentials.connection_key = new_key;
    credentials.save(&home)?;
    println!(
        "master key rotated: {rewrapped} data key(s) re-wrapped; {} holds the new key",
        Credentials::path(&home).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Holds the scheduler's leader lock while rotating, so no control plane runs meanwhile (a
/// running one would keep wrapping data keys with the old master key).
async fn hold_scheduler_lock(pool: &PgPool) -> Result<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut conn = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(SCHEDULER_LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    if !locked {
        bail!("a Leoflow control plane is running on this database: stop it, then rotate the key");
    }
    Ok(conn)
}

/// Refuses while a Connection password written before data keys is current: it is encrypted
/// with the master key itself and would become unreadable.
async fn refuse_master_sealed(pool: &PgPool) -> Result<()> {
    let legacy = leoflow_projector::read::connections::sealed_by_master_key(pool).await?;
    if !legacy.is_empty() {
        bail!(
            "the password of connection(s) {} was stored by an older Leoflow under the master key \
             itself; save each again (UI or PATCH /api/v2/connections/<id> with its password) so \
             it gets its own data key, then rotate",
            legacy.join(", ")
        );
    }
    Ok(())
}
