"""`airflow.providers.standard.operators.branch`."""

from leoflow.operators import BranchPythonOperator
from leoflow.standard import BaseBranchOperator

__all__ = ["BaseBranchOperator", "BranchPythonOperator"]
