"""Tasks acting on other DAGs' runs, against a scripted agent: TriggerDagRunOperator (its run id,
conf, logical date, an existing run, waiting for the end), ExternalTaskSensor (tasks, a group,
the run itself, failed and skipped states, shifted dates), ExternalTaskMarker; `timezone`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from task_harness import Agent, Project

from leoflow.compiler import compile_file
from leoflow.exceptions import AirflowException, AirflowSkipException, AirflowSensorTimeout
from leoflow.runner import TaskError

BODY = """
import datetime
from airflow.sdk import timezone
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.providers.standard.sensors.external_task import ExternalTaskMarker, ExternalTaskSensor

with DAG("d", schedule=None, start_date=timezone.datetime(2022, 1, 1)):
    TriggerDagRunOperator(task_id="fire", trigger_dag_id="target", conf={"message": "{{ run_id }}"})
    TriggerDagRunOperator(task_id="named", trigger_dag_id="target", trigger_run_id="fixed", logical_date="{{ logical_date }}")
    TriggerDagRunOperator(task_id="again", trigger_dag_id="target", trigger_run_id="fixed", reset_dag_run=True)
    TriggerDagRunOperator(task_id="skip_existing", trigger_dag_id="target", trigger_run_id="fixed", skip_when_already_exists=True)
    TriggerDagRunOperator(task_id="waits", trigger_dag_id="target", trigger_run_id="w", wait_for_completion=True, poke_interval=0.01)
    TriggerDagRunOperator(task_id="waits_fail", trigger_dag_id="target", trigger_run_id="wf", wait_for_completion=True, poke_interval=0.01)
    TriggerDagRunOperator(task_id="nowhere", trigger_dag_id="elsewhere")
    ExternalTaskSensor(task_id="sense", external_dag_id="parent", external_task_id="work", poke_interval=0.01, timeout=0.2)
    ExternalTaskSensor(task_id="sense_group", external_dag_id="parent", external_task_group_id="grp", poke_interval=0.01, timeout=0.2)
    ExternalTaskSensor(task_id="sense_run", external_dag_id="parent", poke_interval=0.01, timeout=0.2,
                       failed_states=["failed"], skipped_states=["skipped"])
    ExternalTaskSensor(task_id="sense_yesterday", external_dag_id="parent", external_task_ids=["work"],
                       execution_delta=datetime.timedelta(days=1), poke_interval=0.01, timeout=0.05)
    ExternalTaskMarker(task_id="mark", external_dag_id="child", external_task_id="wait")
    TriggerDagRunOperator(task_id="noted", trigger_dag_id="target", note="from the parent", fail_when_dag_is_paused=True)
    ExternalTaskSensor(task_id="checked", external_dag_id="parent", external_task_id="work", check_existence=True,
                       poke_interval=0.01, timeout=0.05)
    ExternalTaskSensor(task_id="checked_group", external_dag_id="parent", external_task_group_id="grp",
                       check_existence=True, poke_interval=0.01, timeout=0.05)
"""

LOGICAL = "2026-03-04T05:06:07+00:00"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def test_a_trigger_names_its_run_passes_conf_and_pushes_the_run_id(project: Project) -> None:
    outcome, agent = project.run(BODY, "fire")
    assert outcome.outcome == "success", outcome.reason
    (request,) = agent.triggered
    assert request["dag_id"] == "target" and request["conf"] == {"message": "manual__1"}
    # As Airflow: no logical date given means now, and the run id is manual__<that date>.
    assert request["run_id"] == f"manual__{request['logical_date']}"
    assert dt.datetime.fromisoformat(request["logical_date"]) > dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)
    assert agent.pushed["trigger_run_id"] == request["run_id"]


def test_an_existing_run_fails_is_reset_or_skips(project: Project) -> None:
    agent = Agent()
    outcome, _ = project.run(BODY, "named", agent)
    assert outcome.outcome == "success"
    assert agent.triggered[-1]["logical_date"] == LOGICAL.replace("+00:00", "") + "+00:00"
    with pytest.raises(AirflowException, match="a run fixed of target exists already"):
        project.run(BODY, "named", agent)
    outcome, _ = project.run(BODY, "again", agent)
    assert outcome.outcome == "success" and agent.triggered[-1]["reset_dag_run"] is True
    with pytest.raises(AirflowSkipException, match="exists already"):
        project.run(BODY, "skip_existing", agent)


def test_waiting_for_the_run_ends_with_its_state(project: Project) -> None:
    agent = Agent()
    agent.run_states = ["queued", "running", "success"]
    outcome, _ = project.run(BODY, "waits", agent)
    assert outcome.outcome == "success"
    agent.run_states = ["running", "failed"]
    with pytest.raises(AirflowException, match="target run wf failed with failed state failed"):
        project.run(BODY, "waits_fail", agent)


def test_a_dag_the_try_cannot_see_fails_the_try_naming_it(project: Project) -> None:
    with pytest.raises(TaskError, match='trigger_dag_run failed: no DAG "elsewhere" to trigger'):
        project.run(BODY, "nowhere")


def parent(agent: Agent, state: str, tasks: dict[str, object], when: str = LOGICAL) -> None:
    agent.runs[("parent", "p1")] = {"run_id": "p1", "state": state, "logical_date": when, "tasks": tasks}


def test_the_external_task_sensor_waits_for_tasks_a_group_or_the_run(project: Project) -> None:
    agent = Agent()
    parent(agent, "running", {"work": "success", "grp.a": "success", "grp.b": ["success", "success"]})
    assert project.run(BODY, "sense", agent)[0].outcome == "success"
    assert project.run(BODY, "sense_group", agent)[0].outcome == "success"
    with pytest.raises(AirflowSensorTimeout):
        project.run(BODY, "sense_run", agent)
    parent(agent, "success", {})
    assert project.run(BODY, "sense_run", agent)[0].outcome == "success"
    parent(agent, "failed", {})
    with pytest.raises(AirflowException, match="failed with states"):
        project.run(BODY, "sense_run", agent)
    parent(agent, "running", {"work": "running", "grp.a": "success", "grp.b": ["success", "running"]})
    with pytest.raises(AirflowSensorTimeout):
        project.run(BODY, "sense_group", agent)


def test_the_external_task_sensor_looks_at_the_shifted_date_and_waits_for_a_missing_run(project: Project) -> None:
    agent = Agent()
    parent(agent, "success", {"work": "success"}, when="2026-03-03T05:06:07+00:00")
    assert project.run(BODY, "sense_yesterday", agent)[0].outcome == "success"
    with pytest.raises(AirflowSensorTimeout):
        project.run(BODY, "sense", Agent())


def test_the_marker_succeeds_and_its_dag_compiles_with_timezone_dates(project: Project) -> None:
    outcome, _ = project.run(BODY, "mark")
    assert outcome.outcome == "success"
    compiled = compile_file(project.folder / "dag.py")
    assert compiled["ok"] and compiled["dags"][0]["start_date"] == "2022-01-01T00:00:00Z"


def test_unsupported_options_are_refused_naming_them(tmp_path: Path) -> None:
    for code, message in [
        ("TriggerDagRunOperator(task_id='t', trigger_dag_id='x', allowed_states=['great'])", "unknown state(s) great"),
        ("ExternalTaskSensor(task_id='t', external_dag_id='x', external_task_id='a', external_task_ids=['b'])", "not both"),
    ]:
        path = tmp_path / "dag.py"
        path.write_text(
            "from airflow.sdk import DAG\n"
            "from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator\n"
            "from airflow.providers.standard.sensors.external_task import ExternalTaskSensor\n"
            f"with DAG('d', schedule=None):\n    {code}\n"
        )
        result = compile_file(path)
        assert not result["ok"], code
        assert message in result["error"]["message"], result


def test_a_trigger_sets_the_runs_note_and_fails_on_a_paused_dag_when_asked(project: Project) -> None:
    outcome, agent = project.run(BODY, "noted")
    assert outcome.outcome == "success", outcome.reason
    (request,) = agent.triggered
    assert request["note"] == "from the parent" and request["fail_when_dag_is_paused"] is True
    paused = Agent()
    paused.paused = {"target"}
    with pytest.raises(TaskError, match="Dag target is paused"):
        project.run(BODY, "noted", paused)


def test_check_existence_fails_on_a_missing_dag_task_or_group_and_pokes_otherwise(project: Project) -> None:
    with pytest.raises(AirflowException, match="The external DAG parent does not exist."):
        project.run(BODY, "checked", Agent())
    agent = Agent()
    agent.dags = {"parent": ["other"]}
    with pytest.raises(AirflowException, match="The external task work in DAG parent does not exist."):
        project.run(BODY, "checked", agent)
    with pytest.raises(AirflowException, match="The external task group 'grp' in DAG 'parent' does not exist."):
        project.run(BODY, "checked_group", agent)
    agent.dags = {"parent": ["work", "grp.a"]}
    # Both exist: the sensor pokes for the run, which never comes.
    with pytest.raises(AirflowSensorTimeout):
        project.run(BODY, "checked", agent)
    with pytest.raises(AirflowSensorTimeout):
        project.run(BODY, "checked_group", agent)
