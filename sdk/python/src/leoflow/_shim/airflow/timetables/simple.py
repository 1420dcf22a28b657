"""`airflow.timetables.simple`."""

from leoflow.timetables import ContinuousTimetable, NullTimetable, OnceTimetable

__all__ = ["ContinuousTimetable", "NullTimetable", "OnceTimetable"]
