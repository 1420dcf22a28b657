"""Airflow's built-in timetables (`airflow.sdk`, `airflow.timetables.*`), compiled into
dag.json's `schedule` for the scheduler, which runs them as Airflow's `next_dagrun_info` does.

Each validates its arguments when built, with Airflow's meaning: a cron expression (or a
preset) and an IANA time zone name, a positive `timedelta`, a data `interval` that is not
negative. A timetable of the project's own (a `Timetable` subclass defining
`next_dagrun_info`) is recorded by its class: the scheduler asks it for each next run through
the triggerer (`leoflow.custom_timetables`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, NamedTuple

from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.timezone import zone_name


class DataInterval(NamedTuple):
    """Airflow's `DataInterval`: a run's data interval."""

    start: dt.datetime
    end: dt.datetime

    @classmethod
    def exact(cls, at: dt.datetime) -> DataInterval:
        return cls(at, at)


class TimeRestriction(NamedTuple):
    """Airflow's `TimeRestriction`: the DAG's start and end dates, and its `catchup`."""

    earliest: dt.datetime | None
    latest: dt.datetime | None
    catchup: bool


class DagRunInfo(NamedTuple):
    """Airflow's `DagRunInfo`: when a run may start, and its data interval."""

    run_after: dt.datetime
    data_interval: DataInterval

    @classmethod
    def exact(cls, at: dt.datetime) -> DagRunInfo:
        return cls(run_after=at, data_interval=DataInterval.exact(at))

    @classmethod
    def interval(cls, start: dt.datetime, end: dt.datetime) -> DagRunInfo:
        return cls(run_after=end, data_interval=DataInterval(start, end))

    @property
    def logical_date(self) -> dt.datetime:
        return self.data_interval.start


class Timetable:
    """The base of Airflow's timetables. A subclass of the project's own defines
    `next_dagrun_info`, which the scheduler asks for each next run (through the triggerer)."""

    #: Airflow's attributes a timetable may set.
    description: str | None = None
    periodic: bool = True
    can_be_scheduled: bool = True
    run_ordering: tuple[str, ...] = ("data_interval_end", "logical_date")
    active_runs_limit: int | None = None

    @property
    def summary(self) -> str:
        return type(self).__name__

    def validate(self) -> None:
        """Airflow's hook to refuse a timetable's arguments (called when the DAG is compiled)."""

    def serialize(self) -> dict[str, Any]:
        return {}

    def infer_manual_data_interval(self, *, run_after: dt.datetime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction) -> DagRunInfo | None:
        raise NotImplementedError(f"{type(self).__name__} does not define next_dagrun_info")

    def serialize_schedule(self) -> dict[str, Any]:
        """The timetable as dag.json's `schedule`: a timetable of the project's own by its class."""
        cls = type(self)
        if cls.next_dagrun_info is Timetable.next_dagrun_info:
            raise UnsupportedConstruct(
                f"custom timetable {cls.__name__} without next_dagrun_info",
                "a timetable of the project's own defines next_dagrun_info(*, last_automated_data_interval, "
                "restriction), as Airflow's timetables do",
            )
        self.validate()
        if not self.can_be_scheduled:
            raise UnsupportedConstruct(f"custom timetable {cls.__name__} with can_be_scheduled=False", "use schedule=None")
        return {
            "type": "custom",
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "summary": str(self.summary),
            "description": self.description,
        }


class NullTimetable(Timetable):
    """`schedule=None`: only triggered runs."""

    def serialize_schedule(self) -> dict[str, Any]:
        return {"type": "none"}


class OnceTimetable(Timetable):
    """`schedule="@once"`: one run, at the start date."""

    def serialize_schedule(self) -> dict[str, Any]:
        return {"type": "once"}


class ContinuousTimetable(Timetable):
    """`schedule="@continuous"`: refused, as the preset is."""

    def serialize_schedule(self) -> dict[str, Any]:
        raise UnsupportedConstruct("ContinuousTimetable", "use a short cron or timedelta schedule")


def _zone(timezone: Any) -> str:
    """An IANA zone name from a name or a zone object (pendulum's, zoneinfo's)."""
    name = timezone if isinstance(timezone, str) else zone_name(timezone)
    if not name:
        raise DagDefinitionError(f"timezone must be an IANA time zone name (such as 'Europe/Amsterdam'), not {timezone!r}")
    if name in ("UTC", "+00:00", "Etc/UTC"):
        return "UTC"
    from zoneinfo import ZoneInfo

    try:
        ZoneInfo(name)
    except (ValueError, LookupError, OSError):
        raise DagDefinitionError(
            f"timezone {name!r} is not an IANA time zone name (such as 'Europe/Amsterdam' or 'UTC')"
        ) from None
    return name


def _seconds(name: str, value: Any, *, positive: bool) -> float:
    """A `timedelta` argument in seconds."""
    if not isinstance(value, dt.timedelta):
        if type(value).__name__ == "relativedelta":
            raise UnsupportedConstruct(f"{name}=relativedelta(...)", "use a datetime.timedelta, or a cron expression")
        raise DagDefinitionError(f"{name} must be a datetime.timedelta, not {value!r}")
    seconds = value.total_seconds()
    if seconds < 0 or (positive and seconds == 0):
        raise DagDefinitionError(f"{name} must be {'positive' if positive else 'zero or more'}, not {value!r}")
    return seconds


def _cron(expression: Any) -> str:
    """A cron expression (a preset spelled out), checked."""
    from leoflow.schedule import PRESETS, check_cron

    if not isinstance(expression, str):
        raise DagDefinitionError(f"a cron expression must be a string, not {expression!r}")
    text = expression.strip()
    if text in PRESETS and PRESETS[text] is not None:
        return str(PRESETS[text])
    if text.startswith("@"):
        raise DagDefinitionError(f"a cron timetable takes a cron expression or a preset such as '@daily', not {text!r}")
    check_cron(text)
    return text


def _run_immediately(value: Any) -> bool | float:
    if isinstance(value, bool):
        return value
    if isinstance(value, dt.timedelta):
        return _seconds("run_immediately", value, positive=False)
    raise DagDefinitionError(f"run_immediately must be True, False or a datetime.timedelta, not {value!r}")


class CronTriggerTimetable(Timetable):
    """A run at each time the cron expression names; its data interval is the `interval`
    before it."""

    def __init__(
        self,
        cron: str,
        *,
        timezone: Any,
        interval: dt.timedelta = dt.timedelta(),
        run_immediately: bool | dt.timedelta = False,
    ) -> None:
        self.expression = _cron(cron)
        self.timezone = _zone(timezone)
        self.interval = _seconds("interval", interval, positive=False)
        self.run_immediately = _run_immediately(run_immediately)

    def serialize_schedule(self) -> dict[str, Any]:
        return {
            "type": "cron", "expression": self.expression, "timezone": self.timezone,
            "interval": self.interval, "run_immediately": self.run_immediately,
        }


class CronDataIntervalTimetable(Timetable):
    """A run per interval between two times the cron expression names, due at its end (as in
    Airflow 2)."""

    def __init__(self, cron: str, timezone: Any) -> None:
        self.expression = _cron(cron)
        self.timezone = _zone(timezone)

    def serialize_schedule(self) -> dict[str, Any]:
        return {"type": "cron", "expression": self.expression, "timezone": self.timezone, "data_intervals": True}


class DeltaTriggerTimetable(Timetable):
    """A run every `delta`; its data interval is the `interval` before it."""

    def __init__(self, delta: dt.timedelta, *, interval: dt.timedelta = dt.timedelta()) -> None:
        self.seconds = _seconds("delta", delta, positive=True)
        self.interval = _seconds("interval", interval, positive=False)

    def serialize_schedule(self) -> dict[str, Any]:
        return {"type": "timedelta", "seconds": self.seconds, "interval": self.interval}


class DeltaDataIntervalTimetable(Timetable):
    """A run per `delta`-long interval, due at its end (as in Airflow 2)."""

    def __init__(self, delta: dt.timedelta) -> None:
        self.seconds = _seconds("delta", delta, positive=True)

    def serialize_schedule(self) -> dict[str, Any]:
        return {"type": "timedelta", "seconds": self.seconds, "data_intervals": True}


class MultipleCronTriggerTimetable(Timetable):
    """A run whenever any of the cron expressions fires (one run per instant)."""

    def __init__(
        self,
        *crons: str,
        timezone: Any,
        interval: dt.timedelta = dt.timedelta(),
        run_immediately: bool | dt.timedelta = False,
    ) -> None:
        if not crons:
            raise DagDefinitionError("MultipleCronTriggerTimetable needs at least one cron expression")
        self.expressions = [_cron(cron) for cron in crons]
        self.timezone = _zone(timezone)
        self.interval = _seconds("interval", interval, positive=False)
        self.run_immediately = _run_immediately(run_immediately)

    def serialize_schedule(self) -> dict[str, Any]:
        return {
            "type": "multiple_cron", "expressions": self.expressions, "timezone": self.timezone,
            "interval": self.interval, "run_immediately": self.run_immediately,
        }


class EventsTimetable(Timetable):
    """A run at each of the listed instants."""

    def __init__(
        self,
        event_dates: Iterable[dt.datetime],
        restrict_to_events: bool = False,
        presorted: bool = False,
        description: str | None = None,
    ) -> None:
        from leoflow.serialize import instant

        dates = list(event_dates)
        for date in dates:
            if not isinstance(date, dt.datetime):
                raise DagDefinitionError(f"EventsTimetable's event_dates must be datetimes, not {date!r}")
        # Naive dates are UTC, as everywhere in a DAG file; `presorted` only spares Airflow a sort.
        aware = sorted(d if d.tzinfo else d.replace(tzinfo=dt.timezone.utc) for d in dates)
        self.events = [str(instant(d)) for d in aware]
        self.restrict_to_events = bool(restrict_to_events)
        self.description = description
        del presorted

    def serialize_schedule(self) -> dict[str, Any]:
        return {
            "type": "events", "events": self.events, "restrict_to_events": self.restrict_to_events,
            "description": self.description,
        }
