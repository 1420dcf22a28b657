"""Errors a DAG author sees: what is wrong, where, and what to do instead."""

from __future__ import annotations

import traceback
from types import TracebackType


class DagDefinitionError(Exception):
    """A DAG file uses something Leoflow does not accept.

    Raised while the file runs; the compiler attaches the file and line of the DAG file's
    frame that triggered it.
    """


class UnsupportedConstruct(DagDefinitionError):
    """An Airflow construct Leoflow does not support."""

    def __init__(self, construct: str, hint: str = "") -> None:
        message = f"{construct} is not supported by Leoflow"
        if hint:
            message += f": {hint}"
        super().__init__(message)
        self.construct = construct


def caller_location(dag_file: str | None, tb: TracebackType | None = None) -> int | None:
    """The innermost line of `dag_file` in a traceback, or in the current stack."""
    if dag_file is None:
        return None
    frames = traceback.extract_tb(tb) if tb is not None else traceback.extract_stack()
    lines = [f.lineno for f in frames if f.filename == dag_file and f.lineno is not None]
    return lines[-1] if lines else None
