"""`airflow.exceptions`: as in Airflow 3, the task SDK's exceptions (`airflow.sdk.exceptions`)."""

from airflow.sdk.exceptions import *  # noqa: F403
from airflow.sdk.exceptions import __all__ as __all__
