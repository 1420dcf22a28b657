"""Deferral and reschedule in the runner: `self.defer` ends the attempt with how it waits, a
resumed attempt carries on in `method_name` with the trigger's event, sensors in reschedule
mode end their attempt between pokes, and the deferrable time sensors defer to a timer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from task_harness import Project

from leoflow.errors import DagDefinitionError
from leoflow.sensors import _pokes_before
from leoflow.triggers import deserialize_value, serialize_value

OPERATORS = """
import asyncio
from airflow.sdk import BaseOperator, BaseSensorOperator
from airflow.triggers.base import BaseTrigger, TriggerEvent
from airflow.triggers.temporal import DateTimeTrigger, TimeDeltaTrigger

MOMENT = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)


class QueueTrigger(BaseTrigger):
    def __init__(self, queue, since):
        super().__init__()
        self.queue, self.since = queue, since

    def serialize(self):
        return ("my_triggers.QueueTrigger", {"queue": self.queue, "since": self.since})

    async def run(self):
        yield TriggerEvent({"message": "hi"})


class Waiter(BaseOperator):
    def __init__(self, *, trigger="moment", **kwargs):
        super().__init__(**kwargs)
        self.trigger = trigger

    def execute(self, context):
        triggers = {
            "moment": lambda: DateTimeTrigger(MOMENT),
            "delta": lambda: TimeDeltaTrigger(datetime.timedelta(minutes=5)),
            "queue": lambda: QueueTrigger("jobs", MOMENT),
            "none": lambda: None,
            "naive": lambda: DateTimeTrigger(datetime.datetime(2030, 1, 1)),
        }
        kwargs = {"since": MOMENT, "every": datetime.timedelta(seconds=90), "n": [1, "two"]}
        if self.trigger == "opaque":
            self.defer(trigger=DateTimeTrigger(MOMENT), method_name="done", kwargs={"x": object()})
        if self.trigger == "nowhere":
            self.defer(trigger=DateTimeTrigger(MOMENT), method_name="nowhere")
        self.defer(trigger=triggers[self.trigger](), method_name="done", kwargs=kwargs, timeout=datetime.timedelta(hours=1))

    def done(self, context, event=None, since=None, every=None, n=None):
        assert since == MOMENT and every == datetime.timedelta(seconds=90) and n == [1, "two"]
        return {"event": str(event)}


class Never(BaseSensorOperator):
    def poke(self, context):
        print("poked")
        return False
"""

DAG = OPERATORS + """
with DAG("d", schedule=None):
    Waiter(task_id="moment")
    Waiter(task_id="delta", trigger="delta")
    Waiter(task_id="queue", trigger="queue")
    Waiter(task_id="none", trigger="none")
    Waiter(task_id="naive", trigger="naive")
    Waiter(task_id="opaque", trigger="opaque")
    Waiter(task_id="nowhere", trigger="nowhere")
    Never(task_id="never", mode="reschedule", poke_interval=30, timeout=600)
    Never(task_id="never_soft", mode="reschedule", poke_interval=30, timeout=600, soft_fail=True)
    Never(task_id="backoff", mode="reschedule", poke_interval=10, exponential_backoff=True)
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def test_a_deferral_says_what_it_waits_for_and_how_it_resumes(project: Project) -> None:
    outcome, _ = project.run(DAG, "moment")
    assert outcome.outcome == "deferred", outcome.reason
    message = outcome.message()
    assert message["deferral"] == {
        "trigger": {"kind": "time", "moment": "2030-01-01T00:00:00+00:00"},
        "method": "done",
        "kwargs": {
            "since": {"__type": "datetime", "__var": 1893456000.0},
            "every": {"__type": "timedelta", "__var": 90.0},
            "n": [1, "two"],
        },
        "timeout": 3600.0,
    }
    delta, _ = project.run(DAG, "delta")
    moment = dt.datetime.fromisoformat(delta.message()["deferral"]["trigger"]["moment"])
    assert abs((moment - now()).total_seconds() - 300) < 30, "a TimeDeltaTrigger is a moment from now"


def test_any_other_trigger_crosses_as_its_class_and_arguments(project: Project) -> None:
    outcome, _ = project.run(DAG, "queue")
    assert outcome.outcome == "deferred", outcome.reason
    assert outcome.message()["deferral"]["trigger"] == {
        "kind": "python",
        "classpath": "my_triggers.QueueTrigger",
        "kwargs": {"queue": "jobs", "since": {"__type": "datetime", "__var": 1893456000.0}},
    }


def test_a_resumed_try_carries_on_in_its_method_with_the_event(project: Project) -> None:
    resume = {
        "method": "done",
        "kwargs": {
            "since": {"__type": "datetime", "__var": 1893456000.0},
            "every": {"__type": "timedelta", "__var": 90.0},
            "n": [1, "two"],
            "event": {"__type": "datetime", "__var": 1893456000.0},
        },
    }
    outcome, agent = project.run(DAG, "moment", attempt_fields={"resume": resume})
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {"event": "2030-01-01 00:00:00+00:00"}


@pytest.mark.parametrize(
    ("task_id", "reason"),
    [
        ("none", "self.defer needs a trigger (a BaseTrigger), not None"),
        ("opaque", "a object cannot cross a deferral"),
        ("naive", "ValueError: You cannot pass naive datetimes"),
        ("nowhere", "Waiter has no method 'nowhere' to resume in after deferring"),
    ],
)
def test_a_deferral_that_cannot_cross_fails_the_try_saying_why(project: Project, task_id: str, reason: str) -> None:
    outcome, _ = project.run(DAG, task_id)
    assert outcome.outcome == "failed"
    assert reason in outcome.reason


def test_a_resumed_try_whose_method_is_gone_fails_naming_it(project: Project) -> None:
    outcome, _ = project.run(DAG, "moment", attempt_fields={"resume": {"method": "vanished", "kwargs": {}}})
    assert outcome.outcome == "failed"
    assert "Waiter has no method 'vanished' to resume in" in outcome.reason


def test_a_sensor_in_reschedule_mode_ends_its_attempt_between_pokes(project: Project) -> None:
    started = now().isoformat()
    outcome, _ = project.run(DAG, "never", attempt_fields={"try_started_at": started})
    assert outcome.outcome == "rescheduled", outcome.reason
    again = dt.datetime.fromisoformat(outcome.message()["reschedule_at"])
    assert 25 < (again - now()).total_seconds() <= 30


def test_a_rescheduled_sensor_times_out_from_its_first_start(project: Project) -> None:
    long_ago = (now() - dt.timedelta(minutes=11)).isoformat()
    outcome, _ = project.run(DAG, "never", attempt_fields={"try_started_at": long_ago})
    assert outcome.outcome == "failed_no_retry"
    assert "AirflowSensorTimeout" in outcome.reason
    soft, _ = project.run(DAG, "never_soft", attempt_fields={"try_started_at": long_ago})
    assert soft.outcome == "skipped"


def test_a_rescheduled_sensor_backs_off_by_the_pokes_it_made() -> None:
    # 10 s, then 20 s, then 40 s: after 30 s two pokes were made, after 70 s three.
    assert [_pokes_before(waited, 10, True) for waited in (0, 10, 30, 70)] == [0, 1, 2, 3]
    assert [_pokes_before(waited, 10, False) for waited in (0, 10, 30)] == [0, 1, 3]


def test_backoff_in_reschedule_mode_waits_longer_each_poke(project: Project) -> None:
    started = (now() - dt.timedelta(seconds=30)).isoformat()
    outcome, _ = project.run(DAG, "backoff", attempt_fields={"try_started_at": started})
    assert outcome.outcome == "rescheduled", outcome.reason
    wait = (dt.datetime.fromisoformat(outcome.message()["reschedule_at"]) - now()).total_seconds()
    assert 35 < wait <= 40, "the third poke waits 40 s"


SENSORS = """
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor

with DAG("d", schedule=None):
    DateTimeSensorAsync(task_id="soft", target_time="2030-01-01T00:00:00+00:00", timeout=1, soft_fail=True)
    DateTimeSensorAsync(task_id="hard", target_time="2030-01-01T00:00:00+00:00", timeout=1)
    DateTimeSensorAsync(task_id="later", target_time="2030-01-01T00:00:00+00:00")
    DateTimeSensorAsync(task_id="past", target_time="2020-01-01T00:00:00+00:00")
    TimeDeltaSensor(task_id="delta", delta=datetime.timedelta(hours=1), deferrable=True)
"""


def test_deferrable_time_sensors_defer_to_a_timer_and_resume_done(project: Project) -> None:
    outcome, _ = project.run(SENSORS, "later")
    assert outcome.outcome == "deferred", outcome.reason
    assert outcome.message()["deferral"] == {
        "trigger": {"kind": "time", "moment": "2030-01-01T00:00:00+00:00"},
        "method": "execute_complete",
        "kwargs": {},
        "timeout": 7 * 24 * 3600.0,
    }
    past, _ = project.run(SENSORS, "past")
    assert past.outcome == "success", "a time that passed does not defer"
    delta, _ = project.run(SENSORS, "delta", data_interval_end="2029-12-31T23:00:00+00:00")
    assert delta.message()["deferral"]["trigger"]["moment"] == "2030-01-01T00:00:00+00:00"
    resumed, _ = project.run(SENSORS, "later", attempt_fields={"resume": {"method": "execute_complete", "kwargs": {"event": None}}})
    assert resumed.outcome == "success", resumed.reason


def test_values_cross_a_deferral_as_airflow_tags_them() -> None:
    value: dict[str, Any] = {
        "at": dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        "every": dt.timedelta(minutes=1),
        "list": [1, None, {"x": True}],
    }
    assert deserialize_value(serialize_value(value, "v")) == value
    with pytest.raises(DagDefinitionError, match="naive datetime"):
        serialize_value(dt.datetime(2030, 1, 1), "v")
    with pytest.raises(DagDefinitionError, match="keys that are not strings"):
        serialize_value({1: 2}, "v")


def test_a_task_sensor_in_reschedule_mode_ends_its_attempt_between_pokes(project: Project) -> None:
    body = """
with DAG("d", schedule=None):
    @task.sensor(poke_interval=20, timeout=600, mode="reschedule")
    def not_yet():
        return False

    not_yet()
"""
    outcome, _ = project.run(body, "not_yet", attempt_fields={"try_started_at": now().isoformat()})
    assert outcome.outcome == "rescheduled", outcome.reason
    again = dt.datetime.fromisoformat(outcome.message()["reschedule_at"])
    assert 15 < (again - now()).total_seconds() <= 20


FAILED_WAIT = {"method": "__fail__", "kwargs": {"error": "TaskDeferralTimeout: the trigger did not fire", "event": None}}


def test_a_wait_past_its_timeout_fails_in_the_task_as_airflow_fails_it(project: Project) -> None:
    outcome, _ = project.run(DAG, "moment", attempt_fields={"resume": FAILED_WAIT})
    assert outcome.outcome == "failed", "retries apply"
    assert "TaskDeferralTimeout: TaskDeferralTimeout: the trigger did not fire" in outcome.reason


def test_a_deferred_sensor_past_its_timeout_times_out_or_is_skipped(project: Project) -> None:
    hard, _ = project.run(SENSORS, "hard", attempt_fields={"resume": FAILED_WAIT})
    assert hard.outcome == "failed_no_retry"
    assert hard.reason.startswith("AirflowSensorTimeout")
    soft, _ = project.run(SENSORS, "soft", attempt_fields={"resume": FAILED_WAIT})
    assert soft.outcome == "skipped"
