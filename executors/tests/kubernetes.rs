//! The pod executor against a scripted Kubernetes API server (`tower_test::mock`): no cluster
//! runs here, so these tests check what the executor asks of the API and what it makes of
//! the answers and the watch events.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use http::{Method, Request, Response};
use kube::client::Body;
use leoflow_events::TaskInstanceKey;
use leoflow_executors::kubernetes::{PodConfig, PodExecutor, attempt_id, pod_name};
use leoflow_executors::{AgentConfig, Attempt, AttemptExit, Executor};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower_test::mock::{self, SendResponse};
use uuid::Uuid;

const NS: &str = "tasks";
const PODS: &str = "/api/v1/namespaces/tasks/pods";
const WAIT: Duration = Duration::from_secs(10);

/// A request the executor made (list and watch requests are the fake server's business).
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
}

/// How the fake server answers a create, delete or get: status and JSON body.
type Respond = Box<dyn Fn(&Seen) -> (u16, Value) + Send>;

struct Harness {
    executor: PodExecutor,
    requests: mpsc::UnboundedReceiver<Seen>,
    watch: mpsc::UnboundedSender<Vec<Value>>,
    exits: mpsc::UnboundedReceiver<AttemptExit>,
}

impl Harness {
    /// An executor over a fake API server whose pod list holds `listed`.
    async fn start(listed: Vec<Value>, respond: Respond) -> Self {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let (requests_tx, requests) = mpsc::unbounded_channel();
        let (watch, watch_rx) = mpsc::unbounded_channel();
        tokio::spawn(serve(handle, listed, respond, requests_tx, watch_rx));
        let client = kube::Client::new(service, "default");
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let executor = PodExecutor::start(client, config(), exits_tx).await;
        Self {
            executor,
            requests,
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

    async fn exit(&mut self) -> AttemptExit {
        timeout(WAIT, self.exits.recv())
            .await
            .expect("an exit in time")
            .expect("the executor runs")
    }

    /// Sends watch events (`type`, pod) as one watch response.
    fn events(&self, events: &[(&str, &Value)]) {
        let events = events
            .iter()
            .map(|(kind, pod)| json!({"type": kind, "object": pod}))
            .collect();
        self.watch.send(events).expect("the server runs");
    }

    /// Dispatches `attempt` and returns the pod it posted.
    async fn dispatch(&mut self, attempt: &Attempt) -> Value {
        self.executor.dispatch(attempt.clone());
        let seen = self.request().await;
        assert_eq!((seen.method, seen.path.as_str()), (Method::POST, PODS));
        seen.body
    }
}

fn config() -> PodConfig {
    PodConfig {
        namespace: NS.into(),
        image: "registry.local/leoflow-task:1".into(),
        agent: AgentConfig {
            program: "/opt/leoflow/bin/leoflow".into(),
            endpoint: "http://host.k3d.internal:9099".into(),
            python: "/opt/venv/bin/python".into(),
            sdk_path: "/opt/leoflow/sdk".into(),
            project_dir: Some("/srv/project".into()),
            otlp_endpoint: None,
        },
        host_paths: vec!["/opt/leoflow".into(), "/srv/project".into()],
        labels: BTreeMap::from([("team".into(), "data".into())]),
    }
}

/// Creates answer with the pod (as the API server does), deletes with a success status.
fn accept() -> Respond {
    Box::new(|seen| match seen.method {
        Method::POST => (201, seen.body.clone()),
        _ => (
            200,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
        ),
    })
}

/// Plays the API server: lists `listed`, hands watch batches to the watcher one response each
/// (the watcher then watches again), records other requests and answers them with `respond`.
async fn serve(
    mut handle: mock::Handle<Request<Body>, Response<Body>>,
    listed: Vec<Value>,
    respond: Respond,
    requests: mpsc::UnboundedSender<Seen>,
    mut watch: mpsc::UnboundedReceiver<Vec<Value>>,
) {
    let mut waiting: Vec<SendResponse<Response<Body>>> = Vec::new();
    let mut batches: VecDeque<Vec<Value>> = VecDeque::new();
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
                if parts.method == Method::GET && query.contains("watch=true") {
                    match batches.pop_front() {
                        Some(batch) => send.send_response(stamp(batch)),
                        None => waiting.push(send),
                    }
                } else if parts.method == Method::GET && path == PODS {
                    assert!(
                        query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Dleoflow"),
                        "the watcher lists only Leoflow's pods: {query}"
                    );
                    let list = json!({
                        "apiVersion": "v1",
                        "kind": "PodList",
                        "metadata": {"resourceVersion": "100"},
                        "items": listed,
                    });
                    send.send_response(reply(200, list.to_string().into_bytes()));
                } else {
                    let body = if bytes.is_empty() {
                        Value::Null
                    } else {
                        serde_json::from_slice(&bytes).expect("a JSON body")
                    };
                    let seen = Seen { method: parts.method, path, body };
                    let (status, answer) = respond(&seen);
                    send.send_response(reply(status, answer.to_string().into_bytes()));
                    let _ = requests.send(seen);
                }
            }
            batch = watch.recv() => {
                let Some(batch) = batch else { return };
                match waiting.pop() {
                    Some(send) => send.send_response(stamp(batch)),
                    None => batches.push_back(batch),
                }
            }
        }
    }
}

fn reply(status: u16, body: Vec<u8>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("a response")
}

fn attempt(dag_id: &str, task_id: &str) -> Attempt {
    Attempt {
        ti: TaskInstanceKey::mapped(dag_id, "scheduled__2026-01-01T00:00:00+00:00", task_id, 3),
        try_number: 2,
        attempt_token: Uuid::new_v4(),
        trace_parent: None,
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
async fn dispatch_posts_one_pod_running_the_agent() {
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

    let spec = &pod["spec"];
    assert_eq!(spec["restartPolicy"], "Never");
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
    let token = attempt.attempt_token.to_string();
    assert_eq!(
        container["env"],
        json!([
            {"name": "LEOFLOW_ATTEMPT_TOKEN", "value": token},
            {"name": "LEOFLOW_PYTHON", "value": "/opt/venv/bin/python"},
            {"name": "LEOFLOW_SDK_PATH", "value": "/opt/leoflow/sdk"},
            {"name": "LEOFLOW_PROJECT_DIR", "value": "/srv/project"},
        ])
    );
    // The token is a credential: the environment is its only place in the pod.
    assert_eq!(pod.to_string().matches(&token).count(), 1);
    assert!(
        !pod.to_string()
            .contains(&attempt.attempt_token.simple().to_string())
    );

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
