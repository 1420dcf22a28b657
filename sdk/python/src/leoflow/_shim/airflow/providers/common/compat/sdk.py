"""`airflow.providers.common.compat.sdk`: the same names as `airflow.sdk`."""

from airflow.sdk import *  # noqa: F403 - this module is an alias
from airflow.sdk import __all__ as _sdk_names
from airflow.sdk import __getattr__ as __getattr__  # unsupported names are refused the same way

__all__ = list(_sdk_names)
