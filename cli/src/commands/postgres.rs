//! `leoflow postgres`: the managed cluster.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use leoflow_postgres::{ClusterSettings, ManagedCluster, StartOutcome, StopOutcome};

use crate::datastore::DatastoreArgs;

/// `leoflow postgres …`
#[derive(Debug, Subcommand)]
pub enum PostgresCommand {
    /// Start the managed cluster (initializing it on first use) and create the database.
    Start,
    /// Stop the managed cluster.
    Stop,
    /// Say whether the managed cluster is running, and where.
    Status,
}

/// Runs a `postgres` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: PostgresCommand) -> Result<ExitCode> {
    let cluster = ManagedCluster::new(
        datastore.home().join("postgres"),
        ClusterSettings::durable(),
    )?;
    match command {
        PostgresCommand::Start => {
            let outcome = {
                let cluster = cluster.clone();
                tokio::task::spawn_blocking(move || cluster.start()).await??
            };
            cluster.ensure_database(&datastore.database).await?;
            let verb = match outcome {
                StartOutcome::Started { initialized: true } => "initialized and started",
                StartOutcome::Started { initialized: false } => "started",
                StartOutcome::AlreadyRunning => "already running",
            };
            println!(
                "{} {verb}; database {}.",
                cluster.describe(),
                datastore.database
            );
            if let Some(user) = cluster.runs_as() {
                println!("The server runs as user {user} (Postgres refuses root).");
            }
        }
        PostgresCommand::Stop => {
            let outcome = tokio::task::spawn_blocking({
                let cluster = cluster.clone();
                move || cluster.stop()
            })
            .await??;
            match outcome {
                StopOutcome::Stopped => println!("{} stopped.", cluster.describe()),
                StopOutcome::NotRunning => println!("{} was not running.", cluster.describe()),
            }
        }
        PostgresCommand::Status => {
            return Ok(if cluster.is_running()? {
                println!("{} is running.", cluster.describe());
                ExitCode::SUCCESS
            } else {
                println!("{} is not running.", cluster.describe());
                ExitCode::from(3)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}
