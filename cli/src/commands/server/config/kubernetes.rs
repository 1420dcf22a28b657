//! `kubernetes.*`: where Pro's pod executor runs tries. Each key is also a flag
//! (`--kubernetes-image`) and a variable (`LEOFLOW_KUBERNETES_IMAGE`); `namespaces` and
//! `pod_defaults` take JSON there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use leoflow_authoring::config::parse_duration;
use leoflow_executors::kubernetes::PodDefaults;
use serde::{Deserialize, Serialize};

use super::{ConfigError, key_error, seconds};

/// Where the task image has what the agent needs (docker/task.Dockerfile lays it out so).
const IMAGE_PROGRAM: &str = "/usr/local/bin/leoflow";
const IMAGE_PYTHON: &str = "/usr/local/bin/python3";
const IMAGE_SDK: &str = "/opt/leoflow/sdk";
const IMAGE_PROJECT: &str = "/opt/leoflow/project";
/// The namespace of the default tenant's pods unless `namespaces` says otherwise.
const DEFAULT_NAMESPACE: &str = "leoflow-tasks";

/// The `kubernetes.*` keys as flags and `LEOFLOW_KUBERNETES_*` variables.
#[derive(Debug, Clone, Default, Args)]
pub struct KubernetesFlags {
    /// The kubeconfig context of the task cluster (default: the in-cluster service account,
    /// else the kubeconfig's current context).
    #[arg(
        long = "kubernetes-context",
        env = "LEOFLOW_KUBERNETES_CONTEXT",
        value_name = "NAME"
    )]
    pub context: Option<String>,
    /// The task image of DAGs whose pushed artifact names none.
    #[arg(
        long = "kubernetes-image",
        env = "LEOFLOW_KUBERNETES_IMAGE",
        value_name = "REF"
    )]
    pub image: Option<String>,
    /// Tenant → the namespace of its task pods, as JSON: `{"default": "leoflow-tasks"}`.
    #[arg(
        long = "kubernetes-namespaces",
        env = "LEOFLOW_KUBERNETES_NAMESPACES",
        value_name = "JSON"
    )]
    pub namespaces: Option<String>,
    /// At most this many task pods in flight per namespace.
    #[arg(
        long = "kubernetes-max-pods-per-namespace",
        env = "LEOFLOW_KUBERNETES_MAX_PODS_PER_NAMESPACE",
        value_name = "N"
    )]
    pub max_pods_per_namespace: Option<usize>,
    /// A pod no node takes for this long fails its try, e.g. `5m`.
    #[arg(
        long = "kubernetes-unschedulable-timeout",
        env = "LEOFLOW_KUBERNETES_UNSCHEDULABLE_TIMEOUT",
        value_name = "DURATION"
    )]
    pub unschedulable_timeout: Option<String>,
    /// How long a pod may take to start its agent (a node, the image pull), e.g. `10m`.
    #[arg(
        long = "kubernetes-start-timeout",
        env = "LEOFLOW_KUBERNETES_START_TIMEOUT",
        value_name = "DURATION"
    )]
    pub start_timeout: Option<String>,
    /// Every task pod's defaults, as JSON (see `kubernetes.pod_defaults`).
    #[arg(
        long = "kubernetes-pod-defaults",
        env = "LEOFLOW_KUBERNETES_POD_DEFAULTS",
        value_name = "JSON"
    )]
    pub pod_defaults: Option<String>,
}

/// The file's `kubernetes:` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KubernetesFile {
    context: Option<String>,
    image: Option<String>,
    namespaces: Option<BTreeMap<String, String>>,
    max_pods_per_namespace: Option<usize>,
    unschedulable_timeout: Option<String>,
    start_timeout: Option<String>,
    pod_defaults: Option<serde_json::Value>,
    program: Option<PathBuf>,
    python: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
    project_dir: Option<PathBuf>,
}

/// `kubernetes.*`, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KubernetesConfig {
    /// The kubeconfig context (`None`: in-cluster, else the kubeconfig's current one).
    pub context: Option<String>,
    /// The image of DAGs whose artifact names none.
    pub image: String,
    /// Tenant → namespace of its pods.
    pub namespaces: BTreeMap<String, String>,
    /// The cap of pods in flight per namespace.
    pub max_pods_per_namespace: Option<usize>,
    /// A pod no node takes for this long fails its try.
    #[serde(with = "seconds")]
    pub unschedulable_timeout: Duration,
    /// How long a pod may take to start its agent.
    #[serde(with = "seconds")]
    pub start_timeout: Duration,
    /// Every pod's defaults, as given (checked).
    pub pod_defaults: serde_json::Value,
    /// The `leoflow` binary in the task image.
    pub program: PathBuf,
    /// Python in the task image.
    pub python: PathBuf,
    /// The SDK in the task image.
    pub sdk_path: PathBuf,
    /// The project in the task image (where `leoflow compile --image` puts it).
    pub project_dir: PathBuf,
}

impl KubernetesConfig {
    /// The pod defaults, in Kubernetes' types (checked when the configuration was).
    pub fn pod_defaults(&self) -> PodDefaults {
        PodDefaults::parse(self.pod_defaults.clone()).expect("checked at load")
    }
}

/// `kubernetes.*` from the flags over the file.
pub(super) fn kubernetes_config(
    flags: &KubernetesFlags,
    file: KubernetesFile,
) -> Result<KubernetesConfig, ConfigError> {
    let image = flags
        .image
        .clone()
        .or(file.image)
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| {
            key_error(
                "kubernetes.image",
                "missing: the pod executor needs the task image of DAGs pushed without \
                 --image (set kubernetes.image, --kubernetes-image or LEOFLOW_KUBERNETES_IMAGE)",
            )
        })?;
    let namespaces = match &flags.namespaces {
        Some(json) => serde_json::from_str(json).map_err(|e| {
            key_error(
                "kubernetes.namespaces",
                format!("not a JSON object of tenant → namespace: {e}"),
            )
        })?,
        None => file.namespaces.unwrap_or_else(|| {
            BTreeMap::from([(
                leoflow_events::DEFAULT_TENANT.to_owned(),
                DEFAULT_NAMESPACE.to_owned(),
            )])
        }),
    };
    check_namespaces(&namespaces)?;
    let pod_defaults = match &flags.pod_defaults {
        Some(json) => serde_json::from_str(json)
            .map_err(|e| key_error("kubernetes.pod_defaults", format!("not JSON: {e}")))?,
        None => file.pod_defaults.unwrap_or(serde_json::Value::Null),
    };
    PodDefaults::parse(pod_defaults.clone())
        .map_err(|e| key_error("kubernetes.pod_defaults", e))?;
    let max_pods_per_namespace = flags.max_pods_per_namespace.or(file.max_pods_per_namespace);
    if max_pods_per_namespace == Some(0) {
        return Err(key_error(
            "kubernetes.max_pods_per_namespace",
            "must be at least 1 (leave it out for no cap)",
        ));
    }
    Ok(KubernetesConfig {
        context: flags.context.clone().or(file.context),
        image,
        namespaces,
        max_pods_per_namespace,
        unschedulable_timeout: duration(
            "kubernetes.unschedulable_timeout",
            flags
                .unschedulable_timeout
                .clone()
                .or(file.unschedulable_timeout),
            Duration::from_secs(300),
        )?,
        start_timeout: duration(
            "kubernetes.start_timeout",
            flags.start_timeout.clone().or(file.start_timeout),
            Duration::from_secs(600),
        )?,
        pod_defaults,
        program: file.program.unwrap_or_else(|| IMAGE_PROGRAM.into()),
        python: file.python.unwrap_or_else(|| IMAGE_PYTHON.into()),
        sdk_path: file.sdk_path.unwrap_or_else(|| IMAGE_SDK.into()),
        project_dir: file.project_dir.unwrap_or_else(|| IMAGE_PROJECT.into()),
    })
}

fn duration(
    key: &'static str,
    text: Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match parse_duration(&text) {
        Ok(seconds) if seconds >= 1.0 => Ok(Duration::from_secs_f64(seconds)),
        Ok(_) => Err(key_error(key, "must be at least 1s")),
        Err(message) => Err(key_error(key, message)),
    }
}

/// Each tenant's namespace must be a namespace name Kubernetes takes (a DNS-1123 label).
fn check_namespaces(namespaces: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    if namespaces.is_empty() {
        return Err(key_error(
            "kubernetes.namespaces",
            "names no namespace: give at least the default tenant's, e.g. \
             {default: leoflow-tasks}",
        ));
    }
    for (tenant, namespace) in namespaces {
        let valid = (1..=63).contains(&namespace.len())
            && namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && namespace.starts_with(|c: char| c.is_ascii_alphanumeric())
            && namespace.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(key_error(
                "kubernetes.namespaces",
                format!(
                    "tenant {tenant:?}: {namespace:?} is not a namespace name (lowercase \
                     letters, digits and dashes, at most 63)"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> KubernetesFile {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let config =
            kubernetes_config(&KubernetesFlags::default(), file("image: reg/task:1\n")).unwrap();
        assert_eq!(config.namespaces["default"], "leoflow-tasks");
        assert_eq!(config.unschedulable_timeout, Duration::from_secs(300));
        assert_eq!(config.start_timeout, Duration::from_secs(600));
        assert_eq!(config.program, PathBuf::from("/usr/local/bin/leoflow"));
        assert_eq!(config.pod_defaults(), PodDefaults::default());
    }

    #[test]
    fn flags_win_and_bad_values_name_their_key() {
        let flags = KubernetesFlags {
            namespaces: Some(r#"{"default": "tasks", "team-a": "team-a"}"#.into()),
            start_timeout: Some("15m".into()),
            ..KubernetesFlags::default()
        };
        let config =
            kubernetes_config(&flags, file("image: reg/task:1\nstart_timeout: 1m\n")).unwrap();
        assert_eq!(config.namespaces.len(), 2);
        assert_eq!(config.start_timeout, Duration::from_secs(900));

        let refused = |yaml: &str| {
            kubernetes_config(&KubernetesFlags::default(), file(yaml))
                .unwrap_err()
                .to_string()
        };
        assert!(refused("namespaces: {}\n").starts_with("kubernetes.image: missing"));
        let bad = refused("image: i\nnamespaces: {default: Team_A}\n");
        assert!(bad.contains("\"Team_A\" is not a namespace name"), "{bad}");
        let bad = refused("image: i\npod_defaults: {tolerations: yes}\n");
        assert!(bad.starts_with("kubernetes.pod_defaults:"), "{bad}");
        let bad = refused("image: i\npod_defaults: {node_selectr: {}}\n");
        assert!(bad.contains("node_selectr"), "{bad}");
        let bad = refused("image: i\nunschedulable_timeout: soon\n");
        assert!(
            bad.starts_with("kubernetes.unschedulable_timeout:"),
            "{bad}"
        );
        let bad = refused("image: i\nmax_pods_per_namespace: 0\n");
        assert!(bad.contains("at least 1"), "{bad}");
    }
}
