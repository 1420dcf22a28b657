"""`airflow.operators.empty` (Airflow 2's path): the same as `airflow.providers.standard.operators.empty`."""

from airflow.providers.standard.operators.empty import *  # noqa: F403 - this module is an alias
from airflow.providers.standard.operators.empty import __all__ as __all__
