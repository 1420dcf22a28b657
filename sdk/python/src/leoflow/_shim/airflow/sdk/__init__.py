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
from leoflow.asset_decorator import asset
from leoflow.assets import Asset, AssetAlias, AssetAll, AssetAny, AssetOrTimeSchedule, AssetWatcher, Metadata
from leoflow.errors import UnsupportedConstruct
from leoflow.objectstorage import ObjectStoragePath
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

_PARTITIONS = "partitioned asset runs are not supported; schedule on the assets (a list of them, or a condition with & and |)"
_HINTS = {
    "CronPartitionTimetable": "partitioned runs are not supported; use CronTriggerTimetable",
    "PartitionedAssetTimetable": _PARTITIONS,
    **{
        mapper: _PARTITIONS
        for mapper in (
            "PartitionMapper", "IdentityMapper", "AllowedKeyMapper", "ChainMapper", "ProductMapper",
            "StartOfHourMapper", "StartOfDayMapper", "StartOfWeekMapper", "StartOfMonthMapper",
            "StartOfQuarterMapper", "StartOfYearMapper",
        )
    },
}


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.sdk.{name}", _HINTS.get(name, "see docs/authoring.md for what is supported"))


__all__ = [
    "Asset",
    "AssetAlias",
    "AssetAll",
    "AssetAny",
    "AssetWatcher",
    "AssetOrTimeSchedule",
    "Connection",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "DeltaDataIntervalTimetable",
    "DeltaTriggerTimetable",
    "EventsTimetable",
    "MultipleCronTriggerTimetable",
    "Metadata",
    "ObjectStoragePath",
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
    "asset",
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
