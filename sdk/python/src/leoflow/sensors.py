"""Sensors, as Airflow's: `BaseSensorOperator` (subclasses define `poke(context)`) and the
standard provider's `PythonSensor`, `BashSensor`, `FileSensor`, `TimeSensor`, `TimeDeltaSensor`,
`DateTimeSensor` and `DayOfWeekSensor` (and their `*Async` spellings).

A sensor pokes until `poke` says done, waiting `poke_interval` between pokes (doubling with
`exponential_backoff`, at most `max_wait`), for at most `timeout` from the try's first start:
then it fails without retries (`AirflowSensorTimeout`), or is skipped with `soft_fail`. In
`mode="poke"` it sleeps in its try's process; in `mode="reschedule"` the try ends its process
between pokes (`AirflowRescheduleException`) and is started again, in the same try, when the
next poke is due. The time sensors with `deferrable=True` (and their `*Async` spellings) defer
to a `DateTimeTrigger`: a timer of the scheduler, holding no process at all.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from leoflow.errors import DagDefinitionError
from leoflow.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSensorTimeout,
    AirflowSkipException,
    TaskDeferralTimeout,
    TaskDeferred,
)
from leoflow.arguments import duration
from leoflow.model import BaseOperator, _to_define
from leoflow.runtime import PokeReturnValue
from leoflow.standard import WeekDay
from leoflow.triggers import DateTimeTrigger, FileTrigger

#: A week, Airflow's default sensor timeout.
DEFAULT_TIMEOUT = 7 * 24 * 3600.0


def _seconds(name: str, value: Any) -> float:
    delta = duration(name, value)
    return 0.0 if delta is None else delta.total_seconds()


def poke_until(
    poke: Callable[[], Any],
    *,
    interval: float,
    timeout: float,
    soft_fail: bool = False,
    exponential_backoff: bool = False,
    max_wait: float | None = None,
    silent_fail: bool = False,
    log: logging.Logger | None = None,
    reschedule: bool = False,
    started: dt.datetime | None = None,
) -> Any:
    """Pokes until `poke` returns something truthy and returns its XCom value (a
    `PokeReturnValue`'s, else None); past `timeout` (from `started`, the try's first start)
    raises `AirflowSensorTimeout`, or `AirflowSkipException` with `soft_fail`. With
    `silent_fail` an error of a poke is logged and counts as not done. With `reschedule`, a
    poke that is not done ends the process: `AirflowRescheduleException` at the next poke."""
    began = time.monotonic() - (0.0 if started is None else max(0.0, (_now() - started).total_seconds()))
    # A rescheduled try pokes once per process: how many pokes came before follows from the
    # time waited, as the backoff's intervals add up to it.
    pokes = _pokes_before(time.monotonic() - began, interval, exponential_backoff) if reschedule else 0
    while True:
        pokes += 1
        try:
            result = poke()
        except (AirflowSkipException, AirflowFailException, AirflowSensorTimeout):
            raise
        except Exception as error:
            if not silent_fail:
                raise
            (log or logging.getLogger(__name__)).warning("poke failed, poking again: %s: %s", type(error).__name__, error)
            result = False
        if result:
            return result.xcom_value if isinstance(result, PokeReturnValue) else None
        waited = time.monotonic() - began
        if waited >= timeout:
            message = f"sensor timed out after {waited:.0f} s ({pokes} pokes)"
            if soft_fail:
                raise AirflowSkipException(message)
            raise AirflowSensorTimeout(message)
        delay = interval * (2 ** min(pokes - 1, 10)) if exponential_backoff else interval
        if max_wait is not None:
            delay = min(delay, max_wait)
        delay = max(0.0, min(delay, timeout - waited))
        if reschedule:
            raise AirflowRescheduleException(_now() + dt.timedelta(seconds=delay))
        time.sleep(delay)


def _pokes_before(waited: float, interval: float, exponential_backoff: bool) -> int:
    """How many pokes a rescheduled sensor made in `waited` seconds."""
    if interval <= 0 or waited <= 0:
        return 0
    if not exponential_backoff:
        return int(waited // interval)
    return int(math.log2(waited / interval + 1))


class BaseSensorOperator(BaseOperator):
    """Subclasses define `poke(context)`: truthy (or a done `PokeReturnValue`) when the wait is over."""

    custom_class = True
    sensor = True
    ui_color = "#e6f1f2"
    airflow_module = "airflow.sdk.bases.sensor"

    def __init__(
        self,
        *,
        poke_interval: dt.timedelta | float = 60,
        timeout: dt.timedelta | float = DEFAULT_TIMEOUT,
        soft_fail: bool = False,
        mode: str = "poke",
        exponential_backoff: bool = False,
        max_wait: dt.timedelta | float | None = None,
        silent_fail: bool = False,
        never_fail: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if mode not in ("poke", "reschedule"):
            raise DagDefinitionError(f"sensor {self.task_id!r}: mode must be 'poke' or 'reschedule', not {mode!r}")
        if soft_fail and never_fail:
            raise DagDefinitionError(f"sensor {self.task_id!r}: soft_fail and never_fail cannot both be set")
        self.poke_interval = _seconds("poke_interval", poke_interval)
        self.timeout = _seconds("timeout", timeout)
        self.soft_fail = soft_fail
        self.mode = mode
        self.exponential_backoff = exponential_backoff
        self.max_wait = None if max_wait is None else _seconds("max_wait", max_wait)
        self.silent_fail = silent_fail
        self.never_fail = never_fail

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: dict[str, Any]) -> Any:
        """A deferred wait that timed out is the sensor's timeout (skipped with `soft_fail` or
        `never_fail`), as Airflow's sensors make it."""
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except TaskDeferralTimeout as timeout:
            if self.soft_fail or self.never_fail:
                raise AirflowSkipException(f"{timeout}; skipping (soft_fail)") from None
            raise AirflowSensorTimeout(str(timeout)) from None

    @_to_define
    def poke(self, context: dict[str, Any]) -> bool | PokeReturnValue:
        """Whether the wait is over."""
        raise NotImplementedError(f"{type(self).__name__} does not define poke(self, context)")

    def execute(self, context: dict[str, Any]) -> Any:
        try:
            return poke_until(
                lambda: self.poke(context),
                interval=self.poke_interval,
                timeout=self.timeout,
                soft_fail=self.soft_fail,
                exponential_backoff=self.exponential_backoff,
                max_wait=self.max_wait,
                silent_fail=self.silent_fail,
                log=self.log,
                reschedule=self.mode == "reschedule",
                started=getattr(context.get("ti"), "start_date", None),
            )
        except (AirflowSkipException, AirflowRescheduleException, TaskDeferred, KeyboardInterrupt):
            raise
        except BaseException as error:
            if not self.never_fail:
                raise
            raise AirflowSkipException(f"never_fail: {type(error).__name__}: {error}") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _dag_zone(dag: Any) -> dt.tzinfo:
    start = getattr(dag, "start_date", None)
    return start.tzinfo if start is not None and start.tzinfo is not None else dt.timezone.utc


class PythonSensor(BaseSensorOperator):
    """Waits for a Python callable to return something truthy (or a done `PokeReturnValue`)."""

    airflow_module = "airflow.providers.standard.sensors.python"
    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: list[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not callable(python_callable):
            raise DagDefinitionError(f"PythonSensor {self.task_id!r} needs a python_callable")
        self.python_callable = python_callable
        self.op_args = op_args or []
        self.op_kwargs = op_kwargs or {}
        self.templates_dict = templates_dict

    def poke(self, context: dict[str, Any]) -> PokeReturnValue:
        from leoflow.runner import call_with_context

        context["templates_dict"] = self.templates_dict
        result = call_with_context(self.python_callable, list(self.op_args), dict(self.op_kwargs), context)
        return result if isinstance(result, PokeReturnValue) else PokeReturnValue(bool(result))


class BashSensor(BaseSensorOperator):
    """Waits for a bash command to exit 0; with `retry_exit_code`, another code fails the task."""

    airflow_module = "airflow.providers.standard.sensors.bash"
    template_fields: Sequence[str] = ("bash_command", "env")

    def __init__(
        self,
        *,
        bash_command: str,
        env: dict[str, str] | None = None,
        output_encoding: str = "utf-8",
        retry_exit_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bash_command = bash_command
        self.env = env
        self.output_encoding = output_encoding
        self.retry_exit_code = retry_exit_code

    def poke(self, context: dict[str, Any]) -> bool:
        env = None if self.env is None else {str(k): str(v) for k, v in self.env.items()}
        self.log.info("Running command: %s", self.bash_command)
        done = subprocess.run(
            ["bash", "-c", self.bash_command], stdout=subprocess.PIPE, stderr=sys.stderr, env=env,
            stdin=subprocess.DEVNULL, check=False,
        )
        for line in done.stdout.decode(self.output_encoding, errors="replace").splitlines():
            self.log.info(line)
        self.log.info("Command exited with return code %s", done.returncode)
        if done.returncode == 0:
            return True
        if self.retry_exit_code is not None and done.returncode != self.retry_exit_code:
            raise AirflowFailException(f"Command exited with return code {done.returncode}")
        return False


class FileSensor(BaseSensorOperator):
    """Waits for a file, or a folder holding files, at a path (a glob) under the base path of
    the `fs_conn_id` connection (its extra's `path`; none for an undefined `fs_default`)."""

    airflow_module = "airflow.providers.standard.sensors.filesystem"
    template_fields: Sequence[str] = ("filepath",)
    ui_color = "#91818a"

    def __init__(
        self, *, filepath: str, fs_conn_id: str = "fs_default", recursive: bool = False, deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filepath = filepath
        self.fs_conn_id = fs_conn_id
        self.recursive = recursive
        self.deferrable = deferrable

    def path(self, context: dict[str, Any]) -> str:
        connection = context["conn"].get(self.fs_conn_id)
        if connection is None:
            if self.fs_conn_id != "fs_default":
                raise KeyError(f"The conn_id `{self.fs_conn_id}` isn't defined")
            return str(self.filepath)
        base = str(connection.extra_dejson.get("path", ""))
        return os.path.join(base, str(self.filepath))

    def poke(self, context: dict[str, Any]) -> bool:
        full_path = self.path(context)
        self.log.info("Poking for file %s", full_path)
        for path in glob.glob(full_path, recursive=self.recursive):
            if os.path.isfile(path):
                self.log.info("Found File %s last modified: %s", path, time.ctime(os.path.getmtime(path)))
                return True
            for _, _, files in os.walk(path):
                if files:
                    return True
        return False

    def execute(self, context: dict[str, Any]) -> Any:
        if not self.deferrable:
            return super().execute(context)
        # As Airflow's: one poke here, then the triggerer's FileTrigger, holding no process.
        if not self.poke(context):
            self.defer(
                trigger=FileTrigger(filepath=self.path(context), recursive=self.recursive, poke_interval=self.poke_interval),
                method_name="execute_complete",
                timeout=dt.timedelta(seconds=self.timeout),
            )
        return None

    def execute_complete(self, context: dict[str, Any], event: Any = None) -> None:
        """Where the deferred wait resumes: the trigger found the file."""
        if not event:
            raise AirflowException(f"{self.task_id} task failed as {self.filepath} not found.")
        self.log.info("%s completed successfully as %s found.", self.task_id, self.filepath)


class TimeSensor(BaseSensorOperator):
    """Waits until a time of day: today's, in the DAG's time zone, when the task is built."""

    airflow_module = "airflow.providers.standard.sensors.time"

    def __init__(self, *, target_time: dt.time, deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(target_time, dt.time):
            raise DagDefinitionError(f"TimeSensor {self.task_id!r}: target_time must be a datetime.time, not {target_time!r}")
        zone = _dag_zone(self.dag)
        moment = dt.datetime.combine(dt.datetime.now(zone).date(), target_time)
        self.target_time = target_time
        self.target_datetime = (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(dt.timezone.utc)
        self.deferrable = deferrable

    def poke(self, context: dict[str, Any]) -> bool:
        self.log.info("Checking if the time (%s) has come", self.target_datetime)
        return _now() > self.target_datetime

    def execute(self, context: dict[str, Any]) -> Any:
        if self.deferrable:
            return _defer_until(self, self.target_datetime)
        return super().execute(context)

    def execute_complete(self, context: dict[str, Any], event: Any = None) -> None:
        """Where a deferred wait resumes: the time came."""
        self.log.info("The time (%s) has come", self.target_datetime)


class TimeSensorAsync(TimeSensor):
    """TimeSensor with `deferrable=True` (Airflow's deprecated spelling)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(deferrable=True, **kwargs)


class TimeDeltaSensor(BaseSensorOperator):
    """Waits until `delta` (a timedelta, or minutes) after the run's data interval's end (its
    `run_after` without one)."""

    airflow_module = "airflow.providers.standard.sensors.time_delta"
    template_fields: Sequence[str] = ("delta",)

    def __init__(self, *, delta: dt.timedelta | int, deferrable: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.delta = delta
        self.deferrable = deferrable

    def target(self, context: dict[str, Any]) -> dt.datetime:
        delta = self.delta if isinstance(self.delta, dt.timedelta) else dt.timedelta(minutes=int(self.delta))
        base = context.get("data_interval_end") or context["dag_run"].run_after
        if base is None:
            raise ValueError("the run has neither a data interval end nor a run_after")
        return base + delta  # type: ignore[no-any-return]

    def poke(self, context: dict[str, Any]) -> bool:
        target = self.target(context)
        self.log.info("Checking if the delta has elapsed: target %s", target)
        return _now() > target

    def execute(self, context: dict[str, Any]) -> Any:
        if self.deferrable:
            return _defer_until(self, self.target(context))
        return super().execute(context)

    def execute_complete(self, context: dict[str, Any], event: Any = None) -> None:
        """Where a deferred wait resumes: the delta elapsed."""
        self.log.info("The delta has elapsed")


class TimeDeltaSensorAsync(TimeDeltaSensor):
    """TimeDeltaSensor with `deferrable=True` (Airflow's deprecated spelling)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(deferrable=True, **kwargs)


class DateTimeSensor(BaseSensorOperator):
    """Waits until `target_time`: a datetime, or an ISO 8601 string (templated)."""

    airflow_module = "airflow.providers.standard.sensors.date_time"
    template_fields: Sequence[str] = ("target_time",)

    def __init__(self, *, target_time: str | dt.datetime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(target_time, (str, dt.datetime)):
            raise DagDefinitionError(
                f"DateTimeSensor {self.task_id!r}: target_time must be a str or a datetime, not {type(target_time).__name__}"
            )
        self.target_time = target_time

    def moment(self) -> dt.datetime:
        value = self.target_time
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=_dag_zone(self.dag))

    def poke(self, context: dict[str, Any]) -> bool:
        self.log.info("Checking if the time (%s) has come", self.target_time)
        return _now() > self.moment()


class DateTimeSensorAsync(DateTimeSensor):
    """DateTimeSensor that defers to a `DateTimeTrigger` until `target_time`."""

    def __init__(self, *, end_from_trigger: bool = False, start_from_trigger: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.end_from_trigger = end_from_trigger
        self.start_from_trigger = start_from_trigger

    def execute(self, context: dict[str, Any]) -> Any:
        return _defer_until(self, self.moment())

    def execute_complete(self, context: dict[str, Any], event: Any = None) -> None:
        """Where the deferred wait resumes: the time came."""
        self.log.info("The time (%s) has come", self.target_time)


def _defer_until(sensor: BaseSensorOperator, moment: dt.datetime) -> None:
    """Defers `sensor` to a `DateTimeTrigger` at `moment`, unless it has passed; the sensor's
    `timeout` bounds the wait (past it, the sensor times out, or is skipped with `soft_fail`)."""
    if _now() >= moment:
        sensor.log.info("The time (%s) has come already", moment)
        return
    sensor.defer(
        trigger=DateTimeTrigger(moment, end_from_trigger=bool(getattr(sensor, "end_from_trigger", False))),
        method_name="execute_complete",
        timeout=dt.timedelta(seconds=sensor.timeout),
    )


class DayOfWeekSensor(BaseSensorOperator):
    """Waits for one of the given days of the week (today's in UTC, or the run's logical date's)."""

    airflow_module = "airflow.providers.standard.sensors.weekday"

    def __init__(self, *, week_day: Any, use_task_logical_date: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.week_day = week_day
        self.use_task_logical_date = use_task_logical_date
        self._week_day_numbers = WeekDay.validate_week_day(week_day)

    def poke(self, context: dict[str, Any]) -> bool:
        if self.use_task_logical_date:
            when = context.get("logical_date")
            if when is None:
                raise ValueError("use_task_logical_date=True, but the run has no logical date")
            return bool(when.isoweekday() in self._week_day_numbers)
        return _now().isoweekday() in self._week_day_numbers
