"""Airflow's human-in-the-loop operators: their checks at parse time, the wait for a person they
defer to (what crosses to the control plane), and how an answer, a default at the deadline or a
timeout carries each on, run through the runner against a scripted agent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from task_harness import Project

from leoflow.compiler import compile_file

IMPORTS = """
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLBranchOperator, HITLEntryOperator, HITLOperator
from airflow.sdk import Param
from airflow.sdk.bases.notifier import BaseNotifier

class Shout(BaseNotifier):
    template_fields = ("message",)
    def __init__(self, message):
        self.message = message
    def notify(self, context):
        print("NOTIFIED", self.message, HITLOperator.generate_link_to_ui_from_context(context=context, base_url="http://ui:8088"))

class Broken(BaseNotifier):
    def notify(self, context):
        raise RuntimeError("the mail server is down")
"""

DAG = IMPORTS + """
with DAG("d", schedule=None):
    ask = HITLOperator(
        task_id="ask", subject="Pick {{ dag.dag_id }}", body="for {{ run_id }}", options=["a", "b"],
        defaults="a", params={"n": Param(3, type="integer", description="how many")},
        notifiers=[Shout("asked {{ task.subject }}"), Broken()], assigned_users={"id": "ann", "name": "Ann"},
        execution_timeout=datetime.timedelta(minutes=5),
    )
    strict = HITLOperator(task_id="strict", subject="s", options=["x", "y"], multiple=True)
    approve = ApprovalOperator(task_id="approve", subject="ok?")
    reject_fails = ApprovalOperator(task_id="reject_fails", subject="ok?", fail_on_reject=True)
    branch = HITLBranchOperator(task_id="branch", subject="which?", options=["left", "Right"], options_mapping={"Right": "right"})
    entry = HITLEntryOperator(task_id="entry", subject="fill in", params={"who": Param("", type="string")})
    ask >> strict >> approve >> reject_fails >> branch >> [EmptyOperator(task_id="left"), EmptyOperator(task_id="right")]
    branch >> entry
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


def answered(options: list[str], params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "chosen_options": options, "params_input": params or {},
        "responded_by_user": {"id": "ann", "name": "Ann"}, "responded_at": "2030-01-01T00:00:00Z", "timedout": False,
    }


def resume(event: dict[str, Any]) -> dict[str, Any]:
    return {"resume": {"method": "execute_complete", "kwargs": {"event": event}}}


def test_a_question_waits_for_a_person_saying_what_it_asks(
    project: Project, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    outcome, _ = project.run(DAG, "ask")
    assert outcome.outcome == "deferred", outcome.reason
    trigger = outcome.message()["deferral"]["trigger"]
    assert trigger["kind"] == "person"
    assert trigger["request"] == {
        "subject": "Pick d", "body": "for manual__1", "options": ["a", "b"], "defaults": ["a"], "multiple": False,
        "params": {"n": {"value": 3, "description": "how many", "schema": {"type": "integer"}, "source": "task"}},
        "assigned_users": [{"id": "ann", "name": "Ann"}],
    }
    # Past its execution_timeout it takes its defaults, as Airflow's trigger does.
    assert trigger["unanswered"]["chosen_options"] == ["a"]
    assert trigger["unanswered"]["params_input"] == {"n": 3}
    assert trigger["unanswered"]["timedout"] is True
    deadline = dt.datetime.fromisoformat(trigger["answer_by"])
    assert abs((deadline - dt.datetime.now(dt.timezone.utc)).total_seconds() - 300) < 30
    # The notifiers ran, their templates rendered; the one that raised did not fail the task.
    err = capsys.readouterr()
    text = err.out + err.err + caplog.text
    assert "NOTIFIED asked Pick d http://ui:8088/dags/d/runs/manual__1/tasks/ask/required_actions?map_index=-1" in text
    assert "Failed to send notification" in text


def test_without_defaults_or_a_timeout_the_wait_has_no_deadline(project: Project) -> None:
    outcome, _ = project.run(DAG, "strict")
    trigger = outcome.message()["deferral"]["trigger"]
    assert "answer_by" not in trigger
    assert trigger["unanswered"] == {
        "error": "The timeout has passed, and the response has not yet been received.", "error_type": "timeout",
    }


def test_an_answer_is_the_tasks_result(project: Project) -> None:
    outcome, agent = project.run(DAG, "ask", attempt_fields=resume(answered(["b"], {"n": 5})))
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {
        "chosen_options": ["b"], "params_input": {"n": 5},
        "responded_at": "2030-01-01T00:00:00Z", "responded_by_user": {"id": "ann", "name": "Ann"},
    }


@pytest.mark.parametrize(
    ("task_id", "event", "reason"),
    [
        ("strict", {"error": "The timeout has passed", "error_type": "timeout"}, "HITLTimeoutError"),
        ("strict", answered(["z"]), "Responses {'z'} not in ['x', 'y']"),
        ("ask", answered(["a"], {"m": 1}), "params_input {'m': 1} does not match params ['n']"),
        ("reject_fails", answered(["Reject"]), 'HITLRejectException: Receive "Reject"'),
    ],
)
def test_a_bad_answer_or_a_timeout_fails_the_task(project: Project, task_id: str, event: dict[str, Any], reason: str) -> None:
    outcome, _ = project.run(DAG, task_id, attempt_fields=resume(event))
    assert outcome.outcome == "failed", outcome
    assert reason in outcome.reason


def test_an_approval_follows_its_downstream_tasks_or_skips_them(project: Project) -> None:
    outcome, agent = project.run(DAG, "approve", attempt_fields=resume(answered(["Approve"])))
    assert (outcome.outcome, outcome.branch) == ("success", ["reject_fails"])
    assert agent.pushed["return_value"]["chosen_options"] == ["Approve"]
    outcome, _ = project.run(DAG, "approve", attempt_fields=resume(answered(["Reject"])))
    assert (outcome.outcome, outcome.branch) == ("success", [])


def test_a_branch_follows_the_chosen_tasks_through_its_mapping(project: Project) -> None:
    outcome, agent = project.run(DAG, "branch", attempt_fields=resume(answered(["Right"])))
    assert (outcome.outcome, outcome.branch) == ("success", ["right"])
    assert agent.pushed["return_value"] == ["right"]


def test_an_entry_form_is_answered_with_ok_by_default(project: Project) -> None:
    outcome, _ = project.run(DAG, "entry")
    request = outcome.message()["deferral"]["trigger"]["request"]
    assert (request["options"], request["defaults"]) == (["OK"], ["OK"])


@pytest.mark.parametrize(
    ("operator", "message"),
    [
        ("HITLOperator(task_id='t', subject='s', options=[])", '"options" cannot be empty.'),
        ("HITLOperator(task_id='t', subject='s', options=['a'], defaults='b')", 'defaults "[\'b\']" should be a subset of options'),
        ("HITLOperator(task_id='t', subject='s', options=['a', 'b'], defaults=['a', 'b'])", 'More than one defaults given when "multiple" is set to False.'),
        ("HITLOperator(task_id='t', subject='s', options=['a'], params={'_options': 1})", '"_options" is not allowed in params'),
        ("ApprovalOperator(task_id='t', subject='s', options=['a'])", "Passing options to ApprovalOperator is not allowed."),
        ("ApprovalOperator(task_id='t', subject='s', ignore_downstream_trigger_rules=True)", "ApprovalOperator(ignore_downstream_trigger_rules=True) is not supported by Leoflow"),
        ("HITLBranchOperator(task_id='t', subject='s', options=['a'], options_mapping={'b': 'x'})", "`options_mapping` contains keys that are not in `options`: ['b']"),
    ],
)
def test_bad_questions_are_refused_when_the_dag_is_parsed(project: Project, operator: str, message: str) -> None:
    path = project.write("dag.py", "from airflow.sdk import DAG\n" + IMPORTS + f"\nwith DAG('d', schedule=None):\n    {operator}\n")
    compiled = compile_file(path)
    assert not compiled["ok"], compiled
    assert message in compiled["error"]["message"], compiled["error"]


def test_a_notifier_argument_compiles_to_the_same_document_every_time(project: Project) -> None:
    path = project.write("dag.py", "from airflow.sdk import DAG\nimport datetime\n" + DAG)
    first, second = compile_file(path), compile_file(path)
    assert first == second
    ask = next(t for t in first["dags"][0]["tasks"] if t["task_id"] == "ask")
    assert ask["custom"]["arguments"]["notifiers"] == {"__repr__": "[<dag.Shout object>, <dag.Broken object>]"}
