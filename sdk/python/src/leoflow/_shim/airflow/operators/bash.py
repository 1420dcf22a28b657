"""`airflow.operators.bash` (Airflow 2's path): the same as `airflow.providers.standard.operators.bash`."""

from airflow.providers.standard.operators.bash import *  # noqa: F403 - this module is an alias
from airflow.providers.standard.operators.bash import __all__ as __all__
