"""DAG files run again in the triggerer, for what the control plane asks of a DAG's own Python
(its callbacks, its custom timetable): from the source the DAG's version recorded, once per
source (the DAGs it declared are kept), one file at a time (running a DAG file sets the SDK's
parsing globals)."""

from __future__ import annotations

import threading
import traceback
from typing import Any

from leoflow import context as compile_context
from leoflow import runner

#: One DAG file runs at a time in this process.
_LOADING = threading.Lock()
#: The DAGs each source declared, by file and source digest.
_LOADED: dict[tuple[str, str], list[Any]] = {}
#: Sources kept at most (a project's files change as it is edited).
_MOST_KEPT = 32


class DagFileError(Exception):
    """Why the DAG cannot be had from its file (said to the control plane)."""


def dag(fileloc: str, source: str, dag_id: str) -> Any:
    """DAG `dag_id` as `source` (the DAG file `fileloc`) declares it."""
    key = (fileloc, runner.source_sha256(source))
    with _LOADING:
        dags = _LOADED.get(key)
        if dags is None:
            try:
                runner.exec_dag_file(fileloc, source)
            except BaseException as error:  # noqa: BLE001 - said to the control plane, not raised on
                raise DagFileError(
                    f"the DAG file {fileloc} failed to load: {type(error).__name__}: {error}\n{traceback.format_exc()}"
                ) from None
            dags = list(compile_context.dags)
            if len(_LOADED) >= _MOST_KEPT:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[key] = dags
    found = next((d for d in dags if d.dag_id == dag_id), None)
    if found is None:
        raise DagFileError(f"the DAG file {fileloc} no longer defines DAG {dag_id!r}")
    return found
