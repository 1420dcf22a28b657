"""Setup and teardown tasks, written as in Airflow 3.2.

    create = BashOperator(task_id="create", bash_command="...").as_setup()
    delete = BashOperator(task_id="delete", bash_command="...").as_teardown(setups=create)
    create >> work >> delete

or with `@setup` / `@teardown`, and with a teardown as a context manager: the tasks made inside
`with delete:` (or `with create >> delete:`) run after its setups and before it.

The scheduler applies Airflow's rules (core/src/setup_teardown.rs): a teardown runs when what it
tears down is done, whatever its outcome; it does not decide its run's outcome unless
`on_failure_fail_dagrun=True`; a cleared task takes its setups and teardowns along.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from leoflow import context
from leoflow.errors import DagDefinitionError

if TYPE_CHECKING:
    from leoflow.model import DAG, BaseOperator

#: The trigger rule every teardown has (Airflow's; a teardown's cannot be chosen).
TEARDOWN_RULE = "all_done_setup_success"


def operators_of(value: Any, what: str) -> list[BaseOperator]:
    """The tasks `value` stands for: a task, a task's result, or a list of them."""
    from leoflow.model import BaseOperator, XComArg

    items = value if isinstance(value, (list, tuple)) else [value]
    found: list[BaseOperator] = []
    for item in items:
        if isinstance(item, XComArg):
            item = item.operator
        if not isinstance(item, BaseOperator):
            raise DagDefinitionError(f"{what} takes tasks or task results, not {item!r}")
        found.append(item)
    return found


def mark_setup(task: BaseOperator) -> None:
    """Makes `task` a setup task."""
    if task.is_teardown:
        raise DagDefinitionError(f"Cannot mark task {task.task_id!r} as setup; task is already a teardown.")
    task.is_setup = True


def mark_teardown(task: BaseOperator, setups: Any = None, on_failure_fail_dagrun: bool | None = None) -> None:
    """Makes `task` a teardown task (of `setups`, which become setups upstream of it)."""
    if task.is_setup:
        raise DagDefinitionError(f"Cannot mark task {task.task_id!r} as teardown; task is already a setup.")
    task.is_teardown = True
    task.trigger_rule = TEARDOWN_RULE
    if on_failure_fail_dagrun is not None:
        task.on_failure_fail_dagrun = bool(on_failure_fail_dagrun)
    if setups is not None:
        for setup in operators_of(setups, f"as_teardown(setups=...) of {task.task_id!r}"):
            mark_setup(setup)
            task._add_upstream(setup)


def check(dag: DAG) -> None:
    """Refuses what Airflow's DAG validation refuses about setups and teardowns."""
    for task in dag.tasks.values():
        if task.on_failure_fail_dagrun and not task.is_teardown:
            raise DagDefinitionError(
                f"Cannot set task on_failure_fail_dagrun for {task.task_id!r} because it is not a teardown task."
            )
        if task.is_teardown and task.trigger_rule != TEARDOWN_RULE:
            raise DagDefinitionError(f"Trigger rule not configurable for teardown tasks ({task.task_id!r}).")
        if task.is_teardown or task.trigger_rule == "all_success":
            continue
        if any(up.is_setup for up in task.upstream):
            raise DagDefinitionError(
                f"Setup tasks must be followed with trigger rule ALL_SUCCESS: {task.task_id!r} has "
                f"trigger rule {task.trigger_rule!r}."
            )


@dataclass
class _Bracket:
    """One `with` block on setup or teardown tasks: the tasks made inside it are its work."""

    setups: list[BaseOperator]
    teardowns: list[BaseOperator]
    work: list[BaseOperator] = field(default_factory=list)


def enter(value: Any) -> None:
    """`with task:` on a setup or teardown task (or its result)."""
    operators = operators_of(value, "with")
    if all(t.is_teardown for t in operators):
        setups = [up for t in operators for up in t.upstream if up.is_setup]
        context.setup_blocks.append(_Bracket(setups=_unique(setups), teardowns=operators))
    elif all(t.is_setup for t in operators):
        teardowns = [down for t in operators for down in t.dag.downstream_of(t) if down.is_teardown]
        context.setup_blocks.append(_Bracket(setups=operators, teardowns=_unique(teardowns)))
    else:
        raise DagDefinitionError("Only setup/teardown tasks can be used as context managers.")


def track(task: BaseOperator) -> None:
    """Records a task made inside the innermost open block."""
    if context.setup_blocks:
        context.setup_blocks[-1].work.append(task)


def leave() -> None:
    """The end of a `with` block: its work goes between its setups and its teardowns, and a
    block inside another goes between the outer block's setups and teardowns."""
    bracket: _Bracket = context.setup_blocks.pop()
    work = [t for t in bracket.work if not t.is_setup and not t.is_teardown]
    if work:
        dag = work[0].dag
        leaves = [t for t in work if not dag.downstream_of(t)] or [work[-1]]
        roots = [t for t in work if not t.upstream] or [work[0]]
        for teardown in bracket.teardowns:
            for leaf in leaves:
                teardown._add_upstream(leaf)
        for root in roots:
            for setup in bracket.setups:
                root._add_upstream(setup)
    if context.setup_blocks:
        outer: _Bracket = context.setup_blocks[-1]
        for inner_setup in bracket.setups:
            for setup in outer.setups:
                inner_setup._add_upstream(setup)
        for teardown in outer.teardowns:
            for inner_teardown in bracket.teardowns:
                teardown._add_upstream(inner_teardown)


def _unique(tasks: list[BaseOperator]) -> list[BaseOperator]:
    return list(dict.fromkeys(tasks))


def decorate(function: Any, what: str, **marks: Any) -> Any:
    """`@setup` / `@teardown` on a function or a `@task` function."""
    from leoflow.decorators import TaskFunction, TaskGroupFunction, task

    if isinstance(function, TaskGroupFunction):
        raise DagDefinitionError("Task groups cannot be marked as setup or teardown.")
    if not isinstance(function, TaskFunction):
        if not callable(function):
            raise DagDefinitionError(f"@{what} decorates functions, not {function!r}")
        function = task(function)
    if "trigger_rule" in function.task_kwargs and marks.get("is_teardown"):
        raise DagDefinitionError("Trigger rule not configurable for teardown tasks.")
    return function.marked(**marks)


def setup(function: Callable[..., Any]) -> Any:
    """`@setup`: the function's tasks are setup tasks."""
    return decorate(function, "setup", is_setup=True)


def teardown(function: Callable[..., Any] | None = None, *, on_failure_fail_dagrun: bool = False) -> Any:
    """`@teardown` or `@teardown(on_failure_fail_dagrun=True)`: the function's tasks are teardowns."""
    if function is None:
        return lambda f: decorate(f, "teardown", is_teardown=True, on_failure_fail_dagrun=on_failure_fail_dagrun)
    return decorate(function, "teardown", is_teardown=True, on_failure_fail_dagrun=on_failure_fail_dagrun)

