"""`airflow.timetables.assets`."""

from leoflow.assets import AssetOrTimeSchedule

__all__ = ["AssetOrTimeSchedule"]
