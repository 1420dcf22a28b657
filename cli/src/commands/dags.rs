//! `leoflow dags`: trigger, pause, unpause.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use leoflow_core::commands::TriggerRequest;
use leoflow_events::{Actor, EventStore};
use leoflow_projector::ReadModels;
use leoflow_scheduler::control;

use crate::datastore::DatastoreArgs;

/// `leoflow dags …`
#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// Queue a manual run; its conf is checked against the DAG's params.
    Trigger {
        /// The DAG.
        dag_id: String,
        /// The run's conf, a JSON object.
        #[arg(long, value_name = "JSON")]
        conf: Option<String>,
        /// The run id (default: manual__<now>).
        #[arg(long)]
        run_id: Option<String>,
        /// The logical date (RFC 3339).
        #[arg(long, value_name = "TIME")]
        logical_date: Option<DateTime<Utc>>,
    },
    /// Pause a DAG: no new runs start.
    Pause {
        /// The DAG.
        dag_id: String,
    },
    /// Unpause a DAG.
    Unpause {
        /// The DAG.
        dag_id: String,
    },
}

/// Runs a `dags` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: DagsCommand) -> Result<ExitCode> {
    let database = datastore.open().await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));
    match command {
        DagsCommand::Trigger {
            dag_id,
            conf,
            run_id,
            logical_date,
        } => {
            let conf = conf
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .context("--conf is not valid JSON")?;
            let request = TriggerRequest {
                run_id,
                logical_date,
                conf,
                triggered_by: "cli".to_owned(),
            };
            let recorded =
                control::trigger_dag(&store, &dag_id, request, &Actor::named("cli")).await?;
            let run_id = recorded.payload["run_id"].as_str().unwrap_or_default();
            println!(
                "Queued run {run_id} of {dag_id} (event {}).",
                recorded.position
            );
        }
        DagsCommand::Pause { dag_id } => paused(&store, &dag_id, true).await?,
        DagsCommand::Unpause { dag_id } => paused(&store, &dag_id, false).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn paused(store: &EventStore, dag_id: &str, paused: bool) -> Result<()> {
    let word = if paused { "paused" } else { "unpaused" };
    match control::set_paused(store, dag_id, paused, &Actor::named("cli")).await? {
        Some(_) => println!("{dag_id} is now {word}."),
        None => println!("{dag_id} was already {word}."),
    }
    Ok(())
}
