"""`airflow.providers.standard.operators.python`."""

from leoflow.errors import UnsupportedConstruct
from leoflow.operators import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from leoflow.venv import (
    BranchExternalPythonOperator,
    BranchPythonVirtualenvOperator,
    ExternalPythonOperator,
    PythonVirtualenvOperator,
)


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(
        f"airflow.providers.standard.operators.python.{name}",
        "use PythonOperator, BranchPythonOperator or ShortCircuitOperator",
    )


__all__ = [
    "BranchExternalPythonOperator",
    "BranchPythonOperator",
    "BranchPythonVirtualenvOperator",
    "ExternalPythonOperator",
    "PythonOperator",
    "PythonVirtualenvOperator",
    "ShortCircuitOperator",
]
