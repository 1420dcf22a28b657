//! `leoflow runs`: a DAG's runs, and one run with its task instances, against a server.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::{Value, json};

use super::dags::text;
use crate::datastore::DatastoreArgs;
use crate::output::{Output, Table};
use crate::remote::{RemoteArgs, api_path, needs_server};

/// `leoflow runs …`
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// A DAG's runs, newest first.
    List {
        /// The DAG.
        dag_id: String,
        /// Only runs in this state (repeatable): queued, running, success, failed.
        #[arg(long)]
        state: Vec<String>,
        /// How many at most.
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// `table`, `json` or `yaml`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// One run and its task instances.
    Show {
        /// The DAG.
        dag_id: String,
        /// The run.
        run_id: String,
        /// `table`, `json` or `yaml` (`{"run": …, "task_instances": […]}`).
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Runs a `runs` subcommand against the server.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    command: RunsCommand,
) -> Result<ExitCode> {
    let Some(server) = remote.remote(datastore)? else {
        return Err(needs_server("runs"));
    };
    match command {
        RunsCommand::List {
            dag_id,
            state,
            limit,
            output,
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            query.append_pair("order_by", "-run_after");
            for state in &state {
                query.append_pair("state", state);
            }
            let path = format!(
                "{}?{}",
                api_path(&["dags", &dag_id, "dagRuns"]),
                query.finish()
            );
            let listed = server.get_json(&path).await?;
            output.print(&listed, |listed| runs_table(&listed["dag_runs"]));
        }
        RunsCommand::Show {
            dag_id,
            run_id,
            output,
        } => {
            let run = server
                .get_json(&api_path(&["dags", &dag_id, "dagRuns", &run_id]))
                .await?;
            let path = api_path(&["dags", &dag_id, "dagRuns", &run_id, "taskInstances"]);
            let tasks = server.get_json(&format!("{path}?limit=1000")).await?;
            let shown = json!({"run": run, "task_instances": tasks["task_instances"]});
            output.print(&shown, |shown| {
                let mut table = runs_table(&json!([shown["run"]]));
                table.row([String::new()]);
                for row in tasks_rows(&shown["task_instances"]) {
                    table.row(row);
                }
                table
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Airflow's `DAGRunResponse`s as rows.
fn runs_table(runs: &Value) -> Table {
    let mut table = Table::new(&["RUN_ID", "STATE", "TYPE", "LOGICAL_DATE", "START", "END"]);
    for run in runs.as_array().into_iter().flatten() {
        table.row(
            [
                "dag_run_id",
                "state",
                "run_type",
                "logical_date",
                "start_date",
                "end_date",
            ]
            .map(|field| text(&run[field])),
        );
    }
    table
}

/// Task instances as rows under the run's columns: task, state, try, map index.
fn tasks_rows(tasks: &Value) -> Vec<[String; 4]> {
    tasks
        .as_array()
        .into_iter()
        .flatten()
        .map(|ti| {
            let index = ti["map_index"].as_i64().filter(|i| *i >= 0);
            [
                format!("  {}", text(&ti["task_id"])),
                text(&ti["state"]),
                format!("try {}", text(&ti["try_number"])),
                index.map(|i| format!("[{i}]")).unwrap_or_default(),
            ]
        })
        .collect()
}
