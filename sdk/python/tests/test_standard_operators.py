"""The standard provider's branching operators, as Airflow's choose: `BaseBranchOperator`
subclasses of the project, `LatestOnlyOperator`, `BranchDateTimeOperator` and
`BranchDayOfWeekOperator`. Each runs through the runner against a scripted agent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from task_harness import Project

from leoflow.compiler import compile_file
from leoflow.runner import TaskError

IMPORTS = """
from airflow.providers.standard.operators.branch import BaseBranchOperator
from airflow.providers.standard.operators.datetime import BranchDateTimeOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.latest_only import LatestOnlyOperator
from airflow.providers.standard.operators.weekday import BranchDayOfWeekOperator
from airflow.providers.standard.utils.weekday import WeekDay
from airflow.sdk import TaskGroup
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat()


def test_a_branch_operator_of_the_project_follows_tasks_and_groups(project: Project) -> None:
    body = IMPORTS + """
class Pick(BaseBranchOperator):
    def choose_branch(self, context):
        return ["left", "right_group"] if context["params"]["both"] else "left"

with DAG("d", schedule=None, params={"both": True}):
    pick = Pick(task_id="pick")
    left = EmptyOperator(task_id="left")
    with TaskGroup("right_group") as right:
        first = EmptyOperator(task_id="first")
        first >> EmptyOperator(task_id="second")
    pick >> [left, right]
"""
    path = project.write("dag.py", "from airflow.sdk import DAG\n" + body)
    compiled = compile_file(path)
    assert compiled["ok"], compiled
    pick = next(t for t in compiled["dags"][0]["tasks"] if t["task_id"] == "pick")
    assert pick["operator"] == "Pick" and pick["custom"]["branch"] is True
    outcome, agent = project.run(body, "pick")
    assert (outcome.outcome, outcome.branch) == ("success", ["left", "right_group.first"])
    assert agent.pushed["return_value"] == ["left", "right_group"]
    outcome, _ = project.run(body, "pick", conf={"both": False})
    assert outcome.branch == ["left"]


def test_a_branch_operator_without_choose_branch_or_returning_numbers_is_refused(project: Project) -> None:
    path = project.write("dag.py", "from airflow.sdk import DAG\n" + IMPORTS + """
class Lazy(BaseBranchOperator):
    pass

with DAG("d", schedule=None):
    Lazy(task_id="t")
""")
    compiled = compile_file(path)
    assert not compiled["ok"]
    assert "Lazy does not define choose_branch(self, context)" in compiled["error"]["message"]
    body = IMPORTS + """
class Numbers(BaseBranchOperator):
    def choose_branch(self, context):
        return [1, 2]

with DAG("d", schedule=None):
    Numbers(task_id="t") >> EmptyOperator(task_id="a")
"""
    with pytest.raises(TaskError, match=r"a branch must return task ids \(str or list of str\), not \[1, 2\]"):
        project.run(body, "t")


LATEST = IMPORTS + """
import datetime
with DAG("d", schedule=datetime.timedelta(hours=4), start_date=datetime.datetime(2021, 1, 1)):
    LatestOnlyOperator(task_id="latest_only") >> [EmptyOperator(task_id="a"), EmptyOperator(task_id="b")]
"""


def test_latest_only_follows_a_manual_run_and_the_latest_scheduled_one_only(project: Project) -> None:
    outcome, _ = project.run(LATEST, "latest_only")
    assert outcome.branch == ["a", "b"]
    now = dt.datetime.now(dt.timezone.utc)
    latest = now - dt.timedelta(hours=1)
    outcome, _ = project.run(
        LATEST, "latest_only", logical_date=iso(latest), run_type="scheduled",
        next_logical_date=iso(latest + dt.timedelta(hours=4)),
    )
    assert outcome.branch == ["a", "b"]
    old = now - dt.timedelta(hours=9)
    outcome, _ = project.run(
        LATEST, "latest_only", logical_date=iso(old), run_type="backfill",
        next_logical_date=iso(old + dt.timedelta(hours=4)),
    )
    assert outcome.branch == []
    # Without a next logical date (the timetable's last run) the run is the latest.
    outcome, _ = project.run(LATEST, "latest_only", logical_date=iso(old), run_type="scheduled", next_logical_date=None)
    assert outcome.branch == ["a", "b"]


DATETIME = IMPORTS + """
import pendulum
with DAG("d", schedule="@daily", start_date=pendulum.datetime(2021, 1, 1, tz="UTC")):
    BranchDateTimeOperator(
        task_id="fixed", follow_task_ids_if_true=["inside"], follow_task_ids_if_false=["outside"],
        target_lower=pendulum.datetime(2020, 10, 10, 14), target_upper=pendulum.datetime(2020, 10, 10, 15),
        use_task_logical_date=True,
    ) >> [EmptyOperator(task_id="inside"), EmptyOperator(task_id="outside")]
    BranchDateTimeOperator(
        task_id="night", follow_task_ids_if_true="inside_2", follow_task_ids_if_false="outside_2",
        target_lower=pendulum.time(22, 0), target_upper=pendulum.time(2, 0), use_task_logical_date=True,
    ) >> [EmptyOperator(task_id="inside_2"), EmptyOperator(task_id="outside_2")]
    BranchDateTimeOperator(
        task_id="now", follow_task_ids_if_true="inside_3", follow_task_ids_if_false="outside_3",
        target_lower=pendulum.datetime(2020, 10, 10, 14), target_upper=None,
    ) >> [EmptyOperator(task_id="inside_3"), EmptyOperator(task_id="outside_3")]
"""


@pytest.mark.parametrize(
    ("task", "logical_date", "chosen"),
    [
        ("fixed", "2020-10-10T14:30:00Z", ["inside"]),
        ("fixed", "2020-10-10T15:30:00Z", ["outside"]),
        ("fixed", "2020-10-10T13:59:00Z", ["outside"]),
        # Times of day on the date compared; an upper time before the lower one is the next day's.
        ("night", "2026-03-04T23:00:00Z", ["inside_2"]),
        ("night", "2026-03-04T21:00:00Z", ["outside_2"]),
        # Without use_task_logical_date, now is compared: after the lower bound, no upper one.
        ("now", "2000-01-01T00:00:00Z", ["inside_3"]),
    ],
)
def test_branch_date_time_compares_dates_and_times_as_airflow_does(
    project: Project, task: str, logical_date: str, chosen: list[str]
) -> None:
    outcome, _ = project.run(DATETIME, task, logical_date=logical_date)
    assert outcome.branch == chosen


def test_branch_date_time_needs_a_bound(project: Project) -> None:
    path = project.write("dag.py", "from airflow.sdk import DAG\n" + IMPORTS + """
with DAG("d", schedule=None):
    BranchDateTimeOperator(task_id="t", follow_task_ids_if_true="a", follow_task_ids_if_false="b",
                           target_lower=None, target_upper=None)
""")
    compiled = compile_file(path)
    assert not compiled["ok"]
    assert "both target_upper and target_lower are None" in compiled["error"]["message"]


WEEKDAY = IMPORTS + """
with DAG("d", schedule=None):
    BranchDayOfWeekOperator(
        task_id="monday", follow_task_ids_if_true="yes", follow_task_ids_if_false="no",
        week_day="Monday", use_task_logical_date=True,
    ) >> [EmptyOperator(task_id="yes"), EmptyOperator(task_id="no")]
    BranchDayOfWeekOperator(
        task_id="weekend", follow_task_ids_if_true="rest", follow_task_ids_if_false="work",
        week_day={WeekDay.SATURDAY, WeekDay.SUNDAY},
    ) >> [EmptyOperator(task_id="rest"), EmptyOperator(task_id="work")]
"""


def test_branch_day_of_week_reads_names_and_week_days(project: Project) -> None:
    # 2026-03-02 is a Monday.
    outcome, _ = project.run(WEEKDAY, "monday", logical_date="2026-03-02T12:00:00Z")
    assert outcome.branch == ["yes"]
    outcome, _ = project.run(WEEKDAY, "monday", logical_date="2026-03-03T12:00:00Z")
    assert outcome.branch == ["no"]
    outcome, _ = project.run(WEEKDAY, "weekend")
    today = dt.datetime.now(dt.timezone.utc).isoweekday()
    assert outcome.branch == (["rest"] if today >= 6 else ["work"])


def test_an_unknown_week_day_is_refused_naming_it(project: Project) -> None:
    path = project.write("dag.py", "from airflow.sdk import DAG\n" + IMPORTS + """
with DAG("d", schedule=None):
    BranchDayOfWeekOperator(task_id="t", follow_task_ids_if_true="a", follow_task_ids_if_false="b", week_day="Caturday")
""")
    compiled = compile_file(path)
    assert not compiled["ok"]
    assert 'Invalid Week Day passed: "Caturday"' in compiled["error"]["message"]
