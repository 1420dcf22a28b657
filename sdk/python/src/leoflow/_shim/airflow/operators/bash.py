"""`airflow.operators.bash`."""

from leoflow.operators import BashOperator

__all__ = ["BashOperator"]
