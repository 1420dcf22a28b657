"""`airflow.providers.standard.sensors.date_time`."""

from leoflow.sensors import DateTimeSensor, DateTimeSensorAsync

__all__ = ["DateTimeSensor", "DateTimeSensorAsync"]
