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
from leoflow.runner import Channel, Outcome, TaskError, execute, run_attempt

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
        xcoms: dict[tuple[str, str] | tuple[str, str, int], Any] | None = None,
        variables: dict[str, str] | None = None,
        connections: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(io.StringIO(), io.StringIO())
        self.xcoms = dict(xcoms or {})
        self.variables = dict(variables or {})
        self.connections = dict(connections or {})
        self.pushed: dict[str, Any] = {}
        self.rendered: dict[str, Any] = {}
        #: Runs of other DAGs by (dag_id, run_id), each `{"run_id", "state", "logical_date",
        #: "tasks"}`; a trigger adds one (queued), `run_states` moves a run along as it is read.
        self.runs: dict[tuple[str, str], dict[str, Any]] = {}
        self.run_states: list[str] = []
        self.triggered: list[dict[str, Any]] = []
        #: Other DAGs of the tenant by id, with their task ids; and those paused.
        self.dags: dict[str, list[str]] = {}
        self.paused: set[str] = set()
        #: The events of each asset by (name, uri), as `asset_events` answers them; those
        #: recorded through each asset alias by its name, as `asset_alias_events` answers them;
        #: the events the run consumed, as `triggering_asset_events` answers them.
        self.asset_events: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.alias_events: dict[str, list[dict[str, Any]]] = {}
        self.triggering_events: list[dict[str, Any]] = []
        #: Every request the runner made, in order.
        self.asked: list[dict[str, Any]] = []

    def ask(self, request: Request) -> Reply:
        """As the real channel: a refusal is raised."""
        self.asked.append(dict(request))
        reply = self.answer(request)
        if not reply["ok"]:
            raise TaskError(f"{request['op']} failed: {reply.get('error')}")
        return reply

    def answer(self, request: Request) -> Reply:
        if request["op"] == "xcom_pull":
            # A result of one map index (`(task_id, key, map_index)`), else of the task.
            indexed = (request["task_id"], request["key"], request.get("map_index", -1))
            key = indexed if indexed in self.xcoms else (request["task_id"], request["key"])
            return {"ok": True, "found": key in self.xcoms, "value": self.xcoms.get(key)}
        if request["op"] == "xcom_push":
            self.pushed[request["key"]] = request["value"]
        elif request["op"] == "variable":
            return {"ok": True, "found": request["key"] in self.variables, "value": self.variables.get(request["key"])}
        elif request["op"] == "connection":
            return {"ok": True, "found": request["key"] in self.connections, "value": self.connections.get(request["key"])}
        elif request["op"] == "rendered":
            self.rendered.update(request["fields"])
        elif request["op"] == "trigger_dag_run":
            return self.trigger(dict(request))
        elif request["op"] == "dag_run":
            return self.read_run(dict(request))
        elif request["op"] == "asset_events":
            return {"ok": True, "found": True, "value": self.asset_events.get((request["name"], request["uri"]), [])}
        elif request["op"] == "asset_alias_events":
            return {"ok": True, "found": True, "value": self.alias_events.get(request["name"], [])}
        elif request["op"] == "triggering_asset_events":
            return {"ok": True, "found": True, "value": self.triggering_events}
        return {"ok": True}

    def trigger(self, request: dict[str, Any]) -> Reply:
        if request["dag_id"] == "elsewhere":
            return {"ok": False, "error": 'no DAG "elsewhere" to trigger'}
        if request.get("fail_when_dag_is_paused") and request["dag_id"] in self.paused:
            return {"ok": False, "error": f"Dag {request['dag_id']} is paused"}
        self.triggered.append(request)
        key = (request["dag_id"], request["run_id"])
        existed = key in self.runs
        if not existed or request["reset_dag_run"]:
            self.runs[key] = {"run_id": request["run_id"], "state": "queued", "logical_date": request.get("logical_date"), "tasks": {}}
        return {"ok": True, "found": True, "value": {"dag_id": request["dag_id"], "run_id": request["run_id"], "existed": existed}}

    def read_run(self, request: dict[str, Any]) -> Reply:
        for (dag_id, run_id), run in self.runs.items():
            same_date = "logical_date" in request and run["logical_date"] == request["logical_date"]
            if dag_id == request["dag_id"] and (request.get("run_id") == run_id or same_date):
                if self.run_states:
                    run["state"] = self.run_states.pop(0)
                return {"ok": True, "found": True, "value": {"dag_id": dag_id, **run}}
        task_ids = self.dags.get(request["dag_id"])
        dag = None if task_ids is None else {"dag_id": request["dag_id"], "task_ids": task_ids}
        return {"ok": True, "found": False, "value": dag}


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
        attempt_fields: dict[str, Any] | None = None,
        dag_id: str | None = None,
        **run_fields: Any,
    ) -> tuple[Outcome, Agent]:
        """Runs `task_id` of the DAG file `HEADER + body` (of its DAG `dag_id`, else its first);
        `run_fields` replace the run's, `attempt_fields` are added to the attempt (`resume`,
        `try_started_at`)."""
        source = HEADER + textwrap.dedent(body)
        compiled = compile_file(self.write("dag.py", source))
        assert compiled["ok"], compiled
        dag = next(d for d in compiled["dags"] if dag_id in (None, d["dag_id"]))
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
            **(attempt_fields or {}),
        }
        return (run_attempt if self.whole_attempt else execute)(attempt, agent), agent
