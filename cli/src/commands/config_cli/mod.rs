//! `leoflow variables`, `leoflow connections` and `leoflow pools`: Airflow's commands for
//! Variables, Connections and Pools, against a server through Airflow's `/api/v2` (the
//! collection, its single-key routes, and its bulk `PATCH` for `set` and `import`).
//!
//! What the three share lives here: the server and tenant a command acts in ([`Api`]), listing
//! every page, the tables, `set` as one bulk request (update the entity if it exists, else
//! create it), and reading and writing the files of `import` and `export`. Each resource's
//! module says what its bodies and files hold.

pub mod connections;
pub mod pools;
pub mod variables;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use reqwest::Method;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::datastore::DatastoreArgs;
use crate::output::{Output, Table};
use crate::remote::{Refused, Remote, RemoteArgs};

/// What the API shows in place of a sensitive value (Airflow's secrets masker).
pub const MASK: &str = "***";

/// How many entries a list asks for a page (Airflow's `maximum_page_limit`).
const PAGE: usize = 100;

/// How wide a table's cell may be in a list (longer ones end with `…`).
const CELL: usize = 60;

/// How one resource is reached and shown.
#[derive(Debug)]
pub struct Resource {
    /// Its collection under `/api/v2/`, which is also the field its list answer lists it in.
    pub path: &'static str,
    /// How messages name one (`Variable`).
    pub noun: &'static str,
    /// The field of its key in answers and bodies.
    pub key: &'static str,
    /// How the file's keys name it (`key`, `conn id`, `pool`).
    pub file_key: &'static str,
    /// The list's columns: (header, field of the answer).
    pub columns: &'static [(&'static str, &'static str)],
    /// The rows of `get`'s table: (name, field of the answer).
    pub details: &'static [(&'static str, &'static str)],
}

impl Resource {
    /// The keys of the entries `keep` keeps.
    pub fn keys_where<'a>(
        &self,
        entries: &'a [Value],
        keep: impl Fn(&Value) -> bool,
    ) -> Vec<&'a str> {
        entries
            .iter()
            .filter(|e| keep(e))
            .filter_map(|e| e[self.key].as_str())
            .collect()
    }
}

/// `--team` of every subcommand.
#[derive(Debug, Args)]
pub struct Team {
    /// Act in this tenant (Airflow's `team_name`): a caller of every tenant lists, reads and
    /// changes that tenant's (`default` for the default one); a caller of one tenant always acts
    /// in theirs, and naming another is refused (exit 4).
    #[arg(long, global = true, value_name = "TEAM")]
    team: Option<String>,
}

/// `list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// `table` for people, `json` or `yaml` (a list of Airflow's responses) for scripts.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// `export`
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The file to write (`-`: standard output).
    #[arg(value_name = "FILE|-")]
    file: PathBuf,
}

/// A server and the tenant a command acts in, for one resource.
pub struct Api {
    remote: Remote,
    team: Option<String>,
    resource: &'static Resource,
}

impl Api {
    /// The server these commands call; none (no login, no `LEOFLOW_SERVER`) is refused with
    /// exit code 3, saying how to log in.
    pub fn connect(
        datastore: &DatastoreArgs,
        remote: &RemoteArgs,
        team: Team,
        resource: &'static Resource,
    ) -> Result<Self> {
        let Some(server) = remote.remote(datastore)? else {
            // A database named (flag or environment) turns the current profile off.
            let database = if datastore.database_url.is_some() || datastore.postgres.is_some() {
                " (a database named with --database-url/--postgres or their LEOFLOW_* \
                 variables is not used by these commands: name the profile with --profile)"
            } else {
                ""
            };
            return Err(Refused::unauthenticated(format!(
                "`leoflow {}` works against a server, and there is none to call: log in once \
                 with `leoflow login --server URL` (for Lite: `leoflow login --server \
                 http://localhost:8088 --username admin --password-file F`), or set \
                 LEOFLOW_SERVER and LEOFLOW_TOKEN{database}",
                resource.path
            ))
            .into());
        };
        Ok(Self {
            remote: server,
            team: team.team,
            resource,
        })
    }

    /// The path of the collection, or of `key` in it, with `query` and the tenant's
    /// `team_name`.
    fn path(&self, key: Option<&str>, query: &[(&str, &str)]) -> String {
        let mut url = url::Url::parse("http://server/api/v2").expect("a URL");
        {
            let mut segments = url.path_segments_mut().expect("a URL with a path");
            segments.push(self.resource.path);
            if let Some(key) = key {
                segments.push(key);
            }
        }
        let team = self.team.as_deref().map(|team| ("team_name", team));
        let pairs: Vec<(&str, &str)> = query.iter().copied().chain(team).collect();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url[url::Position::BeforePath..].to_owned()
    }

    /// ` in team T` when `--team` names one.
    fn in_team(&self) -> String {
        self.team
            .as_deref()
            .map(|team| format!(" in team {team}"))
            .unwrap_or_default()
    }

    /// Every entry the caller may see (every page).
    pub async fn list(&self) -> Result<Vec<Value>> {
        let mut entries = Vec::new();
        loop {
            let (limit, offset) = (PAGE.to_string(), entries.len().to_string());
            let path = self.path(None, &[("limit", &limit), ("offset", &offset)]);
            let page = self.remote.get_json(&path).await?;
            let listed = page[self.resource.path]
                .as_array()
                .with_context(|| format!("GET {path}: no {} in {page}", self.resource.path))?;
            let total = page["total_entries"].as_u64().unwrap_or_default() as usize;
            entries.extend(listed.iter().cloned());
            if listed.is_empty() || entries.len() >= total {
                return Ok(entries);
            }
        }
    }

    /// `list`: every entry, as a table or as Airflow's responses.
    pub async fn print_list(&self, args: ListArgs) -> Result<ExitCode> {
        let entries = self.list().await?;
        let columns = self.resource.columns;
        args.output
            .print(&entries, |entries| table(entries, columns, Some(CELL)));
        Ok(ExitCode::SUCCESS)
    }

    /// The entry with `key` (a 404 exits with 5).
    pub async fn get(&self, key: &str) -> Result<Value> {
        self.remote.get_json(&self.path(Some(key), &[])).await
    }

    /// `get`: the entry, as a table of its fields or as Airflow's response.
    pub async fn print_one(&self, key: &str, output: Output) -> Result<ExitCode> {
        let entry = self.get(key).await?;
        let details = self.resource.details;
        output.print(&entry, |entry| fields(entry, details));
        Ok(ExitCode::SUCCESS)
    }

    /// `delete`: the entry with `key` (a 404 exits with 5).
    pub async fn delete(&self, key: &str) -> Result<ExitCode> {
        let path = self.path(Some(key), &[]);
        self.remote.send(Method::DELETE, &path, None).await?;
        println!("{} {key} deleted{}.", self.resource.noun, self.in_team());
        Ok(ExitCode::SUCCESS)
    }

    /// Sends a bulk request of `actions`; refuses, with each of the server's reasons, one that
    /// did not do all it was asked.
    async fn bulk(&self, actions: Vec<Value>) -> Result<Report> {
        let path = self.path(None, &[]);
        let answer = self
            .remote
            .send(Method::PATCH, &path, Some(&json!({ "actions": actions })))
            .await?;
        let report: Report = answer
            .json()
            .await
            .with_context(|| format!("PATCH {path}: the answer is not a bulk response"))?;
        let errors: Vec<String> = [&report.create, &report.update, &report.delete]
            .into_iter()
            .flatten()
            .flat_map(|action| &action.errors)
            .map(|e| {
                let error = e
                    .error
                    .as_str()
                    .map_or_else(|| e.error.to_string(), str::to_owned);
                format!("{}: {error}", e.status_code)
            })
            .collect();
        if !errors.is_empty() {
            bail!(
                "PATCH {path} on {}: the server refused: {}",
                self.remote.server(),
                errors.join("; ")
            );
        }
        Ok(report)
    }

    /// `set`: updates the entry `body` names if it exists (the fields `body` gives, those of
    /// `update_mask` if given), else creates it; both in one request, so nothing comes between.
    pub async fn set(&self, body: Value, update_mask: Option<&[&str]>) -> Result<ExitCode> {
        let key = body[self.resource.key]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut update = json!({
            "action": "update",
            "entities": [&body],
            "action_on_non_existence": "skip",
        });
        if let Some(mask) = update_mask {
            update["update_mask"] = json!(mask);
        }
        let create = json!({
            "action": "create",
            "entities": [&body],
            "action_on_existence": "skip",
        });
        let report = self.bulk(vec![update, create]).await?;
        let done = if report.created().any(|k| *k == key) {
            "created"
        } else if report.updated().any(|k| *k == key) {
            "updated"
        } else {
            bail!("the server neither created nor updated {key}: {report:?}");
        };
        println!("{} {key} {done}{}.", self.resource.noun, self.in_team());
        Ok(ExitCode::SUCCESS)
    }

    /// `import`: the entries of `bodies` (read from `file`) as `on_existing` says, in one
    /// request; prints what was imported and what skipped.
    pub async fn import(
        &self,
        file: &Path,
        bodies: Vec<Value>,
        on_existing: OnExisting,
    ) -> Result<ExitCode> {
        let plural = self.resource.path;
        if bodies.is_empty() {
            println!("{}: no {plural} to import.", file.display());
            return Ok(ExitCode::SUCCESS);
        }
        let keys: Vec<String> = bodies
            .iter()
            .map(|b| b[self.resource.key].as_str().unwrap_or_default().to_owned())
            .collect();
        let create = |existing: &str| json!({"action": "create", "entities": &bodies, "action_on_existence": existing});
        let actions = match on_existing {
            OnExisting::Overwrite => vec![create("overwrite")],
            OnExisting::Fail => vec![create("fail")],
            OnExisting::Skip => vec![create("skip")],
            OnExisting::Update => vec![
                json!({"action": "update", "entities": &bodies, "action_on_non_existence": "skip"}),
                create("skip"),
            ],
        };
        let report = self.bulk(actions).await?;
        let done: BTreeSet<&String> = report.created().chain(report.updated()).collect();
        println!(
            "{} of {} {plural} imported from {}{}.",
            done.len(),
            keys.len(),
            file.display(),
            self.in_team()
        );
        let skipped: Vec<&str> = keys
            .iter()
            .filter(|k| !done.contains(k))
            .map(String::as_str)
            .collect();
        if !skipped.is_empty() {
            println!("Skipped, as they exist: {}.", skipped.join(", "));
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `export`: every entry of one tenant as `entry` makes it, by key, into `file` (`-`:
    /// standard output); returns the entries as the server answered them. An answer holding
    /// several tenants' (a caller of every tenant without `--team`) is refused: a file holds one
    /// tenant's.
    pub async fn export(
        &self,
        file: &Path,
        mut entry: impl FnMut(&Value) -> Value,
    ) -> Result<Vec<Value>> {
        let listed = self.list().await?;
        let teams: BTreeSet<Option<&str>> =
            listed.iter().map(|e| e["team_name"].as_str()).collect();
        if teams.len() > 1 {
            let names: Vec<&str> = teams.iter().map(|t| t.unwrap_or("default")).collect();
            bail!(
                "the server shows you the {} of several tenants ({}): export one tenant's at a \
                 time with --team T (--team default for the default tenant)",
                self.resource.path,
                names.join(", ")
            );
        }
        let entries: BTreeMap<&str, Value> = listed
            .iter()
            .map(|e| (e[self.resource.key].as_str().unwrap_or_default(), entry(e)))
            .collect();
        let mut text = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        entries
            .serialize(&mut serde_json::Serializer::with_formatter(
                &mut text, formatter,
            ))
            .context("the export serializes")?;
        text.push(b'\n');
        let to_stdout = file == Path::new("-");
        let message = format!(
            "{} {} exported to {}{}.",
            entries.len(),
            self.resource.path,
            if to_stdout {
                "standard output".into()
            } else {
                file.display().to_string()
            },
            self.in_team()
        );
        if to_stdout {
            std::io::stdout().write_all(&text)?;
            eprintln!("{message}");
        } else {
            std::fs::write(file, &text)
                .with_context(|| format!("cannot write {}", file.display()))?;
            println!("{message}");
        }
        Ok(listed)
    }
}

/// What `import` does with the entries that exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExisting {
    /// Replace them with the file's.
    Overwrite,
    /// Import nothing.
    Fail,
    /// Leave them as they are.
    Skip,
    /// Change them in place: the fields the file gives, the others kept.
    Update,
}

/// Airflow's `BulkResponse`.
#[derive(Debug, Default, Deserialize)]
struct Report {
    #[serde(default)]
    create: Option<ActionReport>,
    #[serde(default)]
    update: Option<ActionReport>,
    #[serde(default)]
    delete: Option<ActionReport>,
}

impl Report {
    fn created(&self) -> impl Iterator<Item = &String> {
        self.create.iter().flat_map(|a| &a.success)
    }

    fn updated(&self) -> impl Iterator<Item = &String> {
        self.update.iter().flat_map(|a| &a.success)
    }
}

/// Airflow's `BulkActionResponse`.
#[derive(Debug, Default, Deserialize)]
struct ActionReport {
    #[serde(default)]
    success: Vec<String>,
    #[serde(default)]
    errors: Vec<ActionError>,
}

/// One refusal of a bulk action.
#[derive(Debug, Deserialize)]
struct ActionError {
    error: Value,
    status_code: u16,
}

// ---------------------------------------------------------------------------------------------
// Tables.

/// A cell: text as it is, `null` empty, anything else as JSON; on one line, cut at `limit`.
fn cell(value: &Value, limit: Option<usize>) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match limit {
        Some(limit) if line.chars().count() > limit => {
            let cut: String = line.chars().take(limit - 1).collect();
            format!("{cut}…")
        }
        _ => line,
    }
}

/// A row per entry, a column per (header, field).
fn table(entries: &[Value], columns: &[(&str, &str)], limit: Option<usize>) -> Table {
    let headers: Vec<&str> = columns.iter().map(|(header, _)| *header).collect();
    let mut table = Table::new(&headers);
    for entry in entries {
        table.row(columns.iter().map(|(_, field)| cell(&entry[*field], limit)));
    }
    table
}

/// One entry as a row per field.
fn fields(entry: &Value, details: &[(&str, &str)]) -> Table {
    let mut table = Table::new(&["FIELD", "VALUE"]);
    for (name, field) in details {
        table.row([(*name).to_owned(), cell(&entry[*field], None)]);
    }
    table
}

// ---------------------------------------------------------------------------------------------
// Files.

/// Whether `value` holds the mask anywhere (a masked value, or a masked key of a JSON one).
pub fn holds_mask(value: &Value) -> bool {
    match value {
        Value::String(text) => text == MASK,
        Value::Array(items) => items.iter().any(holds_mask),
        Value::Object(map) => map.values().any(holds_mask),
        _ => false,
    }
}

/// The fields `names` of `entry` (`null` where it has none), as an export file holds them.
pub fn pick(entry: &Value, names: &[&str]) -> Value {
    let picked = names
        .iter()
        .map(|name| ((*name).to_owned(), entry[*name].clone()))
        .collect();
    Value::Object(picked)
}

/// The warning naming the keys of what is masked, if any.
pub fn warn_of(keys: &[&str], why: &str) {
    if !keys.is_empty() {
        eprintln!("warning: {}: {why}", keys.join(", "));
    }
}

/// A JSON object's members in their order, a key given twice refused.
struct Members(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members: Vec<(String, Value)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Value>()? {
                    if members.iter().any(|(k, _)| *k == key) {
                        return Err(serde::de::Error::custom(format!("{key:?} is given twice")));
                    }
                    members.push((key, value));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Object)
    }
}

/// Reads an import file (`-`: standard input): a JSON object whose members `body` makes into
/// request bodies. Every fault is named with the file and the key, and none is sent.
pub fn read_import(
    file: &Path,
    resource: &Resource,
    example: &str,
    body: impl Fn(&str, &Value) -> Result<Value, String>,
) -> Result<Vec<Value>> {
    let name = file.display();
    let text = if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?
    };
    let parsed: Value =
        serde_json::from_str(&text).with_context(|| format!("{name} is not JSON"))?;
    if !parsed.is_object() {
        bail!(
            "{name} is not a JSON object of {} by {} (such as {example})",
            resource.path,
            resource.file_key
        );
    }
    let Members(members) =
        serde_json::from_str(&text).with_context(|| format!("{name} is not a valid import"))?;
    let mut bodies = Vec::with_capacity(members.len());
    let mut faults = Vec::new();
    for (key, value) in &members {
        match body(key, value) {
            Ok(body) => bodies.push(body),
            Err(why) => faults.push(format!("{name}: {} {key:?}: {why}", resource.file_key)),
        }
    }
    if !faults.is_empty() {
        bail!("{} (nothing was imported)", faults.join("\n"));
    }
    Ok(bodies)
}

/// The JSON type a field of an import file takes (`null` always allowed).
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A string.
    Text,
    /// An integer from -1 up to `i32::MAX`.
    Integer,
    /// `true` or `false`.
    Bool,
}

/// The fields of one entry of an import file: an object with known fields of known types.
pub struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// `value` as an object whose fields are among `known`.
    pub fn of(value: &'a Value, known: &[&str]) -> Result<Self, String> {
        let Some(map) = value.as_object() else {
            return Err(format!("is {}, not an object", describe(value)));
        };
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !known.contains(k))
            .collect();
        if !unknown.is_empty() {
            return Err(format!(
                "unknown field {} (known: {})",
                unknown.join(", "),
                known.join(", ")
            ));
        }
        Ok(Self(map))
    }

    /// The field `name` as given (`None`: left out).
    pub fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name)
    }

    /// Checks that the field `name`, if given, is `null` or of `kind`.
    pub fn check(&self, name: &str, kind: Kind) -> Result<(), String> {
        let Some(value) = self.0.get(name) else {
            return Ok(());
        };
        let fits = match kind {
            Kind::Text => value.is_string(),
            Kind::Integer => value
                .as_i64()
                .is_some_and(|n| (-1..=i64::from(i32::MAX)).contains(&n)),
            Kind::Bool => value.is_boolean(),
        };
        if fits || value.is_null() {
            return Ok(());
        }
        let wanted = match kind {
            Kind::Text => "a string",
            Kind::Integer => "an integer (-1 or more)",
            Kind::Bool => "true or false",
        };
        Err(format!("`{name}` must be {wanted}, not {value}"))
    }

    /// Copies the fields of `names` that are given (`null` too) into `body`.
    pub fn copy(&self, names: &[&str], body: &mut Value) {
        for name in names {
            if let Some(value) = self.0.get(*name) {
                body[*name] = value.clone();
            }
        }
    }
}

/// How a fault names a JSON value's type.
fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_one_line_and_cut() {
        assert_eq!(cell(&json!(null), None), "");
        assert_eq!(cell(&json!("{\n  \"a\": 1\n}"), None), "{ \"a\": 1 }");
        assert_eq!(cell(&json!(-1), None), "-1");
        assert_eq!(cell(&json!("abcdef"), Some(4)), "abc…");
    }

    #[test]
    fn masks_are_found_at_any_depth() {
        assert!(holds_mask(&json!("***")));
        assert!(holds_mask(&json!({"a": [{"password": "***"}]})));
        assert!(!holds_mask(&json!({"a": "x***"})));
    }

    #[test]
    fn import_files_name_the_file_and_the_key_of_each_fault() {
        let dir = std::env::temp_dir().join(format!("lf-config-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pools.json");
        let resource = &pools::POOLS;
        let read = |text: &str| {
            std::fs::write(&file, text).unwrap();
            read_import(&file, resource, "{}", pools::body).map_err(|e| format!("{e:#}"))
        };
        let name = file.display().to_string();
        let not_json = read("{").unwrap_err();
        assert!(
            not_json.contains(&name) && not_json.contains("not JSON"),
            "{not_json}"
        );
        let not_object = read("[1]").unwrap_err();
        assert!(not_object.contains("not a JSON object"), "{not_object}");
        let twice = read(r#"{"a": {"slots": 1}, "a": {"slots": 2}}"#).unwrap_err();
        assert!(twice.contains("\"a\" is given twice"), "{twice}");
        let wrong = read(r#"{"etl": {"slots": "ten"}, "ok": {"slots": 1}}"#).unwrap_err();
        assert!(
            wrong.contains(&format!("{name}: pool \"etl\": `slots` must be an integer")),
            "{wrong}"
        );
        let unknown = read(r#"{"etl": {"slots": 1, "colour": 1}}"#).unwrap_err();
        assert!(unknown.contains("unknown field colour"), "{unknown}");
        assert_eq!(read("{}").unwrap(), Vec::<Value>::new());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn paths_encode_keys_and_carry_the_team() {
        let api = Api {
            remote: Remote::new("http://localhost:8088", "t").unwrap(),
            team: Some("acme".into()),
            resource: &variables::VARIABLES,
        };
        assert_eq!(
            api.path(Some("a/b c"), &[("limit", "100")]),
            "/api/v2/variables/a%2Fb%20c?limit=100&team_name=acme"
        );
    }
}
