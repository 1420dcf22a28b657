"""`airflow.providers.standard.sensors.external_task`."""

from leoflow.external import ExternalTaskMarker, ExternalTaskSensor

__all__ = ["ExternalTaskMarker", "ExternalTaskSensor"]
