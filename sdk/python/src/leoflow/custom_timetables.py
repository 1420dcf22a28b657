"""Timetables of the project's own (subclasses of Airflow's `Timetable`), as Airflow's scheduler
uses them: the scheduler asks `next_dagrun_info(last_automated_data_interval=…,
restriction=…)` for a DAG's next run, through the triggerer (`NextDagRunTrigger`), each time
the previous one was queued. The DAG file runs again (once per source) and its timetable object
answers, so a timetable may live in the DAG file or in a module of the project.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

from leoflow import dag_files, runner
from leoflow.timetables import DataInterval, Timetable, TimeRestriction
from leoflow.triggers import BaseTrigger, TriggerEvent

#: As long as a DAG file may take to load, a timetable gets to answer.
TIMEOUT_SECONDS = 50.0


class TimetableError(Exception):
    """Why the timetable gave no answer (said to the control plane)."""


class NextDagRunTrigger(BaseTrigger):
    """Asks DAG `dag_id`'s timetable for the run after `last` (`{"start", "end"}`, null before
    the first) within `restriction` (`{"earliest", "latest", "catchup"}`), and fires with
    `{"next": {"run_after", "data_interval_start", "data_interval_end"} | null, "error"}`."""

    def __init__(
        self,
        *,
        dag_id: str,
        fileloc: str,
        source: str,
        last: dict[str, str] | None,
        restriction: dict[str, Any],
    ) -> None:
        super().__init__()
        self.dag_id, self.fileloc, self.source = dag_id, fileloc, source
        self.last, self.restriction = last, restriction

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return "leoflow.custom_timetables.NextDagRunTrigger", {
            "dag_id": self.dag_id, "fileloc": self.fileloc, "source": self.source,
            "last": self.last, "restriction": self.restriction,
        }

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            answer = await asyncio.wait_for(asyncio.to_thread(self._next), TIMEOUT_SECONDS)
            yield TriggerEvent({"next": answer, "error": None})
        except (TimetableError, dag_files.DagFileError) as error:
            # Said once, by the control plane, with the DAG's name.
            yield TriggerEvent({"next": None, "error": str(error)})
        except TimeoutError:
            yield TriggerEvent({"next": None, "error": f"next_dagrun_info did not return within {TIMEOUT_SECONDS:g} s"})

    def _next(self) -> dict[str, str] | None:
        dag = dag_files.dag(self.fileloc, self.source, self.dag_id)
        timetable = dag.schedule
        if not isinstance(timetable, Timetable):
            raise TimetableError(f"DAG {self.dag_id!r} no longer has a timetable of its own")
        last = None
        if self.last is not None:
            last = DataInterval(start=_instant(self.last["start"]), end=_instant(self.last["end"]))
        restriction = TimeRestriction(
            earliest=_instant(self.restriction.get("earliest")),
            latest=_instant(self.restriction.get("latest")),
            catchup=bool(self.restriction.get("catchup")),
        )
        name = f"{type(timetable).__qualname__}.next_dagrun_info"
        try:
            info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        except Exception as error:  # noqa: BLE001 - the timetable's failure is said, with its traceback
            import traceback

            raise TimetableError(f"{name} raised {type(error).__name__}: {error}\n{traceback.format_exc()}") from None
        if info is None:
            return None
        return _run(name, info)


def _instant(value: Any) -> Any:
    return runner.parse_instant(value) if value else None


def _run(name: str, info: Any) -> dict[str, str]:
    """What `next_dagrun_info` returned, as the scheduler reads it."""
    interval = getattr(info, "data_interval", None)
    run_after = getattr(info, "run_after", None)
    start, end = getattr(interval, "start", None), getattr(interval, "end", None)
    if not all(isinstance(at, dt.datetime) for at in (run_after, start, end)):
        raise TimetableError(f"{name} returned {info!r}, not a DagRunInfo (or None)")
    for at in (run_after, start, end):
        if at.tzinfo is None:  # type: ignore[union-attr]
            raise TimetableError(f"{name} returned a naive datetime in {info!r}: give it a time zone")
    iso = {key: at.astimezone(dt.timezone.utc).isoformat() for key, at in (("run_after", run_after), ("data_interval_start", start), ("data_interval_end", end))}  # type: ignore[union-attr]
    return iso
