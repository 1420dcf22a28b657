"""A task run as the task runner runs it, against a scripted agent: a project folder holding one
DAG file, compiled as Lite compiles it, and one of its tasks executed."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path
from typing import Any

import pytest

from leoflow.compiler import compile_file
from leoflow.protocol import Reply, Request
from leoflow.runner import Channel, Outcome, execute, run_attempt

HEADER = """\
import datetime
import json
import pendulum
from airflow.sdk import DAG, XComArg, get_current_context, task
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator

def show(**context):
    return context["templates_dict"]
"""

LOGICAL_DATE = "2026-03-04T05:06:07Z"


class Agent(Channel):
    """A scripted task agent: XComs, Variables and Connections from dicts; what the runner
    pushes and reports is kept."""

    def __init__(
        self,
        xcoms: dict[tuple[str, str], Any] | None = None,
        variables: dict[str, str] | None = None,
        connections: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(io.StringIO(), io.StringIO())
        self.xcoms = dict(xcoms or {})
        self.variables = dict(variables or {})
        self.connections = dict(connections or {})
        self.pushed: dict[str, Any] = {}
        self.rendered: dict[str, Any] = {}

    def ask(self, request: Request) -> Reply:
        if request["op"] == "xcom_pull":
            key = (request["task_id"], request["key"])
            return {"ok": True, "found": key in self.xcoms, "value": self.xcoms.get(key)}
        if request["op"] == "xcom_push":
            self.pushed[request["key"]] = request["value"]
        elif request["op"] == "variable":
            return {"ok": True, "found": request["key"] in self.variables, "value": self.variables.get(request["key"])}
        elif request["op"] == "connection":
            return {"ok": True, "found": request["key"] in self.connections, "value": self.connections.get(request["key"])}
        elif request["op"] == "rendered":
            self.rendered.update(request["fields"])
        return {"ok": True}


class Project:
    """A project folder holding one DAG file; runs its tasks as the runner does."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch, whole_attempt: bool = False) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch
        #: Run the whole attempt as `main` does (outcomes of exceptions, callbacks), not only
        #: the task's work.
        self.whole_attempt = whole_attempt

    def write(self, name: str, text: str) -> Path:
        path = self.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def run(
        self,
        body: str,
        task_id: str,
        agent: Agent | None = None,
        logical_date: str | None = LOGICAL_DATE,
        conf: dict[str, Any] | None = None,
        map_index: int = -1,
        **run_fields: Any,
    ) -> tuple[Outcome, Agent]:
        """Runs `task_id` of the DAG file `HEADER + body`; `run_fields` replace the run's."""
        source = HEADER + textwrap.dedent(body)
        compiled = compile_file(self.write("dag.py", source))
        assert compiled["ok"], compiled
        dag = compiled["dags"][0]
        spec = next(t for t in dag["tasks"] if t["task_id"] == task_id)
        agent = agent or Agent()
        self.monkeypatch.chdir(self.folder)
        attempt: Any = {
            "dag_id": dag["dag_id"], "run_id": "manual__1", "task_id": task_id, "map_index": map_index,
            "try_number": 1, "task": spec, "source": source, "fileloc": "dag.py",
            "run": {
                "run_id": "manual__1", "run_type": "manual", "logical_date": logical_date,
                "data_interval_start": logical_date, "data_interval_end": logical_date,
                "conf": conf or {}, "dag_params": dag["params"], **run_fields,
            },
        }
        return (run_attempt if self.whole_attempt else execute)(attempt, agent), agent
