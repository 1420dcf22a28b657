"""Custom operators (`BaseOperator` subclasses of the project), as Airflow runs them: compiled as
a reference to their class, built again from the DAG file when they run, their template fields
rendered, `pre_execute` / `execute` / `post_execute` called, the result pushed; mapped ones built
for each map index from their `.partial()` arguments and the index's values."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from task_harness import Agent, Project

from leoflow.compiler import compile_file
from leoflow.exceptions import AirflowSkipException
from leoflow.runner import TaskError

OPERATORS = """
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowSkipException


class AddOneOperator(BaseOperator):
    def __init__(self, value, **kwargs):
        super().__init__(**kwargs)
        self.value = value

    def execute(self, context):
        return self.value + 1


class SumItOperator(BaseOperator):
    template_fields = ("values",)
    ui_color = "#e8b7e4"

    def __init__(self, values, **kwargs):
        super().__init__(**kwargs)
        self.values = values

    def execute(self, context):
        return sum(self.values)


class GreetOperator(BaseOperator):
    template_fields = ("greeting", "script")
    template_ext = (".txt",)

    def __init__(self, greeting, script="", calls=None, **kwargs):
        super().__init__(**kwargs)
        self.greeting = greeting
        self.script = script
        self.calls = calls if calls is not None else []

    def pre_execute(self, context):
        self.calls.append("pre")

    def execute(self, context):
        self.calls.append("execute")
        return {"greeting": self.greeting, "script": self.script, "task": context["task"].task_id}

    def post_execute(self, context, result=None):
        self.calls.append("post")
        context["ti"].xcom_push("calls", self.calls)


class SkipOperator(BaseOperator):
    def execute(self, context):
        raise AirflowSkipException("nothing to do")
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def compiled(project: Project, body: str) -> dict[str, Any]:
    path = project.write("dag.py", "from airflow.sdk import DAG, task\n" + OPERATORS + textwrap.dedent(body))
    result = compile_file(path)
    return result


def tasks(project: Project, body: str) -> dict[str, Any]:
    result = compiled(project, body)
    assert result["ok"], result
    return {t["task_id"]: t for t in result["dags"][0]["tasks"]}


def refusal(project: Project, body: str) -> str:
    result = compiled(project, body)
    assert not result["ok"], result
    message: str = result["error"]["message"]
    return message


def test_a_custom_operator_is_compiled_as_a_reference_to_its_class(project: Project) -> None:
    found = tasks(project, """
        with DAG("d", schedule=None):
            add = AddOneOperator.partial(task_id="add_one").expand(value=[1, 2, 3])
            SumItOperator(task_id="sum_it", values=add.output)
    """)
    total = found["sum_it"]
    assert total["operator"] == "SumItOperator"
    assert total["custom"] == {
        "module": "dag", "class": "SumItOperator", "branch": False, "sensor": False,
        "arguments": {"values": {"__xcom__": {"task_id": "add_one", "key": "return_value"}}},
        "template_fields": ["values"], "template_ext": [], "ui_color": "#e8b7e4", "ui_fgcolor": "#000",
        "multiple_outputs": False,
    }
    # A task result in a template field makes the task depend on the task that returns it.
    assert total["upstream"] == ["add_one"]
    assert found["add_one"]["mapped"]["expand"] == {"value": [1, 2, 3]}


def test_a_result_in_a_field_that_is_not_templated_adds_no_dependency(project: Project) -> None:
    found = tasks(project, """
        with DAG("d", schedule=None):
            first = AddOneOperator(task_id="first", value=1)
            AddOneOperator(task_id="second", value=first.output)
    """)
    assert found["second"]["upstream"] == []


def test_default_args_fill_a_custom_operator_s_own_parameters(project: Project) -> None:
    found = tasks(project, """
        with DAG("d", schedule=None, default_args={"value": 41, "retries": 2}):
            AddOneOperator(task_id="t")
    """)
    assert found["t"]["custom"]["arguments"] == {"value": 41}
    assert found["t"]["retries"] == 2


def test_an_argument_that_is_not_json_is_recorded_as_its_text(project: Project) -> None:
    found = tasks(project, """
        class Client:
            def __repr__(self):
                return "<Client>"

        with DAG("d", schedule=None):
            AddOneOperator(task_id="t", value=Client())
    """)
    assert found["t"]["custom"]["arguments"] == {"value": {"__repr__": "<Client>"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("AddOneOperator('t', 1)", "pass its arguments by keyword"),
        ("AddOneOperator(task_id='t', value=1, colour='red')", "AddOneOperator got an unexpected keyword argument 'colour'"),
        (
            "class Broken(BaseOperator):\n    def __init__(self, **kwargs):\n        pass\n"
            "    def execute(self, context):\n        pass\nBroken(task_id='t')",
            "Broken.__init__ must call super().__init__(**kwargs)",
        ),
        (
            "class Lazy(BaseOperator):\n    pass\nLazy(task_id='t')",
            "Lazy does not define execute(self, context)",
        ),
        (
            "class Typo(BaseOperator):\n    template_fields = ('values')\n"
            "    def execute(self, context):\n        pass\nTypo(task_id='t')",
            "Typo.template_fields must be a tuple of attribute names such as ('values',), not a string",
        ),
        (
            "class Missing(BaseOperator):\n    template_fields = ('sql',)\n"
            "    def execute(self, context):\n        pass\nMissing(task_id='t')",
            "Missing lists 'sql' in template_fields, but its task 't' has no attribute 'sql'",
        ),
        (
            "from airflow.providers.standard.operators.bash import BashOperator as Bash\n"
            "class MyBash(Bash):\n    def execute(self, context):\n        pass",
            "class MyBash overriding execute() of BashOperator is not supported by Leoflow",
        ),
        (
            "class BashOperator(BaseOperator):\n    def execute(self, context):\n        pass",
            "custom operator class BashOperator has the name of a standard operator",
        ),
    ],
)
def test_malformed_custom_operators_are_refused_clearly(project: Project, body: str, message: str) -> None:
    indented = textwrap.indent(body, "    ")
    assert message in refusal(project, f"with DAG('d', schedule=None):\n{indented}\n")


def test_a_custom_operator_runs_its_execute_with_fields_rendered_and_hooks_in_order(project: Project) -> None:
    project.write("hello.txt", "script for {{ params.name }}")
    outcome, agent = project.run(
        OPERATORS + """
with DAG("d", schedule=None, params={"name": "world"}):
    GreetOperator(task_id="greet", greeting="hello {{ params.name }} on {{ ds }}", script="hello.txt")
""",
        "greet",
    )
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {
        "greeting": "hello world on 2026-03-04", "script": "script for world", "task": "greet",
    }
    assert agent.pushed["calls"] == ["pre", "execute", "post"]
    assert agent.rendered == {"greeting": "hello world on 2026-03-04", "script": "script for world"}


def test_a_task_result_in_a_template_field_is_pulled_as_it_is(project: Project) -> None:
    body = OPERATORS + """
with DAG("d", schedule=None):
    add = AddOneOperator.partial(task_id="add_one").expand(value=[1, 2, 3])
    SumItOperator(task_id="sum_it", values=add.output)
"""
    outcome, agent = project.run(body, "sum_it", Agent(xcoms={("add_one", "return_value"): [2, 3, 4]}))
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 9


def test_a_dag_function_s_parameter_in_a_template_field_is_the_run_s_value(project: Project) -> None:
    # Airflow's example_dag_decorator: `GetRequestOperator(url=url)` inside `@dag def f(url=...)`.
    body = OPERATORS + """
from airflow.sdk import dag

@dag(schedule=None)
def d(values=[1, 2], greeting="hi"):
    SumItOperator(task_id="sum_it", values=values)
    GreetOperator(task_id="greet", greeting={"text": greeting, "also": "{{ params.greeting }}!"})

d()
"""
    outcome, agent = project.run(body, "sum_it", conf={"values": [4, 5, 6]})
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 15
    outcome, agent = project.run(body, "greet", conf={"greeting": "hello"})
    assert outcome.outcome == "success", outcome.reason
    assert agent.rendered["greeting"] == {"text": "hello", "also": "hello!"}


def test_each_map_index_builds_the_task_from_its_partial_arguments_and_value(project: Project) -> None:
    body = OPERATORS + """
with DAG("d", schedule=None):
    AddOneOperator.partial(task_id="add_one").expand(value=[1, 2, 3])
    GreetOperator.partial(task_id="greet").expand_kwargs([{"greeting": "hi {{ run_id }}"}, {"greeting": "bye"}])
"""
    outcome, agent = project.run(body, "add_one", map_index=1)
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 3
    outcome, agent = project.run(body, "greet", map_index=0)
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"]["greeting"] == "hi manual__1"


def test_multiple_outputs_and_do_xcom_push_are_honoured(project: Project) -> None:
    body = OPERATORS + """
with DAG("d", schedule=None):
    GreetOperator(task_id="split", greeting="hi", multiple_outputs=True)
    GreetOperator(task_id="quiet", greeting="hi", do_xcom_push=False)
"""
    outcome, agent = project.run(body, "split")
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["greeting"] == "hi" and agent.pushed["task"] == "split"
    outcome, agent = project.run(body, "quiet")
    assert outcome.outcome == "success", outcome.reason
    assert "return_value" not in agent.pushed


def test_an_operator_of_a_project_module_runs(project: Project) -> None:
    project.write("my_operators.py", OPERATORS)
    body = """
from my_operators import AddOneOperator
with DAG("d", schedule=None):
    AddOneOperator(task_id="t", value=1)
"""
    compiled_tasks = compile_file(project.write("dag.py", "from airflow.sdk import DAG\n" + body))
    assert compiled_tasks["ok"], compiled_tasks
    assert compiled_tasks["dags"][0]["tasks"][0]["custom"]["module"] == "my_operators"
    outcome, agent = project.run(body, "t")
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == 2


def test_raising_skip_and_a_bad_result_are_clear(project: Project) -> None:
    body = OPERATORS + """
class Opaque(BaseOperator):
    def execute(self, context):
        return object()

with DAG("d", schedule=None):
    SkipOperator(task_id="skip")
    Opaque(task_id="opaque")
"""
    with pytest.raises(AirflowSkipException, match="nothing to do"):
        project.run(body, "skip")
    with pytest.raises(TaskError, match="the task's return value is a value of type object that is not JSON-serializable"):
        project.run(body, "opaque")
