"""`airflow.triggers.base`."""

from leoflow.errors import UnsupportedConstruct
from leoflow.triggers import (
    BaseEventTrigger,
    BaseTaskEndEvent,
    BaseTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.triggers.base.{name}", "subclass BaseTrigger")


__all__ = [
    "BaseEventTrigger",
    "BaseTaskEndEvent",
    "BaseTrigger",
    "TaskFailedEvent",
    "TaskSkippedEvent",
    "TaskSuccessEvent",
    "TriggerEvent",
]
