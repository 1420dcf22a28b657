"""`airflow.plugins_manager`: a module may define Airflow plugins (the workday example's module
registers its timetable with one). Leoflow loads no plugins: a DAG uses a timetable of the
project's own by importing its class, which needs no registration; what else a plugin adds
(macros, listeners, operators' links) does not reach Leoflow."""

from __future__ import annotations

from typing import Any, ClassVar


class AirflowPlugin:
    """Airflow's plugin base class; its subclasses are defined, never loaded."""

    name: ClassVar[str | None] = None
    timetables: ClassVar[list[Any]] = []
    macros: ClassVar[list[Any]] = []
    listeners: ClassVar[list[Any]] = []
    operator_extra_links: ClassVar[list[Any]] = []
    priority_weight_strategies: ClassVar[list[Any]] = []
