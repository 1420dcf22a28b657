"""`airflow.operators.python` (Airflow 2's path): the same as `airflow.providers.standard.operators.python`."""

from airflow.providers.standard.operators.python import *  # noqa: F403 - this module is an alias
from airflow.providers.standard.operators.python import __all__ as __all__
from airflow.providers.standard.operators.python import __getattr__ as __getattr__  # same refusals
