//! A scripted Kubernetes cluster for `leoflow server --executor kubernetes`: no API server or
//! container engine runs here, so this one plays both, over HTTP on loopback. It keeps the
//! pods and Secrets it is sent, lists and watches pods (with resource versions, from any
//! version it still has), and, as a kubelet would, runs each pod's container as a process on
//! this host: the command, arguments and environment of the pod's spec, its Secret references
//! resolved, the image's paths mapped to this machine's. When the process ends, the pod ends
//! with its exit code, as a pod does.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// A pod's (namespace, name).
type PodKey = (String, String);

/// The cluster's state: objects by (namespace, name), the event history for watches.
#[derive(Default)]
struct Objects {
    pods: BTreeMap<(String, String), Value>,
    secrets: BTreeMap<(String, String), Value>,
    /// Every pod event: (resource version, namespace, event).
    history: Vec<(u64, String, Value)>,
    version: u64,
}

#[derive(Clone)]
struct Cluster {
    objects: Arc<Mutex<Objects>>,
    events: broadcast::Sender<(u64, String, Value)>,
    /// Image path → this machine's path (the binary, Python, the SDK).
    mounts: Arc<Vec<(String, PathBuf)>>,
    /// DAG id, or image → the project directory its image holds.
    projects: Arc<Mutex<HashMap<String, PathBuf>>>,
    /// The running containers, by (namespace, pod): what stops each, as a kubelet stops a
    /// deleted pod's.
    running: Arc<Mutex<HashMap<PodKey, tokio::sync::oneshot::Sender<()>>>>,
    /// Where the kubelet writes pods' Secret volumes.
    scratch: Arc<PathBuf>,
}

/// A running scripted cluster.
pub struct ScriptedCluster {
    /// A kubeconfig naming it (its current context).
    pub kubeconfig: PathBuf,
    cluster: Cluster,
}

impl ScriptedCluster {
    /// Serves on a free loopback port; `mounts` map image paths to this machine's.
    pub async fn start(scratch: &Path, mounts: Vec<(String, PathBuf)>) -> Self {
        let (events, _) = broadcast::channel(1024);
        let cluster = Cluster {
            objects: Arc::default(),
            events,
            mounts: Arc::new(mounts),
            projects: Arc::default(),
            running: Arc::default(),
            scratch: Arc::new(scratch.join("kubelet")),
        };
        let app = Router::new()
            .route("/api/v1/namespaces/{ns}/pods", get(pods).post(create_pod))
            .route(
                "/api/v1/namespaces/{ns}/pods/{name}",
                get(read_pod).delete(delete_pod),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets",
                axum::routing::post(create_secret),
            )
            .route(
                "/api/v1/namespaces/{ns}/secrets/{name}",
                patch(patch_secret).delete(delete_secret),
            )
            .with_state(cluster.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let kubeconfig = scratch.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: scripted\n\
                 clusters:\n- name: scripted\n  cluster: {{server: \"http://{address}\"}}\n\
                 users:\n- name: scripted\n  user: {{token: scripted}}\n\
                 contexts:\n- name: scripted\n  context: {{cluster: scripted, user: scripted}}\n"
            ),
        )
        .unwrap();
        Self {
            kubeconfig,
            cluster,
        }
    }

    /// Tells the kubelet where the image of `dag_id` has its project.
    pub fn project(&self, dag_id: &str, dir: &Path) {
        self.cluster
            .projects
            .lock()
            .unwrap()
            .insert(dag_id.to_owned(), dir.to_owned());
    }

    /// Tells the kubelet where `image` has its project (for pods that run no one DAG's
    /// tries: triggerers).
    pub fn image_project(&self, image: &str, dir: &Path) {
        self.project(image, dir);
    }

    /// Deletes pod `name` of `namespace`, as `kubectl delete pod` would: its container is
    /// stopped.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let mut objects = self.cluster.objects.lock().unwrap();
        self.cluster.remove_pod(&mut objects, namespace, name);
    }

    /// Whether pod `name` of `namespace` exists now.
    pub fn pod_exists(&self, namespace: &str, name: &str) -> bool {
        let objects = self.cluster.objects.lock().unwrap();
        objects
            .pods
            .contains_key(&(namespace.to_owned(), name.to_owned()))
    }

    /// Every pod ever created, as posted, in order.
    pub fn created_pods(&self) -> Vec<Value> {
        let objects = self.cluster.objects.lock().unwrap();
        objects
            .history
            .iter()
            .filter(|(_, _, event)| event["type"] == "ADDED")
            .map(|(_, _, event)| event["object"].clone())
            .collect()
    }

    /// The Secrets that exist now.
    pub fn secrets(&self) -> Vec<Value> {
        let objects = self.cluster.objects.lock().unwrap();
        objects.secrets.values().cloned().collect()
    }
}

impl Cluster {
    /// Records a pod event and tells the watches.
    fn emit(&self, objects: &mut Objects, namespace: &str, kind: &str, pod: &mut Value) {
        objects.version += 1;
        pod["metadata"]["resourceVersion"] = json!(objects.version.to_string());
        let event = json!({"type": kind, "object": pod});
        objects
            .history
            .push((objects.version, namespace.to_owned(), event.clone()));
        let _ = self
            .events
            .send((objects.version, namespace.to_owned(), event));
    }

    /// The kubelet's part: runs the pod's container (until it ends, or the pod is deleted),
    /// then ends the pod with its exit code.
    fn run(&self, namespace: String, pod: Value) {
        let cluster = self.clone();
        let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        self.running
            .lock()
            .unwrap()
            .insert((namespace.clone(), name), stop);
        tokio::spawn(async move {
            let child = cluster.command(&namespace, &pod).and_then(|mut command| {
                command
                    .kill_on_drop(true)
                    .spawn()
                    .map_err(|e| e.to_string())
            });
            let code = match child {
                Ok(mut child) => tokio::select! {
                    status = child.wait() => status.map_or(128, |s| s.code().unwrap_or(137)),
                    _ = stopped => {
                        let _ = child.kill().await;
                        137
                    }
                },
                Err(_) => 128,
            };
            let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
            cluster
                .running
                .lock()
                .unwrap()
                .remove(&(namespace.clone(), name.clone()));
            let mut objects = cluster.objects.lock().unwrap();
            let Some(mut pod) = objects
                .pods
                .get(&(namespace.clone(), name.clone()))
                .cloned()
            else {
                return;
            };
            let phase = if code == 0 { "Succeeded" } else { "Failed" };
            pod["status"] = json!({"phase": phase, "containerStatuses": [{
                "name": "agent", "image": pod["spec"]["containers"][0]["image"],
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": code}},
            }]});
            objects.pods.insert((namespace.clone(), name), pod.clone());
            cluster.emit(&mut objects, &namespace, "MODIFIED", &mut pod);
        });
    }

    /// The container's process, as a kubelet would start it on this host: its Secret volumes
    /// written out, their mount paths mapped to where they were written.
    fn command(&self, namespace: &str, pod: &Value) -> Result<tokio::process::Command, String> {
        let container = &pod["spec"]["containers"][0];
        let volumes = self.secret_volumes(namespace, pod)?;
        let program = self.host_path(container["command"][0].as_str().unwrap_or_default());
        let mut command = tokio::process::Command::new(program);
        command.env_clear();
        for key in ["PATH", "HOME", "LANG"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        for arg in container["args"].as_array().into_iter().flatten() {
            command.arg(arg.as_str().unwrap_or_default());
        }
        // A try's pod has its DAG's project; a triggerer's, its image's.
        let dag_id = pod["metadata"]["annotations"]["leoflow.io/dag-id"]
            .as_str()
            .or_else(|| container["image"].as_str())
            .unwrap_or_default();
        for var in container["env"].as_array().into_iter().flatten() {
            let name = var["name"].as_str().unwrap_or_default();
            let value = match &var["value"] {
                Value::String(value) => value.clone(),
                _ => self.secret_value(namespace, &var["valueFrom"]["secretKeyRef"])?,
            };
            let value = match name {
                "LEOFLOW_PROJECT_DIR" => self
                    .projects
                    .lock()
                    .unwrap()
                    .get(dag_id)
                    .map(|dir| dir.to_string_lossy().into_owned())
                    .unwrap_or(value),
                _ => volumes
                    .iter()
                    .find_map(|(mount, dir)| {
                        let rest = value.strip_prefix(mount.as_str())?.trim_start_matches('/');
                        Some(dir.join(rest).to_string_lossy().into_owned())
                    })
                    .unwrap_or_else(|| self.host_path(&value).to_string_lossy().into_owned()),
            };
            command.env(name, value);
        }
        command.stdout(std::process::Stdio::null());
        Ok(command)
    }

    /// Each Secret volume the container mounts, written to a folder of this host as the
    /// kubelet projects it (the listed `items`, each to its `path`): (mount path, folder).
    fn secret_volumes(
        &self,
        namespace: &str,
        pod: &Value,
    ) -> Result<Vec<(String, PathBuf)>, String> {
        let name = pod["metadata"]["name"].as_str().unwrap_or_default();
        let mut written = Vec::new();
        let mounts = pod["spec"]["containers"][0]["volumeMounts"].as_array();
        for mount in mounts.into_iter().flatten() {
            let volume = pod["spec"]["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|v| v["name"] == mount["name"])
                .ok_or("a mount of no volume")?;
            let Some(secret) = volume["secret"]["secretName"].as_str() else {
                continue;
            };
            let dir = self
                .scratch
                .join(format!("{name}-{}", mount["name"].as_str().unwrap_or("v")));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            for item in volume["secret"]["items"].as_array().into_iter().flatten() {
                let reference = json!({"name": secret, "key": item["key"]});
                let value = self.secret_value(namespace, &reference)?;
                let path = dir.join(item["path"].as_str().unwrap_or_default());
                std::fs::write(path, value).map_err(|e| e.to_string())?;
            }
            let at = mount["mountPath"].as_str().unwrap_or_default().to_owned();
            written.push((at, dir));
        }
        Ok(written)
    }

    fn host_path(&self, image_path: &str) -> PathBuf {
        self.mounts
            .iter()
            .find(|(inside, _)| inside == image_path)
            .map_or_else(|| PathBuf::from(image_path), |(_, host)| host.clone())
    }

    /// A `secretKeyRef`'s value, as the kubelet reads it (a missing one keeps the container
    /// from starting).
    fn secret_value(&self, namespace: &str, reference: &Value) -> Result<String, String> {
        let name = reference["name"].as_str().unwrap_or_default();
        let key = reference["key"].as_str().unwrap_or_default();
        let objects = self.objects.lock().unwrap();
        let secret = objects
            .secrets
            .get(&(namespace.to_owned(), name.to_owned()))
            .ok_or_else(|| format!("secret {name} not found"))?;
        let encoded = secret["data"][key].as_str().ok_or("no such key")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| e.to_string())?;
        String::from_utf8(bytes).map_err(|e| e.to_string())
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(kind: &str, name: &str) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
               "message": format!("{kind} {name:?} not found"), "reason": "NotFound", "code": 404}),
    )
}

/// Lists the namespace's pods, or watches them from a resource version.
async fn pods(
    State(cluster): State<Cluster>,
    UrlPath(ns): UrlPath<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if query.get("watch").map(String::as_str) != Some("true") {
        let objects = cluster.objects.lock().unwrap();
        let items: Vec<Value> = objects
            .pods
            .iter()
            .filter(|((namespace, _), _)| *namespace == ns)
            .map(|(_, pod)| pod.clone())
            .collect();
        return json_response(
            StatusCode::OK,
            json!({"apiVersion": "v1", "kind": "PodList",
                   "metadata": {"resourceVersion": objects.version.to_string()}, "items": items}),
        );
    }
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // What happened since `from`, then what happens next: subscribed under the lock, so no
    // event falls between the two.
    let (past, next) = {
        let objects = cluster.objects.lock().unwrap();
        let past: Vec<Value> = objects
            .history
            .iter()
            .filter(|(version, namespace, _)| *version > from && *namespace == ns)
            .map(|(_, _, event)| event.clone())
            .collect();
        (past, cluster.events.subscribe())
    };
    let stream = watch_lines(past, ns, next);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

/// The watch's lines: `past`, then each later event of `namespace`.
fn watch_lines(
    past: Vec<Value>,
    namespace: String,
    mut next: broadcast::Receiver<(u64, String, Value)>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    for event in past {
        let _ = lines.send(Bytes::from(format!("{event}\n")));
    }
    tokio::spawn(async move {
        while let Ok((_, ns, event)) = next.recv().await {
            if ns == namespace && lines.send(Bytes::from(format!("{event}\n"))).is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (Ok(line), receiver))
    })
}

async fn create_pod(
    State(cluster): State<Cluster>,
    UrlPath(ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    let mut pod: Value = serde_json::from_slice(&body).unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap().to_owned();
    pod["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    pod["status"] = json!({"phase": "Pending"});
    {
        let mut objects = cluster.objects.lock().unwrap();
        if objects.pods.contains_key(&(ns.clone(), name.clone())) {
            return json_response(
                StatusCode::CONFLICT,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": format!("pods {name:?} already exists"),
                       "reason": "AlreadyExists", "code": 409}),
            );
        }
        objects.pods.insert((ns.clone(), name), pod.clone());
        cluster.emit(&mut objects, &ns, "ADDED", &mut pod);
    }
    cluster.run(ns, pod.clone());
    json_response(StatusCode::CREATED, pod)
}

async fn read_pod(
    State(cluster): State<Cluster>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let objects = cluster.objects.lock().unwrap();
    match objects.pods.get(&(ns, name.clone())) {
        Some(pod) => json_response(StatusCode::OK, pod.clone()),
        None => not_found("pods", &name),
    }
}

async fn delete_pod(
    State(cluster): State<Cluster>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let mut objects = cluster.objects.lock().unwrap();
    match cluster.remove_pod(&mut objects, &ns, &name) {
        Some(pod) => json_response(StatusCode::OK, pod),
        None => not_found("pods", &name),
    }
}

impl Cluster {
    /// Removes a pod, stopping its container; its Secret goes with it, as its owner
    /// reference says.
    fn remove_pod(&self, objects: &mut Objects, ns: &str, name: &str) -> Option<Value> {
        let mut pod = objects.pods.remove(&(ns.to_owned(), name.to_owned()))?;
        if let Some(stop) = self
            .running
            .lock()
            .unwrap()
            .remove(&(ns.to_owned(), name.to_owned()))
        {
            let _ = stop.send(());
        }
        objects.secrets.retain(|(namespace, _), secret| {
            namespace != ns
                || secret["metadata"]["ownerReferences"][0]["uid"] != pod["metadata"]["uid"]
        });
        self.emit(objects, ns, "DELETED", &mut pod);
        Some(pod)
    }
}

async fn create_secret(
    State(cluster): State<Cluster>,
    UrlPath(ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    let secret: Value = serde_json::from_slice(&body).unwrap();
    let name = secret["metadata"]["name"].as_str().unwrap().to_owned();
    let mut objects = cluster.objects.lock().unwrap();
    objects.secrets.insert((ns, name), secret.clone());
    json_response(StatusCode::CREATED, secret)
}

async fn patch_secret(
    State(cluster): State<Cluster>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
    body: Bytes,
) -> Response {
    let change: Value = serde_json::from_slice(&body).unwrap();
    let mut objects = cluster.objects.lock().unwrap();
    let Some(secret) = objects.secrets.get_mut(&(ns, name.clone())) else {
        return not_found("secrets", &name);
    };
    secret["metadata"]["ownerReferences"] = change["metadata"]["ownerReferences"].clone();
    json_response(StatusCode::OK, secret.clone())
}

async fn delete_secret(
    State(cluster): State<Cluster>,
    UrlPath((ns, name)): UrlPath<(String, String)>,
) -> Response {
    let mut objects = cluster.objects.lock().unwrap();
    match objects.secrets.remove(&(ns, name.clone())) {
        Some(secret) => json_response(StatusCode::OK, secret),
        None => not_found("secrets", &name),
    }
}
