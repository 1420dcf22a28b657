"""Runs a DAG file without running its tasks and prints its DAGs as JSON.

    python -m leoflow.compiler path/to/dag.py

Prints one JSON object on stdout: `{"ok": true, "dags": [...]}`, or `{"ok": false, "error":
{"file", "line", "kind", "message"}}` naming the line of the DAG file at fault. Whatever the
DAG file prints goes to stderr. The caller enforces a time limit (a file that hangs is killed).
"""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path
from typing import Any

from leoflow import context
from leoflow.asset_decorator import resolve_inlets
from leoflow.errors import DagDefinitionError, UnsupportedConstruct, caller_location
from leoflow.serialize import DAG_JSON_SCHEMA_VERSION, serialize_dag


#: Holds the `airflow` package that maps Airflow's import paths onto Leoflow's SDK.
AIRFLOW_SHIM = str(Path(__file__).parent / "_shim")


def compile_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Compiles one DAG file; never raises for problems in the file itself."""
    if AIRFLOW_SHIM not in sys.path:
        sys.path.insert(0, AIRFLOW_SHIM)
    file = str(Path(path).resolve())
    fileloc = Path(path).name
    context.reset(file)
    try:
        source = Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return _failure(fileloc, None, "ReadError", f"cannot read {fileloc}: {error}")
    try:
        code = compile(source, file, "exec")
    except SyntaxError as error:
        return _failure(fileloc, error.lineno, "SyntaxError", f"{error.msg}")

    module_name = Path(file).stem
    module = types.ModuleType(module_name)
    module.__file__ = file
    project_dir = str(Path(file).parent)
    saved_module = sys.modules.get(module_name)
    sys.modules[module_name] = module
    sys.path.insert(0, project_dir)
    stdout = sys.stdout
    sys.stdout = sys.stderr  # the DAG file's prints must not corrupt the JSON answer
    try:
        exec(code, module.__dict__)
        resolve_inlets(context.dags)
        dags = [serialize_dag(dag, fileloc, module_name) for dag in context.dags]
    except BaseException as error:  # noqa: BLE001 - every failure of user code becomes a report
        if isinstance(error, KeyboardInterrupt):
            raise
        return _describe(error, fileloc, file)
    finally:
        sys.stdout = stdout
        sys.path.remove(project_dir)
        if saved_module is None:
            sys.modules.pop(module_name, None)
        else:
            sys.modules[module_name] = saved_module
    if not dags:
        return _failure(fileloc, None, "NoDag", f"{fileloc} defines no DAG (create one with `with DAG(...)` or call a @dag function)")
    ids = [d["dag_id"] for d in dags]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        return _failure(fileloc, None, "DagDefinitionError", f"dag_id {duplicates[0]!r} is defined more than once in {fileloc}")
    return {"ok": True, "schema_version": DAG_JSON_SCHEMA_VERSION, "dags": dags}


def _describe(error: BaseException, fileloc: str, file: str) -> dict[str, Any]:
    line = getattr(error, "line", None) or caller_location(file, error.__traceback__)
    if isinstance(error, UnsupportedConstruct):
        return _failure(fileloc, line, "UnsupportedConstruct", str(error))
    if isinstance(error, DagDefinitionError):
        return _failure(fileloc, line, "DagDefinitionError", str(error))
    if isinstance(error, ModuleNotFoundError):
        return _failure(
            fileloc,
            line,
            "ImportError",
            f"cannot import {error.name!r} ({error}). Add the package to leoflow.yaml "
            "`dependencies`, or import it inside the task function so parsing does not need it",
        )
    if isinstance(error, SystemExit):
        return _failure(fileloc, line, "SystemExit", f"the DAG file called exit({error.code!r}) while being parsed")
    return _failure(fileloc, line, type(error).__name__, f"{type(error).__name__}: {error}")


def _failure(fileloc: str, line: int | None, kind: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"file": fileloc, "line": line, "kind": kind, "message": message}}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m leoflow.compiler path/to/dag.py", file=sys.stderr)
        return 2
    result = compile_file(args[0])
    sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
