//! `leoflow connections`: Airflow's `connections` commands against a server
//! (`/api/v2/connections`). Files are Airflow's JSON: `{conn_id: {conn_type, description, host,
//! login, password, schema, port, extra}}`. The API never returns a password, so an export
//! has none; a password is given only from a file or standard input, never as an argument.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{
    Api, ExportArgs, Fields, Kind, ListArgs, MASK, OnExisting, Resource, Team, holds_mask, pick,
    read_import, warn_of,
};
use crate::datastore::DatastoreArgs;
use crate::output::Output;
use crate::remote::{RemoteArgs, read_secret_file};

/// Connections as the API serves them.
pub const CONNECTIONS: Resource = Resource {
    path: "connections",
    noun: "Connection",
    key: "connection_id",
    file_key: "conn id",
    columns: &[
        ("CONN_ID", "connection_id"),
        ("TYPE", "conn_type"),
        ("HOST", "host"),
        ("PORT", "port"),
        ("LOGIN", "login"),
        ("SCHEMA", "schema"),
        ("DESCRIPTION", "description"),
        ("TEAM", "team_name"),
    ],
    details: &[
        ("conn_id", "connection_id"),
        ("conn_type", "conn_type"),
        ("description", "description"),
        ("host", "host"),
        ("port", "port"),
        ("login", "login"),
        ("password", "password"),
        ("schema", "schema"),
        ("extra", "extra"),
        ("team", "team_name"),
    ],
};

/// The fields of a Connection in a file, as Airflow writes them (`password` never, here).
const FILE_FIELDS: [&str; 7] = [
    "conn_type",
    "description",
    "host",
    "login",
    "schema",
    "port",
    "extra",
];

/// `leoflow connections`
#[derive(Debug, Args)]
pub struct ConnectionsArgs {
    #[command(flatten)]
    team: Team,
    #[command(subcommand)]
    command: ConnectionsCommand,
}

/// `leoflow connections …`
#[derive(Debug, Subcommand)]
pub enum ConnectionsCommand {
    /// List the Connections (never their passwords).
    List(ListArgs),
    /// Show a Connection (a password reads `***`: the API never returns it).
    Get {
        /// The Connection's id.
        conn_id: String,
        /// `table` for people, `json` or `yaml` (Airflow's ConnectionResponse) for scripts.
        #[arg(long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Set a Connection: create it, or change it if it exists (the fields not given are
    /// kept).
    Set(SetArgs),
    /// Delete a Connection.
    Delete {
        /// The Connection's id.
        conn_id: String,
    },
    /// Import Connections from Airflow's JSON file (`-`: standard input), in one request; those
    /// that exist are skipped unless --overwrite.
    Import {
        /// The file.
        #[arg(value_name = "FILE|-")]
        file: PathBuf,
        /// Change the Connections that exist to the file's: the fields it gives (a password or
        /// extra key it leaves out or gives as `***` keeps its stored value).
        #[arg(long)]
        overwrite: bool,
    },
    /// Export the Connections to Airflow's JSON file (`-`: standard output), without
    /// passwords (the API never returns them).
    Export(ExportArgs),
}

/// `leoflow connections set`
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The Connection's id.
    conn_id: String,
    /// Its type (`postgres`, `http`, …).
    #[arg(long, value_name = "TYPE")]
    conn_type: String,
    /// Its host.
    #[arg(long)]
    host: Option<String>,
    /// Its login.
    #[arg(long)]
    login: Option<String>,
    /// The file holding its password (its first line; `-`: standard input's first line).
    #[arg(long, value_name = "FILE|-")]
    password_file: Option<PathBuf>,
    /// Its schema.
    #[arg(long)]
    schema: Option<String>,
    /// Its port.
    #[arg(long)]
    port: Option<i32>,
    /// Its extra: a JSON object.
    #[arg(long, value_name = "JSON")]
    extra: Option<String>,
    /// Its description.
    #[arg(long)]
    description: Option<String>,
}

/// Runs a `leoflow connections` command against the server.
pub async fn run(
    datastore: &DatastoreArgs,
    remote: &RemoteArgs,
    args: ConnectionsArgs,
) -> Result<ExitCode> {
    let api = Api::connect(datastore, remote, args.team, &CONNECTIONS)?;
    match args.command {
        ConnectionsCommand::List(list) => api.print_list(list).await,
        ConnectionsCommand::Get { conn_id, output } => api.print_one(&conn_id, output).await,
        ConnectionsCommand::Set(set) => {
            let mut body = json!({"connection_id": set.conn_id, "conn_type": set.conn_type});
            for (field, value) in [
                ("host", set.host),
                ("login", set.login),
                ("schema", set.schema),
                ("extra", set.extra),
                ("description", set.description),
            ] {
                if let Some(value) = value {
                    body[field] = json!(value);
                }
            }
            if let Some(port) = set.port {
                body["port"] = json!(port);
            }
            if let Some(file) = &set.password_file {
                body["password"] = json!(password(file)?);
            }
            api.set(body, None).await
        }
        ConnectionsCommand::Delete { conn_id } => api.delete(&conn_id).await,
        ConnectionsCommand::Import { file, overwrite } => {
            let example = r#"{"my_db": {"conn_type": "postgres", "host": "db", "port": 5432}}"#;
            let bodies = read_import(&file, &CONNECTIONS, example, body)?;
            let masked = CONNECTIONS.keys_where(&bodies, |b| {
                b["extra"].as_str().is_some_and(extra_holds_mask)
            });
            warn_of(
                &masked,
                "their extra holds `***`: a Connection that exists keeps the stored values of \
                 those keys (with --overwrite), a new one would store `***`",
            );
            let on_existing = if overwrite {
                OnExisting::Update
            } else {
                OnExisting::Skip
            };
            api.import(&file, bodies, on_existing).await
        }
        ConnectionsCommand::Export(export) => {
            let listed = api.export(&export.file, exported).await?;
            let with_password = CONNECTIONS.keys_where(&listed, |c| c["password"].is_string());
            warn_of(
                &with_password,
                "the API never returns passwords, so the file has none for these Connections \
                 (an `import --overwrite` of it keeps their stored passwords)",
            );
            let masked = CONNECTIONS.keys_where(&listed, |c| {
                c["extra"].as_str().is_some_and(extra_holds_mask)
            });
            warn_of(
                &masked,
                "the API masks the sensitive keys of their extra, so the file holds `***` there \
                 (an `import --overwrite` of it keeps their stored values)",
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The password in `file`'s first line (`-`: standard input's).
fn password(file: &Path) -> Result<String> {
    if file != Path::new("-") {
        return read_secret_file(file, "password file");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim().to_owned();
    if password.is_empty() {
        bail!("no password on standard input");
    }
    Ok(password)
}

/// Whether an extra's JSON holds the mask.
fn extra_holds_mask(extra: &str) -> bool {
    serde_json::from_str(extra).is_ok_and(|extra: Value| holds_mask(&extra))
}

/// A Connection as the export file holds it: Airflow's fields but the password.
fn exported(connection: &Value) -> Value {
    pick(connection, &FILE_FIELDS)
}

/// The `ConnectionBody` of an import file's `conn_id: {…}`: the fields it gives (`null` too),
/// `extra` as JSON text (Airflow's `extra_dejson`, an object, too). A password of `***` (the
/// API's mask) counts as left out.
fn body(conn_id: &str, value: &Value) -> Result<Value, String> {
    if value.is_string() {
        return Err(
            "is a URI: give the Connection as a JSON object ({\"conn_type\": …, \"host\": …})"
                .into(),
        );
    }
    let known = [&FILE_FIELDS[..], &["password", "extra_dejson", "conn_id"]].concat();
    let fields = Fields::of(value, &known)?;
    for name in [
        "conn_type",
        "description",
        "host",
        "login",
        "password",
        "schema",
    ] {
        fields.check(name, Kind::Text)?;
    }
    fields.check("port", Kind::Integer)?;
    if !fields.get("conn_type").is_some_and(Value::is_string) {
        return Err("`conn_type` is missing".into());
    }
    if let Some(id) = fields
        .get("conn_id")
        .filter(|id| id.as_str() != Some(conn_id))
    {
        return Err(format!("its `conn_id` is {id}, not its key"));
    }
    let mut body = json!({"connection_id": conn_id});
    // Every field as given; `extra` is made JSON text below.
    fields.copy(&FILE_FIELDS, &mut body);
    if let Some(password) = fields.get("password").filter(|p| p.as_str() != Some(MASK)) {
        body["password"] = password.clone();
    }
    let extra = match (fields.get("extra"), fields.get("extra_dejson")) {
        (Some(_), Some(_)) => return Err("give `extra` or `extra_dejson`, not both".into()),
        (Some(Value::Object(extra)), None) | (None, Some(Value::Object(extra))) => {
            Some(json!(Value::Object(extra.clone()).to_string()))
        }
        (Some(extra @ (Value::String(_) | Value::Null)), None) => Some(extra.clone()),
        (Some(other), None) | (None, Some(other)) => {
            return Err(format!("`extra` must be a JSON object, not {other}"));
        }
        (None, None) => None,
    };
    if let Some(extra) = extra {
        body["extra"] = extra;
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hold_airflows_connections() {
        let given = json!({
            "conn_type": "postgres", "host": "db", "port": 5432, "login": null,
            "password": "***", "extra_dejson": {"sslmode": "require"},
        });
        assert_eq!(
            body("db", &given).unwrap(),
            json!({
                "connection_id": "db", "conn_type": "postgres", "host": "db", "port": 5432,
                "login": null, "extra": "{\"sslmode\":\"require\"}",
            })
        );
        let fault = |value: Value| body("db", &value).unwrap_err();
        assert!(fault(json!({"conn_type": "x", "port": "abc"})).contains("`port` must be"));
        assert!(fault(json!({"host": "x"})).contains("`conn_type` is missing"));
        assert!(fault(json!({"conn_type": "x", "conn_id": "other"})).contains("not its key"));
        assert!(fault(json!({"conn_type": "x", "extra": [1]})).contains("JSON object"));
        assert!(fault(json!("postgres://u:p@db/x")).contains("URI"));

        let response = json!({
            "connection_id": "db", "conn_type": "postgres", "host": "db", "port": 5432,
            "password": "***", "extra": "{\"token\": \"***\"}", "description": null,
            "login": "u", "schema": null, "team_name": null,
        });
        let entry = exported(&response);
        assert!(entry.get("password").is_none(), "{entry}");
        assert!(extra_holds_mask(entry["extra"].as_str().unwrap()));
        // What export writes, import reads back.
        let back = body("db", &entry).unwrap();
        assert_eq!(back["conn_type"], "postgres");
        assert!(back.get("password").is_none());
    }
}
