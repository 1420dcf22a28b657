//! `leoflow postgres`: the managed cluster.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use leoflow_postgres::{
    ClusterSettings, DestroyOutcome, ManagedCluster, StartOutcome, StopOutcome,
};

use crate::datastore::DatastoreArgs;

/// `leoflow postgres …`
#[derive(Debug, Subcommand)]
pub enum PostgresCommand {
    /// Start the managed cluster (initializing it on first use) and create the database.
    Start,
    /// Stop the managed cluster.
    Stop,
    /// Say whether the managed cluster is running, and where; list clusters relocated for
    /// root whose home is gone.
    Status,
    /// Stop the managed cluster and delete it, data and all (also where it was relocated to).
    Destroy {
        /// Confirm: the database, the event log included, is deleted.
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `postgres` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: PostgresCommand) -> Result<ExitCode> {
    let cluster = ManagedCluster::new(
        datastore.home().join("postgres"),
        ClusterSettings::durable(),
    )?;
    match command {
        PostgresCommand::Start => start(datastore, &cluster).await?,
        PostgresCommand::Stop => stop(&cluster).await?,
        PostgresCommand::Status => return status(&cluster),
        PostgresCommand::Destroy { yes } => destroy(datastore, &cluster, yes).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `leoflow postgres start`: starts (initializing on first use) the cluster and creates the
/// database.
async fn start(datastore: &DatastoreArgs, cluster: &ManagedCluster) -> Result<()> {
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
    Ok(())
}

/// `leoflow postgres stop`
async fn stop(cluster: &ManagedCluster) -> Result<()> {
    let outcome = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.stop()
    })
    .await??;
    match outcome {
        StopOutcome::Stopped => println!("{} stopped.", cluster.describe()),
        StopOutcome::NotRunning => println!("{} was not running.", cluster.describe()),
    }
    Ok(())
}

/// `leoflow postgres status`: exit code 3 when the cluster is not running (as `pg_ctl status`).
fn status(cluster: &ManagedCluster) -> Result<ExitCode> {
    let running = cluster.is_running()?;
    println!(
        "{} is {}.",
        cluster.describe(),
        if running { "running" } else { "not running" }
    );
    if cluster.is_relocated() && cluster.root().exists() {
        println!(
            "Its files are in {}, not under {}: Postgres's user ({}) cannot reach that \
             directory. `leoflow postgres destroy` removes both.",
            cluster.root().display(),
            cluster.requested_root().display(),
            cluster.runs_as().unwrap_or("postgres")
        );
    }
    report_orphans(cluster);
    Ok(if running {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Names relocated clusters whose home is gone.
fn report_orphans(cluster: &ManagedCluster) {
    // A relocated cluster outlives its home's removal: nothing else would tell.
    for orphan in ManagedCluster::relocated_clusters()
        .into_iter()
        .filter(|c| !c.linked && c.root != cluster.root())
    {
        match &orphan.requested_root {
            Some(requested) => println!(
                "Left behind: {} was the managed cluster of {}, which is gone; remove it \
                 with `leoflow postgres destroy --yes --home {}`.",
                orphan.root.display(),
                requested.display(),
                requested.parent().unwrap_or(requested).display()
            ),
            None => println!(
                "Left behind: {} is a relocated managed cluster of an unknown home; \
                 stop it with `pg_ctl stop -D {}/data` and remove the directory.",
                orphan.root.display(),
                orphan.root.display()
            ),
        }
    }
}

/// `leoflow postgres destroy --yes`: the cluster and its files, the event log included.
async fn destroy(datastore: &DatastoreArgs, cluster: &ManagedCluster, yes: bool) -> Result<()> {
    if !yes {
        bail!(
            "`leoflow postgres destroy` deletes the managed cluster under {}, the event \
             log included; run it again with --yes to confirm",
            datastore.home().display()
        );
    }
    let outcome = tokio::task::spawn_blocking({
        let cluster = cluster.clone();
        move || cluster.destroy()
    })
    .await??;
    match outcome {
        DestroyOutcome::Removed(paths) => {
            for path in paths {
                println!("removed {}", path.display());
            }
        }
        DestroyOutcome::NothingThere => {
            println!(
                "There is no managed cluster for {}.",
                datastore.home().display()
            );
        }
    }
    Ok(())
}
