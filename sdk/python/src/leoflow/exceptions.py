"""Exceptions a task raises to steer its own outcome (the task runner gives them meaning)."""

from __future__ import annotations

from typing import Any


class AirflowException(Exception):
    """A task failure."""


class AirflowSkipException(AirflowException):
    """Raised by a task to end as skipped."""


class AirflowFailException(AirflowException):
    """Raised by a task to fail at once, without retries."""


class AirflowSensorTimeout(AirflowException):
    """A sensor ran out of time."""


class AirflowRescheduleException(AirflowException):
    """Raised by a sensor in reschedule mode: poke again at `reschedule_date`, in the same try,
    holding no process meanwhile."""

    def __init__(self, reschedule_date: Any) -> None:
        super().__init__()
        self.reschedule_date = reschedule_date


class TaskDeferred(BaseException):
    """Raised by `BaseOperator.defer`: the try waits for `trigger` holding no process, then
    carries on in `method_name(context, event=…, **kwargs)`, or fails past `timeout`."""

    def __init__(self, *, trigger: Any, method_name: str, kwargs: dict[str, Any] | None = None, timeout: Any = None) -> None:
        super().__init__()
        self.trigger = trigger
        self.method_name = method_name
        self.kwargs = kwargs
        self.timeout = timeout


class AirflowTaskTimeout(BaseException):
    """A task ran past its `execution_timeout` (a `BaseException`, as Airflow's, so task code's
    `except Exception` does not swallow it)."""


class TaskDeferralError(AirflowException):
    """A deferred try's trigger failed."""


class TaskDeferralTimeout(AirflowException):
    """A deferred try's trigger did not fire before its timeout."""
