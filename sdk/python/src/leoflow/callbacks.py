"""A task's callbacks, as Airflow 3's task runner calls them: `on_execute_callback` before the
task's work, then by how the try ended `on_success_callback`, `on_skipped_callback`,
`on_retry_callback` (a failure with tries left) or `on_failure_callback`, each with the task's
context (with `exception` for a failure). A callback that raises is logged in the try's log and
never changes the try's outcome. As in Airflow, a callback may be a generator yielding `Metadata`
(only `on_execute_callback`'s counts: the others run once the outcome is decided). Callbacks run
in the try's process; for a try whose process is killed (its timeout, a crash, a lost agent or
pod) the scheduler has the triggerer run its failure or retry callbacks (`leoflow.dag_callbacks`).
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from leoflow.asset_events import call_collecting

#: The callback of each way a try ends (a failure depends on whether tries are left).
ENDINGS = {"success": "on_success_callback", "skipped": "on_skipped_callback"}


def call(task: Any, name: str, context: dict[str, Any]) -> None:
    """Calls the task's callbacks `name`, logging (not raising) their errors."""
    for function in (getattr(task, "callbacks", None) or {}).get(name, []):
        try:
            call_collecting(function, context.get("outlet_events"), context)
        except Exception:  # noqa: BLE001 - a callback never fails the task
            print(f"[leoflow] {name} {getattr(function, '__qualname__', function)!r} failed:", file=sys.stderr, flush=True)
            traceback.print_exc()


def ending(outcome: str, try_number: int, retries: int) -> str | None:
    """The callback of a try that ended with `outcome` (the runner's outcome names)."""
    if outcome == "failed":
        return "on_retry_callback" if try_number <= retries else "on_failure_callback"
    if outcome == "failed_no_retry":
        return "on_failure_callback"
    return ENDINGS.get(outcome)
