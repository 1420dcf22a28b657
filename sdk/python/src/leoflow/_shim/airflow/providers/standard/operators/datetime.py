"""`airflow.providers.standard.operators.datetime`."""

from leoflow.standard import BranchDateTimeOperator

__all__ = ["BranchDateTimeOperator"]
