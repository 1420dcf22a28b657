"""Setup and teardown tasks as dag.json records them: `as_setup()`, `as_teardown(setups=...)`,
`@setup`, `@teardown`, a teardown as a context manager, and what Airflow refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_compiler import compile_source, error, only_dag, tasks

HEAD = """
from airflow.sdk import DAG, setup, task, task_group, teardown
from airflow.providers.standard.operators.bash import BashOperator
"""


def compiled(tmp_path: Path, body: str) -> dict[str, dict[str, Any]]:
    return tasks(only_dag(compile_source(tmp_path, HEAD + body)))


def marks(task: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(task.get(k) for k in ("is_setup", "is_teardown", "on_failure_fail_dagrun"))


def test_classic_operators_become_setups_and_teardowns(tmp_path: Path) -> None:
    found = compiled(
        tmp_path,
        """
with DAG("d", schedule=None):
    create = BashOperator(task_id="create", bash_command="echo c").as_setup()
    work = BashOperator(task_id="work", bash_command="echo w")
    delete = BashOperator(task_id="delete", bash_command="echo d").as_teardown(setups=create, on_failure_fail_dagrun=True)
    create >> work >> delete
""",
    )
    assert marks(found["create"]) == (True, None, None)
    assert marks(found["work"]) == (None, None, None)
    assert marks(found["delete"]) == (None, True, True)
    assert found["delete"]["trigger_rule"] == "all_done_setup_success"
    assert found["delete"]["upstream"] == ["create", "work"]


def test_decorated_functions_and_a_teardown_as_context_manager(tmp_path: Path) -> None:
    found = compiled(
        tmp_path,
        """
with DAG("d", schedule=None):
    @setup
    def create():
        return "cluster"

    @teardown(on_failure_fail_dagrun=True)
    def delete(cluster):
        pass

    @task
    def first():
        pass

    @task
    def second():
        pass

    with delete(create()):
        first() >> second()
""",
    )
    assert marks(found["create"]) == (True, None, None)
    assert marks(found["delete"]) == (None, True, True)
    # The block's work goes between the setup and the teardown.
    assert found["first"]["upstream"] == ["create"]
    assert found["second"]["upstream"] == ["first"]
    assert found["delete"]["upstream"] == ["create", "second"]


def test_nested_blocks_chain_setups_and_teardowns(tmp_path: Path) -> None:
    found = compiled(
        tmp_path,
        """
with DAG("d", schedule=None):
    outer_s = BashOperator(task_id="outer_s", bash_command="echo").as_setup()
    outer_t = BashOperator(task_id="outer_t", bash_command="echo").as_teardown(setups=outer_s)
    inner_s = BashOperator(task_id="inner_s", bash_command="echo").as_setup()
    inner_t = BashOperator(task_id="inner_t", bash_command="echo").as_teardown(setups=inner_s)
    with outer_s >> outer_t:
        BashOperator(task_id="outer_work", bash_command="echo")
        with inner_t:
            BashOperator(task_id="inner_work", bash_command="echo")
""",
    )
    assert found["inner_work"]["upstream"] == ["inner_s"]
    assert found["inner_t"]["upstream"] == ["inner_s", "inner_work"]
    # The inner bracket sits inside the outer one.
    assert found["inner_s"]["upstream"] == ["outer_s"]
    assert "inner_t" in found["outer_t"]["upstream"]
    assert found["outer_work"]["upstream"] == ["outer_s"]


def test_a_taskflow_result_marks_its_task(tmp_path: Path) -> None:
    found = compiled(
        tmp_path,
        """
with DAG("d", schedule=None):
    @task
    def a():
        pass

    @task
    def b():
        pass

    first, last = a(), b()
    first >> last.as_teardown(setups=first)
""",
    )
    assert marks(found["a"]) == (True, None, None)
    assert marks(found["b"]) == (None, True, None)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            """
with DAG("d", schedule=None):
    s = BashOperator(task_id="s", bash_command="echo").as_setup()
    w = BashOperator(task_id="w", bash_command="echo", trigger_rule="all_done")
    s >> w
""",
            "Setup tasks must be followed with trigger rule ALL_SUCCESS",
        ),
        (
            """
with DAG("d", schedule=None):
    first = BashOperator(task_id="first", bash_command="echo").as_setup()
    second = BashOperator(task_id="second", bash_command="echo", trigger_rule="one_success").as_setup()
    first >> second
""",
            "Setup tasks must be followed with trigger rule ALL_SUCCESS: 'second'",
        ),
        (
            """
with DAG("d", schedule=None):
    BashOperator(task_id="s", bash_command="echo").as_setup().as_teardown()
""",
            "Cannot mark task 's' as teardown; task is already a setup.",
        ),
        (
            """
with DAG("d", schedule=None):
    BashOperator(task_id="w", bash_command="echo").on_failure_fail_dagrun = True
""",
            "Cannot set task on_failure_fail_dagrun for 'w' because it is not a teardown task.",
        ),
        (
            """
@teardown
def t():
    pass

with DAG("d", schedule=None):
    t.override(trigger_rule="all_success")()
""",
            "Trigger rule not configurable for teardown tasks",
        ),
        (
            """
with DAG("d", schedule=None):
    with BashOperator(task_id="w", bash_command="echo"):
        pass
""",
            "Only setup/teardown tasks can be used as context managers.",
        ),
        (
            """
@task_group
def g():
    pass

setup(g)
""",
            "Task groups cannot be marked as setup or teardown.",
        ),
    ],
)
def test_what_airflow_refuses_is_refused(tmp_path: Path, body: str, message: str) -> None:
    assert message in error(compile_source(tmp_path, HEAD + body))["message"]
