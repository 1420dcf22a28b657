"""`airflow.triggers.temporal` (Airflow 2's home of the time triggers)."""

from leoflow.errors import UnsupportedConstruct
from leoflow.triggers import DateTimeTrigger, TimeDeltaTrigger


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.triggers.temporal.{name}", "use DateTimeTrigger or TimeDeltaTrigger")


__all__ = ["DateTimeTrigger", "TimeDeltaTrigger"]
