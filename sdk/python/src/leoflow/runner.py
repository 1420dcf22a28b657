"""Runs one task attempt for `leoflow agent`.

    python -I -u -c "...; from leoflow.runner import main; sys.exit(main())"

The agent writes one JSON line on stdin: the attempt (ids, try, map index), the task as dag.json
describes it, the DAG file's source, and the run (conf, dates, params) (`protocol.Start`). The runner executes the
DAG file again (so lambdas and nested functions are found exactly as the file defines them),
finds the task's callable, builds Airflow's context (`ti`, `ds`, `logical_date`, `run_id`,
`params`, `dag_run`, `var`, `conn`, the asset event accessors of `leoflow.asset_events`, …),
resolves its arguments (upstream XComs, params, the map index's element of mapped arguments),
renders its template fields with Jinja as Airflow does (`leoflow.templates`), runs it, pushes its
result as the `return_value` XCom and reports the outcome (a success with the extras it set for
its outlets' asset events and the events it added through its outlet aliases).

Requests to the agent are JSON lines on the *original* stdout; each gets a JSON line back on
stdin (`leoflow.protocol`; the first request states the protocol's version). Everything the task
prints (stdout included) goes to stderr, which is the task log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import itertools
import json
import linecache
import logging
import os
import signal
import subprocess
import sys
import traceback
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from leoflow import context as compile_context
from leoflow import callbacks, macros, runtime
from leoflow.asset_decorator import AssetMainOperator, resolve_inlets
from leoflow.asset_events import AssetEventError, OutletEventAccessors, call_collecting, context_accessors
from leoflow.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    AirflowTaskTimeout,
    TaskDeferred,
)
from leoflow.decorators import DagParamReference
from leoflow.model import BaseOperator, XComArg
from leoflow.objectstorage import ObjectStoragePath, revive
from leoflow.protocol import (
    PROTOCOL_VERSION,
    AliasOutletEvent,
    AssetAliasEventsLookup,
    AssetEventsLookup,
    ConnectionLookup,
    Deferral,
    Done,
    OutcomeName,
    OutletEvent,
    Reply,
    Request,
    RunInfo,
    Start,
    TaskSpec,
    TriggeringAssetEventsLookup,
    VariableLookup,
    XComPull,
)
from leoflow.triggers import deferral, deserialize_value


class TaskError(Exception):
    """A failure of the task that the runner explains in one line (no traceback needed)."""


class Channel:
    """The JSON-lines conversation with the agent."""

    def __init__(self, requests: IO[str], answers: IO[str]) -> None:
        self.requests = requests
        self.answers = answers

    def ask(self, request: Request) -> Reply:
        """The agent's reply to `request`; a refusal is raised as a `TaskError`."""
        # The execution timeout's alarm waits for the reply: raised between a request and its
        # reply, it would leave the reply to be read as the next request's.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        try:
            self.requests.write(json.dumps(request) + "\n")
            self.requests.flush()
            line = self.answers.readline()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        if not line:
            raise TaskError("the task agent went away")
        reply: Reply = json.loads(line)
        if not reply["ok"]:
            raise TaskError(f"{request['op']} failed: {reply.get('error')}")
        return reply

    def look_up(
        self,
        request: XComPull | VariableLookup | ConnectionLookup | AssetEventsLookup | AssetAliasEventsLookup | TriggeringAssetEventsLookup,
    ) -> tuple[bool, Any]:
        """Whether what `request` looks up exists, and its value."""
        reply = self.ask(request)
        return bool(reply.get("found")), reply.get("value")

    def greet(self) -> None:
        """States this runner's protocol version; an agent of another version refuses it."""
        self.ask({"op": "hello", "protocol": PROTOCOL_VERSION})


# --------------------------------------------------------------------------------------------
# Context


class TaskInstance:
    """The `ti` of Airflow's context: ids of the attempt and XCom access."""

    def __init__(self, channel: Channel, attempt: Start) -> None:
        self._channel = channel
        self.dag_id: str = attempt["dag_id"]
        self.run_id: str = attempt["run_id"]
        self.task_id: str = attempt["task_id"]
        self.map_index: int = attempt["map_index"]
        self.try_number: int = attempt["try_number"]
        #: When the try first started: before this attempt when it carries on after a
        #: deferral or a reschedule (a sensor's timeout counts from here).
        self.start_date: dt.datetime = parse_instant(attempt.get("try_started_at")) or dt.datetime.now(dt.timezone.utc)
        resume = attempt.get("resume")
        #: The method a deferred try resumes in, and its arguments (Airflow's `next_method`).
        self.next_method: str | None = resume["method"] if resume else None
        self.next_kwargs: dict[str, Any] | None = resume["kwargs"] if resume else None

    def xcom_pull(
        self,
        task_ids: str | list[str] | None = None,
        dag_id: str | None = None,
        key: str = "return_value",
        include_prior_dates: bool = False,
        *,
        map_indexes: int | None = None,
        default: Any = None,
        run_id: str | None = None,
        **_: Any,
    ) -> Any:
        """An XCom of this run: one task id gives its value, a list gives a list of values."""
        if dag_id not in (None, self.dag_id) or run_id not in (None, self.run_id) or include_prior_dates:
            raise TaskError(
                "xcom_pull reads the XComs of this DAG run only: another DAG's or run's "
                f"(dag_id={dag_id!r}, run_id={run_id!r}, include_prior_dates={include_prior_dates!r}) are not supported"
            )
        if task_ids is None:
            task_ids = self.task_id
        if isinstance(task_ids, str):
            return self._pull_one(task_ids, key, map_indexes, default)
        return [self._pull_one(t, key, map_indexes, default) for t in task_ids]

    def _pull_one(self, task_id: str, key: str, map_index: int | None, default: Any) -> Any:
        request: XComPull = {"op": "xcom_pull", "task_id": task_id, "key": key}
        if map_index is not None:
            request["map_index"] = map_index
        found, value = self._channel.look_up(request)
        # Paths a task returned come back as paths (Airflow's serializer records them).
        return revive(value) if found else default

    def xcom_push(self, key: str, value: Any) -> None:
        """Records an XCom of this attempt (its value must be JSON)."""
        self._channel.ask({"op": "xcom_push", "key": key, "value": to_json_value(value, f"XCom {key!r}")})

    def __repr__(self) -> str:
        return f"<TaskInstance {self.dag_id}.{self.task_id} run={self.run_id} try={self.try_number}>"


class DagRun:
    """The `dag_run` of Airflow's context."""

    def __init__(self, run: RunInfo, dag_id: str) -> None:
        self.dag_id = dag_id
        self.run_id: str = run["run_id"]
        self.conf: dict[str, Any] = run.get("conf") or {}
        self.run_type: str = run.get("run_type", "manual")
        self.logical_date = parse_instant(run.get("logical_date"))
        self.data_interval_start = parse_instant(run.get("data_interval_start"))
        self.data_interval_end = parse_instant(run.get("data_interval_end"))
        self.run_after = parse_instant(run.get("run_after"))
        # Leoflow's: the next logical date of the DAG's timetable (LatestOnlyOperator's window).
        self.next_logical_date = parse_instant(run.get("next_logical_date"))


class Variables:
    """`var` in templates and `Variable.get` in code."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def get(self, key: str, default: Any = None, deserialize_json: bool = False) -> Any:
        found, value = self._channel.look_up({"op": "variable", "key": key})
        if not found:
            if default is not None:
                return default
            raise KeyError(f"Variable {key} does not exist")
        return json.loads(value) if deserialize_json else value


class _Accessor:
    """`var.value.name` / `var.json.name` in templates."""

    def __init__(self, variables: Variables, as_json: bool) -> None:
        self._variables = variables
        self._as_json = as_json

    def __getattr__(self, name: str) -> Any:
        return self._variables.get(name, deserialize_json=self._as_json)

    def get(self, name: str, default: Any = None) -> Any:
        """The Variable, or `default` when there is none (Airflow's `var.value.get(name, default)`)."""
        found, value = self._variables._channel.look_up({"op": "variable", "key": name})
        if not found:
            return default
        return json.loads(value) if self._as_json else value


class Connection:
    """A Connection as a task reads it."""

    def __init__(self, conn_id: str, fields: dict[str, Any]) -> None:
        self.conn_id = conn_id
        self.conn_type: str | None = fields.get("conn_type")
        self.host: str | None = fields.get("host")
        self.schema: str | None = fields.get("schema")
        self.login: str | None = fields.get("login")
        self.password: str | None = fields.get("password")
        self.port: int | None = fields.get("port")
        self.extra: str | None = fields.get("extra")

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return json.loads(self.extra) if self.extra else {}


class Connections:
    """`conn` in templates and `BaseHook.get_connection` / `Connection.get` in code."""

    def __init__(self, channel: Channel) -> None:
        self._channel = channel

    def lookup(self, conn_id: str) -> Connection:
        """The Connection; a KeyError when there is none (`Connection.get`, `conn.my_conn`)."""
        found, value = self._channel.look_up({"op": "connection", "key": conn_id})
        if not found:
            raise KeyError(f"The conn_id `{conn_id}` isn't defined")
        return Connection(conn_id, value)

    def get(self, conn_id: str, default_conn: Any = None) -> Any:
        """The Connection, or `default_conn` when there is none (Airflow's `conn.get(...)`)."""
        found, value = self._channel.look_up({"op": "connection", "key": conn_id})
        return Connection(conn_id, value) if found else default_conn

    def __getattr__(self, conn_id: str) -> Connection:
        if conn_id.startswith("__"):
            raise AttributeError(conn_id)
        return self.lookup(conn_id)


def parse_instant(value: Any) -> dt.datetime | None:
    """An ISO 8601 instant from the control plane; a pendulum `DateTime` when pendulum is
    installed, as Airflow's context dates are."""
    if not value:
        return None
    instant = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    try:
        import pendulum
    except ImportError:
        return instant
    converted: dt.datetime = pendulum.instance(instant)
    return converted


def build_context(channel: Channel, attempt: Start, dag: Any, task: Any) -> dict[str, Any]:
    """Airflow's task context for this attempt."""
    run = attempt["run"]
    dag_run = DagRun(run, attempt["dag_id"])
    ti = TaskInstance(channel, attempt)
    variables = Variables(channel)
    defaults: list[dict[str, Any]] = [
        {name: param["default"] for name, param in (source or {}).items() if isinstance(param, dict) and "default" in param}
        for source in (run.get("dag_params"), attempt["task"].get("params"))
    ]
    dag_defaults, task_defaults = defaults
    # Airflow's order: the DAG's params, the task's over them, the run's conf over both. The
    # control plane fills the run's conf with the DAG's defaults, which Airflow's conf does not
    # hold: a conf value that is only the DAG's default leaves the task's own param in place.
    params: dict[str, Any] = {**dag_defaults, **task_defaults}
    for name, value in dag_run.conf.items():
        if name in task_defaults and name in dag_defaults and value == dag_defaults[name]:
            continue
        params[name] = value
    ctx: dict[str, Any] = {
        "dag": dag,
        "task": task,
        "ti": ti,
        "task_instance": ti,
        "run_id": dag_run.run_id,
        "dag_run": dag_run,
        "params": params,
        "conf": dag_run.conf,
        "map_index": ti.map_index,
        "try_number": ti.try_number,
        "var": {"value": _Accessor(variables, False), "json": _Accessor(variables, True)},
        "conn": Connections(channel),
        "macros": macros,
        "inlets": task.inlets,
        "outlets": task.outlets,
        # Airflow's asset event accessors; the events they read are fetched when first read.
        **context_accessors(
            task.outlets,
            task.inlets,
            fetch_events=lambda name, uri: channel.look_up({"op": "asset_events", "name": name, "uri": uri})[1],
            fetch_alias_events=lambda name: channel.look_up({"op": "asset_alias_events", "name": name})[1],
            fetch_triggering=lambda: channel.look_up({"op": "triggering_asset_events"})[1],
        ),
        "test_mode": False,
        "task_instance_key_str": f"{ti.dag_id}__{ti.task_id}__{dag_run.run_id}",
        "__variable_get__": variables.get,
    }
    # Airflow's values of the previous successful run (None without one).
    previous = run.get("prev_success") or {}
    for name in ("data_interval_start", "data_interval_end", "start_date", "end_date"):
        ctx[f"prev_{name}_success"] = parse_instant(previous.get(name))
    when = dag_run.logical_date
    if when is not None:
        # As in Airflow, the names that depend on the logical date exist only when the run has
        # one (a template using them in a run without fails: "'ds' is undefined").
        ts = when.isoformat()
        ctx.update(
            logical_date=when,
            ds=when.strftime("%Y-%m-%d"),
            ds_nodash=when.strftime("%Y%m%d"),
            ts=ts,
            ts_nodash=when.strftime("%Y%m%dT%H%M%S"),
            ts_nodash_with_tz=ts.replace("-", "").replace(":", ""),
            task_instance_key_str=f"{ti.dag_id}__{ti.task_id}__{when.strftime('%Y%m%d')}",
            data_interval_start=dag_run.data_interval_start,
            data_interval_end=dag_run.data_interval_end,
        )
    return ctx


# --------------------------------------------------------------------------------------------
# Templates

#: Why a task whose templates need jinja2 fails when the Python running it lacks the package.
JINJA_MISSING = (
    "rendering this task's template fields needs the jinja2 package, which the Python running the "
    "task does not have: install jinja2 into it (pip install jinja2, or the Leoflow SDK's "
    "`templates` extra; Lite's managed venv has it)"
)

#: dag.json's tagged values (`serialize.py`): references and typed values, never rendered.
_MARKERS = frozenset({"__xcom__", "__param__", "__datetime__", "__date__", "__timedelta__", "__callable__", "__group_arg__"})


class Resolved:
    """A mapped argument's value taken from an XCom: as in Airflow, it is not rendered."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Resolved) and other.value == self.value

    def __repr__(self) -> str:
        return f"Resolved({self.value!r})"


def _is_marker(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _MARKERS


def _has_text(value: Any) -> bool:
    """Whether `value` holds a string to render (outside references)."""
    if isinstance(value, str):
        return True
    if isinstance(value, Resolved) or _is_marker(value):
        return False
    if isinstance(value, dict):
        return any(_has_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_text(v) for v in value)
    return False


def _templates() -> Any:
    """`leoflow.templates`, or the task's failure naming jinja2 when it is not installed."""
    try:
        from leoflow import templates
    except ImportError as error:
        if (error.name or "").split(".")[0] in ("jinja2", "markupsafe"):
            raise TaskError(JINJA_MISSING) from None
        raise
    return templates


def render(value: Any, ctx: dict[str, Any], field: str = "a template field", template_ext: Sequence[str] | None = None) -> Any:
    """A template field's value (as dag.json has it) with its strings rendered by Jinja in the
    task's environment, recursively in lists and dicts; XComs and params it refers to are pulled
    and passed as they are, never rendered. `template_ext` defaults to the task's."""
    ti: TaskInstance = ctx.get("ti")  # type: ignore[assignment]
    params: dict[str, Any] = ctx.get("params") or {}
    if not _has_text(value):
        return decode(value, ti, params)
    templates = _templates()
    task = ctx.get("task")
    if template_ext is None:
        template_ext = tuple(getattr(task, "template_ext", ()) or ())

    def reference(item: Any) -> tuple[bool, Any]:
        if isinstance(item, Resolved) or _is_marker(item):
            return True, decode(item, ti, params)
        return False, None

    return _render_with(templates, value, ctx, field, template_ext, reference)


def _render_with(
    templates: Any, value: Any, ctx: dict[str, Any], field: str, template_ext: Sequence[str], reference: Any = None
) -> Any:
    try:
        env = templates.task_environment(ctx.get("task"), ctx.get("dag"))
        return templates.render_value(value, templates.template_context(ctx), env, template_ext, reference)
    except templates.jinja2.TemplateError as error:
        where = ""
        if isinstance(error, templates.jinja2.TemplateSyntaxError):
            where = f" (line {error.lineno}{f' of {error.name}' if error.name else ''})"
        raise TaskError(f"rendering {field} failed: {type(error).__name__}: {error.message or error}{where}") from None


def render_live(value: Any, ctx: dict[str, Any], field: str, template_ext: Sequence[str]) -> Any:
    """A template field of a task object (a custom operator's) rendered: its strings by Jinja,
    task results (`XComArg`s) pulled and a `@dag` function's parameters read, passed as they are.
    Without strings, no Jinja is needed."""
    if _has_text(value):
        return _render_with(_templates(), value, ctx, field, template_ext)
    return _resolve_results(value, ctx)


def _resolve_results(value: Any, ctx: dict[str, Any]) -> Any:
    if isinstance(value, (XComArg, DagParamReference)):
        return value.resolve(ctx)
    if isinstance(value, list):
        return [_resolve_results(item, ctx) for item in value]
    if value.__class__ is tuple:
        return tuple(_resolve_results(item, ctx) for item in value)
    if isinstance(value, dict):
        return {key: _resolve_results(item, ctx) for key, item in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# Arguments


def to_json_value(value: Any, what: str) -> Any:
    """`value` as JSON data (dates become ISO strings, an `ObjectStoragePath` Airflow's serialized
    form); a clear error for anything else."""
    def default(item: Any) -> Any:
        if isinstance(item, (dt.datetime, dt.date)):
            return item.isoformat()
        if isinstance(item, ObjectStoragePath):
            return item.xcom_value()
        if isinstance(item, (set, frozenset, tuple)):
            return list(item)
        raise TypeError(type(item).__name__)

    try:
        return json.loads(json.dumps(value, default=default, allow_nan=False))
    except (TypeError, ValueError) as error:
        raise TaskError(
            f"{what} is a value of type {type(value).__name__} that is not JSON-serializable ({error}); "
            "XComs must be JSON: return dicts, lists, strings, numbers, booleans, None or ObjectStoragePaths"
        ) from None


def decode(value: Any, ti: TaskInstance, params: dict[str, Any]) -> Any:
    """dag.json's argument markers back into values: XComs pulled, params looked up."""
    if isinstance(value, Resolved):
        return value.value
    if isinstance(value, tuple):
        return tuple(decode(v, ti, params) for v in value)
    if isinstance(value, list):
        return [decode(v, ti, params) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (marker, inner), = value.items()
        if marker == "__xcom__":
            if inner["task_id"] in runtime.group_tasks:
                # Within a mapped task group, a task receives its group's results of its map index.
                return ti.xcom_pull(task_ids=inner["task_id"], key=inner["key"], map_indexes=ti.map_index)
            return ti.xcom_pull(task_ids=inner["task_id"], key=inner["key"])
        if marker == "__group_arg__":
            return decode(runtime.group_arguments[inner], ti, params)
        if marker == "__param__":
            return params.get(inner)
        if marker == "__datetime__":
            return parse_instant(inner)
        if marker == "__date__":
            return dt.date.fromisoformat(inner)
        if marker == "__timedelta__":
            return dt.timedelta(seconds=inner)
        if marker == "__callable__":
            return None
    return {k: decode(v, ti, params) for k, v in value.items()}


def enter_mapped_group(task: TaskSpec, map_index: int, ti: TaskInstance, params: dict[str, Any]) -> None:
    """For a task of a mapped task group: its group's arguments of `map_index` and its group's
    tasks, which `decode` and the task's references read."""
    group = task.get("mapped_group")
    if not group:
        return
    runtime.group_tasks = frozenset(group["tasks"])
    as_mapped: TaskSpec = {"task_id": task["task_id"], "operator": task["operator"], "mapped": {"expand": group["expand"]}}
    # Read when a task first uses one: a task that uses none pulls nothing.
    runtime.group_arguments = _Lazy(lambda: mapped_arguments(as_mapped, map_index, ti, params))


class _Lazy(dict[str, Any]):
    """A dict filled by `load` when it is first read."""

    def __init__(self, load: Callable[[], dict[str, Any]]) -> None:
        super().__init__()
        self._load: Callable[[], dict[str, Any]] | None = load

    def __missing__(self, key: str) -> Any:
        if self._load is not None:
            load, self._load = self._load, None
            self.update(load())
            if key in self:
                return self[key]
        raise KeyError(key)


def mapped_arguments(task: TaskSpec, map_index: int, ti: TaskInstance, params: dict[str, Any]) -> dict[str, Any]:
    """The arguments of map index `map_index` of a mapped task (the cartesian product of
    `.expand()` arguments, the last argument varying fastest; or one dict of `.expand_kwargs()`).

    A value mapped from an XCom comes as `Resolved` (as in Airflow, it is not rendered); a value
    of a literal list as dag.json has it (rendered like the task's other template fields)."""
    mapping = task.get("mapped")
    if not mapping:
        return {}
    if mapping.get("expand_kwargs") is not None:
        items = _mapped_elements(mapping["expand_kwargs"], ti, params)
        if map_index >= len(items):
            raise TaskError(f"map index {map_index} is beyond the {len(items)} mapped kwargs")
        chosen = items[map_index]
        if _is_marker(chosen):
            chosen = Resolved(decode(chosen, ti, params))
        if isinstance(chosen, Resolved):
            if not isinstance(chosen.value, dict):
                raise TaskError(f"expand_kwargs element {map_index} is {type(chosen.value).__name__}, not a dict")
            return {name: Resolved(value) for name, value in chosen.value.items()}
        if not isinstance(chosen, dict):
            raise TaskError(f"expand_kwargs element {map_index} is {type(chosen).__name__}, not a dict")
        return chosen
    names = list(mapping["expand"])
    values = [_mapped_elements(mapping["expand"][name], ti, params) for name in names]
    for position, combination in enumerate(itertools.product(*values)):
        if position == map_index:
            return dict(zip(names, combination))
    raise TaskError(f"map index {map_index} is beyond the {sum(1 for _ in itertools.product(*values))} mapped combinations")


def _mapped_elements(source: Any, ti: TaskInstance, params: dict[str, Any]) -> list[Any]:
    """What a mapped argument maps over: a dict's items, a list's elements."""
    if _is_marker(source):
        value = decode(source, ti, params)
        return [Resolved(item) for item in (list(value.items()) if isinstance(value, dict) else list(value))]
    if isinstance(source, dict):
        return list(source.items())
    return list(source)


def call_with_context(
    function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], ctx: dict[str, Any], *, collect: bool = False
) -> Any:
    """Calls `function`, passing the context values its signature asks for (as Airflow does).
    With `collect`, as Airflow calls a Python task's callable: a generator function runs to its
    end, the `Metadata` it yields setting its outlets' extras (`leoflow.asset_events`)."""
    signature = inspect.signature(function)
    parameters = signature.parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    bound = signature.bind_partial(*args, **kwargs).arguments
    extra = {}
    for name, value in ctx.items():
        if name.startswith("__") or name in bound:
            continue
        if takes_all or (name in parameters and parameters[name].kind is not inspect.Parameter.POSITIONAL_ONLY):
            extra[name] = value
    if collect:
        return call_collecting(function, ctx.get("outlet_events"), *args, **kwargs, **extra)
    return function(*args, **kwargs, **extra)


# --------------------------------------------------------------------------------------------
# Running


class Outcome:
    """What the runner reports."""

    def __init__(
        self, outcome: OutcomeName, reason: str = "", branch: list[str] | None = None, proceed: bool | None = None,
        result: Any = None, deferral: Deferral | None = None, reschedule_at: str | None = None,
        outlet_events: list[OutletEvent | AliasOutletEvent] | None = None,
    ) -> None:
        self.outcome = outcome
        self.reason = reason
        self.branch = branch
        self.proceed = proceed
        self.deferral = deferral
        self.reschedule_at = reschedule_at
        #: A success's extras of its outlets' asset events (`outlet_events[asset].extra`), and the
        #: events it added through its outlet aliases (`outlet_events[alias].add(asset)`).
        self.outlet_events = outlet_events
        #: What the task's work returned (its `post_execute` gets it); not sent to the agent.
        self.result = result

    def message(self) -> Done:
        message: Done = {"op": "done", "outcome": self.outcome, "reason": self.reason}
        if self.branch is not None:
            message["branch"] = self.branch
        if self.proceed is not None:
            message["proceed"] = self.proceed
        if self.deferral is not None:
            message["deferral"] = self.deferral
        if self.reschedule_at is not None:
            message["reschedule_at"] = self.reschedule_at
        if self.outlet_events and self.outcome == "success":
            message["outlet_events"] = self.outlet_events
        return message


# The DAG file a zygote ran before forking this runner: (fileloc, SHA-256 of its source).
preloaded: tuple[str, str] | None = None


def source_sha256(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def exec_dag_file(fileloc: str, source: str) -> None:
    """Runs a DAG file's source as a module of the project (the working directory); the DAGs it
    declares land in `leoflow.context.dags`, their `@asset` tasks given their inlets."""
    from leoflow.compiler import AIRFLOW_SHIM

    if AIRFLOW_SHIM not in sys.path:
        sys.path.insert(0, AIRFLOW_SHIM)
    project = os.getcwd()
    if project not in sys.path:
        sys.path.insert(1, project)
    file = str(Path(project) / fileloc)
    # The source the run's version recorded, not the file on disk now, is what `inspect`
    # (a virtualenv task's function source, tracebacks) reads.
    linecache.cache[file] = (len(source), None, source.splitlines(True), file)
    compile_context.reset(file)
    module = types.ModuleType(Path(fileloc).stem)
    module.__file__ = file
    sys.modules[module.__name__] = module
    exec(compile(source, file, "exec"), module.__dict__)
    resolve_inlets(compile_context.dags)


def load_dag_file(attempt: Start) -> tuple[Any, Any]:
    """Runs the DAG file's source again (unless a zygote ran this very source before forking
    this runner) and returns the DAG and task objects of this attempt."""
    fileloc = attempt["fileloc"]
    if preloaded != (fileloc, source_sha256(attempt["source"])):
        try:
            exec_dag_file(fileloc, attempt["source"])
        except BaseException as error:  # noqa: BLE001 - the task fails with the reason
            traceback.print_exc()
            raise TaskError(f"the DAG file {fileloc} failed to load: {type(error).__name__}: {error}") from None
    for dag in compile_context.dags:
        if dag.dag_id == attempt["dag_id"]:
            task = dag.tasks.get(attempt["task_id"])
            if task is None:
                raise TaskError(f"the DAG file no longer defines task {attempt['task_id']!r}")
            return dag, task
    raise TaskError(f"the DAG file no longer defines DAG {attempt['dag_id']!r}")


def report_rendered(ctx: dict[str, Any], fields: dict[str, Any]) -> None:
    """Sets the task's template fields to their rendered values (as Airflow does, so task code
    reading `context["task"]` sees them) and tells the control plane (the UI's "Rendered
    Templates"). Values that are not JSON are shown as their text; a control plane that does
    not take the report does not fail the task."""
    task = ctx.get("task")
    for name, value in fields.items():
        if task is not None and name in getattr(task, "template_fields", ()):
            setattr(task, name, value)
    shown = json.loads(json.dumps(fields, default=str))
    try:
        ctx["ti"]._channel.ask({"op": "rendered", "fields": shown})
    except TaskError as error:
        print(f"[leoflow] the rendered fields were not recorded: {error}", file=sys.stderr, flush=True)


def render_bash(command: Any, spec: dict[str, Any], ctx: dict[str, Any]) -> tuple[str, Any, Any]:
    """A bash task's template fields rendered: `bash_command` (a string ending in `.sh` or `.bash`
    names a script template file), `env` and `cwd`; an empty field is left as it is."""
    rendered = [render(value, ctx, name) if value else value for name, value in (("bash_command", command), ("env", spec.get("env")), ("cwd", spec.get("cwd")))]
    command, env, cwd = rendered
    if not isinstance(command, str) or not command.strip():
        raise TaskError(f"the bash command must be a non-empty string, not {command!r}")
    if env is not None and not isinstance(env, dict):
        raise TaskError(f"the bash task's env must be a dict, not {env!r}")
    return command, env, cwd


def run_bash(command: Any, spec: dict[str, Any], ctx: dict[str, Any], push: bool) -> Outcome:
    command, env, cwd = render_bash(command, spec, ctx)
    # The task's own env only: the inherited environment may hold secrets.
    report_rendered(ctx, {"bash_command": command, "env": env, "cwd": cwd})
    if env is not None:
        env = {str(name): str(value) for name, value in env.items()}
    if env is not None and spec.get("append_env"):
        env = {**os.environ, **env}
    elif env is None:
        env = dict(os.environ)
    print(f"[leoflow] running bash: {command}", file=sys.stderr, flush=True)
    process = subprocess.Popen(
        ["bash", "-c", command], stdout=subprocess.PIPE, stderr=sys.stderr, env=env, cwd=cwd, stdin=subprocess.DEVNULL
    )
    assert process.stdout is not None
    last = ""
    encoding = spec.get("output_encoding") or "utf-8"
    try:
        for raw in process.stdout:
            line = raw.decode(encoding, errors="replace").rstrip("\n")
            print(line, file=sys.stderr, flush=True)
            last = line
        code = process.wait()
    except BaseException:
        # Timed out (or stopped): the command goes with the task, as Airflow's on_kill does.
        process.kill()
        raise
    if code in (spec.get("skip_on_exit_code") or []):
        return Outcome("skipped", f"bash exited with code {code}, which skip_on_exit_code lists")
    if code != 0:
        return Outcome("failed", f"bash command failed: exit code {code}")
    if push and last:
        ctx["ti"].xcom_push("return_value", last)
    return Outcome("success", result=last or None)


def push_result(result: Any, task: TaskSpec, ti: TaskInstance) -> None:
    """Airflow's rule: push the result unless it is None or `do_xcom_push` is off; with
    `multiple_outputs`, each key of a dict result is pushed too."""
    if result is None or not task.get("do_xcom_push", True):
        return
    value = to_json_value(result, "the task's return value")
    own = task.get("python") or task.get("custom") or {}
    if own.get("multiple_outputs"):
        if not isinstance(value, dict):
            raise TaskError(f"multiple_outputs=True needs a dict result, got {type(result).__name__}")
        for key, item in value.items():
            ti.xcom_push(str(key), item)
    ti.xcom_push("return_value", value)


def run_sensor(function: Callable[[], Any], sensor: dict[str, Any], ti: TaskInstance, task: TaskSpec) -> Outcome:
    """A `@task.sensor` function poked as Airflow's sensors are (`leoflow.sensors.poke_until`)."""
    from leoflow.sensors import DEFAULT_TIMEOUT, poke_until

    def seconds(name: str) -> float | None:
        value = sensor.get(name)
        return None if value is None else float(value["__timedelta__"])

    value = poke_until(
        function,
        interval=seconds("poke_interval") or 60.0,
        timeout=seconds("timeout") or DEFAULT_TIMEOUT,
        soft_fail=bool(sensor.get("soft_fail")),
        exponential_backoff=bool(sensor.get("exponential_backoff")),
        max_wait=seconds("max_wait"),
        reschedule=sensor.get("mode") == "reschedule",
        started=ti.start_date,
    )
    push_result(value, task, ti)
    return Outcome("success")


def run_custom(operator: Any, task: TaskSpec, ctx: dict[str, Any], mapped: dict[str, Any]) -> Outcome:
    """A custom operator, as Airflow runs one: the task built from the DAG file (one map index
    built again from its arguments), its template fields rendered, then `pre_execute`,
    `execute(context)` and `post_execute`; the result pushed as Airflow pushes it."""
    ti: TaskInstance = ctx["ti"]
    if mapped:
        params: dict[str, Any] = ctx["params"]
        operator = operator.unmapped({name: decode(value, ti, params) for name, value in mapped.items()})
        ctx["task"] = operator
    rendered = {}
    for name in operator.template_fields:
        value = render_live(getattr(operator, name), ctx, name, tuple(operator.template_ext or ()))
        setattr(operator, name, value)
        rendered[name] = value
    report_rendered(ctx, rendered)
    run_execute_hooks(operator, "pre_execute", ctx)
    if ti.next_method is not None:
        # A deferred try carries on where the operator said, with the trigger's event.
        kwargs = deserialize_value(ti.next_kwargs or {})
        print(f"[leoflow] resuming in {ti.next_method} after the trigger fired", file=sys.stderr, flush=True)
        result = operator.resume_execution(ti.next_method, kwargs, ctx)
    else:
        result = operator.execute(ctx)
    run_execute_hooks(operator, "post_execute", ctx, result)
    if task["custom"].get("branch"):
        # An operator whose result is not the ids it follows says which (`ApprovalOperator`).
        followed = getattr(operator, "followed", None)
        chosen = branch_choice(followed(result) if callable(followed) else result, ctx.get("dag"))
        push_result(result, task, ti)
        return Outcome("success", branch=chosen)
    push_result(result, task, ti)
    return Outcome("success")


def branch_choice(result: Any, dag: Any) -> list[str]:
    """The task ids a branch's result names: a task id or a task group id (its root tasks, as
    Airflow follows them), a list of them, or None for none."""
    chosen = [] if result is None else [result] if isinstance(result, str) else list(result)
    if not all(isinstance(c, str) for c in chosen):
        raise TaskError(f"a branch must return task ids (str or list of str), not {result!r}")
    groups = getattr(dag, "groups", None) or {}
    followed: list[str] = []
    for name in chosen:
        group = groups.get(name)
        ids = sorted(t.task_id for t in group._roots()) if group is not None and name not in dag.tasks else [name]
        followed.extend(i for i in ids if i not in followed)
    return followed


def apply_task_environment(task: TaskSpec) -> None:
    """The runner starts from an allow-listed environment (none of the control plane's); the
    task's leoflow.yaml `env` is added to it before anything of the task runs."""
    env = task.get("env")
    if isinstance(env, dict):
        os.environ.update({str(name): str(value) for name, value in env.items()})


def execute(attempt: Start, channel: Channel) -> Outcome:
    apply_task_environment(attempt["task"])
    if "traceparent" in attempt:
        # OpenTelemetry's environment carrier: a task that traces continues the try's trace.
        os.environ["TRACEPARENT"] = attempt["traceparent"]
    dag, task_object = load_dag_file(attempt)
    task = attempt["task"]
    ctx = build_context(channel, attempt, dag, task_object)
    runtime.current_context = ctx
    ti: TaskInstance = ctx["ti"]
    params: dict[str, Any] = ctx["params"]
    mapped = mapped_arguments(task, attempt["map_index"], ti, params) if attempt["map_index"] >= 0 else {}
    enter_mapped_group(task, attempt["map_index"], ti, params)
    callbacks.call(task_object, "on_execute_callback", ctx)
    try:
        with execution_timeout(task.get("execution_timeout")):
            if "custom" in task:
                outcome = run_custom(task_object, task, ctx, mapped)
            else:
                run_execute_hooks(task_object, "pre_execute", ctx)
                outcome = run_standard(task_object, task, ctx, mapped)
                run_execute_hooks(task_object, "post_execute", ctx, outcome.result)
    except AirflowTaskTimeout:
        # As Airflow's: the operator stops what it started; the try then fails (its retries
        # and callbacks applying).
        on_kill = getattr(task_object, "on_kill", None)
        if callable(on_kill):
            try:
                on_kill()
            except Exception:  # noqa: BLE001 - the timeout is what is reported
                traceback.print_exc()
        raise
    if outcome.outcome == "success":
        # As Airflow's: what the task set by now (its success callbacks come too late).
        outlet_events: OutletEventAccessors = ctx["outlet_events"]
        outcome.outlet_events = outlet_events.recorded()
    return outcome


@contextmanager
def execution_timeout(seconds: float | None) -> Iterator[None]:
    """Airflow's `execution_timeout`: `AirflowTaskTimeout` raised in the task's code once
    `seconds` passed, so it fails as any failure does, its callbacks running (the agent kills a
    runner that did not stop a little later)."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise AirflowTaskTimeout(f"Timeout, PID: {os.getpid()}")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_execute_hooks(task_object: Any, when: str, ctx: dict[str, Any], *result: Any) -> None:
    """`pre_execute` or `post_execute` (`result` the work's result), in Airflow's order: the
    task's argument of that name (`post_execute` with the result), then the method when the
    operator's class overrides it. A generator's `Metadata` sets its outlets' extras."""
    outlet_events = ctx.get("outlet_events")
    hook = getattr(task_object, f"_{when}_hook", None)
    if hook is not None:
        call_collecting(hook, outlet_events, ctx, *result)
    method = getattr(task_object, when)
    if getattr(method, "__func__", None) is not getattr(BaseOperator, when):
        call_collecting(method, outlet_events, ctx, *result)


def run_standard(task_object: Any, task: TaskSpec, ctx: dict[str, Any], mapped: dict[str, Any]) -> Outcome:
    """One of Leoflow's own operators: its arguments from dag.json, rendered, and its work."""
    ti: TaskInstance = ctx["ti"]
    operator: str = task["operator"]
    if operator == "EmptyOperator":
        # Run only for its callbacks (the agent succeeds one without any at once).
        return Outcome("success")
    if operator == "BashOperator":
        bash = task["bash"]
        command = mapped.get("bash_command", bash.get("command"))
        spec: dict[str, Any] = {**bash, **{name: mapped[name] for name in ("env", "cwd") if name in mapped}}
        return run_bash(command, spec, ctx, task.get("do_xcom_push", True))
    python = task.get("python")
    if python is None:
        raise TaskError(f"Leoflow cannot run operator {operator!r}")
    function: Callable[..., Any] = task_object.python_callable
    # op_args, op_kwargs and templates_dict are template fields of every Python task (of
    # `@task` functions too, as in Airflow).
    if operator.startswith("@task"):
        raw_args: Any = python.get("args") or []
        raw_kwargs: Any = {**(python.get("kwargs") or {}), **mapped}
    else:
        raw_args = mapped.get("op_args", python.get("args") or [])
        raw_kwargs = mapped.get("op_kwargs", python.get("kwargs") or {})
    args = render(raw_args, ctx, "op_args")
    kwargs = render(raw_kwargs, ctx, "op_kwargs")
    templates = python.get("templates_dict")
    if templates is not None:
        ctx["templates_dict"] = render(templates, ctx, "templates_dict")
    report_rendered(ctx, {"templates_dict": ctx.get("templates_dict"), "op_args": args, "op_kwargs": kwargs})
    if operator == "@task.sensor":
        return run_sensor(lambda: call_with_context(function, args, kwargs, ctx), task.get("sensor") or {}, ti, task)
    if isinstance(task_object, AssetMainOperator):
        # An @asset function is given its asset, the context and its inlets, as Airflow's.
        result = call_collecting(function, ctx.get("outlet_events"), **task_object.determine_kwargs(ctx))
    else:
        # As in Airflow, only the Python operators' callables may yield Metadata.
        result = call_with_context(function, args, kwargs, ctx, collect=operator != "@task.bash")
    if operator in ("@task.bash",):
        if not isinstance(result, str) or not result.strip():
            raise TaskError(f"a @task.bash function must return the bash command, a non-empty string, not {result!r}")
        task_object.bash_command = result
        return run_bash(result, task.get("bash") or {}, ctx, task.get("do_xcom_push", True))
    if operator in ("@task.branch", "BranchPythonOperator"):
        chosen = branch_choice(result, ctx.get("dag"))
        push_result(result, task, ti)
        return Outcome("success", branch=chosen, result=result)
    if operator in ("@task.short_circuit", "ShortCircuitOperator"):
        push_result(result, task, ti)
        return Outcome("success", proceed=bool(result), result=result)
    push_result(result, task, ti)
    return Outcome("success", result=result)


def deferred_outcome(deferred: TaskDeferred) -> Outcome:
    """A try that deferred itself: how it waits, or, when that cannot cross to the control
    plane (a trigger that is not one, arguments that are not JSON), a failure saying why."""
    try:
        message = deferral(deferred.trigger, deferred.method_name, deferred.kwargs, deferred.timeout)
    except Exception as error:  # noqa: BLE001 - reported as the try's failure
        return Outcome("failed", f"the task deferred itself, but {error}")
    waits = message["trigger"]
    what = waits.get("moment") or waits.get("classpath")
    then = "the task ends there" if waits.get("end_from_trigger") else f"resuming in {deferred.method_name}"
    print(f"[leoflow] deferred until {what}; {then}", file=sys.stderr, flush=True)
    return Outcome("deferred", deferral=message)  # type: ignore[arg-type]


def rescheduled_outcome(reschedule: AirflowRescheduleException) -> Outcome:
    """A sensor in reschedule mode: poked again at its `reschedule_date`."""
    when = reschedule.reschedule_date
    if not isinstance(when, dt.datetime) or when.tzinfo is None:
        return Outcome("failed", f"a reschedule needs an aware datetime, not {when!r}")
    print(f"[leoflow] rescheduled: poked again at {when.isoformat()}", file=sys.stderr, flush=True)
    return Outcome("rescheduled", reschedule_at=when.isoformat())


def run_attempt(attempt: Start, channel: Channel) -> Outcome:
    """Runs the attempt to its outcome, exceptions of task code included, then the task's
    callbacks of that outcome."""
    error: BaseException | None = None
    runtime.current_context = None
    try:
        outcome = execute(attempt, channel)
    except TaskDeferred as deferred:
        outcome = deferred_outcome(deferred)
    except AirflowRescheduleException as reschedule:
        outcome = rescheduled_outcome(reschedule)
    except AirflowSkipException as skip:
        outcome = Outcome("skipped", f"AirflowSkipException: {skip}" if str(skip) else "AirflowSkipException")
    except (AirflowFailException, AirflowSensorTimeout) as failure:
        error, outcome = failure, Outcome("failed_no_retry", f"{type(failure).__name__}: {failure}")
    except (TaskError, AssetEventError) as failure:
        error, outcome = failure, Outcome("failed", str(failure))
    except BaseException as failure:  # noqa: BLE001 - every failure of task code is reported
        if isinstance(failure, KeyboardInterrupt):
            raise
        traceback.print_exc()
        error, outcome = failure, Outcome("failed", f"{type(failure).__name__}: {failure}")
    ctx, runtime.current_context = runtime.current_context, None
    name = callbacks.ending(outcome.outcome, attempt["try_number"], attempt["task"].get("retries") or 0)
    if ctx is not None and name is not None:
        if error is not None:
            ctx["exception"] = error
        runtime.current_context = ctx
        try:
            callbacks.call(ctx.get("task"), name, ctx)
        finally:
            runtime.current_context = None
    return outcome


def main() -> int:
    # The protocol owns the real stdout; the task's prints go to the log (stderr).
    requests = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = os.fdopen(1, "w", encoding="utf-8", errors="replace", buffering=1)
    # Task code's log records (a custom operator's `self.log`) go to the try's log, as Airflow's.
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="[%(asctime)s] {%(filename)s:%(lineno)d} %(levelname)s - %(message)s")
    channel = Channel(requests, sys.stdin)
    line = sys.stdin.readline()
    if not line:
        return 2
    attempt: Start = json.loads(line)
    try:
        channel.greet()
    except TaskError as error:
        # The agent fails the try with the reason; the log says it too.
        print(f"[leoflow] {error}", file=sys.stderr, flush=True)
        return 3
    outcome = run_attempt(attempt, channel)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        channel.ask(outcome.message())
    except TaskError:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
