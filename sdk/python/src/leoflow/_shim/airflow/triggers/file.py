"""`airflow.triggers.file` (Airflow 2's home of the file trigger)."""

from leoflow.triggers import FileDeleteTrigger, FileTrigger

__all__ = ["FileDeleteTrigger", "FileTrigger"]
