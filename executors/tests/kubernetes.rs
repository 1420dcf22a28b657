//! The pod executor against a scripted Kubernetes API server (`tower_test::mock`): no cluster
//! runs here, so these tests check what the executor asks of the API and what it makes of
//! the answers and the watch events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use http::{Method, Request, Response};
use kube::client::Body;
use leoflow_events::TaskInstanceKey;
use leoflow_executors::kubernetes::{
    Namespaces, PodConfig, PodDefaults, PodExecutor, attempt_id, pod_name,
};
use leoflow_executors::triggerer::{TriggerOutcome, TriggerSpec, Triggerer};
use leoflow_executors::{AgentConfig, Attempt, AttemptExit, Executor, Placement};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower_test::mock::{self, SendResponse};
use uuid::Uuid;

const NS: &str = "tasks";
const PODS: &str = "/api/v1/namespaces/tasks/pods";
const SECRETS: &str = "/api/v1/namespaces/tasks/secrets";
const WAIT: Duration = Duration::from_secs(10);

/// A request the executor made (list and watch requests are the fake server's business).
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
}

/// How the fake server answers a create, delete, patch or get: status and JSON body.
type Respond = Box<dyn Fn(&Seen) -> (u16, Value) + Send>;

/// What each namespace's pod list holds, changed by tests to script a relist.
type Listed = Arc<Mutex<HashMap<String, Vec<Value>>>>;

/// A list or watch request: its namespace and query.
#[derive(Debug)]
struct Follow {
    namespace: String,
    query: String,
}

struct Harness {
    executor: PodExecutor,
    /// Requests about pods.
    requests: mpsc::UnboundedReceiver<Seen>,
    /// Requests about Secrets.
    secrets: mpsc::UnboundedReceiver<Seen>,
    /// Lists and watches, as asked.
    follows: mpsc::UnboundedReceiver<Follow>,
    listed: Listed,
    watch: mpsc::UnboundedSender<(String, Vec<Value>)>,
    exits: mpsc::UnboundedReceiver<AttemptExit>,
}

impl Harness {
    /// An executor over a fake API server whose pod list holds `listed`.
    async fn start(listed: Vec<Value>, respond: Respond) -> Self {
        Self::start_with(config(), listed, respond).await
    }

    /// An executor configured by `config` over a fake API server; Secrets are always accepted.
    async fn start_with(config: PodConfig, listed: Vec<Value>, respond: Respond) -> Self {
        let (_, always) = tokio::sync::watch::channel(true);
        Self::following(config, listed, respond, always).await
    }

    /// [`Harness::start_with`] for an executor whose scheduler leads while `leading` says so.
    async fn following(
        config: PodConfig,
        listed: Vec<Value>,
        respond: Respond,
        leading: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (secrets_tx, secrets) = mpsc::unbounded_channel();
        let (follows_tx, follows) = mpsc::unbounded_channel();
        let (watch, watch_rx) = mpsc::unbounded_channel();
        let listed = Arc::new(Mutex::new(HashMap::from([(NS.to_owned(), listed)])));
        let server = Server {
            listed: listed.clone(),
            respond,
            requests: requests_tx,
            secrets: secrets_tx,
            follows: follows_tx,
        };
        tokio::spawn(server.serve(handle, watch_rx));
        let client = kube::Client::new(service, "default");
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let executor = PodExecutor::start_leading(client, config, exits_tx, leading).await;
        Self {
            executor,
            requests,
            secrets,
            follows,
            listed,
            watch,
            exits,
        }
    }

    async fn request(&mut self) -> Seen {
        timeout(WAIT, self.requests.recv())
            .await
            .expect("a request in time")
            .expect("the server runs")
    }

    async fn secret_request(&mut self) -> Seen {
        timeout(WAIT, self.secrets.recv())
            .await
            .expect("a Secret request in time")
            .expect("the server runs")
    }

    async fn follow(&mut self) -> Follow {
        timeout(WAIT, self.follows.recv())
            .await
            .expect("a list or watch in time")
            .expect("the server runs")
    }

    async fn exit(&mut self) -> AttemptExit {
        timeout(WAIT, self.exits.recv())
            .await
            .expect("an exit in time")
            .expect("the executor runs")
    }

    /// Sends watch events (`type`, pod) as one watch response in the tasks namespace.
    fn events(&self, events: &[(&str, &Value)]) {
        self.events_in(NS, events);
    }

    /// Sends watch events (`type`, object) as one watch response in `namespace`.
    fn events_in(&self, namespace: &str, events: &[(&str, &Value)]) {
        let events = events
            .iter()
            .map(|(kind, object)| json!({"type": kind, "object": object}))
            .collect();
        self.watch
            .send((namespace.to_owned(), events))
            .expect("the server runs");
    }

    /// Dispatches `attempt` and returns the pod it posted.
    async fn dispatch(&mut self, attempt: &Attempt) -> Value {
        self.executor.dispatch(attempt.clone());
        let seen = self.request().await;
        assert_eq!((seen.method, seen.path.as_str()), (Method::POST, PODS));
        seen.body
    }
}

/// Plays the API server: lists what `listed` holds, hands watch batches to each namespace's
/// watcher one response each (the watcher then watches again), records other requests and
/// answers pods' with `respond`, Secrets' with success.
struct Server {
    listed: Listed,
    respond: Respond,
    requests: mpsc::UnboundedSender<Seen>,
    secrets: mpsc::UnboundedSender<Seen>,
    follows: mpsc::UnboundedSender<Follow>,
}

impl Server {
    async fn serve(
        self,
        mut handle: mock::Handle<Request<Body>, Response<Body>>,
        mut watch: mpsc::UnboundedReceiver<(String, Vec<Value>)>,
    ) {
        let mut waiting: HashMap<String, Vec<SendResponse<Response<Body>>>> = HashMap::new();
        let mut batches: HashMap<String, VecDeque<Vec<Value>>> = HashMap::new();
        let mut version = 100;
        let mut stamp = |batch: Vec<Value>| {
            // Each event carries a newer resourceVersion, as the watcher resumes from it.
            let lines: Vec<String> = batch
                .into_iter()
                .map(|mut event| {
                    version += 1;
                    event["object"]["metadata"]["resourceVersion"] = json!(version.to_string());
                    event.to_string()
                })
                .collect();
            reply(200, lines.join("\n").into_bytes())
        };
        loop {
            tokio::select! {
                request = handle.next_request() => {
                    let Some((request, send)) = request else { return };
                    let (parts, body) = request.into_parts();
                    let bytes = body.collect_bytes().await.expect("a body");
                    let query = parts.uri.query().unwrap_or_default().to_owned();
                    let path = parts.uri.path().to_owned();
                    let namespace = path.split('/').nth(4).unwrap_or_default().to_owned();
                    if parts.method == Method::GET && path.ends_with("/pods") {
                        let _ = self.follows.send(Follow { namespace: namespace.clone(), query: query.clone() });
                        assert!(
                            query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dleoflow"),
                            "the watcher follows only Leoflow's pods: {query}"
                        );
                        if query.contains("watch=true") {
                            match batches.get_mut(&namespace).and_then(VecDeque::pop_front) {
                                Some(batch) => send.send_response(stamp(batch)),
                                None => waiting.entry(namespace).or_default().push(send),
                            }
                        } else {
                            send.send_response(reply(200, self.list(&namespace).into_bytes()));
                        }
                        continue;
                    }
                    let body = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).expect("a JSON body")
                    };
                    let seen = Seen { method: parts.method, path, body };
                    if seen.path.contains("/secrets") {
                        let (status, answer) = accept()(&seen);
                        send.send_response(reply(status, answer.to_string().into_bytes()));
                        let _ = self.secrets.send(seen);
                    } else {
                        let (status, answer) = (self.respond)(&seen);
                        send.send_response(reply(status, answer.to_string().into_bytes()));
                        let _ = self.requests.send(seen);
                    }
                }
                batch = watch.recv() => {
                    let Some((namespace, batch)) = batch else { return };
                    match waiting.get_mut(&namespace).and_then(Vec::pop) {
                        Some(send) => send.send_response(stamp(batch)),
                        None => batches.entry(namespace).or_default().push_back(batch),
                    }
                }
            }
        }
    }

    fn list(&self, namespace: &str) -> String {
        let items = self
            .listed
            .lock()
            .unwrap()
            .get(namespace)
            .cloned()
            .unwrap_or_default();
        json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": "100"},
            "items": items,
        })
        .to_string()
    }
}

fn reply(status: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a response")
}

fn agent() -> AgentConfig {
    AgentConfig {
        program: "/opt/leoflow/bin/leoflow".into(),
        endpoint: "http://host.k3d.internal:9099".into(),
        python: "/opt/venv/bin/python".into(),
        sdk_path: "/opt/leoflow/sdk".into(),
        project_dir: Some("/srv/project".into()),
        otlp_endpoint: None,
        ca_file: None,
    }
}

fn config() -> PodConfig {
    PodConfig {
        host_paths: vec!["/opt/leoflow".into(), "/srv/project".into()],
        defaults: PodDefaults {
            labels: BTreeMap::from([("team".into(), "data".into())]),
            ..PodDefaults::default()
        },
        ..PodConfig::new(
            Namespaces::One(NS.into()),
            "registry.local/leoflow-task:1",
            agent(),
        )
    }
}

/// Creates answer with the object (as the API server does, with a uid), other requests with a
/// success status.
fn accept() -> Respond {
    Box::new(|seen| match seen.method {
        Method::POST | Method::PATCH => {
            let mut object = seen.body.clone();
            object["metadata"]["uid"] = json!(Uuid::new_v4().to_string());
            (201, object)
        }
        _ => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
    })
}

/// A Status answer with `code` and `reason`.
fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

fn attempt(dag_id: &str, task_id: &str) -> Attempt {
    placed(dag_id, task_id, Placement::default())
}

fn placed(dag_id: &str, task_id: &str, placement: Placement) -> Attempt {
    Attempt {
        ti: TaskInstanceKey::mapped(dag_id, "scheduled__2026-01-01T00:00:00+00:00", task_id, 3),
        try_number: 2,
        attempt_token: Uuid::new_v4(),
        trace_parent: None,
        placement: Arc::new(placement),
    }
}

/// `pod` (as posted) with `status`, as the API server would show it later.
fn with_status(pod: &Value, status: Value) -> Value {
    let mut pod = pod.clone();
    pod["status"] = status;
    pod
}

/// `pod` in `phase`, its agent container in `state`.
fn with_agent_state(pod: &Value, phase: &str, state: Value) -> Value {
    with_status(
        pod,
        json!({
            "phase": phase,
            "containerStatuses": [{
                "name": "agent",
                "image": "registry.local/leoflow-task:1",
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "state": state,
            }],
        }),
    )
}

fn failed_oom(pod: &Value) -> Value {
    with_agent_state(
        pod,
        "Failed",
        json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
    )
}

fn name_of(pod: &Value) -> &str {
    pod["metadata"]["name"].as_str().expect("a name")
}

fn is_dns_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

#[tokio::test]
async fn dispatch_posts_a_secret_and_a_pod_running_the_agent() {
    let mut api = Harness::start(vec![], accept()).await;
    assert_eq!(api.executor.name(), "kubernetes");
    let dag_id = format!("Sales_Report_{}", "X".repeat(87));
    let task_id = format!("Load_To_Warehouse_{}", "y".repeat(82));
    assert_eq!((dag_id.len(), task_id.len()), (100, 100));
    let attempt = attempt(&dag_id, &task_id);
    let pod = api.dispatch(&attempt).await;

    assert_eq!(pod["kind"], "Pod");
    let name = name_of(&pod);
    assert!(is_dns_label(name), "{name}");
    assert_eq!(name, pod_name(&attempt.key()));
    assert!(name.starts_with("sales-report-x"), "{name}");
    assert!(name.contains("-load-to-warehouse-y"), "{name}");
    let id = attempt_id(&attempt.key().digest);
    assert!(name.ends_with(&format!("-2-{}", &id[..8])), "{name}");
    assert_eq!(pod["metadata"]["namespace"], NS);

    let labels = pod["metadata"]["labels"].as_object().expect("labels");
    for (key, value) in labels {
        assert!(is_label_value(value.as_str().unwrap()), "{key}: {value}");
    }
    assert_eq!(labels["app.kubernetes.io/managed-by"], "leoflow");
    assert_eq!(labels["leoflow.io/attempt"], id.as_str());
    assert_eq!(labels["leoflow.io/try-number"], "2");
    assert_eq!(labels["team"], "data");
    assert_eq!(labels["leoflow.io/dag-id"], dag_id[..63]);
    assert_eq!(labels["leoflow.io/task-id"], task_id[..63]);
    let annotations = &pod["metadata"]["annotations"];
    assert_eq!(annotations["leoflow.io/dag-id"], dag_id.as_str());
    assert_eq!(annotations["leoflow.io/task-id"], task_id.as_str());
    assert_eq!(
        annotations["leoflow.io/run-id"],
        "scheduled__2026-01-01T00:00:00+00:00"
    );
    assert_eq!(annotations["leoflow.io/map-index"], "3");
    assert_eq!(annotations["leoflow.io/try-number"], "2");
    assert_eq!(
        annotations["leoflow.io/attempt-digest"],
        attempt.key().digest.as_str()
    );

    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
    assert!(
        spec.get("activeDeadlineSeconds").is_none(),
        "no timeout, no deadline"
    );
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1);
    let container = &containers[0];
    assert_eq!(container["image"], "registry.local/leoflow-task:1");
    assert_eq!(container["command"], json!(["/opt/leoflow/bin/leoflow"]));
    assert_eq!(
        container["args"],
        json!([
            "agent",
            "--endpoint",
            "http://host.k3d.internal:9099",
            "--dag-id",
            dag_id,
            "--run-id",
            "scheduled__2026-01-01T00:00:00+00:00",
            "--task-id",
            task_id,
            "--map-index",
            "3",
            "--try-number",
            "2",
        ])
    );
    assert_eq!(
        container["env"],
        json!([
            {"name": "LEOFLOW_ATTEMPT_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": name, "key": "token", "optional": false}}},
            {"name": "LEOFLOW_PYTHON", "value": "/opt/venv/bin/python"},
            {"name": "LEOFLOW_SDK_PATH", "value": "/opt/leoflow/sdk"},
            {"name": "LEOFLOW_PROJECT_DIR", "value": "/srv/project"},
        ])
    );
    // The token is a credential: it is nowhere in the pod, in any spelling.
    let token = attempt.attempt_token;
    for spelling in [
        token.to_string(),
        token.simple().to_string(),
        base64::engine::general_purpose::STANDARD.encode(token.to_string()),
    ] {
        assert!(
            !pod.to_string().contains(&spelling),
            "{spelling} in the pod"
        );
    }

    assert_eq!(
        spec["volumes"],
        json!([
            {"name": "host-0", "hostPath": {"path": "/opt/leoflow"}},
            {"name": "host-1", "hostPath": {"path": "/srv/project"}},
        ])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([
            {"name": "host-0", "mountPath": "/opt/leoflow", "readOnly": true},
            {"name": "host-1", "mountPath": "/srv/project", "readOnly": true},
        ])
    );

    // The token is in the attempt's own Secret, created first, then owned by the pod.
    let secret = api.secret_request().await;
    assert_eq!(
        (secret.method, secret.path.as_str()),
        (Method::POST, SECRETS)
    );
    assert_eq!(secret.body["metadata"]["name"], name);
    assert_eq!(secret.body["immutable"], true);
    assert_eq!(
        secret.body["metadata"]["labels"]["leoflow.io/attempt"],
        id.as_str()
    );
    let data = &secret.body["data"];
    assert_eq!(data.as_object().unwrap().len(), 1, "only the token: {data}");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(decoded, token.to_string().into_bytes());
    let owned = api.secret_request().await;
    assert_eq!(
        (owned.method, owned.path.as_str()),
        (Method::PATCH, format!("{SECRETS}/{name}").as_str())
    );
    let owner = &owned.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Pod"), Some(name))
    );
    assert!(!owner["uid"].as_str().unwrap().is_empty(), "{owner}");

    // The same attempt always makes the same pod; another attempt another name.
    assert_eq!(api.dispatch(&attempt).await["metadata"]["name"], name);
    let other = api.dispatch(&self::attempt(&dag_id, &task_id)).await;
    assert_ne!(name_of(&other), name);
    assert!(
        api.exits.try_recv().is_err(),
        "accepted creates are no exits"
    );
}

#[tokio::test]
async fn an_oom_killed_pod_is_reported_once_then_deleted() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "transform");
    let pod = api.dispatch(&attempt).await;
    let name = name_of(&pod).to_owned();

    let running = with_status(&pod, json!({"phase": "Running"}));
    let failed = failed_oom(&pod);
    api.events(&[
        ("ADDED", &pod),
        ("MODIFIED", &running),
        ("MODIFIED", &failed),
    ]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(exit.detail.contains(&name), "{}", exit.detail);
    assert!(exit.detail.contains("Failed"), "{}", exit.detail);
    assert!(exit.detail.contains("OOMKilled"), "{}", exit.detail);
    assert!(exit.detail.contains("137"), "{}", exit.detail);

    let delete = api.request().await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(delete.path, format!("{PODS}/{name}"));
    assert_eq!(delete.body["propagationPolicy"], "Background");

    // The pod shows up again (deletion under way, a relist): no second exit. A later pod's
    // exit proves the repeats were handled first.
    let mut deleting = failed.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    api.events(&[("MODIFIED", &failed), ("MODIFIED", &deleting)]);
    let later = attempt_for_sentinel(&mut api).await;
    let exit = api.exit().await;
    assert_eq!(
        exit.attempt,
        later.key(),
        "no second exit for {name}: {}",
        exit.detail
    );
}

/// Dispatches another attempt and fails its pod; returns that attempt.
async fn attempt_for_sentinel(api: &mut Harness) -> Attempt {
    let later = attempt("etl", "sentinel");
    let pod = api.dispatch(&later).await;
    api.events(&[("MODIFIED", &failed_oom(&pod))]);
    later
}

#[tokio::test]
async fn a_pod_deleted_after_its_report_is_not_reported_again() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    let succeeded = with_status(
        &pod,
        json!({
            "phase": "Succeeded",
            "containerStatuses": [{
                "name": "agent", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
        }),
    );
    api.events(&[("MODIFIED", &succeeded)]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail.contains("Succeeded") && exit.detail.contains("code 0"),
        "{}",
        exit.detail
    );
    assert_eq!(api.request().await.method, Method::DELETE);
    api.events(&[("DELETED", &succeeded)]);
    let later = attempt_for_sentinel(&mut api).await;
    assert_eq!(api.exit().await.attempt, later.key());
}

#[tokio::test]
async fn a_pod_deleted_before_it_finished_is_reported() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    api.events(&[("DELETED", &with_status(&pod, json!({"phase": "Running"})))]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail.contains("deleted before it finished") && exit.detail.contains(name_of(&pod)),
        "{}",
        exit.detail
    );
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_ends_the_attempt() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "extract");
    let pod = api.dispatch(&attempt).await;
    let waiting = |reason: &str| {
        with_agent_state(
            &pod,
            "Pending",
            json!({"waiting": {
                "reason": reason,
                "message": "failed to pull image \"registry.local/leoflow-task:1\": not found",
            }}),
        )
    };
    // Still being created: not over.
    api.events(&[("MODIFIED", &waiting("ContainerCreating"))]);
    api.events(&[("MODIFIED", &waiting("ErrImagePull"))]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    for part in [
        name_of(&pod),
        "ErrImagePull",
        "registry.local/leoflow-task:1",
        "not found",
    ] {
        assert!(exit.detail.contains(part), "{part} in {}", exit.detail);
    }
    let delete = api.request().await;
    assert_eq!(
        (delete.method, delete.path),
        (Method::DELETE, format!("{PODS}/{}", name_of(&pod)))
    );
}

#[tokio::test]
async fn terminate_deletes_the_pod_with_a_grace_period() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "slow");
    let pod = api.dispatch(&attempt).await;
    api.executor.terminate(&attempt.key(), "timed out");
    let delete = api.request().await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(delete.path, format!("{PODS}/{}", name_of(&pod)));
    assert_eq!(delete.body["gracePeriodSeconds"], 5);
}

#[tokio::test]
async fn a_refused_create_is_an_exit_with_the_api_message() {
    let message = "pods \"x\" is forbidden: User \"system:serviceaccount:leoflow:cp\" \
                   cannot create resource \"pods\" in API group \"\" in the namespace \"tasks\"";
    let respond: Respond = Box::new(move |_| {
        (
            403,
            json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "Forbidden",
                "details": {"kind": "pods"},
                "code": 403,
            }),
        )
    });
    let mut api = Harness::start(vec![], respond).await;
    let attempt = attempt("etl", "load");
    api.dispatch(&attempt).await;
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail.contains(&pod_name(&attempt.key())),
        "{}",
        exit.detail
    );
    assert!(exit.detail.contains(message), "{}", exit.detail);
    assert!(exit.detail.contains("Forbidden"), "{}", exit.detail);
}

fn already_exists(seen: &Seen) -> (u16, Value) {
    (
        409,
        json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": format!("pods {:?} already exists", seen.body["metadata"]["name"]),
            "reason": "AlreadyExists",
            "code": 409,
        }),
    )
}

#[tokio::test]
async fn an_existing_pod_of_the_same_attempt_is_adopted() {
    let posted = std::sync::Mutex::new(Value::Null);
    let respond: Respond = Box::new(move |seen| match seen.method {
        Method::POST => {
            *posted.lock().unwrap() = seen.body.clone();
            already_exists(seen)
        }
        // The pod exists, made by an earlier dispatch of this very attempt.
        _ => (200, posted.lock().unwrap().clone()),
    });
    let mut api = Harness::start(vec![], respond).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    let get = api.request().await;
    assert_eq!(
        (get.method, get.path),
        (Method::GET, format!("{PODS}/{}", name_of(&pod)))
    );
    // Adopted: the attempt goes on, and the watcher reports the pod's end as usual.
    api.events(&[("MODIFIED", &failed_oom(&pod))]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(exit.detail.contains("OOMKilled"), "{}", exit.detail);
}

#[tokio::test]
async fn an_existing_pod_of_another_attempt_is_an_exit() {
    let respond: Respond = Box::new(|seen| match seen.method {
        Method::POST => already_exists(seen),
        _ => {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": "x", "labels": {"leoflow.io/attempt": "someone-else"}}});
            pod["metadata"]["name"] = json!(seen.path.rsplit('/').next());
            (200, pod)
        }
    });
    let mut api = Harness::start(vec![], respond).await;
    let attempt = attempt("etl", "load");
    api.dispatch(&attempt).await;
    assert_eq!(api.request().await.method, Method::GET);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(exit.detail.contains("another attempt"), "{}", exit.detail);
}

#[tokio::test]
async fn pods_of_attempts_from_before_a_restart_are_reported() {
    // The pod as the previous control plane created it.
    let attempt = attempt("Nightly_Build", "compile.all");
    let pod = {
        let mut before = Harness::start(vec![], accept()).await;
        before.dispatch(&attempt).await
    };
    let name = name_of(&pod).to_owned();
    let failed = failed_oom(&pod);

    let mut api = Harness::start(vec![failed], accept()).await;
    let exit = api.exit().await;
    assert_eq!(
        exit.attempt,
        attempt.key(),
        "rebuilt from the pod's metadata"
    );
    assert!(
        exit.detail.contains(&name) && exit.detail.contains("OOMKilled"),
        "{}",
        exit.detail
    );
    let delete = api.request().await;
    assert_eq!(
        (delete.method, delete.path),
        (Method::DELETE, format!("{PODS}/{name}"))
    );
}

#[tokio::test]
async fn an_unrelated_pod_is_left_alone() {
    // A pod carrying the managed-by label but nothing that says which attempt it ran.
    let stray = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "stray", "namespace": NS, "labels": {
            "app.kubernetes.io/managed-by": "leoflow",
            "leoflow.io/attempt": attempt_id(&leoflow_events::AttemptDigest::of(&Uuid::new_v4())),
        }},
        "status": {"phase": "Failed"},
    });
    let mut api = Harness::start(vec![stray], accept()).await;
    let later = attempt_for_sentinel(&mut api).await;
    assert_eq!(api.exit().await.attempt, later.key());
    // The one request after the sentinel's create is the sentinel's delete, not the stray's.
    let delete = api.request().await;
    assert_eq!(delete.path, format!("{PODS}/{}", pod_name(&later.key())));
}

/// Whether one more try fits under the executor's cap.
fn has_room(executor: &PodExecutor, placement: &Placement) -> bool {
    executor.room(placement).is_none_or(|room| room.free > 0)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn each_tenant_s_pods_run_in_its_namespace_with_its_artifact_s_image() {
    let config = PodConfig {
        namespaces: Namespaces::PerTenant(BTreeMap::from([
            ("default".into(), NS.into()),
            ("team-a".into(), "team-a-tasks".into()),
        ])),
        ..config()
    };
    let mut api = Harness::start_with(config, vec![], accept()).await;
    let mut seen_watches = std::collections::BTreeSet::new();
    while seen_watches.len() < 2 {
        seen_watches.insert(api.follow().await.namespace);
    }
    assert_eq!(
        seen_watches,
        ["tasks", "team-a-tasks"].map(String::from).into(),
        "a watcher per namespace"
    );

    let image = "registry.local/team-a/etl@sha256:".to_owned() + &"ab".repeat(32);
    let theirs = placed(
        "etl",
        "load",
        Placement {
            tenant: "team-a".into(),
            image: Some(image.clone()),
            ..Placement::default()
        },
    );
    api.executor.dispatch(theirs.clone());
    let seen = api.request().await;
    assert_eq!(seen.path, "/api/v1/namespaces/team-a-tasks/pods");
    assert_eq!(seen.body["metadata"]["namespace"], "team-a-tasks");
    assert_eq!(seen.body["spec"]["containers"][0]["image"], image.as_str());
    assert_eq!(
        seen.body["metadata"]["labels"]["leoflow.io/tenant"],
        "team-a"
    );
    let secret = api.secret_request().await;
    assert_eq!(secret.path, "/api/v1/namespaces/team-a-tasks/secrets");

    // A tenant with no namespace gets no pod: its try fails at once, saying why.
    let stray = placed(
        "etl",
        "load",
        Placement {
            tenant: "team-b".into(),
            ..Placement::default()
        },
    );
    api.executor.dispatch(stray.clone());
    let exit = api.exit().await;
    assert_eq!(exit.attempt, stray.key());
    assert!(
        exit.detail.contains("\"team-b\"") && exit.detail.contains("kubernetes.namespaces"),
        "{}",
        exit.detail
    );
}

#[tokio::test]
async fn leoflow_yaml_settings_win_over_the_server_defaults() {
    let defaults: PodDefaults = PodDefaults {
        service_account: Some("leoflow-task".into()),
        node_selector: BTreeMap::from([("pool".into(), "general".into())]),
        tolerations: vec![
            serde_json::from_value(json!({"key": "general", "operator": "Exists"})).unwrap(),
        ],
        labels: BTreeMap::from([
            ("team".into(), "data".into()),
            ("cost".into(), "shared".into()),
        ]),
        annotations: BTreeMap::from([("owner".into(), "platform".into())]),
        resources: Some(serde_json::from_value(json!({"requests": {"cpu": "100m"}})).unwrap()),
        ..PodDefaults::default()
    };
    let config = PodConfig {
        defaults,
        agent_ca: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        ..config()
    };
    let mut api = Harness::start_with(config, vec![], accept()).await;
    let task = placed(
        "etl",
        "load",
        Placement {
            resources: Some(json!({"cpu": "2", "memory": "1Gi"})),
            pod: Some(json!({
                "node_selector": {"pool": "batch"},
                "service_account": "etl-runner",
                "labels": {"cost": "etl"},
                "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [
                        {"key": "zone", "operator": "In", "values": ["a"]}]}}]}},
            })),
            execution_timeout: Some(600.0),
            ..Placement::default()
        },
    );
    let pod = api.dispatch(&task).await;
    let spec = &pod["spec"];
    assert_eq!(spec["nodeSelector"], json!({"pool": "batch"}));
    assert_eq!(spec["serviceAccountName"], "etl-runner");
    assert_eq!(
        spec["tolerations"],
        json!([{"key": "general", "operator": "Exists"}]),
        "the default stays"
    );
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        1
    );
    assert_eq!(
        spec["activeDeadlineSeconds"], 900,
        "the timeout and a margin"
    );
    let labels = &pod["metadata"]["labels"];
    assert_eq!(
        (labels["team"].as_str(), labels["cost"].as_str()),
        (Some("data"), Some("etl"))
    );
    assert_eq!(pod["metadata"]["annotations"]["owner"], "platform");
    let container = &spec["containers"][0];
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"memory": "1Gi"}})
    );
    // The agents' CA comes from the attempt's Secret too.
    let env = container["env"].as_array().unwrap();
    assert!(
        env.contains(
            &json!({"name": "LEOFLOW_AGENT_CA_FILE", "value": "/var/run/leoflow/agent-tls/ca.crt"})
        ),
        "{env:?}"
    );
    assert!(container["volumeMounts"].as_array().unwrap().contains(
        &json!({"name": "agent-tls", "mountPath": "/var/run/leoflow/agent-tls", "readOnly": true})
    ));
    let secret = api.secret_request().await;
    assert!(secret.body["data"]["ca.crt"].is_string(), "{}", secret.body);

    // A setting Kubernetes cannot take fails the try, naming it; nothing is created.
    let wrong = placed(
        "etl",
        "load",
        Placement {
            pod: Some(json!({"tolerations": "all"})),
            ..Placement::default()
        },
    );
    api.executor.dispatch(wrong.clone());
    let exit = api.exit().await;
    assert_eq!(exit.attempt, wrong.key());
    assert!(
        exit.detail.contains("task load's pod.tolerations"),
        "{}",
        exit.detail
    );
}

#[tokio::test]
async fn pods_per_namespace_are_capped() {
    let config = PodConfig {
        max_pods_per_namespace: Some(2),
        ..config()
    };
    let mut api = Harness::start_with(config, vec![], accept()).await;
    let placement = Placement::default();
    assert!(has_room(&api.executor, &placement));
    let first = api.dispatch(&attempt("etl", "a")).await;
    assert!(has_room(&api.executor, &placement));
    api.dispatch(&attempt("etl", "b")).await;
    assert!(!has_room(&api.executor, &placement), "two in flight");
    assert_eq!(api.executor.pods_in_flight(NS), 2);
    // A pod's end frees its place before the exit is reported.
    api.events(&[("MODIFIED", &failed_oom(&first))]);
    api.exit().await;
    assert!(has_room(&api.executor, &placement));
}

#[tokio::test]
async fn an_overloaded_api_server_is_asked_again_with_backoff() {
    let answers = Mutex::new(VecDeque::from([429, 503, 201]));
    let respond: Respond = Box::new(move |seen| {
        let code = answers.lock().unwrap().pop_front().unwrap_or(201);
        match code {
            201 => accept()(seen),
            429 => (
                429,
                status(
                    429,
                    "TooManyRequests",
                    "too many requests, please try again later",
                ),
            ),
            _ => (
                503,
                status(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                ),
            ),
        }
    });
    let mut api = Harness::start(vec![], respond).await;
    let started = tokio::time::Instant::now();
    api.dispatch(&attempt("etl", "load")).await;
    api.request().await;
    api.request().await;
    let waited = started.elapsed();
    // 200 ms, then 400 ms.
    assert!(waited >= Duration::from_millis(550), "{waited:?}");
    assert!(api.exits.try_recv().is_err(), "created in the end: no exit");
    // The Secret was created once, and made the pod's.
    assert_eq!(api.secret_request().await.method, Method::POST);
    assert_eq!(api.secret_request().await.method, Method::PATCH);
}

#[tokio::test]
async fn an_api_server_that_stays_overloaded_fails_the_try_and_removes_its_secret() {
    let config = PodConfig {
        create_retry_budget: Duration::from_millis(700),
        ..config()
    };
    let respond: Respond = Box::new(|_| (429, status(429, "TooManyRequests", "slow down")));
    let mut api = Harness::start_with(config, vec![], respond).await;
    let attempt = attempt("etl", "load");
    api.executor.dispatch(attempt.clone());
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail.contains("slow down") && exit.detail.contains("429"),
        "{}",
        exit.detail
    );
    let mut posts = 0;
    while let Ok(seen) = api.requests.try_recv() {
        assert_eq!(seen.method, Method::POST);
        posts += 1;
    }
    assert!(posts >= 3, "asked {posts} times");
    assert_eq!(api.secret_request().await.method, Method::POST);
    let removed = api.secret_request().await;
    assert_eq!(removed.method, Method::DELETE, "no Secret is left behind");
    assert!(has_room(&api.executor, &Placement::default()));
}

#[tokio::test]
async fn an_evicted_pod_fails_its_try_saying_so() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    let evicted = with_status(
        &pod,
        json!({"phase": "Failed", "reason": "Evicted",
               "message": "The node was low on resource: memory."}),
    );
    api.events(&[("MODIFIED", &evicted)]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail
            .contains("was evicted by its node: The node was low on resource: memory."),
        "{}",
        exit.detail
    );
    assert_eq!(api.request().await.method, Method::DELETE);
}

#[tokio::test]
async fn a_pod_past_its_deadline_fails_its_try_saying_so() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = placed(
        "etl",
        "load",
        Placement {
            execution_timeout: Some(60.0),
            ..Placement::default()
        },
    );
    let pod = api.dispatch(&attempt).await;
    let over = with_status(
        &pod,
        json!({"phase": "Failed", "reason": "DeadlineExceeded",
        "message": "Pod was active on the node longer than the specified deadline"}),
    );
    api.events(&[("MODIFIED", &over)]);
    let exit = api.exit().await;
    assert!(
        exit.detail.contains("ran past its deadline of 360 s"),
        "{}",
        exit.detail
    );
}

#[tokio::test]
async fn an_oom_kill_names_the_memory_limit() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = placed(
        "etl",
        "load",
        Placement {
            resources: Some(json!({"memory": "256Mi"})),
            ..Placement::default()
        },
    );
    let pod = api.dispatch(&attempt).await;
    api.events(&[("MODIFIED", &failed_oom(&pod))]);
    let exit = api.exit().await;
    assert!(
        exit.detail.contains("more memory than its limit of 256Mi")
            && exit.detail.contains("resources.memory"),
        "{}",
        exit.detail
    );
}

#[tokio::test]
async fn a_pod_on_a_lost_node_fails_its_try_and_is_force_deleted() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    let mut lost = with_status(
        &pod,
        json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False", "reason": "NodeNotReady"},
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
             "message": "Taint manager: deleting due to NoExecute taint"},
        ]}),
    );
    lost["spec"]["nodeName"] = json!("node-7");
    lost["metadata"]["deletionTimestamp"] = json!(now());
    api.events(&[("MODIFIED", &lost)]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail.contains("lost with its node node-7"),
        "{}",
        exit.detail
    );
    let delete = api.request().await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(
        delete.body["gracePeriodSeconds"], 0,
        "no kubelet will confirm"
    );
}

#[tokio::test]
async fn a_pod_no_node_takes_fails_its_try_after_the_deadline() {
    let config = PodConfig {
        unschedulable_timeout: Duration::from_millis(1500),
        ..config()
    };
    let mut api = Harness::start_with(config, vec![], accept()).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    let pending = with_status(
        &pod,
        json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "lastTransitionTime": now(),
            "message": "0/3 nodes are available: 3 Insufficient memory.",
        }]}),
    );
    let started = tokio::time::Instant::now();
    api.events(&[("MODIFIED", &pending)]);
    let exit = api.exit().await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(exit.attempt, attempt.key());
    assert!(
        exit.detail.contains(
            "could not be scheduled within 1 s: 0/3 nodes are available: 3 Insufficient memory."
        ),
        "{}",
        exit.detail
    );
    assert_eq!(api.request().await.method, Method::DELETE);
    // Scheduled after all (the delete raced the scheduler): no second report.
    api.events(&[("MODIFIED", &with_status(&pod, json!({"phase": "Running"})))]);
    let later = attempt_for_sentinel(&mut api).await;
    assert_eq!(api.exit().await.attempt, later.key());
}

#[tokio::test]
async fn bookmarks_and_dropped_watches_resume_where_they_were() {
    let mut api = Harness::start(vec![], accept()).await;
    let list = api.follow().await;
    assert!(
        !list.query.contains("watch=true"),
        "lists first: {}",
        list.query
    );
    let first = api.follow().await;
    assert!(
        first.query.contains("watch=true") && first.query.contains("allowWatchBookmarks=true"),
        "{}",
        first.query
    );
    // A bookmark alone, then the watch drops (each batch is one response).
    let bookmark = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {}});
    api.events(&[("BOOKMARK", &bookmark)]);
    let resumed = api.follow().await;
    assert!(
        resumed.query.contains("watch=true"),
        "watches again without a list: {}",
        resumed.query
    );
    assert!(
        resumed.query.contains("resourceVersion=101"),
        "from the bookmark: {}",
        resumed.query
    );
    // Events after the bookmark still arrive.
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    api.events(&[("MODIFIED", &failed_oom(&pod))]);
    assert_eq!(api.exit().await.attempt, attempt.key());
}

#[tokio::test]
async fn a_410_gone_relists_and_reports_what_ended_meanwhile() {
    let mut api = Harness::start(vec![], accept()).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    api.events(&[("MODIFIED", &with_status(&pod, json!({"phase": "Running"})))]);
    // While the watch was away, the pod ended; the server no longer has the watch's version.
    api.listed
        .lock()
        .unwrap()
        .insert(NS.into(), vec![failed_oom(&pod)]);
    let gone = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "too old resource version: 101 (200)", "reason": "Expired", "code": 410});
    api.events(&[("ERROR", &gone)]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert!(exit.detail.contains("OOMKilled"), "{}", exit.detail);
    let mut relisted = false;
    while let Ok(follow) = api.follows.try_recv() {
        relisted |= !follow.query.contains("watch=true");
    }
    assert!(relisted, "a 410 makes the watcher list again");
}

#[tokio::test]
async fn an_adopted_pod_counts_and_its_end_is_reported() {
    // A pod another scheduler (the leader before) started, still running.
    let attempt = attempt("etl", "load");
    let pod = {
        let mut before = Harness::start(vec![], accept()).await;
        before.dispatch(&attempt).await
    };
    let running = with_status(&pod, json!({"phase": "Running"}));
    let config = PodConfig {
        max_pods_per_namespace: Some(1),
        ..config()
    };
    let mut api = Harness::start_with(config, vec![running], accept()).await;
    api.follow().await;
    api.follow().await;
    assert_eq!(api.executor.pods_in_flight(NS), 1, "adopted");
    assert!(!has_room(&api.executor, &Placement::default()));
    api.events(&[("MODIFIED", &failed_oom(&pod))]);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key(), "rebuilt from its annotations");
    assert!(has_room(&api.executor, &Placement::default()));
}

#[tokio::test]
async fn only_the_leading_scheduler_s_executor_follows_pods() {
    let attempt = attempt("etl", "load");
    let pod = {
        let mut before = Harness::start(vec![], accept()).await;
        before.dispatch(&attempt).await
    };
    let (leads, leading) = tokio::sync::watch::channel(false);
    let mut api = Harness::following(config(), vec![failed_oom(&pod)], accept(), leading).await;
    // A standby neither lists nor watches, so it reports and deletes nothing.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.follows.try_recv().is_err(), "a standby follows no pods");
    assert!(api.exits.try_recv().is_err());

    // It leads: it lists, adopts, and reports the pod that ended while nobody watched.
    leads.send_replace(true);
    let exit = api.exit().await;
    assert_eq!(exit.attempt, attempt.key());
    assert_eq!(api.request().await.method, Method::DELETE);

    // It steps down: its watch goes; what happens meanwhile is the next leader's to report.
    leads.send_replace(false);
    tokio::time::sleep(Duration::from_millis(200)).await;
    while api.follows.try_recv().is_ok() {}
    let later = self::attempt("etl", "later");
    let later_pod = api.dispatch(&later).await;
    api.listed
        .lock()
        .unwrap()
        .insert(NS.into(), vec![failed_oom(&later_pod)]);
    api.events(&[("MODIFIED", &failed_oom(&later_pod))]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(api.exits.try_recv().is_err(), "no report while standing by");
    // Leading again: a fresh list finds it.
    leads.send_replace(true);
    assert_eq!(api.exit().await.attempt, later.key());
}

#[tokio::test]
async fn a_reported_pod_whose_delete_failed_is_deleted_when_a_list_finds_it_again() {
    let deletes = Mutex::new(0);
    let respond: Respond = Box::new(move |seen| match seen.method {
        Method::DELETE => {
            let mut count = deletes.lock().unwrap();
            *count += 1;
            match *count {
                1 => (
                    500,
                    status(500, "InternalError", "etcdserver: request timed out"),
                ),
                _ => accept()(seen),
            }
        }
        _ => accept()(seen),
    });
    let mut api = Harness::start(vec![], respond).await;
    let attempt = attempt("etl", "load");
    let pod = api.dispatch(&attempt).await;
    let failed = failed_oom(&pod);
    api.events(&[("MODIFIED", &failed)]);
    assert_eq!(api.exit().await.attempt, attempt.key());
    let first = api.request().await;
    assert_eq!(first.method, Method::DELETE, "answered 500: the pod stays");

    // The watch expires; the list still has the pod: its delete is asked again, once, and
    // the attempt is not reported twice.
    api.listed.lock().unwrap().insert(NS.into(), vec![failed]);
    let gone = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": "too old resource version", "reason": "Expired", "code": 410});
    api.events(&[("ERROR", &gone)]);
    let again = api.request().await;
    assert_eq!(
        (again.method, again.path),
        (Method::DELETE, format!("{PODS}/{}", name_of(&pod)))
    );
    let later = attempt_for_sentinel(&mut api).await;
    assert_eq!(api.exit().await.attempt, later.key(), "no second report");
}

fn trigger(id: &str, tenant: &str, image: Option<&str>) -> TriggerSpec {
    TriggerSpec {
        id: id.into(),
        classpath: "greet.Hi".into(),
        kwargs: json!({}),
        repeat: false,
        dag_id: "etl".into(),
        tenant: tenant.into(),
        image: image.map(str::to_owned),
        paths: Vec::new(),
    }
}

#[tokio::test]
async fn a_triggerer_runs_as_a_pod_of_its_dag_s_image_calling_back_with_its_secret_s_token() {
    let config = PodConfig {
        namespaces: Namespaces::PerTenant(BTreeMap::from([("default".into(), NS.into())])),
        ..config()
    };
    let mut api = Harness::start_with(config, vec![], accept()).await;
    let (reports_tx, mut reports) = mpsc::unbounded_channel();
    let triggerer = api.executor.triggerer(reports_tx);
    let image = "registry.local/etl:7";
    triggerer.start(trigger("t1", "default", Some(image)));

    let pod = api.request().await;
    assert_eq!((pod.method, pod.path.as_str()), (Method::POST, PODS));
    let pod = pod.body;
    let name = name_of(&pod).to_owned();
    assert!(
        name.starts_with("leoflow-triggerer-") && is_dns_label(&name),
        "{name}"
    );
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], image);
    assert_eq!(container["command"], json!(["/opt/leoflow/bin/leoflow"]));
    assert_eq!(
        container["args"],
        json!(["triggerer", "--endpoint", "http://host.k3d.internal:9099"])
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let labels = &pod["metadata"]["labels"];
    assert_eq!(labels["app.kubernetes.io/managed-by"], "leoflow");
    assert_eq!(labels["team"], "data", "the pods' defaults apply");
    assert!(
        labels.get("leoflow.io/attempt").is_none(),
        "no try's pod: {labels}"
    );
    assert!(is_label_value(
        labels["leoflow.io/triggerer"].as_str().unwrap()
    ));
    let env = container["env"].as_array().unwrap();
    let token = env
        .iter()
        .find(|var| var["name"] == "LEOFLOW_TRIGGERER_TOKEN")
        .unwrap();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({"name": name, "key": "token", "optional": false})
    );
    assert!(env.contains(&json!({"name": "LEOFLOW_PROJECT_DIR", "value": "/srv/project"})));
    let secret = api.secret_request().await;
    assert_eq!(
        (secret.method, secret.path.as_str()),
        (Method::POST, SECRETS)
    );
    assert_eq!(secret.body["metadata"]["name"], name.as_str());
    let token = base64::engine::general_purpose::STANDARD
        .decode(secret.body["data"]["token"].as_str().unwrap())
        .unwrap();
    Uuid::parse_str(std::str::from_utf8(&token).unwrap()).expect("a token");

    // A tenant with no namespace gets no pod: its trigger fails at once, saying why.
    triggerer.start(trigger("t2", "team-b", None));
    let report = timeout(WAIT, reports.recv()).await.unwrap().unwrap();
    assert_eq!(report.id, "t2");
    assert!(
        matches!(&report.outcome, TriggerOutcome::Failed(why) if why.contains("team-b") && why.contains("kubernetes.namespaces")),
        "{:?}",
        report.outcome
    );
}
