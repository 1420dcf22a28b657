"""Tasks that act on other DAGs' runs, as the standard provider's: `TriggerDagRunOperator`
triggers a run (and waits for it with `wait_for_completion`), `ExternalTaskSensor` waits for a
run's tasks or the run itself, `ExternalTaskMarker` marks a dependency (a clear of it clears the
marked task). They ask the control plane through the task agent, in the try's own tenant:
another tenant's DAG is one they cannot see.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from leoflow.errors import DagDefinitionError
from leoflow.exceptions import AirflowException, AirflowSkipException
from leoflow.model import BaseOperator
from leoflow.sensors import BaseSensorOperator

#: A logical date not given at all (the run's then is now), as against None (no logical date).
NOTSET: Any = object()

_RUN_STATES = ("queued", "running", "success", "failed")


def _instant(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.timezone.utc) if value is not None and value.tzinfo is None else value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def dag_run(context: dict[str, Any], dag_id: str, *, run_id: str | None = None, logical_date: dt.datetime | None = None) -> Any:
    """A run of a DAG of the try's tenant with its task states, or None when there is none."""
    found, value = _look_up_run(context, dag_id, run_id=run_id, logical_date=logical_date)
    return value if found else None


def _look_up_run(
    context: dict[str, Any], dag_id: str, *, run_id: str | None = None, logical_date: dt.datetime | None = None
) -> tuple[bool, Any]:
    """Whether the run exists, and it; or, when it does not, the DAG's task ids (`None` when
    the try's tenant has no such DAG)."""
    request: dict[str, Any] = {"op": "dag_run", "dag_id": dag_id}
    if run_id is not None:
        request["run_id"] = run_id
    if logical_date is not None:
        request["logical_date"] = logical_date.isoformat()
    found, value = context["ti"]._channel.look_up(request)
    return found, value


def _states(names: Sequence[str] | None, default: list[str], what: str) -> list[str]:
    states = [str(s) for s in names] if names is not None else default
    unknown = [s for s in states if s not in _RUN_STATES + ("skipped", "upstream_failed", "removed", "up_for_retry")]
    if unknown:
        raise DagDefinitionError(f"{what}: unknown state(s) {', '.join(unknown)}")
    return states


class TriggerDagRunOperator(BaseOperator):
    """Triggers a run of `trigger_dag_id` with `conf` (and waits for its end with
    `wait_for_completion`, every `poke_interval` seconds)."""

    custom_class = True
    airflow_module = "airflow.providers.standard.operators.trigger_dagrun"
    ui_color = "#ffefeb"
    template_fields: Sequence[str] = ("trigger_dag_id", "trigger_run_id", "logical_date", "conf", "wait_for_completion", "skip_when_already_exists")

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        trigger_run_id: str | None = None,
        conf: dict[str, Any] | str | None = None,
        logical_date: str | dt.datetime | None = NOTSET,
        reset_dag_run: bool = False,
        wait_for_completion: bool = False,
        poke_interval: float = 60,
        allowed_states: Sequence[str] | None = None,
        failed_states: Sequence[str] | None = None,
        skip_when_already_exists: bool = False,
        fail_when_dag_is_paused: bool = False,
        note: str | None = None,
        deferrable: bool = False,
        openlineage_inject_parent_info: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.fail_when_dag_is_paused = fail_when_dag_is_paused
        self.note = note
        self.trigger_dag_id = trigger_dag_id
        self.trigger_run_id = trigger_run_id
        self.conf = conf
        self.logical_date = logical_date
        self.reset_dag_run = reset_dag_run
        self.wait_for_completion = wait_for_completion
        self.poke_interval = float(poke_interval)
        self.allowed_states = _states(allowed_states, ["success"], "allowed_states")
        self.failed_states = _states(failed_states, ["failed"], "failed_states")
        self.skip_when_already_exists = skip_when_already_exists
        self.deferrable = deferrable

    def execute(self, context: dict[str, Any]) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        logical_date = now if self.logical_date is NOTSET else _instant(self.logical_date)
        conf = json.loads(self.conf) if isinstance(self.conf, str) else (self.conf or {})
        if not isinstance(conf, dict):
            raise AirflowException(f"conf must be a JSON object, not {conf!r}")
        run_id = str(self.trigger_run_id or f"manual__{(logical_date or now).isoformat()}")
        request: dict[str, Any] = {
            "op": "trigger_dag_run", "dag_id": self.trigger_dag_id, "run_id": run_id, "conf": conf,
            "reset_dag_run": self.reset_dag_run,
        }
        if logical_date is not None:
            request["logical_date"] = logical_date.isoformat()
        if self.fail_when_dag_is_paused:
            request["fail_when_dag_is_paused"] = True
        if self.note is not None:
            request["note"] = str(self.note)
        _, run = context["ti"]._channel.look_up(request)
        if run["existed"] and not self.reset_dag_run:
            if self.skip_when_already_exists:
                raise AirflowSkipException(f"a run {run_id} of {self.trigger_dag_id} exists already")
            raise AirflowException(f"a run {run_id} of {self.trigger_dag_id} exists already (set reset_dag_run or skip_when_already_exists)")
        self.log.info("Triggered %s run %s%s", self.trigger_dag_id, run_id, " (cleared)" if run["existed"] else "")
        context["ti"].xcom_push("trigger_run_id", run_id)
        if self.wait_for_completion:
            self._wait(context, run_id)

    def _wait(self, context: dict[str, Any], run_id: str) -> None:
        while True:
            time.sleep(self.poke_interval)
            run = dag_run(context, self.trigger_dag_id, run_id=run_id)
            state = run["state"] if run else None
            self.log.info("Waiting for %s run %s: %s", self.trigger_dag_id, run_id, state)
            if state in self.failed_states:
                raise AirflowException(f"{self.trigger_dag_id} run {run_id} failed with failed state {state}")
            if state in self.allowed_states:
                return


class ExternalTaskSensor(BaseSensorOperator):
    """Waits for tasks (`external_task_id(s)`, or a task group) of another DAG's run with the
    same logical date (shifted by `execution_delta`, or given by `execution_date_fn`), or for the
    run itself, to reach `allowed_states`; `failed_states` fail it, `skipped_states` skip it."""

    airflow_module = "airflow.providers.standard.sensors.external_task"
    ui_color = "#4db7db"
    template_fields: Sequence[str] = ("external_dag_id", "external_task_id", "external_task_ids", "external_task_group_id")

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str | None = None,
        external_task_ids: Sequence[str] | None = None,
        external_task_group_id: str | None = None,
        allowed_states: Sequence[str] | None = None,
        skipped_states: Sequence[str] | None = None,
        failed_states: Sequence[str] | None = None,
        execution_delta: dt.timedelta | None = None,
        execution_date_fn: Callable[..., Any] | None = None,
        check_existence: bool = False,
        poll_interval: float = 2.0,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if external_task_id is not None and external_task_ids is not None:
            raise DagDefinitionError("give external_task_id or external_task_ids, not both")
        if execution_delta is not None and execution_date_fn is not None:
            raise DagDefinitionError("give execution_delta or execution_date_fn, not both")
        self.check_existence = check_existence
        self._checked = False
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        self.external_task_ids = list(external_task_ids) if external_task_ids is not None else None
        self.external_task_group_id = external_task_group_id
        self.allowed_states = _states(allowed_states, ["success"], "allowed_states")
        self.skipped_states = _states(skipped_states, [], "skipped_states")
        self.failed_states = _states(failed_states, [], "failed_states")
        self.execution_delta = execution_delta
        self.execution_date_fn = execution_date_fn
        self.deferrable = deferrable

    def _dates(self, context: dict[str, Any]) -> list[dt.datetime]:
        when = context.get("logical_date") or context["dag_run"].run_after
        if self.execution_delta is not None:
            return [when - self.execution_delta]
        if self.execution_date_fn is not None:
            from leoflow.runner import call_with_context

            found = call_with_context(self.execution_date_fn, [when], {}, context)
            return list(found) if isinstance(found, (list, tuple)) else [found]
        return [when]

    def _task_states(self, run: dict[str, Any]) -> list[Any]:
        tasks: dict[str, Any] = run["tasks"]
        if self.external_task_group_id is not None:
            prefix = f"{self.external_task_group_id}."
            chosen = [state for task_id, state in tasks.items() if task_id.startswith(prefix)]
            return [s for state in chosen for s in (state if isinstance(state, list) else [state])] or [None]
        ids = self.external_task_ids if self.external_task_ids is not None else [self.external_task_id]
        states = [tasks.get(str(task_id)) for task_id in ids]
        return [s for state in states for s in (state if isinstance(state, list) else [state])]

    def _check_for_existence(self, context: dict[str, Any], when: dt.datetime) -> None:
        """With `check_existence`, once: the external DAG, and the tasks or group watched in it,
        exist (else the task fails with Airflow's words)."""
        found, value = _look_up_run(context, self.external_dag_id, logical_date=when)
        if not found and value is None:
            raise AirflowException(f"The external DAG {self.external_dag_id} does not exist.")
        task_ids = set(value["tasks"]) if found else set(value["task_ids"])
        if self.external_task_group_id is not None:
            prefix = f"{self.external_task_group_id}."
            if not any(task_id.startswith(prefix) for task_id in task_ids):
                raise AirflowException(
                    f"The external task group '{self.external_task_group_id}' in DAG '{self.external_dag_id}' does not exist."
                )
        ids = self.external_task_ids if self.external_task_ids is not None else [self.external_task_id]
        for task_id in ids:
            if task_id is not None and task_id not in task_ids:
                raise AirflowException(f"The external task {task_id} in DAG {self.external_dag_id} does not exist.")
        self._checked = True

    def poke(self, context: dict[str, Any]) -> bool:
        watched = self.external_task_ids or self.external_task_id or self.external_task_group_id
        if self.check_existence and not self._checked:
            self._check_for_existence(context, self._dates(context)[0])
        done = True
        for when in self._dates(context):
            run = dag_run(context, self.external_dag_id, logical_date=when)
            self.log.info("Poking for %s %s on %s: %s", self.external_dag_id, watched or "(the run)", when, run and run["state"])
            if run is None:
                return False
            states = [run["state"]] if watched is None else self._task_states(run)
            if any(s in self.failed_states for s in states):
                raise AirflowException(f"the external {watched or 'run'} of {self.external_dag_id} on {when} failed with states {states}")
            if any(s in self.skipped_states for s in states):
                raise AirflowSkipException(f"the external {watched or 'run'} of {self.external_dag_id} on {when} is {states}")
            done = done and all(s in self.allowed_states for s in states)
        return done


class ExternalTaskMarker(BaseOperator):
    """Marks that a task of another DAG (`external_dag_id`, `external_task_id`) depends on this
    one; it succeeds at once. Clearing it clears that task (and what is downstream of it) in the
    other DAG's run of `logical_date`, as Airflow does (the control plane does it)."""

    custom_class = True
    airflow_module = "airflow.providers.standard.sensors.external_task"
    ui_color = "#4db7db"
    template_fields: Sequence[str] = ("external_dag_id", "external_task_id", "logical_date")

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str,
        logical_date: str | dt.datetime | None = "{{ logical_date.isoformat() }}",
        recursion_depth: int = 10,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if recursion_depth <= 0:
            raise DagDefinitionError("recursion_depth must be a positive integer")
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        self.logical_date = logical_date
        self.recursion_depth = recursion_depth

    def execute(self, context: dict[str, Any]) -> None:
        self.log.info("Marks %s.%s as depending on this task", self.external_dag_id, self.external_task_id)
