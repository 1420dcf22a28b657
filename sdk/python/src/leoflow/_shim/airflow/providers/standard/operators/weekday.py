"""`airflow.providers.standard.operators.weekday`."""

from leoflow.standard import BranchDayOfWeekOperator

__all__ = ["BranchDayOfWeekOperator"]
