//! The control plane's end of the task agent protocol (`executors/proto/agent.proto`).
//!
//! Every request is checked against the run as the log has it: the named try must be the task
//! instance's current try and the token the one its `TaskDispatched` recorded. A forged token or
//! a stale try is refused with PERMISSION_DENIED; a request of a try that is over (cancelled,
//! marked, timed out) with FAILED_PRECONDITION, which tells the agent to stop. Refusals of
//! reports are recorded as `CommandRejected` events. Reports become commands of the core
//! ([`leoflow_core::run::Command`]) decided against the run's stream, so fencing is the state
//! machine's, not this module's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use leoflow_core::run::{
    AliasEvent, Command, Fence, Outcome, OutletEvents, Rejection, TaskInstance, TiState, XComPush,
};
use leoflow_core::spec::TaskKind;
use leoflow_events::catalog::{AssetKey, CommandRejected, generation_stream};
use leoflow_events::{
    Actor, AppendBatch, AppendError, AttemptDigest, EventStore, Metadata, TaskInstanceKey,
};
use leoflow_executors::proto::finish_request::Outcome as ProtoOutcome;
use leoflow_executors::proto::lookup_request::Kind as LookupKind;
use leoflow_executors::proto::task_agent_server::TaskAgent;
use leoflow_executors::proto::{
    Ack, Assignment, AttemptRef, FinishRequest, HeartbeatReply, JsonValue, LogBatch, LookupRequest,
    PullXComRequest, PushXComRequest, ReadDagRunRequest, RegisterRequest, RenderedFields,
    TriggerDagRunRequest,
};
use leoflow_executors::protocol::OutletEvent;
use leoflow_projector::read;
use leoflow_secrets::Vault;
use serde_json::Value;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::liveness::Liveness;
use crate::lookups::{self, LookupError};
use crate::run_inputs::{self, InputError};

mod dag_runs;
mod deferrals;
use crate::reactor::runs::{
    LoadedRun, Specs, SubmitError, generation_expectation, load_run, submit_fenced,
};
use crate::task_logs;
use crate::xcom_values::XComValues;

/// The gRPC service agents call.
#[derive(Clone)]
pub struct AgentService {
    store: EventStore,
    specs: Specs,
    liveness: Liveness,
    heartbeat_interval: Duration,
    vault: Option<Vault>,
    max_xcom_bytes: usize,
    xcom_values: XComValues,
    tenants: DagTenants,
    /// Whether a triggerer runs the triggers that are not time triggers (else a deferral to
    /// one fails its try, naming the trigger).
    triggerer: bool,
}

/// The tenant of each DAG whose tries called, by (dag_id, generation). A DAG id belongs to one
/// tenant until its delete, and the delete moves the generation, so an entry never goes stale;
/// a try's calls read their DAG's tenant once per process, not once per call.
type DagTenants = Arc<Mutex<HashMap<(String, i64), String>>>;

/// DAG generations whose tenant is kept before the cache starts over (it is only a shortcut).
const TENANT_CACHE_LIMIT: usize = 10_000;

/// The largest XCom value a task may push unless configured otherwise (bytes of JSON).
pub const DEFAULT_MAX_XCOM_BYTES: usize = 16 << 20;

/// What a request may find its try in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    /// Queued (dispatched) or running.
    InFlight,
    /// Any state, as long as the token is the try's (logs may arrive after the end).
    Any,
}

struct Verified {
    run: LoadedRun,
    key: TaskInstanceKey,
    ti: TaskInstance,
    /// Checked again inside the decision (see [`submit_fenced`]).
    fence: Fence,
    /// The token's digest: how the liveness record knows the attempt.
    digest: AttemptDigest,
}

/// Calls refused because they named no run, carried a malformed token or one that is not the
/// current try's (the `leoflow_agent_calls_refused_total` metric).
static REFUSED_CALLS: AtomicU64 = AtomicU64::new(0);
/// When a refused call was last logged (one warning per [`REFUSAL_WARNING_EVERY`]).
static LAST_REFUSAL_WARNING: Mutex<Option<Instant>> = Mutex::new(None);
const REFUSAL_WARNING_EVERY: Duration = Duration::from_secs(10);

/// How many agent calls were refused as not coming from a current attempt.
pub fn refused_calls() -> u64 {
    REFUSED_CALLS.load(Ordering::Relaxed)
}

/// The refusal of a call that does not come from the current try's agent: counted and
/// logged (rate-limited), never appended to the log — anyone who can reach the port could
/// otherwise fill it. It names neither the current try nor why, beyond "not valid".
fn refuse_stranger(key: &TaskInstanceKey, command: &str) -> Status {
    REFUSED_CALLS.fetch_add(1, Ordering::Relaxed);
    let mut last = LAST_REFUSAL_WARNING.lock().expect("not poisoned");
    if last.is_none_or(|at| at.elapsed() >= REFUSAL_WARNING_EVERY) {
        *last = Some(Instant::now());
        tracing::warn!(
            "refused an agent's {command} for {}/{}/{}: not the current attempt \
             ({} refused so far)",
            key.dag_id,
            key.run_id,
            key_text(key),
            refused_calls()
        );
    }
    Status::permission_denied(format!(
        "the attempt is not valid for {}/{}/{}",
        key.dag_id,
        key.run_id,
        key_text(key)
    ))
}

/// Names the try an agent's call is about on the call's span, so everything logged while
/// answering it says which try it was, even when the call is refused. The span of each
/// [`TaskAgent`] call declares these fields empty: the try is known only from the request.
fn record_attempt(attempt: &AttemptRef) {
    let span = tracing::Span::current();
    span.record("dag_id", attempt.dag_id.as_str());
    span.record("run_id", attempt.run_id.as_str());
    span.record("task_id", attempt.task_id.as_str());
    span.record("map_index", attempt.map_index);
    span.record("try_number", attempt.try_number);
}

/// The fence an agent's call claims, if its token is well-formed.
fn fence_of(attempt: &AttemptRef) -> Option<Fence> {
    Some(Fence {
        task_id: attempt.task_id.clone(),
        map_index: attempt.map_index,
        try_number: attempt.try_number,
        attempt_token: Uuid::parse_str(&attempt.attempt_token).ok()?,
    })
}

impl AgentService {
    /// A service deciding against `store`; agents are told to heartbeat every
    /// `heartbeat_interval`.
    pub fn new(
        store: EventStore,
        specs: Specs,
        liveness: Liveness,
        heartbeat_interval: Duration,
    ) -> Self {
        Self {
            store,
            specs,
            liveness,
            heartbeat_interval,
            vault: None,
            max_xcom_bytes: DEFAULT_MAX_XCOM_BYTES,
            xcom_values: XComValues::default(),
            tenants: DagTenants::default(),
            triggerer: false,
        }
    }

    /// Accepts deferrals to any trigger: the control plane runs a triggerer.
    pub fn with_triggerer(mut self) -> Self {
        self.triggerer = true;
        self
    }

    /// Refuses XCom values larger than `bytes` (their task fails with the size and the limit).
    pub fn with_max_xcom_bytes(mut self, bytes: usize) -> Self {
        self.max_xcom_bytes = bytes;
        self
    }

    /// Opens the Variables and Connections tasks read with `vault` (without it, a sealed
    /// secret cannot be read).
    pub fn with_vault(mut self, vault: Vault) -> Self {
        self.vault = Some(vault);
        self
    }

    /// Reads large XCom values through `values` (a cache the replicas share).
    pub fn with_xcom_values(mut self, values: XComValues) -> Self {
        self.xcom_values = values;
        self
    }

    /// The tenant that owns the DAG of `ti`, a try of a run of the DAG's `generation` (as its
    /// call was verified): the tenant whose Variables and Connections the task reads, and in
    /// which what the try reports is recorded. A DAG deleted since is refused as deleted.
    async fn tenant(&self, ti: &TaskInstanceKey, generation: i64) -> Result<String, Status> {
        let cached = (ti.dag_id.clone(), generation);
        if let Some(tenant) = self.tenants.lock().expect("not poisoned").get(&cached) {
            return Ok(tenant.clone());
        }
        let owner = read::dags::owner(self.store.pool(), &ti.dag_id)
            .await
            .map_err(unavailable)?;
        // Read after the owner: had the DAG been deleted since the call was verified (and
        // perhaps registered again, into another tenant), the owner read would be another
        // DAG's, and the generation would have moved.
        let now = self
            .store
            .stream_versions(&[generation_stream(&ti.dag_id)])
            .await
            .map_err(unavailable)?
            .first()
            .map_or(0, |(_, version)| *version);
        let Some(owner) = owner.filter(|_| now == generation) else {
            return Err(deleted(ti));
        };
        let mut tenants = self.tenants.lock().expect("not poisoned");
        if tenants.len() >= TENANT_CACHE_LIMIT {
            tenants.clear();
        }
        tenants.insert(cached, owner.tenant.clone());
        Ok(owner.tenant)
    }

    /// The agent, acting for a try of a DAG of `tenant`: what it reports is recorded in the
    /// tenant, as the scheduler's decisions about the DAG's runs are.
    fn agent(tenant: &str) -> Actor {
        Actor {
            tenant: Some(tenant.to_owned()),
            ..Actor::named("agent")
        }
    }

    /// `tenant`'s Variable `key` as a task of the tenant reads it, if it exists.
    async fn variable(&self, tenant: &str, key: &str) -> Result<Option<Value>, Status> {
        lookups::variable(&self.store, self.vault.as_ref(), tenant, key)
            .await
            .map_err(lookup_status)
    }

    /// The events of the asset `key` names (`{"name", "uri"}`) in `tenant`, oldest first: the
    /// latest [`INLET_EVENTS`] at most.
    async fn asset_events(&self, tenant: &str, key: &str) -> Result<Value, Status> {
        let asset: AssetKey = serde_json::from_str(key).map_err(|e| {
            Status::invalid_argument(format!("an asset is {{\"name\", \"uri\"}}, not {key}: {e}"))
        })?;
        let events = read::assets::events_of(self.store.pool(), tenant, &asset, INLET_EVENTS)
            .await
            .map_err(unavailable)?;
        Ok(Value::Array(events))
    }

    /// `tenant`'s Connection `conn_id` as a task of the tenant reads it, if it exists.
    async fn connection(&self, tenant: &str, conn_id: &str) -> Result<Option<Value>, Status> {
        lookups::connection(&self.store, self.vault.as_ref(), tenant, conn_id)
            .await
            .map_err(lookup_status)
    }

    async fn verify(
        &self,
        attempt: Option<&AttemptRef>,
        command: &str,
        need: Need,
    ) -> Result<Verified, Status> {
        let a = attempt.ok_or_else(|| Status::invalid_argument("the attempt is missing"))?;
        record_attempt(a);
        let key = TaskInstanceKey::mapped(&a.dag_id, &a.run_id, &a.task_id, a.map_index);
        let run = match load_run(&self.store, &self.specs, &a.dag_id, &a.run_id).await {
            Ok(run) => run,
            Err(SubmitError::UnknownRun { .. }) => return Err(refuse_stranger(&key, command)),
            // Deleted with its DAG: the try's own agent is told to stop (a heartbeat answers
            // `terminate`), nothing is recorded — the run's appends end with the delete.
            Err(SubmitError::Deleted { state, .. }) => {
                let holder = fence_of(a)
                    .zip(state)
                    .is_some_and(|(f, s)| f.check(&s).is_ok());
                return Err(if holder {
                    deleted(&key)
                } else {
                    refuse_stranger(&key, command)
                });
            }
            Err(error) => return Err(unavailable(error)),
        };
        let fence = fence_of(a).ok_or_else(|| refuse_stranger(&key, command))?;
        if fence.check(&run.state).is_err() {
            return Err(refuse_stranger(&key, command));
        }
        let ti = run.state.tis[&(a.task_id.clone(), a.map_index)].clone();
        if need == Need::InFlight && !ti.state.is_in_flight() {
            let reason = format!(
                "try {} of {} is over: it is {}",
                a.try_number,
                key_text(&key),
                state_word(ti.state)
            );
            // The caller holds the try's token: its late report is worth keeping.
            if command != "heartbeat" {
                self.record_rejection(&key, run.generation, a.try_number, command, &reason)
                    .await;
            }
            return Err(Status::failed_precondition(reason));
        }
        let digest = AttemptDigest::of(&fence.attempt_token);
        self.liveness.touch(digest.clone());
        Ok(Verified {
            run,
            key,
            ti,
            fence,
            digest,
        })
    }

    /// Records a refused report of a try of a run of DAG `generation` (not once the DAG
    /// was deleted: nothing of its runs lands after the delete).
    async fn record_rejection(
        &self,
        ti: &TaskInstanceKey,
        generation: i64,
        try_number: i32,
        command: &str,
        reason: &str,
    ) {
        let event = CommandRejected {
            ti: ti.clone(),
            try_number,
            command: command.to_owned(),
            reason: reason.to_owned(),
        };
        // Kept even when the tenant cannot be read now: the refusal is worth more than its
        // tenant (a DAG deleted meanwhile refuses the append anyway).
        let tenant = self.tenant(ti, generation).await.ok();
        let agent = match &tenant {
            Some(tenant) => Self::agent(tenant),
            None => Actor::named("agent"),
        };
        let batch = AppendBatch::new()
            .push(event, &Metadata::from(&agent))
            .expect(
                generation_stream(&ti.dag_id),
                generation_expectation(generation),
            );
        match self.store.append(batch).await {
            Ok(_) | Err(AppendError::Conflict { .. }) => {}
            Err(error) => tracing::error!("cannot record a rejected {command}: {error}"),
        }
    }

    /// Decides `commands` for the attempt's run; a refusal is recorded.
    async fn submit(
        &self,
        verified: &Verified,
        try_number: i32,
        command: &str,
        commands: Vec<Command>,
    ) -> Result<(), Status> {
        let key = &verified.key;
        let tenant = self.tenant(key, verified.run.generation).await?;
        match submit_fenced(
            &self.store,
            &self.specs,
            &key.dag_id,
            &key.run_id,
            verified.fence.clone(),
            commands,
            &Self::agent(&tenant),
        )
        .await
        {
            Ok(_) => Ok(()),
            // Re-dispatched since the call was verified: this agent no longer holds the try.
            Err(SubmitError::Rejected(Rejection::NotTheAttempt(_))) => {
                Err(refuse_stranger(key, command))
            }
            // Its DAG was deleted since the call was verified: stop, nothing recorded.
            Err(SubmitError::Deleted { .. }) => Err(deleted(key)),
            Err(SubmitError::Rejected(rejection)) => {
                let reason = rejection.to_string();
                self.record_rejection(key, verified.run.generation, try_number, command, &reason)
                    .await;
                Err(Status::failed_precondition(reason))
            }
            Err(error @ SubmitError::Version { .. }) => {
                Err(Status::failed_precondition(error.to_string()))
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    /// The commands that first mark a queued try as started (an agent that reports without
    /// registering, e.g. an `EmptyOperator` finishing at once, still passes through Running).
    fn start_if_queued(
        verified: &Verified,
        attempt: &AttemptRef,
        hostname: &str,
        pid: Option<i32>,
    ) -> Vec<Command> {
        if verified.ti.state != TiState::Queued {
            return Vec::new();
        }
        vec![Command::ReportStarted {
            task_id: attempt.task_id.clone(),
            map_index: attempt.map_index,
            try_number: attempt.try_number,
            hostname: hostname.to_owned(),
            pid,
        }]
    }

    async fn assignment(
        &self,
        key: &TaskInstanceKey,
        try_number: i32,
    ) -> Result<Assignment, Status> {
        let row = read::runs::context(self.store.pool(), &key.dag_id, &key.run_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Status::not_found(format!("no dag run {}/{}", key.dag_id, key.run_id))
            })?;
        let version = row.dag_version_hash.clone().unwrap_or_default();
        let file = run_inputs::dag_file(&self.store, &self.specs, &key.dag_id, &version)
            .await
            .map_err(input_status)?;
        let task = run_inputs::task(&file.document, &key.task_id).map_err(input_status)?;
        let run =
            run_inputs::run_context(&self.store, &key.dag_id, &key.run_id, &row, &file.document)
                .await
                .map_err(input_status)?;
        let (started_at, resume) = self.continuation(key).await?;
        let log_seq = task_logs::next_seq(self.store.pool(), key, try_number)
            .await
            .map_err(unavailable)?;
        Ok(Assignment {
            log_seq,
            try_started_at: started_at.map(|at| at.to_rfc3339()).unwrap_or_default(),
            resume_json: resume.map(|resume| resume.to_string()),
            task_json: task.to_string(),
            source: file.source,
            fileloc: file.fileloc,
            run_json: run.to_string(),
            heartbeat_interval: self.heartbeat_interval.as_secs_f64(),
        })
    }
}

/// The answer to the agent of a try whose DAG was deleted: stop (FAILED_PRECONDITION).
fn deleted(key: &TaskInstanceKey) -> Status {
    Status::failed_precondition(format!(
        "the DAG {} was deleted with its runs: {}/{} is gone",
        key.dag_id,
        key.run_id,
        key_text(key)
    ))
}

fn key_text(key: &TaskInstanceKey) -> String {
    if key.map_index >= 0 {
        format!("{}[{}]", key.task_id, key.map_index)
    } else {
        key.task_id.clone()
    }
}

fn state_word(state: TiState) -> &'static str {
    match state {
        TiState::Pending => "not scheduled",
        other => other.airflow_name(),
    }
}

/// The span of one call from an agent (the gRPC server's `trace_fn`): named after the method,
/// a child of the agent's span when the call carries its `traceparent`, so that the events the
/// call appends join the try's trace.
pub fn call_span(request: &tonic::codegen::http::Request<()>) -> tracing::Span {
    let method = request.uri().path().rsplit('/').next().unwrap_or_default();
    let span = tracing::info_span!(
        "agent call",
        otel.name = %format!("TaskAgent/{method}"),
        otel.kind = "server",
        rpc.method = %method,
    );
    let parent = request
        .headers()
        .get(leoflow_telemetry::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    leoflow_telemetry::adopt(&span, parent);
    span
}

/// A failure the agent should retry (the database is briefly away, a decision contended).
fn unavailable(error: impl std::fmt::Display) -> Status {
    Status::unavailable(error.to_string())
}

fn lookup_status(error: LookupError) -> Status {
    match error {
        LookupError::Unavailable(why) => Status::unavailable(why),
        LookupError::Refused(why) => Status::invalid_argument(why),
    }
}

fn input_status(error: InputError) -> Status {
    match error {
        InputError::Unavailable(why) => Status::unavailable(why),
        InputError::Missing(why) => Status::failed_precondition(why),
    }
}

/// How many of an asset's latest events a task's `inlet_events` reads.
const INLET_EVENTS: i64 = 10_000;

/// What a successful try gave its outlets' asset events, from the agent's `outlet_events_json`
/// (`[{"name", "uri", "extra"}]`, and `"group"` and `"alias"` for an event added through an
/// alias); each extra must be a JSON object, as Airflow's asset event `extra` is.
fn outlet_events(json: Option<&str>) -> Result<OutletEvents, Status> {
    let mut outlet_events = OutletEvents::default();
    let Some(json) = json else {
        return Ok(outlet_events);
    };
    let events: Vec<OutletEvent> = serde_json::from_str(json).map_err(|e| {
        Status::invalid_argument(format!(
            "outlet events are [{{\"name\", \"uri\", \"extra\"}}]: {e}"
        ))
    })?;
    for event in events {
        if !event.extra.is_object() {
            return Err(Status::invalid_argument(format!(
                "the extra of asset {:?} must be a JSON object, not {}",
                event.uri, event.extra
            )));
        }
        let asset = AssetKey {
            name: event.name,
            uri: event.uri,
        };
        match event.alias {
            Some(alias) => outlet_events.through_aliases.push(AliasEvent {
                alias,
                asset,
                group: event.group.unwrap_or_else(|| "asset".to_owned()),
                extra: event.extra,
            }),
            None => {
                outlet_events.extras.insert(asset, event.extra);
            }
        }
    }
    Ok(outlet_events)
}

#[tonic::async_trait]
impl TaskAgent for AgentService {
    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn trigger_dag_run(
        &self,
        request: Request<TriggerDagRunRequest>,
    ) -> Result<Response<JsonValue>, Status> {
        self.trigger_for(request.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn read_dag_run(
        &self,
        request: Request<ReadDagRunRequest>,
    ) -> Result<Response<JsonValue>, Status> {
        self.read_run_for(request.into_inner())
            .await
            .map(Response::new)
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<Assignment>, Status> {
        let request = request.into_inner();
        let verified = self
            .verify(request.attempt.as_ref(), "register", Need::InFlight)
            .await?;
        let attempt = request.attempt.as_ref().expect("verified");
        let start = Self::start_if_queued(&verified, attempt, &request.hostname, Some(request.pid));
        if !start.is_empty() {
            self.submit(&verified, attempt.try_number, "register", start)
                .await?;
        }
        Ok(Response::new(
            self.assignment(&verified.key, attempt.try_number).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn heartbeat(
        &self,
        request: Request<AttemptRef>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        let attempt = request.into_inner();
        match self
            .verify(Some(&attempt), "heartbeat", Need::InFlight)
            .await
        {
            Ok(_) => Ok(Response::new(HeartbeatReply {
                terminate: false,
                reason: String::new(),
            })),
            // The try ended without this agent (cancelled, marked, timed out): it must stop.
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                Ok(Response::new(HeartbeatReply {
                    terminate: true,
                    reason: status.message().to_owned(),
                }))
            }
            Err(status) => Err(status),
        }
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn append_logs(&self, request: Request<LogBatch>) -> Result<Response<Ack>, Status> {
        let batch = request.into_inner();
        let verified = self
            .verify(batch.attempt.as_ref(), "append_logs", Need::Any)
            .await?;
        let try_number = batch.attempt.as_ref().expect("verified").try_number;
        task_logs::append(
            self.store.pool(),
            &verified.key,
            try_number,
            batch.seq,
            &batch.lines,
        )
        .await
        .map_err(unavailable)?;
        Ok(Response::new(Ack {}))
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn pull_x_com(
        &self,
        request: Request<PullXComRequest>,
    ) -> Result<Response<JsonValue>, Status> {
        let request = request.into_inner();
        let verified = self
            .verify(request.attempt.as_ref(), "pull_xcom", Need::InFlight)
            .await?;
        let key = &verified.key;
        let pull = lookups::XComPull {
            dag_id: &key.dag_id,
            run_id: &key.run_id,
            task_id: &request.task_id,
            key: &request.key,
            map_index: request.map_index,
        };
        let (found, value) =
            lookups::xcom(&self.store, &self.xcom_values, &verified.run.spec, pull)
                .await
                .map_err(lookup_status)?;
        let answer = JsonValue {
            found,
            json: value.to_string(),
        };
        Ok(Response::new(answer))
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn push_x_com(&self, request: Request<PushXComRequest>) -> Result<Response<Ack>, Status> {
        let request = request.into_inner();
        if request.value_json.len() > self.max_xcom_bytes {
            return Err(Status::invalid_argument(format!(
                "the XCom {:?} is {} bytes of JSON, over the limit of {} bytes \
                 (--max-xcom-bytes): pass a reference to the data (a path, a URI) instead",
                request.key,
                request.value_json.len(),
                self.max_xcom_bytes
            )));
        }
        let value: Value = serde_json::from_str(&request.value_json)
            .map_err(|e| Status::invalid_argument(format!("the XCom value is not JSON: {e}")))?;
        if request.key.is_empty() {
            return Err(Status::invalid_argument("the XCom key is empty"));
        }
        let verified = self
            .verify(request.attempt.as_ref(), "push_xcom", Need::InFlight)
            .await?;
        let attempt = request.attempt.as_ref().expect("verified");
        let content = value.to_string();
        let value_hash = self
            .store
            .put_blob("application/json", &content)
            .await
            .map_err(unavailable)?;
        let length = match &value {
            Value::Array(items) => Some(items.len() as i64),
            Value::Object(items) => Some(items.len() as i64),
            _ => None,
        };
        let mut commands = Self::start_if_queued(&verified, attempt, "", None);
        commands.push(Command::PushXCom(XComPush {
            task_id: attempt.task_id.clone(),
            map_index: attempt.map_index,
            try_number: attempt.try_number,
            key: request.key.clone(),
            value_hash,
            size_bytes: content.len() as i64,
            length,
        }));
        self.submit(&verified, attempt.try_number, "push_xcom", commands)
            .await?;
        Ok(Response::new(Ack {}))
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn lookup(&self, request: Request<LookupRequest>) -> Result<Response<JsonValue>, Status> {
        let request = request.into_inner();
        let verified = self
            .verify(request.attempt.as_ref(), "lookup", Need::InFlight)
            .await?;
        // A task reads its own DAG's tenant's Variables and Connections, whatever key it names.
        let tenant = self.tenant(&verified.key, verified.run.generation).await?;
        let value = match request.kind() {
            LookupKind::Variable => self.variable(&tenant, &request.key).await?,
            LookupKind::Connection => self.connection(&tenant, &request.key).await?,
            LookupKind::AssetEvents => Some(self.asset_events(&tenant, &request.key).await?),
            LookupKind::AssetAliasEvents => {
                let events = read::assets::events_through(
                    self.store.pool(),
                    &tenant,
                    &request.key,
                    INLET_EVENTS,
                )
                .await
                .map_err(unavailable)?;
                Some(Value::Array(events))
            }
            LookupKind::TriggeringAssetEvents => {
                let (dag_id, run_id) = (&verified.key.dag_id, &verified.key.run_id);
                let events = read::assets::consumed_by_run(self.store.pool(), dag_id, run_id)
                    .await
                    .map_err(unavailable)?;
                Some(Value::Array(events))
            }
        };
        Ok(Response::new(match value {
            Some(value) => JsonValue {
                found: true,
                json: value.to_string(),
            },
            None => JsonValue {
                found: false,
                json: "null".into(),
            },
        }))
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn report_rendered(
        &self,
        request: Request<RenderedFields>,
    ) -> Result<Response<Ack>, Status> {
        /// Rendered fields past this size are refused (they are for reading, not data transfer).
        const MAX_RENDERED: usize = 1 << 20;
        let request = request.into_inner();
        if request.fields_json.len() > MAX_RENDERED {
            return Err(Status::invalid_argument(format!(
                "the rendered fields are {} bytes; at most {MAX_RENDERED} are kept",
                request.fields_json.len()
            )));
        }
        let fields: Value = serde_json::from_str(&request.fields_json).map_err(|e| {
            Status::invalid_argument(format!("the rendered fields are not JSON: {e}"))
        })?;
        if !fields.is_object() {
            return Err(Status::invalid_argument(
                "the rendered fields must be a JSON object",
            ));
        }
        let verified = self
            .verify(request.attempt.as_ref(), "report_rendered", Need::InFlight)
            .await?;
        let attempt = request.attempt.as_ref().expect("verified");
        let fields_hash = self
            .store
            .put_blob("application/json", &fields.to_string())
            .await
            .map_err(unavailable)?;
        let event = leoflow_events::catalog::TaskRendered {
            ti: verified.key.clone(),
            try_number: attempt.try_number,
            fields_hash,
        };
        let tenant = self.tenant(&verified.key, verified.run.generation).await?;
        // Not after the DAG's delete (the try's agent is then told to stop).
        let batch = AppendBatch::new()
            .push(event, &Metadata::from(&Self::agent(&tenant)))
            .expect(
                generation_stream(&verified.key.dag_id),
                generation_expectation(verified.run.generation),
            );
        match self.store.append(batch).await {
            Ok(_) => {}
            Err(AppendError::Conflict { .. }) => return Err(deleted(&verified.key)),
            Err(error) => return Err(unavailable(error)),
        }
        Ok(Response::new(Ack {}))
    }

    #[tracing::instrument(skip_all, fields(dag_id, run_id, task_id, map_index, try_number))]
    async fn finish(&self, request: Request<FinishRequest>) -> Result<Response<Ack>, Status> {
        let request = request.into_inner();
        let verified = self
            .verify(request.attempt.as_ref(), "finish", Need::InFlight)
            .await?;
        let attempt = request.attempt.as_ref().expect("verified");
        let task = verified
            .run
            .spec
            .tasks
            .get(&attempt.task_id)
            .ok_or_else(|| Status::failed_precondition("the DAG version has no such task"))?;
        let (task_id, map_index, try_number, at) = (
            attempt.task_id.clone(),
            attempt.map_index,
            attempt.try_number,
            Utc::now(),
        );
        let reason = request.reason.clone();
        let outlet_events = outlet_events(request.outlet_events_json.as_deref())?;
        let outcome = match request.outcome() {
            ProtoOutcome::Success => Some(match task.kind {
                TaskKind::Plain => Outcome::Success,
                TaskKind::Branch => Outcome::Branch(request.branch.clone()),
                TaskKind::ShortCircuit { .. } => {
                    Outcome::ShortCircuit(request.proceed.unwrap_or(true))
                }
            }),
            ProtoOutcome::Failed => Some(Outcome::Failed { reason }),
            ProtoOutcome::FailedNoRetry => Some(Outcome::FailedWithoutRetry { reason }),
            ProtoOutcome::Skipped => Some(Outcome::Skipped { reason }),
            ProtoOutcome::TimedOut => None,
            ProtoOutcome::Deferred => Some(
                self.deferred_outcome(
                    &verified.key,
                    try_number,
                    request.deferral_json.as_deref(),
                    at,
                )
                .await?,
            ),
            ProtoOutcome::Rescheduled => {
                Some(Self::rescheduled_outcome(request.reschedule_at.as_deref()))
            }
        };
        let mut commands = Self::start_if_queued(&verified, attempt, "", None);
        commands.push(match outcome {
            // Its callbacks did not run with it: the scheduler has them run.
            Some(Outcome::Failed { reason }) if request.runner_lost => Command::Lost {
                task_id,
                map_index,
                try_number,
                reason,
                at,
            },
            Some(outcome) => Command::ReportFinished {
                task_id,
                map_index,
                try_number,
                outcome,
                at,
                outlet_events,
            },
            None => Command::TimedOut {
                task_id,
                map_index,
                try_number,
                at,
            },
        });
        self.submit(&verified, try_number, "finish", commands)
            .await?;
        self.liveness.forget(&verified.digest);
        Ok(Response::new(Ack {}))
    }
}
