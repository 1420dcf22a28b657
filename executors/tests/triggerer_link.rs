//! A triggerer pod's program (`triggerer_link::serve`, what `leoflow triggerer` runs) against
//! a scheduler's link service on loopback, with the SDK's real triggerer process: the token is
//! checked and good for one call, and lines go both ways until the scheduler ends the link.

use std::path::PathBuf;
use std::time::Duration;

use leoflow_executors::agent::AgentError;
use leoflow_executors::triggerer::{Connection, TriggererConfig};
use leoflow_executors::triggerer_link::{self, Links, PodTriggererConfig};
use uuid::Uuid;

const GREET: &str = r#"
from airflow.triggers.base import BaseTrigger, TriggerEvent


class Hi(BaseTrigger):
    def serialize(self):
        return ("greet.Hi", {})

    async def run(self):
        yield TriggerEvent("hi from the pod")
"#;

/// A scheduler's link service on a loopback port: its address.
async fn scheduler(links: &Links) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = links.service();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
            .unwrap();
    });
    format!("http://{address}")
}

fn pod(
    endpoint: &str,
    token: &str,
    project: &std::path::Path,
    budget: Duration,
) -> PodTriggererConfig {
    let python = std::env::var_os("LEOFLOW_PYTHON").map_or_else(|| "python3".into(), PathBuf::from);
    PodTriggererConfig {
        endpoint: endpoint.to_owned(),
        token: token.to_owned(),
        ca_file: None,
        triggerer: TriggererConfig {
            python: std::path::absolute(python).unwrap(),
            sdk_path: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk/python/src"),
            project_dir: Some(project.to_owned()),
        },
        retry_budget: budget,
    }
}

/// The next reply line of `connection` holding `op`.
async fn reply(connection: &mut Connection, op: &str) -> serde_json::Value {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), connection.replies.recv())
            .await
            .expect("a reply in time")
            .expect("the link is open");
        let reply: serde_json::Value = serde_json::from_str(&line).unwrap();
        if reply["op"] == op {
            return reply;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_triggerer_pod_calls_with_its_token_once_and_relays_until_the_scheduler_ends_it() {
    let project = std::env::temp_dir().join(format!("leoflow-link-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("greet.py"), GREET).unwrap();
    let links = Links::default();
    let endpoint = scheduler(&links).await;

    // A token no pod of this scheduler holds: retried (another replica may be the one), then
    // given up, naming why.
    let stranger = Uuid::new_v4().to_string();
    let refused = triggerer_link::serve(pod(
        &endpoint,
        &stranger,
        &project,
        Duration::from_millis(500),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, AgentError::Unreachable { last, .. } if last.contains("waits for no triggerer pod")),
        "{refused}"
    );
    // Not a token at all: refused at once.
    let refused = triggerer_link::serve(pod(
        &endpoint,
        "not-a-token",
        &project,
        Duration::from_secs(60),
    ))
    .await
    .unwrap_err();
    assert!(
        matches!(&refused, AgentError::Refused(why) if why.contains("Bearer")),
        "{refused}"
    );

    let token = Uuid::new_v4();
    let call = links.expect(&token);
    let relay = tokio::spawn(triggerer_link::serve(pod(
        &endpoint,
        &token.to_string(),
        &project,
        Duration::from_secs(5),
    )));
    let mut connection = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the pod called")
        .unwrap();
    let run = r#"{"op": "run", "id": "t1", "classpath": "greet.Hi", "kwargs": {}, "repeat": false, "paths": []}"#;
    connection.requests.send(format!("{run}\n")).unwrap();
    let fired = reply(&mut connection, "fired").await;
    assert_eq!(fired["id"], "t1");
    assert_eq!(fired["payload"], "hi from the pod");

    // The token was good for that one call.
    let again = triggerer_link::serve(pod(
        &endpoint,
        &token.to_string(),
        &project,
        Duration::from_millis(300),
    ))
    .await
    .unwrap_err();
    assert!(matches!(again, AgentError::Unreachable { .. }), "{again}");

    // The scheduler ends the link: the pod's program stops its triggerer and ends.
    drop(connection);
    let ended = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the relay ended")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&ended, AgentError::Terminated(why) if why == triggerer_link::ENDED_BY_SCHEDULER),
        "{ended}"
    );
    let _ = std::fs::remove_dir_all(&project);
}
