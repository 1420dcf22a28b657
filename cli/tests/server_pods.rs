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
    let reports = project(&deployment.scratch, "reports", "summarize");
    cluster.project("reports", &reports);
    ok(
        &laptop,
        &["push", reports.to_str().unwrap(), "--profile", "team-a"],
    );
    run_to_success(&laptop, "default", "etl").await;
    run_to_success(&laptop, "team-a", "reports").await;

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
            ("reports", "team-a-tasks", DEFAULT_IMAGE)
        ]
    );
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
