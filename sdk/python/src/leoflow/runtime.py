"""What a task may call while it runs, refused while the DAG file is only being parsed.

The task runner sets the current context before calling a task function; during parsing there
is none, and these calls fail with a message saying where to move them.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from leoflow.errors import DagDefinitionError

#: The running task's context; `None` while a DAG file is parsed.
current_context: dict[str, Any] | None = None
#: The context of the DAG callback running in this thread (the triggerer runs several at once,
#: each in a thread of its own; the task runner runs one task and sets `current_context`).
callback_context: ContextVar[dict[str, Any] | None] = ContextVar("leoflow_callback_context", default=None)


def active_context() -> dict[str, Any] | None:
    """The context of the code running now: a DAG callback's, or the task's."""
    return callback_context.get() or current_context
#: For a task of a mapped task group: the group's arguments for the running map index, and the
#: group's tasks (whose results it receives for that map index only).
group_arguments: dict[str, Any] = {}
group_tasks: frozenset[str] = frozenset()


def get_current_context() -> dict[str, Any]:
    """The running task's Airflow context (`ti`, `ds`, `params`, …)."""
    ctx = active_context()
    if ctx is None:
        raise DagDefinitionError(
            "get_current_context() can only be called while a task runs, not while the DAG file is parsed"
        )
    return ctx


class Variable:
    """Airflow Variables: readable inside a running task."""

    @staticmethod
    def get(key: str, default: Any = None, deserialize_json: bool = False) -> Any:
        ctx = active_context()
        if ctx is None:
            raise DagDefinitionError(
                f"Variable.get({key!r}) while the DAG file is parsed: read Variables inside a task "
                "(or pass them with Jinja templates such as {{ var.value.name }})"
            )
        getter = ctx.get("__variable_get__")
        if getter is None:
            raise DagDefinitionError("this task runner does not provide Variables")
        return getter(key, default, deserialize_json)


class Connection:
    """Airflow Connections: readable inside a running task (`Connection.get("my_db")`)."""

    @staticmethod
    def get(conn_id: str) -> Any:
        ctx = active_context()
        if ctx is None:
            raise DagDefinitionError(
                f"Connection.get({conn_id!r}) while the DAG file is parsed: read Connections inside a task"
            )
        return ctx["conn"].lookup(conn_id)


class PokeReturnValue:
    """What a sensor function may return: done or not, and the XCom value to push when done."""

    def __init__(self, is_done: bool, xcom_value: Any = None) -> None:
        self.is_done = is_done
        self.xcom_value = xcom_value

    def __bool__(self) -> bool:
        return self.is_done
