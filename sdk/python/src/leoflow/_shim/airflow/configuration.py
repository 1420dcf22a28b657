"""`airflow.configuration`: `conf`, as far as DAG files read it."""

from leoflow.configuration import conf

__all__ = ["conf"]
