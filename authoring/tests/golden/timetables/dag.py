"""Airflow's built-in timetables, one DAG each."""

import datetime

import pendulum
from airflow.sdk import (
    DAG,
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    DeltaDataIntervalTimetable,
    DeltaTriggerTimetable,
    EventsTimetable,
    MultipleCronTriggerTimetable,
)
from airflow.providers.standard.operators.empty import EmptyOperator

START = pendulum.datetime(2026, 1, 1, tz="Europe/Amsterdam")

TIMETABLES = {
    "cron_trigger": CronTriggerTimetable(
        "0 6 * * MON-FRI", timezone="America/New_York", interval=datetime.timedelta(hours=1)
    ),
    "cron_intervals": CronDataIntervalTimetable("@daily", timezone="Europe/Amsterdam"),
    "delta_trigger": DeltaTriggerTimetable(datetime.timedelta(hours=4), interval=datetime.timedelta(hours=4)),
    "delta_intervals": DeltaDataIntervalTimetable(datetime.timedelta(minutes=30)),
    "two_crons": MultipleCronTriggerTimetable(
        "0 9 * * *", "0 17 * * *", timezone="UTC", run_immediately=datetime.timedelta(minutes=10)
    ),
    "match_days": EventsTimetable(
        [pendulum.datetime(2026, 5, 2, 15, tz="Europe/London"), pendulum.datetime(2026, 4, 4, 15, tz="Europe/London")],
        restrict_to_events=True,
        description="Match days",
    ),
}

for dag_id, timetable in TIMETABLES.items():
    with DAG(dag_id, schedule=timetable, start_date=START, catchup=False):
        EmptyOperator(task_id="run")
