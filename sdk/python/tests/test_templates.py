"""Template fields are rendered with Jinja as Airflow 3.2 renders them: its environment (sandbox,
StrictUndefined, the `do` extension, its filters), its context and macros, statements and filters,
template files (`template_ext`, `templates_exts`, `template_searchpath`), the DAG's own macros and
filters, native rendering, XComs pulled and pushed from templates. Each task runs through the
runner's `execute` against a scripted agent, from a DAG file compiled as Lite compiles it."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import task_harness
from task_harness import HEADER, Agent

import leoflow
from leoflow.compiler import compile_file
from leoflow.runner import JINJA_MISSING, TaskError, render


class Project(task_harness.Project):
    """The harness's project, with a shortcut for PythonOperator templates."""

    def templates_dict(self, templates: dict[str, str], dag_args: str = "", **run: Any) -> dict[str, Any]:
        """What a PythonOperator's `templates_dict` renders to."""
        outcome, agent = self.run(
            f"""
            with DAG("d", schedule=None, params={{"name": "world"}}{dag_args}):
                PythonOperator(task_id="t", python_callable=show, templates_dict={templates!r})
            """,
            "t",
            **run,
        )
        assert outcome.outcome == "success", outcome.reason
        result: dict[str, Any] = agent.pushed["return_value"]
        return result


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch)


def test_airflow_s_tutorial_command_runs_its_for_loop_with_macros_ds_add(project: Project) -> None:
    # The templated command of Airflow's own `tutorial` example DAG, as it is written there.
    outcome, agent = project.run(
        '''
        templated_command = """
        {% for i in range(5) %}
            echo "{{ ds }}"
            echo "{{ macros.ds_add(ds, 7)}}"
        {% endfor %}
        """
        with DAG("tutorial", schedule=None):
            BashOperator(task_id="templated", bash_command=templated_command)
        ''',
        "templated",
    )
    assert outcome.outcome == "success", outcome.reason
    command = agent.rendered["bash_command"]
    assert command.count('echo "2026-03-04"') == 5 and command.count('echo "2026-03-11"') == 5
    assert "{" not in command
    assert agent.pushed["return_value"] == "2026-03-11"


def test_the_context_has_airflow_s_names_dates_and_macros(project: Project) -> None:
    rendered = project.templates_dict({
        "ds": "{{ ds }}", "ds_nodash": "{{ ds_nodash }}", "ts": "{{ ts }}", "ts_nodash": "{{ ts_nodash }}",
        "ts_nodash_with_tz": "{{ ts_nodash_with_tz }}", "logical_date": "{{ logical_date }}",
        "interval": "{{ data_interval_start }}/{{ data_interval_end }}", "run_id": "{{ run_id }}",
        "ids": "{{ dag.dag_id }}.{{ task.task_id }}.{{ ti.task_id }}.{{ task_instance.try_number }}",
        "key": "{{ task_instance_key_str }}", "params": "{{ params.name }}", "run_type": "{{ dag_run.run_type }}",
        "added": "{{ macros.ds_add(ds, -4) }}", "formatted": "{{ macros.ds_format(ds, '%Y-%m-%d', '%d/%m/%Y') }}",
        "datetime": "{{ macros.datetime(2020, 1, 2).year + macros.timedelta(days=2).days }}",
        "json": "{{ macros.json.dumps({'a': 1}) }}", "uuid": "{{ macros.uuid.UUID(int=1) }}",
        "random": "{{ (macros.random() < 1) and (macros.time.time() > 0) }}",
        "pendulum": "{{ logical_date.add(days=1).to_date_string() }}",
    })
    assert rendered == {
        "ds": "2026-03-04", "ds_nodash": "20260304", "ts": "2026-03-04T05:06:07+00:00", "ts_nodash": "20260304T050607",
        "ts_nodash_with_tz": "20260304T050607+0000", "logical_date": "2026-03-04 05:06:07+00:00",
        "interval": "2026-03-04 05:06:07+00:00/2026-03-04 05:06:07+00:00", "run_id": "manual__1",
        "ids": "d.t.t.1", "key": "d__t__20260304", "params": "world", "run_type": "manual",
        "added": "2026-02-28", "formatted": "04/03/2026", "datetime": "2022", "json": '{"a": 1}',
        "uuid": "00000000-0000-0000-0000-000000000001", "random": "True", "pendulum": "2026-03-05",
    }


def test_the_previous_successful_run_s_dates_are_in_the_context(project: Project) -> None:
    templates = {
        "since": "{{ prev_data_interval_end_success }}", "started": "{{ prev_start_date_success | ds }}",
        "first": "{{ prev_data_interval_start_success is none }}",
    }
    previous = {
        "data_interval_start": "2026-03-03T00:00:00+00:00", "data_interval_end": "2026-03-03T05:06:07+00:00",
        "start_date": "2026-03-03T06:00:00+00:00", "end_date": "2026-03-03T06:01:00+00:00",
    }
    rendered = project.templates_dict(templates, prev_success=previous)
    assert rendered == {"since": "2026-03-03 05:06:07+00:00", "started": "2026-03-03", "first": "False"}
    # The first run has none: the values are None, as in Airflow.
    rendered = project.templates_dict({"first": "{{ prev_data_interval_start_success is none }}"}, prev_success=None)
    assert rendered == {"first": "True"}


def test_statements_and_filters_are_jinja_s_and_airflow_s(project: Project) -> None:
    rendered = project.templates_dict({
        "if": "{% if params.name == 'world' %}yes{% else %}no{% endif %}",
        "set": "{% set n = 3 %}{{ n * 2 }}",
        "do": "{% set items = [] %}{% do items.append(1) %}{{ items }}",
        "filters": "{{ params.name | upper }} {{ ['a', 'b'] | join('-') }} {{ 'x' | default('y') }}",
        "airflow_filters": "{{ logical_date | ds }} {{ logical_date | ds_nodash }} {{ logical_date | ts_nodash }}",
        "comment": "a{# not shown #}b",
        "plain": "echo hi\n",
    })
    assert rendered == {
        "if": "yes", "set": "6", "do": "[1]", "filters": "WORLD a-b x",
        "airflow_filters": "2026-03-04 20260304 20260304T050607", "comment": "ab",
        # Jinja's default, which Airflow keeps: one trailing newline is dropped.
        "plain": "echo hi",
    }


def test_an_undefined_name_fails_the_task_naming_the_field(project: Project) -> None:
    with pytest.raises(TaskError, match="rendering templates_dict failed: UndefinedError: 'nowhere' is undefined"):
        project.templates_dict({"x": "{{ nowhere }}"})
    with pytest.raises(TaskError, match="has no attribute 'missing'"):
        project.templates_dict({"x": "{{ params.missing }}"})
    # As in Airflow, a run without a logical date has no `ds`: using it is an error, not "".
    with pytest.raises(TaskError, match="'ds' is undefined"):
        project.templates_dict({"x": "{{ ds }}"}, logical_date=None)
    assert project.templates_dict({"x": "{{ dag_run.logical_date }}"}, logical_date=None) == {"x": "None"}


def test_the_sandbox_refuses_dunder_attributes_and_allows_private_ones(project: Project) -> None:
    with pytest.raises(TaskError, match="SecurityError"):
        project.templates_dict({"x": "{{ ''.__class__.__mro__ }}"})
    assert project.templates_dict({"x": "{{ ti._channel is defined }}"}) == {"x": "True"}


def test_templates_push_and_pull_xcoms_as_example_xcom_does(project: Project) -> None:
    body = """
        with DAG("example_xcom", schedule=None) as dag:
            bash_push = BashOperator(
                task_id="bash_push",
                bash_command='echo "Manually set xcom value '
                '{{ ti.xcom_push(key="manually_pushed_value", value="manually_pushed_value") }}" && '
                'echo "value_by_return"',
            )
            bash_pull = BashOperator(
                task_id="bash_pull",
                bash_command='echo "$MANUALLY_PUSHED_VALUE/$RETURNED_VALUE"',
                env={
                    "MANUALLY_PUSHED_VALUE": str(XComArg(bash_push, key="manually_pushed_value")),
                    "RETURNED_VALUE": str(XComArg(bash_push)),
                },
                append_env=True,
            )
            bash_pull << bash_push
        """
    outcome, agent = project.run(body, "bash_push")
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed == {"manually_pushed_value": "manually_pushed_value", "return_value": "value_by_return"}
    assert agent.rendered["bash_command"].startswith('echo "Manually set xcom value None"')
    xcoms = {("bash_push", key): value for key, value in agent.pushed.items()}
    outcome, agent = project.run(body, "bash_pull", Agent(xcoms))
    assert outcome.outcome == "success", outcome.reason
    assert agent.rendered["env"] == {"MANUALLY_PUSHED_VALUE": "manually_pushed_value", "RETURNED_VALUE": "value_by_return"}
    assert agent.pushed["return_value"] == "manually_pushed_value/value_by_return"


def test_an_xcom_arg_in_an_f_string_is_airflow_s_pull_template(project: Project) -> None:
    outcome, agent = project.run(
        """
        with DAG("d", schedule=None):
            @task
            def up():
                return "x"

            BashOperator(task_id="t", bash_command=f"echo {up()}!")
        """,
        "t",
        Agent({("up", "return_value"): "pulled"}),
    )
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == "pulled!"


def test_dag_run_conf_get_renders_the_value_or_none(project: Project) -> None:
    body = """
        with DAG("example_trigger_target_dag", schedule=None):
            BashOperator(task_id="bash_task", bash_command='echo "Here is the message: $message"',
                         env={"message": '{{ dag_run.conf.get("message") }}'})
        """
    _, agent = project.run(body, "bash_task", conf={"message": "hello"})
    assert agent.pushed["return_value"] == "Here is the message: hello"
    _, agent = project.run(body, "bash_task")
    assert agent.pushed["return_value"] == "Here is the message: None"


def test_var_and_conn_read_variables_and_connections(project: Project) -> None:
    agent = Agent(
        variables={"plain": "text", "doc": '{"n": [1, 2]}'},
        connections={"db": {"conn_type": "postgres", "host": "db.local", "port": 5432, "extra": '{"a": "b"}'}},
    )
    rendered = project.templates_dict(
        {
            "value": "{{ var.value.plain }}", "json": "{{ var.json.doc.n[1] }}",
            "defaults": "{{ var.value.get('absent', 'fallback') }} {{ var.json.get('absent') }}",
            "conn": "{{ conn.db.host }}:{{ conn.db.port }} {{ conn.db.extra_dejson.a }}",
            "no_conn": "{{ conn.get('absent') }}",
        },
        agent=agent,
    )
    assert rendered == {
        "value": "text", "json": "2", "defaults": "fallback None", "conn": "db.local:5432 b", "no_conn": "None",
    }
    with pytest.raises(KeyError, match="absent"):
        project.templates_dict({"x": "{{ var.value.absent }}"}, agent=agent)


def test_the_dag_s_user_defined_macros_and_filters(project: Project) -> None:
    rendered = project.templates_dict(
        {"x": "{{ greet(params.name) }} {{ limit }} {{ params.name | shout }}"},
        dag_args=", user_defined_macros={'greet': lambda n: 'hi ' + n, 'limit': 3},"
        " user_defined_filters={'shout': lambda s: s.upper() + '!'}",
    )
    assert rendered == {"x": "hi world 3 WORLD!"}


def test_jinja_environment_kwargs_and_template_undefined_are_honoured(project: Project) -> None:
    rendered = project.templates_dict(
        {"kept": "a\n", "lenient": "[{{ nowhere }}]"},
        dag_args=", jinja_environment_kwargs={'keep_trailing_newline': True},"
        " template_undefined=__import__('jinja2').Undefined",
    )
    assert rendered == {"kept": "a\n", "lenient": "[]"}


def test_render_template_as_native_obj_renders_python_objects(project: Project) -> None:
    body = """
        def typed(items, n, text):
            return {{name: type(value).__name__ for name, value in dict(items=items, n=n, text=text).items()}}

        with DAG("d", schedule=None, render_template_as_native_obj={dag_native}):
            PythonOperator(task_id="t", python_callable=typed, {task_native}
                           op_kwargs={{"items": "{{{{ [1, 2] }}}}", "n": "{{{{ 1 + 1 }}}}", "text": "plain"}})
        """
    native = {"items": "list", "n": "int", "text": "str"}
    strings = {"items": "str", "n": "str", "text": "str"}
    for dag_native, task_native, expected in [
        (True, "", native),
        (False, "", strings),
        (True, "render_template_as_native_obj=False,", strings),
        (False, "render_template_as_native_obj=True,", native),
    ]:
        outcome, agent = project.run(body.format(dag_native=dag_native, task_native=task_native), "t")
        assert outcome.outcome == "success", outcome.reason
        assert agent.pushed["return_value"] == expected, (dag_native, task_native)


def test_a_bash_command_ending_in_sh_is_a_template_file_from_the_dag_folder(project: Project) -> None:
    project.write("scripts/run.sh", 'echo "{{ ds }} {{ params.name }}"\n{% include "part.txt" %}\n')
    project.write("scripts/part.txt", "echo included")
    project.write("part.txt", 'echo "part {{ run_id }}"')
    outcome, agent = project.run(
        """
        with DAG("d", schedule=None, params={"name": "world"}):
            BashOperator(task_id="t", bash_command="scripts/run.sh")
        """,
        "t",
    )
    assert outcome.outcome == "success", outcome.reason
    # Includes are found from the DAG's folder too, as in Airflow.
    assert agent.rendered["bash_command"] == 'echo "2026-03-04 world"\necho "part manual__1"'
    assert agent.pushed["return_value"] == "part manual__1"


def test_template_searchpath_folders_are_searched_after_the_dag_folder(project: Project, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "greet.bash").write_text("echo from-shared-{{ ds_nodash }}", encoding="utf-8")
    outcome, agent = project.run(
        f"""
        with DAG("d", schedule=None, template_searchpath={str(shared)!r}):
            BashOperator(task_id="t", bash_command="greet.bash")
        """,
        "t",
    )
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == "from-shared-20260304"


def test_a_missing_template_file_fails_naming_it(project: Project) -> None:
    with pytest.raises(TaskError, match="rendering bash_command failed: TemplateNotFound: 'missing.sh' not found in search path"):
        project.run('with DAG("d", schedule=None):\n    BashOperator(task_id="t", bash_command="missing.sh")\n', "t")


def test_templates_exts_make_python_arguments_template_files(project: Project) -> None:
    project.write("sql/query.sql", "select * from t where run_id = '{{ run_id }}' and p = '{{ params.p }}'")
    outcome, agent = project.run(
        """
        with DAG("d", schedule=None, params={"p": "from_dag"}):
            # As Airflow's `tutorial_taskflow_templates`: a `.sql` argument is read and rendered.
            @task(templates_exts=[".sql"])
            def template_test(sql, test_var):
                return {"sql": sql, "test_var": test_var}

            template_test.override(params={"p": "from_task"})(sql="sql/query.sql", test_var="{{ run_id }}")

            PythonOperator(task_id="classic", python_callable=lambda q: q, op_args=["sql/query.sql"],
                           templates_exts=[".sql"])
        """,
        "template_test",
    )
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {
        "sql": "select * from t where run_id = 'manual__1' and p = 'from_task'", "test_var": "manual__1",
    }
    outcome, agent = project.run(project.folder.joinpath("dag.py").read_text()[len(HEADER):], "classic")
    assert agent.pushed["return_value"] == "select * from t where run_id = 'manual__1' and p = 'from_dag'"


def test_task_code_renders_templates_of_its_own_and_sees_rendered_fields(project: Project) -> None:
    outcome, agent = project.run(
        """
        with DAG("d", schedule=None, params={"other_param": "from_dag"}):
            @task
            def own(arg):
                context = get_current_context()
                return [
                    context["task"].render_template("run_id: {{ run_id }}; {{ params.other_param }}", context),
                    context["task"].op_args,
                    arg,
                ]

            own("{{ ds }}")
        """,
        "own",
    )
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == ["run_id: manual__1; from_dag", ["2026-03-04"], "2026-03-04"]


def test_values_from_xcoms_are_passed_as_they_are_and_literals_are_rendered(project: Project) -> None:
    body = """
        with DAG("d", schedule=None):
            @task
            def up():
                return ["{{ ds }}"]

            @task
            def echo(value, literal):
                return [value, literal]

            @task
            def each(value):
                return value

            values = up()
            echo(values, "{{ ds }}")
            each.expand(value=values)
            each.override(task_id="literal").expand(value=["{{ ds }}", "x"])
        """
    agent = Agent({("up", "return_value"): ["{{ ds }}"]})
    outcome, agent = project.run(body, "echo", agent)
    assert agent.pushed["return_value"] == [["{{ ds }}"], "2026-03-04"]
    _, agent = project.run(body, "each", Agent({("up", "return_value"): ["{{ ds }}"]}), map_index=0)
    assert agent.pushed["return_value"] == "{{ ds }}"
    _, agent = project.run(body, "literal", map_index=0)
    assert agent.pushed["return_value"] == "2026-03-04"


def test_without_jinja2_a_task_with_templates_fails_naming_the_package(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "jinja2", None)  # `import jinja2` now fails
    monkeypatch.delitem(sys.modules, "leoflow.templates", raising=False)
    monkeypatch.delattr(leoflow, "templates", raising=False)
    with pytest.raises(TaskError) as failure:
        project.run('with DAG("d", schedule=None):\n    BashOperator(task_id="t", bash_command="echo {{ ds }}")\n', "t")
    assert str(failure.value) == JINJA_MISSING
    assert "jinja2" in JINJA_MISSING
    # Parsing never needs jinja2, whatever the DAG's template arguments; nor does a task with
    # nothing to render.
    outcome, agent = project.run(
        """
        with DAG("d", schedule=None, user_defined_macros={"m": 1}, template_searchpath=["x"],
                 render_template_as_native_obj=True):
            @task
            def add(a, b):
                return a + b

            add(1, 2)
        """,
        "add",
    )
    assert agent.pushed["return_value"] == 3
    assert render({"n": 1}, {}) == {"n": 1}


def test_template_arguments_of_the_dag_are_checked_and_leave_dag_json_alone(tmp_path: Path) -> None:
    def compiled(dag_args: str) -> dict[str, Any]:
        path = tmp_path / "dag.py"
        path.write_text(HEADER + f'with DAG("d", schedule=None{dag_args}):\n    BashOperator(task_id="t", bash_command="echo")\n')
        return compile_file(path)

    plain = compiled("")
    given = compiled(
        ", template_searchpath='/srv/templates', user_defined_macros={'f': len}, user_defined_filters={'g': str},"
        " jinja_environment_kwargs={'trim_blocks': True}, render_template_as_native_obj=True"
    )
    assert given == plain
    for bad, message in [
        (", template_searchpath=3", "template_searchpath must be a folder or a list of folders"),
        (", user_defined_filters={'g': 1}", "user_defined_filters\\['g'\\] must be a function"),
        (", user_defined_macros=[1]", "user_defined_macros must be a dict"),
        (", template_undefined='strict'", "template_undefined must be a class"),
    ]:
        result = compiled(bad)
        assert not result["ok"] and result["error"]["line"] == HEADER.count("\n") + 1, result
        assert __import__("re").search(message, result["error"]["message"]), result


def test_params_are_the_dag_s_then_the_task_s_then_the_run_s_conf(project: Project) -> None:
    body = """
        with DAG("d", schedule=None, params={"p": "from_dag", "q": "dag_only"}):
            PythonOperator(task_id="t", python_callable=show, params={"p": "from_task"},
                           templates_dict={"p": "{{ params.p }}", "q": "{{ params.q }}"})
        """
    # The control plane fills the run's conf with the DAG's defaults; Airflow's conf holds only
    # what the trigger said, so the task's own param still wins over the DAG's default.
    _, agent = project.run(body, "t", conf={"p": "from_dag", "q": "dag_only"})
    assert agent.pushed["return_value"] == {"p": "from_task", "q": "dag_only"}
    _, agent = project.run(body, "t", conf={"p": "given", "q": "also_given"})
    assert agent.pushed["return_value"] == {"p": "given", "q": "also_given"}
