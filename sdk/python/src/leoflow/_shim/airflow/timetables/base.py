"""`airflow.timetables.base`: the timetables' base class and the values a timetable of the
project's own works with; the scheduler asks its `next_dagrun_info` through the triggerer."""

from leoflow.timetables import DagRunInfo, DataInterval, Timetable, TimeRestriction

__all__ = ["DagRunInfo", "DataInterval", "TimeRestriction", "Timetable"]
