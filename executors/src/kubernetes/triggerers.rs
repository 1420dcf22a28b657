//! The triggerer with pods: a triggerer per image and namespace, each a pod of that image
//! (`leoflow triggerer`) that calls the scheduler back over the agents' gRPC port
//! (`crate::triggerer_link`). The DAGs' code lives in their images, so their triggers, DAG
//! callbacks and timetables run where their tries do: a tenant's in its namespace, with its
//! DAG's image.
//!
//! Each triggerer is supervised as Lite's child process is (`crate::triggerer`): made with its
//! first trigger, made again (a new pod, a new token) when its pod ends or its link breaks,
//! and given every trigger still wanted; deleted once it had nothing to run for
//! [`IDLE_LIMIT`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::fate::{self, Fate};
use super::pod::{
    MANAGED_BY, MANAGED_BY_LABEL, TRIGGERER_LABEL, triggerer_label, triggerer_pod, triggerer_secret,
};
use super::{Apis, PodExecutor, Shared, api_message, delete, retrying};
use crate::triggerer::{
    Connection, Homes, Supervised, TriggerOutcome, TriggerReport, TriggerSpec, Triggerer,
    TriggererHost,
};
use crate::triggerer_link::Links;

/// How long a triggerer pod has to call once created (its image pulled, its node found).
const LINK_DEADLINE: Duration = Duration::from_secs(300);
/// How often a pod that has not called yet is looked at (it may have failed to start).
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long a triggerer pod with nothing to run is kept: triggers come in bursts (a DAG's
/// callbacks, a fan-out of deferred tries), a pod takes seconds to start.
const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// Where a trigger runs: its DAG's tenant's namespace, its DAG's image.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Home {
    namespace: String,
    image: String,
}

/// The triggerers of a [`PodExecutor`]'s DAGs, each in a pod of its image.
pub struct PodTriggerer {
    shared: Arc<Shared>,
    links: Links,
    reports: mpsc::UnboundedSender<TriggerReport>,
    homes: Mutex<Homes<Home, ()>>,
}

impl PodExecutor {
    /// The triggerer of this executor's DAGs, reporting on `reports`; serve its
    /// [`PodTriggerer::links`] on the agents' gRPC port, where its pods call.
    pub fn triggerer(&self, reports: mpsc::UnboundedSender<TriggerReport>) -> PodTriggerer {
        PodTriggerer {
            shared: self.shared.clone(),
            links: Links::default(),
            reports,
            homes: Mutex::default(),
        }
    }
}

impl PodTriggerer {
    /// The pods this triggerer waits for, to serve as `TriggererLink`.
    pub fn links(&self) -> Links {
        self.links.clone()
    }

    fn homes(&self) -> std::sync::MutexGuard<'_, Homes<Home, ()>> {
        self.homes.lock().expect("not poisoned")
    }
}

impl Triggerer for PodTriggerer {
    fn start(&self, trigger: TriggerSpec) {
        let config = &self.shared.config;
        let Some(namespace) = config.namespaces.of(&trigger.tenant) else {
            let why = format!(
                "tenant {} has no namespace for pods (kubernetes.namespaces), so its triggers \
                 cannot run",
                trigger.tenant
            );
            let outcome = TriggerOutcome::Failed(why);
            let _ = self.reports.send(TriggerReport {
                id: trigger.id,
                outcome,
            });
            return;
        };
        let home = Home {
            namespace: namespace.to_owned(),
            image: trigger
                .image
                .clone()
                .unwrap_or_else(|| config.image.clone()),
        };
        let host = PodHost {
            shared: self.shared.clone(),
            links: self.links.clone(),
            home: home.clone(),
            made: None,
        };
        let reports = self.reports.clone();
        self.homes()
            .start(home, trigger, || Supervised::on(host, reports));
    }

    fn cancel(&self, id: &str) {
        self.homes().cancel(id);
    }

    fn answer(&self, id: &str, ask: u64, reply: Value) {
        self.homes().answer(id, ask, reply);
    }
}

/// The pods of one home's triggerer, one at a time.
struct PodHost {
    shared: Arc<Shared>,
    links: Links,
    home: Home,
    /// The pod made last (its name, its token), until it is deleted.
    made: Option<(String, Uuid)>,
}

impl PodHost {
    fn apis(&self) -> &Apis {
        &self.shared.apis[&self.home.namespace]
    }

    /// Deletes the triggerer pods of this home that are not this host's: a previous
    /// leader's, whose tokens no scheduler knows now.
    async fn replace_predecessors(&self) {
        let label = triggerer_label(&self.home.image);
        let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY},{TRIGGERER_LABEL}={label}");
        let listed = self
            .apis()
            .pods
            .list(&ListParams::default().labels(&selector))
            .await;
        let pods = match listed {
            Ok(pods) => pods,
            Err(error) => {
                tracing::warn!("cannot list triggerer pods: {}", api_message(&error));
                return;
            }
        };
        for pod in pods {
            if pod.labels().get(TRIGGERER_LABEL) == Some(&label) {
                self.delete(&pod.name_any()).await;
            }
        }
    }

    async fn delete(&self, name: &str) {
        let apis = self.apis();
        delete(&apis.pods, name, &DeleteParams::background()).await;
        delete(&apis.secrets, name, &DeleteParams::background()).await;
    }

    /// Creates the Secret, then the pod (then makes the pod the Secret's owner, so the
    /// Secret goes with the pod whoever deletes it).
    async fn create(&self, name: &str, token: &Uuid) -> Result<(), String> {
        let config = &self.shared.config;
        let Home { namespace, image } = &self.home;
        let apis = self.apis();
        let params = PostParams {
            field_manager: Some(MANAGED_BY.into()),
            ..PostParams::default()
        };
        let budget = config.create_retry_budget;
        let refused = |what: &str, error: &kube::Error| {
            format!(
                "cannot create the {what} {name} in namespace {namespace}: {}",
                api_message(error)
            )
        };
        let secret = triggerer_secret(config, name, namespace, image, token);
        retrying(budget, || apis.secrets.create(&params, &secret))
            .await
            .map_err(|error| refused("Secret", &error))?;
        let pod = triggerer_pod(config, name, namespace, image);
        let created = retrying(budget, || apis.pods.create(&params, &pod))
            .await
            .map_err(|error| refused("pod", &error))?;
        let owner = json!({"metadata": {"ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": name,
            "uid": created.uid().unwrap_or_default(),
        }]}});
        if let Err(error) = apis
            .secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(owner))
            .await
        {
            tracing::warn!(
                "cannot make pod {name} the owner of its Secret: {}",
                api_message(&error)
            );
        }
        Ok(())
    }

    /// Waits for the pod `name` to call, looking at it meanwhile: one that ended, is gone or
    /// did not call in time will not.
    async fn wait_for_call(
        &self,
        name: &str,
        mut call: tokio::sync::oneshot::Receiver<Connection>,
    ) -> Result<Connection, String> {
        let deadline = tokio::time::Instant::now() + LINK_DEADLINE;
        loop {
            tokio::select! {
                connection = &mut call => {
                    return connection.map_err(|_| "the scheduler stopped waiting".to_owned());
                }
                () = tokio::time::sleep(LOOK_EVERY) => {}
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "the triggerer pod {name} did not call within {} s (its image, its node, \
                     or its way to the scheduler's gRPC port: kubectl -n {} describe pod {name})",
                    LINK_DEADLINE.as_secs(),
                    self.home.namespace
                ));
            }
            match self.apis().pods.get_opt(name).await {
                Ok(Some(pod)) => {
                    if let Some(why) = over(&pod) {
                        return Err(format!("the triggerer pod {name} ended: {why}"));
                    }
                }
                Ok(None) => return Err(format!("the triggerer pod {name} was deleted")),
                Err(error) => tracing::debug!("reading pod {name}: {}", api_message(&error)),
            }
        }
    }
}

/// Why `pod` will never call, if it will not.
fn over(pod: &Pod) -> Option<String> {
    match fate::fate(pod) {
        Fate::Over(why) | Fate::NodeLost(why) => Some(why),
        _ => None,
    }
}

impl TriggererHost for PodHost {
    type Settings = ();

    async fn connect(&mut self) -> Result<Connection, String> {
        self.replace_predecessors().await;
        let token = Uuid::new_v4();
        let name = format!(
            "leoflow-triggerer-{}-{}",
            triggerer_label(&self.home.image),
            &token.simple().to_string()[..8]
        );
        let call = self.links.expect(&token);
        self.made = Some((name.clone(), token));
        let connected = match self.create(&name, &token).await {
            Ok(()) => self.wait_for_call(&name, call).await,
            Err(why) => Err(why),
        };
        if connected.is_err() {
            self.disconnect("it did not call").await;
        }
        connected
    }

    async fn disconnect(&mut self, why: &str) {
        let Some((name, token)) = self.made.take() else {
            return;
        };
        self.links.forget(&token);
        self.delete(&name).await;
        tracing::warn!(
            "the triggerer pod {name} in namespace {} is deleted: {why}",
            self.home.namespace
        );
    }

    fn reconfigure(&mut self, (): ()) {}

    fn idle_limit(&self) -> Option<Duration> {
        Some(IDLE_LIMIT)
    }
}
