//! `leoflow server`: Leoflow Pro's control plane, configured for a cluster (see `config`).
//!
//! What stands today is the configuration: `--check-config` loads and checks it and prints
//! what the server would run with, secrets redacted (a Helm test hook or CI can run it). The
//! serving itself — roles, external Postgres and Redis, failover — is issue 14's work in
//! progress, and the command says so rather than starting half a server.

pub mod config;

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;

use self::config::{ServerConfig, ServerFlags};
use crate::datastore::DatastoreArgs;

/// `leoflow server`'s arguments.
#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    flags: ServerFlags,
    /// Check the configuration, print it (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
}

/// Runs `leoflow server`.
pub async fn run(datastore: &DatastoreArgs, args: ServerArgs) -> Result<ExitCode> {
    let config = ServerConfig::load(&args.flags, datastore.database_url.as_deref())?;
    if args.check_config {
        print!("{}", serde_norway::to_string(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    bail!(
        "leoflow server: the configuration is valid, but serving is not built yet (Pro's \
         control plane is in progress); use `leoflow lite` to run Leoflow today"
    )
}
