//! `leoflow server --executor kubernetes`, end to end against a scripted cluster (no API
//! server or container engine runs here: `common::cluster` plays both, running each pod's
//! container as a process of this host). Pushed DAGs run in pods of their artifact's image,
//! each tenant's in its namespace, the token only in the attempt's Secret.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::ScriptedCluster;
use common::lite::Client;
use common::pki::Pki;
use common::remote::{login_admin, login_token, ok, token_file};
use common::repo;
use common::server::{Deployment, PASSWORD};
use serde_json::Value;

const IMAGE: &str = "registry.example.com/etl:7@sha256:4f2a";
const DEFAULT_IMAGE: &str = "registry.example.com/leoflow-task:default";

fn dag_py(dag_id: &str, task: &str) -> String {
    format!(
        "from airflow.sdk import DAG, task\n\n@task\ndef {task}():\n    return {task:?}\n\n\
         with DAG({dag_id:?}, schedule=None, is_paused_upon_creation=False):\n    {task}()\n"
    )
}

fn project(scratch: &Path, dag_id: &str, task: &str) -> PathBuf {
    let dir = scratch.join(dag_id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dag.py"), dag_py(dag_id, task)).unwrap();
    dir
}

fn python() -> PathBuf {
    std::env::var_os("LEOFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"))
}

/// Triggers `dag_id` as `profile` and waits for the run to succeed.
async fn run_to_success(laptop: &Path, profile: &str, dag_id: &str) {
    ok(
        laptop,
        &[
            "dags",
            "trigger",
            dag_id,
            "--run-id",
            "r1",
            "--profile",
            profile,
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown: Value = serde_json::from_str(&ok(
            laptop,
            &[
                "runs",
                "show",
                dag_id,
                "r1",
                "--output",
                "json",
                "--profile",
                profile,
            ],
        ))
        .unwrap();
        match shown["run"]["state"].as_str() {
            Some("success") => return,
            Some("failed") => panic!("{dag_id} failed: {shown}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "{dag_id}: {shown}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// A scripted cluster whose kubelet finds the task image's binary, Python and SDK on this host.
async fn cluster(deployment: &Deployment) -> ScriptedCluster {
    ScriptedCluster::start(
        &deployment.scratch,
        vec![
            (
                "/usr/local/bin/leoflow".into(),
                PathBuf::from(env!("CARGO_BIN_EXE_leoflow")),
            ),
            ("/usr/local/bin/python3".into(), python()),
            ("/opt/leoflow/sdk".into(), repo().join("sdk/python/src")),
        ],
    )
    .await
}

/// A replica's command running its tries as pods in `cluster`.
fn pod_executor(command: &mut std::process::Command, cluster: &ScriptedCluster) {
    command
        .env("LEOFLOW_EXECUTOR", "kubernetes")
        .env_remove("LEOFLOW_ALLOW_UNSANDBOXED")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("LEOFLOW_KUBERNETES_IMAGE", DEFAULT_IMAGE)
        .env(
            "LEOFLOW_KUBERNETES_NAMESPACES",
            r#"{"default": "leoflow-tasks", "team-a": "team-a-tasks"}"#,
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_dags_run_in_pods_of_their_image_in_their_tenant_s_namespace() {
    let deployment = Deployment::start("server-pods").await;
    let cluster = cluster(&deployment).await;
    let server = deployment.replica_with("all", |command| pod_executor(command, &cluster));
    let laptop = deployment.scratch.join("laptop");
    let password = deployment.password_file.to_str().unwrap();
    login_admin(&laptop, &server.base, password, "default");
    let team_a = token_file(&deployment, "Op", "team-a");
    login_token(&laptop, &server.base, &team_a, "team-a");

    // The default tenant's DAG, pushed with its image; team-a's, pushed without one.
    let etl = project(&deployment.scratch, "etl", "extract");
    cluster.project("etl", &etl);
    ok(
        &laptop,
        &[
            "push",
            etl.to_str().unwrap(),
            "--image",
            IMAGE,
            "--profile",
            "default",
        ],
    );
    // team-a's project `reports` has a DAG `etl` too: DAG ids repeat across tenants.
    let reports = deployment.scratch.join("reports");
    std::fs::create_dir_all(&reports).unwrap();
    std::fs::write(reports.join("dag.py"), dag_py("etl", "summarize")).unwrap();
    // The kubelet finds a pod's project by the DAG's key, as the log keys it.
    cluster.project("team-a:etl", &reports);
    ok(
        &laptop,
        &["push", reports.to_str().unwrap(), "--profile", "team-a"],
    );
    run_to_success(&laptop, "default", "etl").await;
    run_to_success(&laptop, "team-a", "etl").await;

    let pods = cluster.created_pods();
    let placed: Vec<(&str, &str, &str)> = pods
        .iter()
        .map(|pod| {
            (
                pod["metadata"]["annotations"]["leoflow.io/dag-id"]
                    .as_str()
                    .unwrap(),
                pod["metadata"]["namespace"].as_str().unwrap(),
                pod["spec"]["containers"][0]["image"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        placed,
        [
            ("etl", "leoflow-tasks", IMAGE),
            ("team-a:etl", "team-a-tasks", DEFAULT_IMAGE)
        ]
    );
    // Each ran its own code: the pods' names tell the two `etl`s apart.
    assert_ne!(pods[0]["metadata"]["name"], pods[1]["metadata"]["name"]);
    for pod in &pods {
        let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
        let token = env
            .iter()
            .find(|var| var["name"] == "LEOFLOW_ATTEMPT_TOKEN")
            .unwrap();
        assert!(token.get("value").is_none(), "{token}");
        assert_eq!(
            token["valueFrom"]["secretKeyRef"]["name"],
            pod["metadata"]["name"]
        );
        let args = pod["spec"]["containers"][0]["args"].to_string();
        assert!(args.contains(&format!("http://127.0.0.1:{}", deployment.service.port)));
    }
    // Each finished pod was deleted with its Secret.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cluster.secrets().is_empty() {
        assert!(Instant::now() < deadline, "{:?}", cluster.secrets());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_verify_a_tls_control_plane_with_the_ca_from_their_attempt_s_secret() {
    let deployment = Deployment::start("server-pods-tls").await;
    let cluster = cluster(&deployment).await;
    let pki = Pki::new(&deployment.scratch.join("agent-tls"), "server");
    let server = deployment.replica_with("all", |command| {
        pod_executor(command, &cluster);
        command
            .env("LEOFLOW_AGENT_TLS_CERT_FILE", &pki.cert_file)
            .env("LEOFLOW_AGENT_TLS_KEY_FILE", &pki.key_file)
            .env("LEOFLOW_AGENT_TLS_CA_FILE", &pki.ca_file);
    });
    deployment.register("secure", &dag_py("secure", "hello"));
    cluster.project("secure", &deployment.scratch.join("secure"));
    let client = Client::login_as(&server.base, PASSWORD).await;
    client.run_to_success("secure").await;

    let pods = cluster.created_pods();
    let pod = &pods[0];
    let container = &pod["spec"]["containers"][0];
    assert!(
        container["args"]
            .to_string()
            .contains(&format!("https://127.0.0.1:{}", deployment.service.port)),
        "{}",
        container["args"]
    );
    let env = container["env"].as_array().unwrap();
    assert!(
        env.contains(&serde_json::json!({
            "name": "LEOFLOW_AGENT_CA_FILE",
            "value": "/var/run/leoflow/agent-tls/ca.crt"
        })),
        "{env:?}"
    );
    // The CA came from the attempt's Secret (the control plane's own file is no pod's).
    let volume = &pod["spec"]["volumes"][0];
    assert_eq!(volume["secret"]["secretName"], pod["metadata"]["name"]);
    assert_eq!(volume["secret"]["items"][0]["key"], "ca.crt");

    // A triggerer pod calls over TLS too, verifying with the CA from its own Secret.
    let project = deployment.scratch.join("waits");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("greetings.py"), GREETINGS).unwrap();
    let called_back = deployment.scratch.join("called-back");
    let waits = WAITS.replace(
        "__CALLED_BACK__",
        &format!("{:?}", called_back.display().to_string()),
    );
    deployment.register("waits", &waits);
    cluster.project("waits", &project);
    cluster.image_project(DEFAULT_IMAGE, &project);
    client.run_to_success("waits").await;
    let triggerer = &triggerer_pods(&cluster)[0];
    let volume = &triggerer["spec"]["volumes"][0];
    assert_eq!(
        volume["secret"]["secretName"],
        triggerer["metadata"]["name"]
    );
    assert_eq!(volume["secret"]["items"][0]["key"], "ca.crt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pod_executor_needs_an_image_and_an_address_pods_reach() {
    let deployment = Deployment::start("server-pods-refusals").await;
    let refusal = deployment.refusal("scheduler", |command| {
        command
            .env("LEOFLOW_EXECUTOR", "kubernetes")
            .env_remove("LEOFLOW_ALLOW_UNSANDBOXED");
    });
    assert!(refusal.contains("kubernetes.image: missing"), "{refusal}");
    let refusal = deployment.refusal("scheduler", |command| {
        command
            .env("LEOFLOW_EXECUTOR", "kubernetes")
            .env("LEOFLOW_KUBERNETES_IMAGE", DEFAULT_IMAGE)
            .env_remove("LEOFLOW_ADVERTISE_GRPC");
    });
    assert!(refusal.contains("advertise_grpc: missing"), "{refusal}");
    let refusal = deployment.refusal("scheduler", |command| {
        command
            .env("LEOFLOW_EXECUTOR", "kubernetes")
            .env("LEOFLOW_KUBERNETES_IMAGE", DEFAULT_IMAGE)
            .env("LEOFLOW_KUBERNETES_NAMESPACES", r#"{"default": "Tasks!"}"#);
    });
    assert!(
        refusal.contains("\"Tasks!\" is not a namespace name"),
        "{refusal}"
    );
}

const WAITS: &str = r#"
from pathlib import Path

from airflow.sdk import DAG, BaseOperator

from greetings import Hello

CALLED_BACK = Path(__CALLED_BACK__)


class Waits(BaseOperator):
    def execute(self, context):
        self.defer(trigger=Hello(name="pods"), method_name="done")

    def done(self, context, event=None):
        return event


def succeeded(context):
    CALLED_BACK.write_text(f"{context['run_id']} succeeded")


with DAG("waits", schedule=None, is_paused_upon_creation=False, on_success_callback=succeeded):
    Waits(task_id="wait")
"#;

/// A trigger of the project's own module: only the DAG's image has it.
const GREETINGS: &str = r#"
from airflow.triggers.base import BaseTrigger, TriggerEvent


class Hello(BaseTrigger):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def serialize(self):
        return ("greetings.Hello", {"name": self.name})

    async def run(self):
        yield TriggerEvent(f"hello {self.name}")
"#;

/// The triggerer pods `cluster` was asked for, in order.
fn triggerer_pods(cluster: &ScriptedCluster) -> Vec<Value> {
    cluster
        .created_pods()
        .into_iter()
        .filter(|pod| pod["spec"]["containers"][0]["args"][0] == "triggerer")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_tries_and_dag_callbacks_run_in_a_triggerer_pod_of_the_dag_s_image() {
    let deployment = Deployment::start("server-pods-triggerer").await;
    let cluster = cluster(&deployment).await;
    let server = deployment.replica_with("all", |command| pod_executor(command, &cluster));
    let called_back = deployment.scratch.join("called-back");
    let dag_py = WAITS.replace(
        "__CALLED_BACK__",
        &format!("{:?}", called_back.display().to_string()),
    );
    let project = deployment.scratch.join("waits");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("greetings.py"), GREETINGS).unwrap();
    deployment.register("waits", &dag_py);
    cluster.project("waits", &project);
    cluster.image_project(DEFAULT_IMAGE, &project);
    let client = Client::login_as(&server.base, PASSWORD).await;

    // The try defers to the project's trigger, which runs in a pod of the DAG's image, and
    // resumes with its event; the run's end then runs the DAG's callback there too.
    let run_id = client.run_to_success("waits").await;
    let ti = format!("/api/v2/dags/waits/dagRuns/{run_id}/taskInstances/wait");
    let xcom = client.get(&format!("{ti}/xcomEntries/return_value")).await;
    assert_eq!(xcom["value"], "hello pods", "{xcom}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !called_back.exists() {
        assert!(Instant::now() < deadline, "the DAG's callback did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&called_back).unwrap(),
        format!("{run_id} succeeded")
    );

    let triggerers = triggerer_pods(&cluster);
    assert_eq!(
        triggerers.len(),
        1,
        "one triggerer pod for the image: {triggerers:?}"
    );
    let pod = &triggerers[0];
    assert_eq!(pod["metadata"]["namespace"], "leoflow-tasks");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["image"], DEFAULT_IMAGE);
    assert!(
        container["args"]
            .to_string()
            .contains(&format!("http://127.0.0.1:{}", deployment.service.port)),
        "{}",
        container["args"]
    );
    // Its token is only in its Secret.
    let env = container["env"].as_array().unwrap();
    let token = env
        .iter()
        .find(|var| var["name"] == "LEOFLOW_TRIGGERER_TOKEN")
        .unwrap();
    assert!(token.get("value").is_none(), "{token}");
    assert_eq!(
        token["valueFrom"]["secretKeyRef"]["name"],
        pod["metadata"]["name"]
    );

    // A triggerer pod that is deleted is replaced by the next trigger that needs one.
    let name = pod["metadata"]["name"].as_str().unwrap();
    cluster.delete_pod("leoflow-tasks", name);
    std::fs::remove_file(&called_back).unwrap();
    let run_id = client.run_to_success("waits").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !called_back.exists() {
        assert!(
            Instant::now() < deadline,
            "the DAG's callback did not run again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        std::fs::read_to_string(&called_back).unwrap(),
        format!("{run_id} succeeded")
    );
    let triggerers = triggerer_pods(&cluster);
    assert_eq!(triggerers.len(), 2, "{triggerers:?}");
    assert_ne!(triggerers[1]["metadata"]["name"], name);
}

const GATE: &str = r#"
from airflow.sdk import DAG, BaseOperator
from airflow.providers.standard.triggers.file import FileTrigger

GATE = __GATE__


class Waits(BaseOperator):
    def execute(self, context):
        self.defer(trigger=FileTrigger(filepath=GATE, poke_interval=0.2), method_name="done")

    def done(self, context, event=None):
        return "the gate opened"


with DAG("gate", schedule=None, is_paused_upon_creation=False):
    Waits(task_id="wait")
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_replaces_the_triggerer_pod_and_the_deferred_try_resumes() {
    let deployment = Deployment::start("server-pods-triggerer-ha").await;
    let cluster = cluster(&deployment).await;
    let gate = deployment.scratch.join("gate-open");
    let dag_py = GATE.replace("__GATE__", &format!("{:?}", gate.display().to_string()));
    deployment.register("gate", &dag_py);
    let project = deployment.scratch.join("gate");
    cluster.project("gate", &project);
    cluster.image_project(DEFAULT_IMAGE, &project);
    let mut schedulers: Vec<_> = (0..2)
        .map(|_| deployment.replica_with("scheduler", |command| pod_executor(command, &cluster)))
        .collect();
    let api = deployment.replica("api");
    let client = Client::login_as(&api.base, PASSWORD).await;
    let pool = deployment.pool().await;

    let (status, run) = client
        .call(
            reqwest::Method::POST,
            "/api/v2/dags/gate/dagRuns",
            Some(serde_json::json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap().to_owned();
    let ti = format!("/api/v2/dags/gate/dagRuns/{run_id}/taskInstances/wait");
    client.until(&ti, |ti| ti["state"] == "deferred").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while triggerer_pods(&cluster).is_empty() {
        assert!(Instant::now() < deadline, "no triggerer pod");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = triggerer_pods(&cluster)[0]["metadata"]["name"].clone();

    // The leader dies; the one that takes over has its own triggerer pod made (the first
    // pod's token was the dead leader's), which runs the waiting trigger.
    let (leader, epoch) = common::server::elected(&pool).await.expect("a leader");
    schedulers
        .iter_mut()
        .find(|replica| replica.pid() == leader)
        .expect("the leader is a scheduler replica")
        .signal(libc::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((pid, new_epoch)) = common::server::elected(&pool).await
            && new_epoch > epoch
        {
            assert_ne!(pid, leader);
            break;
        }
        assert!(Instant::now() < deadline, "nobody took the lead");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(&gate, "open").unwrap();
    let run = client
        .until(&format!("/api/v2/dags/gate/dagRuns/{run_id}"), |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    assert_eq!(run["state"], "success", "{run}");
    let xcom = client.get(&format!("{ti}/xcomEntries/return_value")).await;
    assert_eq!(xcom["value"], "the gate opened", "{xcom}");
    let triggerers = triggerer_pods(&cluster);
    assert!(triggerers.len() >= 2, "{triggerers:?}");
    assert!(
        !cluster.pod_exists("leoflow-tasks", first.as_str().unwrap()),
        "the dead leader's triggerer pod was replaced"
    );
}
