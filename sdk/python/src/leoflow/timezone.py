"""`airflow.sdk.timezone`: Airflow's date helpers, UTC unless a zone is given (pendulum's
zones when pendulum is installed, else the standard library's)."""

from __future__ import annotations

import datetime as dt
from typing import Any

utc = dt.timezone.utc


def zone_name(zone: Any) -> str | None:
    """The name a zone object goes by (pendulum's `name`, zoneinfo's `key`), UTC as "UTC";
    `None` for a zone without one (a fixed offset)."""
    name = getattr(zone, "name", None) or getattr(zone, "key", None)
    if not isinstance(name, str) or not name:
        return None
    return "UTC" if name in ("UTC", "+00:00") else name


def _zone(name: str) -> dt.tzinfo:
    try:
        import pendulum

        return pendulum.timezone(name)
    except ImportError:
        from zoneinfo import ZoneInfo

        return ZoneInfo(name)


def datetime(*args: Any, **kwargs: Any) -> dt.datetime:
    """A `datetime`, in UTC unless `tzinfo` says otherwise."""
    kwargs.setdefault("tzinfo", utc)
    return dt.datetime(*args, **kwargs)


def utcnow() -> dt.datetime:
    """Now, in UTC."""
    return dt.datetime.now(utc)


def is_localized(value: dt.datetime) -> bool:
    """Whether `value` has a time zone."""
    return value.utcoffset() is not None


def is_naive(value: dt.datetime) -> bool:
    """Whether `value` has no time zone."""
    return value.utcoffset() is None


def make_aware(value: dt.datetime, timezone: dt.tzinfo | str | None = None) -> dt.datetime:
    """A naive `value` read in `timezone` (UTC by default)."""
    zone = _zone(timezone) if isinstance(timezone, str) else (timezone or utc)
    if is_localized(value):
        raise ValueError(f"make_aware expects a naive datetime, got {value}")
    return value.replace(tzinfo=zone)


def make_naive(value: dt.datetime, timezone: dt.tzinfo | str | None = None) -> dt.datetime:
    """An aware `value` as the naive time in `timezone` (UTC by default)."""
    zone = _zone(timezone) if isinstance(timezone, str) else (timezone or utc)
    if is_naive(value):
        raise ValueError("make_naive() cannot be applied to a naive datetime")
    return value.astimezone(zone).replace(tzinfo=None)


def convert_to_utc(value: dt.datetime | None) -> dt.datetime | None:
    """`value` in UTC (a naive one read as UTC)."""
    if value is None:
        return None
    return value.replace(tzinfo=utc) if is_naive(value) else value.astimezone(utc)


def coerce_datetime(value: dt.datetime | None, tz: dt.tzinfo | None = None) -> dt.datetime | None:
    """`value` made aware: a naive one read in `tz` (UTC by default)."""
    if value is None:
        return None
    return value.replace(tzinfo=tz or utc) if is_naive(value) else value


def parse(text: str, timezone: dt.tzinfo | None = None) -> dt.datetime:
    """An ISO 8601 date; a naive one read in `timezone` (UTC by default)."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.replace(tzinfo=timezone or utc) if is_naive(value) else value
