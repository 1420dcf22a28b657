//! `leoflow tasks`: clear and mark task instances of a run.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use leoflow_events::EventStore;
use leoflow_projector::ReadModels;
use leoflow_scheduler::control;

use crate::datastore::DatastoreArgs;

/// The states `tasks mark` sets.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum MarkState {
    /// Success.
    Success,
    /// Failed.
    Failed,
}

/// `leoflow tasks …`
#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Clear task instances so they run again (a finished run is queued again).
    Clear {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// The tasks.
        #[arg(required = true)]
        task_ids: Vec<String>,
        /// Also clear everything downstream.
        #[arg(long)]
        downstream: bool,
    },
    /// Set a task instance's state by hand.
    Mark {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// The task.
        task_id: String,
        /// The new state.
        #[arg(long, value_enum)]
        state: MarkState,
        /// The map index of a mapped task instance.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        map_index: i32,
    },
}

/// Runs a `tasks` subcommand.
pub async fn run(datastore: &DatastoreArgs, command: TasksCommand) -> Result<ExitCode> {
    let database = datastore.open().await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));
    let events = match command {
        TasksCommand::Clear {
            dag_id,
            run_id,
            task_ids,
            downstream,
        } => control::clear_tasks(&store, &dag_id, &run_id, task_ids, downstream, "cli").await?,
        TasksCommand::Mark {
            dag_id,
            run_id,
            task_id,
            state,
            map_index,
        } => {
            let success = matches!(state, MarkState::Success);
            control::mark_task(
                &store, &dag_id, &run_id, &task_id, map_index, success, "cli",
            )
            .await?
        }
    };
    if events.is_empty() {
        println!("Nothing to change.");
    }
    for event in events {
        println!("{}", crate::commands::events::human_line(&event));
    }
    Ok(ExitCode::SUCCESS)
}
