//! `leoflow.yaml`: project settings that win over what dag.py says.
//!
//! ```yaml
//! dag_file: my_dag.py           # the DAG file, when not dag.py nor the only *.py file
//! dag_id: hello                  # renames the DAG (single-DAG projects)
//! description: Says hello
//! owner: data-team               # every task's owner
//! tags: [example]
//! python_version: "3.11"
//! dependencies: ["requests>=2"]  # installed into the project's venv
//! defaults:                      # every task
//!   retries: 2
//!   retry_delay: 30s
//!   timeout: 10m
//!   env: {LOG_LEVEL: info}
//!   resources: {cpu: 500m, memory: 256Mi}   # requests; the memory also its limit
//!   pod:                         # Pro's task pods (on top of the server's pod defaults)
//!     node_selector: {pool: batch}
//!     tolerations: [{key: batch, operator: Exists, effect: NoSchedule}]
//!     service_account: etl-runner
//! tasks:
//!   load:                        # one task (its full id, group prefix included)
//!     retries: 5
//! access_control:                # per-DAG access on every DAG of the project
//!   team-a: [can_read]           # Airflow 2's spelling: actions on the DAG
//!   ops: {DAGs: [can_read], DAG Runs: [can_create]}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// A validation failure, with the line of leoflow.yaml it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "leoflow.yaml:{line}: {}", self.message),
            None => write!(f, "leoflow.yaml: {}", self.message),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The project's DAG file, when it is not dag.py and not the project's only `*.py` file
    /// (see [`crate::project::dag_file`]).
    pub dag_file: Option<String>,
    /// Renames the project's DAG.
    pub dag_id: Option<String>,
    /// The DAG's description.
    pub description: Option<String>,
    /// Owner of every task.
    pub owner: Option<String>,
    /// The DAG's tags (replacing dag.py's).
    pub tags: Option<Vec<String>>,
    /// Python version the project's tasks run on (`"3.11"`).
    pub python_version: Option<String>,
    /// pip requirements of the project's tasks.
    #[serde(default)]
    pub dependencies: Vec<String>,
    /// Settings for every task.
    #[serde(default)]
    pub defaults: TaskSettings,
    /// Settings for single tasks, by task id.
    #[serde(default)]
    pub tasks: BTreeMap<String, TaskSettings>,
    /// Per-DAG access for every DAG of the project, by role; a role dag.py's own
    /// `access_control` names keeps dag.py's grant.
    #[serde(default)]
    pub access_control: BTreeMap<String, RoleGrant>,
}

/// What leoflow.yaml grants one role, in either of Airflow's spellings of `access_control`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RoleGrant {
    /// `[can_read, can_edit]`: actions on the DAG (Airflow 2's spelling).
    Actions(Vec<String>),
    /// `{DAGs: [can_read], DAG Runs: [can_create]}`.
    Resources(BTreeMap<String, Vec<String>>),
}

impl<'de> Deserialize<'de> for RoleGrant {
    // By hand rather than `untagged`, whose error names no spelling.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Spellings;
        impl<'de> serde::de::Visitor<'de> for Spellings {
            type Value = RoleGrant;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of actions ([can_read, can_edit]) or resources with their actions \
                     ({DAGs: [can_read], DAG Runs: [can_create]})",
                )
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<RoleGrant, A::Error> {
                Deserialize::deserialize(serde::de::value::SeqAccessDeserializer::new(seq))
                    .map(RoleGrant::Actions)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RoleGrant, A::Error> {
                Deserialize::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RoleGrant::Resources)
            }
        }
        deserializer.deserialize_any(Spellings)
    }
}

/// The actions `access_control` may grant on each per-DAG resource, as Airflow's FAB names them.
const ACCESS_ACTIONS: [(&str, &[&str]); 2] = [
    ("DAGs", &["can_read", "can_edit", "can_delete"]),
    ("DAG Runs", &["can_read", "can_create", "can_delete"]),
];

/// `access_control` as dag.json spells it: role → resource → actions, sorted; a resource
/// granted nothing is left out.
pub type AccessGrants = BTreeMap<String, BTreeMap<&'static str, BTreeSet<&'static str>>>;

impl RoleGrant {
    /// The grant by resource, or what is wrong with it.
    fn normalized(&self) -> Result<BTreeMap<&'static str, BTreeSet<&'static str>>, String> {
        let by_resource: Vec<(&str, &[String])> = match self {
            RoleGrant::Actions(actions) => vec![("DAGs", actions)],
            RoleGrant::Resources(resources) => resources
                .iter()
                .map(|(resource, actions)| (resource.as_str(), actions.as_slice()))
                .collect(),
        };
        let mut grant = BTreeMap::new();
        for (resource, actions) in by_resource {
            let Some((resource, allowed)) = ACCESS_ACTIONS.iter().find(|(r, _)| *r == resource)
            else {
                return Err(format!(
                    "unknown resource {resource:?}; per-DAG access grants on \"DAGs\" and \"DAG Runs\""
                ));
            };
            let mut granted = BTreeSet::new();
            for action in actions {
                let Some(action) = allowed.iter().find(|a| **a == action) else {
                    return Err(format!(
                        "{resource}: {action:?} is not an action on {resource}; use {}",
                        allowed.join(", ")
                    ));
                };
                granted.insert(*action);
            }
            if !granted.is_empty() {
                grant.insert(*resource, granted);
            }
        }
        Ok(grant)
    }
}

/// What leoflow.yaml may set on a task.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSettings {
    /// `retries`.
    pub retries: Option<u32>,
    /// `retry_delay`.
    pub retry_delay: Option<Duration>,
    /// `execution_timeout`.
    pub timeout: Option<Duration>,
    /// Environment variables for the task's process.
    pub env: Option<BTreeMap<String, String>>,
    /// Resources for the task's pod (Pro) or process.
    pub resources: Option<Resources>,
    /// Where and how the task's pod runs (Pro's pod executor; Lite's subprocesses ignore it).
    pub pod: Option<PodSettings>,
}

/// CPU and memory, in Kubernetes notation: what the task's pod requests, and (unless `limits`
/// says otherwise) its memory limit too. No CPU limit unless asked: throttling slows tasks
/// rather than protecting the node.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU, e.g. `500m` or `2`.
    pub cpu: Option<String>,
    /// Memory, e.g. `256Mi` or `1Gi`.
    pub memory: Option<String>,
    /// Limits other than the requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

/// A pod's limits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// CPU, e.g. `1`.
    pub cpu: Option<String>,
    /// Memory, e.g. `1Gi`.
    pub memory: Option<String>,
}

/// A task pod's scheduling and identity: these keys in snake case, `tolerations` and
/// `affinity` as Kubernetes writes them. Each key set here replaces the server's default of
/// that key; labels and annotations are merged with them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PodSettings {
    /// The pod's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// `nodeSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// `tolerations`, as Kubernetes writes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// `affinity`, as Kubernetes writes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<serde_json::Map<String, serde_json::Value>>,
    /// Labels of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A duration: seconds, or text such as `90s`, `5m`, `1h30m`, `2d`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "f64")]
pub struct Duration(pub f64);

impl From<Duration> for f64 {
    fn from(d: Duration) -> f64 {
        d.0
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(f64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(s) if s >= 0.0 && s.is_finite() => Ok(Duration(s)),
            Raw::Seconds(s) => Err(serde::de::Error::custom(format!(
                "a duration must be a positive number of seconds, not {s}"
            ))),
            Raw::Text(text) => parse_duration(&text)
                .map(Duration)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `90`, `90s`, `5m`, `1h30m`, `2d`.
pub fn parse_duration(text: &str) -> Result<f64, String> {
    let bad =
        || format!("{text:?} is not a duration; write seconds (90) or e.g. 90s, 5m, 1h30m, 2d");
    let text = text.trim();
    if let Ok(seconds) = text.parse::<f64>() {
        return if seconds >= 0.0 {
            Ok(seconds)
        } else {
            Err(bad())
        };
    }
    let mut total = 0.0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() || text.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

impl ProjectConfig {
    /// Parses and validates leoflow.yaml's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let config: ProjectConfig = serde_norway::from_str(text).map_err(|e| ConfigError {
            line: e.location().map(|l| l.line()),
            message: e
                .to_string()
                .split(" at line ")
                .next()
                .unwrap_or_default()
                .to_owned(),
        })?;
        config.validate(text)?;
        Ok(config)
    }

    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        let at = |key: &str, message: String| ConfigError {
            line: line_of(text, key),
            message,
        };
        if let Some(id) = &self.dag_id
            && !valid_id(id)
        {
            return Err(at(
                "dag_id",
                format!(
                    "dag_id {id:?} may only contain letters, digits, dashes, dots and underscores"
                ),
            ));
        }
        if let Some(version) = &self.python_version {
            let ok = version.strip_prefix("3.").is_some_and(|minor| {
                !minor.is_empty() && minor.chars().all(|c| c.is_ascii_digit())
            });
            if !ok {
                return Err(at(
                    "python_version",
                    format!("python_version {version:?} must look like \"3.11\""),
                ));
            }
        }
        for dependency in &self.dependencies {
            if dependency.trim().is_empty() || dependency.contains(['\n', ';']) {
                return Err(at(
                    "dependencies",
                    format!(
                        "dependency {dependency:?} is not a pip requirement such as \"requests>=2\""
                    ),
                ));
            }
        }
        if let Some(tags) = &self.tags
            && tags.iter().any(|t| t.trim().is_empty())
        {
            return Err(at("tags", "tags must not be empty strings".to_owned()));
        }
        if let Err((role, message)) = self.grants() {
            return Err(ConfigError {
                line: line_of(text, &role).or_else(|| line_of(text, "access_control")),
                message: format!("access_control.{role}: {message}"),
            });
        }
        for (name, settings) in std::iter::once(("defaults", &self.defaults))
            .chain(self.tasks.iter().map(|(k, v)| (k.as_str(), v)))
        {
            if let Some(resources) = &settings.resources {
                check_resources(resources)
                    .map_err(|message| at(name, format!("{name}: {message}")))?;
            }
        }
        Ok(())
    }

    /// The project-wide `access_control`, as dag.json spells it, or the role whose grant is
    /// wrong and what is wrong with it ([`ProjectConfig::parse`] has refused that already).
    pub fn grants(&self) -> Result<AccessGrants, (String, String)> {
        self.access_control
            .iter()
            .map(|(role, grant)| {
                if role.trim().is_empty() {
                    return Err((role.clone(), "a role must be a non-empty name".to_owned()));
                }
                let grant = grant
                    .normalized()
                    .map_err(|message| (role.clone(), message))?;
                Ok((role.clone(), grant))
            })
            .collect()
    }

    /// The line where `tasks.<task_id>` is written, for errors about it.
    pub fn task_line(text: &str, task_id: &str) -> Option<usize> {
        line_of(text, task_id)
    }
}

fn check_resources(resources: &Resources) -> Result<(), String> {
    let limits = resources.limits.clone().unwrap_or_default();
    for (cpu, memory, prefix) in [
        (&resources.cpu, &resources.memory, "resources"),
        (&limits.cpu, &limits.memory, "resources.limits"),
    ] {
        check_quantity(cpu.as_deref(), is_cpu, "cpu", "500m or 2")
            .and_then(|()| check_quantity(memory.as_deref(), is_memory, "memory", "256Mi or 1Gi"))
            .map_err(|message| message.replacen("resources", prefix, 1))?;
    }
    Ok(())
}

fn check_quantity(
    value: Option<&str>,
    valid: fn(&str) -> bool,
    what: &str,
    example: &str,
) -> Result<(), String> {
    match value {
        Some(v) if !valid(v) => Err(format!(
            "resources.{what} {v:?} is not a quantity such as {example}"
        )),
        _ => Ok(()),
    }
}

fn is_cpu(v: &str) -> bool {
    let digits = v.strip_suffix('m').unwrap_or(v);
    !digits.is_empty() && digits.parse::<f64>().is_ok_and(|n| n > 0.0)
}

fn is_memory(v: &str) -> bool {
    let units = ["Ki", "Mi", "Gi", "Ti", "K", "M", "G", "T"];
    let digits = units.iter().find_map(|u| v.strip_suffix(u)).unwrap_or(v);
    !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit())
}

/// Whether an id uses Airflow's allowed characters.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 250
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// The first line whose key (before `:`) is `key`.
fn line_of(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            let trimmed = line.trim_start().trim_start_matches("- ");
            trimmed
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
                || trimmed
                    .strip_prefix(&format!("\"{key}\""))
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let config = ProjectConfig::parse(
            "dag_id: hello\nowner: ana\ntags: [a]\npython_version: \"3.11\"\ndependencies: [\"requests>=2\"]\n\
             defaults:\n  retries: 2\n  retry_delay: 30s\n  timeout: 1h30m\n  resources: {cpu: 500m, memory: 256Mi}\n\
             tasks:\n  load:\n    retries: 5\n    env: {A: b}\n",
        )
        .unwrap();
        assert_eq!(config.defaults.retry_delay, Some(Duration(30.0)));
        assert_eq!(config.defaults.timeout, Some(Duration(5400.0)));
        assert_eq!(config.tasks["load"].retries, Some(5));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_line() {
        let err = ProjectConfig::parse("dag_id: a\nretries: 3\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("unknown field `retries`"), "{err}");

        let err = ProjectConfig::parse("defaults:\n  retry_delay: soon\n").unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("not a duration"), "{err}");

        let err = ProjectConfig::parse("python_version: 2.7\n").unwrap_err();
        assert!(err.to_string().starts_with("leoflow.yaml:1:"), "{err}");

        let err = ProjectConfig::parse("tasks:\n  t:\n    resources: {cpu: lots}\n").unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("resources.cpu"), "{err}");

        let err = ProjectConfig::parse("dag_id: [unclosed\n").unwrap_err();
        assert!(err.line.is_some(), "{err}");
    }

    #[test]
    fn access_control_takes_both_spellings() {
        let config = ProjectConfig::parse(
            "access_control:\n  team-a: [can_read, can_edit]\n  \"ops\":\n    DAGs: [can_read]\n    DAG Runs: [can_delete, can_create]\n  nobody: []\n",
        )
        .unwrap();
        let grants = config.grants().unwrap();
        let actions = |role: &str, resource: &str| -> Vec<&str> {
            grants[role][resource].iter().copied().collect()
        };
        assert_eq!(actions("team-a", "DAGs"), ["can_edit", "can_read"]);
        assert!(!grants["team-a"].contains_key("DAG Runs"));
        assert_eq!(actions("ops", "DAG Runs"), ["can_create", "can_delete"]);
        assert!(grants["nobody"].is_empty(), "a role may be granted nothing");
    }

    #[test]
    fn bad_access_control_names_the_role_resource_and_action() {
        let refused = |text: &str| ProjectConfig::parse(text).unwrap_err();

        let err = refused("owner: ana\naccess_control:\n  team-a: [can_read, can_trigger]\n");
        assert_eq!(err.line, Some(3), "{err}");
        assert_eq!(
            err.message,
            "access_control.team-a: DAGs: \"can_trigger\" is not an action on DAGs; use can_read, can_edit, can_delete"
        );

        let err = refused("access_control:\n  team-a:\n    DAG Runs: [can_edit]\n");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(
            err.message.starts_with(
                "access_control.team-a: DAG Runs: \"can_edit\" is not an action on DAG Runs"
            ),
            "{err}"
        );

        let err = refused("access_control:\n  team-a: {DAGs: [can_create]}\n");
        assert!(
            err.message
                .contains("\"can_create\" is not an action on DAGs"),
            "{err}"
        );

        let err = refused("access_control:\n  team-a: {Task Instances: [can_read]}\n");
        assert!(
            err.message
                .contains("access_control.team-a: unknown resource \"Task Instances\""),
            "{err}"
        );

        let err = refused("access_control:\n  team-a: can_read\n");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.message.contains("access_control.team-a"), "{err}");
        assert!(err.message.contains("a list of actions"), "{err}");

        let err = refused("access_control:\n  \"\": [can_read]\n");
        assert_eq!(err.line, Some(2), "{err}");
        assert!(
            err.message.contains("a role must be a non-empty name"),
            "{err}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(90.0));
        assert_eq!(parse_duration("2d1h"), Ok(176_400.0));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-3").is_err());
    }
}
