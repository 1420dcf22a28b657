"""`airflow.providers.standard.sensors.time_delta`."""

from leoflow.sensors import TimeDeltaSensor, TimeDeltaSensorAsync

__all__ = ["TimeDeltaSensor", "TimeDeltaSensorAsync"]
