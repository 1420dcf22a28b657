"""Leoflow's authoring SDK: write DAGs as for Airflow 3.2, with `airflow.sdk` or `leoflow` imports.

    from leoflow import DAG, task

Parsing a DAG file runs none of its tasks and needs neither Airflow nor the packages the tasks
use; `python -m leoflow.compiler dag.py` turns the file into dag.json documents.
"""

from leoflow.decorators import dag, task, task_group
from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from leoflow.model import DAG, BaseOperator, Label, Param, TaskGroup, TriggerRule, XComArg, chain, cross_downstream
from leoflow.operators import (
    BashOperator,
    BranchPythonOperator,
    EmptyOperator,
    PythonOperator,
    ShortCircuitOperator,
)

__all__ = [
    "DAG",
    "BaseOperator",
    "BashOperator",
    "BranchPythonOperator",
    "DagDefinitionError",
    "EmptyOperator",
    "Label",
    "Param",
    "PythonOperator",
    "ShortCircuitOperator",
    "TaskGroup",
    "TriggerRule",
    "UnsupportedConstruct",
    "XComArg",
    "chain",
    "cross_downstream",
    "dag",
    "task",
    "task_group",
]
