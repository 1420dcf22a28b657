//! The task agent against a scripted control plane (a gRPC server in this test) and a scripted
//! task runner (a shell script speaking the runner's JSON-lines protocol): what the agent does
//! while one of its calls is being retried.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leoflow_executors::agent::{self, AgentConfig};
use leoflow_executors::proto::finish_request::Outcome;
use leoflow_executors::proto::task_agent_server::{TaskAgent, TaskAgentServer};
use leoflow_executors::proto::{
    Ack, Assignment, AttemptRef, FinishRequest, HeartbeatReply, JsonValue, LogBatch, LookupRequest,
    PullXComRequest, PushXComRequest, ReadDagRunRequest, RegisterRequest, RenderedFields,
    TriggerDagRunRequest,
};
use leoflow_executors::protocol::PROTOCOL_VERSION;
use tonic::{Request, Response, Status};

/// A scripted control plane: it answers lookups with `secrets` or, when it has none, says it
/// is unavailable (as one that is restarting does); it records what the agent sends.
#[derive(Default)]
struct Scripted {
    heartbeats: AtomicUsize,
    lookups: AtomicUsize,
    finished: Mutex<Option<FinishRequest>>,
    logs: Mutex<Vec<String>>,
    rendered: Mutex<Vec<String>>,
    task: serde_json::Value,
    /// Lookup key → the value's JSON.
    secrets: Option<Vec<(&'static str, serde_json::Value)>>,
    /// How the try carries on after a deferral, when it does.
    resume: Option<serde_json::Value>,
    /// The runs asked for, each as `trigger <dag> <run id> <conf>` or `read <dag> <run id>`.
    dag_run_calls: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct Plane(Arc<Scripted>);

#[tonic::async_trait]
impl TaskAgent for Plane {
    async fn register(&self, _: Request<RegisterRequest>) -> Result<Response<Assignment>, Status> {
        Ok(Response::new(Assignment {
            task_json: self.0.task.to_string(),
            source: String::new(),
            fileloc: String::new(),
            run_json: "{}".into(),
            heartbeat_interval: 0.1,
            try_started_at: "2026-12-04T10:00:00+00:00".into(),
            resume_json: self.0.resume.as_ref().map(|resume| resume.to_string()),
            log_seq: 0,
        }))
    }

    async fn heartbeat(&self, _: Request<AttemptRef>) -> Result<Response<HeartbeatReply>, Status> {
        self.0.heartbeats.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(HeartbeatReply {
            terminate: false,
            reason: String::new(),
        }))
    }

    async fn append_logs(&self, request: Request<LogBatch>) -> Result<Response<Ack>, Status> {
        self.0
            .logs
            .lock()
            .unwrap()
            .extend(request.into_inner().lines);
        Ok(Response::new(Ack {}))
    }

    async fn pull_x_com(&self, _: Request<PullXComRequest>) -> Result<Response<JsonValue>, Status> {
        Err(Status::unimplemented("not in this script"))
    }

    async fn push_x_com(&self, _: Request<PushXComRequest>) -> Result<Response<Ack>, Status> {
        Ok(Response::new(Ack {}))
    }

    async fn lookup(&self, request: Request<LookupRequest>) -> Result<Response<JsonValue>, Status> {
        self.0.lookups.fetch_add(1, Ordering::SeqCst);
        let Some(secrets) = &self.0.secrets else {
            return Err(Status::unavailable("the control plane is restarting"));
        };
        let key = request.into_inner().key;
        let value = secrets.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
        Ok(Response::new(JsonValue {
            found: value.is_some(),
            json: value.cloned().unwrap_or_default().to_string(),
        }))
    }

    async fn trigger_dag_run(
        &self,
        request: Request<TriggerDagRunRequest>,
    ) -> Result<Response<JsonValue>, Status> {
        let r = request.into_inner();
        assert!(r.attempt.is_some(), "the agent names its attempt");
        if r.dag_id == "elsewhere" {
            return Err(Status::invalid_argument("no DAG \"elsewhere\" to trigger"));
        }
        let run_id = r.run_id.unwrap_or_else(|| "manual__now".into());
        self.0.dag_run_calls.lock().unwrap().push(format!(
            "trigger {} {run_id} {} reset={}",
            r.dag_id, r.conf_json, r.reset_dag_run
        ));
        let run = serde_json::json!({"dag_id": r.dag_id, "run_id": run_id, "existed": false});
        Ok(Response::new(JsonValue {
            found: true,
            json: run.to_string(),
        }))
    }

    async fn read_dag_run(
        &self,
        request: Request<ReadDagRunRequest>,
    ) -> Result<Response<JsonValue>, Status> {
        let r = request.into_inner();
        let name = r.run_id.or(r.logical_date).unwrap_or_default();
        self.0
            .dag_run_calls
            .lock()
            .unwrap()
            .push(format!("read {} {name}", r.dag_id));
        let run = serde_json::json!({"dag_id": r.dag_id, "run_id": name, "state": "success", "tasks": {"t": "success"}});
        Ok(Response::new(JsonValue {
            found: true,
            json: run.to_string(),
        }))
    }

    async fn report_rendered(
        &self,
        request: Request<RenderedFields>,
    ) -> Result<Response<Ack>, Status> {
        let fields = request.into_inner().fields_json;
        self.0.rendered.lock().unwrap().push(fields);
        Ok(Response::new(Ack {}))
    }

    async fn finish(&self, request: Request<FinishRequest>) -> Result<Response<Ack>, Status> {
        *self.0.finished.lock().unwrap() = Some(request.into_inner());
        Ok(Response::new(Ack {}))
    }
}

/// Serves `plane` on a free loopback port; returns its endpoint.
async fn serve(plane: Plane) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TaskAgentServer::new(plane))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    endpoint
}

/// A stand-in for the Python runner: a shell script named `name` running `body` after it read
/// its start line and said hello in this protocol (requests go to stdout, answers come on
/// stdin, the log is stderr).
fn scripted_runner(name: &str, body: &str) -> PathBuf {
    let hello =
        format!("echo '{{\"op\":\"hello\",\"protocol\":{PROTOCOL_VERSION}}}'\nread -r answer\n");
    script_without_hello(name, &format!("{hello}{body}"))
}

/// A shell script named `name` running `body` after it read its start line.
fn script_without_hello(name: &str, body: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("leoflow-agent-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join(name);
    std::fs::write(&script, format!("#!/bin/sh\nread -r start\n{body}")).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// A runner that triggers a run, reads it, asks for a DAG of another tenant, and reports the
/// answers it got in its log.
const TRIGGERS_AND_READS_A_RUN: &str = r#"
echo '{"op":"trigger_dag_run","dag_id":"target","run_id":"r1","conf":{"message":"hi"},"reset_dag_run":true}'
read -r answer
echo "trigger answer: $answer" >&2
echo '{"op":"dag_run","dag_id":"target","run_id":"r1"}'
read -r answer
echo "read answer: $answer" >&2
echo '{"op":"trigger_dag_run","dag_id":"elsewhere"}'
read -r answer
echo "refused answer: $answer" >&2
echo '{"op":"done","outcome":"success"}'
read -r answer
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_triggers_and_reads_runs_through_the_control_plane() {
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "TriggerDagRunOperator", "custom": {}}),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    let runner = scripted_runner("triggers.sh", TRIGGERS_AND_READS_A_RUN);
    agent::run(config(endpoint, runner)).await.unwrap();

    let finished = state.finished.lock().unwrap().clone().expect("a report");
    assert_eq!(finished.outcome(), Outcome::Success, "{}", finished.reason);
    assert_eq!(
        *state.dag_run_calls.lock().unwrap(),
        [
            r#"trigger target r1 {"message":"hi"} reset=true"#,
            "read target r1"
        ]
    );
    let logs = state.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains(r#"trigger answer: {"ok":true,"found":true,"value":{"dag_id":"target","existed":false,"run_id":"r1"}}"#),
        "{logs}"
    );
    assert!(logs.contains(r#""state":"success""#), "{logs}");
    assert!(
        logs.contains(r#"refused answer: {"ok":false,"error":"no DAG \"elsewhere\" to trigger"}"#),
        "{logs}"
    );
}

/// A runner that logs its start line, then defers itself to a time trigger.
const DEFERS: &str = r#"
echo "start: $start" >&2
echo '{"op":"done","outcome":"deferred","reason":"","deferral":{"trigger":{"kind":"time","moment":"2026-12-04T11:00:00+00:00"},"method":"execute_complete","kwargs":{},"timeout":60.0}}'
read -r answer
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_try_carries_on_after_a_deferral_and_defers_again_through_the_agent() {
    let resume = serde_json::json!({"method": "execute_complete", "kwargs": {"event": null}});
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "Waiter", "custom": {}}),
        resume: Some(resume),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    let runner = scripted_runner("defers.sh", DEFERS);
    agent::run(config(endpoint, runner)).await.unwrap();

    let logs = state.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains(r#""try_started_at":"2026-12-04T10:00:00+00:00","resume":{"kwargs":{"event":null},"method":"execute_complete"}"#),
        "the runner is told how the try carries on: {logs}"
    );
    let finished = state.finished.lock().unwrap().clone().expect("a report");
    assert_eq!(finished.outcome(), Outcome::Deferred, "{}", finished.reason);
    let deferral: serde_json::Value =
        serde_json::from_str(finished.deferral_json.as_deref().expect("the deferral")).unwrap();
    assert_eq!(deferral["trigger"]["moment"], "2026-12-04T11:00:00+00:00");
    assert_eq!(deferral["timeout"], 60.0);
}

/// A runner that asks for a Variable, then reports success.
const READS_A_VARIABLE: &str = "\
echo '{\"op\":\"variable\",\"key\":\"slow\"}'
read -r answer
echo '{\"op\":\"done\",\"outcome\":\"success\"}'
read -r answer
";

fn config(endpoint: String, runner: PathBuf) -> AgentConfig {
    AgentConfig {
        endpoint,
        attempt: AttemptRef {
            dag_id: "d".into(),
            run_id: "r".into(),
            task_id: "t".into(),
            map_index: -1,
            try_number: 1,
            attempt_token: "token".into(),
        },
        python: runner,
        sdk_path: PathBuf::from("/nonexistent"),
        project_dir: None,
        // Far longer than the task may run: the lookup is still being retried at its deadline.
        retry_budget: Duration::from_secs(120),
        zygote: None,
        trace_parent: None,
        ca_file: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_the_execution_timeout_go_on_while_a_call_is_retried() {
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "@task", "execution_timeout": 2.0}),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    let runner = scripted_runner("variable.sh", READS_A_VARIABLE);
    let ran = tokio::time::timeout(
        Duration::from_secs(60),
        agent::run(config(endpoint, runner)),
    )
    .await
    .expect("the agent ended long before its retry budget");
    ran.unwrap();

    assert!(
        state.lookups.load(Ordering::SeqCst) >= 2,
        "the lookup was being retried"
    );
    let finished = state.finished.lock().unwrap().clone().expect("a report");
    assert_eq!(
        finished.outcome(),
        Outcome::TimedOut,
        "execution_timeout fired during the retries: {}",
        finished.reason
    );
    // Two seconds of task at one beat per 100 ms: the beats did not wait for the lookup.
    let beats = state.heartbeats.load(Ordering::SeqCst);
    assert!(
        beats >= 5,
        "only {beats} heartbeats while the lookup was retried"
    );
}

/// A runner that reads secrets, prints them and reports them among its rendered fields.
const LEAKS_ITS_SECRETS: &str = r#"
echo '{"op":"variable","key":"db_password"}'
read -r answer
echo '{"op":"variable","key":"greeting"}'
read -r answer
echo '{"op":"connection","key":"warehouse"}'
read -r answer
echo "password hunter2-x, greeting hello-there, conn pw-of-warehouse, extra tok-in-extra" >&2
echo '{"op":"rendered","fields":{"bash_command":"psql -p hunter2-x","env":{"TOKEN":"tok-in-extra"}}}'
read -r answer
echo '{"op":"done","outcome":"success"}'
read -r answer
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_a_task_read_are_masked_in_its_log_and_rendered_fields() {
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "@task"}),
        secrets: Some(vec![
            ("db_password", serde_json::json!("hunter2-x")),
            ("greeting", serde_json::json!("hello-there")),
            (
                "warehouse",
                serde_json::json!({"conn_type": "postgres", "password": "pw-of-warehouse",
                                   "extra": "{\"api_token\": \"tok-in-extra\", \"region\": \"eu\"}"}),
            ),
        ]),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    let runner = scripted_runner("leaks.sh", LEAKS_ITS_SECRETS);
    agent::run(config(endpoint, runner)).await.unwrap();

    let finished = state.finished.lock().unwrap().clone().expect("a report");
    assert_eq!(finished.outcome(), Outcome::Success, "{}", finished.reason);
    let logs = state.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains("password ***, greeting hello-there, conn ***, extra ***"),
        "{logs}"
    );
    let rendered = state.rendered.lock().unwrap().join("\n");
    assert!(rendered.contains("psql -p ***"), "{rendered}");
    assert!(
        !rendered.contains("hunter2-x") && !rendered.contains("tok-in-extra"),
        "{rendered}"
    );
}

/// A runner that prints one line of 200,000 characters (no newline until the end) and a short one.
const PRINTS_A_HUGE_LINE: &str = r#"
head -c 200000 /dev/zero | tr '\0' 'x' >&2
echo ' end' >&2
echo 'after' >&2
echo '{"op":"done","outcome":"success"}'
read -r answer
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_line_of_any_length_is_kept_whole_in_pieces() {
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "@task"}),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    let runner = scripted_runner("huge.sh", PRINTS_A_HUGE_LINE);
    agent::run(config(endpoint, runner)).await.unwrap();

    let logs = state.logs.lock().unwrap().clone();
    let pieces: Vec<&String> = logs
        .iter()
        .filter(|l| l.starts_with('x') || l.ends_with(" end"))
        .collect();
    let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
    assert!(pieces.len() >= 4, "split into pieces: {lengths:?}");
    assert!(pieces.iter().all(|p| p.len() <= 64 * 1024));
    let joined: String = pieces.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        joined,
        format!("{} end", "x".repeat(200_000)),
        "nothing lost"
    );
    assert!(logs.iter().any(|l| l == "after"));
}

/// A runner of another Leoflow version: it says hello in a protocol this agent does not speak,
/// then would go on as if nothing happened (and never end by itself).
const SPEAKS_ANOTHER_PROTOCOL: &str = r#"
echo '{"op":"hello","protocol":999}'
read -r answer
echo "$answer" >&2
sleep 600
"#;

/// A runner older than the protocol's versions: its first request is a lookup.
const NEVER_SAYS_HELLO: &str = r#"
echo '{"op":"variable","key":"greeting"}'
read -r answer
sleep 600
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_of_another_protocol_fails_the_try_at_once_naming_both_versions() {
    for (name, script, expected) in [
        (
            "other-version.sh",
            SPEAKS_ANOTHER_PROTOCOL,
            format!("speaks protocol 999 and this agent protocol {PROTOCOL_VERSION}"),
        ),
        (
            "no-hello.sh",
            NEVER_SAYS_HELLO,
            "did not state its protocol version (its first request was \"variable\")".to_owned(),
        ),
    ] {
        let state = Arc::new(Scripted {
            task: serde_json::json!({"task_id": "t", "operator": "@task"}),
            ..Scripted::default()
        });
        let endpoint = serve(Plane(state.clone())).await;
        let runner = script_without_hello(name, script);
        tokio::time::timeout(
            Duration::from_secs(30),
            agent::run(config(endpoint, runner)),
        )
        .await
        .expect("a mismatch ends the try, never a hang")
        .unwrap();

        let finished = state.finished.lock().unwrap().clone().expect("a report");
        assert_eq!(finished.outcome(), Outcome::Failed);
        assert!(finished.reason.contains(&expected), "{}", finished.reason);
        assert_eq!(state.lookups.load(Ordering::SeqCst), 0, "nothing relayed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_or_unknown_request_is_refused_with_the_reason_and_the_try_goes_on() {
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "@task"}),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    let runner = scripted_runner(
        "bad-requests.sh",
        r#"
echo 'not json'
read -r answer
echo "answer 1: $answer" >&2
echo '{"op":"launch_rockets"}'
read -r answer
echo "answer 2: $answer" >&2
echo '{"op":"done","outcome":"success","reason":""}'
read -r answer
"#,
    );
    agent::run(config(endpoint, runner)).await.unwrap();

    let finished = state.finished.lock().unwrap().clone().expect("a report");
    assert_eq!(finished.outcome(), Outcome::Success, "{}", finished.reason);
    let logs = state.logs.lock().unwrap().join("\n");
    assert!(
        logs.contains(r#"answer 1: {"ok":false,"error":"bad request \"not json\""#),
        "{logs}"
    );
    assert!(
        logs.contains("answer 2: ") && logs.contains("unknown variant `launch_rockets`"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_operator_succeeds_without_a_runner_and_an_unreadable_task_fails_clearly() {
    for (task, outcome, expected) in [
        (
            serde_json::json!({"task_id": "t", "operator": "EmptyOperator"}),
            Outcome::Success,
            "",
        ),
        (
            // A class name reads as a custom operator's; a number is no operator at all.
            serde_json::json!({"task_id": "t", "operator": 42}),
            Outcome::Failed,
            "this agent cannot read the task's dag.json entry",
        ),
    ] {
        let state = Arc::new(Scripted {
            task,
            ..Scripted::default()
        });
        let endpoint = serve(Plane(state.clone())).await;
        // No runner at all: starting one would fail the try.
        agent::run(config(endpoint, PathBuf::from("/nonexistent/python")))
            .await
            .unwrap();

        let finished = state.finished.lock().unwrap().clone().expect("a report");
        assert_eq!(finished.outcome(), outcome, "{}", finished.reason);
        assert!(finished.reason.contains(expected), "{}", finished.reason);
    }
    // An EmptyOperator with callbacks is run, for them (as in Airflow): here the runner it
    // starts does not exist.
    let state = Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "EmptyOperator", "callbacks": ["on_success_callback"]}),
        ..Scripted::default()
    });
    let endpoint = serve(Plane(state.clone())).await;
    agent::run(config(endpoint, PathBuf::from("/nonexistent/python")))
        .await
        .unwrap();
    let finished = state.finished.lock().unwrap().clone().expect("a report");
    assert_eq!(finished.outcome(), Outcome::Failed, "{}", finished.reason);
    assert!(
        finished.reason.contains("/nonexistent/python"),
        "{}",
        finished.reason
    );
}

/// A CA and the certificate it signed for a control plane on loopback, as PEM files in a
/// directory of their own (`ca.crt`, `tls.crt`, `tls.key`: cert-manager's names).
struct Pki {
    dir: PathBuf,
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let dir =
            std::env::temp_dir().join(format!("leoflow-agent-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
        Self {
            dir,
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }
}

/// Serves `plane` over TLS with `pki`'s certificate; returns its `https://` endpoint.
async fn serve_tls(plane: Plane, pki: &Pki) -> String {
    use tonic::transport::{Identity, ServerTlsConfig};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("https://{}", listener.local_addr().unwrap());
    let identity = Identity::from_pem(&pki.cert, &pki.key);
    tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(TaskAgentServer::new(plane))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    endpoint
}

fn empty_task() -> Arc<Scripted> {
    Arc::new(Scripted {
        task: serde_json::json!({"task_id": "t", "operator": "EmptyOperator"}),
        ..Scripted::default()
    })
}

/// `config` of an agent that verifies the control plane with `ca_file`.
fn verifying(endpoint: &str, ca_file: PathBuf) -> AgentConfig {
    AgentConfig {
        ca_file: Some(ca_file),
        ..config(endpoint.to_owned(), PathBuf::from("/nonexistent/python"))
    }
}

/// Runs an agent that must fail long before its retry budget (120 s); returns why.
async fn fails_at_once(config: AgentConfig) -> String {
    let ran = tokio::time::timeout(Duration::from_secs(15), agent::run(config))
        .await
        .expect("failed at once, not after retrying for its budget");
    ran.expect_err("the agent must not run its try").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_the_agent_runs_its_try_and_refuses_a_server_its_ca_did_not_sign() {
    let (pki, other) = (Pki::new("server"), Pki::new("other"));
    let state = empty_task();
    let endpoint = serve_tls(Plane(state.clone()), &pki).await;

    agent::run(verifying(&endpoint, pki.ca_file()))
        .await
        .unwrap();
    let finished = state.finished.lock().unwrap().take().expect("a report");
    assert_eq!(finished.outcome(), Outcome::Success, "{}", finished.reason);

    let error = fails_at_once(verifying(&endpoint, other.ca_file())).await;
    assert!(
        error.contains("its certificate does not verify against LEOFLOW_AGENT_CA_FILE")
            && error.contains(other.ca_file().to_str().unwrap())
            && error.contains("invalid peer certificate: UnknownIssuer"),
        "{error}"
    );
    assert!(state.finished.lock().unwrap().is_none(), "nothing reported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_agent_fails_at_once_on_a_plain_server_or_an_unusable_ca_file() {
    let pki = Pki::new("plain");
    let plain = serve(Plane(empty_task()))
        .await
        .replace("http://", "https://");
    let error = fails_at_once(verifying(&plain, pki.ca_file())).await;
    assert!(
        error.contains("the TLS handshake failed: does its gRPC port serve TLS"),
        "{error}"
    );

    let not_pem = pki.dir.join("not-pem.crt");
    std::fs::write(&not_pem, "just text\n").unwrap();
    for (ca_file, expected) in [
        (
            pki.dir.join("absent.crt"),
            "cannot read LEOFLOW_AGENT_CA_FILE",
        ),
        (not_pem, "holds no PEM certificate"),
    ] {
        let error = fails_at_once(verifying(&plain, ca_file)).await;
        assert!(error.contains(expected), "{expected}: {error}");
    }
}
