//! dag.json: the compiled project, leoflow.yaml applied, each DAG with its version hash.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::config::{AccessGrants, ConfigError, ProjectConfig, TaskSettings};

/// Version of the dag.json layout (`docs/dag-json.md`, `docs/dag-json.schema.json`).
pub const DAG_JSON_VERSION: u64 = 1;

/// A compiled project: what `leoflow compile` writes and what the control plane registers.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectDocument {
    /// The whole document.
    pub json: Value,
}

impl ProjectDocument {
    /// The DAG documents, each with `dag_id` and `version_hash`.
    pub fn dags(&self) -> &[Value] {
        self.json["dags"].as_array().map_or(&[], Vec::as_slice)
    }

    /// The DAG file's name (`dag.py`, or the name [`crate::project::dag_file`] found).
    pub fn source_file(&self) -> &str {
        self.json["source"]["file"].as_str().unwrap_or("dag.py")
    }

    /// The DAG file's source text.
    pub fn source_text(&self) -> &str {
        self.json["source"]["text"].as_str().unwrap_or_default()
    }

    /// Pretty JSON with sorted keys, as written to dag.json.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(&sorted(&self.json)).expect("JSON values serialize") + "\n"
    }
}

/// Why a dag.json brought from elsewhere (`leoflow push`) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// Written by a Leoflow newer than this one.
    #[error(
        "dag.json has dag_json_version {found}, written by a newer Leoflow (this one reads \
         version {DAG_JSON_VERSION}): upgrade this Leoflow, or compile with its version"
    )]
    Newer {
        /// Its version.
        found: u64,
    },
    /// Not a dag.json: it breaks `docs/dag-json.schema.json`.
    #[error("dag.json does not follow its schema: {0}")]
    Schema(String),
    /// A hash that does not match what it hashes: changed after it was compiled.
    #[error("dag.json was changed after it was compiled: {0}")]
    Altered(String),
}

/// dag.json's JSON Schema.
const SCHEMA: &str = include_str!("../../docs/dag-json.schema.json");

/// Checks a dag.json compiled elsewhere before it is registered: its version is one this
/// Leoflow reads, it follows the schema, and its hashes (the source's, each DAG's version
/// hash) match what they hash, so what runs is what was compiled.
pub fn check(json: Value) -> Result<ProjectDocument, DocumentError> {
    match json.get("dag_json_version").and_then(Value::as_u64) {
        Some(found) if found > DAG_JSON_VERSION => return Err(DocumentError::Newer { found }),
        _ => {}
    }
    let schema: Value = serde_json::from_str(SCHEMA).expect("the dag.json schema is JSON");
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .expect("the dag.json schema is a schema");
    if let Some(error) = validator.iter_errors(&json).next() {
        let at = error.instance_path().to_string();
        let at = if at.is_empty() { "/".to_owned() } else { at };
        return Err(DocumentError::Schema(format!("at {at}: {error}")));
    }
    let source = json["source"]["text"].as_str().unwrap_or_default();
    if json["source"]["sha256"].as_str() != Some(sha256_hex(source.as_bytes()).as_str()) {
        return Err(DocumentError::Altered(
            "source.sha256 is not the source's".into(),
        ));
    }
    for dag in json["dags"].as_array().into_iter().flatten() {
        let mut hashed = dag.clone();
        let recorded = hashed
            .as_object_mut()
            .and_then(|d| d.remove("version_hash"))
            .unwrap_or_default();
        if recorded.as_str() != Some(sha256_hex(canonical_json(&hashed).as_bytes()).as_str()) {
            return Err(DocumentError::Altered(format!(
                "the version_hash of DAG {} is not its content's",
                dag["dag_id"]
            )));
        }
    }
    Ok(ProjectDocument { json })
}

impl ProjectDocument {
    /// The document of one task alone (`leoflow tasks test`): its DAG with only that task, no
    /// upstream tasks and no edge labels, the DAG's version hash computed again. A task mapped
    /// over another task's result cannot run alone and is refused, naming that task.
    pub fn only_task(&self, dag_id: &str, task_id: &str) -> Result<ProjectDocument, String> {
        let mut json = self.json.clone();
        let dags = json["dags"]
            .as_array_mut()
            .expect("a checked document has dags");
        dags.retain(|d| d["dag_id"] == dag_id);
        let dag = dags
            .first_mut()
            .ok_or_else(|| format!("the project has no DAG {dag_id:?}"))?;
        let tasks = dag["tasks"].as_array_mut().expect("a DAG has tasks");
        tasks.retain(|t| t["task_id"] == task_id);
        let task = tasks
            .first_mut()
            .ok_or_else(|| format!("DAG {dag_id:?} has no task {task_id:?}"))?;
        if let Some(upstream) = xcom_source(&task["mapped"]) {
            return Err(format!(
                "task {task_id:?} is mapped over the result of {upstream:?}: it cannot run alone; \
                 run the whole DAG with `leoflow dags test`"
            ));
        }
        task["upstream"] = json!([]);
        let dag = dag.as_object_mut().expect("a DAG is an object");
        dag.remove("edge_labels");
        dag.remove("version_hash");
        let hash = sha256_hex(canonical_json(&Value::Object(dag.clone())).as_bytes());
        dag.insert("version_hash".into(), json!(hash));
        Ok(ProjectDocument { json })
    }
}

/// The task whose result a value refers to (`{"__xcom__": {"task_id", …}}`), at any depth.
fn xcom_source(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => match map.get("__xcom__") {
            Some(reference) => reference["task_id"].as_str().map(str::to_owned),
            None => map.values().find_map(xcom_source),
        },
        Value::Array(items) => items.iter().find_map(xcom_source),
        _ => None,
    }
}

/// Builds the document from the compiler's answer, the source and leoflow.yaml.
pub fn build(
    project: &str,
    file: &str,
    source: &str,
    compiled: Value,
    config: &ProjectConfig,
    config_text: Option<&str>,
) -> Result<ProjectDocument, ConfigError> {
    let source_sha256 = sha256_hex(source.as_bytes());
    let mut dags = match compiled.get("dags") {
        Some(Value::Array(dags)) => dags.clone(),
        _ => Vec::new(),
    };
    if config.dag_id.is_some() && dags.len() > 1 {
        let ids: Vec<&str> = dags.iter().filter_map(|d| d["dag_id"].as_str()).collect();
        return Err(ConfigError {
            line: config_text.and_then(|t| ProjectConfig::task_line(t, "dag_id")),
            message: format!(
                "dag_id renames the project's DAG, but dag.py defines {} DAGs ({}); remove dag_id",
                ids.len(),
                ids.join(", ")
            ),
        });
    }
    for task_id in config.tasks.keys() {
        let known = dags.iter().any(|d| {
            d["tasks"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["task_id"] == task_id.as_str()))
        });
        if !known {
            return Err(ConfigError {
                line: config_text.and_then(|t| ProjectConfig::task_line(t, task_id)),
                message: format!("tasks.{task_id}: dag.py has no task {task_id:?}"),
            });
        }
    }
    let grants = config.grants().map_err(|(role, message)| ConfigError {
        line: config_text.and_then(|t| ProjectConfig::task_line(t, &role)),
        message: format!("access_control.{role}: {message}"),
    })?;
    for dag in &mut dags {
        let mut overrides = Vec::new();
        apply_config(dag, config, &grants, &mut overrides);
        let overrides = collapse(overrides);
        dag["source_sha256"] = json!(source_sha256);
        dag["overrides"] = Value::Array(overrides);
        let hash = sha256_hex(canonical_json(dag).as_bytes());
        dag["version_hash"] = json!(hash);
    }
    Ok(ProjectDocument {
        json: json!({
            "dag_json_version": DAG_JSON_VERSION,
            "project": project,
            "source": {"file": file, "sha256": source_sha256, "text": source},
            "config": {
                "file": config_text.map(|_| "leoflow.yaml"),
                "python_version": config.python_version,
                "dependencies": config.dependencies,
            },
            "dags": dags,
        }),
    })
}

/// One entry per field: what dag.py said first, what leoflow.yaml made of it last.
fn collapse(overrides: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for entry in overrides {
        match out.iter_mut().find(|o| o["field"] == entry["field"]) {
            Some(existing) => existing["leoflow_yaml"] = entry["leoflow_yaml"].clone(),
            None => out.push(entry),
        }
    }
    out
}

/// Sets what leoflow.yaml says, recording each value it changed.
fn apply_config(
    dag: &mut Value,
    config: &ProjectConfig,
    grants: &AccessGrants,
    overrides: &mut Vec<Value>,
) {
    let mut set = |target: &mut Value, path: String, key: &str, value: Value| {
        let before = target.get(key).cloned().unwrap_or(Value::Null);
        if before != value {
            overrides.push(json!({"field": path, "dag_py": before, "leoflow_yaml": value}));
            target[key] = value;
        }
    };
    if let Some(id) = &config.dag_id {
        set(dag, "dag_id".into(), "dag_id", json!(id));
    }
    if let Some(description) = &config.description {
        set(dag, "description".into(), "description", json!(description));
    }
    if let Some(tags) = &config.tags {
        let mut tags = tags.clone();
        tags.sort();
        tags.dedup();
        set(dag, "tags".into(), "tags", json!(tags));
    }
    if let Some(owner) = &config.owner {
        set(dag, "owners".into(), "owners", json!([owner]));
    }
    if !grants.is_empty() {
        set(
            dag,
            "access_control".into(),
            "access_control",
            merged_access(grants, dag.get("access_control")),
        );
    }
    let Some(Value::Array(tasks)) = dag.get_mut("tasks") else {
        return;
    };
    for task in tasks {
        let task_id = task["task_id"].as_str().unwrap_or_default().to_owned();
        // Only tasks that do not say otherwise get the process environment and resources keys.
        for key in ["env", "resources"] {
            if task.get(key).is_none() {
                task[key] = Value::Null;
            }
        }
        if let Some(owner) = &config.owner {
            set(
                task,
                format!("tasks.{task_id}.owner"),
                "owner",
                json!(owner),
            );
        }
        for settings in [Some(&config.defaults), config.tasks.get(&task_id)]
            .into_iter()
            .flatten()
        {
            apply_task_settings(task, &task_id, settings, &mut set);
        }
    }
}

/// The project's grants with dag.py's on top: a role dag.py names gets exactly dag.py's grant,
/// so a DAG can narrow (or, with an empty grant, withdraw) what the project gives a role.
fn merged_access(project: &AccessGrants, dag_py: Option<&Value>) -> Value {
    let mut merged = match json!(project) {
        Value::Object(roles) => roles,
        _ => unreachable!("grants serialize to a JSON object"),
    };
    if let Some(Value::Object(own)) = dag_py {
        merged.extend(own.clone());
    }
    Value::Object(merged)
}

fn apply_task_settings(
    task: &mut Value,
    task_id: &str,
    settings: &TaskSettings,
    set: &mut impl FnMut(&mut Value, String, &str, Value),
) {
    if let Some(retries) = settings.retries {
        set(
            task,
            format!("tasks.{task_id}.retries"),
            "retries",
            json!(retries),
        );
    }
    if let Some(delay) = settings.retry_delay {
        set(
            task,
            format!("tasks.{task_id}.retry_delay"),
            "retry_delay",
            json!(delay.0),
        );
    }
    if let Some(timeout) = settings.timeout {
        set(
            task,
            format!("tasks.{task_id}.execution_timeout"),
            "execution_timeout",
            json!(timeout.0),
        );
    }
    if let Some(env) = &settings.env {
        set(task, format!("tasks.{task_id}.env"), "env", json!(env));
    }
    if let Some(resources) = &settings.resources {
        set(
            task,
            format!("tasks.{task_id}.resources"),
            "resources",
            json!(resources),
        );
    }
    // Only a task whose pod leoflow.yaml sets has the key: every other dag.json (and its
    // version hash) stays as it was before pods had settings.
    if let Some(pod) = &settings.pod {
        set(task, format!("tasks.{task_id}.pod"), "pod", json!(pod));
    }
}

/// JSON with object keys sorted and no whitespace: the form version hashes are taken of.
pub fn canonical_json(value: &Value) -> String {
    serde_json::to_string(&sorted(value)).expect("JSON values serialize")
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled() -> Value {
        json!({"ok": true, "dags": [{
        "dag_id": "etl", "description": null, "tags": ["x"], "owners": ["airflow"],
        "tasks": [
            {"task_id": "extract", "retries": 0, "retry_delay": 300.0, "execution_timeout": null, "owner": "airflow"},
            {"task_id": "load", "retries": 1, "retry_delay": 300.0, "execution_timeout": null, "owner": "airflow"}
        ]}]})
    }

    #[test]
    fn leoflow_yaml_wins_and_the_document_says_so() {
        let text = "dag_id: etl2\ntags: [b, a]\ndefaults:\n  retries: 2\ntasks:\n  load:\n    retries: 5\n    timeout: 60\n";
        let config = ProjectConfig::parse(text).unwrap();
        let doc = build("p", "dag.py", "src", compiled(), &config, Some(text)).unwrap();
        let dag = &doc.dags()[0];
        assert_eq!(dag["dag_id"], "etl2");
        assert_eq!(dag["tags"], json!(["a", "b"]));
        assert_eq!(dag["tasks"][0]["retries"], 2);
        assert_eq!(dag["tasks"][1]["retries"], 5);
        assert_eq!(dag["tasks"][1]["execution_timeout"], 60.0);
        let fields: Vec<&str> = dag["overrides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["field"].as_str().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "dag_id",
                "tags",
                "tasks.extract.retries",
                "tasks.load.retries",
                "tasks.load.execution_timeout"
            ]
        );
        assert_eq!(
            dag["overrides"][3],
            json!({"field": "tasks.load.retries", "dag_py": 1, "leoflow_yaml": 5})
        );
    }

    #[test]
    fn a_task_s_pod_and_limits_reach_dag_json_and_other_tasks_have_no_pod_key() {
        let text = "tasks:\n  load:\n    resources: {cpu: '2', memory: 1Gi, limits: {memory: 2Gi}}\n    \
                    pod:\n      node_selector: {pool: batch}\n      tolerations: [{key: batch, \
                    operator: Exists}]\n      service_account: etl\n";
        let config = ProjectConfig::parse(text).unwrap();
        let doc = build("p", "dag.py", "src", compiled(), &config, Some(text)).unwrap();
        let tasks = &doc.dags()[0]["tasks"];
        assert!(tasks[0].get("pod").is_none(), "{}", tasks[0]);
        assert_eq!(
            tasks[1]["resources"],
            json!({"cpu": "2", "memory": "1Gi", "limits": {"cpu": null, "memory": "2Gi"}})
        );
        assert_eq!(
            tasks[1]["pod"],
            json!({"node_selector": {"pool": "batch"}, "service_account": "etl",
                   "tolerations": [{"key": "batch", "operator": "Exists"}]})
        );
        let wrong =
            ProjectConfig::parse("tasks:\n  load:\n    resources: {limits: {memory: lots}}\n")
                .unwrap_err();
        assert!(wrong.message.contains("resources.limits.memory"), "{wrong}");
        let typo =
            ProjectConfig::parse("tasks:\n  load:\n    pod: {node_selectr: {}}\n").unwrap_err();
        assert!(typo.message.contains("node_selectr"), "{typo}");
    }

    #[test]
    fn unknown_task_in_leoflow_yaml_names_its_line() {
        let text = "tasks:\n  extract:\n    retries: 1\n  trnasform:\n    retries: 2\n";
        let config = ProjectConfig::parse(text).unwrap();
        let err = build("p", "dag.py", "src", compiled(), &config, Some(text)).unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(
            err.message.contains("dag.py has no task \"trnasform\""),
            "{err}"
        );
    }

    #[test]
    fn project_access_control_reaches_every_dag_and_dag_py_wins_per_role() {
        let text = "access_control:\n  team-a: [can_read, can_edit]\n  viewers: [can_read]\n";
        let config = ProjectConfig::parse(text).unwrap();
        let mut guarded = compiled();
        guarded["dags"][0]["access_control"] = json!({"team-a": {"DAG Runs": ["can_create"]}});
        let doc = build("p", "dag.py", "src", guarded, &config, Some(text)).unwrap();
        let dag = &doc.dags()[0];
        assert_eq!(
            dag["access_control"],
            json!({
                "team-a": {"DAG Runs": ["can_create"]},
                "viewers": {"DAGs": ["can_read"]},
            })
        );
        assert_eq!(dag["overrides"][0]["field"], "access_control");
        assert_eq!(
            dag["overrides"][0]["dag_py"],
            json!({"team-a": {"DAG Runs": ["can_create"]}})
        );

        let plain = build(
            "p",
            "dag.py",
            "src",
            compiled(),
            &ProjectConfig::default(),
            None,
        )
        .unwrap();
        assert!(plain.dags()[0].get("access_control").is_none());
    }

    #[test]
    fn the_version_hash_follows_content_and_source() {
        let config = ProjectConfig::default();
        let a = build("p", "dag.py", "src", compiled(), &config, None).unwrap();
        let b = build("p", "dag.py", "src", compiled(), &config, None).unwrap();
        let c = build("p", "dag.py", "src changed", compiled(), &config, None).unwrap();
        assert_eq!(a.dags()[0]["version_hash"], b.dags()[0]["version_hash"]);
        assert_ne!(a.dags()[0]["version_hash"], c.dags()[0]["version_hash"]);
        assert_eq!(
            canonical_json(&json!({"b": 1, "a": [{"d": 1, "c": 2}]})),
            r#"{"a":[{"c":2,"d":1}],"b":1}"#
        );
    }
}
