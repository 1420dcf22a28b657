//! The agent ↔ runner protocol: JSON lines between `leoflow agent` and the SDK's task runner
//! (`leoflow.runner`; its side of these types is `leoflow/protocol.py`).
//!
//! The agent writes one [`Start`] line on the runner's stdin. The runner then writes
//! [`Request`]s on its stdout, one a line, and reads one [`Reply`] line on stdin for each. Its
//! first request is [`Request::Hello`] with the [`PROTOCOL_VERSION`] it speaks: an agent and a
//! runner of different Leoflow versions (a pod image with another SDK, say) stop there with an
//! error naming both versions instead of misreading each other.
//!
//! `executors/tests/runner_protocol.json` holds an example of every message; a Rust test and a
//! pytest check both sides against it, so a message changed on one side only fails a test.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The version of this protocol. Raise it with any change a runner or an agent of the
/// previous version would misread (and the fixture's `protocol` with it).
pub const PROTOCOL_VERSION: u32 = 3;

/// What the runner is handed first: the attempt, its task and the DAG file's version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Start {
    /// The DAG.
    pub dag_id: String,
    /// The dag run.
    pub run_id: String,
    /// The task.
    pub task_id: String,
    /// The map index (-1 when unmapped).
    pub map_index: i32,
    /// The try.
    pub try_number: i32,
    /// The task as dag.json describes it.
    pub task: TaskSpec,
    /// The DAG file's source, as the run's DAG version recorded it.
    pub source: String,
    /// The DAG file, relative to the project.
    pub fileloc: String,
    /// The run (conf, dates, params) as the control plane describes it; the agent passes it
    /// on without reading it.
    pub run: Value,
    /// The try's W3C trace context, when the control plane exports traces: the runner puts it
    /// in the task's environment as `TRACEPARENT`, where OpenTelemetry's SDKs look for a parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// When the try first started (RFC 3339): before this attempt when the try carries on
    /// after a deferral or a reschedule. A sensor's timeout counts from here, as in Airflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub try_started_at: Option<String>,
    /// A deferred try carrying on: `{"method", "kwargs"}`, the trigger's event in
    /// `kwargs["event"]`. The agent passes it on without reading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Value>,
}

/// A task as dag.json describes it: what the agent reads of it typed, the rest passed on to
/// the runner as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// The task's id.
    pub task_id: String,
    /// What kind of task it is.
    pub operator: Operator,
    /// Seconds the task may run, when limited.
    #[serde(default)]
    pub execution_timeout: Option<f64>,
    /// Everything else dag.json says of the task (arguments, mapping, params, env, …).
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

/// What dag.json's `operator` names: one of the SDK's operators, or a custom operator's class
/// (a `BaseOperator` subclass of the project, which the runner builds from the DAG file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Operator {
    /// One of the SDK's own operators.
    Standard(OperatorKind),
    /// A custom operator's class name.
    Custom(String),
}

/// The operators the SDK compiles to dag.json (`operator_name` of its classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OperatorKind {
    /// Runs nothing: Airflow succeeds it as soon as it is scheduled.
    EmptyOperator,
    /// A Python callable.
    PythonOperator,
    /// A Python callable returning the task id(s) to follow.
    BranchPythonOperator,
    /// A Python callable whose falsy result skips downstream tasks.
    ShortCircuitOperator,
    /// A bash command.
    BashOperator,
    /// A `@task` function.
    #[serde(rename = "@task")]
    Task,
    /// A `@task.bash` function returning a bash command.
    #[serde(rename = "@task.bash")]
    TaskBash,
    /// A `@task.branch` function.
    #[serde(rename = "@task.branch")]
    TaskBranch,
    /// A `@task.short_circuit` function.
    #[serde(rename = "@task.short_circuit")]
    TaskShortCircuit,
    /// A `@task.sensor` function, poked until it is done.
    #[serde(rename = "@task.sensor")]
    TaskSensor,
}

/// A request of the runner to the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The first request: the protocol version the runner speaks.
    Hello {
        /// Its [`PROTOCOL_VERSION`].
        protocol: u32,
    },
    /// An XCom of this run.
    XcomPull {
        /// The task that pushed it.
        task_id: String,
        /// Its key.
        key: String,
        /// The map index of the task that pushed it, when it is mapped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        map_index: Option<i32>,
    },
    /// Records an XCom of this attempt.
    XcomPush {
        /// Its key.
        key: String,
        /// Its value.
        value: Value,
    },
    /// A Variable.
    Variable {
        /// Its key.
        key: String,
    },
    /// A Connection.
    Connection {
        /// Its conn_id.
        key: String,
    },
    /// Triggers a run of a DAG of the try's tenant (TriggerDagRunOperator).
    TriggerDagRun {
        /// The DAG.
        dag_id: String,
        /// The run id; generated when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// The run's conf.
        #[serde(default)]
        conf: Value,
        /// The logical date (ISO 8601); none for a run without one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logical_date: Option<String>,
        /// Clear the run when it exists already.
        #[serde(default)]
        reset_dag_run: bool,
        /// Refuse when the DAG is paused.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        fail_when_dag_is_paused: bool,
        /// The new run's note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A run of a DAG of the try's tenant, by run id or logical date, with its task states.
    DagRun {
        /// The DAG.
        dag_id: String,
        /// The run id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<String>,
        /// Its logical date (ISO 8601), when the run id is not given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logical_date: Option<String>,
    },
    /// The events of an asset of the try's tenant (`inlet_events`), oldest first.
    AssetEvents {
        /// The asset's name.
        name: String,
        /// The asset's URI.
        uri: String,
    },
    /// The events added through an asset alias of the try's tenant (`inlet_events` of an
    /// alias), oldest first.
    AssetAliasEvents {
        /// The alias's name.
        name: String,
    },
    /// The asset events the try's run consumed (`triggering_asset_events`).
    TriggeringAssetEvents,
    /// The task's template fields as rendered (the UI's "Rendered Templates").
    Rendered {
        /// Field name → rendered value.
        fields: Value,
    },
    /// The attempt's outcome; the runner exits after it.
    Done {
        /// How it ended.
        outcome: RunnerOutcome,
        /// Why, when it did not succeed.
        #[serde(default)]
        reason: String,
        /// The task ids a branch chose.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        branch: Option<Vec<String>>,
        /// Whether a short-circuit lets downstream tasks run.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        proceed: Option<bool>,
        /// How a try that deferred itself waits: `{"trigger", "method", "kwargs", "timeout"}`
        /// (the control plane reads it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deferral: Option<Value>,
        /// When a rescheduled sensor is poked again (RFC 3339).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reschedule_at: Option<String>,
        /// A successful try's outlet extras (`outlet_events[asset].extra`, `Metadata`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        outlet_events: Option<Vec<OutletEvent>>,
    },
}

/// The `extra` a successful try gave one of its outlets' asset events, or an event it added
/// through one of its outlet aliases (`outlet_events[AssetAlias(...)].add(asset, extra)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutletEvent {
    /// The asset's name.
    pub name: String,
    /// The asset's URI.
    pub uri: String,
    /// The asset's group, for an asset added through an alias (which may be new).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The event's `extra` (a JSON object).
    pub extra: Value,
    /// The alias it was added through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

impl Request {
    /// The request's `op`, for logs and errors.
    pub fn op(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::XcomPull { .. } => "xcom_pull",
            Request::XcomPush { .. } => "xcom_push",
            Request::Variable { .. } => "variable",
            Request::Connection { .. } => "connection",
            Request::TriggerDagRun { .. } => "trigger_dag_run",
            Request::DagRun { .. } => "dag_run",
            Request::AssetEvents { .. } => "asset_events",
            Request::AssetAliasEvents { .. } => "asset_alias_events",
            Request::TriggeringAssetEvents => "triggering_asset_events",
            Request::Rendered { .. } => "rendered",
            Request::Done { .. } => "done",
        }
    }
}

/// How the runner says its attempt ended (a timeout is the agent's to say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunnerOutcome {
    /// It succeeded.
    Success,
    /// It skipped itself.
    Skipped,
    /// It failed; retries apply.
    Failed,
    /// It failed for good (`AirflowFailException`, a sensor's timeout).
    FailedNoRetry,
    /// It deferred itself to a trigger (`self.defer`).
    Deferred,
    /// A sensor in reschedule mode waits to be poked again.
    Rescheduled,
}

/// The agent's answer to one request. On the wire `ok` says which: `{"ok": true}`,
/// `{"ok": true, "found": …, "value": …}` or `{"ok": false, "error": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "WireReply", try_from = "WireReply")]
pub enum Reply {
    /// Done; nothing to return.
    Ack,
    /// A lookup's result (an XCom, a Variable, a Connection): whether it exists, and its value.
    Found {
        /// Whether it exists.
        found: bool,
        /// Its value (`null` when it does not exist).
        value: Value,
    },
    /// The request failed; the task sees `error` as an exception.
    Refused {
        /// Why.
        error: String,
    },
}

/// [`Reply`] as it is written: the variant is told by `ok` and the fields present.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireReply {
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    found: Option<bool>,
    // `Some(Value::Null)` keeps `"value": null` in a reply that found nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl From<Reply> for WireReply {
    fn from(reply: Reply) -> Self {
        let ok = |found, value| WireReply {
            ok: true,
            found,
            value,
            error: None,
        };
        match reply {
            Reply::Ack => ok(None, None),
            Reply::Found { found, value } => ok(Some(found), Some(value)),
            Reply::Refused { error } => WireReply {
                ok: false,
                found: None,
                value: None,
                error: Some(error),
            },
        }
    }
}

impl TryFrom<WireReply> for Reply {
    type Error = String;

    fn try_from(wire: WireReply) -> Result<Self, Self::Error> {
        match wire {
            WireReply {
                ok: true,
                found: None,
                value: None,
                error: None,
            } => Ok(Reply::Ack),
            // `"value": null` reads as no value at all.
            WireReply {
                ok: true,
                found: Some(found),
                value,
                error: None,
            } => Ok(Reply::Found {
                found,
                value: value.unwrap_or(Value::Null),
            }),
            WireReply {
                ok: false,
                found: None,
                value: None,
                error: Some(error),
            } => Ok(Reply::Refused { error }),
            _ => Err(
                "a reply is {\"ok\": true} with `found` and `value` for a lookup, \
                      or {\"ok\": false, \"error\": …}"
                    .to_owned(),
            ),
        }
    }
}

/// Why the agent cannot go on with a runner whose first request is `first` (or why that line
/// is no request): `None` when it is a hello of this protocol.
pub(crate) fn greeting_error(first: Result<&Request, &str>) -> Option<String> {
    let agent = PROTOCOL_VERSION;
    match first {
        Ok(Request::Hello { protocol }) if *protocol == agent => None,
        Ok(Request::Hello { protocol }) => Some(format!(
            "the task runner speaks protocol {protocol} and this agent protocol {agent}: \
             the Python SDK and the leoflow binary come from different Leoflow versions"
        )),
        Ok(other) => Some(format!(
            "the task runner did not state its protocol version (its first request was {:?}): \
             its Python SDK is older than this agent, which speaks protocol {agent}",
            other.op()
        )),
        Err(error) => Some(format!(
            "the task runner's first request is not a hello of protocol {agent}: {error}"
        )),
    }
}
