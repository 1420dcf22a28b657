//! `leoflow lite`: the control plane on one machine.
//!
//! Today it brings up what exists — managed Postgres, the schema, the read models caught up
//! with the log — and follows the event log until Ctrl-C, then stops the Postgres it started.
//! DAG compilation, the scheduler, the executor and the web UI join as their issues land.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Args;
use leoflow_events::EventStore;
use leoflow_projector::replay;

use crate::commands::events::human_line;
use crate::datastore::DatastoreArgs;

/// `leoflow lite`
#[derive(Debug, Args)]
pub struct LiteArgs {
    /// The project directory (holding dag.py and leoflow.yaml).
    #[arg(default_value = ".")]
    project: PathBuf,
}

/// Runs Lite until Ctrl-C.
pub async fn run(datastore: &DatastoreArgs, args: LiteArgs) -> Result<ExitCode> {
    let dag_file = args.project.join("dag.py");
    if !dag_file.is_file() {
        bail!(
            "{} is not a Leoflow project: it has no dag.py. Point `leoflow lite` at a project \
             directory, e.g. `leoflow lite dags/hello`.",
            args.project.display()
        );
    }
    let database = datastore.open().await?;
    let caught_up = replay::catch_up(&database.pool).await?;
    let store = EventStore::new(database.pool.clone());
    let head = store.head().await?;

    println!("Leoflow Lite");
    println!("  project   {}", args.project.display());
    println!("  database  {}", database.target);
    println!("  event log {head} events; read models caught up ({caught_up} replayed)");
    println!(
        "  not yet   DAG compilation, scheduler, executor and web UI are not built yet; \
         this session follows the event log."
    );
    println!("Following the event log; Ctrl-C stops Lite.");

    let mut subscription = store.subscribe(head + 1).await?;
    let result = loop {
        tokio::select! {
            event = subscription.next() => match event {
                Ok(event) => println!("{}", human_line(&event)),
                Err(e) => break Err(e.into()),
            },
            _ = tokio::signal::ctrl_c() => break Ok(ExitCode::SUCCESS),
        }
    };
    drop(subscription);
    database.pool.close().await;
    if database.started_cluster
        && let Some(cluster) = database.cluster
    {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
        println!("Stopped the managed Postgres this session started.");
    }
    result
}
