//! TLS on the agent channel, end to end: `leoflow server` with `agent_tls` (certificates made
//! here, laid out as cert-manager's Secret: tls.crt, tls.key, ca.crt) serves its agents'
//! gRPC over TLS only, its agents dial `https://` and verify it with the CA it hands them, a
//! try runs; an agent whose CA did not sign the server's certificate fails its try at once,
//! saying so, instead of retrying for minutes.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::lite::Client;
use common::pki::Pki;
use common::server::{Deployment, PASSWORD, ports};
use leoflow_executors::proto::AttemptRef;
use leoflow_executors::proto::task_agent_client::TaskAgentClient;
use reqwest::Method;
use serde_json::json;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const DAG: &str = r#"
from airflow.sdk import DAG, task

@task(retries=0)
def hello():
    return "over TLS"

with DAG("tls", schedule=None, is_paused_upon_creation=False):
    hello()
"#;

/// An agent's call on the gRPC port, over TLS verified with `ca` or in plain text: the code
/// it ends with (a made-up attempt: a server that answers refuses its token).
async fn heartbeat(port: u16, ca: Option<&Path>) -> tonic::Code {
    let scheme = if ca.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://127.0.0.1:{port}")).unwrap();
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).unwrap();
        let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        endpoint = endpoint.tls_config(tls).unwrap();
    }
    let attempt = AttemptRef {
        dag_id: "tls".into(),
        run_id: "made-up".into(),
        task_id: "hello".into(),
        map_index: -1,
        try_number: 1,
        attempt_token: uuid::Uuid::new_v4().to_string(),
    };
    let mut client = TaskAgentClient::new(endpoint.connect_lazy());
    match client.heartbeat(attempt).await {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_run_over_tls_and_an_agent_with_another_ca_fails_its_try_at_once() {
    let deployment = Deployment::start("tls").await;
    deployment.register("tls", DAG);
    let pki = Pki::new(&deployment.scratch.join("agent-tls"), "server");
    let other = Pki::new(&deployment.scratch.join("other-tls"), "other");
    let with_tls = |command: &mut std::process::Command, key: &Path| {
        command
            .env("LEOFLOW_AGENT_TLS_CERT_FILE", &pki.cert_file)
            .env("LEOFLOW_AGENT_TLS_KEY_FILE", key)
            .env("LEOFLOW_AGENT_TLS_CA_FILE", &pki.ca_file);
    };

    // Checked before anything starts.
    let refused = deployment.refusal("all", |command| with_tls(command, &other.key_file));
    assert!(
        refused.contains("agent_tls.key_file:") && refused.contains("is not the key"),
        "{refused}"
    );

    let ports = ports();
    let replica = deployment.replica_at("all", ports, |command| {
        with_tls(command, &pki.key_file);
    });
    // The gRPC port speaks TLS only: a plain call does not get through, a verified one does
    // (and has its made-up token refused).
    let plain = heartbeat(ports[1], None).await;
    assert!(
        !matches!(plain, tonic::Code::Ok | tonic::Code::PermissionDenied),
        "a plain call reached the service: {plain:?}"
    );
    assert_eq!(
        heartbeat(ports[1], Some(&pki.ca_file)).await,
        tonic::Code::PermissionDenied
    );

    // The agents dial https:// (through the Service) and verify the server with ca.crt.
    let client = Client::login_as(&replica.base, PASSWORD).await;
    client.run_to_success("tls").await;

    // Agents read their CA file when they start: one that did not sign the server's
    // certificate fails the next try as soon as it calls, not after its retry budget.
    std::fs::copy(&other.ca_file, &pki.ca_file).unwrap();
    let started = Instant::now();
    let (status, run) = client
        .call(
            Method::POST,
            "/api/v2/dags/tls/dagRuns",
            Some(json!({"logical_date": null})),
        )
        .await;
    assert_eq!(status, 200, "{run}");
    let run_id = run["dag_run_id"].as_str().unwrap();
    let run = client
        .until(&format!("/api/v2/dags/tls/dagRuns/{run_id}"), |run| {
            run["state"] == "success" || run["state"] == "failed"
        })
        .await;
    assert_eq!(run["state"], "failed", "{run}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "failed at once, not after the agent's 120 s of retries: {:?}",
        started.elapsed()
    );
    let reason: String = sqlx::query_scalar(
        "SELECT payload->>'reason' FROM events WHERE type = 'TaskFailed' AND stream = $1",
    )
    .bind(format!("run:tls/{run_id}"))
    .fetch_one(&deployment.pool().await)
    .await
    .unwrap();
    assert!(
        reason.contains("its certificate does not verify against LEOFLOW_AGENT_CA_FILE")
            && reason.contains("UnknownIssuer"),
        "{reason}"
    );
}
