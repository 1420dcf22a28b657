"""`airflow.operators.empty`."""

from leoflow.operators import EmptyOperator

__all__ = ["EmptyOperator"]
