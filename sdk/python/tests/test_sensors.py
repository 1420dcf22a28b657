"""Sensors as Airflow's poke: `BaseSensorOperator` subclasses of the project and the standard
provider's sensors, each run through the runner against a scripted agent; timeouts fail without
retries or skip with `soft_fail`; `PokeReturnValue` pushes its value."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
from task_harness import Agent, Project

from leoflow.compiler import compile_file
from leoflow.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException
from leoflow.sensors import poke_until

IMPORTS = """
import datetime
from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.providers.standard.sensors.bash import BashSensor
from airflow.providers.standard.sensors.date_time import DateTimeSensor
from airflow.providers.standard.sensors.filesystem import FileSensor
from airflow.providers.standard.sensors.python import PythonSensor
from airflow.providers.standard.sensors.time import TimeSensor
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.providers.standard.sensors.weekday import DayOfWeekSensor
from airflow.providers.standard.utils.weekday import WeekDay

class Countdown(BaseSensorOperator):
    template_fields = ("label",)

    def __init__(self, label="", pokes=3, **kwargs):
        super().__init__(**kwargs)
        self.label = label
        self.pokes = pokes

    def poke(self, context):
        self.pokes -= 1
        return PokeReturnValue(self.pokes <= 0, xcom_value={"label": self.label})

def ready(flag):
    return flag
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def dag(body: str) -> str:
    return IMPORTS + "\nwith DAG('d', schedule=None, default_args={'poke_interval': 0.01}):\n" + body


def test_a_sensor_of_the_project_pokes_until_done_and_pushes_its_value(project: Project) -> None:
    body = dag("    Countdown(task_id='wait', label='{{ run_id }}', timeout=5)\n")
    outcome, agent = project.run(body, "wait")
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {"label": "manual__1"}
    compiled = compile_file(project.folder / "dag.py")
    spec = compiled["dags"][0]["tasks"][0]
    assert spec["operator"] == "Countdown" and spec["custom"]["ui_color"] == "#e6f1f2"


def test_a_timeout_fails_without_retries_or_skips_with_soft_fail(project: Project) -> None:
    body = dag(
        "    Countdown(task_id='late', pokes=1000, timeout=0.05)\n"
        "    Countdown(task_id='soft', pokes=1000, timeout=0.05, soft_fail=True)\n"
        "    Countdown(task_id='never', pokes=1000, timeout=0.05, never_fail=True)\n"
    )
    with pytest.raises(AirflowSensorTimeout, match=r"sensor timed out after 0 s \(\d+ pokes\)"):
        project.run(body, "late")
    with pytest.raises(AirflowSkipException, match="sensor timed out"):
        project.run(body, "soft")
    with pytest.raises(AirflowSkipException, match="never_fail: AirflowSensorTimeout"):
        project.run(body, "never")


def test_bad_sensor_arguments_are_refused_clearly(project: Project) -> None:
    for body, message in [
        ("    Countdown(task_id='t', mode='sometimes')\n", "mode must be 'poke' or 'reschedule', not 'sometimes'"),
        ("    Countdown(task_id='t', soft_fail=True, never_fail=True)\n", "soft_fail and never_fail cannot both be set"),
        ("    Countdown(task_id='t', poke_interval='often')\n", "poke_interval must be a timedelta or a number of seconds"),
        (
            "    class Idle(BaseSensorOperator):\n        pass\n    Idle(task_id='t')\n",
            "Idle does not define poke(self, context)",
        ),
    ]:
        compiled = compile_file(project.write("dag.py", "from airflow.sdk import DAG\n" + dag(body)))
        assert not compiled["ok"], body
        assert message in compiled["error"]["message"]


def test_python_and_bash_sensors(project: Project) -> None:
    body = dag(
        "    PythonSensor(task_id='py', python_callable=ready, op_kwargs={'flag': '{{ params.go }}'}, timeout=1)\n"
        "    PythonSensor(task_id='py_no', python_callable=ready, op_args=[''], timeout=0.05, soft_fail=True)\n"
        "    BashSensor(task_id='sh', bash_command='test -n \"$GO\"', env={'GO': '{{ run_id }}'}, timeout=1)\n"
        "    BashSensor(task_id='sh_fail', bash_command='exit 3', retry_exit_code=1, timeout=1)\n"
    )
    outcome, _ = project.run(body, "py", conf={"go": "yes"})
    assert outcome.outcome == "success", outcome.reason
    with pytest.raises(AirflowSkipException):
        project.run(body, "py_no")
    outcome, agent = project.run(body, "sh")
    assert outcome.outcome == "success", outcome.reason
    assert agent.rendered["env"] == {"GO": "manual__1"}
    with pytest.raises(AirflowFailException, match="Command exited with return code 3"):
        project.run(body, "sh_fail")


def test_file_sensor_finds_a_file_under_its_connection_s_path(project: Project, tmp_path: Path) -> None:
    (tmp_path / "in" / "nested").mkdir(parents=True)
    (tmp_path / "in" / "nested" / "data.csv").write_text("x")
    body = dag(
        f"    FileSensor(task_id='direct', filepath='{tmp_path}/in/*/data.csv', timeout=1)\n"
        "    FileSensor(task_id='folder', filepath='nested', fs_conn_id='files', timeout=1)\n"
        "    FileSensor(task_id='missing', filepath='nested/none.csv', fs_conn_id='files', timeout=0.05, soft_fail=True)\n"
        "    FileSensor(task_id='unknown', filepath='x', fs_conn_id='nowhere', timeout=1)\n"
    )
    files = Agent(connections={"files": {"conn_type": "fs", "extra": f'{{"path": "{tmp_path}/in"}}'}})
    assert project.run(body, "direct")[0].outcome == "success"
    assert project.run(body, "folder", files)[0].outcome == "success"
    with pytest.raises(AirflowSkipException):
        project.run(body, "missing", files)
    with pytest.raises(KeyError, match="The conn_id `nowhere` isn't defined"):
        project.run(body, "unknown")


def test_time_sensors_wait_for_their_moment(project: Project) -> None:
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=1)).isoformat()
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)).isoformat()
    body = dag(
        "    TimeDeltaSensor(task_id='delta', delta=datetime.timedelta(seconds=0.2), timeout=2)\n"
        "    DateTimeSensor(task_id='passed', target_time='{{ params.at }}', timeout=1)\n"
        "    DateTimeSensor(task_id='future', target_time='{{ params.at }}', timeout=0.05, soft_fail=True)\n"
        "    TimeSensor(task_id='earlier', target_time=datetime.time(0, 0), timeout=1)\n"
        "    DayOfWeekSensor(task_id='monday', week_day=WeekDay.MONDAY, use_task_logical_date=True, timeout=0.05)\n"
    )
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    started = time.monotonic()
    outcome, _ = project.run(body, "delta", logical_date=now)
    assert outcome.outcome == "success" and time.monotonic() - started >= 0.15
    assert project.run(body, "passed", conf={"at": past})[0].outcome == "success"
    with pytest.raises(AirflowSkipException):
        project.run(body, "future", conf={"at": future})
    assert project.run(body, "earlier")[0].outcome == "success"
    assert project.run(body, "monday", logical_date="2026-03-02T10:00:00Z")[0].outcome == "success"
    with pytest.raises(AirflowSensorTimeout):
        project.run(body, "monday", logical_date="2026-03-03T10:00:00Z")


def test_backoff_doubles_the_interval_up_to_max_wait() -> None:
    slept: list[float] = []
    pokes = iter([False, False, False, False, True])
    original = time.sleep
    try:
        time.sleep = lambda seconds: slept.append(round(seconds, 3))  # type: ignore[assignment]
        poke_until(lambda: next(pokes), interval=1.0, timeout=100.0, exponential_backoff=True, max_wait=3.0)
    finally:
        time.sleep = original
    assert slept == [1.0, 2.0, 3.0, 3.0]


def test_a_failing_poke_is_poked_again_with_silent_fail() -> None:
    calls = iter([ValueError("flaky"), True])

    def poke() -> bool:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert poke_until(poke, interval=0.0, timeout=1.0, silent_fail=True) is None
    with pytest.raises(ValueError, match="flaky"):
        poke_until(lambda: (_ for _ in ()).throw(ValueError("flaky")), interval=0.0, timeout=1.0)
