"""`airflow.providers.standard.triggers.file`."""

from leoflow.triggers import FileDeleteTrigger, FileTrigger

__all__ = ["FileDeleteTrigger", "FileTrigger"]
