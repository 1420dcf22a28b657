//! `leoflow db`: the schema.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use leoflow_postgres::migrate;

use crate::datastore::DatastoreArgs;

/// `leoflow db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Apply the migrations this database lacks.
    Migrate,
    /// Drop everything in the database, the event log included, and migrate from scratch.
    Reset {
        /// Confirm: the event log and every read model are deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `db` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: DbCommand) -> Result<ExitCode> {
    match command {
        DbCommand::Migrate => {
            let database = datastore.open_unmigrated().await?;
            let report = migrate::migrate(&database.pool).await?;
            if report.applied.is_empty() {
                println!(
                    "{}: schema already at version {}.",
                    database.target, report.schema_version
                );
            } else {
                println!(
                    "{}: applied {} migration(s); schema at version {}.",
                    database.target,
                    report.applied.len(),
                    report.schema_version
                );
            }
        }
        DbCommand::Reset { yes } => {
            if !yes {
                bail!(
                    "`leoflow db reset` deletes the event log and every read model; \
                     run it again with --yes to confirm"
                );
            }
            let database = datastore.open_unmigrated().await?;
            let report = migrate::reset(&database.pool).await?;
            println!(
                "{}: reset; schema at version {}.",
                database.target, report.schema_version
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
