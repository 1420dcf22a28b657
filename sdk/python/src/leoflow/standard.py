"""The standard provider's branching operators (`airflow.providers.standard`): `BaseBranchOperator`
for operators of the project that choose a branch, and Airflow's own `LatestOnlyOperator`,
`BranchDateTimeOperator` and `BranchDayOfWeekOperator`, with Airflow's semantics.

They run as custom operators do: the runner builds the task from the DAG file and calls
`execute`, which returns the chosen task ids (or task group ids); the other direct downstream
tasks are skipped.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable
from typing import Any

from leoflow.errors import DagDefinitionError
from leoflow.model import BaseOperator, _to_define


def direct_downstream(task: BaseOperator) -> list[str]:
    """The ids of the tasks directly downstream of `task`, sorted."""
    return sorted(t.task_id for t in task.dag.tasks.values() if task in t.upstream)


class BaseBranchOperator(BaseOperator):
    """Subclasses define `choose_branch(context)`: a task id, a task group id, a list of them, or
    None (every direct downstream task is skipped)."""

    custom_class = True
    branch = True
    airflow_module = "airflow.providers.standard.operators.branch"

    @_to_define
    def choose_branch(self, context: dict[str, Any]) -> str | Iterable[str] | None:
        """The task ids (or task group ids) to follow."""
        raise NotImplementedError(f"{type(self).__name__} does not define choose_branch(self, context)")

    def execute(self, context: dict[str, Any]) -> Any:
        return self.choose_branch(context)

    def downstream_task_ids(self) -> list[str]:
        """The ids of the tasks directly downstream of this one."""
        return direct_downstream(self)

    def get_direct_relative_ids(self, upstream: bool = False) -> set[str]:
        """Airflow's: the ids of the tasks directly upstream (or downstream) of this one."""
        if upstream:
            return {t.task_id for t in self.upstream}
        return set(self.downstream_task_ids())


class LatestOnlyOperator(BaseBranchOperator):
    """Skips the tasks directly downstream unless the run is the latest of its schedule (a
    manual run always is): its time window, from its data interval's start to the timetable's
    next logical date, holds now."""

    ui_color = "#e9ffdb"
    airflow_module = "airflow.providers.standard.operators.latest_only"

    def choose_branch(self, context: dict[str, Any]) -> list[str]:
        dag_run = context["dag_run"]
        downstream = self.downstream_task_ids()
        if dag_run.run_type == "manual":
            self.log.info("Manually triggered DAG_Run: allowing execution to proceed.")
            return downstream
        right = getattr(dag_run, "next_logical_date", None)
        if right is None:
            self.log.info("Last scheduled execution: allowing execution to proceed.")
            return downstream
        left = dag_run.data_interval_start or dag_run.logical_date or dag_run.run_after
        now = dt.datetime.now(dt.timezone.utc)
        self.log.info("Checking latest only with left_window: %s right_window: %s now: %s", left, right, now)
        if not left < now <= right:
            self.log.info("Not latest execution, skipping downstream.")
            return []
        self.log.info("Latest, allowing execution to proceed.")
        return downstream


def _now_or_logical_date(context: dict[str, Any], use_logical_date: bool) -> dt.datetime:
    if use_logical_date:
        when = context.get("logical_date") or context["dag_run"].run_after
        if when is not None:
            return when  # type: ignore[no-any-return]
    return dt.datetime.now(dt.timezone.utc)


def _in_zone(value: dt.datetime | None, dag: Any) -> dt.datetime | None:
    """A naive date in the DAG's time zone (its start date's), as Airflow coerces it."""
    if value is None or value.tzinfo is not None:
        return value
    start = getattr(dag, "start_date", None)
    zone = start.tzinfo if start is not None and start.tzinfo is not None else dt.timezone.utc
    return value.replace(tzinfo=zone)


def _target_dates(base: dt.datetime, lower: Any, upper: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Airflow's `target_times_as_dates`: times of day on `base`'s date, upper past lower."""
    if isinstance(lower, dt.datetime) and isinstance(upper, dt.datetime):
        return lower, upper
    if isinstance(lower, dt.time):
        lower = dt.datetime.combine(base, lower)
    if isinstance(upper, dt.time):
        upper = dt.datetime.combine(base, upper)
    if lower is not None and upper is not None and upper < lower:
        upper += dt.timedelta(days=1)
    return lower, upper


class BranchDateTimeOperator(BaseBranchOperator):
    """Follows `follow_task_ids_if_true` when now (or the run's logical date) lies between
    `target_lower` and `target_upper` (dates, or times of day), else `follow_task_ids_if_false`."""

    airflow_module = "airflow.providers.standard.operators.datetime"

    def __init__(
        self,
        *,
        follow_task_ids_if_true: str | Iterable[str],
        follow_task_ids_if_false: str | Iterable[str],
        target_lower: dt.datetime | dt.time | None,
        target_upper: dt.datetime | dt.time | None,
        use_task_logical_date: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if target_lower is None and target_upper is None:
            raise DagDefinitionError(
                f"BranchDateTimeOperator {self.task_id!r}: both target_upper and target_lower are None; "
                "at least one must be given to compare the current date with"
            )
        self.target_lower = target_lower
        self.target_upper = target_upper
        self.follow_task_ids_if_true = follow_task_ids_if_true
        self.follow_task_ids_if_false = follow_task_ids_if_false
        self.use_task_logical_date = use_task_logical_date

    def choose_branch(self, context: dict[str, Any]) -> str | Iterable[str]:
        now = _now_or_logical_date(context, self.use_task_logical_date)
        lower, upper = _target_dates(now, self.target_lower, self.target_upper)
        lower, upper = _in_zone(lower, self.dag), _in_zone(upper, self.dag)
        if upper is not None and upper < now:
            return self.follow_task_ids_if_false
        if lower is not None and lower > now:
            return self.follow_task_ids_if_false
        return self.follow_task_ids_if_true


@enum.unique
class WeekDay(enum.IntEnum):
    """The days of the week, by ISO number (`airflow.providers.standard.utils.weekday`)."""

    MONDAY = 1
    TUESDAY = 2
    WEDNESDAY = 3
    THURSDAY = 4
    FRIDAY = 5
    SATURDAY = 6
    SUNDAY = 7

    @classmethod
    def get_weekday_number(cls, week_day_str: str) -> int:
        """The ISO number of a day's full name ("Sunday")."""
        name = week_day_str.upper()
        if name not in cls.__members__:
            raise DagDefinitionError(f'Invalid Week Day passed: "{week_day_str}"')
        return cls[name].value

    @classmethod
    def convert(cls, day: str | WeekDay) -> int:
        """A day's ISO number."""
        return day.value if isinstance(day, WeekDay) else cls.get_weekday_number(day)

    @classmethod
    def validate_week_day(cls, week_day: Any) -> set[int]:
        """The ISO numbers of one day or several (names or `WeekDay`s)."""
        if isinstance(week_day, (str, WeekDay)):
            week_day = {week_day}
        if not isinstance(week_day, Iterable):
            raise DagDefinitionError(
                f"week_day must be a day's name, a WeekDay, or several of them, not {type(week_day).__name__}"
            )
        return {cls.convert(day) for day in week_day}


class BranchDayOfWeekOperator(BaseBranchOperator):
    """Follows `follow_task_ids_if_true` on the given days of the week (of now in the DAG's time
    zone, or of the run's logical date), else `follow_task_ids_if_false`."""

    airflow_module = "airflow.providers.standard.operators.weekday"

    def __init__(
        self,
        *,
        follow_task_ids_if_true: str | Iterable[str],
        follow_task_ids_if_false: str | Iterable[str],
        week_day: str | Iterable[str] | WeekDay | Iterable[WeekDay],
        use_task_logical_date: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.follow_task_ids_if_true = follow_task_ids_if_true
        self.follow_task_ids_if_false = follow_task_ids_if_false
        self.week_day = week_day
        self.use_task_logical_date = use_task_logical_date
        self._week_day_numbers = WeekDay.validate_week_day(week_day)

    def choose_branch(self, context: dict[str, Any]) -> str | Iterable[str]:
        now = _now_or_logical_date(context, self.use_task_logical_date)
        if not self.use_task_logical_date:
            start = getattr(self.dag, "start_date", None)
            if start is not None and start.tzinfo is not None:
                now = now.astimezone(start.tzinfo)
        if now.isoweekday() in self._week_day_numbers:
            return self.follow_task_ids_if_true
        return self.follow_task_ids_if_false
