"""Triggers, as Airflow's (`airflow.triggers.base`, the standard provider's `temporal` and
`file` triggers), and how a deferral crosses to the control plane.

A try that calls `self.defer(trigger=…, method_name=…)` ends its process; the control plane
records it as deferred. A `DateTimeTrigger` (and a `TimeDeltaTrigger`, which is one) becomes a
timer of the scheduler: nothing of Python waits for it. Any other trigger is `serialize()`d and
run by the triggerer (`leoflow.triggerer`), which builds it again from its class and arguments.
When the trigger fires, a new attempt of the same try calls
`method_name(context, event=payload, **kwargs)`. A `BaseEventTrigger` can also watch an asset
(`AssetWatcher`): each of its events is an update of the asset.

Values crossing (a trigger's and the method's arguments, an event's payload) are JSON, with
datetimes and timedeltas tagged as Airflow's `BaseSerialization` tags them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import glob
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from leoflow.errors import DagDefinitionError


class TriggerEvent:
    """What a trigger yields when it fires: its payload is what `method_name` gets as `event`."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TriggerEvent) and other.payload == self.payload

    def __repr__(self) -> str:
        return f"TriggerEvent<{self.payload!r}>"


class BaseTaskEndEvent(TriggerEvent):
    """What a trigger yields to end its task without resuming it (Airflow's `TaskSuccessEvent`,
    `TaskFailedEvent`, `TaskSkippedEvent`): the task instance takes `task_instance_state` (a
    failure with no retry, as in Airflow) and `xcoms` are pushed as its XComs."""

    task_instance_state = "success"

    def __init__(self, *, xcoms: dict[str, Any] | None = None) -> None:
        super().__init__(self.task_instance_state)
        if xcoms is not None and not (isinstance(xcoms, dict) and all(isinstance(k, str) for k in xcoms)):
            raise TypeError(f"xcoms must be a dict of XCom keys to values, not {xcoms!r}")
        self.xcoms = xcoms

    def __repr__(self) -> str:
        return f"{type(self).__name__}<xcoms={self.xcoms!r}>"


class TaskSuccessEvent(BaseTaskEndEvent):
    """Ends the task successful."""

    task_instance_state = "success"


class TaskFailedEvent(BaseTaskEndEvent):
    """Ends the task failed, without retrying it."""

    task_instance_state = "failed"


class TaskSkippedEvent(BaseTaskEndEvent):
    """Ends the task skipped."""

    task_instance_state = "skipped"


class BaseTrigger:
    """A trigger: `serialize()` names its class and arguments (it is built again from them in
    the triggerer), `run()` yields a `TriggerEvent` when it fires."""

    def __init__(self, **kwargs: Any) -> None:
        self.trigger_id: int | None = None

    @property
    def log(self) -> logging.Logger:
        """The trigger's logger: in the triggerer, its lines go to the log of the try it wakes."""
        return logging.getLogger(f"{type(self).__module__}.{type(self).__name__}")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError(f"{type(self).__name__} does not define serialize()")

    async def run(self) -> AsyncIterator[TriggerEvent]:
        raise NotImplementedError(f"{type(self).__name__} does not define run()")
        yield  # pragma: no cover - makes this an async generator, as subclasses are

    async def cleanup(self) -> None:
        """Called when the trigger stops, fired or not."""

    def __repr__(self) -> str:
        classpath, kwargs = self.serialize()
        return f"<{classpath} {kwargs}>"


class DateTimeTrigger(BaseTrigger):
    """Fires at `moment` (an aware datetime); its event's payload is the moment. With
    `end_from_trigger`, the task ends there, successful, without carrying on."""

    def __init__(self, moment: dt.datetime, *, end_from_trigger: bool = False) -> None:
        super().__init__()
        if not isinstance(moment, dt.datetime):
            raise TypeError(f"Expected datetime.datetime type for moment. Got {type(moment)}")
        if moment.tzinfo is None:
            raise ValueError("You cannot pass naive datetimes")
        self.moment = moment.astimezone(dt.timezone.utc)
        self.end_from_trigger = end_from_trigger

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow.providers.standard.triggers.temporal.DateTimeTrigger",
            {"moment": self.moment, "end_from_trigger": self.end_from_trigger},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while (left := (self.moment - dt.datetime.now(dt.timezone.utc)).total_seconds()) > 0:
            await asyncio.sleep(min(left, 3600))
        yield TriggerEvent(self.moment)


class TimeDeltaTrigger(DateTimeTrigger):
    """Fires `delta` after it is made: a `DateTimeTrigger` at now + delta."""

    def __init__(self, delta: dt.timedelta, *, end_from_trigger: bool = False) -> None:
        if not isinstance(delta, dt.timedelta):
            raise TypeError(f"Expected datetime.timedelta type for delta. Got {type(delta)}")
        super().__init__(dt.datetime.now(dt.timezone.utc) + delta, end_from_trigger=end_from_trigger)


class BaseEventTrigger(BaseTrigger):
    """A trigger an `AssetWatcher` can run: each event it yields is an update of the asset."""


class FileTrigger(BaseTrigger):
    """Fires once a file matching `filepath` (a glob; `**` with `recursive`) exists, or a folder
    matching it holds files, looking every `poke_interval` seconds. Its event is `True`."""

    def __init__(self, filepath: str, recursive: bool = False, poke_interval: float = 5.0, **kwargs: Any) -> None:
        super().__init__()
        self.filepath = filepath
        self.recursive = recursive
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow.providers.standard.triggers.file.FileTrigger",
            {"filepath": self.filepath, "recursive": self.recursive, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            for path in glob.glob(self.filepath, recursive=self.recursive):
                if os.path.isfile(path):
                    self.log.info("Found file %s last modified: %s", path, _modified(path))
                    yield TriggerEvent(True)
                    return
                for _, _, files in os.walk(path):
                    if files:
                        self.log.info("Found files in %s", path)
                        yield TriggerEvent(True)
                        return
            await asyncio.sleep(self.poke_interval)


class FileDeleteTrigger(BaseEventTrigger):
    """Fires once the file `filepath` exists, and deletes it, looking every `poke_interval`
    seconds. Its event is `True`. Watching an asset, it fires for each file that appears."""

    def __init__(self, filepath: str, poke_interval: float = 5.0, **kwargs: Any) -> None:
        super().__init__()
        self.filepath = filepath
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airflow.providers.standard.triggers.file.FileDeleteTrigger",
            {"filepath": self.filepath, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        while True:
            if os.path.isfile(self.filepath):
                self.log.info("Found file %s last modified: %s", self.filepath, _modified(self.filepath))
                os.remove(self.filepath)
                yield TriggerEvent(True)
                return
            await asyncio.sleep(self.poke_interval)


def _modified(path: str) -> str:
    """A file's modification time as Airflow's file triggers log it."""
    return dt.datetime.fromtimestamp(os.path.getmtime(path)).strftime("%Y%m%d%H%M%S")


# --------------------------------------------------------------------------------------------
# Values crossing the deferral


def serialize_value(value: Any, what: str) -> Any:
    """`value` as JSON, datetimes and timedeltas tagged (`{"__type", "__var"}`, Airflow's
    `BaseSerialization` tags); anything else that is not JSON is refused, naming `what`."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise DagDefinitionError(f"{what}: a naive datetime {value!r} cannot cross a deferral; give it a time zone")
        return {"__type": "datetime", "__var": value.timestamp()}
    if isinstance(value, dt.timedelta):
        return {"__type": "timedelta", "__var": value.total_seconds()}
    if isinstance(value, (list, tuple)):
        return [serialize_value(item, what) for item in value]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise DagDefinitionError(f"{what}: a dict with keys that are not strings cannot cross a deferral")
        return {key: serialize_value(item, what) for key, item in value.items()}
    raise DagDefinitionError(
        f"{what}: a {type(value).__name__} cannot cross a deferral; "
        "use JSON values (str, numbers, lists, dicts), datetimes or timedeltas"
    )


def deserialize_value(value: Any) -> Any:
    """The inverse of `serialize_value`."""
    if isinstance(value, list):
        return [deserialize_value(item) for item in value]
    if isinstance(value, dict):
        kind = value.get("__type")
        if kind == "datetime" and set(value) == {"__type", "__var"}:
            return dt.datetime.fromtimestamp(float(value["__var"]), tz=dt.timezone.utc)
        if kind == "timedelta" and set(value) == {"__type", "__var"}:
            return dt.timedelta(seconds=float(value["__var"]))
        return {key: deserialize_value(item) for key, item in value.items()}
    return value


def _seconds(timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, dt.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout)
    raise DagDefinitionError(f"a deferral's timeout must be a timedelta or seconds, not {timeout!r}")


def deferral(trigger: Any, method_name: str, kwargs: dict[str, Any] | None, timeout: Any) -> dict[str, Any]:
    """How a try that deferred itself waits, as the runner reports it (`Deferral`)."""
    from leoflow.hitl import HITLTrigger

    waits_for: dict[str, Any]
    if isinstance(trigger, HITLTrigger):
        # The control plane waits for the person's answer itself.
        waits_for = {
            "kind": "person",
            "request": serialize_value(trigger.request(), "a human-in-the-loop request"),
            "unanswered": serialize_value(trigger.unanswered(), "a human-in-the-loop default"),
        }
        if trigger.timeout_datetime is not None:
            waits_for["answer_by"] = trigger.timeout_datetime.isoformat()
    elif isinstance(trigger, DateTimeTrigger):
        waits_for = {"kind": "time", "moment": trigger.moment.isoformat()}
        if trigger.end_from_trigger:
            # The task ends at the moment, successful, without running again.
            waits_for["end_from_trigger"] = True
    elif isinstance(trigger, BaseTrigger):
        classpath, arguments = trigger.serialize()
        if not isinstance(classpath, str) or "." not in classpath:
            raise DagDefinitionError(f"{type(trigger).__name__}.serialize() must name its class as 'module.Class', not {classpath!r}")
        waits_for = {
            "kind": "python",
            "classpath": classpath,
            "kwargs": serialize_value(dict(arguments), f"the arguments of trigger {classpath}"),
        }
    else:
        raise DagDefinitionError(f"self.defer needs a trigger (a BaseTrigger), not {trigger!r}")
    message: dict[str, Any] = {
        "trigger": waits_for,
        "method": method_name,
        "kwargs": serialize_value(dict(kwargs or {}), f"the kwargs of {method_name}"),
    }
    seconds = _seconds(timeout)
    if seconds is not None:
        message["timeout"] = seconds
    return message
