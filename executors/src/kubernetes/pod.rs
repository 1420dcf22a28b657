//! The objects of one attempt: its pod and the Secret holding its token, their names and
//! labels, and what leoflow.yaml and the server's defaults say about the pod.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Affinity, Container, EnvVar, EnvVarSource, HostPathVolumeSource, KeyToPath, Pod, PodSpec,
    ResourceRequirements, Secret, SecretKeySelector, SecretVolumeSource, Toleration, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use leoflow_events::AttemptDigest;
use serde_json::Value;
use uuid::Uuid;

use super::PodConfig;
use crate::command::{AgentCommand, TOKEN_ENV};
use crate::{Attempt, AttemptKey};

/// Label every pod and Secret of this executor carries; the watcher selects on it.
pub(super) const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub(super) const MANAGED_BY: &str = "leoflow";
/// Label holding the attempt id (a digest of the attempt token, see [`attempt_id`]).
pub(super) const ATTEMPT_LABEL: &str = "leoflow.io/attempt";
/// Annotation with the digest of the attempt token, as the log records it: what a scheduler
/// adopting the pod after a restart or a change of leader needs, without the token.
pub(super) const DIGEST_ANNOTATION: &str = "leoflow.io/attempt-digest";
/// Label (sanitized) and annotation (exact) with the DAG id.
pub(super) const DAG_ID_KEY: &str = "leoflow.io/dag-id";
/// Label (sanitized) and annotation (exact) with the task id.
pub(super) const TASK_ID_KEY: &str = "leoflow.io/task-id";
/// Label and annotation with the try number.
pub(super) const TRY_NUMBER_KEY: &str = "leoflow.io/try-number";
/// Label (sanitized) and annotation (exact) with the tenant owning the DAG.
const TENANT_KEY: &str = "leoflow.io/tenant";
/// Annotation with the dag run id.
pub(super) const RUN_ID_ANNOTATION: &str = "leoflow.io/run-id";
/// Annotation with the map index.
pub(super) const MAP_INDEX_ANNOTATION: &str = "leoflow.io/map-index";

/// The pod's one container.
pub(super) const AGENT_CONTAINER: &str = "agent";
/// The key of the attempt's Secret holding the token.
const TOKEN_KEY: &str = "token";
/// The key of the attempt's Secret holding the CA agents verify the control plane with.
const CA_KEY: &str = "ca.crt";
/// Where the container sees the CA.
const CA_DIR: &str = "/var/run/leoflow/agent-tls";
/// The agent's variable naming its CA file (see the agent's TLS settings).
const CA_ENV: &str = "LEOFLOW_AGENT_CA_FILE";
/// Seconds a pod may run past its task's `execution_timeout` before Kubernetes ends it: the
/// agent and the scheduler time tries out first; this only backs them up when neither can.
const DEADLINE_MARGIN_SECONDS: f64 = 300.0;
/// Namespace of the version-5 UUIDs that [`attempt_id`] derives.
const ATTEMPT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6f66_6c6f_4a77_9f3e_2b1d_0c8a_7e55);

/// What every task pod gets unless its task's leoflow.yaml says otherwise (the server's
/// `kubernetes.pod_defaults`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodDefaults {
    /// The pods' service account.
    pub service_account: Option<String>,
    /// `nodeSelector`.
    pub node_selector: BTreeMap<String, String>,
    /// `tolerations`.
    pub tolerations: Vec<Toleration>,
    /// `affinity`.
    pub affinity: Option<Affinity>,
    /// Labels of every pod (Leoflow's own labels win on a clash).
    pub labels: BTreeMap<String, String>,
    /// Annotations of every pod (Leoflow's own win on a clash).
    pub annotations: BTreeMap<String, String>,
    /// Requests and limits of tasks whose leoflow.yaml sets no `resources`.
    pub resources: Option<ResourceRequirements>,
}

impl PodDefaults {
    /// The server's `kubernetes.pod_defaults` (snake-case keys; tolerations, affinity and
    /// resources as Kubernetes writes them), or what is wrong with them.
    pub fn parse(value: Value) -> Result<Self, String> {
        if value.is_null() {
            return Ok(Self::default());
        }
        let raw: PodDefaultsFile = typed(value)?;
        Ok(Self {
            service_account: raw.service_account,
            node_selector: raw.node_selector,
            tolerations: raw.tolerations,
            affinity: raw.affinity,
            labels: raw.labels,
            annotations: raw.annotations,
            resources: raw.resources,
        })
    }
}

/// `kubernetes.pod_defaults` as the server's configuration writes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PodDefaultsFile {
    service_account: Option<String>,
    #[serde(default)]
    node_selector: BTreeMap<String, String>,
    #[serde(default)]
    tolerations: Vec<Toleration>,
    affinity: Option<Affinity>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    resources: Option<ResourceRequirements>,
}

/// The attempt id of a token's digest: names the attempt in labels and the pod name without
/// revealing the token, and is known to a scheduler that has only the log.
pub fn attempt_id(digest: &AttemptDigest) -> String {
    Uuid::new_v5(&ATTEMPT_ID_NAMESPACE, digest.as_str().as_bytes()).to_string()
}

/// The pod name of `attempt`: DNS-1123 label (lowercase, at most 63 characters) from the
/// DAG, task and try, with the first 8 hex digits of the attempt id so that it is unique per
/// attempt and the same on every call. The attempt's Secret has the same name.
pub fn pod_name(attempt: &AttemptKey) -> String {
    let id = attempt_id(&attempt.digest);
    let suffix = format!("{}-{}", attempt.try_number, &id[..8]);
    // Room for the DAG and task parts, less the two dashes around them.
    let budget = 63 - suffix.len() - 2;
    let dag = dns_part(&attempt.ti.dag_id, "dag");
    let task = dns_part(&attempt.ti.task_id, "task");
    // Each part gets at least half of the room, and whatever the other leaves.
    let task_len = task
        .len()
        .min((budget / 2).max(budget.saturating_sub(dag.len())));
    let dag_len = dag.len().min(budget - task_len);
    let dag = dag[..dag_len].trim_end_matches('-');
    let task = task[..task_len].trim_end_matches('-');
    format!("{dag}-{task}-{suffix}")
}

/// `id` lowercased, with runs of anything but `[a-z0-9]` as one dash, trimmed of dashes.
fn dns_part(id: &str, fallback: &str) -> String {
    let mut part = String::with_capacity(id.len());
    for c in id.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            part.push(c);
        } else if !part.is_empty() && !part.ends_with('-') {
            part.push('-');
        }
    }
    let part = part.trim_end_matches('-');
    if part.is_empty() {
        fallback.to_owned()
    } else {
        part.to_owned()
    }
}

/// `value` as a valid label value: at most 63 of `[A-Za-z0-9._-]`, starting and ending
/// alphanumeric (other characters become `_`). The exact value goes in an annotation.
pub(super) fn label_value(value: &str) -> String {
    let mapped: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let not_alphanumeric = |c: char| !c.is_ascii_alphanumeric();
    let trimmed = mapped.trim_matches(not_alphanumeric);
    // All ASCII by now, so any byte index is a character boundary.
    trimmed[..trimmed.len().min(63)]
        .trim_end_matches(not_alphanumeric)
        .to_owned()
}

/// The labels that tie an object to its attempt.
fn attempt_labels(attempt: &Attempt) -> BTreeMap<String, String> {
    let ti = &attempt.ti;
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (DAG_ID_KEY.to_owned(), label_value(&ti.dag_id)),
        (TASK_ID_KEY.to_owned(), label_value(&ti.task_id)),
        (TRY_NUMBER_KEY.to_owned(), attempt.try_number.to_string()),
        (ATTEMPT_LABEL.to_owned(), attempt_id(&attempt.key().digest)),
        (
            TENANT_KEY.to_owned(),
            label_value(&attempt.placement.tenant),
        ),
    ])
}

/// The Secret holding `attempt`'s token (and the agents' CA, when the channel is TLS): the
/// pod reads them from it, so neither is ever a literal of the pod's spec.
pub(super) fn secret_for(config: &PodConfig, attempt: &Attempt, namespace: &str) -> Secret {
    let name = pod_name(&attempt.key());
    let labels = attempt_labels(attempt);
    token_secret(config, &name, namespace, labels, &attempt.attempt_token)
}

/// The Secret `name` holding `token` (and the agents' CA, when the channel is TLS).
fn token_secret(
    config: &PodConfig,
    name: &str,
    namespace: &str,
    labels: BTreeMap<String, String>,
    token: &Uuid,
) -> Secret {
    let mut data = BTreeMap::from([(
        TOKEN_KEY.to_owned(),
        ByteString(token.to_string().into_bytes()),
    )]);
    if let Some(ca) = &config.agent_ca {
        data.insert(CA_KEY.to_owned(), ByteString(ca.clone().into_bytes()));
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        data: Some(data),
        immutable: Some(true),
        type_: Some("Opaque".into()),
        ..Secret::default()
    }
}

/// A task's `pod` or `resources` setting that is not what Kubernetes takes.
#[derive(Debug, thiserror::Error)]
#[error("task {task_id}'s {key} in leoflow.yaml is not valid for a pod: {detail}")]
pub(super) struct SettingError {
    task_id: String,
    key: String,
    detail: String,
}

/// The pod that runs `attempt` in `namespace`.
pub(super) fn pod_for(
    config: &PodConfig,
    attempt: &Attempt,
    namespace: &str,
) -> Result<Pod, SettingError> {
    let name = pod_name(&attempt.key());
    let image = attempt
        .placement
        .image
        .clone()
        .unwrap_or_else(|| config.image.clone());
    let mut settings = TaskPod::of(attempt)?;
    settings.labels.extend(attempt_labels(attempt));
    settings.annotations.extend(attempt_annotations(attempt));
    let mut pod = agent_pod(
        config,
        (&name, namespace, &image),
        AgentCommand::new(&config.agent, attempt),
        settings,
    );
    if let Some(spec) = pod.spec.as_mut() {
        spec.active_deadline_seconds = attempt
            .placement
            .execution_timeout
            .map(|seconds| (seconds + DEADLINE_MARGIN_SECONDS).ceil() as i64);
    }
    Ok(pod)
}

/// A pod `(name, namespace, image)` whose one container runs `agent` (reading its token from
/// the Secret `name`), with what `settings` says over the server's pod defaults (labels and
/// annotations merged, the settings' winning).
fn agent_pod(
    config: &PodConfig,
    (name, namespace, image): (&str, &str, &str),
    agent: AgentCommand,
    settings: TaskPod,
) -> Pod {
    let defaults = &config.defaults;
    let (volumes, mounts) = volumes(config, name);
    let mut labels = defaults.labels.clone();
    labels.extend(settings.labels);
    let mut annotations = defaults.annotations.clone();
    annotations.extend(settings.annotations);
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            service_account_name: settings
                .service_account
                .or_else(|| defaults.service_account.clone()),
            node_selector: settings
                .node_selector
                .or_else(|| Some(defaults.node_selector.clone()))
                .filter(|selector| !selector.is_empty()),
            tolerations: settings
                .tolerations
                .or_else(|| Some(defaults.tolerations.clone()))
                .filter(|tolerations| !tolerations.is_empty()),
            affinity: settings.affinity.or_else(|| defaults.affinity.clone()),
            containers: vec![Container {
                name: AGENT_CONTAINER.into(),
                image: Some(image.to_owned()),
                command: Some(vec![agent.program.to_string_lossy().into_owned()]),
                args: Some(agent.args),
                env: Some(agent_env(agent.env, name, config.agent_ca.is_some())),
                resources: settings.resources.or_else(|| defaults.resources.clone()),
                volume_mounts: (!mounts.is_empty()).then_some(mounts),
                // An agent that dies before reporting leaves the end of its output as the
                // termination message, the way the subprocess adapter keeps its stderr tail.
                termination_message_policy: Some("FallbackToLogsOnError".into()),
                ..Container::default()
            }],
            volumes: (!volumes.is_empty()).then_some(volumes),
            ..PodSpec::default()
        }),
        status: None,
    }
}

/// The node's folders (see [`host_volumes`]) and, when the agent channel is TLS, the CA from
/// the Secret `secret`.
fn volumes(config: &PodConfig, secret: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    let (mut volumes, mut mounts) = host_volumes(config);
    if config.agent_ca.is_some() {
        volumes.push(Volume {
            name: "agent-tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.to_owned()),
                items: Some(vec![KeyToPath {
                    key: CA_KEY.into(),
                    path: CA_KEY.into(),
                    ..KeyToPath::default()
                }]),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "agent-tls".into(),
            mount_path: CA_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

/// Label of a triggerer pod and its Secret: a digest of its image (one triggerer per image
/// and namespace), which finds a predecessor's pods to replace.
pub(super) const TRIGGERER_LABEL: &str = "leoflow.io/triggerer";

/// The label value of the triggerer of `image`: the first 16 hex digits of the name-based
/// (version 5) UUID of the image's name, the same on every scheduler.
pub(super) fn triggerer_label(image: &str) -> String {
    let id = Uuid::new_v5(&ATTEMPT_ID_NAMESPACE, image.as_bytes()).simple();
    id.to_string()[..16].to_owned()
}

/// The pod that runs the triggerer of `image` in `namespace` (`leoflow triggerer`, calling
/// the scheduler with the token of the Secret `name`), with the pods' defaults.
pub(super) fn triggerer_pod(config: &PodConfig, name: &str, namespace: &str, image: &str) -> Pod {
    let settings = TaskPod {
        labels: triggerer_labels(image),
        annotations: BTreeMap::from([(TRIGGERER_LABEL.to_owned(), image.to_owned())]),
        ..TaskPod::default()
    };
    let command = AgentCommand::triggerer(&config.agent);
    agent_pod(config, (name, namespace, image), command, settings)
}

/// The Secret `name` of a triggerer pod of `image`, holding its `token`.
pub(super) fn triggerer_secret(
    config: &PodConfig,
    name: &str,
    namespace: &str,
    image: &str,
    token: &Uuid,
) -> Secret {
    token_secret(config, name, namespace, triggerer_labels(image), token)
}

fn triggerer_labels(image: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (TRIGGERER_LABEL.to_owned(), triggerer_label(image)),
    ])
}

/// The exact ids of the attempt, for people and for adopting the pod after a restart.
fn attempt_annotations(attempt: &Attempt) -> BTreeMap<String, String> {
    let ti = &attempt.ti;
    BTreeMap::from([
        (DAG_ID_KEY.to_owned(), ti.dag_id.clone()),
        (RUN_ID_ANNOTATION.to_owned(), ti.run_id.clone()),
        (TASK_ID_KEY.to_owned(), ti.task_id.clone()),
        (MAP_INDEX_ANNOTATION.to_owned(), ti.map_index.to_string()),
        (TRY_NUMBER_KEY.to_owned(), attempt.try_number.to_string()),
        (TENANT_KEY.to_owned(), attempt.placement.tenant.clone()),
        (
            DIGEST_ANNOTATION.to_owned(),
            attempt.key().digest.as_str().to_owned(),
        ),
    ])
}

/// The agent's environment in the pod: the token from the attempt's Secret, the CA at its
/// mount, the rest as the agent command has it.
fn agent_env(
    env: Vec<(&'static str, std::ffi::OsString)>,
    secret: &str,
    with_ca: bool,
) -> Vec<EnvVar> {
    let from_secret = |name: &str| EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: TOKEN_KEY.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let mut vars: Vec<EnvVar> = env
        .into_iter()
        .filter(|(name, _)| *name != CA_ENV)
        .map(|(name, value)| {
            if name == TOKEN_ENV || name == crate::triggerer_link::TOKEN_ENV {
                return from_secret(name);
            }
            EnvVar {
                name: name.to_owned(),
                value: Some(value.to_string_lossy().into_owned()),
                ..EnvVar::default()
            }
        })
        .collect();
    if with_ca {
        vars.push(EnvVar {
            name: CA_ENV.into(),
            value: Some(format!("{CA_DIR}/{CA_KEY}")),
            ..EnvVar::default()
        });
    }
    vars
}

/// The node's folders mounted read-only at the same path (Lite's k3d nodes mount the host's
/// binary, SDK and project).
fn host_volumes(config: &PodConfig) -> (Vec<Volume>, Vec<VolumeMount>) {
    config
        .host_paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let name = format!("host-{i}");
            let path = path.to_string_lossy().into_owned();
            let volume = Volume {
                name: name.clone(),
                host_path: Some(HostPathVolumeSource {
                    path: path.clone(),
                    type_: None,
                }),
                ..Volume::default()
            };
            let mount = VolumeMount {
                name,
                mount_path: path,
                read_only: Some(true),
                ..VolumeMount::default()
            };
            (volume, mount)
        })
        .unzip()
}

/// What a task's leoflow.yaml says of its pod, in Kubernetes' types.
#[derive(Default)]
struct TaskPod {
    service_account: Option<String>,
    node_selector: Option<BTreeMap<String, String>>,
    tolerations: Option<Vec<Toleration>>,
    affinity: Option<Affinity>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    resources: Option<ResourceRequirements>,
}

impl TaskPod {
    fn of(attempt: &Attempt) -> Result<Self, SettingError> {
        let placement = &attempt.placement;
        let error = |key: &str, detail: String| SettingError {
            task_id: attempt.ti.task_id.clone(),
            key: key.to_owned(),
            detail,
        };
        let mut task = TaskPod {
            resources: match &placement.resources {
                Some(resources) => {
                    resource_requirements(resources).map_err(|detail| error("resources", detail))?
                }
                None => None,
            },
            ..TaskPod::default()
        };
        let Some(pod) = placement.pod.as_ref().filter(|pod| !pod.is_null()) else {
            return Ok(task);
        };
        // Each key's value as Kubernetes writes it (tolerations and affinity in camelCase).
        let field = |key: &'static str| {
            let value = pod.get(key).filter(|v| !v.is_null()).cloned();
            let error = move |detail| error(&format!("pod.{key}"), detail);
            (value, error)
        };
        task.service_account = optional(field("service_account"))?;
        task.node_selector = optional(field("node_selector"))?;
        task.tolerations = optional(field("tolerations"))?;
        task.affinity = optional(field("affinity"))?;
        task.labels = optional(field("labels"))?.unwrap_or_default();
        task.annotations = optional(field("annotations"))?.unwrap_or_default();
        Ok(task)
    }
}

/// A setting's value, if set, in its Kubernetes type.
fn optional<T: serde::de::DeserializeOwned>(
    (value, error): (Option<Value>, impl FnOnce(String) -> SettingError),
) -> Result<Option<T>, SettingError> {
    value.map(typed).transpose().map_err(error)
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|error| error.to_string())
}

/// leoflow.yaml's `resources` (`{cpu, memory, limits: {cpu, memory}}`) as a container's:
/// the requests as written, the memory also the limit unless `limits` says otherwise, and no
/// CPU limit unless asked (throttling slows a task rather than protecting the node).
fn resource_requirements(resources: &Value) -> Result<Option<ResourceRequirements>, String> {
    if resources.is_null() {
        return Ok(None);
    }
    let quantity = |value: &Value, key: &str| -> Result<Option<Quantity>, String> {
        match value.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(Quantity(text.clone()))),
            Some(other) => Err(format!(
                "{key} must be a quantity such as \"1Gi\", not {other}"
            )),
        }
    };
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    for key in ["cpu", "memory"] {
        if let Some(q) = quantity(resources, key)? {
            requests.insert(key.to_owned(), q);
        }
    }
    let stated = resources.get("limits").filter(|l| !l.is_null());
    match stated {
        Some(stated) => {
            for key in ["cpu", "memory"] {
                if let Some(q) = quantity(stated, key)? {
                    limits.insert(key.to_owned(), q);
                }
            }
        }
        None => {
            if let Some(memory) = requests.get("memory") {
                limits.insert("memory".to_owned(), memory.clone());
            }
        }
    }
    let nonempty = |map: BTreeMap<String, Quantity>| (!map.is_empty()).then_some(map);
    Ok(Some(ResourceRequirements {
        requests: nonempty(requests),
        limits: nonempty(limits),
        ..ResourceRequirements::default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leoflow_events::TaskInstanceKey;
    use serde_json::json;

    fn attempt(dag_id: &str, task_id: &str, try_number: i32) -> AttemptKey {
        Attempt {
            ti: TaskInstanceKey::new(dag_id, "run", task_id),
            try_number,
            attempt_token: Uuid::new_v4(),
            trace_parent: None,
            placement: Default::default(),
        }
        .key()
    }

    fn is_dns_label(name: &str) -> bool {
        name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    #[test]
    fn pod_names_are_dns_labels_unique_per_attempt() {
        let long = "X".repeat(200);
        for (dag, task) in [
            ("etl", "load"),
            ("My_DAG", "Extract.Step_1"),
            ("___", "%%%"),
            (long.as_str(), "t"),
            ("d", long.as_str()),
            (long.as_str(), long.as_str()),
            ("ünïcode-dag", "a--b__c"),
        ] {
            let a = attempt(dag, task, 12);
            let name = pod_name(&a);
            assert!(is_dns_label(&name), "{name:?} from {dag:?}/{task:?}");
            assert_eq!(name, pod_name(&a), "stable");
            assert!(name.ends_with(&format!("-12-{}", &attempt_id(&a.digest)[..8])));
            assert_ne!(name, pod_name(&attempt(dag, task, 12)), "unique");
        }
        let a = attempt("My_DAG", "Extract.Step_1", 1);
        assert!(pod_name(&a).starts_with("my-dag-extract-step-1-1-"));
        let a = attempt("___", "%%%", 1);
        assert!(pod_name(&a).starts_with("dag-task-1-"));
        // Both long ids keep a share of the name.
        let a = attempt(&format!("a{long}"), &format!("b{long}"), 1);
        let name = pod_name(&a);
        assert!(name.starts_with('a') && name.contains("-b"), "{name}");
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("My_DAG.v2-x"), "My_DAG.v2-x");
        assert_eq!(label_value("_private_"), "private");
        assert_eq!(label_value("a b/c"), "a_b_c");
        assert_eq!(label_value("___"), "");
        let long = format!("{}_{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(
            label_value(&long),
            "a".repeat(62),
            "cut, then trimmed of `_`"
        );
        assert_eq!(label_value(&"Z".repeat(100)).len(), 63);
    }

    #[test]
    fn attempt_ids_hide_the_token() {
        let token = Uuid::new_v4();
        let id = attempt_id(&AttemptDigest::of(&token));
        assert_eq!(id, attempt_id(&AttemptDigest::of(&token)));
        assert_ne!(id, token.to_string());
        assert!(!id.contains(&token.simple().to_string()[..8]));
    }

    #[test]
    fn resources_become_requests_and_a_memory_limit() {
        let plain = resource_requirements(&json!({"cpu": "500m", "memory": "256Mi"}))
            .unwrap()
            .unwrap();
        assert_eq!(
            serde_json::to_value(plain).unwrap(),
            json!({"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "256Mi"}})
        );
        let stated = resource_requirements(
            &json!({"cpu": "1", "memory": null, "limits": {"cpu": "2", "memory": "1Gi"}}),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            serde_json::to_value(stated).unwrap(),
            json!({"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}})
        );
        assert_eq!(resource_requirements(&Value::Null).unwrap(), None);
        let bad = resource_requirements(&json!({"memory": 5})).unwrap_err();
        assert!(bad.contains("memory must be a quantity"), "{bad}");
    }

    #[test]
    fn a_task_pod_takes_kubernetes_shapes_and_names_a_wrong_one() {
        let mut attempt = Attempt {
            ti: TaskInstanceKey::new("d", "r", "load"),
            try_number: 1,
            attempt_token: Uuid::new_v4(),
            trace_parent: None,
            placement: Default::default(),
        };
        attempt.placement = std::sync::Arc::new(crate::Placement {
            pod: Some(json!({"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["batch"]}]}
                ]}
            }}, "tolerations": [{"key": "batch", "operator": "Exists", "tolerationSeconds": 60}]})),
            ..Default::default()
        });
        let task = TaskPod::of(&attempt).unwrap();
        let terms = task
            .affinity
            .unwrap()
            .node_affinity
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms[0].match_expressions.as_ref().unwrap()[0].key, "pool");
        assert_eq!(task.tolerations.unwrap()[0].toleration_seconds, Some(60));

        attempt.placement = std::sync::Arc::new(crate::Placement {
            pod: Some(json!({"tolerations": {"key": "batch"}})),
            ..Default::default()
        });
        let error = TaskPod::of(&attempt).err().unwrap().to_string();
        assert!(
            error.starts_with("task load's pod.tolerations in leoflow.yaml is not valid"),
            "{error}"
        );
    }
}
