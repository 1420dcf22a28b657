//! `leoflow pools`: Airflow's `pools` commands against a server (`/api/v2/pools`). Files are
//! Airflow's JSON: `{name: {slots, description, include_deferred}}`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{
    Api, ExportArgs, Fields, Kind, ListArgs, OnExisting, Resource, Team, pick, read_import,
};
use crate::datastore::DatastoreArgs;
use crate::output::Output;
use crate::remote::RemoteArgs;

/// Pools as the API serves them.
pub const POOLS: Resource = Resource {
    path: "pools",
    noun: "Pool",
    key: "name",
    file_key: "pool",
    columns: &[
        ("NAME", "name"),
        ("SLOTS", "slots"),
        ("OPEN", "open_slots"),
        ("RUNNING", "running_slots"),
        ("QUEUED", "queued_slots"),
        ("INCLUDE_DEFERRED", "include_deferred"),
        ("DESCRIPTION", "description"),
        ("TEAM", "team_name"),
    ],
    details: &[
        ("name", "name"),
        ("slots", "slots"),
        ("description", "description"),
        ("include_deferred", "include_deferred"),
        ("open_slots", "open_slots"),
        ("occupied_slots", "occupied_slots"),
        ("running_slots", "running_slots"),
        ("queued_slots", "queued_slots"),
        ("scheduled_slots", "scheduled_slots"),
        ("deferred_slots", "deferred_slots"),
        ("team", "team_name"),
    ],
};

/// The fields of a pool in a file.
const FILE_FIELDS: [&str; 3] = ["slots", "description", "include_deferred"];

/// `leoflow pools`
#[derive(Debug, Args)]
pub struct PoolsArgs {
    #[command(flatten)]
    team: Team,
    #[command(subcommand)]
    command: PoolsCommand,
}

/// `leoflow pools …`
#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// List the pools with the slots their task instances hold.
    List(ListArgs),
    /// Show a pool.
    Get {
        /// The pool's name.
        name: String,
        /// `table` for people, `json` or `yaml` (Airflow's PoolResponse) for scripts.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Set a pool: create it, or change it if it exists (a description not given is kept;
    /// `default_pool` takes only slots and --include-deferred).
    Set {
        /// The pool's name.
        name: String,
        /// Its slots (-1: unlimited).
        #[arg(allow_negative_numbers = true)]
        slots: i32,
        /// Its description.
        #[arg(long)]
        description: Option<String>,
        /// Deferred task instances hold slots too.
        #[arg(long)]
        include_deferred: bool,
    },
    /// Delete a pool (`default_pool` cannot be).
    Delete {
        /// The pool's name.
        name: String,
    },
    /// Import pools from Airflow's JSON file (`-`: standard input), in one request; those
    /// that exist take the file's slots, description and include_deferred.
    Import {
        /// The file.
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
    },
    /// Export the pools to Airflow's JSON file (`-`: standard output).
    Export(ExportArgs),
}

/// Runs a `leoflow pools` command against the server.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    args: PoolsArgs,
) -> Result<ExitCode> {
    let api = Api::connect(datastore, remote, args.team, &POOLS)?;
    match args.command {
        PoolsCommand::List(list) => api.print_list(list).await,
        PoolsCommand::Get { name, output } => api.print_one(&name, output).await,
        PoolsCommand::Set {
            name,
            slots,
            description,
            include_deferred,
        } => {
            let mut body = json!({
                "name": name, "slots": slots, "include_deferred": include_deferred,
            });
            let mut mask = vec!["slots", "include_deferred"];
            if let Some(description) = description {
                body["description"] = json!(description);
                mask.push("description");
            }
            api.set(body, Some(&mask)).await
        }
        PoolsCommand::Delete { name } => api.delete(&name).await,
        PoolsCommand::Import { file } => {
            let example =
                r#"{"etl": {"slots": 4, "description": "ETL", "include_deferred": false}}"#;
            let bodies = read_import(&file, &POOLS, example, body)?;
            api.import(&file, bodies, OnExisting::Overwrite).await
        }
        PoolsCommand::Export(export) => {
            api.export(&export.file, |pool| pick(pool, &FILE_FIELDS))
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The `PoolBody` of an import file's `name: {slots, description, include_deferred}`.
pub(super) fn body(name: &str, value: &Value) -> Result<Value, String> {
    let fields = Fields::of(value, &FILE_FIELDS)?;
    fields.check("slots", Kind::Integer)?;
    fields.check("description", Kind::Text)?;
    fields.check("include_deferred", Kind::Bool)?;
    if !fields.get("slots").is_some_and(Value::is_i64) {
        return Err("`slots` is missing".into());
    }
    let mut body = json!({"name": name});
    fields.copy(&FILE_FIELDS, &mut body);
    if body["include_deferred"].is_null() {
        body["include_deferred"] = json!(false);
    }
    Ok(body)
}
