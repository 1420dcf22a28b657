"""`airflow.providers.standard.sensors.time`."""

from leoflow.sensors import TimeSensor, TimeSensorAsync

__all__ = ["TimeSensor", "TimeSensorAsync"]
