"""A task's callbacks, as Airflow 3's task runner calls them: on_execute before the work, then
on_success, on_skipped, on_retry (a failure with tries left) or on_failure (with the exception in
the context); pre_execute and post_execute around the work; a callback that raises is logged and
never changes the outcome. Each task runs as a whole attempt against a scripted agent."""

from __future__ import annotations

from pathlib import Path

import pytest
from task_harness import Project

from leoflow.compiler import compile_file

CALLBACKS = """
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException, AirflowFailException

def note(what):
    def record(context, *rest):
        reason = context.get("exception")
        with open("calls.txt", "a") as calls:
            calls.write(f"{what}:{context['ti'].task_id}:{type(reason).__name__ if reason else ''}\\n")
    return record

def broken(context):
    raise RuntimeError("the callback broke")

def work(mode):
    with open("calls.txt", "a") as calls:
        calls.write(f"work:{mode}\\n")
    if mode == "fail":
        raise ValueError("no")
    if mode == "fail_now":
        raise AirflowFailException("stop")
    if mode == "skip":
        raise AirflowSkipException("later")
    return mode

every = {
    "on_execute_callback": note("execute"),
    "on_success_callback": [note("success"), broken],
    "on_failure_callback": note("failure"),
    "on_retry_callback": note("retry"),
    "on_skipped_callback": note("skipped"),
    "pre_execute": note("pre"),
    "post_execute": note("post"),
}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


def calls(project: Project) -> list[str]:
    path = project.folder / "calls.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


BODY = CALLBACKS + """
with DAG("d", schedule=None, default_args=every):
    PythonOperator(task_id="ok", python_callable=work, op_args=["ok"])
    PythonOperator(task_id="flaky", python_callable=work, op_args=["fail"], retries=1)
    PythonOperator(task_id="fatal", python_callable=work, op_args=["fail_now"], retries=3)
    PythonOperator(task_id="later", python_callable=work, op_args=["skip"])
    BashOperator(task_id="bash", bash_command="echo hi")
"""


def test_the_callbacks_of_each_ending_run_in_airflow_s_order(project: Project) -> None:
    outcome, _ = project.run(BODY, "ok")
    assert outcome.outcome == "success", outcome.reason
    # The broken success callback is logged; the try still succeeds.
    assert calls(project) == ["execute:ok:", "pre:ok:", "work:ok", "post:ok:", "success:ok:"]
    outcome, _ = project.run(BODY, "bash")
    assert outcome.outcome == "success"
    assert calls(project) == ["execute:bash:", "pre:bash:", "post:bash:", "success:bash:"]


def test_a_failure_calls_on_retry_while_tries_are_left_then_on_failure(project: Project) -> None:
    outcome, _ = project.run(BODY, "flaky")
    assert outcome.outcome == "failed"
    assert calls(project) == ["execute:flaky:", "pre:flaky:", "work:fail", "retry:flaky:ValueError"]
    # Airflow's fail-now exception ends the tries at once: on_failure.
    outcome, _ = project.run(BODY, "fatal")
    assert outcome.outcome == "failed_no_retry"
    assert calls(project) == ["execute:fatal:", "pre:fatal:", "work:fail_now", "failure:fatal:AirflowFailException"]
    outcome, _ = project.run(BODY, "later")
    assert outcome.outcome == "skipped"
    assert calls(project) == ["execute:later:", "pre:later:", "work:skip", "skipped:later:"]


def test_the_last_try_s_failure_calls_on_failure(project: Project) -> None:
    body = BODY.replace('op_args=["fail"], retries=1', 'op_args=["fail"], retries=0')
    outcome, _ = project.run(body, "flaky")
    assert outcome.outcome == "failed"
    assert calls(project)[-1] == "failure:flaky:ValueError"


def test_an_empty_operator_with_callbacks_records_them_in_dag_json(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text(
        "from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        "def cb(context):\n    pass\n"
        "with DAG('d', schedule=None):\n"
        "    EmptyOperator(task_id='with', on_success_callback=cb, on_failure_callback=[cb])\n"
        "    EmptyOperator(task_id='without')\n"
    )
    result = compile_file(path)
    assert result["ok"], result
    tasks = {t["task_id"]: t for t in result["dags"][0]["tasks"]}
    assert tasks["with"]["callbacks"] == ["on_failure_callback", "on_success_callback"]
    assert "callbacks" not in tasks["without"]


def test_a_callback_that_is_not_a_function_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text(
        "from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
        "with DAG('d', schedule=None):\n    EmptyOperator(task_id='t', on_failure_callback='page me')\n"
    )
    result = compile_file(path)
    assert not result["ok"]
    assert "on_failure_callback of 't' must be a function or a list of functions, not 'page me'" in result["error"]["message"]


TIMEOUTS = CALLBACKS + """
import datetime, time

def sleeps():
    time.sleep(30)

def swallows():
    try:
        time.sleep(30)
    except Exception:
        pass

with DAG("d", schedule=None, default_args=every):
    PythonOperator(task_id="slow", python_callable=sleeps, execution_timeout=datetime.timedelta(seconds=0.3), retries=1)
    PythonOperator(task_id="swallows", python_callable=swallows, execution_timeout=datetime.timedelta(seconds=0.3))
    BashOperator(task_id="slow_bash", bash_command="sleep 30; echo never", execution_timeout=datetime.timedelta(seconds=0.3))
"""


@pytest.mark.parametrize(("task_id", "callback"), [("slow", "retry"), ("swallows", "failure"), ("slow_bash", "failure")])
def test_past_its_execution_timeout_a_task_fails_with_airflow_task_timeout_and_its_callbacks_run(
    project: Project, task_id: str, callback: str
) -> None:
    import time

    started = time.monotonic()
    outcome, _ = project.run(TIMEOUTS, task_id)
    assert time.monotonic() - started < 10, "the task was stopped at its timeout, not after its work"
    assert outcome.outcome == "failed", outcome.reason
    assert outcome.reason.startswith("AirflowTaskTimeout: Timeout, PID: "), outcome.reason
    # `except Exception` in task code does not swallow it, as in Airflow (a BaseException).
    assert calls(project)[-1] == f"{callback}:{task_id}:AirflowTaskTimeout"
