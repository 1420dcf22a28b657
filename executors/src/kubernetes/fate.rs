//! What became of a pod, in words for the try's failure reason: it ran to an end, it can never
//! start, it waited for a node too long, or its node was lost.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod, PodCondition};
use kube::ResourceExt;

/// Waiting reasons after which the container will not start without a change to the pod.
const UNRECOVERABLE_WAITING: [&str; 5] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
    "CreateContainerConfigError",
];

/// A pod's fate, as far as its try is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fate {
    /// Still pending or running.
    Going,
    /// Waiting for a node since then (the scheduler said why).
    Unschedulable {
        /// When it became unschedulable.
        since: DateTime<Utc>,
        /// The scheduler's message.
        message: String,
    },
    /// Over: the detail says how.
    Over(String),
    /// Its node is gone and Kubernetes is deleting it; it will never report (the kubelet that
    /// would confirm its end is gone too), so it must be deleted at once.
    NodeLost(String),
}

/// The fate of `pod`.
pub(super) fn fate(pod: &Pod) -> Fate {
    let Some(status) = pod.status.as_ref() else {
        return Fate::Going;
    };
    let name = pod.name_any();
    let phase = status.phase.as_deref().unwrap_or("Unknown");
    if matches!(phase, "Succeeded" | "Failed") {
        return Fate::Over(ended(pod, phase));
    }
    if let Some(detail) = node_lost(pod) {
        return Fate::NodeLost(detail);
    }
    if let Some(detail) = cannot_start(pod) {
        return Fate::Over(detail);
    }
    let unschedulable = condition(pod, "PodScheduled")
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"));
    match unschedulable {
        Some(c) => Fate::Unschedulable {
            since: c
                .last_transition_time
                .as_ref()
                .and_then(|t| DateTime::from_timestamp(t.0.as_second(), 0))
                .unwrap_or_else(Utc::now),
            message: c.message.clone().unwrap_or_else(|| format!("pod {name}")),
        },
        None => Fate::Going,
    }
}

/// The detail of a pod that ran to an end.
fn ended(pod: &Pod, phase: &str) -> String {
    let status = pod.status.as_ref().expect("a phase means a status");
    let name = pod.name_any();
    let mut detail = match (status.reason.as_deref(), status.message.as_deref()) {
        (Some("Evicted"), message) => format!(
            "pod {name} was evicted by its node{}",
            message.map(|m| format!(": {m}")).unwrap_or_default()
        ),
        (Some("DeadlineExceeded"), _) => format!(
            "pod {name} ran past its deadline of {} s (activeDeadlineSeconds: the task's \
             execution_timeout and a margin) and Kubernetes stopped it",
            pod.spec
                .as_ref()
                .and_then(|s| s.active_deadline_seconds)
                .unwrap_or_default()
        ),
        (Some(reason), Some(message)) => format!("pod {name} {phase} ({reason}: {message})"),
        (Some(text), None) | (None, Some(text)) => format!("pod {name} {phase} ({text})"),
        (None, None) => format!("pod {name} {phase}"),
    };
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    let ended = init
        .filter(|c| terminated(c).is_some_and(|t| t.exit_code != 0))
        .chain(main.filter(|c| terminated(c).is_some()));
    for container in ended {
        detail += &container_end(pod, container);
    }
    detail
}

/// How one container ended, for the pod's detail.
fn container_end(pod: &Pod, container: &ContainerStatus) -> String {
    let t = terminated(container).expect("filtered on it");
    let mut detail = format!(
        "; container {} exited with code {}",
        container.name, t.exit_code
    );
    match t.reason.as_deref() {
        Some("OOMKilled") => {
            detail += " (OOMKilled: it used more memory than its limit";
            if let Some(limit) = memory_limit(pod, &container.name) {
                detail += &format!(" of {limit}");
            }
            detail += "; raise resources.memory in leoflow.yaml)";
        }
        Some(reason) => detail += &format!(" ({reason})"),
        None => {}
    }
    if let Some(signal) = t.signal {
        detail += &format!(", signal {signal}");
    }
    if let Some(message) = t.message.as_deref().map(str::trim)
        && !message.is_empty()
    {
        detail += &format!(": {message}");
    }
    detail
}

fn memory_limit(pod: &Pod, container: &str) -> Option<String> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == container)?
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("memory")
        .map(|q| q.0.clone())
}

/// A container that can never start (its image cannot be pulled, its Secret is missing).
fn cannot_start(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    let main = status.container_statuses.iter().flatten();
    init.chain(main).find_map(|container| {
        let waiting = container.state.as_ref()?.waiting.as_ref()?;
        let reason = waiting.reason.as_deref()?;
        if !UNRECOVERABLE_WAITING.contains(&reason) {
            return None;
        }
        let mut detail = format!(
            "pod {} cannot start: container {} (image {}) is waiting with {reason}",
            pod.name_any(),
            container.name,
            container.image
        );
        if let Some(message) = &waiting.message {
            detail += &format!(": {message}");
        }
        Some(detail)
    })
}

/// Whether Kubernetes is deleting `pod` because its node is gone: the taint manager's
/// `DisruptionTarget`, or the node controller's `NodeLost` reason on older clusters.
fn node_lost(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let node = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| "unknown".into());
    let evicted_from_node = condition(pod, "DisruptionTarget").is_some_and(|c| {
        c.status == "True" && c.reason.as_deref() == Some("DeletionByTaintManager")
    });
    let lost = status.reason.as_deref() == Some("NodeLost");
    let deleting = pod.metadata.deletion_timestamp.is_some();
    ((evicted_from_node && deleting) || lost).then(|| {
        format!(
            "pod {} was lost with its node {node} (the node stopped answering, so the task's \
             outcome is unknown)",
            pod.name_any()
        )
    })
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
}

fn terminated(container: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    container.state.as_ref()?.terminated.as_ref()
}
