//! `leoflow tasks`: clear, mark and cancel task instances of a run; read a try's log. Against a
//! server (docs/remote.md) through `/api/v2` (and Leoflow's cancel route); else on the local
//! database.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Subcommand, ValueEnum};
use leoflow_events::{Actor, EventStore, TaskInstanceKey};
use leoflow_projector::ReadModels;
use leoflow_scheduler::reactor::Specs;
use leoflow_scheduler::{control, task_logs};
use reqwest::Method;
use serde_json::{Value, json};

use crate::datastore::DatastoreArgs;
use crate::remote::{Remote, RemoteArgs, api_path, each_line, path_under};

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
    /// Run one task of a project alone on this machine, printing its log (Airflow's `airflow
    /// tasks test`): a throwaway Postgres, the real scheduler and executor.
    Test(super::lite::dag_test::TaskTestArgs),
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
        /// Keep printing as the try logs, until it ends (against a server).
        #[arg(short, long)]
        follow: bool,
    },
}

/// Runs a `tasks` subcommand, against a server when one is named or current.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    command: TasksCommand,
) -> Result<ExitCode> {
    // Always on this machine, whatever server is current.
    if let TasksCommand::Test(args) = command {
        return super::lite::dag_test::run_task(datastore.home(), args).await;
    }
    if let Some(server) = remote.remote(datastore)? {
        return on_server(&server, command).await;
    }
    let database = datastore.open().await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));
    let events = match command {
        TasksCommand::Test(_) => unreachable!("run on this machine before anything is opened"),
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
            follow,
        } => {
            if follow {
                return Err(crate::remote::needs_server("tasks logs --follow"));
            }
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

/// A `tasks` subcommand through the server's `/api/v2`.
async fn on_server(server: &Remote, command: TasksCommand) -> Result<ExitCode> {
    match command {
        TasksCommand::Test(_) => unreachable!("run on this machine before any server is asked"),
        TasksCommand::Clear {
            dag_id,
            run_id,
            task_ids,
            downstream,
        } => {
            let body = json!({
                "dry_run": false, "dag_run_id": run_id, "task_ids": task_ids,
                "include_downstream": downstream, "only_failed": false, "reset_dag_runs": true,
            });
            let path = api_path(&["dags", &dag_id, "clearTaskInstances"]);
            let cleared: Value = server
                .send(Method::POST, &path, Some(&body))
                .await?
                .json()
                .await?;
            let tasks = cleared["task_instances"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            println!(
                "Cleared {} task instance(s) of run {run_id} of {dag_id}.",
                tasks.len()
            );
        }
        TasksCommand::Mark {
            dag_id,
            run_id,
            task_id,
            state,
            map_index,
        } => {
            let new_state = match state {
                MarkState::Success => "success",
                MarkState::Failed => "failed",
            };
            let path = format!(
                "{}?map_index={map_index}",
                api_path(&[
                    "dags",
                    &dag_id,
                    "dagRuns",
                    &run_id,
                    "taskInstances",
                    &task_id
                ])
            );
            let body = json!({"new_state": new_state});
            server.send(Method::PATCH, &path, Some(&body)).await?;
            println!("{task_id} of run {run_id} of {dag_id} is now {new_state}.");
        }
        TasksCommand::Cancel {
            dag_id,
            run_id,
            task_id,
            map_index,
        } => {
            let segments = [
                "dags",
                &dag_id,
                "dagRuns",
                &run_id,
                "taskInstances",
                &task_id,
            ];
            let route = path_under("/leoflow/api", &[&segments[..], &["cancel"]].concat());
            let path = format!("{route}?map_index={map_index}");
            let ti: Value = server.send(Method::POST, &path, None).await?.json().await?;
            println!(
                "Cancelled {task_id} of run {run_id} of {dag_id}: it is {}.",
                ti["state"].as_str().unwrap_or("ending")
            );
        }
        TasksCommand::Logs {
            dag_id,
            run_id,
            task_id,
            map_index,
            try_number,
            follow,
        } => {
            let ti = api_path(&[
                "dags",
                &dag_id,
                "dagRuns",
                &run_id,
                "taskInstances",
                &task_id,
            ]);
            let try_number = match try_number {
                Some(n) => n.to_string(),
                None => {
                    let found = server
                        .get_json(&format!("{ti}?map_index={map_index}"))
                        .await?;
                    found["try_number"].to_string()
                }
            };
            let path = format!("{ti}/logs/{try_number}?map_index={map_index}&follow={follow}");
            let response = server.get_ndjson(&path).await?;
            each_line(response, |line| {
                let message: Value = serde_json::from_slice(line)
                    .context("the server sent a log line that is not JSON")?;
                println!("{}", message["event"].as_str().unwrap_or_default());
                Ok(())
            })
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
