"""`airflow.providers.standard.sensors.filesystem`."""

from leoflow.sensors import FileSensor

__all__ = ["FileSensor"]
