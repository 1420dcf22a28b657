"""The messages between `leoflow agent` and the task runner (and the zygote), as the SDK writes
and reads them; the agent's side is `executors/src/protocol.rs`.

The agent writes one `Start` line on the runner's stdin. The runner then writes `Request`s on
its stdout, one a line, and reads one `Reply` line on stdin for each. Its first request is a
`Hello` stating `PROTOCOL_VERSION`: an agent of another Leoflow version refuses it with both
versions named, and the try fails with that reason.

`executors/tests/runner_protocol.json` holds an example of every message; `tests/test_protocol.py`
checks them against these TypedDicts, and a Rust test against the agent's types.
"""

from __future__ import annotations

from typing import Any, Final, Literal, TypedDict, Union

#: This protocol's version; raise it (and the agent's) with any change the other side of the
#: previous version would misread.
PROTOCOL_VERSION: Final = 3

#: The operators dag.json names (`operator_name` of the SDK's classes).
OperatorName = Literal[
    "EmptyOperator",
    "PythonOperator",
    "BranchPythonOperator",
    "ShortCircuitOperator",
    "BashOperator",
    "@task",
    "@task.bash",
    "@task.branch",
    "@task.short_circuit",
    "@task.sensor",
]

# --------------------------------------------------------------------------------------------
# Agent → runner: the start line


class _TaskIdentity(TypedDict):
    task_id: str
    #: One of `OperatorName`, or a custom operator's class name (the task then has `custom`).
    operator: OperatorName | str


class TaskSpec(_TaskIdentity, total=False):
    """A task as dag.json describes it: what the runner reads of it (the rest is dag.json's)."""

    execution_timeout: float | None
    retries: int
    callbacks: list[str]
    do_xcom_push: bool
    params: dict[str, Any]
    env: dict[str, Any] | None
    mapped: dict[str, Any] | None
    #: For a task of a mapped task group: `{"group_id", "expand", "tasks"}`.
    mapped_group: dict[str, Any]
    bash: dict[str, Any]
    python: dict[str, Any]
    sensor: dict[str, Any]
    custom: dict[str, Any]


class _RunIdentity(TypedDict):
    run_id: str


class RunInfo(_RunIdentity, total=False):
    """The run as the control plane describes it: dates are ISO 8601 strings."""

    run_type: str
    logical_date: str | None
    data_interval_start: str | None
    data_interval_end: str | None
    run_after: str | None
    conf: dict[str, Any] | None
    dag_params: dict[str, Any] | None
    #: The logical date the DAG's timetable gives after this run's (null without one).
    next_logical_date: str | None
    #: The DAG's previous successful run (by logical date): `{"data_interval_start",
    #: "data_interval_end", "start_date", "end_date"}`, null without one.
    prev_success: dict[str, str | None] | None


class _StartFields(TypedDict):
    """What every `Start` holds."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int
    try_number: int
    task: TaskSpec
    source: str
    fileloc: str
    run: RunInfo


class Start(_StartFields, total=False):
    """The first line on the runner's stdin: the attempt, its task, the DAG file's version, and
    the try's trace context when the control plane exports traces, when the try first started,
    and how a deferred try carries on."""

    traceparent: str
    try_started_at: str
    resume: Resume


class Resume(TypedDict):
    """A deferred try carrying on: the method it resumes in and its keyword arguments (the
    trigger's event in `kwargs["event"]`), values serialised as `leoflow.triggers` does."""

    method: str
    kwargs: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Runner → agent: requests


class Hello(TypedDict):
    """The first request: the protocol version the runner speaks."""

    op: Literal["hello"]
    protocol: int


class _XComPullBase(TypedDict):
    op: Literal["xcom_pull"]
    task_id: str
    key: str


class XComPull(_XComPullBase, total=False):
    """An XCom of this run (`map_index` when the task that pushed it is mapped)."""

    map_index: int


class XComPush(TypedDict):
    """Records an XCom of this attempt."""

    op: Literal["xcom_push"]
    key: str
    value: Any


class VariableLookup(TypedDict):
    op: Literal["variable"]
    key: str


class ConnectionLookup(TypedDict):
    op: Literal["connection"]
    key: str


class _TriggerDagRunBase(TypedDict):
    op: Literal["trigger_dag_run"]
    dag_id: str
    conf: dict[str, Any]
    reset_dag_run: bool


class TriggerDagRun(_TriggerDagRunBase, total=False):
    """Triggers a run of a DAG of the try's tenant; the answer is `{"dag_id", "run_id",
    "existed"}`, or a refusal naming why (a paused DAG with `fail_when_dag_is_paused`). A new
    run gets `note`."""

    run_id: str
    logical_date: str
    fail_when_dag_is_paused: bool
    note: str


class _DagRunBase(TypedDict):
    op: Literal["dag_run"]
    dag_id: str


class DagRunLookup(_DagRunBase, total=False):
    """A run of a DAG of the try's tenant, by `run_id` or `logical_date`: `{"dag_id",
    "run_id", "state", "logical_date", "tasks": {task_id: state, or a list for a mapped task}}`;
    not found, the DAG's `{"dag_id", "task_ids"}` (null when the tenant has no such DAG)."""

    run_id: str
    logical_date: str


class AssetEventsLookup(TypedDict):
    """The events of an asset of the try's tenant (`inlet_events[asset]`): a `Found` whose value
    is a list of `AssetEventRecord`s, oldest (lowest id) first, the latest 10,000 at most."""

    op: Literal["asset_events"]
    name: str
    uri: str


class AssetAliasEventsLookup(TypedDict):
    """The events recorded through an asset alias of the try's tenant (`inlet_events[alias]`,
    `inlet_events.for_asset_alias(name=...)`): a `Found` whose value is a list of
    `AssetEventRecord`s, oldest (lowest id) first, the latest 10,000 at most."""

    op: Literal["asset_alias_events"]
    name: str


class TriggeringAssetEventsLookup(TypedDict):
    """The asset events the try's run consumed (`triggering_asset_events`; none for a run not
    started by assets): a `Found` whose value is a list of `AssetEventRecord`s, oldest first."""

    op: Literal["triggering_asset_events"]


class AssetRecord(TypedDict):
    """An asset as the control plane records it."""

    name: str
    uri: str
    group: str
    extra: dict[str, Any]


class AssetEventRecord(TypedDict):
    """An asset event as a task reads it (each item of the value answering `AssetEventsLookup`,
    `AssetAliasEventsLookup` and `TriggeringAssetEventsLookup`): `timestamp` is RFC 3339; the
    `source_*` fields are null for an event no task made."""

    id: int
    asset: AssetRecord
    extra: dict[str, Any]
    source_dag_id: str | None
    source_task_id: str | None
    source_run_id: str | None
    source_map_index: int | None
    timestamp: str


class Rendered(TypedDict):
    """The task's template fields as rendered (the UI's "Rendered Templates")."""

    op: Literal["rendered"]
    fields: dict[str, Any]


OutcomeName = Literal["success", "skipped", "failed", "failed_no_retry", "deferred", "rescheduled"]


class _DoneBase(TypedDict):
    op: Literal["done"]
    outcome: OutcomeName
    reason: str


class OutletEvent(TypedDict):
    """The extra a successful try gave the asset event of one of its outlets
    (`outlet_events[asset].extra`, `yield Metadata(asset, extra)`): a JSON object."""

    name: str
    uri: str
    extra: dict[str, Any]


class AliasOutletEvent(TypedDict):
    """An asset event a successful try added through one of its outlet aliases
    (`outlet_events[AssetAlias(alias)].add(asset, extra=...)`, `yield Metadata(asset, extra,
    alias=...)`): the asset as the task named it, the event's extra, and the alias's name."""

    name: str
    uri: str
    group: str
    extra: dict[str, Any]
    alias: str


class Done(_DoneBase, total=False):
    """The attempt's outcome: the task ids a branch chose, whether a short-circuit proceeds; for
    a success, the extras of its outlets' asset events (only those set), then the events it added
    through its outlet aliases (absent when there is none of either)."""

    branch: list[str]
    proceed: bool
    deferral: Deferral
    reschedule_at: str
    outlet_events: list[OutletEvent | AliasOutletEvent]


class _TimeTriggerBase(TypedDict):
    kind: Literal["time"]
    moment: str


class TimeTrigger(_TimeTriggerBase, total=False):
    """A moment: the control plane's timer; with `end_from_trigger` the task ends there."""

    end_from_trigger: bool


class PythonTrigger(TypedDict):
    """Any other trigger: its class and `serialize()`d arguments, run by the triggerer."""

    kind: Literal["python"]
    classpath: str
    kwargs: dict[str, Any]


class _DeferralBase(TypedDict):
    trigger: TimeTrigger | PythonTrigger
    method: str
    kwargs: dict[str, Any]


class Deferral(_DeferralBase, total=False):
    """How a try that deferred itself waits (`self.defer`): `timeout` in seconds."""

    timeout: float


Request = Union[
    Hello, XComPull, XComPush, VariableLookup, ConnectionLookup, TriggerDagRun, DagRunLookup,
    AssetEventsLookup, AssetAliasEventsLookup, TriggeringAssetEventsLookup, Rendered, Done,
]

# --------------------------------------------------------------------------------------------
# Agent → runner: replies (told apart by `ok` and the keys present)


class Ack(TypedDict):
    ok: Literal[True]


class Found(TypedDict):
    """A lookup's result: whether it exists, and its value (None when it does not)."""

    ok: Literal[True]
    found: bool
    value: Any


class Refused(TypedDict):
    """The request failed; the task sees `error`."""

    ok: Literal[False]
    error: str


Reply = Union[Ack, Found, Refused]

# --------------------------------------------------------------------------------------------
# Agent → zygote, over its Unix socket (with the runner's four descriptors attached)


class ForkRequest(TypedDict):
    """A runner working in `cwd` for a task of the DAG file `fileloc` whose source has
    `source_sha256` (which picks the preloaded process of that version)."""

    cwd: str | None
    fileloc: str
    source_sha256: str


class Forked(TypedDict):
    pid: int


class ForkRefused(TypedDict):
    error: str


ForkAnswer = Union[Forked, ForkRefused]

#: Every message kind of each direction, for the test that both sides agree on all of them.
REQUESTS: Final = (
    Hello, XComPull, XComPush, VariableLookup, ConnectionLookup, TriggerDagRun, DagRunLookup,
    AssetEventsLookup, AssetAliasEventsLookup, TriggeringAssetEventsLookup, Rendered, Done,
)
REPLIES: Final = (Ack, Found, Refused)
FORK_ANSWERS: Final = (Forked, ForkRefused)
