//! The task agent (`leoflow agent`): one process per task attempt.
//!
//! It registers the attempt with the control plane (which records that the try runs), fetches
//! what to run, starts the SDK's Python task runner (`leoflow.runner`), and then relays: the
//! runner's requests (XCom pull/push, Variables, Connections, its outcome) arrive as JSON lines
//! on the runner's stdout and go out as gRPC calls; the runner's stderr is the task log, sent
//! in numbered batches; a heartbeat tells the control plane the attempt is alive and learns
//! when it must stop. The agent enforces `execution_timeout` by killing the runner's process
//! group. Every call carries the attempt token; calls are retried with backoff while the control
//! plane is away (a restart), and a refused token ends the agent at once.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leoflow_secrets::masking::Masker;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::proto::finish_request::Outcome as ProtoOutcome;
use crate::proto::lookup_request::Kind as LookupKind;
use crate::proto::task_agent_client::TaskAgentClient;
use crate::proto::{
    AttemptRef, FinishRequest, LogBatch, LookupRequest, PullXComRequest, PushXComRequest,
    RegisterRequest,
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
}

/// How a try ended, as the agent reports it.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    outcome: ProtoOutcome,
    reason: String,
    branch: Vec<String>,
    proceed: Option<bool>,
}

impl Report {
    fn failed(reason: impl Into<String>) -> Self {
        Self {
            outcome: ProtoOutcome::Failed,
            reason: reason.into(),
            branch: Vec::new(),
            proceed: None,
        }
    }
}

/// Log lines waiting to be sent, numbered from the attempt's first line.
struct LogBuffer {
    next_seq: i64,
    lines: Vec<String>,
}

/// The gRPC side: one lazily connected channel, every call retried within the budget.
#[derive(Clone)]
struct ControlPlane {
    client: TaskAgentClient<Channel>,
    attempt: AttemptRef,
    endpoint: String,
    retry_budget: Duration,
    /// The secrets the task has read, hidden from its log lines and rendered fields.
    masker: Arc<Mutex<Masker>>,
}

impl ControlPlane {
    async fn call<T, F, Fut>(&self, mut call: F) -> Result<T, AgentError>
    where
        F: FnMut(TaskAgentClient<Channel>) -> Fut,
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
                    if started.elapsed() + backoff > self.retry_budget {
                        return Err(AgentError::Unreachable {
                            endpoint: self.endpoint.clone(),
                            seconds: self.retry_budget.as_secs(),
                            last: status.to_string(),
                        });
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn attempt(&self) -> Option<AttemptRef> {
        Some(self.attempt.clone())
    }

    /// Remembers what a Variable or Connection the task read must hide from its output, as
    /// Airflow's secrets masker does.
    fn learn_secrets(&self, op: &str, key: &str, value: &Value) {
        let mut masker = self.masker.lock().expect("not poisoned");
        match (op, value) {
            ("variable", Value::String(text)) => masker.add_variable(key, text),
            ("connection", Value::Object(fields)) => masker.add_connection(
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

/// Appends a timestamped step of this agent to the file named by `LEOFLOW_AGENT_TRACE`, when
/// set: how the benchmarks see where a try's time goes. Costs nothing when unset.
fn trace(step: &str) {
    use std::io::Write;
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
/// `eprintln!` would panic on the broken pipe).
pub fn note(message: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// Runs the attempt to its end. Returns `Ok` once an outcome was reported (whatever it was).
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    trace("start");
    let channel = Channel::from_shared(config.endpoint.clone())
        .map_err(|_| AgentError::Endpoint(config.endpoint.clone()))?
        .connect_timeout(Duration::from_secs(2))
        .connect_lazy();
    let plane = ControlPlane {
        client: TaskAgentClient::new(channel)
            .max_decoding_message_size(crate::MAX_AGENT_MESSAGE)
            .max_encoding_message_size(crate::MAX_AGENT_MESSAGE),
        attempt: config.attempt.clone(),
        endpoint: config.endpoint.clone(),
        retry_budget: config.retry_budget,
        masker: Arc::default(),
    };
    let register = RegisterRequest {
        attempt: plane.attempt(),
        hostname: hostname(),
        pid: std::process::id() as i32,
    };
    let assignment = plane
        .call(|mut c| {
            let r = register.clone();
            async move { c.register(r).await }
        })
        .await?;
    trace("registered");
    let task: Value = serde_json::from_str(&assignment.task_json).unwrap_or(Value::Null);
    let mut logs = LogBuffer {
        next_seq: 0,
        lines: Vec::new(),
    };
    let a = &config.attempt;
    logs.lines.push(format!(
        "[leoflow] try {} of {}.{}{} in run {} on {}",
        a.try_number,
        a.dag_id,
        a.task_id,
        if a.map_index >= 0 {
            format!("[{}]", a.map_index)
        } else {
            String::new()
        },
        a.run_id,
        hostname()
    ));
    // Airflow does not run EmptyOperator at all: it succeeds as soon as it is scheduled.
    let report = if task["operator"] == "EmptyOperator" {
        logs.lines
            .push("[leoflow] EmptyOperator: nothing to run".into());
        Report {
            outcome: ProtoOutcome::Success,
            reason: String::new(),
            branch: Vec::new(),
            proceed: None,
        }
    } else {
        let heartbeat = Duration::from_secs_f64(assignment.heartbeat_interval.clamp(0.05, 60.0));
        supervise(&config, &plane, &assignment, &task, heartbeat, &mut logs).await?
    };
    if report.outcome != ProtoOutcome::Success {
        logs.lines.push(format!(
            "[leoflow] {}: {}",
            outcome_word(report.outcome),
            report.reason
        ));
    }
    trace("runner done");
    plane.send_logs(&mut logs).await?;
    trace("logs sent");
    let finish = FinishRequest {
        attempt: plane.attempt(),
        outcome: report.outcome as i32,
        reason: report.reason,
        branch: report.branch,
        proceed: report.proceed,
    };
    plane
        .call(|mut c| {
            let f = finish.clone();
            async move { c.finish(f).await }
        })
        .await?;
    trace("finished");
    Ok(())
}

fn outcome_word(outcome: ProtoOutcome) -> &'static str {
    match outcome {
        ProtoOutcome::Success => "success",
        ProtoOutcome::Failed => "failed",
        ProtoOutcome::FailedNoRetry => "failed (no retry)",
        ProtoOutcome::Skipped => "skipped",
        ProtoOutcome::TimedOut => "timed out",
    }
}

/// The Python task runner of this attempt: forked by the zygote, or a child process.
struct Runner {
    stdin: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
    stdout: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    stderr: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    /// Its process group (its pid).
    pid: Option<u32>,
    /// Set when it is our child (we can wait for its status).
    child: Option<Child>,
    /// Held while the runner may live (a forked runner kills itself when it closes).
    _lifeline: Option<std::os::fd::OwnedFd>,
}

impl Runner {
    fn start(
        config: &AgentConfig,
        assignment: &crate::proto::Assignment,
        logs: &mut LogBuffer,
    ) -> Result<Self, String> {
        if let Some(socket) = &config.zygote {
            // The zygote keeps a process that already ran this version of the DAG file.
            let version = crate::zygote::DagFileVersion {
                fileloc: &assignment.fileloc,
                source: &assignment.source,
            };
            match crate::zygote::fork_runner(socket, config.project_dir.as_deref(), version) {
                Ok(forked) => {
                    let reader = |fd| -> Result<_, String> {
                        tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
                            .map_err(|e| e.to_string())
                    };
                    return Ok(Self {
                        stdin: Box::new(
                            tokio::net::unix::pipe::Sender::from_owned_fd(forked.stdin)
                                .map_err(|e| e.to_string())?,
                        ),
                        stdout: Box::new(reader(forked.stdout)?),
                        stderr: Box::new(reader(forked.stderr)?),
                        pid: Some(forked.pid),
                        child: None,
                        _lifeline: Some(forked.lifeline),
                    });
                }
                // A missing zygote (its control plane restarted, say) only costs speed.
                Err(error) => logs.lines.push(format!(
                    "[leoflow] the warm Python process is unavailable ({error}); starting a new one"
                )),
            }
        }
        let mut child = spawn_runner(config)?;
        Ok(Self {
            stdin: Box::new(child.stdin.take().expect("piped")),
            stdout: Box::new(child.stdout.take().expect("piped")),
            stderr: Box::new(child.stderr.take().expect("piped")),
            pid: child.id(),
            child: Some(child),
            _lifeline: None,
        })
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

/// Runs the Python task runner and relays until it exits, times out or must stop.
///
/// The runner's requests are answered on their own task, so a call that is being retried
/// (the control plane restarting) holds up neither the heartbeats nor the log; and the
/// `execution_timeout` deadline is raced against everything, so it fires even while a call
/// retries.
async fn supervise(
    config: &AgentConfig,
    plane: &ControlPlane,
    assignment: &crate::proto::Assignment,
    task: &Value,
    heartbeat_every: Duration,
    logs: &mut LogBuffer,
) -> Result<Report, AgentError> {
    trace("forking");
    let mut runner = match Runner::start(config, assignment, logs) {
        Ok(runner) => runner,
        Err(reason) => return Ok(Report::failed(reason)),
    };
    let mut stdin = std::mem::replace(&mut runner.stdin, Box::new(tokio::io::sink()));
    let requests = BufReader::new(std::mem::replace(
        &mut runner.stdout,
        Box::new(tokio::io::empty()),
    ));
    let stderr = std::mem::replace(&mut runner.stderr, Box::new(tokio::io::empty()));
    if write_line(&mut stdin, &start_message(config, assignment, task))
        .await
        .is_err()
    {
        // The runner died at once; its exit status and stderr tell why, below.
    }
    trace("runner started");
    let (log_tx, mut log_rx) = mpsc::channel::<String>(1024);
    tokio::spawn(read_log_lines(stderr, log_tx));
    let relay = AbortOnDrop(tokio::spawn(relay_requests(plane.clone(), requests, stdin)));
    let timeout = task["execution_timeout"]
        .as_f64()
        .map(Duration::from_secs_f64);
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let relayed = tokio::select! {
        ended = relay_until_end(plane, &mut runner, relay, &mut log_rx, heartbeat_every, logs) => ended,
        _ = sleep_until(deadline) => Err(Stop::TimedOut),
    };
    match relayed {
        Ok(report) => Ok(report),
        Err(Stop::Failed(error)) => {
            runner.kill();
            Err(error)
        }
        Err(Stop::TimedOut) => {
            runner.kill();
            drain(&mut log_rx, logs).await;
            let limit = timeout.unwrap_or_default().as_secs_f64();
            Ok(Report {
                outcome: ProtoOutcome::TimedOut,
                reason: format!("execution_timeout of {limit} s exceeded; the task was killed"),
                branch: Vec::new(),
                proceed: None,
            })
        }
        Err(Stop::Told(reason, note)) => {
            runner.kill();
            drain(&mut log_rx, logs).await;
            logs.lines.push(note);
            let _ = plane.send_logs(logs).await;
            Err(AgentError::Terminated(reason))
        }
    }
}

/// What the runner is handed first: the attempt, its task and the DAG file's version.
fn start_message(
    config: &AgentConfig,
    assignment: &crate::proto::Assignment,
    task: &Value,
) -> Value {
    let a = &config.attempt;
    json!({
        "dag_id": a.dag_id,
        "run_id": a.run_id,
        "task_id": a.task_id,
        "map_index": a.map_index,
        "try_number": a.try_number,
        "task": task,
        "source": assignment.source,
        "fileloc": assignment.fileloc,
        "run": serde_json::from_str::<Value>(&assignment.run_json).unwrap_or(Value::Null),
    })
}

/// Why relaying stopped before the runner reported and exited.
enum Stop {
    /// `execution_timeout` passed.
    TimedOut,
    /// The control plane or the executor said stop: the reason, and the note for the log.
    Told(String, String),
    /// A call failed for good (refused, unreachable past the budget).
    Failed(AgentError),
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
    mut relay: AbortOnDrop<Result<Option<Report>, AgentError>>,
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
                match relayed {
                    Ok(Ok(report)) => done = report,
                    Ok(Err(error)) => return Err(Stop::Failed(error)),
                    Err(panicked) => return Err(Stop::Failed(AgentError::Invalid(format!(
                        "the request relay failed: {panicked}"
                    )))),
                }
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
                return Ok(done.unwrap_or_else(|| Report::failed(format!(
                    "the task process ended ({status}) without reporting an outcome"
                ))));
            }
            _ = heartbeat.tick() => {
                let reply = plane.call(|mut c| {
                    let r = plane.attempt.clone();
                    async move { c.heartbeat(r).await }
                }).await;
                match reply {
                    Ok(reply) if reply.terminate => {
                        let note = format!("[leoflow] stopped: {}", reply.reason);
                        return Err(Stop::Told(reply.reason, note));
                    }
                    Ok(_) => {}
                    Err(AgentError::Terminated(reason)) => {
                        let note = format!("[leoflow] stopped: {reason}");
                        return Err(Stop::Told(reason, note));
                    }
                    Err(other) => return Err(Stop::Failed(other)),
                }
            }
            _ = flush.tick() => plane.send_logs(logs).await.map_err(Stop::Failed)?,
            _ = terminate.recv() => {
                let note = "[leoflow] the executor stopped this try".to_owned();
                return Err(Stop::Told("SIGTERM from the executor".into(), note));
            }
        }
    }
}

/// Answers the runner's requests one after the other until it closes its output; returns
/// the outcome it reported, if it did.
async fn relay_requests(
    plane: ControlPlane,
    requests: BufReader<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
    mut stdin: Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
) -> Result<Option<Report>, AgentError> {
    let mut requests = requests.lines();
    let mut done = None;
    while let Ok(Some(line)) = requests.next_line().await {
        trace("request");
        let answer = answer(&plane, &line, &mut done).await?;
        let _ = write_line(&mut stdin, &answer).await;
    }
    Ok(done)
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

/// Answers one request of the runner.
async fn answer(
    plane: &ControlPlane,
    line: &str,
    done: &mut Option<Report>,
) -> Result<Value, AgentError> {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => return Ok(json!({"ok": false, "error": format!("bad request: {e}")})),
    };
    let text = |key: &str| request[key].as_str().unwrap_or_default().to_owned();
    let found = |v: crate::proto::JsonValue| {
        let value: Value = serde_json::from_str(&v.json).unwrap_or(Value::Null);
        json!({"ok": true, "found": v.found, "value": value})
    };
    let outcome = match request["op"].as_str().unwrap_or_default() {
        "xcom_pull" => {
            let r = PullXComRequest {
                attempt: plane.attempt(),
                task_id: text("task_id"),
                key: text("key"),
                map_index: request["map_index"].as_i64().map(|i| i as i32),
            };
            plane
                .call(|mut c| {
                    let r = r.clone();
                    async move { c.pull_x_com(r).await }
                })
                .await
                .map(found)
        }
        "xcom_push" => {
            let r = PushXComRequest {
                attempt: plane.attempt(),
                key: text("key"),
                value_json: request["value"].to_string(),
            };
            plane
                .call(|mut c| {
                    let r = r.clone();
                    async move { c.push_x_com(r).await }
                })
                .await
                .map(|_| json!({"ok": true}))
        }
        op @ ("variable" | "connection") => {
            let r = LookupRequest {
                attempt: plane.attempt(),
                kind: if op == "variable" {
                    LookupKind::Variable
                } else {
                    LookupKind::Connection
                } as i32,
                key: text("key"),
            };
            let looked_up = plane
                .call(|mut c| {
                    let r = r.clone();
                    async move { c.lookup(r).await }
                })
                .await
                .map(found);
            if let Ok(answer) = &looked_up {
                plane.learn_secrets(op, &text("key"), &answer["value"]);
            }
            looked_up
        }
        "rendered" => {
            let fields = plane
                .masker
                .lock()
                .expect("not poisoned")
                .mask_json(&request["fields"]);
            let r = crate::proto::RenderedFields {
                attempt: plane.attempt(),
                fields_json: fields.to_string(),
            };
            plane
                .call(|mut c| {
                    let r = r.clone();
                    async move { c.report_rendered(r).await }
                })
                .await
                .map(|_| json!({"ok": true}))
        }
        "done" => {
            let outcome = match request["outcome"].as_str().unwrap_or_default() {
                "success" => ProtoOutcome::Success,
                "skipped" => ProtoOutcome::Skipped,
                "failed_no_retry" => ProtoOutcome::FailedNoRetry,
                _ => ProtoOutcome::Failed,
            };
            *done = Some(Report {
                outcome,
                reason: text("reason"),
                branch: request["branch"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                proceed: request["proceed"].as_bool(),
            });
            Ok(json!({"ok": true}))
        }
        other => Ok(json!({"ok": false, "error": format!("unknown request {other:?}")})),
    };
    match outcome {
        Ok(value) => Ok(value),
        // The runner sees the failure as an exception in the task; a refusal stops everything.
        Err(AgentError::Unreachable { .. }) => Ok(json!({
            "ok": false, "error": "the control plane is unreachable"
        })),
        Err(AgentError::Invalid(reason)) => Ok(json!({"ok": false, "error": reason})),
        Err(other) => Err(other),
    }
}

async fn write_line(
    stdin: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    value: &Value,
) -> std::io::Result<()> {
    let mut line = value.to_string();
    line.push('\n');
    stdin.write_all(line.as_bytes()).await?;
    stdin.flush().await
}

/// The longest log line kept as one; longer ones are split into pieces of at most this size.
const MAX_LINE: usize = 64 * 1024;

/// Reads the runner's stderr as log lines: bytes that are not UTF-8 are replaced (a task may
/// print binary garbage), NUL bytes dropped (Postgres text cannot hold them), lines longer than
/// [`MAX_LINE`] split between characters, so no byte is lost or mangled.
async fn read_log_lines(
    mut stderr: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
    tx: mpsc::Sender<String>,
) {
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
pub fn clean_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.trim_end_matches('\r').replace('\0', "")
}

fn spawn_runner(config: &AgentConfig) -> Result<Child, String> {
    let bootstrap = format!(
        "import sys; sys.path.insert(0, {path:?}); from leoflow.runner import main; sys.exit(main())",
        path = config.sdk_path.display().to_string()
    );
    let mut command = Command::new(&config.python);
    // -I: no PYTHON* variables, no user site-packages; -u: unbuffered, so logs stream live.
    command
        .args(["-I", "-u", "-c", &bootstrap])
        // The task sees the allow-listed environment, never the attempt token.
        .env_clear()
        .envs(crate::command::task_environment())
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
