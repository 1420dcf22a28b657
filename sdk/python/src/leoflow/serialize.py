"""The DAG model as dag.json: plain JSON, every value checked, references tagged.

Tagged values (a one-key object whose key starts and ends with `__`):
`{"__xcom__": {"task_id", "key"}}` a task's result, `{"__param__": name}` a `@dag` function
parameter, `{"__datetime__": iso}`, `{"__date__": iso}`, `{"__timedelta__": seconds}`,
`{"__mapped__": true}` an argument supplied by `.expand()`.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable
from typing import Any

from leoflow import setup_teardown
from leoflow.assets import only_aliases, only_assets
from leoflow.decorators import DagParamReference
from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.model import _MAPPED, DAG, BaseOperator, MappedArgument, Param, TaskGroup, XComArg
from leoflow.schedule import serialize_schedule, summary
from leoflow.timezone import zone_name

#: Version of the dag.json layout (see docs/dag-json.md).
DAG_JSON_SCHEMA_VERSION = 1


def serialize_dag(dag: DAG, fileloc: str, dag_module: str) -> dict[str, Any]:
    """One DAG as dag.json records it (without the version hash, which the caller adds)."""
    _at(dag.line, check_acyclic, dag)
    _at(dag.line, setup_teardown.check, dag)
    tasks = [_at(task.line, serialize_task, task, dag_module) for task in sorted(dag.tasks.values(), key=lambda t: t.task_id)]
    schedule = _at(dag.line, serialize_schedule, dag.schedule)
    owners = sorted({t.owner for t in dag.tasks.values() if t.owner})
    # Only a DAG that grants per-DAG access says so: other documents (and their version
    # hashes) stay as they were.
    access = {"access_control": dag.access_control} if dag.access_control else {}
    callbacks = {"callbacks": sorted(name for name, functions in dag.callbacks.items() if functions)}
    if not callbacks["callbacks"]:
        callbacks = {}
    labels = (
        {"edge_labels": [{"source_id": s, "target_id": t, "label": label} for (s, t), label in sorted(dag.edge_labels.items())]}
        if dag.edge_labels
        else {}
    )
    return {
        "dag_id": dag.dag_id,
        "fileloc": fileloc,
        "line": dag.line,
        "description": dag.description,
        "doc_md": dag.doc_md,
        "display_name": dag.display_name,
        "owners": owners,
        "tags": dag.tags,
        "schedule": schedule,
        "timetable_summary": summary(schedule),
        "start_date": instant(dag.start_date),
        "end_date": instant(dag.end_date),
        "timezone": _timezone(dag.start_date),
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "max_active_tasks": dag.max_active_tasks,
        "is_paused_upon_creation": dag.is_paused_upon_creation,
        "dagrun_timeout": _seconds(dag.dagrun_timeout),
        "params": _at(dag.line, lambda: {name: serialize_param(name, p) for name, p in sorted(dag.params.items())}),
        "task_groups": [
            {
                "group_id": g.group_id,
                "parent": g.parent.group_id if g.parent else None,
                "tooltip": g.tooltip,
                "prefix_group_id": g.prefix_group_id,
                # Only a mapped group says so (other documents and their hashes stay as they were).
                **({"mapped": value_json(g.mapping, f"task group {g.group_id!r}", dag_module)} if g.mapping else {}),
            }
            for g in sorted(dag.groups.values(), key=lambda g: g.group_id)
        ],
        "tasks": tasks,
        **access,
        **labels,
        **callbacks,
    }


def serialize_task(task: BaseOperator, dag_module: str) -> dict[str, Any]:
    """One task as dag.json records it."""
    where = f"task {task.task_id!r}"
    own = {key: value_json(value, where, dag_module) for key, value in task.serialize_own().items()}
    if task.custom_class:
        own["custom"] = custom_reference(task, where, dag_module)
    # Only a task with a limit says so (other documents and their hashes stay as they were).
    for limit in ("max_active_tis_per_dag", "max_active_tis_per_dagrun"):
        if getattr(task, limit) is not None:
            own[limit] = getattr(task, limit)
    if task.weight_rule != "downstream":
        own["weight_rule"] = task.weight_rule
    if task.mapped_group is not None:
        own["mapped_group"] = mapped_group(task, task.mapped_group, dag_module)
    # Only a setup or teardown says so (other documents and their hashes stay as they were).
    if task.is_setup:
        own["is_setup"] = True
    if task.is_teardown:
        own["is_teardown"] = True
        if task.on_failure_fail_dagrun:
            own["on_failure_fail_dagrun"] = True
    if task.depends_on_past:
        own["depends_on_past"] = True
        own["wait_for_downstream"] = task.wait_for_downstream
        own["ignore_first_depends_on_past"] = task.ignore_first_depends_on_past
    # Only a task with assets (or aliases) says so (other documents and their hashes stay as
    # they were); its aliases go apart from its assets.
    for lineage, aliases_key in (("inlets", "inlet_aliases"), ("outlets", "outlet_aliases")):
        items = getattr(task, lineage)
        assets, aliases = only_assets(items), only_aliases(items)
        if assets:
            own[lineage] = [asset.as_reference() for asset in assets]
        if aliases:
            own[aliases_key] = [alias.as_reference() for alias in aliases]
    callbacks = sorted(name for name, functions in task.callbacks.items() if functions)
    if callbacks:
        # Only a task with callbacks says so (an EmptyOperator with some is run, as in Airflow).
        own["callbacks"] = callbacks
    return {
        "task_id": task.task_id,
        "operator": task.operator_name,
        "line": task.line,
        "group": task.group.group_id if task.group else None,
        "upstream": sorted(t.task_id for t in task.upstream),
        "trigger_rule": task.trigger_rule,
        "retries": task.retries,
        "retry_delay": _seconds(task.retry_delay),
        "retry_exponential_backoff": task.retry_exponential_backoff,
        "max_retry_delay": _seconds(task.max_retry_delay),
        "execution_timeout": _seconds(task.execution_timeout),
        "pool": task.pool,
        "pool_slots": task.pool_slots,
        "priority_weight": task.priority_weight,
        "owner": task.owner,
        "queue": task.queue,
        "doc_md": task.doc_md,
        "display_name": task.display_name,
        "do_xcom_push": task.do_xcom_push,
        "params": {name: serialize_param(name, p) for name, p in sorted(task.params.items())},
        "mapped": value_json(task.mapping, where, dag_module) if task.mapping else None,
        **own,
    }


def custom_reference(task: BaseOperator, where: str, dag_module: str) -> dict[str, Any]:
    """A custom operator as dag.json records it: where its class is (the task runner builds the
    task again from the DAG file and calls its `execute`), and what the UI shows of it. An
    argument that is not JSON is recorded as its text (`{"__repr__": ...}`), for showing only."""
    cls = type(task)

    def shown(value: Any) -> Any:
        try:
            return value_json(value, where, dag_module)
        except DagDefinitionError:
            # Without the addresses of default reprs (`<Class object at 0x…>`): the document, and
            # so the DAG's version, must be the same on every compile.
            text = re.sub(r" at 0x[0-9a-fA-F]+>", ">", repr(value))
            return {"__repr__": text if len(text) <= 200 else text[:197] + "..."}

    return {
        # Airflow's module for the standard provider's operators, else where the class is.
        "module": cls.__dict__.get("airflow_module") or cls.__module__,
        "class": cls.__qualname__,
        "branch": task.branch,
        "sensor": task.sensor,
        "arguments": {name: shown(value) for name, value in sorted(task.init_arguments.items())},
        "template_fields": list(task.template_fields),
        "template_ext": list(task.template_ext),
        "ui_color": task.ui_color,
        "ui_fgcolor": task.ui_fgcolor,
        "multiple_outputs": task.multiple_outputs,
    }


def mapped_group(task: BaseOperator, group: TaskGroup, dag_module: str) -> dict[str, Any]:
    """What a task of a mapped task group needs to run once per map index: the group, what it
    maps over, and its tasks (whose results it receives for its own map index)."""
    if task.mapping:
        raise UnsupportedConstruct(f"a mapped task ({task.task_id!r}) inside a mapped task group", "map the group only")
    assert group.mapping is not None
    return {
        "group_id": group.group_id,
        "expand": value_json(group.mapping["expand"], f"task group {group.group_id!r}", dag_module),
        "tasks": sorted(t.task_id for t in group._all_tasks()),
    }


def serialize_param(name: str, param: Param) -> dict[str, Any]:
    where = f"param {name!r}"
    result: dict[str, Any] = {
        "description": param.description,
        "schema": value_json(param.schema, where, ""),
    }
    if param.has_default():
        result["default"] = value_json(param.default, where, "")
    return result


def value_json(value: Any, where: str, dag_module: str) -> Any:
    """`value` as JSON, with task results, params and dates tagged; anything else is refused."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise DagDefinitionError(f"{where}: {value!r} cannot be stored in dag.json")
        return value
    if value is _MAPPED:
        return {"__mapped__": True}
    if isinstance(value, XComArg):
        return {"__xcom__": {"task_id": value.operator.task_id, "key": value.key}}
    if isinstance(value, MappedArgument):
        return {"__group_arg__": value.name}
    if isinstance(value, DagParamReference):
        return {"__param__": value.name}
    if isinstance(value, dt.datetime):
        return {"__datetime__": instant(value)}
    if isinstance(value, dt.date):
        return {"__date__": value.isoformat()}
    if isinstance(value, dt.timedelta):
        return {"__timedelta__": value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [value_json(v, where, dag_module) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [value_json(v, where, dag_module) for v in value]
        return sorted(items, key=repr)
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key is None or isinstance(key, (bool, int, float)):
                key = json.dumps(key)  # as json.dumps (and Airflow's serializer) would: 1 → "1", None → "null"
            if not isinstance(key, str):
                raise DagDefinitionError(f"{where}: dict keys must be strings to be stored, not {key!r}")
            result[key] = value_json(item, where, dag_module)
        return result
    if callable(value):
        return callable_ref(value, where, dag_module)
    raise DagDefinitionError(
        f"{where}: a value of type {type(value).__name__} cannot be passed to a task; "
        "pass JSON-compatible values (str, numbers, bools, lists, dicts, dates) or build it inside the task"
    )


def callable_ref(function: Callable[..., Any], where: str, dag_module: str) -> dict[str, Any]:
    """Where a task's function is defined: module, qualified name and line."""
    if not hasattr(function, "__code__") or not hasattr(function, "__qualname__"):
        raise UnsupportedConstruct(
            f"{where}: python_callable of type {type(function).__name__}",
            "use a function defined with def",
        )
    # Lambdas and functions local to a @dag function have no importable name; the task runner
    # re-runs the DAG file and takes the callable from the task itself, so they work too.
    module = function.__module__
    if module.startswith(("leoflow", "airflow")):
        raise DagDefinitionError(f"{where}: python_callable must be a function of the project, not {module}.{function.__qualname__}")
    return {
        "__callable__": {
            "module": module,
            "qualname": function.__qualname__,
            "line": function.__code__.co_firstlineno,
            "in_dag_file": module == dag_module,
        }
    }


def check_acyclic(dag: DAG) -> None:
    """Raises naming a cycle if the DAG's dependencies have one."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(dag.tasks):
        if state.get(start):
            continue
        path: list[str] = []
        stack: list[tuple[str, int]] = [(start, 0)]
        while stack:
            task_id, index = stack.pop()
            if index == 0:
                state[task_id] = 1
                path.append(task_id)
            upstream = sorted(t.task_id for t in dag.tasks[task_id].upstream)
            if index < len(upstream):
                stack.append((task_id, index + 1))
                nxt = upstream[index]
                if state.get(nxt) == 1:
                    cycle = path[path.index(nxt):] + [nxt]
                    raise DagDefinitionError(
                        f"DAG {dag.dag_id!r} has a cycle: {' <- '.join(cycle)} "
                        "(each task depends on the next)"
                    )
                if not state.get(nxt):
                    stack.append((nxt, 0))
            else:
                state[task_id] = 2
                path.pop()


def _at(line: int | None, function: Callable[..., Any], *args: Any) -> Any:
    try:
        return function(*args)
    except DagDefinitionError as error:
        if getattr(error, "line", None) is None:
            error.line = line  # type: ignore[attr-defined]
        raise


def _seconds(value: dt.timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def instant(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        # Airflow reads naive dates in its default time zone, UTC.
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _timezone(value: dt.datetime | None) -> str:
    if value is None or value.tzinfo is None:
        return "UTC"
    tz = value.tzinfo
    name = zone_name(tz)
    if name is not None:
        return name
    offset = value.utcoffset()
    if offset is None or offset == dt.timedelta(0):
        return "UTC"
    return str(tz)
