"""`airflow.sdk`, as far as Leoflow supports it."""

from leoflow import (
    DAG,
    BaseOperator,
    Label,
    Param,
    TaskGroup,
    TriggerRule,
    XComArg,
    chain,
    cross_downstream,
    dag,
    task,
    task_group,
)
from leoflow.errors import UnsupportedConstruct
from leoflow.runtime import Connection, PokeReturnValue, Variable, get_current_context
from leoflow import timezone
from leoflow.sensors import BaseSensorOperator
from leoflow.setup_teardown import setup, teardown
from leoflow.timetables import (
    CronDataIntervalTimetable,
    CronTriggerTimetable,
    DeltaDataIntervalTimetable,
    DeltaTriggerTimetable,
    EventsTimetable,
    MultipleCronTriggerTimetable,
)

_HINTS = {
    "Asset": "asset-driven scheduling is not supported yet; use a cron or timedelta schedule",
    "AssetAlias": "asset-driven scheduling is not supported yet",
    "asset": "asset-driven scheduling is not supported yet",
    "AssetOrTimeSchedule": "asset-driven scheduling is not supported yet; use one of Airflow's time-based timetables",
    "CronPartitionTimetable": "partitioned runs are not supported; use CronTriggerTimetable",
    "PartitionedAssetTimetable": "asset-driven scheduling is not supported yet",
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.sdk.{name}", _HINTS.get(name, "see docs/authoring.md for what is supported"))


__all__ = [
    "Connection",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "DeltaDataIntervalTimetable",
    "DeltaTriggerTimetable",
    "EventsTimetable",
    "MultipleCronTriggerTimetable",
    "DAG",
    "BaseOperator",
    "BaseSensorOperator",
    "Label",
    "Param",
    "PokeReturnValue",
    "TaskGroup",
    "TriggerRule",
    "Variable",
    "XComArg",
    "chain",
    "cross_downstream",
    "dag",
    "get_current_context",
    "setup",
    "task",
    "task_group",
    "teardown",
    "timezone",
]
