"""`airflow.sensors.base` (Airflow 2's path of `BaseSensorOperator`)."""

from leoflow.runtime import PokeReturnValue
from leoflow.sensors import BaseSensorOperator

__all__ = ["BaseSensorOperator", "PokeReturnValue"]
