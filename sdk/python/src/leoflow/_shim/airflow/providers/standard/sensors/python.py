"""`airflow.providers.standard.sensors.python`."""

from leoflow.sensors import PythonSensor

__all__ = ["PythonSensor"]
