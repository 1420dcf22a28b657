"""`airflow.triggers.file` (Airflow 2's home of the file trigger)."""

from leoflow.errors import UnsupportedConstruct
from leoflow.triggers import FileTrigger


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.triggers.file.{name}", "FileTrigger is supported; wait for a file deletion in a task")


__all__ = ["FileTrigger"]
