"""`airflow.providers.standard.utils.weekday`."""

from leoflow.standard import WeekDay

__all__ = ["WeekDay"]
