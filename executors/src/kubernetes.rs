//! The Kubernetes executor: each attempt is one pod whose container runs `leoflow agent`.
//!
//! The agent inside the pod talks to the control plane over gRPC exactly as a host agent does;
//! Kubernetes only tells when the pod is over. One watcher over the namespace's Leoflow pods
//! reports each pod that finished (or can never start) once, then deletes it.
//!
//! The attempt token is a credential (it lets its holder report the try's outcome), so it
//! travels only in the container's environment. Labels, annotations and the pod name carry a
//! one-way digest of it instead (the *attempt id*), which still ties a pod to its attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, EnvVar, HostPathVolumeSource, Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use leoflow_events::{AttemptDigest, TaskInstanceKey};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::command::{AgentCommand, AgentConfig, TOKEN_ENV};
use crate::{Attempt, AttemptExit, AttemptKey, Executor};

/// Label every pod of this executor carries; the watcher selects on it.
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
const MANAGED_BY: &str = "leoflow";
/// Label holding the attempt id (a digest of the attempt token, see [`attempt_id`]).
const ATTEMPT_LABEL: &str = "leoflow.io/attempt";
/// Label (sanitized) and annotation (exact) with the DAG id.
const DAG_ID_KEY: &str = "leoflow.io/dag-id";
/// Label (sanitized) and annotation (exact) with the task id.
const TASK_ID_KEY: &str = "leoflow.io/task-id";
/// Label and annotation with the try number.
const TRY_NUMBER_KEY: &str = "leoflow.io/try-number";
/// Annotation with the dag run id.
const RUN_ID_ANNOTATION: &str = "leoflow.io/run-id";
/// Annotation with the map index.
const MAP_INDEX_ANNOTATION: &str = "leoflow.io/map-index";

/// The pod's one container.
const AGENT_CONTAINER: &str = "agent";
/// Time the agent gets on `terminate` to stop its task and send its last log lines, as in
/// the subprocess adapter.
const TERMINATE_GRACE_SECONDS: u32 = 5;
/// Waiting reasons after which the container will not start without a change to the pod.
const UNRECOVERABLE_WAITING: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
];
/// Namespace of the version-5 UUIDs that [`attempt_id`] derives.
const ATTEMPT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6f66_6c6f_4a77_9f3e_2b1d_0c8a_7e55);

/// How to run agents in pods. Paths are as the container sees them.
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// The namespace pods are created and watched in.
    pub namespace: String,
    /// The container image (it must provide what the agent's `python` needs, or get it from `host_paths`).
    pub image: String,
    /// The agent's program, endpoint (as pods reach it, e.g. `http://host.k3d.internal:9099`),
    /// Python, SDK and project, as the container sees them.
    pub agent: AgentConfig,
    /// Paths of the node mounted read-only into each pod at the same path (`hostPath`
    /// volumes): with k3d nodes that mount the host's binary, SDK and project, pods see them
    /// where Lite does.
    pub host_paths: Vec<PathBuf>,
    /// Extra labels for every pod (Leoflow's own labels win on a clash).
    pub labels: BTreeMap<String, String>,
}

/// Runs each attempt as a pod and reports each pod's end.
pub struct PodExecutor {
    shared: Arc<Shared>,
    watcher: JoinHandle<()>,
}

struct Shared {
    pods: Api<Pod>,
    config: PodConfig,
    exits: mpsc::UnboundedSender<AttemptExit>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Attempt id → attempt, for attempts this process dispatched and has not reported.
    dispatched: HashMap<String, AttemptKey>,
    /// Attempt ids already reported, until their pod is gone: a pod's events repeat (its
    /// deletion, a relist), and each attempt must be reported once.
    reported: HashSet<String>,
    /// Attempt ids listed since the watcher (re)started listing, to forget reported pods
    /// deleted while the watch was down.
    relisted: Option<HashSet<String>>,
}

impl PodExecutor {
    /// An executor creating pods through `client` and reporting their ends on `exits`. Starts
    /// the watcher, which also reports finished pods of attempts dispatched before a restart.
    pub async fn start(
        client: Client,
        config: PodConfig,
        exits: mpsc::UnboundedSender<AttemptExit>,
    ) -> Self {
        let shared = Arc::new(Shared {
            pods: Api::namespaced(client, &config.namespace),
            config,
            exits,
            state: Mutex::default(),
        });
        let watcher = tokio::spawn(watch(shared.clone()));
        Self { shared, watcher }
    }

    /// Like [`PodExecutor::start`], with a client configured from the kubeconfig's `context`
    /// (its current context when `None`, or the in-cluster service account).
    pub async fn connect(
        context: Option<&str>,
        config: PodConfig,
        exits: mpsc::UnboundedSender<AttemptExit>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let client_config = match context {
            Some(context) => {
                let options = kube::config::KubeConfigOptions {
                    context: Some(context.to_owned()),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&options).await?
            }
            None => kube::Config::infer().await?,
        };
        let client = Client::try_from(client_config)?;
        Ok(Self::start(client, config, exits).await)
    }

    /// The pod that runs `attempt`.
    pub(crate) fn pod(&self, attempt: &Attempt) -> Pod {
        pod_for(&self.shared.config, attempt)
    }
}

impl Drop for PodExecutor {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Executor for PodExecutor {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn dispatch(&self, attempt: Attempt) {
        let pod = self.pod(&attempt);
        let attempt = attempt.key();
        let id = attempt_id(&attempt.digest);
        self.shared
            .state
            .lock()
            .expect("not poisoned")
            .dispatched
            .insert(id.clone(), attempt.clone());
        let shared = self.shared.clone();
        tokio::spawn(async move {
            if let Err(detail) = shared.create(&pod, &id).await {
                let known = shared
                    .state
                    .lock()
                    .expect("not poisoned")
                    .dispatched
                    .remove(&id);
                // The watcher may have reported it meanwhile (an adopted pod that ended).
                if known.is_some() {
                    let _ = shared.exits.send(AttemptExit { attempt, detail });
                }
            }
        });
    }

    fn terminate(&self, attempt: &AttemptKey, _reason: &str) {
        let name = pod_name(attempt);
        let pods = self.shared.pods.clone();
        tokio::spawn(async move {
            // The kubelet sends SIGTERM, then SIGKILL after the grace period. The pod's end
            // then comes through the watcher like any other.
            let params = DeleteParams::background().grace_period(TERMINATE_GRACE_SECONDS);
            delete_pod(&pods, &name, &params).await;
        });
    }
}

impl Shared {
    /// Creates `pod`; an error is the detail to report.
    async fn create(&self, pod: &Pod, id: &str) -> Result<(), String> {
        let name = pod.name_any();
        let params = PostParams {
            field_manager: Some(MANAGED_BY.into()),
            ..PostParams::default()
        };
        let ns = &self.config.namespace;
        match self.pods.create(&params, pod).await {
            Ok(_) => Ok(()),
            // A retried dispatch of the same attempt: the pod is already this attempt's.
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                match self.pods.get_opt(&name).await {
                    Ok(Some(existing))
                        if existing.labels().get(ATTEMPT_LABEL).map(String::as_str) == Some(id) =>
                    {
                        Ok(())
                    }
                    Ok(_) => Err(format!(
                        "cannot create pod {name} in namespace {ns}: a pod of that name \
                         exists for another attempt"
                    )),
                    Err(error) => Err(format!(
                        "cannot create pod {name} in namespace {ns}: it exists, and reading \
                         it failed: {}",
                        api_message(&error)
                    )),
                }
            }
            Err(error) => Err(format!(
                "cannot create pod {name} in namespace {ns}: {}",
                api_message(&error)
            )),
        }
    }

    /// A pod was added or changed: reports it if it is over, once.
    fn observe(&self, pod: &Pod) {
        let Some(id) = pod.labels().get(ATTEMPT_LABEL) else {
            return;
        };
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(relisted) = &mut state.relisted {
            relisted.insert(id.clone());
        }
        if state.reported.contains(id) {
            return;
        }
        let Some(detail) = finished(pod) else {
            return;
        };
        state.reported.insert(id.clone());
        let known = state.dispatched.remove(id);
        drop(state);
        self.report(pod, id, known, detail, true);
    }

    /// A pod is gone: reports it if it went before it was reported (deleted by hand,
    /// evicted, or terminated before it could finish).
    fn deleted(&self, pod: &Pod) {
        let Some(id) = pod.labels().get(ATTEMPT_LABEL) else {
            return;
        };
        let mut state = self.state.lock().expect("not poisoned");
        if state.reported.remove(id) {
            return;
        }
        let known = state.dispatched.remove(id);
        drop(state);
        let detail = finished(pod).unwrap_or_else(|| {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("Unknown");
            format!(
                "pod {} was deleted before it finished (phase {phase})",
                pod.name_any()
            )
        });
        self.report(pod, id, known, detail, false);
    }

    fn report(&self, pod: &Pod, id: &str, known: Option<AttemptKey>, detail: String, remove: bool) {
        let name = pod.name_any();
        let attempt = match known.map_or_else(|| rebuild(pod, id), Ok) {
            Ok(attempt) => attempt,
            Err(why) => {
                // Not ours to judge or delete: nothing says which attempt it ran.
                tracing::warn!("pod {name} ended ({detail}), but {why}");
                return;
            }
        };
        let _ = self.exits.send(AttemptExit { attempt, detail });
        if remove {
            // The try's outcome is in the log already (its agent's report, or this exit),
            // so the pod has nothing more to tell.
            let pods = self.pods.clone();
            tokio::spawn(async move {
                delete_pod(&pods, &name, &DeleteParams::background()).await;
            });
        }
    }
}

/// Follows the namespace's Leoflow pods for as long as the executor lives.
async fn watch(shared: Arc<Shared>) {
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    // The backoff retries a failed list or watch (API server down, RBAC being fixed) without
    // hammering the server; errors are still yielded, so they are logged.
    let mut events = pin!(watcher(shared.pods.clone(), config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                shared.observe(&pod);
            }
            Ok(watcher::Event::Delete(pod)) => shared.deleted(&pod),
            Ok(watcher::Event::Init) => {
                shared.state.lock().expect("not poisoned").relisted = Some(HashSet::new());
            }
            Ok(watcher::Event::InitDone) => {
                let mut state = shared.state.lock().expect("not poisoned");
                if let Some(listed) = state.relisted.take() {
                    state.reported.retain(|id| listed.contains(id));
                }
            }
            Err(error) => tracing::warn!(
                "watching pods in namespace {}: {error}",
                shared.config.namespace
            ),
        }
    }
}

async fn delete_pod(pods: &Api<Pod>, name: &str, params: &DeleteParams) {
    match pods.delete(name, params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => tracing::warn!("cannot delete pod {name}: {}", api_message(&error)),
    }
}

/// What the API server said, for an error a user must act on (RBAC, quota, admission).
fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            if status.reason.is_empty() {
                format!("{} ({})", status.message, status.code)
            } else {
                format!("{} ({}, {})", status.message, status.reason, status.code)
            }
        }
        error => error.to_string(),
    }
}

/// The attempt id of a token's digest: names the attempt in labels and the pod name without
/// revealing the token, and is known to a scheduler that has only the log.
pub fn attempt_id(digest: &AttemptDigest) -> String {
    Uuid::new_v5(&ATTEMPT_ID_NAMESPACE, digest.as_str().as_bytes()).to_string()
}

/// The pod name of `attempt`: DNS-1123 label (lowercase, at most 63 characters) from the
/// DAG, task and try, with the first 8 hex digits of the attempt id so that it is unique per
/// attempt and the same on every call.
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
fn label_value(value: &str) -> String {
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

fn pod_for(config: &PodConfig, attempt: &Attempt) -> Pod {
    let agent = AgentCommand::new(&config.agent, attempt);
    let env = agent
        .env
        .into_iter()
        .map(|(name, value)| EnvVar {
            name: name.to_owned(),
            value: Some(value.to_string_lossy().into_owned()),
            ..EnvVar::default()
        })
        .collect();
    let (volumes, mounts): (Vec<_>, Vec<_>) = config
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
        .unzip();
    let ti = &attempt.ti;
    let mut labels = config.labels.clone();
    labels.extend([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (DAG_ID_KEY.to_owned(), label_value(&ti.dag_id)),
        (TASK_ID_KEY.to_owned(), label_value(&ti.task_id)),
        (TRY_NUMBER_KEY.to_owned(), attempt.try_number.to_string()),
        (ATTEMPT_LABEL.to_owned(), attempt_id(&attempt.key().digest)),
    ]);
    let annotations = BTreeMap::from([
        (DAG_ID_KEY.to_owned(), ti.dag_id.clone()),
        (RUN_ID_ANNOTATION.to_owned(), ti.run_id.clone()),
        (TASK_ID_KEY.to_owned(), ti.task_id.clone()),
        (MAP_INDEX_ANNOTATION.to_owned(), ti.map_index.to_string()),
        (TRY_NUMBER_KEY.to_owned(), attempt.try_number.to_string()),
    ]);
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(&attempt.key())),
            namespace: Some(config.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            containers: vec![Container {
                name: AGENT_CONTAINER.into(),
                image: Some(config.image.clone()),
                command: Some(vec![agent.program.to_string_lossy().into_owned()]),
                args: Some(agent.args),
                env: Some(env),
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

/// Why `pod` is over, if it is: it ran to an end, or a container can never start.
fn finished(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let name = pod.name_any();
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if matches!(phase, "Succeeded" | "Failed") {
        let mut detail = format!("pod {name} {phase}");
        match (&status.reason, &status.message) {
            (Some(reason), Some(message)) => detail += &format!(" ({reason}: {message})"),
            (Some(text), None) | (None, Some(text)) => detail += &format!(" ({text})"),
            (None, None) => {}
        }
        let ended = init
            .filter(|c| terminated(c).is_some_and(|t| t.exit_code != 0))
            .chain(main.filter(|c| terminated(c).is_some()));
        for container in ended {
            let t = terminated(container).expect("filtered on it");
            detail += &format!(
                "; container {} exited with code {}",
                container.name, t.exit_code
            );
            if let Some(reason) = &t.reason {
                detail += &format!(" ({reason})");
            }
            if let Some(signal) = t.signal {
                detail += &format!(", signal {signal}");
            }
            if let Some(message) = t.message.as_deref().map(str::trim)
                && !message.is_empty()
            {
                detail += &format!(": {message}");
            }
        }
        return Some(detail);
    }
    init.chain(main).find_map(|container| {
        let waiting = container.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        if !UNRECOVERABLE_WAITING.contains(&reason) {
            return None;
        }
        let mut detail = format!(
            "pod {name} cannot start: container {} (image {}) is waiting with {reason}",
            container.name, container.image
        );
        if let Some(message) = &waiting.message {
            detail += &format!(": {message}");
        }
        Some(detail)
    })
}

fn terminated(
    container: &ContainerStatus,
) -> Option<&k8s_openapi::api::core::v1::ContainerStateTerminated> {
    container.state.as_ref()?.terminated.as_ref()
}

/// The attempt of a pod this process did not dispatch (it was started before a restart):
/// ids from the annotations, the token from the container's environment.
fn rebuild(pod: &Pod, id: &str) -> Result<AttemptKey, String> {
    let annotations = pod.annotations();
    let get = |key: &str| {
        annotations
            .get(key)
            .ok_or_else(|| format!("it has no annotation {key}"))
    };
    let number = |key: &str| -> Result<i32, String> {
        let text = get(key)?;
        text.parse()
            .map_err(|_| format!("its annotation {key} is not a number: {text:?}"))
    };
    let token = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .filter(|c| c.name == AGENT_CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == TOKEN_ENV)
        .and_then(|e| e.value.as_deref())
        .ok_or_else(|| format!("its container has no {TOKEN_ENV}"))?;
    let token = Uuid::parse_str(token).map_err(|_| format!("its {TOKEN_ENV} is not a UUID"))?;
    let digest = AttemptDigest::of(&token);
    if attempt_id(&digest) != id {
        return Err(format!(
            "its {TOKEN_ENV} does not match its {ATTEMPT_LABEL} label"
        ));
    }
    Ok(AttemptKey {
        ti: TaskInstanceKey::mapped(
            get(DAG_ID_KEY)?,
            get(RUN_ID_ANNOTATION)?,
            get(TASK_ID_KEY)?,
            number(MAP_INDEX_ANNOTATION)?,
        ),
        try_number: number(TRY_NUMBER_KEY)?,
        digest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(dag_id: &str, task_id: &str, try_number: i32) -> AttemptKey {
        Attempt {
            ti: TaskInstanceKey::new(dag_id, "run", task_id),
            try_number,
            attempt_token: Uuid::new_v4(),
            trace_parent: None,
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
}
