//! `leoflow tasks`: clear, mark and cancel task instances of a run; read a try's log.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use leoflow_events::{Actor, EventStore, TaskInstanceKey};
use leoflow_projector::ReadModels;
use leoflow_scheduler::reactor::Specs;
use leoflow_scheduler::{control, task_logs};

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
    /// Cancel a queued or running try: it fails without retries and its process is stopped.
    Cancel {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// The task.
        task_id: String,
        /// The map index of a mapped task instance.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        map_index: i32,
    },
    /// Print the log of a try (the latest try unless --try is given).
    Logs {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// The task.
        task_id: String,
        /// The map index of a mapped task instance.
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        map_index: i32,
        /// The try.
        #[arg(long = "try")]
        try_number: Option<i32>,
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
        } => {
            control::clear_tasks(
                &store,
                &Specs::default(),
                &dag_id,
                &run_id,
                task_ids,
                downstream,
                &Actor::named("cli"),
            )
            .await?
        }
        TasksCommand::Mark {
            dag_id,
            run_id,
            task_id,
            state,
            map_index,
        } => {
            let success = matches!(state, MarkState::Success);
            control::mark_task(
                &store,
                &Specs::default(),
                &TaskInstanceKey::mapped(&dag_id, &run_id, &task_id, map_index),
                success,
                &Actor::named("cli"),
            )
            .await?
        }
        TasksCommand::Cancel {
            dag_id,
            run_id,
            task_id,
            map_index,
        } => {
            control::cancel_task(
                &store,
                &Specs::default(),
                &TaskInstanceKey::mapped(&dag_id, &run_id, &task_id, map_index),
                &Actor::named("cli"),
            )
            .await?
        }
        TasksCommand::Logs {
            dag_id,
            run_id,
            task_id,
            map_index,
            try_number,
        } => {
            let ti = TaskInstanceKey::mapped(&dag_id, &run_id, &task_id, map_index);
            let try_number = match try_number {
                Some(n) => n,
                None => leoflow_projector::read::task_instances::try_number(
                    store.pool(),
                    &dag_id,
                    &run_id,
                    &task_id,
                    map_index,
                )
                .await?
                .ok_or_else(|| {
                    anyhow::anyhow!("no task instance {task_id} in run {run_id} of {dag_id}")
                })?,
            };
            for line in task_logs::read(store.pool(), &ti, try_number, 0).await? {
                println!("{}", line.line);
            }
            return Ok(ExitCode::SUCCESS);
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
