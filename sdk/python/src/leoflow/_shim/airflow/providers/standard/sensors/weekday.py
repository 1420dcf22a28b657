"""`airflow.providers.standard.sensors.weekday`."""

from leoflow.sensors import DayOfWeekSensor

__all__ = ["DayOfWeekSensor"]
