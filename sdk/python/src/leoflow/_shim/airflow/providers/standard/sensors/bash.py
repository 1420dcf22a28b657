"""`airflow.providers.standard.sensors.bash`."""

from leoflow.sensors import BashSensor

__all__ = ["BashSensor"]
