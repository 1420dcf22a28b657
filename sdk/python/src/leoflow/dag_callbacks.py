"""A DAG's own callbacks (`DAG(on_success_callback=..., on_failure_callback=...)`), run once a
run ends, as Airflow's DAG processor runs them: the DAG file runs again, and each function is
called with the template context of the run's last task instance of that end (the last to
succeed, or the last to fail) and Airflow's `reason` (`success`, `task_failure`); a run with no
such task instance gives `{"dag", "run_id", "reason"}`, as Airflow does.

A task's `on_failure_callback` / `on_retry_callback` runs here too for a try that ended without
its runner (killed past its `execution_timeout`, lost with its agent or pod, which could not run
them): `TaskCallbackTrigger`, with the try's own template context, as Airflow's DAG processor
runs the scheduler's `TaskCallbackRequest`.

The control plane asks for them through the triggerer: `DagCallbackTrigger` is a trigger the
scheduler starts for each run whose callback is to run (the log says which), so they survive a
restart of the control plane and of the triggerer. What a callback prints or logs goes to the
last task instance's log; one that raises is logged and the others still run: a callback never
changes the run's state. Callbacks read Variables, Connections and their run's XComs as the
DAG's tasks do: the control plane answers through the triggerer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

from leoflow import dag_files, runner, runtime
from leoflow.protocol import Start
from leoflow.triggers import BaseTrigger, TriggerEvent

#: As Airflow's DAG processor (`dag_file_processor_timeout`), callbacks get this long.
TIMEOUT_SECONDS = 50.0

log = logging.getLogger("leoflow.dag_callbacks")


class CallbackError(Exception):
    """Why the callbacks could not run at all (said in the control plane's record)."""


class _ControlPlane(runner.Channel):
    """The channel of a DAG callback's context: its lookups (Variables, Connections and its
    run's XComs, as a task of the DAG reads them) go to the control plane through the
    triggerer."""

    def __init__(self) -> None:
        pass

    def ask(self, request: Any) -> Any:
        from leoflow import triggerer

        reply = triggerer.ask(dict(request))
        if not reply.get("ok"):
            raise runner.TaskError(f"{request.get('op')} failed: {reply.get('error')}")
        return reply


class DagCallbackTrigger(BaseTrigger):
    """Runs the DAG's callbacks `callback` for run `run_id` and fires once they are done, with
    `{"failed": [names of the functions that raised]}`."""

    def __init__(
        self,
        *,
        dag_id: str,
        run_id: str,
        callback: str,
        reason: str,
        fileloc: str,
        source: str,
        run: dict[str, Any],
        ti: dict[str, Any] | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        super().__init__()
        self.dag_id, self.run_id, self.callback, self.reason = dag_id, run_id, callback, reason
        self.fileloc, self.source, self.run_info, self.ti = fileloc, source, run, ti
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return f"leoflow.dag_callbacks.{type(self).__name__}", {
            "dag_id": self.dag_id, "run_id": self.run_id, "callback": self.callback, "reason": self.reason,
            "fileloc": self.fileloc, "source": self.source, "run": self.run_info, "ti": self.ti, "timeout": self.timeout,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        failed: list[str] = []
        error: str | None = None
        try:
            functions, ctx = await asyncio.to_thread(self._load)
            channel = _ControlPlane()
            # What `Variable.get` and `Connection.get` read in the callbacks' thread.
            runtime.callback_context.set({"__variable_get__": runner.Variables(channel).get, "conn": runner.Connections(channel)})
            calls = asyncio.to_thread(_call_all, self.callback, self._where(), functions, ctx, failed)
            await asyncio.wait_for(calls, self.timeout)
        except CallbackError as why:
            error = str(why)
        except TimeoutError:
            # Its thread cannot be stopped; it is no longer waited for.
            error = f"{self._whose()} {self.callback} did not return within {self.timeout:g} s"
        if error is not None:
            log.error("%s", error)
        yield TriggerEvent({"failed": failed, "error": error})

    def _where(self) -> str:
        """Whose callback it is, for the log."""
        return f"of DAG {self.dag_id} (reason: {self.reason})"

    def _whose(self) -> str:
        return "the DAG's"

    def _dag(self) -> Any:
        try:
            return dag_files.dag(self.fileloc, self.source, self.dag_id)
        except dag_files.DagFileError as error:
            raise CallbackError(str(error)) from None

    def _load(self) -> tuple[list[Callable[..., Any]], dict[str, Any]]:
        """The DAG's functions for the callback, and their context."""
        dag = self._dag()
        functions: list[Callable[..., Any]] = list(dag.callbacks.get(self.callback) or [])
        if not functions:
            raise CallbackError(f"DAG {self.dag_id!r} no longer has an {self.callback}")
        return functions, self._context(dag)

    def _context(self, dag: Any) -> dict[str, Any]:
        """Airflow's: the last task instance's template context and `reason`, or without one
        `{"dag", "run_id", "reason"}`."""
        ti = self.ti
        task = dag.tasks.get(ti["task_id"]) if ti else None
        if ti is None or task is None:
            return {"dag": dag, "run_id": self.run_id, "reason": self.reason}
        attempt = cast(Start, {
            "dag_id": self.dag_id, "run_id": self.run_id, "task_id": ti["task_id"], "map_index": ti["map_index"],
            "try_number": ti["try_number"], "task": ti.get("task") or {}, "source": self.source,
            "fileloc": self.fileloc, "run": self.run_info,
        })
        ctx = runner.build_context(_ControlPlane(), attempt, dag, task)
        ctx["reason"] = self.reason
        return ctx


class TaskCallbackTrigger(DagCallbackTrigger):
    """Runs task `ti`'s `callback` (`on_failure_callback` or `on_retry_callback`) for a try
    that ended without its runner, with the try's template context (Airflow's, which has no
    `reason`), and fires once they are done, as `DagCallbackTrigger` does."""

    def _where(self) -> str:
        ti = self.ti or {}
        return f"of task {ti.get('task_id')} of DAG {self.dag_id} (try {ti.get('try_number')}: {self.reason})"

    def _whose(self) -> str:
        return f"task {(self.ti or {}).get('task_id')}'s"

    def _load(self) -> tuple[list[Callable[..., Any]], dict[str, Any]]:
        dag = self._dag()
        task_id = (self.ti or {}).get("task_id")
        task = dag.tasks.get(task_id)
        if task is None:
            raise CallbackError(f"DAG {self.dag_id!r} no longer has task {task_id!r}")
        functions: list[Callable[..., Any]] = list((getattr(task, "callbacks", None) or {}).get(self.callback) or [])
        if not functions:
            raise CallbackError(f"task {task_id!r} of DAG {self.dag_id!r} no longer has an {self.callback}")
        ctx = self._context(dag)
        del ctx["reason"]
        return functions, ctx


def _call_all(callback: str, where: str, functions: list[Callable[..., Any]], ctx: dict[str, Any], failed: list[str]) -> None:
    """Calls each function, as Airflow's processor does: one that raises is logged, and the
    next still runs."""
    for function in functions:
        label = getattr(function, "__qualname__", None) or type(function).__name__
        log.info("Executing %s %s %s", callback, label, where)
        try:
            function(ctx)
        except Exception:  # noqa: BLE001 - a callback never changes the run
            log.exception("%s %s failed", callback, label)
            failed.append(label)
