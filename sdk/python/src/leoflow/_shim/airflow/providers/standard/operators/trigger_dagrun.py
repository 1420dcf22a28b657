"""`airflow.providers.standard.operators.trigger_dagrun`."""

from leoflow.external import TriggerDagRunOperator

__all__ = ["TriggerDagRunOperator"]
