//! `leoflow dags`: list, show, trigger, pause, unpause, delete. Against a server (docs/remote.md)
//! every subcommand goes through `/api/v2`; on the local database, trigger, pause and unpause
//! work as before and the others need a server.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::Subcommand;
use leoflow_core::commands::TriggerRequest;
use leoflow_events::{Actor, EventStore};
use leoflow_projector::ReadModels;
use leoflow_scheduler::control;
use reqwest::Method;
use serde_json::{Value, json};

use crate::datastore::DatastoreArgs;
use crate::output::{Output, Table};
use crate::remote::{Remote, RemoteArgs, api_path, needs_server, path_under};

/// `leoflow dags …`
#[derive(Debug, Subcommand)]
pub enum DagsCommand {
    /// Run one DAG run of a project on this machine, printing each task's log as it ends
    /// (Airflow's `airflow dags test`): a throwaway Postgres, the real scheduler and executor.
    Test(super::lite::dag_test::DagTestArgs),
    /// List the DAGs (against a server).
    List {
        /// Only DAGs whose id contains this (Airflow's `dag_id_pattern`).
        #[arg(long, value_name = "TEXT")]
        pattern: Option<String>,
        /// How many at most.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// `table`, `json` or `yaml`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one DAG's details (against a server).
    Show {
        /// The DAG.
        dag_id: String,
        /// `table`, `json` or `yaml`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
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
    /// A DAG's versions, oldest first, with where pushed ones came from (against a server).
    Versions {
        /// The DAG.
        dag_id: String,
        /// `table`, `json` or `yaml`.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Make an older version current again: a new version that is the old artifact, the
    /// history kept (against a server).
    Rollback {
        /// The DAG.
        dag_id: String,
        /// The version number to make current (see `dags versions`).
        #[arg(long, value_name = "VERSION")]
        to: i32,
    },
    /// Delete a DAG and everything of it (against a server).
    Delete {
        /// The DAG.
        dag_id: String,
        /// Yes, delete it (required: there is no prompt).
        #[arg(long)]
        yes: bool,
    },
}

/// Runs a `dags` subcommand, against a server when one is named or current.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    command: DagsCommand,
) -> Result<ExitCode> {
    // Always on this machine, whatever server is current.
    if let DagsCommand::Test(args) = command {
        return super::lite::dag_test::run(datastore.home(), args).await;
    }
    if let Some(server) = remote.remote(datastore)? {
        return on_server(&server, command).await;
    }
    match &command {
        DagsCommand::List { .. } => return Err(needs_server("dags list")),
        DagsCommand::Show { .. } => return Err(needs_server("dags show")),
        DagsCommand::Versions { .. } => return Err(needs_server("dags versions")),
        DagsCommand::Rollback { .. } => return Err(needs_server("dags rollback")),
        DagsCommand::Delete { .. } => return Err(needs_server("dags delete")),
        _ => {}
    }
    let database = datastore.open().await?;
    let store = EventStore::new(database.pool.clone()).with_projection(Arc::new(ReadModels));
    match command {
        DagsCommand::Trigger {
            dag_id,
            conf,
            run_id,
            logical_date,
        } => {
            let request = TriggerRequest {
                run_id,
                logical_date,
                conf: parsed_conf(conf.as_deref())?,
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
        DagsCommand::List { .. }
        | DagsCommand::Show { .. }
        | DagsCommand::Versions { .. }
        | DagsCommand::Rollback { .. }
        | DagsCommand::Delete { .. }
        | DagsCommand::Test(_) => unreachable!("refused above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--conf` as a JSON object.
fn parsed_conf(conf: Option<&str>) -> Result<Option<Value>> {
    conf.map(serde_json::from_str)
        .transpose()
        .context("--conf is not valid JSON")
}

async fn paused(store: &EventStore, dag_id: &str, paused: bool) -> Result<()> {
    let word = if paused { "paused" } else { "unpaused" };
    match control::set_paused(store, dag_id, paused, &Actor::named("cli")).await? {
        Some(_) => println!("{dag_id} is now {word}."),
        None => println!("{dag_id} was already {word}."),
    }
    Ok(())
}

/// A `dags` subcommand through the server's `/api/v2`.
async fn on_server(server: &Remote, command: DagsCommand) -> Result<ExitCode> {
    match command {
        DagsCommand::List {
            pattern,
            limit,
            output,
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("limit", &limit.to_string());
            query.append_pair("order_by", "dag_id");
            if let Some(pattern) = &pattern {
                query.append_pair("dag_id_pattern", pattern);
            }
            let path = format!("{}?{}", api_path(&["dags"]), query.finish());
            let listed = server.get_json(&path).await?;
            output.print(&listed, |listed| dags_table(&listed["dags"]));
        }
        DagsCommand::Show { dag_id, output } => {
            let dag = server
                .get_json(&api_path(&["dags", &dag_id, "details"]))
                .await?;
            output.print(&dag, fields_table);
        }
        DagsCommand::Trigger {
            dag_id,
            conf,
            run_id,
            logical_date,
        } => {
            let mut body =
                json!({"logical_date": logical_date, "conf": parsed_conf(conf.as_deref())?});
            if let Some(run_id) = run_id {
                body["dag_run_id"] = json!(run_id);
            }
            let path = api_path(&["dags", &dag_id, "dagRuns"]);
            let response = server.send(Method::POST, &path, Some(&body)).await?;
            let run: Value = response.json().await?;
            println!(
                "Queued run {} of {dag_id}.",
                run["dag_run_id"].as_str().unwrap_or_default()
            );
        }
        DagsCommand::Versions { dag_id, output } => {
            let path = format!(
                "{}?order_by=version_number&limit=1000",
                api_path(&["dags", &dag_id, "dagVersions"])
            );
            let listed = server.get_json(&path).await?;
            output.print(&listed, |listed| versions_table(&listed["dag_versions"]));
        }
        DagsCommand::Rollback {
            dag_id,
            to: version,
        } => {
            let path = path_under("/leoflow/api/dags", &[&dag_id, "rollback"]);
            let body = json!({"version_number": version});
            let done: Value = server
                .send(Method::POST, &path, Some(&body))
                .await?
                .json()
                .await?;
            if done["changed"] == true {
                println!(
                    "{dag_id} runs version {version} again, as its version {}.",
                    done["current_version"]
                );
            } else {
                println!("Version {version} of {dag_id} is its current version already.");
            }
        }
        DagsCommand::Pause { dag_id } => set_paused(server, &dag_id, true).await?,
        DagsCommand::Unpause { dag_id } => set_paused(server, &dag_id, false).await?,
        DagsCommand::Delete { dag_id, yes } => {
            if !yes {
                bail!("deleting {dag_id} removes its runs, task instances and logs: add --yes");
            }
            server
                .send(Method::DELETE, &api_path(&["dags", &dag_id]), None)
                .await?;
            println!("Deleted {dag_id}.");
        }
        DagsCommand::Test(_) => unreachable!("run on this machine before any server is asked"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_paused(server: &Remote, dag_id: &str, paused: bool) -> Result<()> {
    let path = format!("{}?update_mask=is_paused", api_path(&["dags", dag_id]));
    let body = json!({"is_paused": paused});
    server.send(Method::PATCH, &path, Some(&body)).await?;
    let word = if paused { "paused" } else { "unpaused" };
    println!("{dag_id} is now {word}.");
    Ok(())
}

/// Airflow's `DAGResponse`s as rows.
fn dags_table(dags: &Value) -> Table {
    let mut table = Table::new(&["DAG_ID", "PAUSED", "SCHEDULE", "TAGS", "OWNERS"]);
    for dag in dags.as_array().into_iter().flatten() {
        let names = |field: &str, key: Option<&str>| -> String {
            let items = dag[field].as_array().into_iter().flatten();
            let names: Vec<&str> = items
                .filter_map(|item| key.map_or(item.as_str(), |k| item[k].as_str()))
                .collect();
            names.join(",")
        };
        table.row([
            text(&dag["dag_id"]),
            text(&dag["is_paused"]),
            text(&dag["timetable_summary"]),
            names("tags", Some("name")),
            names("owners", None),
        ]);
    }
    table
}

/// Airflow's `DagVersionResponse`s as rows (`bundle_version`: a pushed version's git commit).
fn versions_table(versions: &Value) -> Table {
    let mut table = Table::new(&["VERSION", "CREATED", "BUNDLE", "GIT_COMMIT"]);
    for version in versions.as_array().into_iter().flatten() {
        table.row(
            [
                "version_number",
                "created_at",
                "bundle_name",
                "bundle_version",
            ]
            .map(|field| text(&version[field])),
        );
    }
    table
}

/// A JSON object as FIELD / VALUE rows (nested values as compact JSON).
pub fn fields_table(object: &Value) -> Table {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for (field, value) in object.as_object().into_iter().flatten() {
        table.row([field.clone(), text(value)]);
    }
    table
}

/// A JSON value as a cell: a string as itself, `null` as `-`, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}
