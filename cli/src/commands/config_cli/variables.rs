//! `leoflow variables`: Airflow's `variables` commands against a server (`/api/v2/variables`).
//! Files are Airflow's: a JSON object of values by key, a value that is not a string stored as
//! its JSON text, and `{"value": …, "description": …}` for a Variable with a description.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use super::{
    Api, ExportArgs, Kind, ListArgs, MASK, OnExisting, Resource, Team, holds_mask, read_import,
    warn_of,
};
use crate::datastore::DatastoreArgs;
use crate::output::Output;
use crate::remote::RemoteArgs;

/// Variables as the API serves them.
pub const VARIABLES: Resource = Resource {
    path: "variables",
    noun: "Variable",
    key: "key",
    file_key: "key",
    columns: &[
        ("KEY", "key"),
        ("VALUE", "value"),
        ("DESCRIPTION", "description"),
        ("TEAM", "team_name"),
    ],
    details: &[
        ("key", "key"),
        ("value", "value"),
        ("description", "description"),
        ("team", "team_name"),
    ],
};

/// `leoflow variables`
#[derive(Debug, Args)]
pub struct VariablesArgs {
    #[command(flatten)]
    team: Team,
    #[command(subcommand)]
    command: VariablesCommand,
}

/// `leoflow variables …`
#[derive(Debug, Subcommand)]
pub enum VariablesCommand {
    /// List the Variables (the API shows the values of sensitive keys as `***`).
    List(ListArgs),
    /// Print a Variable's value.
    Get {
        /// The Variable's key.
        key: String,
        /// The whole Variable instead of its value: `table`, `json` or `yaml` (Airflow's
        /// VariableResponse).
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// Set a Variable: create it, or change it if it exists (a description not given is
    /// kept).
    Set {
        /// The Variable's key.
        key: String,
        /// Its value.
        value: String,
        /// Its description.
        #[arg(long)]
        description: Option<String>,
        /// VALUE is JSON: a JSON object or list is stored as its JSON text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a Variable.
    Delete {
        /// The Variable's key.
        key: String,
    },
    /// Import Variables from a JSON file of values by key (`-`: standard input), in one
    /// request.
    Import {
        /// The file.
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
        /// What to do with the Variables that exist.
        #[arg(long, value_enum, default_value_t = ExistingKey::Overwrite)]
        action_on_existing_key: ExistingKey,
    },
    /// Export the Variables to a JSON file of values by key (`-`: standard output); the API
    /// masks the values of sensitive keys, so those read `***`.
    Export(ExportArgs),
}

/// `--action-on-existing-key`, as Airflow's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExistingKey {
    /// Replace their values (and descriptions) with the file's.
    Overwrite,
    /// Import nothing when any exists.
    Fail,
    /// Leave them as they are.
    Skip,
}

/// Runs a `leoflow variables` command against the server.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    args: VariablesArgs,
) -> Result<ExitCode> {
    let api = Api::connect(datastore, remote, args.team, &VARIABLES)?;
    match args.command {
        VariablesCommand::List(list) => api.print_list(list).await,
        VariablesCommand::Get {
            key,
            output: Some(output),
        } => api.print_one(&key, output).await,
        VariablesCommand::Get { key, output: None } => {
            let variable = api.get(&key).await?;
            println!("{}", variable["value"].as_str().unwrap_or_default());
            if holds_mask(&exported(&variable)) {
                eprintln!(
                    "warning: {key}: the API masks sensitive values: `***` stands in for them"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        VariablesCommand::Set {
            key,
            value,
            description,
            json,
        } => {
            let value = if json {
                serde_json::from_str(&value)
                    .with_context(|| format!("--json: the value {value:?} is not JSON"))?
            } else {
                Value::String(value)
            };
            let mut body = json!({"key": key, "value": value});
            if let Some(description) = description {
                body["description"] = json!(description);
            }
            api.set(body, None).await
        }
        VariablesCommand::Delete { key } => api.delete(&key).await,
        VariablesCommand::Import {
            file,
            action_on_existing_key,
        } => {
            let example = r#"{"api_url": "https://x.io", "limits": {"rows": 10}}"#;
            let bodies = read_import(&file, &VARIABLES, example, body)?;
            let on_existing = match action_on_existing_key {
                ExistingKey::Overwrite => OnExisting::Overwrite,
                ExistingKey::Fail => OnExisting::Fail,
                ExistingKey::Skip => OnExisting::Skip,
            };
            api.import(&file, bodies, on_existing).await
        }
        VariablesCommand::Export(export) => {
            let listed = api.export(&export.file, exported).await?;
            let masked = VARIABLES.keys_where(&listed, |v| holds_mask(&exported(v)));
            warn_of(
                &masked,
                "the API masks sensitive values, so the file holds `***` in their place: put \
                 the real values in before importing it",
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A Variable as the export file holds it: its value as JSON when it is JSON text (else the
/// text), with its description when it has one.
fn exported(variable: &Value) -> Value {
    let text = variable["value"].as_str().unwrap_or_default();
    let value = serde_json::from_str(text).unwrap_or_else(|_| json!(text));
    match variable["description"].as_str() {
        Some(description) if !description.is_empty() => {
            json!({"value": value, "description": description})
        }
        _ => value,
    }
}

/// The `VariableBody` of an import file's `key: value`. A value holding the mask is refused:
/// the API would store `***` in place of the secret.
fn body(key: &str, value: &Value) -> Result<Value, String> {
    let wrapped = value.as_object().filter(|map| {
        map.contains_key("value") && map.keys().all(|k| k == "value" || k == "description")
    });
    let (value, description) = match wrapped {
        Some(_) => {
            let fields = super::Fields::of(value, &["value", "description"])?;
            fields.check("description", Kind::Text)?;
            (&value["value"], fields.get("description"))
        }
        None => (value, None),
    };
    if holds_mask(value) {
        return Err(format!(
            "holds `{MASK}`, which the API shows in place of a sensitive value (and `variables \
             export` writes): put the real value in the file, or leave the key out"
        ));
    }
    let mut body = json!({"key": key, "value": value});
    if let Some(description) = description {
        body["description"] = description.clone();
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_airflows_values_and_descriptions() {
        assert_eq!(
            body("a", &json!({"x": [1]})).unwrap(),
            json!({"key": "a", "value": {"x": [1]}})
        );
        assert_eq!(
            body("a", &json!({"value": "v", "description": "d"})).unwrap(),
            json!({"key": "a", "value": "v", "description": "d"})
        );
        assert!(body("a", &json!({"value": 1, "description": 2})).is_err());
        assert!(
            body("db_password", &json!("***"))
                .unwrap_err()
                .contains("***")
        );
        assert!(body("c", &json!({"password": "***"})).is_err());

        let exported_json = exported(&json!({"key": "c", "value": "{\"a\": 1}"}));
        assert_eq!(exported_json, json!({"a": 1}));
        let described = exported(&json!({"key": "c", "value": "x", "description": "d"}));
        assert_eq!(described, json!({"value": "x", "description": "d"}));
        // What export writes, import reads back to the same body.
        assert_eq!(
            body("c", &described).unwrap(),
            json!({"key": "c", "value": "x", "description": "d"})
        );
    }
}
