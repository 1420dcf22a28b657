"""Airflow's built-in timetables compile into dag.json's `schedule`; timetables Leoflow cannot run
are refused, naming them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from test_compiler import compile_source, error, only_dag

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "docs" / "dag-json.schema.json").read_text())


def schedule_of(tmp_path: Path, imports: str, schedule: str) -> dict[str, Any]:
    dag = only_dag(compile_source(tmp_path, (
        f"import datetime, pendulum\n{imports}\n"
        "from airflow.sdk import DAG\n"
        f"with DAG('t', schedule={schedule}, start_date=pendulum.datetime(2026, 1, 1, tz='Europe/Amsterdam')):\n"
        "    pass\n"
    )))
    return {"schedule": dag["schedule"], "summary": dag["timetable_summary"]}


CASES = [
    ("cron trigger", "from airflow.sdk import CronTriggerTimetable",
     "CronTriggerTimetable('0 6 * * 1-5', timezone='America/New_York', interval=datetime.timedelta(hours=2))",
     {"type": "cron", "expression": "0 6 * * 1-5", "timezone": "America/New_York", "interval": 7200.0,
      "run_immediately": False}, "0 6 * * 1-5"),
    ("cron trigger from a preset and a zone object", "from airflow.timetables.trigger import CronTriggerTimetable",
     "CronTriggerTimetable('@daily', timezone=pendulum.timezone('Europe/Paris'), run_immediately=datetime.timedelta(minutes=10))",
     {"type": "cron", "expression": "0 0 * * *", "timezone": "Europe/Paris", "interval": 0.0,
      "run_immediately": 600.0}, "0 0 * * *"),
    ("cron data intervals", "from airflow.timetables.interval import CronDataIntervalTimetable",
     "CronDataIntervalTimetable('0 0 * * *', 'UTC')",
     {"type": "cron", "expression": "0 0 * * *", "timezone": "UTC", "data_intervals": True}, "0 0 * * *"),
    ("delta trigger", "from airflow.sdk import DeltaTriggerTimetable",
     "DeltaTriggerTimetable(datetime.timedelta(hours=6), interval=datetime.timedelta(hours=1))",
     {"type": "timedelta", "seconds": 21600.0, "interval": 3600.0}, "6:00:00"),
    ("delta data intervals", "from airflow.sdk import DeltaDataIntervalTimetable",
     "DeltaDataIntervalTimetable(datetime.timedelta(days=1))",
     {"type": "timedelta", "seconds": 86400.0, "data_intervals": True}, "1 day, 0:00:00"),
    ("multiple crons", "from airflow.sdk import MultipleCronTriggerTimetable",
     "MultipleCronTriggerTimetable('0 9 * * *', '30 17 * * FRI', timezone='UTC')",
     {"type": "multiple_cron", "expressions": ["0 9 * * *", "30 17 * * FRI"], "timezone": "UTC",
      "interval": 0.0, "run_immediately": False}, "0 9 * * *, 30 17 * * FRI"),
    ("events", "from airflow.timetables.events import EventsTimetable",
     "EventsTimetable([pendulum.datetime(2026, 3, 1, 12, tz='Europe/Amsterdam'), datetime.datetime(2026, 2, 1)],"
     " restrict_to_events=True)",
     {"type": "events", "events": ["2026-02-01T00:00:00Z", "2026-03-01T11:00:00Z"], "restrict_to_events": True,
      "description": None}, "2 events"),
    ("events described", "from airflow.sdk import EventsTimetable",
     "EventsTimetable([], description='Match days')",
     {"type": "events", "events": [], "restrict_to_events": False, "description": "Match days"}, "Match days"),
    ("null", "from airflow.timetables.simple import NullTimetable", "NullTimetable()", {"type": "none"}, None),
    ("once", "from airflow.timetables.simple import OnceTimetable", "OnceTimetable()", {"type": "once"}, "@once"),
]


@pytest.mark.parametrize(("imports", "schedule", "expected", "summary"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_built_in_timetables_compile_into_the_schedule(
    tmp_path: Path, imports: str, schedule: str, expected: dict[str, Any], summary: str | None
) -> None:
    got = schedule_of(tmp_path, imports, schedule)
    assert got == {"schedule": expected, "summary": summary}
    # dag.json's schema knows the form, as one of its time-based schedules.
    one_of = SCHEMA["$defs"]["time_schedule"]["oneOf"]
    assert sum(_valid(expected, form) for form in one_of) == 1


def _valid(instance: dict[str, Any], schema: dict[str, Any]) -> bool:
    try:
        jsonschema.validate(instance, schema)
    except jsonschema.ValidationError:
        return False
    return True


BAD = [
    ("custom timetable",
     "from airflow.timetables.base import Timetable\nclass Workday(Timetable):\n    pass\n", "Workday()",
     "UnsupportedConstruct", "custom timetable Workday without next_dagrun_info is not supported by Leoflow"),
    ("continuous", "from airflow.timetables.simple import ContinuousTimetable\n", "ContinuousTimetable()",
     "UnsupportedConstruct", "ContinuousTimetable is not supported"),
    ("relativedelta", "from airflow.sdk import DeltaTriggerTimetable\nclass relativedelta:\n    pass\n",
     "DeltaTriggerTimetable(relativedelta())", "UnsupportedConstruct", "delta=relativedelta(...) is not supported"),
    ("bad zone", "from airflow.sdk import CronTriggerTimetable\n",
     "CronTriggerTimetable('0 * * * *', timezone='Mars/Olympus')", "DagDefinitionError",
     "timezone 'Mars/Olympus' is not an IANA time zone name"),
    ("bad cron", "from airflow.sdk import CronTriggerTimetable\n",
     "CronTriggerTimetable('0 25 * * *', timezone='UTC')", "DagDefinitionError", "hour field '25' is out of range"),
    ("negative interval", "from airflow.sdk import CronTriggerTimetable\n",
     "CronTriggerTimetable('0 * * * *', timezone='UTC', interval=datetime.timedelta(hours=-1))",
     "DagDefinitionError", "interval must be zero or more"),
    ("zero delta", "from airflow.sdk import DeltaDataIntervalTimetable\n",
     "DeltaDataIntervalTimetable(datetime.timedelta(0))", "DagDefinitionError", "delta must be positive"),
    ("no crons", "from airflow.sdk import MultipleCronTriggerTimetable\n",
     "MultipleCronTriggerTimetable(timezone='UTC')", "DagDefinitionError", "needs at least one cron expression"),
    ("bad run_immediately", "from airflow.sdk import CronTriggerTimetable\n",
     "CronTriggerTimetable('0 * * * *', timezone='UTC', run_immediately='soon')", "DagDefinitionError",
     "run_immediately must be True, False or a datetime.timedelta"),
    ("not a date", "from airflow.sdk import EventsTimetable\n", "EventsTimetable(['2026-01-01'])",
     "DagDefinitionError", "event_dates must be datetimes"),
]


@pytest.mark.parametrize(("imports", "schedule", "kind", "message"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_timetables_leoflow_cannot_run_are_refused_naming_them(
    tmp_path: Path, imports: str, schedule: str, kind: str, message: str
) -> None:
    err = error(compile_source(tmp_path, (
        f"import datetime\n{imports}\nfrom airflow.sdk import DAG\nwith DAG('t', schedule={schedule}):\n    pass\n"
    )))
    assert err["kind"] == kind, err
    assert message in err["message"], err


@pytest.mark.parametrize("name", ["CronPartitionTimetable", "PartitionedAssetTimetable"])
def test_airflow_s_partition_timetables_are_refused_with_a_hint(tmp_path: Path, name: str) -> None:
    err = error(compile_source(tmp_path, f"from airflow.sdk import {name}\n"))
    assert err["kind"] == "UnsupportedConstruct", err
    assert f"airflow.sdk.{name} is not supported by Leoflow: " in err["message"], err
    assert "docs/authoring.md" not in err["message"], err
