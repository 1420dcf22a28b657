//! The task agent (`leoflow agent`): one process per task attempt.
//!
//! It registers the attempt with the control plane (which records that the try runs), fetches
//! what to run, starts the SDK's Python task runner (`leoflow.runner`), and then relays: the
//! runner's requests (XCom pull/push, Variables, Connections, its outcome; the messages of
//! [`crate::protocol`]) arrive as JSON lines on the runner's stdout and go out as gRPC calls;
//! the runner's stderr is the task log, sent in numbered batches; a heartbeat tells the control
//! plane the attempt is alive and learns when it must stop. The agent enforces
//! `execution_timeout` by killing the runner's process group. Every call carries the attempt
//! token; calls are retried with backoff while the control plane is away (a restart), and a
//! refused token ends the agent at once. An `https://` endpoint is dialled over TLS (rustls),
//! the control plane verified against the CA of `LEOFLOW_AGENT_CA_FILE` (else the system's
//! roots); a certificate that does not verify ends the agent at once too.
//!
//! Diagnostics are `tracing` events inside a span per attempt (`dag_id`, `run_id`, `task_id`,
//! `map_index`, `try_number`); what the user reads of the try is its task log.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leoflow_secrets::masking::Masker;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tracing::Instrument;

use crate::proto::finish_request::Outcome as ProtoOutcome;
use crate::proto::lookup_request::Kind as LookupKind;
use crate::proto::task_agent_client::TaskAgentClient;
use crate::proto::{
    Assignment, AttemptRef, FinishRequest, HeartbeatReply, LogBatch, LookupRequest,
    PullXComRequest, PushXComRequest, ReadDagRunRequest, RegisterRequest, RenderedFields,
    TriggerDagRunRequest,
};
use crate::protocol::{
    Operator, OperatorKind, OutletEvent, Reply, Request, RunnerOutcome, Start, TaskSpec,
};

/// Everything an agent needs to know to run its attempt.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The control plane's gRPC endpoint (`http://127.0.0.1:9099` in Lite).
    pub endpoint: String,
    /// The attempt, with its token.
    pub attempt: AttemptRef,
    /// The Python interpreter that runs `leoflow.runner` (the real one, not a shim).
    pub python: PathBuf,
    /// The directory holding the SDK's `leoflow` package.
    pub sdk_path: PathBuf,
    /// The project directory (the runner's working directory and import path), if known.
    pub project_dir: Option<PathBuf>,
    /// How long calls are retried while the control plane is unreachable.
    pub retry_budget: Duration,
    /// A zygote to fork the runner from (no Python start per try); when it cannot be reached
    /// the runner is started as a fresh process.
    pub zygote: Option<PathBuf>,
    /// The trace context of the dispatch that started this attempt (`TRACEPARENT`), when the
    /// control plane exports traces: the agent's spans are its children.
    pub trace_parent: Option<String>,
    /// The CA (PEM) an `https://` control plane's certificate is verified with
    /// (`LEOFLOW_AGENT_CA_FILE`); `None`: the system's trusted roots (`SSL_CERT_FILE`,
    /// `SSL_CERT_DIR` or the operating system's store), for a certificate of a CA the host or
    /// the task image already trusts.
    pub ca_file: Option<PathBuf>,
}

/// Why an agent stopped without reporting an outcome.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The control plane refused the attempt token: forged, or the try is over.
    #[error("the control plane refused this attempt: {0}")]
    Refused(String),
    /// The control plane stayed unreachable longer than the retry budget.
    #[error("the control plane at {endpoint} stayed unreachable for {seconds} s: {last}")]
    Unreachable {
        /// Where it was called.
        endpoint: String,
        /// The retry budget.
        seconds: u64,
        /// The last error.
        last: String,
    },
    /// The control plane asked the attempt to stop (cancelled, marked, timed out, run ended).
    #[error("told to stop: {0}")]
    Terminated(String),
    /// The control plane refused one request as invalid (the task sees the reason; the
    /// attempt goes on).
    #[error("{0}")]
    Invalid(String),
    /// The endpoint is not a valid URI.
    #[error("bad control-plane endpoint {0:?}")]
    Endpoint(String),
    /// TLS to the control plane failed: its certificate does not verify, it does not speak
    /// TLS, or the agent's CA file is unusable.
    #[error("TLS to the control plane at {endpoint}: {message}")]
    Tls {
        /// Where it was called.
        endpoint: String,
        /// What failed, and what to check.
        message: String,
    },
}

/// How a try ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    outcome: ProtoOutcome,
    reason: String,
    branch: Vec<String>,
    proceed: Option<bool>,
    deferral: Option<Value>,
    reschedule_at: Option<String>,
    outlet_events: Option<Vec<OutletEvent>>,
    /// The task's process ended without reporting: its callbacks did not run.
    runner_lost: bool,
}

impl Report {
    fn new(outcome: ProtoOutcome, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            reason: reason.into(),
            branch: Vec::new(),
            proceed: None,
            deferral: None,
            reschedule_at: None,
            outlet_events: None,
            runner_lost: false,
        }
    }

    fn failed(reason: impl Into<String>) -> Self {
        Self::new(ProtoOutcome::Failed, reason)
    }

    /// The task's process ended without reporting an outcome (it crashed, or was killed).
    fn runner_lost(reason: impl Into<String>) -> Self {
        Self {
            runner_lost: true,
            ..Self::failed(reason)
        }
    }

    /// The runner's `done` request as a report.
    fn done(done: Done) -> Self {
        let outcome = match done.outcome {
            RunnerOutcome::Success => ProtoOutcome::Success,
            RunnerOutcome::Skipped => ProtoOutcome::Skipped,
            RunnerOutcome::Failed => ProtoOutcome::Failed,
            RunnerOutcome::FailedNoRetry => ProtoOutcome::FailedNoRetry,
            RunnerOutcome::Deferred => ProtoOutcome::Deferred,
            RunnerOutcome::Rescheduled => ProtoOutcome::Rescheduled,
        };
        Self {
            outcome,
            reason: done.reason,
            branch: done.branch.unwrap_or_default(),
            proceed: done.proceed,
            deferral: done.deferral,
            reschedule_at: done.reschedule_at,
            outlet_events: done.outlet_events,
            runner_lost: false,
        }
    }
}

/// The runner's `done` request, field by field.
struct Done {
    outcome: RunnerOutcome,
    reason: String,
    branch: Option<Vec<String>>,
    proceed: Option<bool>,
    deferral: Option<Value>,
    reschedule_at: Option<String>,
    outlet_events: Option<Vec<OutletEvent>>,
}

/// Log lines waiting to be sent, numbered from the attempt's first line.
struct LogBuffer {
    next_seq: i64,
    lines: Vec<String>,
}

impl LogBuffer {
    /// The log of a try from line `first_seq` on (a try carrying on after a deferral already
    /// has lines), opened with the line saying which try runs where.
    fn open(a: &AttemptRef, first_seq: i64) -> Self {
        let map_index = if a.map_index >= 0 {
            format!("[{}]", a.map_index)
        } else {
            String::new()
        };
        let first = format!(
            "[leoflow] try {} of {}.{}{map_index} in run {} on {}",
            a.try_number,
            // The DAG as its file and its tenant's people know it.
            leoflow_events::dag_name(&a.dag_id),
            a.task_id,
            a.run_id,
            hostname()
        );
        Self {
            next_seq: first_seq.max(0),
            lines: vec![first],
        }
    }
}

/// Adds the calling span's `traceparent` to a call, so that what the call records joins the
/// try's trace.
type TraceCarrier = fn(tonic::Request<()>) -> Result<tonic::Request<()>, Status>;

/// The client of the control plane's agent service.
type Client = TaskAgentClient<InterceptedService<Channel, TraceCarrier>>;

fn carry_trace(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
    if let Some(value) = leoflow_telemetry::current().and_then(|t| t.parse().ok()) {
        request
            .metadata_mut()
            .insert(leoflow_telemetry::TRACEPARENT, value);
    }
    Ok(request)
}

/// The gRPC side: one lazily connected channel, every call retried within the budget.
#[derive(Clone)]
struct ControlPlane {
    client: Client,
    attempt: AttemptRef,
    endpoint: String,
    retry_budget: Duration,
    /// The CA file the control plane is verified with (for the message when it does not).
    ca_file: Option<PathBuf>,
    /// The secrets the task has read, hidden from its log lines and rendered fields.
    masker: Arc<Mutex<Masker>>,
}

impl ControlPlane {
    /// The control plane of `config` (connected on the first call).
    fn new(config: &AgentConfig) -> Result<Self, AgentError> {
        let channel = channel(&config.endpoint, config.ca_file.as_deref())?;
        Ok(Self {
            client: TaskAgentClient::with_interceptor(channel, carry_trace as TraceCarrier)
                .max_decoding_message_size(crate::MAX_AGENT_MESSAGE)
                .max_encoding_message_size(crate::MAX_AGENT_MESSAGE),
            attempt: config.attempt.clone(),
            endpoint: config.endpoint.clone(),
            retry_budget: config.retry_budget,
            ca_file: config.ca_file.clone(),
            masker: Arc::default(),
        })
    }

    async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, AgentError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            match call(self.client.clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == Code::PermissionDenied => {
                    return Err(AgentError::Refused(status.message().to_owned()));
                }
                Err(status) if status.code() == Code::FailedPrecondition => {
                    return Err(AgentError::Terminated(status.message().to_owned()));
                }
                // Too large or malformed: sending it again would not help.
                Err(status)
                    if matches!(
                        status.code(),
                        Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
                    ) =>
                {
                    return Err(AgentError::Invalid(status.message().to_owned()));
                }
                Err(status) => {
                    // Not retried: the same certificate fails the same way on every call
                    // (this agent reads its CA once), and a server that does not speak TLS
                    // will not start to; retrying would hold the try (and its pod) for the
                    // whole budget before failing with a vaguer reason. A control plane that
                    // is away fails to connect, not in the handshake, and is retried below.
                    if let Some(error) = tls_failure(&status) {
                        return Err(self.tls_refused(error));
                    }
                    if started.elapsed() + backoff > self.retry_budget {
                        return Err(AgentError::Unreachable {
                            endpoint: self.endpoint.clone(),
                            seconds: self.retry_budget.as_secs(),
                            last: status.to_string(),
                        });
                    }
                    tracing::debug!(%status, ?backoff, "control plane call failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn attempt(&self) -> Option<AttemptRef> {
        Some(self.attempt.clone())
    }

    /// Why the handshake failed, with what to check.
    fn tls_refused(&self, error: &rustls::Error) -> AgentError {
        let what = match (error, &self.ca_file) {
            (rustls::Error::InvalidCertificate(_), Some(ca)) => format!(
                "its certificate does not verify against LEOFLOW_AGENT_CA_FILE {} (the server's \
                 agent_tls.ca_file must be the CA that signed agent_tls.cert_file, for the \
                 name agents dial)",
                ca.display()
            ),
            (rustls::Error::InvalidCertificate(_), None) => "its certificate does not verify \
                 against the system's trusted roots (no LEOFLOW_AGENT_CA_FILE: the server hands \
                 agents its agent_tls.ca_file)"
                .to_owned(),
            _ => "the TLS handshake failed: does its gRPC port serve TLS (agent_tls)?".to_owned(),
        };
        AgentError::Tls {
            endpoint: self.endpoint.clone(),
            message: format!("{what}: {error}"),
        }
    }

    async fn register(&self) -> Result<Assignment, AgentError> {
        let register = RegisterRequest {
            attempt: self.attempt(),
            hostname: hostname(),
            pid: std::process::id() as i32,
        };
        self.call(|mut c| {
            let r = register.clone();
            async move { c.register(r).await }
        })
        .await
    }

    async fn heartbeat(&self) -> Result<HeartbeatReply, AgentError> {
        self.call(|mut c| {
            let r = self.attempt.clone();
            async move { c.heartbeat(r).await }
        })
        .await
    }

    async fn pull_xcom(
        &self,
        task_id: String,
        key: String,
        map_index: Option<i32>,
    ) -> Result<Reply, AgentError> {
        let r = PullXComRequest {
            attempt: self.attempt(),
            task_id,
            key,
            map_index,
        };
        let value = self
            .call(|mut c| {
                let r = r.clone();
                async move { c.pull_x_com(r).await }
            })
            .await?;
        Ok(found(value))
    }

    async fn push_xcom(&self, key: String, value: Value) -> Result<Reply, AgentError> {
        let r = PushXComRequest {
            attempt: self.attempt(),
            key,
            value_json: value.to_string(),
        };
        self.call(|mut c| {
            let r = r.clone();
            async move { c.push_x_com(r).await }
        })
        .await?;
        Ok(Reply::Ack)
    }

    /// A Variable or Connection; what it holds is masked in the task's output from now on.
    async fn lookup(&self, kind: LookupKind, key: String) -> Result<Reply, AgentError> {
        let r = LookupRequest {
            attempt: self.attempt(),
            kind: kind as i32,
            key: key.clone(),
        };
        let value = self
            .call(|mut c| {
                let r = r.clone();
                async move { c.lookup(r).await }
            })
            .await?;
        let reply = found(value);
        if let Reply::Found { value, .. } = &reply {
            self.learn_secrets(kind, &key, value);
        }
        Ok(reply)
    }

    async fn trigger_dag_run(&self, r: TriggerDagRunRequest) -> Result<Reply, AgentError> {
        let r = TriggerDagRunRequest {
            attempt: self.attempt(),
            ..r
        };
        let value = self
            .call(|mut c| {
                let r = r.clone();
                async move { c.trigger_dag_run(r).await }
            })
            .await?;
        Ok(found(value))
    }

    async fn read_dag_run(&self, r: ReadDagRunRequest) -> Result<Reply, AgentError> {
        let r = ReadDagRunRequest {
            attempt: self.attempt(),
            ..r
        };
        let value = self
            .call(|mut c| {
                let r = r.clone();
                async move { c.read_dag_run(r).await }
            })
            .await?;
        Ok(found(value))
    }

    async fn report_rendered(&self, fields: Value) -> Result<Reply, AgentError> {
        let fields = self.masker.lock().expect("not poisoned").mask_json(&fields);
        let r = RenderedFields {
            attempt: self.attempt(),
            fields_json: fields.to_string(),
        };
        self.call(|mut c| {
            let r = r.clone();
            async move { c.report_rendered(r).await }
        })
        .await?;
        Ok(Reply::Ack)
    }

    async fn finish(&self, report: Report) -> Result<(), AgentError> {
        let finish = FinishRequest {
            attempt: self.attempt(),
            outcome: report.outcome as i32,
            reason: report.reason,
            branch: report.branch,
            proceed: report.proceed,
            deferral_json: report.deferral.map(|d| d.to_string()),
            reschedule_at: report.reschedule_at,
            outlet_events_json: report
                .outlet_events
                .map(|events| serde_json::to_string(&events).expect("outlet events serialize")),
            runner_lost: report.runner_lost,
        };
        self.call(|mut c| {
            let f = finish.clone();
            async move { c.finish(f).await }
        })
        .await?;
        Ok(())
    }

    /// Remembers what a Variable or Connection the task read must hide from its output, as
    /// Airflow's secrets masker does.
    fn learn_secrets(&self, kind: LookupKind, key: &str, value: &Value) {
        let mut masker = self.masker.lock().expect("not poisoned");
        match (kind, value) {
            (LookupKind::Variable, Value::String(text)) => masker.add_variable(key, text),
            (LookupKind::Connection, Value::Object(fields)) => masker.add_connection(
                fields.get("password").and_then(Value::as_str),
                fields.get("extra").and_then(Value::as_str),
            ),
            _ => {}
        }
    }

    async fn send_logs(&self, logs: &mut LogBuffer) -> Result<(), AgentError> {
        if logs.lines.is_empty() {
            return Ok(());
        }
        let lines = std::mem::take(&mut logs.lines);
        let lines = {
            let masker = self.masker.lock().expect("not poisoned");
            lines
                .into_iter()
                .map(|line| masker.mask(&line).into_owned())
                .collect()
        };
        let batch = LogBatch {
            attempt: self.attempt(),
            seq: logs.next_seq,
            lines,
        };
        logs.next_seq += batch.lines.len() as i64;
        self.call(|mut c| {
            let batch = batch.clone();
            async move { c.append_logs(batch).await }
        })
        .await?;
        Ok(())
    }
}

/// The lazily connected channel to `config`'s endpoint, over TLS for `https://`.
/// A channel to the control plane at `address`, over TLS verified with `ca_file` (else the
/// system's roots) for an `https://` one.
pub(crate) fn channel(
    address: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<Channel, AgentError> {
    let mut endpoint = Endpoint::from_shared(address.to_owned())
        .map_err(|_| AgentError::Endpoint(address.to_owned()))?
        .connect_timeout(Duration::from_secs(2));
    if endpoint.uri().scheme_str() == Some("https") {
        let tls_error = |message: String| AgentError::Tls {
            endpoint: address.to_owned(),
            message,
        };
        endpoint = endpoint
            .tls_config(client_tls(ca_file).map_err(tls_error)?)
            .map_err(|e| tls_error(error_chain(&e)))?;
    }
    Ok(endpoint.connect_lazy())
}

/// How the agent verifies the control plane: against the CA in `ca_file` (the server's
/// `agent_tls.ca_file`), else against the system's roots.
fn client_tls(ca_file: Option<&std::path::Path>) -> Result<ClientTlsConfig, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let Some(path) = ca_file else {
        return Ok(ClientTlsConfig::new().with_native_roots());
    };
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read LEOFLOW_AGENT_CA_FILE {}: {e}", path.display()))?;
    // tonic skips what it cannot parse: an empty trust store would fail every handshake with
    // a reason that does not name the file.
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("LEOFLOW_AGENT_CA_FILE {}: {e}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "LEOFLOW_AGENT_CA_FILE {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))
}

/// The TLS error a call failed with, if its connection failed in the handshake.
fn tls_failure(status: &Status) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(error) = source {
        // An io::Error's `source` skips the error it wraps: look inside it too.
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(error), inner].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
        }
        source = error.source();
    }
    None
}

/// An error and its causes, on one line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// A looked-up value as the runner reads it.
fn found(value: crate::proto::JsonValue) -> Reply {
    Reply::Found {
        found: value.found,
        value: serde_json::from_str(&value.json).unwrap_or(Value::Null),
    }
}

/// Appends a timestamped step of this agent to the file named by `LEOFLOW_AGENT_TRACE`, when
/// set: how the benchmarks see where a try's time goes. Costs nothing when unset.
fn trace(step: &str) {
    use std::io::Write;
    tracing::debug!(step, "agent step");
    let Some(path) = std::env::var_os("LEOFLOW_AGENT_TRACE") else {
        return;
    };
    let now = chrono::Utc::now().format("%H:%M:%S%.3f");
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        let _ = writeln!(file, "{now} {} {step}", std::process::id());
    }
}

/// Writes a line to the agent's stderr, ignoring failure: that pipe leads to the control plane
/// that started the agent, and an agent must outlive a control plane that was killed (where
/// `eprintln!` would panic on the broken pipe). The executor keeps the end of that stderr as
/// the try's failure reason when the agent ends without a report, so this is for the user,
/// not a diagnostic.
pub fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// The span every event of an attempt's agent is recorded in.
fn attempt_span(a: &AttemptRef) -> tracing::Span {
    tracing::info_span!(
        "attempt",
        dag_id = %a.dag_id,
        run_id = %a.run_id,
        task_id = %a.task_id,
        map_index = a.map_index,
        try_number = a.try_number,
        trace_id = tracing::field::Empty,
    )
}

/// Runs the attempt to its end. Returns `Ok` once an outcome was reported (whatever it was).
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let span = attempt_span(&config.attempt);
    leoflow_telemetry::adopt(&span, config.trace_parent.as_deref());
    leoflow_telemetry::record_trace_id(&span);
    run_attempt(config).instrument(span).await
}

async fn run_attempt(config: AgentConfig) -> Result<(), AgentError> {
    trace("start");
    let plane = ControlPlane::new(&config)?;
    let assignment = plane.register().await?;
    trace("registered");
    let mut logs = LogBuffer::open(&config.attempt, assignment.log_seq);
    let report = run_task(&config, &plane, &assignment, &mut logs).await?;
    if report.outcome != ProtoOutcome::Success {
        logs.lines.push(format!(
            "[leoflow] {}: {}",
            outcome_word(report.outcome),
            report.reason
        ));
    }
    trace("runner done");
    tracing::info!(outcome = outcome_word(report.outcome), reason = %report.reason, "the try ended");
    plane.send_logs(&mut logs).await?;
    trace("logs sent");
    plane.finish(report).await?;
    trace("finished");
    Ok(())
}

/// Runs the assigned task, or does nothing for a task that runs nothing.
async fn run_task(
    config: &AgentConfig,
    plane: &ControlPlane,
    assignment: &Assignment,
    logs: &mut LogBuffer,
) -> Result<Report, AgentError> {
    let task: TaskSpec = match serde_json::from_str(&assignment.task_json) {
        Ok(task) => task,
        Err(error) => {
            tracing::warn!(%error, "the control plane sent a task this agent cannot read");
            return Ok(Report::failed(format!(
                "this agent cannot read the task's dag.json entry: {error}"
            )));
        }
    };
    // Airflow does not run EmptyOperator at all, unless it has callbacks: it succeeds as soon as
    // it is scheduled.
    if task.operator == Operator::Standard(OperatorKind::EmptyOperator)
        && !task.rest.contains_key("callbacks")
    {
        logs.lines
            .push("[leoflow] EmptyOperator: nothing to run".into());
        return Ok(Report::new(ProtoOutcome::Success, ""));
    }
    let heartbeat = Duration::from_secs_f64(assignment.heartbeat_interval.clamp(0.05, 60.0));
    let span = tracing::info_span!("runner", operator = ?task.operator);
    supervise(config, plane, assignment, task, heartbeat, logs)
        .instrument(span)
        .await
}

fn outcome_word(outcome: ProtoOutcome) -> &'static str {
    match outcome {
        ProtoOutcome::Success => "success",
        ProtoOutcome::Failed => "failed",
        ProtoOutcome::FailedNoRetry => "failed (no retry)",
        ProtoOutcome::Skipped => "skipped",
        ProtoOutcome::TimedOut => "timed out",
        ProtoOutcome::Deferred => "deferred",
        ProtoOutcome::Rescheduled => "up for reschedule",
    }
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;
type Writer = Box<dyn tokio::io::AsyncWrite + Unpin + Send>;

/// The Python task runner of this attempt: forked by the zygote, or a child process.
struct Runner {
    /// Its standard streams, until they are taken for the conversation ([`Runner::pipes`]).
    pipes: Option<Pipes>,
    /// Its process group (its pid).
    pid: Option<u32>,
    /// Set when it is our child (we can wait for its status).
    child: Option<Child>,
    /// Held while the runner may live (a forked runner kills itself when it closes).
    _lifeline: Option<std::os::fd::OwnedFd>,
}

/// The agent's ends of a runner's standard streams.
struct Pipes {
    /// Its stdin: the start message, then the replies.
    stdin: Writer,
    /// Its stdout: its requests.
    stdout: Reader,
    /// Its stderr: the task log.
    stderr: Reader,
}

impl Runner {
    fn start(
        config: &AgentConfig,
        assignment: &Assignment,
        logs: &mut LogBuffer,
    ) -> Result<Self, String> {
        if let Some(socket) = &config.zygote {
            match Self::fork(socket, config, assignment) {
                Ok(runner) => return Ok(runner),
                // A missing zygote (its control plane restarted, say) only costs speed.
                Err(error) => {
                    tracing::info!(%error, "the zygote is unavailable; starting Python");
                    logs.lines.push(format!(
                        "[leoflow] the warm Python process is unavailable ({error}); starting a new one"
                    ))
                }
            }
        }
        let mut child = spawn_runner(config)?;
        Ok(Self {
            pipes: Some(Pipes {
                stdin: Box::new(child.stdin.take().expect("piped")),
                stdout: Box::new(child.stdout.take().expect("piped")),
                stderr: Box::new(child.stderr.take().expect("piped")),
            }),
            pid: child.id(),
            child: Some(child),
            _lifeline: None,
        })
    }

    /// A runner forked by the zygote, which keeps a process that already ran this version of
    /// the DAG file.
    fn fork(
        socket: &std::path::Path,
        config: &AgentConfig,
        assignment: &Assignment,
    ) -> Result<Self, String> {
        let version = crate::zygote::DagFileVersion {
            fileloc: &assignment.fileloc,
            source: &assignment.source,
        };
        let forked = crate::zygote::fork_runner(socket, config.project_dir.as_deref(), version)
            .map_err(|e| e.to_string())?;
        let reader = |fd| -> Result<Reader, String> {
            let pipe = tokio::net::unix::pipe::Receiver::from_owned_fd(fd);
            Ok(Box::new(pipe.map_err(|e| e.to_string())?))
        };
        let stdin = tokio::net::unix::pipe::Sender::from_owned_fd(forked.stdin)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            pipes: Some(Pipes {
                stdin: Box::new(stdin),
                stdout: reader(forked.stdout)?,
                stderr: reader(forked.stderr)?,
            }),
            pid: Some(forked.pid),
            child: None,
            _lifeline: Some(forked.lifeline),
        })
    }

    /// Its standard streams, taken once.
    fn pipes(&mut self) -> Pipes {
        self.pipes
            .take()
            .expect("the runner's pipes are taken once")
    }

    /// How the runner ended (its pipes are closed by then).
    async fn ended(&mut self) -> String {
        match &mut self.child {
            Some(child) => child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string()),
            None => "it closed its output".to_owned(),
        }
    }

    fn kill(&self) {
        if let Some(pid) = self.pid {
            // SAFETY: plain syscall; the group id is the runner's pid (its own group/session).
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

/// How long past its `execution_timeout` a runner that did not stop by itself (its
/// `AirflowTaskTimeout`, its callbacks) is killed.
pub const RUNNER_TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// Runs the Python task runner and relays until it exits, times out or must stop.
///
/// The runner's requests are answered on their own task, so a call that is being retried
/// (the control plane restarting) holds up neither the heartbeats nor the log; and the
/// `execution_timeout` deadline is raced against everything, so it fires even while a call
/// retries.
async fn supervise(
    config: &AgentConfig,
    plane: &ControlPlane,
    assignment: &Assignment,
    task: TaskSpec,
    heartbeat_every: Duration,
    logs: &mut LogBuffer,
) -> Result<Report, AgentError> {
    trace("forking");
    let mut runner = match Runner::start(config, assignment, logs) {
        Ok(runner) => runner,
        Err(reason) => return Ok(Report::failed(reason)),
    };
    let Pipes {
        mut stdin,
        stdout,
        stderr,
    } = runner.pipes();
    let timeout = task.execution_timeout.map(Duration::from_secs_f64);
    // A runner that died at once tells why by its exit status and stderr, below.
    let _ = write_line(&mut stdin, &start_message(config, assignment, task)).await;
    trace("runner started");
    let (log_tx, mut log_rx) = mpsc::channel::<String>(1024);
    tokio::spawn(read_log_lines(stderr, log_tx).in_current_span());
    let relay = relay_requests(plane.clone(), BufReader::new(stdout), stdin);
    let relay = AbortOnDrop(tokio::spawn(relay.in_current_span()));
    // The runner raises Airflow's `AirflowTaskTimeout` in the task at `execution_timeout`, and
    // fails with its callbacks; it is killed only if it has not stopped a little later.
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t + RUNNER_TIMEOUT_GRACE);
    let relayed = tokio::select! {
        ended = relay_until_end(plane, &mut runner, relay, &mut log_rx, heartbeat_every, logs) => ended,
        _ = sleep_until(deadline) => Err(Stop::TimedOut),
    };
    let stop = match relayed {
        Ok(report) => return Ok(report),
        Err(stop) => stop,
    };
    runner.kill();
    stopped(stop, plane, &mut log_rx, timeout, logs).await
}

/// The end of a try whose runner was killed: why, with the log lines it still wrote.
async fn stopped(
    stop: Stop,
    plane: &ControlPlane,
    log_rx: &mut mpsc::Receiver<String>,
    timeout: Option<Duration>,
    logs: &mut LogBuffer,
) -> Result<Report, AgentError> {
    match stop {
        Stop::Failed(error) => Err(error),
        Stop::TimedOut => {
            drain(log_rx, logs).await;
            let limit = timeout.unwrap_or_default().as_secs_f64();
            let grace = RUNNER_TIMEOUT_GRACE.as_secs();
            Ok(Report::new(
                ProtoOutcome::TimedOut,
                format!(
                    "execution_timeout of {limit} s exceeded and the task did not stop within \
                     {grace} s of it; the task was killed"
                ),
            ))
        }
        Stop::Told(reason, note) => {
            drain(log_rx, logs).await;
            logs.lines.push(note);
            let _ = plane.send_logs(logs).await;
            Err(AgentError::Terminated(reason))
        }
        Stop::Protocol(reason) => {
            drain(log_rx, logs).await;
            Ok(Report::failed(reason))
        }
    }
}

/// What the runner is handed first: the attempt, its task and the DAG file's version.
fn start_message(config: &AgentConfig, assignment: &Assignment, task: TaskSpec) -> Start {
    let a = &config.attempt;
    Start {
        // The task sees its DAG's id as its file gives it, not its key in the tenant.
        dag_id: leoflow_events::dag_name(&a.dag_id).to_owned(),
        run_id: a.run_id.clone(),
        task_id: a.task_id.clone(),
        map_index: a.map_index,
        try_number: a.try_number,
        task,
        source: assignment.source.clone(),
        fileloc: assignment.fileloc.clone(),
        run: serde_json::from_str(&assignment.run_json).unwrap_or(Value::Null),
        try_started_at: Some(assignment.try_started_at.clone()).filter(|at| !at.is_empty()),
        resume: assignment
            .resume_json
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok()),
        // The runner's span: the task's own spans (if it traces) continue the try's trace.
        traceparent: leoflow_telemetry::current(),
    }
}

/// Why relaying stopped before the runner reported and exited.
enum Stop {
    /// `execution_timeout` passed.
    TimedOut,
    /// The control plane or the executor said stop: the reason, and the note for the log.
    Told(String, String),
    /// A call failed for good (refused, unreachable past the budget).
    Failed(AgentError),
    /// The runner does not speak this agent's protocol: why.
    Protocol(String),
}

/// Aborts the task when dropped: a relay must not outlive the attempt it serves.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends logs and heartbeats until the runner has reported, closed its pipes and exited.
async fn relay_until_end(
    plane: &ControlPlane,
    runner: &mut Runner,
    mut relay: AbortOnDrop<Result<Option<Report>, Stop>>,
    log_rx: &mut mpsc::Receiver<String>,
    heartbeat_every: Duration,
    logs: &mut LogBuffer,
) -> Result<Report, Stop> {
    let started = tokio::time::Instant::now();
    let mut heartbeat = tokio::time::interval_at(started + heartbeat_every, heartbeat_every);
    let mut flush = tokio::time::interval(Duration::from_millis(100));
    let mut terminate = signal_stream();
    let mut done: Option<Report> = None;
    let mut requests_open = true;
    let mut logs_open = true;
    loop {
        tokio::select! {
            relayed = &mut relay.0, if requests_open => {
                requests_open = false;
                done = relayed.map_err(|panicked| Stop::Failed(AgentError::Invalid(format!(
                    "the request relay failed: {panicked}"
                ))))??;
            }
            line = log_rx.recv(), if logs_open => match line {
                Some(line) => {
                    logs.lines.push(line);
                    if logs.lines.len() >= 500 {
                        plane.send_logs(logs).await.map_err(Stop::Failed)?;
                    }
                }
                None => logs_open = false,
            },
            status = runner.ended(), if !requests_open && !logs_open => {
                return Ok(done.unwrap_or_else(|| Report::runner_lost(format!(
                    "the task process ended ({status}) without reporting an outcome"
                ))));
            }
            _ = heartbeat.tick() => beat(plane).await?,
            _ = flush.tick() => plane.send_logs(logs).await.map_err(Stop::Failed)?,
            _ = terminate.recv() => {
                let note = "[leoflow] the executor stopped this try".to_owned();
                return Err(Stop::Told("SIGTERM from the executor".into(), note));
            }
        }
    }
}

/// One heartbeat; the control plane's answer may be to stop.
async fn beat(plane: &ControlPlane) -> Result<(), Stop> {
    match plane.heartbeat().await {
        Ok(reply) if reply.terminate => {
            let note = format!("[leoflow] stopped: {}", reply.reason);
            Err(Stop::Told(reply.reason, note))
        }
        Ok(_) => Ok(()),
        Err(AgentError::Terminated(reason)) => {
            let note = format!("[leoflow] stopped: {reason}");
            Err(Stop::Told(reason, note))
        }
        Err(other) => Err(Stop::Failed(other)),
    }
}

/// Answers the runner's requests one after the other until it closes its output; returns
/// the outcome it reported, if it did. The first request must be a hello of this protocol:
/// a runner of another version is stopped at once.
async fn relay_requests(
    plane: ControlPlane,
    requests: BufReader<Reader>,
    mut stdin: Writer,
) -> Result<Option<Report>, Stop> {
    let mut requests = requests.lines();
    let mut done = None;
    let mut greeted = false;
    while let Ok(Some(line)) = requests.next_line().await {
        trace("request");
        let request = parse_request(&line);
        if !greeted {
            if let Some(mismatch) =
                crate::protocol::greeting_error(request.as_ref().map_err(String::as_str))
            {
                tracing::warn!(reason = %mismatch, "the task runner speaks another protocol");
                let _ = write_line(
                    &mut stdin,
                    &Reply::Refused {
                        error: mismatch.clone(),
                    },
                )
                .await;
                return Err(Stop::Protocol(mismatch));
            }
            greeted = true;
        }
        let reply = match request {
            Ok(request) => answer(&plane, request, &mut done)
                .await
                .map_err(Stop::Failed)?,
            Err(error) => Reply::Refused { error },
        };
        let _ = write_line(&mut stdin, &reply).await;
    }
    Ok(done)
}

/// One line of the runner as a request, or why it is none (for the runner to see).
fn parse_request(line: &str) -> Result<Request, String> {
    serde_json::from_str(line).map_err(|error| {
        let shown: String = line.chars().take(200).collect();
        tracing::warn!(%error, line = %shown, "the task runner sent a bad request");
        format!("bad request {shown:?}: {error}")
    })
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Takes whatever log lines are already buffered after the runner was killed.
async fn drain(log_rx: &mut mpsc::Receiver<String>, logs: &mut LogBuffer) {
    let until = tokio::time::Instant::now() + Duration::from_millis(200);
    while let Ok(Some(line)) = tokio::time::timeout_at(until, log_rx.recv()).await {
        logs.lines.push(line);
    }
}

fn signal_stream() -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(1);
    if let Ok(mut sigterm) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        tokio::spawn(async move {
            if sigterm.recv().await.is_some() {
                let _ = tx.send(()).await;
            }
        });
    }
    rx
}

/// Answers one request of the runner: a call to the control plane, or the outcome noted in
/// `done`.
async fn answer(
    plane: &ControlPlane,
    request: Request,
    done: &mut Option<Report>,
) -> Result<Reply, AgentError> {
    tracing::debug!(op = request.op(), "request of the task runner");
    let answered = match request {
        // Agreed at the first request; one later is answered the same way.
        Request::Hello { .. } => Ok(crate::protocol::greeting_error(Ok(&request))
            .map_or(Reply::Ack, |error| Reply::Refused { error })),
        Request::XcomPull {
            task_id,
            key,
            map_index,
        } => plane.pull_xcom(task_id, key, map_index).await,
        Request::XcomPush { key, value } => plane.push_xcom(key, value).await,
        Request::Variable { key } => plane.lookup(LookupKind::Variable, key).await,
        Request::Connection { key } => plane.lookup(LookupKind::Connection, key).await,
        Request::AssetEvents { name, uri } => {
            let key = serde_json::json!({"name": name, "uri": uri}).to_string();
            plane.lookup(LookupKind::AssetEvents, key).await
        }
        Request::AssetAliasEvents { name } => {
            plane.lookup(LookupKind::AssetAliasEvents, name).await
        }
        Request::TriggeringAssetEvents => {
            plane
                .lookup(LookupKind::TriggeringAssetEvents, String::new())
                .await
        }
        Request::TriggerDagRun {
            dag_id,
            run_id,
            conf,
            logical_date,
            reset_dag_run,
            fail_when_dag_is_paused,
            note,
        } => {
            let conf = if conf.is_null() {
                serde_json::json!({})
            } else {
                conf
            };
            let r = TriggerDagRunRequest {
                attempt: None,
                dag_id,
                run_id,
                conf_json: conf.to_string(),
                logical_date,
                reset_dag_run,
                fail_when_dag_is_paused,
                note,
            };
            plane.trigger_dag_run(r).await
        }
        Request::DagRun {
            dag_id,
            run_id,
            logical_date,
        } => {
            let r = ReadDagRunRequest {
                attempt: None,
                dag_id,
                run_id,
                logical_date,
            };
            plane.read_dag_run(r).await
        }
        Request::Rendered { fields } => plane.report_rendered(fields).await,
        Request::Done {
            outcome,
            reason,
            branch,
            proceed,
            deferral,
            reschedule_at,
            outlet_events,
        } => {
            *done = Some(Report::done(Done {
                outcome,
                reason,
                branch,
                proceed,
                deferral,
                reschedule_at,
                outlet_events,
            }));
            Ok(Reply::Ack)
        }
    };
    match answered {
        Ok(reply) => Ok(reply),
        // The runner sees the failure as an exception in the task; a refusal stops everything.
        Err(AgentError::Unreachable { .. }) => Ok(Reply::Refused {
            error: "the control plane is unreachable".into(),
        }),
        Err(AgentError::Invalid(error)) => Ok(Reply::Refused { error }),
        Err(other) => Err(other),
    }
}

async fn write_line(
    stdin: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    message: &impl Serialize,
) -> std::io::Result<()> {
    let mut line = serde_json::to_string(message)?;
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}

/// The longest log line kept as one; longer ones are split into pieces of at most this size.
const MAX_LINE: usize = 64 * 1024;

/// Reads the runner's stderr as log lines: bytes that are not UTF-8 are replaced (a task may
/// print binary garbage), NUL bytes dropped (Postgres text cannot hold them), lines longer than
/// [`MAX_LINE`] split between characters, so no byte is lost or mangled.
async fn read_log_lines(mut stderr: Reader, tx: mpsc::Sender<String>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            for piece in pieces(&line[..end]) {
                if tx.send(clean_line(piece)).await.is_err() {
                    return;
                }
            }
        }
        // A line still without its end is sent in pieces once it is long enough.
        while pending.len() > MAX_LINE {
            let cut = char_boundary(&pending, MAX_LINE);
            let piece: Vec<u8> = pending.drain(..cut).collect();
            if tx.send(clean_line(&piece)).await.is_err() {
                return;
            }
        }
    }
    for piece in pieces(&pending) {
        let _ = tx.send(clean_line(piece)).await;
    }
}

/// `line` in pieces of at most [`MAX_LINE`] bytes, cut between UTF-8 characters.
fn pieces(mut line: &[u8]) -> Vec<&[u8]> {
    let mut pieces = Vec::new();
    while line.len() > MAX_LINE {
        let (piece, rest) = line.split_at(char_boundary(line, MAX_LINE));
        pieces.push(piece);
        line = rest;
    }
    if !line.is_empty() || pieces.is_empty() {
        pieces.push(line);
    }
    pieces
}

/// The last index at or below `max` that does not fall inside a UTF-8 character (`max` itself
/// for bytes that are not UTF-8 at all).
fn char_boundary(bytes: &[u8], max: usize) -> usize {
    let continuation = |b: u8| b & 0b1100_0000 == 0b1000_0000;
    (max.saturating_sub(3)..=max)
        .rev()
        .find(|&i| i < bytes.len() && !continuation(bytes[i]))
        .filter(|&i| i > 0)
        .unwrap_or(max)
}

/// One log line as text: invalid UTF-8 replaced, NUL and a trailing `\r` dropped.
fn clean_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end_matches('\r').replace('\0', "")
}

fn spawn_runner(config: &AgentConfig) -> Result<Child, String> {
    // The task sees the allow-listed environment, never the attempt token.
    let mut command = crate::command::sdk_python(&config.python, &config.sdk_path, "runner");
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout kills the task's children too.
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &config.project_dir {
        command.current_dir(dir);
    }
    // SAFETY: prctl is async-signal-safe; the runner dies with its agent (no orphaned tasks).
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command.spawn().map_err(|e| {
        format!(
            "cannot start the Python task runner with {}: {e}",
            config.python.display()
        )
    })
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{MAX_LINE, clean_line, pieces};

    #[test]
    fn long_lines_are_cut_between_characters() {
        let line = "é".repeat(MAX_LINE);
        let cut: Vec<String> = pieces(line.as_bytes())
            .into_iter()
            .map(clean_line)
            .collect();
        assert!(cut.len() >= 2);
        assert!(
            cut.iter()
                .all(|p| p.len() <= MAX_LINE && !p.contains('\u{fffd}'))
        );
        assert_eq!(cut.concat(), line);
        assert_eq!(pieces(b""), [b"" as &[u8]]);
    }

    #[test]
    fn log_lines_survive_binary_garbage() {
        assert_eq!(clean_line(b"ok\xff\xfe\0end\r"), "ok\u{fffd}\u{fffd}end");
    }
}
