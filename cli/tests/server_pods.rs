//! `leoflow server --executor kubernetes`, end to end against a scripted cluster (no API
//! server or container engine runs here: `common::cluster` plays both, running each pod's
//! container as a process of this host). Pushed DAGs run in pods of their artifact's image,
//! each tenant's in its namespace, the token only in the attempt's Secret.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::ScriptedCluster;
use common::remote::{login_admin, login_token, ok, token_file};
use common::repo;
use common::server::Deployment;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_dags_run_in_pods_of_their_image_in_their_tenant_s_namespace() {
    let deployment = Deployment::start("server-pods").await;
    let cluster = ScriptedCluster::start(
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
    .await;
    let server = deployment.replica_with("all", |command| {
        command
            .env("LEOFLOW_EXECUTOR", "kubernetes")
            .env_remove("LEOFLOW_ALLOW_UNSANDBOXED")
            .env("KUBECONFIG", &cluster.kubeconfig)
            .env("LEOFLOW_KUBERNETES_IMAGE", DEFAULT_IMAGE)
            .env(
                "LEOFLOW_KUBERNETES_NAMESPACES",
                r#"{"default": "leoflow-tasks", "team-a": "team-a-tasks"}"#,
            );
    });
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
