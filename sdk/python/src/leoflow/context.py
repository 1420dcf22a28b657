"""State of one compilation: the file being run, the open DAG and task-group blocks, the DAGs seen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from leoflow.errors import caller_location

if TYPE_CHECKING:
    from leoflow.model import DAG, TaskGroup

#: Path of the DAG file being compiled (as its code objects name it).
dag_file: str | None = None
#: Every DAG created while the file ran, in creation order.
dags: list[DAG] = []
#: Open `with DAG(...)` blocks, innermost last.
dag_stack: list[DAG] = []
#: Open task groups, innermost last.
group_stack: list[TaskGroup] = []
#: Open `with` blocks on setup or teardown tasks, innermost last (`leoflow.setup_teardown`).
setup_blocks: list[Any] = []
#: Whether a mapped task is being built for one map index (it is not added to its DAG again).
unmapping = False


def reset(file: str | None) -> None:
    """Starts a fresh compilation of `file`."""
    global dag_file
    dag_file = file
    dags.clear()
    dag_stack.clear()
    group_stack.clear()
    setup_blocks.clear()


def line() -> int | None:
    """The line of the DAG file that is executing now."""
    return caller_location(dag_file)
