"""Mapped task groups (`@task_group` ... `.expand()`): what dag.json records, and what each map
index of a group's task receives when it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from task_harness import Agent, Project
from test_compiler import compile_source, error, only_dag, tasks

GROUPS = """
from airflow.sdk import task_group

with DAG("d", schedule=None):
    @task
    def nums():
        return [1, 2, 3]

    @task
    def add(n, step):
        return n + step

    @task
    def double(n):
        return n * 2

    @task
    def total(values):
        return sum(values)

    @task_group
    def literal(n):
        return double(add(n, 1))

    @task_group
    def over_result(n, step):
        return double.override(task_id="twice")(add(n, step))

    literal.expand(n=[1, 2, 3])
    total(over_result.partial(step=10).expand(n=nums()))

    @task_group
    def echoes(word):
        BashOperator(task_id="echo", bash_command=word)

    echoes.expand(word=["echo hi", "echo ho"])
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def test_a_mapped_group_s_tasks_record_the_group(tmp_path: Path) -> None:
    dag = only_dag(compile_source(tmp_path, "from airflow.sdk import DAG, task\n" + GROUPS.replace("BashOperator", "dict")))
    groups = {g["group_id"]: g for g in dag["task_groups"]}
    assert groups["literal"]["mapped"] == {"expand": {"n": [1, 2, 3]}, "expand_kwargs": None}
    found = tasks(dag)
    add = found["literal.add"]
    assert add["mapped"] is None
    assert add["mapped_group"] == {"group_id": "literal", "expand": {"n": [1, 2, 3]}, "tasks": ["literal.add", "literal.double"]}
    assert add["python"]["args"] == [{"__group_arg__": "n"}, 1]
    # A group mapped over a task's result: the tasks taking the argument depend on that task.
    assert found["over_result.add"]["upstream"] == ["nums"]
    # A `.partial()` argument is passed as it is, to every map index.
    assert found["over_result.add"]["python"]["args"] == [{"__group_arg__": "n"}, 10]
    assert found["over_result.add"]["mapped_group"]["expand"] == {"n": {"__xcom__": {"task_id": "nums", "key": "return_value"}}}
    assert found["over_result.twice"]["upstream"] == ["over_result.add"]
    assert found["total"]["upstream"] == ["over_result.twice"]


def test_each_map_index_receives_its_element_and_its_group_s_results(project: Project) -> None:
    outcome, agent = project.run(GROUPS, "literal.add", map_index=2)
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 4
    # Mapped over a task's result, with a fixed argument.
    agent = Agent(xcoms={("nums", "return_value"): [5, 6, 7]})
    outcome, agent = project.run(GROUPS, "over_result.add", agent=agent, map_index=1)
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 16
    # A group's task receives the result of its own map index of the group's other task.
    agent = Agent(xcoms={("over_result.add", "return_value", 0): 15, ("over_result.add", "return_value", 1): 16})
    outcome, agent = project.run(GROUPS, "over_result.twice", agent=agent, map_index=1)
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 32
    # A classic operator's template field takes the group's argument.
    outcome, agent = project.run(GROUPS, "echoes.echo", map_index=1)
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == "ho"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            """
@task_group
def inner(x):
    add(x)

@task_group
def outer(y):
    inner.expand(x=[1])

outer.expand(y=[1])
""",
            "a mapped task group ('outer.inner') inside a mapped task group is not supported",
        ),
        (
            """
@task_group
def g(x):
    add.expand(n=[1, 2])

g.expand(x=[1])
""",
            "a mapped task ('g.add') inside a mapped task group is not supported",
        ),
        ("""
@task_group
def g(x):
    add(x)

g.expand_kwargs([{"x": 1}])
""", "mapped task groups with .expand_kwargs() is not supported"),
        ("""
@task_group
def g(x):
    add(x)

g.expand(x=1)
""", "cannot map over x=1"),
    ],
)
def test_what_is_not_supported_is_named(tmp_path: Path, body: str, message: str) -> None:
    head = """
from airflow.sdk import DAG, task, task_group

with DAG("d", schedule=None):
    @task
    def add(n):
        return n
"""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    assert message in error(compile_source(tmp_path, head + indented + "\n"))["message"]
