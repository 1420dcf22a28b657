"""`airflow.providers.standard.operators.latest_only`."""

from leoflow.standard import LatestOnlyOperator

__all__ = ["LatestOnlyOperator"]
