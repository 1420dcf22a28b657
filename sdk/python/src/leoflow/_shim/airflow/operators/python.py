"""`airflow.operators.python`."""

from leoflow.errors import UnsupportedConstruct
from leoflow.operators import BranchPythonOperator, PythonOperator, ShortCircuitOperator


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(
        f"airflow.operators.python.{name}",
        "use PythonOperator, BranchPythonOperator or ShortCircuitOperator",
    )


__all__ = ["BranchPythonOperator", "PythonOperator", "ShortCircuitOperator"]
