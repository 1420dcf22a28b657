//! `leoflow server`: Leoflow Pro's control plane, one replica of a deployment.
//!
//! Its parts: [`config`] (the YAML file, flags and `LEOFLOW_*` merged and checked),
//! [`datastores`] (external Postgres and Redis, the schema check), `shared_state` (the
//! login limiter, revoked sessions and agents' signs of life in Redis) and `serve` (the roles, probes and graceful
//! shutdown). `leoflow server keys generate` makes the keys file replicas
//! share; `--check-config` prints the configuration a replica would run with, secrets masked.

pub mod config;
pub mod datastores;
mod serve;
pub(crate) use serve::{ServerSecrets, serve_with};
mod shared_state;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use leoflow_api::credentials::SharedKeys;

use self::config::{ServerConfig, ServerFlags};
use crate::datastore::DatastoreArgs;
use crate::logging::{self, LogFormat};

/// `leoflow server`'s arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    /// What else to do instead of serving.
    #[command(subcommand)]
    action: Option<ServerAction>,
    #[command(flatten)]
    flags: ServerFlags,
    /// Check the configuration, print it (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
}

/// `leoflow server <action>`
#[derive(Debug, Subcommand)]
pub enum ServerAction {
    /// The keys replicas share (session signing, secret encryption).
    #[command(subcommand)]
    Keys(KeysAction),
}

/// `leoflow server keys <action>`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Write new random keys to a new file (mode 0600; an existing file is never replaced).
    Generate {
        /// The file to write (then a Kubernetes Secret, or `--keys-file` of every replica).
        #[arg(short, long, value_name = "FILE")]
        output: PathBuf,
    },
}

/// Runs `leoflow server`.
pub async fn run(
    datastore: &DatastoreArgs,
    args: ServerArgs,
    log_format: LogFormat,
) -> Result<ExitCode> {
    if let Some(ServerAction::Keys(KeysAction::Generate { output })) = &args.action {
        SharedKeys::generate().write_new(output)?;
        println!(
            "Wrote new keys to {} (mode 0600). Give every replica the same file \
             (--keys-file); keep it secret and backed up: without it sessions end and \
             secrets in the log cannot be opened.",
            output.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let config = ServerConfig::load(&args.flags, datastore.database_url.as_deref())?;
    if args.check_config {
        print!("{}", serde_norway::to_string(&config)?);
        return Ok(ExitCode::SUCCESS);
    }
    let telemetry = logging::init(
        log_format,
        None,
        config.otlp_endpoint.as_deref(),
        "leoflow-server",
    )?;
    let served = serve::serve(config).await;
    // The last spans are sent off the runtime's workers, which the exports need.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    served
}
