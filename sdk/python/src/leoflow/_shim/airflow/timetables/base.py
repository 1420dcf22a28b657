"""`airflow.timetables.base`: the timetables' base class. A subclass of the project's own is
refused when its DAG is compiled."""

from leoflow.timetables import Timetable

__all__ = ["Timetable"]


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    from leoflow.errors import UnsupportedConstruct

    raise UnsupportedConstruct(
        f"airflow.timetables.base.{name}",
        "a timetable of the project's own cannot run in Leoflow's scheduler; use one of Airflow's built-in "
        "timetables",
    )
