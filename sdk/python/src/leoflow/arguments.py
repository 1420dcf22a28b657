"""What a DAG file passes, checked as it is built: ids, keyword arguments (honoured, accepted at
their default only, or refused), and Airflow's value types (whole numbers, timedeltas, datetimes,
folders, `access_control`), each refusal naming the argument."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from leoflow.errors import DagDefinitionError, UnsupportedConstruct


def check_kwargs(
    what: str, kwargs: dict[str, Any], accepted: set[str], noop: dict[str, Any], reasons: dict[str, str] | None = None
) -> None:
    for key, value in kwargs.items():
        if key in accepted:
            continue
        if key in noop:
            allowed = noop[key] if isinstance(noop[key], tuple) else (noop[key],)
            if value in allowed or value is None or value is False or value == [] or value == {}:
                continue
            hint = f"Leoflow accepts {key} only as {' or '.join(repr(a) for a in allowed)}"
            reason = (reasons or {}).get(key)
            raise UnsupportedConstruct(f"{what}({key}={shown(value)})", f"{reason}; {hint}" if reason else hint)
        raise DagDefinitionError(f"{what} got an unexpected keyword argument {key!r}")


def shown(value: Any) -> str:
    """A short, stable rendering of an argument's value for an error message."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(shown(v) for v in value) + "]"
    if callable(value) and isinstance(getattr(value, "__qualname__", None), str):
        return str(value.__qualname__)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_id(kind: str, value: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")
    if len(value) > 250 or not set(value) <= allowed:
        raise DagDefinitionError(
            f"{kind} {value!r} may only contain letters, digits, dashes, dots and underscores "
            "(at most 250 characters)"
        )


def searchpath(value: Any) -> tuple[str, ...]:
    """`template_searchpath`: one folder or several, as Airflow takes it."""
    if value is None:
        return ()
    folders = [value] if isinstance(value, (str, os.PathLike)) else value
    if not isinstance(folders, (list, tuple, set, frozenset)) or not all(
        isinstance(folder, (str, os.PathLike)) for folder in folders
    ):
        raise DagDefinitionError(f"template_searchpath must be a folder or a list of folders, not {shown(value)}")
    return tuple(os.fspath(folder) for folder in folders)


def undefined_class(value: Any) -> type | None:
    """`template_undefined`: a jinja2 `Undefined` class (StrictUndefined when not given)."""
    if value is None or isinstance(value, type):
        return value
    raise DagDefinitionError(f"template_undefined must be a class such as jinja2.StrictUndefined, not {shown(value)}")


def named_dict(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise DagDefinitionError(f"{name} must be a dict with string keys, not {shown(value)}")
    return dict(value)


def integer(name: str, value: Any, minimum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise DagDefinitionError(f"{name} must be a whole number, not {value!r}")
    if minimum is not None and value < minimum:
        raise DagDefinitionError(f"{name} must be at least {minimum}, not {value}")
    return value


def backoff(what: str, value: Any) -> bool:
    """`retry_exponential_backoff`: in Airflow 3.2 a multiplier (0 off, True meaning 2.0); Leoflow's
    backoff doubles the delay, so it takes booleans, 0 and 1 (constant delay) and 2."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1, 2):
        return value == 2
    raise UnsupportedConstruct(
        f"{what}(retry_exponential_backoff={shown(value)})",
        "Leoflow's exponential backoff doubles the delay on each retry: use True (or 2.0), or False (or 0)",
    )


def duration(name: str, value: Any) -> dt.timedelta | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.timedelta(seconds=value)
    raise DagDefinitionError(f"{name} must be a timedelta or a number of seconds, not {value!r}")


def date_time(name: str, value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    raise DagDefinitionError(f"{name} must be a datetime (or a pendulum datetime), not {value!r}")


#: A DAG's `access_control`, normalised: role → resource → sorted actions.
AccessControl = dict[str, dict[str, list[str]]]


#: The actions `access_control` may grant on each per-DAG resource, as Airflow's FAB names them.
ACCESS_ACTIONS: dict[str, tuple[str, ...]] = {
    "DAGs": ("can_read", "can_edit", "can_delete"),
    "DAG Runs": ("can_read", "can_create", "can_delete"),
}


def access_control(value: Any) -> AccessControl:
    """Airflow's two spellings of `access_control` as one: `{role: {"can_read", ...}}` (actions on
    the DAG, Airflow 2's form) and `{role: {"DAGs": {...}, "DAG Runs": {...}}}`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DagDefinitionError(
            f"access_control must be a dict of role → actions, not {type(value).__name__}"
        )
    result: AccessControl = {}
    for role, grant in value.items():
        if not isinstance(role, str) or not role.strip():
            raise DagDefinitionError(f"access_control: a role must be a non-empty string, not {role!r}")
        by_resource = grant if isinstance(grant, dict) else {"DAGs": grant}
        result[role] = {}
        for resource, actions in by_resource.items():
            granted = _granted_actions(role, resource, actions)
            if granted:
                result[role][resource] = granted
    return result


def _granted_actions(role: str, resource: Any, actions: Any) -> list[str]:
    where = f"access_control[{role!r}]"
    allowed = ACCESS_ACTIONS.get(resource) if isinstance(resource, str) else None
    if allowed is None:
        raise DagDefinitionError(
            f"{where}: unknown resource {resource!r}; per-DAG access grants on 'DAGs' and 'DAG Runs'"
        )
    if not isinstance(actions, (set, frozenset, list, tuple)):
        raise DagDefinitionError(
            f"{where}[{resource!r}] must be a set of actions ({', '.join(allowed)}), not {actions!r}"
        )
    for action in actions:
        if not isinstance(action, str) or action not in allowed:
            raise DagDefinitionError(
                f"{where}[{resource!r}]: {action!r} is not an action on {resource}; "
                f"use {', '.join(allowed)}"
            )
    return sorted(set(actions))
