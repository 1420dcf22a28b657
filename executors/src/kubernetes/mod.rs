//! The Kubernetes executor: each attempt is one pod whose container runs `leoflow agent`.
//!
//! The agent inside the pod talks to the control plane over gRPC exactly as a host agent does;
//! Kubernetes only tells when the pod is over. One watcher per task namespace follows the
//! Leoflow pods there and reports each pod that finished, can never start, waited for a node
//! too long or lost its node, once; then deletes it.
//!
//! The attempt token is a credential (it lets its holder report the try's outcome): it lives
//! in a Secret of the attempt's own, which the pod reads and which is deleted with the pod.
//! Labels, annotations and the pod name carry a one-way digest of it instead (the *attempt
//! id*), which still ties a pod to its attempt. A scheduler that starts (after a restart or a
//! change of leader) adopts the pods it finds from their annotations alone.
//!
//! Pro runs each tenant's pods in the tenant's namespace, with the image of the DAG's pushed
//! artifact; Lite's k3d mode runs every pod in one namespace with one image.

mod fate;
mod pod;
mod triggerers;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use leoflow_events::{AttemptDigest, TaskInstanceKey};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::command::{AgentConfig, TOKEN_ENV};
use crate::{Attempt, AttemptExit, AttemptKey, Executor, Placement, Room};
use fate::Fate;
use pod::{
    AGENT_CONTAINER, ATTEMPT_LABEL, DAG_ID_KEY, DIGEST_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
    MAP_INDEX_ANNOTATION, RUN_ID_ANNOTATION, TASK_ID_KEY, TRY_NUMBER_KEY, pod_for, secret_for,
};
pub use pod::{PodDefaults, attempt_id, pod_name};
pub use triggerers::PodTriggerer;

/// Time the agent gets on `terminate` to stop its task and send its last log lines, as in
/// the subprocess adapter.
const TERMINATE_GRACE_SECONDS: u32 = 5;
/// The first wait before asking the API server again after a 429 or a 5xx.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two asks.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Pods being created at once. A burst of tries is created through this many requests in
/// flight rather than one connection each: the API server's own limit on mutating requests
/// in flight is 200 by default, and each request in flight costs this process a connection.
const CREATES_IN_FLIGHT: usize = 32;
/// How often pods waiting for a node are looked at against their deadline.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Where pods run: one namespace for everything (Lite), or one per tenant (Pro).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// Every pod in this namespace.
    One(String),
    /// Each tenant's pods in its namespace; a tenant not listed has none, and its tries fail
    /// saying so.
    PerTenant(BTreeMap<String, String>),
}

impl Namespaces {
    /// The namespace of `tenant`'s pods.
    pub fn of(&self, tenant: &str) -> Option<&str> {
        match self {
            Namespaces::One(namespace) => Some(namespace),
            Namespaces::PerTenant(map) => map.get(tenant).map(String::as_str),
        }
    }

    /// Every namespace pods may run in (each has its watcher).
    pub fn all(&self) -> BTreeSet<&str> {
        match self {
            Namespaces::One(namespace) => BTreeSet::from([namespace.as_str()]),
            Namespaces::PerTenant(map) => map.values().map(String::as_str).collect(),
        }
    }
}

/// How to run agents in pods. Paths are as the container sees them.
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// The namespaces pods are created and watched in.
    pub namespaces: Namespaces,
    /// The container image of DAGs whose artifact names none (it must provide what the
    /// agent's `python` needs, or get it from `host_paths`).
    pub image: String,
    /// The agent's program, endpoint, Python, SDK and project, as the container sees them.
    pub agent: AgentConfig,
    /// Paths of the node mounted read-only into each pod at the same path (`hostPath`
    /// volumes): with k3d nodes that mount the host's binary, SDK and project, pods see them
    /// where Lite does.
    pub host_paths: Vec<PathBuf>,
    /// What every pod gets unless its task says otherwise.
    pub defaults: PodDefaults,
    /// The CA (PEM) agents verify the control plane's certificate with, when the agent
    /// channel is TLS: each pod reads it from its attempt's Secret.
    pub agent_ca: Option<String>,
    /// At most this many pods of this executor in flight per namespace (`None`: no cap).
    pub max_pods_per_namespace: Option<usize>,
    /// A pod no node takes for this long fails its try.
    pub unschedulable_timeout: Duration,
    /// How long creating a pod is retried while the API server answers 429 or 5xx.
    pub create_retry_budget: Duration,
}

impl PodConfig {
    /// Pods in `namespaces` with `image` and `agent`, no host paths, defaults or caps.
    pub fn new(namespaces: Namespaces, image: &str, agent: AgentConfig) -> Self {
        Self {
            namespaces,
            image: image.to_owned(),
            agent,
            host_paths: Vec::new(),
            defaults: PodDefaults::default(),
            agent_ca: None,
            max_pods_per_namespace: None,
            unschedulable_timeout: Duration::from_secs(300),
            create_retry_budget: Duration::from_secs(60),
        }
    }
}

/// Runs each attempt as a pod and reports each pod's end.
pub struct PodExecutor {
    shared: Arc<Shared>,
    follower: JoinHandle<()>,
}

/// A namespace's pods and Secrets.
#[derive(Clone)]
struct Apis {
    pods: Api<Pod>,
    secrets: Api<Secret>,
}

struct Shared {
    apis: BTreeMap<String, Apis>,
    config: PodConfig,
    exits: mpsc::UnboundedSender<AttemptExit>,
    state: Mutex<State>,
    /// Permits to create, [`CREATES_IN_FLIGHT`] of them.
    creating: tokio::sync::Semaphore,
}

/// An attempt this process follows, and where its pod is.
#[derive(Clone)]
struct Tracked {
    attempt: Option<AttemptKey>,
    namespace: String,
}

#[derive(Default)]
struct State {
    /// Attempt id → attempt, for the pods of this executor not reported yet: dispatched by
    /// this process (the attempt known), or seen by a watcher (adopted: the attempt rebuilt
    /// when it ends). Changed only through [`State::track`] and [`State::untrack`], which
    /// keep `live_per_namespace` in step.
    live: HashMap<String, Tracked>,
    /// How many of `live` are in each namespace: the cap is asked of every try the scheduler
    /// admits, so it is kept rather than counted over thousands of pods each time.
    live_per_namespace: HashMap<String, usize>,
    /// Attempt ids already reported, until their pod is gone, with their namespace: a pod's
    /// events repeat (its deletion, a relist), and each attempt must be reported once.
    reported: HashMap<String, String>,
    /// Per namespace, the attempt ids listed since its watcher (re)started listing, to forget
    /// reported pods deleted while the watch was down.
    relisted: HashMap<String, HashSet<String>>,
    /// Pods waiting for a node, by attempt id: since when, the scheduler's message, the pod.
    unschedulable: HashMap<String, (chrono::DateTime<Utc>, String, Pod)>,
}

impl State {
    fn live_in(&self, namespace: &str) -> usize {
        self.live_per_namespace.get(namespace).copied().unwrap_or(0)
    }

    /// Follows `id` from now on (a pod already followed keeps what is known of it).
    fn track(&mut self, id: &str, tracked: Tracked) {
        if let Some(known) = self.live.get_mut(id) {
            known.attempt = known.attempt.take().or(tracked.attempt);
            return;
        }
        *self
            .live_per_namespace
            .entry(tracked.namespace.clone())
            .or_default() += 1;
        self.live.insert(id.to_owned(), tracked);
    }

    /// Stops following `id`; what was known of it.
    fn untrack(&mut self, id: &str) -> Option<Tracked> {
        let tracked = self.live.remove(id)?;
        if let Some(count) = self.live_per_namespace.get_mut(&tracked.namespace) {
            *count -= 1;
        }
        Some(tracked)
    }
}

impl PodExecutor {
    /// An executor creating pods through `client` and reporting their ends on `exits`. Starts
    /// a watcher per namespace, which also reports finished pods of attempts dispatched
    /// before a restart.
    pub async fn start(
        client: Client,
        config: PodConfig,
        exits: mpsc::UnboundedSender<AttemptExit>,
    ) -> Self {
        let (_, always) = watch::channel(true);
        Self::start_leading(client, config, exits, always).await
    }

    /// [`PodExecutor::start`] for one of several schedulers: the watchers (which report and
    /// delete pods) run only while `leading` says this scheduler leads, so a standby neither
    /// races the leader to delete pods nor queues reports nobody reads. A new leader's
    /// watchers list every pod first, adopting those still going and reporting those that
    /// ended meanwhile.
    pub async fn start_leading(
        client: Client,
        config: PodConfig,
        exits: mpsc::UnboundedSender<AttemptExit>,
        leading: watch::Receiver<bool>,
    ) -> Self {
        let apis = config
            .namespaces
            .all()
            .into_iter()
            .map(|ns| {
                let apis = Apis {
                    pods: Api::namespaced(client.clone(), ns),
                    secrets: Api::namespaced(client.clone(), ns),
                };
                (ns.to_owned(), apis)
            })
            .collect();
        let shared = Arc::new(Shared {
            apis,
            config,
            exits,
            state: Mutex::default(),
            creating: tokio::sync::Semaphore::new(CREATES_IN_FLIGHT),
        });
        let follower = tokio::spawn(follow(shared.clone(), leading));
        Self { shared, follower }
    }

    /// Like [`PodExecutor::start_leading`], with a client configured from the kubeconfig's
    /// `context` (its current context when `None`, or the in-cluster service account).
    pub async fn connect(
        context: Option<&str>,
        config: PodConfig,
        exits: mpsc::UnboundedSender<AttemptExit>,
        leading: watch::Receiver<bool>,
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
        Ok(Self::start_leading(client, config, exits, leading).await)
    }

    /// How many pods of this executor are in flight in `namespace`.
    pub fn pods_in_flight(&self, namespace: &str) -> usize {
        self.shared.state().live_in(namespace)
    }
}

impl Drop for PodExecutor {
    fn drop(&mut self) {
        self.follower.abort();
    }
}

/// Runs the watchers and the sweep while `leading` is true, stops them when it turns false.
async fn follow(shared: Arc<Shared>, mut leading: watch::Receiver<bool>) {
    loop {
        if leading.wait_for(|leads| *leads).await.is_err() {
            return;
        }
        let mut tasks: Vec<JoinHandle<()>> = shared
            .apis
            .keys()
            .map(|ns| tokio::spawn(watch(shared.clone(), ns.clone())))
            .collect();
        tasks.push(tokio::spawn(sweep(shared.clone())));
        // Aborted when this scheduler stops leading, or when the executor goes.
        let _abort = AbortOnDrop(tasks);
        if leading.wait_for(|leads| !*leads).await.is_err() {
            // The sender is gone: the leadership this executor follows is fixed from here on.
            std::future::pending::<()>().await;
        }
    }
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Executor for PodExecutor {
    fn name(&self) -> &str {
        "kubernetes"
    }

    fn dispatch(&self, attempt: Attempt) {
        let key = attempt.key();
        let id = attempt_id(&key.digest);
        let namespace = match self.shared.namespace_of(&attempt.placement) {
            Ok(namespace) => namespace,
            Err(detail) => return self.shared.fail(key, detail),
        };
        let objects = pod_for(&self.shared.config, &attempt, &namespace)
            .map(|pod| (secret_for(&self.shared.config, &attempt, &namespace), pod));
        let (secret, pod) = match objects {
            Ok(objects) => objects,
            Err(error) => return self.shared.fail(key, error.to_string()),
        };
        let tracked = Tracked {
            attempt: Some(key.clone()),
            namespace: namespace.clone(),
        };
        self.shared.state().track(&id, tracked);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _permit = shared.creating.acquire().await.expect("never closed");
            if let Err(detail) = shared.create(&namespace, &secret, &pod, &id).await {
                let known = shared.state().untrack(&id);
                // The watcher may have reported it meanwhile (an adopted pod that ended).
                if known.is_some() {
                    let _ = shared.exits.send(AttemptExit {
                        attempt: key,
                        detail,
                    });
                }
            }
        });
    }

    fn terminate(&self, attempt: &AttemptKey, _reason: &str) {
        let name = pod_name(attempt);
        let id = attempt_id(&attempt.digest);
        let known = self
            .shared
            .state()
            .live
            .get(&id)
            .map(|t| t.namespace.clone());
        // A pod this process never saw may be in any of the namespaces.
        let namespaces: Vec<String> = match known {
            Some(namespace) => vec![namespace],
            None => self.shared.apis.keys().cloned().collect(),
        };
        for namespace in namespaces {
            let pods = self.shared.apis[&namespace].pods.clone();
            let name = name.clone();
            tokio::spawn(async move {
                // The kubelet sends SIGTERM, then SIGKILL after the grace period. The pod's
                // end then comes through the watcher like any other.
                let params = DeleteParams::background().grace_period(TERMINATE_GRACE_SECONDS);
                delete(&pods, &name, &params).await;
            });
        }
    }

    fn room(&self, placement: &Placement) -> Option<Room> {
        let cap = self.shared.config.max_pods_per_namespace?;
        // A try with no namespace is not held back: dispatched, it fails at once saying why.
        let namespace = self.shared.namespace_of(placement).ok()?;
        let free = cap.saturating_sub(self.shared.state().live_in(&namespace));
        Some(Room {
            group: namespace,
            free,
        })
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    fn namespace_of(&self, placement: &Placement) -> Result<String, String> {
        self.config
            .namespaces
            .of(&placement.tenant)
            .map(str::to_owned)
            .ok_or_else(|| {
                format!(
                    "tenant {:?} has no namespace for its task pods: add it to the server's \
                     kubernetes.namespaces (the chart's taskNamespaces)",
                    placement.tenant
                )
            })
    }

    /// Reports a try that cannot get a pod at all.
    fn fail(&self, attempt: AttemptKey, detail: String) {
        let _ = self.exits.send(AttemptExit { attempt, detail });
    }

    /// Creates the attempt's Secret, then its pod, then makes the pod the Secret's owner (so
    /// Kubernetes deletes the Secret with the pod whoever deletes it); an error is the detail
    /// to report.
    async fn create(
        &self,
        namespace: &str,
        secret: &Secret,
        pod: &Pod,
        id: &str,
    ) -> Result<(), String> {
        let apis = &self.apis[namespace];
        let budget = self.config.create_retry_budget;
        let params = PostParams {
            field_manager: Some(MANAGED_BY.into()),
            ..PostParams::default()
        };
        let name = pod.name_any();
        let refused = |what: &str, error: &kube::Error| {
            format!(
                "cannot create the {what} {name} in namespace {namespace}: {}",
                api_message(error)
            )
        };
        match retrying(budget, || apis.secrets.create(&params, secret)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(error) => return Err(refused("Secret", &error)),
        }
        let created = match retrying(budget, || apis.pods.create(&params, pod)).await {
            Ok(created) => created,
            Err(kube::Error::Api(status)) if status.is_already_exists() => {
                return self.already_there(apis, &name, id, namespace).await;
            }
            Err(error) => {
                delete(&apis.secrets, &name, &DeleteParams::background()).await;
                return Err(refused("pod", &error));
            }
        };
        let owner = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": created.uid().unwrap_or_default(),
        }]}});
        let patch = PatchParams::default();
        if let Err(error) = apis
            .secrets
            .patch(&name, &patch, &Patch::Merge(owner))
            .await
        {
            // The executor deletes the Secret with the pod anyway; the owner only covers a
            // pod someone else deletes.
            tracing::warn!(
                "cannot make pod {name} the owner of its Secret: {}",
                api_message(&error)
            );
        }
        Ok(())
    }

    /// A pod of that name exists: fine if it is this attempt's (a dispatch retried).
    async fn already_there(
        &self,
        apis: &Apis,
        name: &str,
        id: &str,
        namespace: &str,
    ) -> Result<(), String> {
        match apis.pods.get_opt(name).await {
            Ok(Some(existing))
                if existing.labels().get(ATTEMPT_LABEL).map(String::as_str) == Some(id) =>
            {
                Ok(())
            }
            Ok(_) => Err(format!(
                "cannot create pod {name} in namespace {namespace}: a pod of that name \
                 exists for another attempt"
            )),
            Err(error) => Err(format!(
                "cannot create pod {name} in namespace {namespace}: it exists, and reading it \
                 failed: {}",
                api_message(&error)
            )),
        }
    }

    /// A pod was added or changed: reports it if it is over, once.
    fn observe(&self, namespace: &str, pod: &Pod) {
        let Some(id) = pod.labels().get(ATTEMPT_LABEL) else {
            return;
        };
        let mut state = self.state();
        let relisting = match state.relisted.get_mut(namespace) {
            Some(relisted) => relisted.insert(id.clone()),
            None => false,
        };
        if state.reported.contains_key(id) {
            // Reported, and a list still finds it: its delete failed (the API server was
            // away), so it is asked again rather than left to run up the namespace.
            if relisting {
                drop(state);
                self.remove(namespace, pod.name_any(), Removal::Delete { force: false });
            }
            return;
        }
        let (detail, force) = match fate::fate(pod) {
            Fate::Over(detail) => (detail, false),
            Fate::NodeLost(detail) => (detail, true),
            going => {
                // Adopted: in flight here from now on, and counted against the cap.
                let adopted = Tracked {
                    attempt: None,
                    namespace: namespace.to_owned(),
                };
                state.track(id, adopted);
                match going {
                    Fate::Unschedulable { since, message } => {
                        let waiting = (since, message, pod.clone());
                        state.unschedulable.insert(id.clone(), waiting);
                    }
                    _ => {
                        state.unschedulable.remove(id);
                    }
                }
                return;
            }
        };
        state.unschedulable.remove(id);
        state.reported.insert(id.clone(), namespace.to_owned());
        let known = state.untrack(id).and_then(|t| t.attempt);
        drop(state);
        self.report(namespace, pod, id, known, detail, Removal::Delete { force });
    }

    /// A pod is gone: reports it if it went before it was reported (deleted by hand,
    /// evicted, or terminated before it could finish).
    fn deleted(&self, namespace: &str, pod: &Pod) {
        let Some(id) = pod.labels().get(ATTEMPT_LABEL) else {
            return;
        };
        let mut state = self.state();
        state.unschedulable.remove(id);
        if state.reported.remove(id).is_some() {
            return;
        }
        let known = state.untrack(id).and_then(|t| t.attempt);
        drop(state);
        let detail = match fate::fate(pod) {
            Fate::Over(detail) | Fate::NodeLost(detail) => detail,
            _ => {
                let phase = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .unwrap_or("Unknown");
                format!(
                    "pod {} was deleted before it finished (phase {phase})",
                    pod.name_any()
                )
            }
        };
        self.report(namespace, pod, id, known, detail, Removal::Gone);
    }

    /// Fails the tries of pods that waited for a node past the deadline.
    fn sweep_unschedulable(&self) {
        let limit = chrono::Duration::from_std(self.config.unschedulable_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let mut state = self.state();
        let expired: Vec<String> = state
            .unschedulable
            .iter()
            .filter(|(_, (since, _, _))| now - *since >= limit)
            .map(|(id, _)| id.clone())
            .collect();
        let mut due = Vec::new();
        for id in expired {
            let (_, why, pod) = state.unschedulable.remove(&id).expect("listed");
            let Some(tracked) = state.untrack(&id) else {
                continue;
            };
            state.reported.insert(id.clone(), tracked.namespace.clone());
            due.push((id, why, pod, tracked));
        }
        drop(state);
        for (id, why, pod, tracked) in due {
            let detail = format!(
                "pod {} could not be scheduled within {} s: {why}",
                pod.name_any(),
                self.config.unschedulable_timeout.as_secs()
            );
            self.report(
                &tracked.namespace,
                &pod,
                &id,
                tracked.attempt,
                detail,
                Removal::Delete { force: false },
            );
        }
    }

    fn report(
        &self,
        namespace: &str,
        pod: &Pod,
        id: &str,
        known: Option<AttemptKey>,
        detail: String,
        removal: Removal,
    ) {
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
        self.remove(namespace, name, removal);
    }

    /// Deletes a reported pod (unless it is gone) and its Secret. The try's outcome is in the
    /// log already (its agent's report, or the exit), so the pod has nothing more to tell.
    fn remove(&self, namespace: &str, name: String, removal: Removal) {
        let apis = self.apis[namespace].clone();
        tokio::spawn(async move {
            if let Removal::Delete { force } = removal {
                // A lost node's pod is forced: no kubelet will confirm its end.
                let params = if force {
                    DeleteParams::background().grace_period(0)
                } else {
                    DeleteParams::background()
                };
                delete(&apis.pods, &name, &params).await;
            }
            delete(&apis.secrets, &name, &DeleteParams::background()).await;
        });
    }
}

/// What becomes of a reported pod.
#[derive(Clone, Copy)]
enum Removal {
    /// Deleted by the executor (forced when its node is lost).
    Delete { force: bool },
    /// Already gone.
    Gone,
}

/// Follows `namespace`'s Leoflow pods for as long as the executor lives.
async fn watch(shared: Arc<Shared>, namespace: String) {
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let pods = shared.apis[&namespace].pods.clone();
    // The watcher re-lists on `410 Gone`, resumes from bookmarks and restarts a dropped
    // watch; the backoff spaces out failed lists and watches (API server down, RBAC being
    // fixed) without hiding them: each error is still yielded, so it is logged.
    let mut events = pin!(watcher(pods, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                shared.observe(&namespace, &pod);
            }
            Ok(watcher::Event::Delete(pod)) => shared.deleted(&namespace, &pod),
            Ok(watcher::Event::Init) => {
                shared
                    .state()
                    .relisted
                    .insert(namespace.clone(), HashSet::new());
            }
            Ok(watcher::Event::InitDone) => {
                let mut state = shared.state();
                if let Some(listed) = state.relisted.remove(&namespace) {
                    state
                        .reported
                        .retain(|id, ns| *ns != namespace || listed.contains(id));
                }
            }
            Err(error) => tracing::warn!("watching pods in namespace {namespace}: {error}"),
        }
    }
}

/// Looks at pods waiting for a node every [`SWEEP_EVERY`].
async fn sweep(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(SWEEP_EVERY.min(shared.config.unschedulable_timeout));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        shared.sweep_unschedulable();
    }
}

/// `call`, again after a growing pause while the API server is overloaded (429) or failing
/// (5xx, no answer), for at most `budget`; any other answer at once.
async fn retrying<T, F, Fut>(budget: Duration, mut call: F) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let deadline = tokio::time::Instant::now() + budget;
    let mut pause = FIRST_BACKOFF;
    loop {
        let error = match call().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let Some(asked) = retry_pause(&error) else {
            return Err(error);
        };
        let wait = asked.unwrap_or(pause);
        if tokio::time::Instant::now() + wait > deadline {
            return Err(error);
        }
        tracing::debug!("the API server answered {error}; asking again in {wait:?}");
        tokio::time::sleep(wait).await;
        pause = (pause * 2).min(MAX_BACKOFF);
    }
}

/// Whether `error` is worth asking again, and the pause the server asked for (`Retry-After`,
/// as the Status's `retryAfterSeconds`).
fn retry_pause(error: &kube::Error) -> Option<Option<Duration>> {
    match error {
        kube::Error::Api(status) if matches!(status.code, 429 | 500 | 502 | 503 | 504) => {
            let asked = status
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(u64::from(s)).min(MAX_BACKOFF));
            Some(asked)
        }
        kube::Error::Api(_) => None,
        // No answer at all (connection refused or reset, a timeout): the server may be back.
        kube::Error::HyperError(_) | kube::Error::Service(_) => Some(None),
        _ => None,
    }
}

async fn delete<K>(api: &Api<K>, name: &str, params: &DeleteParams)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, params).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() => {}
        Err(error) => tracing::warn!("cannot delete {name}: {}", api_message(&error)),
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

/// The attempt of a pod this process did not dispatch (it was started before a restart or
/// by another leader): ids and the token's digest from the annotations. Pods made before
/// the digest annotation existed carry the token in their environment instead.
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
    let digest = match annotations.get(DIGEST_ANNOTATION) {
        Some(hex) => AttemptDigest::parse(hex)
            .ok_or_else(|| format!("its annotation {DIGEST_ANNOTATION} is not a digest"))?,
        None => digest_from_env(pod)?,
    };
    if attempt_id(&digest) != id {
        return Err(format!(
            "its attempt digest does not match its {ATTEMPT_LABEL} label"
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

/// The digest of the token a pod of an earlier Leoflow has as a literal in its environment.
fn digest_from_env(pod: &Pod) -> Result<AttemptDigest, String> {
    let token = pod
        .spec
        .iter()
        .flat_map(|spec| &spec.containers)
        .filter(|c| c.name == AGENT_CONTAINER)
        .flat_map(|c| c.env.iter().flatten())
        .find(|e| e.name == TOKEN_ENV)
        .and_then(|e| e.value.as_deref())
        .ok_or_else(|| format!("it has neither {DIGEST_ANNOTATION} nor {TOKEN_ENV}"))?;
    let token = Uuid::parse_str(token).map_err(|_| format!("its {TOKEN_ENV} is not a UUID"))?;
    Ok(AttemptDigest::of(&token))
}
