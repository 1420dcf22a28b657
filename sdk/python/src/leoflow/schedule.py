"""DAG schedules: presets, 5-field cron expressions, timedeltas, `None`, `@once`, Airflow's
built-in timetables (`leoflow.timetables`) and assets (`leoflow.assets`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from leoflow.errors import DagDefinitionError, UnsupportedConstruct

#: Airflow's presets and the cron each stands for (`@once` has none).
PRESETS = {
    "@once": None,
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@midnight": "0 0 * * *",
}

_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}),
    ("day of week", 0, 7, {d: i for i, d in enumerate("SUN MON TUE WED THU FRI SAT".split())}),
)


def serialize_schedule(schedule: Any) -> dict[str, Any]:
    """The schedule as dag.json records it, validated."""
    from leoflow.assets import is_asset_schedule, serialize_asset_schedule
    from leoflow.timetables import Timetable

    if isinstance(schedule, Timetable):
        return schedule.serialize_schedule()
    if is_asset_schedule(schedule):
        return serialize_asset_schedule(schedule)
    if schedule is None:
        return {"type": "none"}
    if isinstance(schedule, dt.timedelta):
        seconds = schedule.total_seconds()
        if seconds <= 0:
            raise DagDefinitionError(f"a timedelta schedule must be positive, not {schedule!r}")
        return {"type": "timedelta", "seconds": seconds}
    if isinstance(schedule, str):
        expression = schedule.strip()
        if expression == "@once":
            return {"type": "once"}
        if expression == "@continuous":
            raise UnsupportedConstruct("schedule='@continuous'", "use a short cron or timedelta schedule")
        if expression.startswith("@"):
            if expression not in PRESETS:
                raise DagDefinitionError(
                    f"unknown schedule preset {expression!r}; use one of {', '.join(sorted(PRESETS))}"
                )
            return {"type": "cron", "expression": PRESETS[expression], "preset": expression}
        check_cron(expression)
        return {"type": "cron", "expression": expression}
    kind = type(schedule).__name__
    raise UnsupportedConstruct(
        f"schedule={kind}",
        "Leoflow schedules take a cron expression, a preset, a timedelta, '@once', None, one of "
        "Airflow's built-in timetables, or assets (an Asset, a list of them, a & b, a | b)",
    )


def summary(schedule: dict[str, Any]) -> str | None:
    """Airflow's `timetable_summary` for a serialized schedule."""
    kind = schedule["type"]
    if kind == "none":
        return None
    if kind == "assets":
        return "Asset"
    if kind == "asset_or_time":
        # Airflow's NullTimetable shows as "None" there.
        return f"Asset or {summary(schedule['timetable']) or 'None'}"
    if kind == "once":
        return "@once"
    if kind == "timedelta":
        return str(dt.timedelta(seconds=schedule["seconds"]))
    if kind == "multiple_cron":
        return ", ".join(schedule["expressions"])
    if kind == "events":
        return str(schedule.get("description") or f"{len(schedule['events'])} events")
    if kind == "custom":
        return str(schedule["summary"])
    return str(schedule.get("preset") or schedule["expression"])


def check_cron(expression: str) -> None:
    """Raises with the field at fault unless `expression` is a valid 5-field cron."""
    fields = expression.split()
    if len(fields) != 5:
        raise DagDefinitionError(
            f"bad cron expression {expression!r}: expected 5 fields (minute hour day-of-month "
            f"month day-of-week), got {len(fields)}"
        )
    for text, (name, low, high, names) in zip(fields, _FIELDS):
        for part in text.split(","):
            _check_part(expression, name, part, low, high, names)


def _check_part(expression: str, name: str, part: str, low: int, high: int, names: dict[str, int]) -> None:
    def bad(reason: str) -> DagDefinitionError:
        return DagDefinitionError(f"bad cron expression {expression!r}: {name} field {part!r} {reason}")

    base, _, step = part.partition("/")
    if step and (not step.isdigit() or int(step) == 0):
        raise bad("has an invalid step")

    def value(token: str) -> int:
        token = token.upper()
        if token in names:
            return names[token]
        if not token.isdigit():
            raise bad(f"has {token!r}, which is not a number")
        number = int(token)
        if not low <= number <= high:
            raise bad(f"is out of range {low}-{high}")
        return number

    if base == "*" or (base == "?" and name.startswith("day")):
        return
    start, dash, end = base.partition("-")
    if not start:
        raise bad("is empty")
    first = value(start)
    if dash and value(end) < first:
        raise bad("has a range that runs backwards")
