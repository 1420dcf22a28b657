//! Pro's pod executor against a scripted Kubernetes API server: how fast one scheduler's
//! executor creates pods, how fast it handles the watch events of their ends, and its memory
//! with 5,000 pods in flight. No cluster runs here, so the API server is scripted: this same
//! program in another process (`pod_executor serve`), answering creates at once over HTTP on
//! loopback, and streaming each pod's events to the executor's watch when told to.
//!
//! One round: the executor (the scheduler's side, in this process) is handed `--pods`
//! attempts in one burst; each costs a Secret POST, a pod POST and the Secret's owner PATCH.
//! *Pods created per second* is the burst over the time until the server holds every pod.
//! Then the server sends, for every pod, a `Running` and a `Succeeded` event on the watch;
//! *watch events per second* is those events over the time until the executor has reported
//! every pod's end (and asked to delete it). *Memory* is this process's resident set with
//! every pod in flight, less what it was before the executor started.
//!
//! ```sh
//! cargo run --release -p leoflow-bench --bin pod_executor [-- --pods 5000 --rounds 3]
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use leoflow_bench::machine_description;
use leoflow_events::TaskInstanceKey;
use leoflow_executors::kubernetes::{Namespaces, PodConfig, PodExecutor};
use leoflow_executors::{AgentConfig, Attempt, AttemptExit, Executor};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

const NAMESPACE: &str = "tasks";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("serve") => return serve().await,
        Some("round") => {
            let pods: usize = args.get(2).context("a number of pods")?.parse()?;
            let result = measure(pods).await?;
            println!(
                "{:.0} {:.0} {:.1}",
                result.created_per_second, result.events_per_second, result.rss_mib
            );
            return Ok(());
        }
        _ => {}
    }
    let flag = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .context("a number after the flag")?
                .parse()
                .context("a number"),
            None => Ok(default),
        }
    };
    let pods = flag("--pods", 5_000)?;
    let rounds = flag("--rounds", 3)?;
    println!("{}", machine_description());
    println!("{pods} pods per round, {rounds} rounds");
    println!("| round | pods created / s | watch events / s | RSS with {pods} in flight |");
    println!("|---|---|---|---|");
    // Each round in a process of its own, so that its memory is its own.
    for round in 1..=rounds {
        let out = std::process::Command::new(std::env::current_exe()?)
            .args(["round", &pods.to_string()])
            .output()?;
        if !out.status.success() {
            bail!("round {round}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8(out.stdout)?;
        let figures: Vec<&str> = text.split_whitespace().collect();
        let [created, events, rss] = figures[..] else {
            bail!("round {round} printed {text:?}");
        };
        println!("| {round} | {created} | {events} | {rss} MiB |");
    }
    Ok(())
}

struct Round {
    created_per_second: f64,
    events_per_second: f64,
    rss_mib: f64,
}

/// One round against a fresh scripted server.
async fn measure(pods: usize) -> Result<Round> {
    let mut server = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the scripted API server")?;
    let mut lines = tokio::io::BufReader::new(server.stdout.take().context("its stdout")?).lines();
    let address = lines.next_line().await?.context("the server's address")?;
    let base = format!("http://{address}");
    let control = reqwest::Client::new();

    let rss_before = rss_mib()?;
    let client = kube::Client::try_from(kube::Config::new(base.parse()?))?;
    let (exits_tx, mut exits) = mpsc::unbounded_channel::<AttemptExit>();
    let executor = PodExecutor::start(client, config(), exits_tx).await;
    // The watcher has listed and watches before the burst starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    for i in 0..pods {
        executor.dispatch(attempt(i));
    }
    loop {
        let held: usize = control
            .get(format!("{base}/control/pods"))
            .send()
            .await?
            .json()
            .await?;
        if held == pods {
            break;
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("only {held} of {pods} pods were created in 300 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let created = started.elapsed();
    // Let the last owner PATCHes land before measuring what the executor holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss = rss_mib()? - rss_before;
    if executor.pods_in_flight(NAMESPACE) != pods {
        bail!(
            "{} pods in flight, not {pods}",
            executor.pods_in_flight(NAMESPACE)
        );
    }

    let finishing = Instant::now();
    control
        .post(format!("{base}/control/finish"))
        .send()
        .await?
        .error_for_status()?;
    for _ in 0..pods {
        tokio::time::timeout(Duration::from_secs(300), exits.recv())
            .await
            .context("every pod's end reported in 300 s")?
            .context("the executor runs")?;
    }
    let handled = finishing.elapsed();
    drop(executor);
    let _ = server.kill().await;
    Ok(Round {
        created_per_second: pods as f64 / created.as_secs_f64(),
        events_per_second: (2 * pods) as f64 / handled.as_secs_f64(),
        rss_mib: rss,
    })
}

fn config() -> PodConfig {
    let agent = AgentConfig {
        program: "/usr/local/bin/leoflow".into(),
        endpoint: "http://leoflow-scheduler.leoflow.svc:9091".into(),
        python: "/usr/local/bin/python3".into(),
        sdk_path: "/opt/leoflow/sdk".into(),
        project_dir: Some("/opt/leoflow/project".into()),
        otlp_endpoint: None,
        ca_file: None,
    };
    PodConfig::new(
        Namespaces::One(NAMESPACE.into()),
        "registry.example.com/etl:1",
        agent,
    )
}

fn attempt(i: usize) -> Attempt {
    Attempt {
        ti: TaskInstanceKey::mapped(
            "etl",
            "scheduled__2026-12-04T00:00:00+00:00",
            "load",
            i as i32,
        ),
        try_number: 1,
        attempt_token: Uuid::new_v4(),
        trace_parent: None,
        placement: Default::default(),
    }
}

/// This process's resident set, in MiB.
fn rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .context("VmRSS in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?;
    Ok(kib / 1024.0)
}

/// The scripted API server's state.
#[derive(Clone, Default)]
struct Cluster {
    pods: Arc<Mutex<BTreeMap<String, Value>>>,
    version: Arc<Mutex<u64>>,
    events: Arc<Mutex<Option<broadcast::Sender<Bytes>>>>,
}

impl Cluster {
    fn next_version(&self) -> String {
        let mut version = self.version.lock().unwrap();
        *version += 1;
        version.to_string()
    }
}

/// `pod_executor serve`: prints its address, then answers until killed.
async fn serve() -> Result<()> {
    let cluster = Cluster::default();
    *cluster.events.lock().unwrap() = Some(broadcast::channel(65_536).0);
    let app = Router::new()
        .route("/api/v1/namespaces/{ns}/pods", get(pods).post(create))
        .route(
            "/api/v1/namespaces/{ns}/pods/{name}",
            axum::routing::delete(gone),
        )
        .route("/api/v1/namespaces/{ns}/secrets", post(create))
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            axum::routing::patch(created).delete(gone),
        )
        .route("/control/pods", get(count))
        .route("/control/finish", post(finish))
        .with_state(cluster);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn json_response(status: u16, body: Value) -> Response {
    (
        axum::http::StatusCode::from_u16(status).expect("a status"),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn pods(
    State(cluster): State<Cluster>,
    UrlPath(_ns): UrlPath<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if query.get("watch").map(String::as_str) != Some("true") {
        let items: Vec<Value> = cluster.pods.lock().unwrap().values().cloned().collect();
        return json_response(
            200,
            json!({"apiVersion": "v1", "kind": "PodList",
                   "metadata": {"resourceVersion": cluster.next_version()}, "items": items}),
        );
    }
    let receiver = cluster
        .events
        .lock()
        .unwrap()
        .as_ref()
        .expect("set at start")
        .subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(line) => return Some((Ok::<_, Infallible>(line), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .expect("a response")
}

/// A create: answered with the object, a uid and a version; pods are kept.
async fn create(
    State(cluster): State<Cluster>,
    UrlPath(_ns): UrlPath<String>,
    body: Bytes,
) -> Response {
    let mut object: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    object["metadata"]["uid"] = json!(Uuid::new_v4().to_string());
    object["metadata"]["resourceVersion"] = json!(cluster.next_version());
    if object["kind"] == "Pod" {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        cluster.pods.lock().unwrap().insert(name, object.clone());
    }
    json_response(201, object)
}

async fn created(body: Bytes) -> Response {
    json_response(200, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn gone() -> Response {
    json_response(
        200,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    )
}

async fn count(State(cluster): State<Cluster>) -> Response {
    json_response(200, json!(cluster.pods.lock().unwrap().len()))
}

/// Every pod runs, then succeeds: two watch events each.
async fn finish(State(cluster): State<Cluster>) -> Response {
    let pods: Vec<Value> = cluster.pods.lock().unwrap().values().cloned().collect();
    let sender = cluster
        .events
        .lock()
        .unwrap()
        .clone()
        .expect("set at start");
    tokio::spawn(async move {
        for pod in pods {
            for status in [
                json!({"phase": "Running"}),
                json!({"phase": "Succeeded", "containerStatuses": [{
                    "name": "agent", "image": "i", "imageID": "", "ready": false,
                    "restartCount": 0, "state": {"terminated": {"exitCode": 0}}}]}),
            ] {
                let mut pod = pod.clone();
                pod["status"] = status;
                pod["metadata"]["resourceVersion"] = json!(cluster.next_version());
                let event = json!({"type": "MODIFIED", "object": pod});
                let _ = sender.send(Bytes::from(format!("{event}\n")));
            }
            tokio::task::yield_now().await;
        }
    });
    json_response(202, json!({}))
}
