"""`airflow.timetables.events`."""

from leoflow.timetables import EventsTimetable

__all__ = ["EventsTimetable"]
