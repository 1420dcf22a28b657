"""Timetables of the project's own: a `Timetable` subclass defining `next_dagrun_info` compiles
into dag.json by its class, and the triggerer answers the scheduler's question for the next run
(`leoflow.custom_timetables.NextDagRunTrigger`) by running the DAG file again; a timetable
that raises, answers something that is not a `DagRunInfo`, or gives naive datetimes is said
plainly."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_triggerer import Triggerer

from leoflow.compiler import compile_file

TRIGGER = "leoflow.custom_timetables.NextDagRunTrigger"

WEEKDAYS = '''
import datetime as dt

from airflow.plugins_manager import AirflowPlugin
from airflow.timetables.base import DagRunInfo, DataInterval, Timetable


class Weekdays(Timetable):
    """A run per weekday, for the day before it."""

    description = "weekdays"

    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        if last_automated_data_interval is not None:
            start = last_automated_data_interval.end
        elif restriction.earliest is None:
            return None
        else:
            start = restriction.earliest
        while start.weekday() >= 5:
            start += dt.timedelta(days=1)
        if restriction.latest is not None and start > restriction.latest:
            return None
        return DagRunInfo.interval(start=start, end=start + dt.timedelta(days=1))


class Broken(Timetable):
    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        raise ValueError("no calendar")


class Odd(Timetable):
    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        return "tomorrow"


class Naive(Timetable):
    def next_dagrun_info(self, *, last_automated_data_interval, restriction):
        return DagRunInfo.exact(dt.datetime(2026, 1, 1))


class WeekdaysPlugin(AirflowPlugin):
    name = "weekdays"
    timetables = [Weekdays]
'''

DAG_FILE = '''
import datetime as dt
from airflow.sdk import DAG
from weekdays import Broken, Naive, Odd, Weekdays

for dag_id, timetable in (("weekly", Weekdays()), ("broken", Broken()), ("odd", Odd()), ("naive", Naive())):
    with DAG(dag_id, schedule=timetable, start_date=dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc),
             end_date=dt.datetime(2026, 12, 31, tzinfo=dt.timezone.utc)):
        pass
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "weekdays.py").write_text(textwrap.dedent(WEEKDAYS))
    (tmp_path / "dag.py").write_text(DAG_FILE)
    return tmp_path


@pytest.fixture
def triggerer(project: Path) -> Iterator[Triggerer]:
    running = Triggerer(project)
    yield running
    assert running.process.stdin is not None
    running.process.stdin.close()
    running.process.wait(timeout=10)


def ask(triggerer: Triggerer, dag_id: str, last: dict[str, str] | None, latest: str | None = "2026-12-31T00:00:00+00:00") -> dict[str, Any]:
    restriction = {"earliest": "2026-12-04T00:00:00+00:00", "latest": latest, "catchup": True}
    kwargs = {"dag_id": dag_id, "fileloc": "dag.py", "source": DAG_FILE, "last": last, "restriction": restriction}
    triggerer.run(f"timetable:{dag_id}", TRIGGER, kwargs)
    fired = triggerer.next()
    assert fired["op"] == "fired", fired
    payload: dict[str, Any] = fired["payload"]
    return payload


def test_a_timetable_of_the_project_s_own_is_recorded_by_its_class(project: Path) -> None:
    result = compile_file(project / "dag.py")
    assert result["ok"], result
    dag = next(d for d in result["dags"] if d["dag_id"] == "weekly")
    assert dag["schedule"] == {"type": "custom", "class": "weekdays.Weekdays", "summary": "Weekdays", "description": "weekdays"}
    assert dag["timetable_summary"] == "Weekdays"


def test_a_timetable_without_next_dagrun_info_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dag.py").write_text(
        "from airflow.sdk import DAG\nfrom airflow.timetables.base import Timetable\n"
        "class Workday(Timetable):\n    pass\n"
        "with DAG('d', schedule=Workday()):\n    pass\n"
    )
    result = compile_file(tmp_path / "dag.py")
    assert not result["ok"]
    assert "custom timetable Workday without next_dagrun_info is not supported by Leoflow" in result["error"]["message"]


def test_the_triggerer_answers_the_next_run_after_the_last_within_the_dag_s_dates(triggerer: Triggerer) -> None:
    # 2026-12-04 is a Friday: its run, then Monday's (the weekend skipped).
    first = ask(triggerer, "weekly", None)
    assert first == {"next": {
        "run_after": "2026-12-05T00:00:00+00:00",
        "data_interval_start": "2026-12-04T00:00:00+00:00",
        "data_interval_end": "2026-12-05T00:00:00+00:00",
    }, "error": None}
    after = ask(triggerer, "weekly", {"start": "2026-12-04T00:00:00+00:00", "end": "2026-12-05T00:00:00+00:00"})
    assert after["next"]["data_interval_start"] == "2026-12-07T00:00:00+00:00"
    # Past the DAG's end date: no more runs.
    done = ask(triggerer, "weekly", {"start": "2026-12-30T00:00:00+00:00", "end": "2026-12-31T00:00:01+00:00"})
    assert done == {"next": None, "error": None}


@pytest.mark.parametrize(
    ("dag_id", "expected"),
    [
        ("broken", "Broken.next_dagrun_info raised ValueError: no calendar"),
        ("odd", "Odd.next_dagrun_info returned 'tomorrow', not a DagRunInfo (or None)"),
        ("naive", "Naive.next_dagrun_info returned a naive datetime"),
        ("gone", "the DAG file dag.py no longer defines DAG 'gone'"),
    ],
)
def test_a_timetable_that_cannot_answer_says_why(triggerer: Triggerer, dag_id: str, expected: str) -> None:
    answer = ask(triggerer, dag_id, None)
    assert answer["next"] is None
    assert answer["error"].startswith(expected), answer


def test_airflow_s_own_workday_timetable_answers_as_in_airflow(tmp_path: Path) -> None:
    """The workday example's `AfterWorkdayTimetable`, read from the apache-airflow-core wheel and
    used as a module of the project, runs on the SDK's `DataInterval`, `TimeRestriction` and
    `DagRunInfo` (Airflow's example imports it from Airflow's own package, which Leoflow does
    not provide: its DAG file stays refused)."""
    import zipfile

    from test_airflow_examples import fetch_wheel

    with zipfile.ZipFile(fetch_wheel()) as wheel:
        (tmp_path / "workday.py").write_bytes(wheel.read("airflow/example_dags/plugins/workday.py"))
    source = (
        "import pendulum\nfrom airflow.sdk import DAG\nfrom workday import AfterWorkdayTimetable\n"
        "with DAG('workday', schedule=AfterWorkdayTimetable(), start_date=pendulum.datetime(2026, 12, 4, tz='UTC'), catchup=True):\n"
        "    pass\n"
    )
    (tmp_path / "dag.py").write_text(source)
    result = compile_file(tmp_path / "dag.py")
    assert result["ok"], result
    assert result["dags"][0]["schedule"]["class"] == "workday.AfterWorkdayTimetable"
    triggerer = Triggerer(tmp_path)
    try:
        restriction = {"earliest": "2026-12-04T00:00:00+00:00", "latest": None, "catchup": True}
        asked = []
        last = None
        for n in range(2):
            kwargs = {"dag_id": "workday", "fileloc": "dag.py", "source": source, "last": last, "restriction": restriction}
            triggerer.run(f"w{n}", TRIGGER, kwargs)
            answer = triggerer.next()["payload"]
            assert answer["error"] is None, answer
            asked.append(answer["next"])
            last = {"start": answer["next"]["data_interval_start"], "end": answer["next"]["data_interval_end"]}
    finally:
        assert triggerer.process.stdin is not None
        triggerer.process.stdin.close()
        triggerer.process.wait(timeout=10)
    # Friday 4 December, then (the weekend skipped) Monday 7 December.
    assert [a["data_interval_start"] for a in asked] == ["2026-12-04T00:00:00+00:00", "2026-12-07T00:00:00+00:00"]
    assert [a["run_after"] for a in asked] == ["2026-12-05T00:00:00+00:00", "2026-12-08T00:00:00+00:00"]
