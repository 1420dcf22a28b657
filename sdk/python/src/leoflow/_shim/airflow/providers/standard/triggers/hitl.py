"""`airflow.providers.standard.triggers.hitl`."""

from leoflow.hitl import HITLTrigger

__all__ = ["HITLTrigger"]
