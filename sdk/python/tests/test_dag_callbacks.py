"""A DAG's own callbacks: recorded in dag.json by name, and run by the triggerer once a run ends
(`leoflow.dag_callbacks.DagCallbackTrigger`), each with the last task instance's context and
Airflow's reason. What they print or log is their log; one that raises is logged and the next
still runs; a DAG file that no longer loads, a callback that never returns, and a lookup the
triggerer cannot make are each said plainly."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_triggerer import Triggerer

from leoflow.compiler import compile_file

TRIGGER = "leoflow.dag_callbacks.DagCallbackTrigger"

DAG_FILE = '''
import logging
import time
from airflow.sdk import DAG, task

def tell(context):
    print(f"failed: {context['reason']} {context['ti'].task_id} try {context['ti'].try_number} "
          f"run {context['dag_run'].run_id} conf {context['params']['who']} ds {context.get('ds')}")
    logging.getLogger("mine").warning("logged too")

def broken(context):
    raise RuntimeError("the pager is down")

def bare(context):
    print(f"bare: {sorted(context)}")

def pull(context):
    from airflow.sdk import Variable
    print(f"pulled {context['ti'].xcom_pull(task_ids='work')} and {Variable.get('channel')}")

def slow(context):
    time.sleep(2)

with DAG("notified", schedule=None, params={"who": "ops"},
         on_failure_callback=[broken, tell], on_success_callback=bare):
    @task
    def work():
        raise ValueError("no")
    work()

with DAG("pulling", schedule=None, on_failure_callback=pull):
    @task
    def work():
        pass
    work()

with DAG("slow", schedule=None, on_success_callback=slow):
    @task
    def work():
        pass
    work()

def retried(context):
    print(f"retried: {context['ti'].task_id} try {context['ti'].try_number} reason {context.get('reason')}")

with DAG("killed", schedule=None):
    @task(on_retry_callback=[broken, retried], on_failure_callback=bare)
    def work():
        pass
    work()

    @task
    def plain():
        pass
    plain()
'''

RUN = {
    "run_id": "manual__1", "run_type": "manual", "logical_date": "2026-12-05T08:00:00+00:00",
    "data_interval_start": None, "data_interval_end": None, "run_after": "2026-12-05T08:00:00+00:00",
    "conf": {"who": "ops"}, "dag_params": {"who": {"default": "ops"}},
}


@pytest.fixture
def triggerer(tmp_path: Path) -> Iterator[Triggerer]:
    (tmp_path / "dag.py").write_text(DAG_FILE)
    running = Triggerer(tmp_path)
    yield running
    assert running.process.stdin is not None
    running.process.stdin.close()
    running.process.wait(timeout=10)


def callback(dag_id: str, name: str, reason: str, ti: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    return {
        "dag_id": dag_id, "run_id": "manual__1", "callback": name, "reason": reason, "fileloc": "dag.py",
        "source": DAG_FILE, "run": RUN, "ti": ti, **more,
    }


def ran(triggerer: Triggerer, trigger_id: str, replies: dict[str, dict[str, Any]] | None = None) -> tuple[list[str], dict[str, Any]]:
    """The callback trigger's log lines and its event's payload; what it asks is answered from
    `replies` by kind, as the control plane would."""
    lines = []
    while True:
        answer = triggerer.next(skip_logs=False)
        assert answer["id"] == trigger_id, answer
        if answer["op"] == "log":
            lines.append(answer["line"])
            continue
        if answer["op"] == "ask":
            request = answer["request"]
            lines.append(f"asked {request}")
            triggerer.send(op="answer", id=trigger_id, ask=answer["ask"], reply=(replies or {})[request["op"]])
            continue
        assert answer["op"] == "fired", answer
        return lines, answer["payload"]


def test_the_dag_records_its_callbacks_by_name(tmp_path: Path) -> None:
    (tmp_path / "dag.py").write_text(DAG_FILE)
    result = compile_file(tmp_path / "dag.py")
    assert result["ok"], result
    dags = {d["dag_id"]: d for d in result["dags"]}
    assert dags["notified"]["callbacks"] == ["on_failure_callback", "on_success_callback"]
    assert dags["slow"]["callbacks"] == ["on_success_callback"]


def test_a_dag_without_callbacks_records_none_and_a_wrong_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text("from airflow.sdk import DAG\nwith DAG('d', schedule=None):\n    pass\n")
    result = compile_file(path)
    assert result["ok"] and "callbacks" not in result["dags"][0]
    path.write_text("from airflow.sdk import DAG\nwith DAG('d', schedule=None, on_failure_callback='page me'):\n    pass\n")
    result = compile_file(path)
    assert not result["ok"]
    assert "on_failure_callback of DAG 'd' must be a function or a list of functions, not 'page me'" in result["error"]["message"]


def test_the_failure_callbacks_run_with_the_last_task_instance_s_context_one_raising_the_next_still_running(triggerer: Triggerer) -> None:
    ti = {"task_id": "work", "map_index": -1, "try_number": 2, "task": {"task_id": "work"}}
    triggerer.run("c1", TRIGGER, callback("notified", "on_failure_callback", "task_failure", ti))
    lines, payload = ran(triggerer, "c1")
    assert payload == {"failed": ["broken"], "error": None}
    text = "\n".join(lines)
    assert "Executing on_failure_callback broken of DAG notified (reason: task_failure)" in text
    assert "RuntimeError: the pager is down" in text
    assert "failed: task_failure work try 2 run manual__1 conf ops ds 2026-12-05" in lines
    assert "WARNING - logged too" in lines


def test_without_a_task_instance_the_context_is_airflow_s_three_names(triggerer: Triggerer) -> None:
    triggerer.run("c2", TRIGGER, callback("notified", "on_success_callback", "success", None))
    lines, payload = ran(triggerer, "c2")
    assert payload == {"failed": [], "error": None}
    assert "bare: ['dag', 'reason', 'run_id']" in lines


def test_callbacks_read_xcoms_and_variables_through_the_control_plane(triggerer: Triggerer) -> None:
    ti = {"task_id": "work", "map_index": -1, "try_number": 1, "task": {"task_id": "work"}}
    triggerer.run("c3", TRIGGER, callback("pulling", "on_failure_callback", "task_failure", ti))
    replies = {"xcom_pull": {"ok": True, "found": True, "value": 42}, "variable": {"ok": True, "found": True, "value": "#ops"}}
    lines, payload = ran(triggerer, "c3", replies)
    assert payload == {"failed": [], "error": None}, lines
    assert [line for line in lines if line.startswith("asked")] == [
        "asked {'op': 'xcom_pull', 'task_id': 'work', 'key': 'return_value'}",
        "asked {'op': 'variable', 'key': 'channel'}",
    ]
    assert "pulled 42 and #ops" in lines


def test_a_lookup_the_control_plane_refuses_fails_that_callback_saying_why(triggerer: Triggerer) -> None:
    ti = {"task_id": "work", "map_index": -1, "try_number": 1, "task": {"task_id": "work"}}
    triggerer.run("c3", TRIGGER, callback("pulling", "on_failure_callback", "task_failure", ti))
    lines, payload = ran(triggerer, "c3", {"xcom_pull": {"ok": False, "error": "the run is gone"}})
    assert payload["failed"] == ["pull"]
    assert any("xcom_pull failed: the run is gone" in line for line in lines), lines


@pytest.mark.parametrize(
    ("dag_id", "name", "more", "expected"),
    [
        ("slow", "on_success_callback", {"timeout": 0.3}, "the DAG's on_success_callback did not return within 0.3 s"),
        ("gone", "on_failure_callback", {}, "the DAG file dag.py no longer defines DAG 'gone'"),
        ("pulling", "on_success_callback", {}, "DAG 'pulling' no longer has an on_success_callback"),
        ("notified", "on_failure_callback", {"source": "def broken(:\n"}, "the DAG file dag.py failed to load: SyntaxError"),
    ],
)
def test_callbacks_that_cannot_run_say_why(triggerer: Triggerer, dag_id: str, name: str, more: dict[str, Any], expected: str) -> None:
    triggerer.run("c4", TRIGGER, callback(dag_id, name, "success", None, **more))
    lines, payload = ran(triggerer, "c4")
    assert payload["error"] is not None and payload["error"].startswith(expected), payload
    assert any(expected in line for line in lines), lines


TASK_TRIGGER = "leoflow.dag_callbacks.TaskCallbackTrigger"


def test_a_task_s_callbacks_for_a_try_its_runner_could_not_finish_get_the_try_s_context(triggerer: Triggerer) -> None:
    ti = {"task_id": "work", "map_index": -1, "try_number": 1, "task": {"task_id": "work"}}
    reason = "the task process ended (signal: 9) without reporting an outcome"
    triggerer.run("t1", TASK_TRIGGER, callback("killed", "on_retry_callback", reason, ti))
    lines, payload = ran(triggerer, "t1")
    assert payload == {"failed": ["broken"], "error": None}
    text = "\n".join(lines)
    assert f"Executing on_retry_callback broken of task work of DAG killed (try 1: {reason})" in text
    assert "RuntimeError: the pager is down" in text
    # Airflow's context of a task instance: no `reason` (a DAG callback's).
    assert "retried: work try 1 reason None" in lines


@pytest.mark.parametrize(
    ("task_id", "name", "expected"),
    [
        ("plain", "on_failure_callback", "task 'plain' of DAG 'killed' no longer has an on_failure_callback"),
        ("gone", "on_failure_callback", "DAG 'killed' no longer has task 'gone'"),
    ],
)
def test_a_task_callback_that_cannot_run_says_why(triggerer: Triggerer, task_id: str, name: str, expected: str) -> None:
    ti = {"task_id": task_id, "map_index": -1, "try_number": 1, "task": {"task_id": task_id}}
    triggerer.run("t2", TASK_TRIGGER, callback("killed", name, "lost", ti))
    lines, payload = ran(triggerer, "t2")
    assert payload["error"] == expected, payload
