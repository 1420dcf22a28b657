"""Every argument of Airflow 3.2's `BaseOperator.__init__` is accepted by every operator Leoflow
offers: honoured, accepted with no effect, or (when another value would change what the task
does) accepted at its default and refused otherwise with a located error naming it."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from leoflow.compiler import compile_file
from leoflow.model import BaseOperator

REPO = Path(__file__).resolve().parents[3]

#: The keyword arguments of `BaseOperator.__init__` in `airflow/sdk/bases/operator.py` of the
#: apache-airflow-task-sdk 1.2.2 wheel (the version apache-airflow-core 3.2.2 requires), each with
#: its default as Python source; `DEFAULT_*` constants resolved with Airflow's default
#: configuration (core 3.2.2's config.yml: owner "airflow", queue "default", 0 retries, 300 s
#: retry delay, weight rule "downstream", no execution timeout, email on failure and retry True).
#: `task_id` (required, no default) is left out: every task below passes one.
AIRFLOW_BASE_OPERATOR_DEFAULTS: dict[str, str] = {
    "owner": '"airflow"',
    "email": "None",
    "email_on_retry": "True",
    "email_on_failure": "True",
    "retries": "0",
    "retry_delay": "datetime.timedelta(seconds=300)",
    "retry_exponential_backoff": "0",
    "max_retry_delay": "None",
    "start_date": "None",
    "end_date": "None",
    "depends_on_past": "False",
    "ignore_first_depends_on_past": "False",
    "wait_for_past_depends_before_skipping": "False",
    "wait_for_downstream": "False",
    "dag": "None",
    "params": "None",
    "default_args": "None",
    "priority_weight": "1",
    "weight_rule": '"downstream"',
    "queue": '"default"',
    "pool": "None",
    "pool_slots": "1",
    "sla": "None",
    "execution_timeout": "None",
    "on_execute_callback": "None",
    "on_failure_callback": "None",
    "on_success_callback": "None",
    "on_retry_callback": "None",
    "on_skipped_callback": "None",
    "pre_execute": "None",
    "post_execute": "None",
    "trigger_rule": '"all_success"',
    "resources": "None",
    "run_as_user": "None",
    "map_index_template": "None",
    "max_active_tis_per_dag": "None",
    "max_active_tis_per_dagrun": "None",
    "executor": "None",
    "executor_config": "None",
    "do_xcom_push": "True",
    "multiple_outputs": "False",
    "inlets": "None",
    "outlets": "None",
    "task_group": "None",
    "doc": "None",
    "doc_md": "None",
    "doc_json": "None",
    "doc_yaml": "None",
    "doc_rst": "None",
    "task_display_name": "None",
    "logger_name": "None",
    "allow_nested_operators": "True",
    "render_template_as_native_obj": "None",
}
AIRFLOW_BASE_OPERATOR_ARGS = {"task_id", *AIRFLOW_BASE_OPERATOR_DEFAULTS}

HEADER = """\
import datetime
from airflow.sdk import DAG, TaskGroup, task
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator

def notify(context):
    pass

def work():
    pass
"""

#: Every way of making a task, each given the arguments in `ARG`.
EVERY_OPERATOR = HEADER + """
ARG = {arg}
DEFAULT_ARG = {{k: v for k, v in ARG.items() if k not in ("dag", "task_group")}}

with DAG("explicit", schedule=None):
    BashOperator(task_id="bash", bash_command="echo hi", **ARG)
    PythonOperator(task_id="python", python_callable=work, **ARG)
    EmptyOperator(task_id="empty", **ARG)
    BranchPythonOperator(task_id="branch", python_callable=work, **ARG)
    ShortCircuitOperator(task_id="short_circuit", python_callable=work, **ARG)
    PythonOperator.partial(task_id="mapped_python", python_callable=work, **ARG).expand(op_args=[[1], [2]])
    BashOperator.partial(task_id="mapped_bash", **ARG).expand(bash_command=["echo 1", "echo 2"])

    @task(**ARG)
    def decorated():
        pass

    @task.bash(**ARG)
    def decorated_bash():
        return "echo hi"

    @task.branch(**ARG)
    def decorated_branch():
        return None

    @task.short_circuit(**ARG)
    def decorated_short_circuit():
        return True

    @task.sensor(**ARG)
    def decorated_sensor():
        return True

    @task
    def overridden():
        pass

    decorated() >> decorated_bash() >> decorated_branch() >> decorated_short_circuit() >> decorated_sensor()
    overridden.override(**ARG)()

for name, dag_defaults, group_defaults, task_defaults in [
    ("dag_default_args", DEFAULT_ARG, None, None),
    ("group_default_args", None, DEFAULT_ARG, None),
    ("task_default_args", None, None, DEFAULT_ARG),
]:
    with DAG(name, schedule=None, default_args=dag_defaults):
        with TaskGroup("g", default_args=group_defaults):
            BashOperator(task_id="bash", bash_command="echo hi", default_args=task_defaults)
            PythonOperator(task_id="python", python_callable=work, default_args=task_defaults)
            EmptyOperator(task_id="empty", default_args=task_defaults)
            BranchPythonOperator(task_id="branch", python_callable=work, default_args=task_defaults)
            ShortCircuitOperator(task_id="short_circuit", python_callable=work, default_args=task_defaults)

            @task(default_args=task_defaults)
            def decorated():
                pass

            @task.bash(default_args=task_defaults)
            def decorated_bash():
                return "echo hi"

            decorated() >> decorated_bash()
"""


def compile_source(tmp_path: Path, source: str) -> dict[str, Any]:
    path = tmp_path / "dag.py"
    path.write_text(source, encoding="utf-8")
    return compile_file(path)


def compile_every_operator(tmp_path: Path, arg: str) -> dict[str, Any]:
    return compile_source(tmp_path, EVERY_OPERATOR.format(arg=arg))


def dag_tasks(result: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    assert result["ok"], result
    return {(d["dag_id"], t["task_id"]): t for d in result["dags"] for t in d["tasks"]}


def test_bash_operator_accepts_multiple_outputs_false(tmp_path: Path) -> None:
    # Issue 12: this failed with "BashOperator got an unexpected keyword argument 'multiple_outputs'".
    result = compile_source(tmp_path, HEADER + textwrap.dedent("""
        with DAG("d", schedule=None):
            BashOperator(task_id="t", bash_command="echo hi", multiple_outputs=False)
    """))
    assert result["ok"], result
    assert "multiple_outputs" not in result["dags"][0]["tasks"][0]["bash"]


def test_the_sdk_classifies_every_airflow_argument_once() -> None:
    honoured = BaseOperator.BASE_ARGS
    no_effect = set(BaseOperator.NO_EFFECT_ARGS)
    default_only = set(BaseOperator.NOOP_DEFAULTS)
    assert honoured | no_effect | default_only == AIRFLOW_BASE_OPERATOR_ARGS
    assert not honoured & no_effect and not honoured & default_only and not no_effect & default_only


def test_docs_name_every_airflow_argument() -> None:
    docs = (REPO / "docs" / "authoring.md").read_text(encoding="utf-8")
    missing = sorted(name for name in AIRFLOW_BASE_OPERATOR_ARGS if not re.search(f"`{name}[`=]", docs))
    assert not missing, f"docs/authoring.md does not mention {missing}"


@pytest.mark.parametrize("name", sorted(AIRFLOW_BASE_OPERATOR_DEFAULTS))
def test_every_operator_accepts_every_airflow_argument_at_its_default(tmp_path: Path, name: str) -> None:
    given = compile_every_operator(tmp_path, f"{{{name!r}: {AIRFLOW_BASE_OPERATOR_DEFAULTS[name]}}}")
    assert given["ok"], given
    # Airflow's default means what leaving the argument out means.
    assert given == compile_every_operator(tmp_path, "{}")


NO_EFFECT_VALUES = {
    "email": '["ops@example.com"]',
    "email_on_retry": "False",
    "email_on_failure": "False",
    "sla": "datetime.timedelta(hours=1)",
    "resources": '{"cpus": 2, "ram": 1024}',
    "executor": '"CeleryExecutor"',
    "executor_config": '{"KubernetesExecutor": {"image": "x"}}',
    "doc_json": '\'{"a": 1}\'',
    "doc_yaml": '"a: 1"',
    "doc_rst": '"*text*"',
    "map_index_template": '"{{ task.op_kwargs }}"',
    "logger_name": '"custom"',
    "allow_nested_operators": "False",
}


def test_no_effect_values_cover_every_no_effect_argument() -> None:
    assert set(NO_EFFECT_VALUES) | {"multiple_outputs"} == set(BaseOperator.NO_EFFECT_ARGS)


@pytest.mark.parametrize("name", sorted(NO_EFFECT_VALUES))
def test_no_effect_arguments_are_accepted_at_any_value(tmp_path: Path, name: str) -> None:
    given = compile_every_operator(tmp_path, f"{{{name!r}: {NO_EFFECT_VALUES[name]}}}")
    assert given["ok"], given
    assert given == compile_every_operator(tmp_path, "{}")


def test_multiple_outputs_has_no_effect_on_empty_operator_and_is_honoured_for_python(tmp_path: Path) -> None:
    by_id = dag_tasks(compile_source(tmp_path, HEADER + textwrap.dedent("""
        with DAG("d", schedule=None):
            EmptyOperator(task_id="empty", multiple_outputs=True)
            EmptyOperator(task_id="plain")
            PythonOperator(task_id="python", python_callable=work, multiple_outputs=True)
    """)))
    empty, plain = by_id[("d", "empty")], by_id[("d", "plain")]
    assert {**empty, "task_id": "plain", "line": plain["line"]} == plain
    assert by_id[("d", "python")]["python"]["multiple_outputs"] is True


def test_a_task_s_own_default_args_are_honoured_over_its_dag_s(tmp_path: Path) -> None:
    by_id = dag_tasks(compile_source(tmp_path, HEADER + textwrap.dedent("""
        with DAG("d", schedule=None, default_args={"retries": 1, "queue": "q"}):
            BashOperator(task_id="bash", bash_command="echo hi", default_args={"retries": 4, "pool": "p"})
            EmptyOperator(task_id="empty", retries=2, default_args={"retries": 4})

            @task(default_args={"owner": "team"})
            def decorated():
                pass

            decorated()
    """)))
    bash = by_id[("d", "bash")]
    assert (bash["retries"], bash["pool"], bash["queue"]) == (4, "p", "q")
    assert by_id[("d", "empty")]["retries"] == 2
    assert by_id[("d", "decorated")]["owner"] == "team"


@pytest.mark.parametrize(("value", "expected"), [("True", True), ("False", False), ("0", False), ("1", False), ("2.0", True), ("2", True)])
def test_retry_exponential_backoff_follows_airflow_s_multiplier(tmp_path: Path, value: str, expected: bool) -> None:
    by_id = dag_tasks(compile_source(tmp_path, HEADER + textwrap.dedent(f"""
        with DAG("d", schedule=None):
            EmptyOperator(task_id="t", retries=2, retry_exponential_backoff={value})
    """)))
    assert by_id[("d", "t")]["retry_exponential_backoff"] is expected


#: Arguments refused at a value other than their default: (name, value, the value as the error shows it).
REFUSED = [
    ("wait_for_past_depends_before_skipping", "True", "True"),
    ("start_date", "datetime.datetime(2026, 1, 1)", "datetime.datetime(2026, 1, 1, 0, 0)"),
    ("end_date", "datetime.datetime(2026, 1, 1)", "datetime.datetime(2026, 1, 1, 0, 0)"),
    ("run_as_user", '"bob"', "'bob'"),
    ("retry_exponential_backoff", "5", "5"),
]


def test_refused_cases_cover_every_default_only_argument() -> None:
    assert {name for name, _, _ in REFUSED} == set(BaseOperator.NOOP_DEFAULTS) | {"retry_exponential_backoff"}


def refusal(tmp_path: Path, body: str) -> dict[str, Any]:
    result = compile_source(tmp_path, HEADER + "\n" + textwrap.dedent(body))
    assert not result["ok"], result
    error: dict[str, Any] = result["error"]
    assert error["kind"] == "UnsupportedConstruct", error
    assert "unexpected keyword argument" not in error["message"]
    return error


#: The line of a body's first line, after HEADER and a blank line.
BODY_LINE = HEADER.count("\n") + 2


@pytest.mark.parametrize(("name", "value", "shown"), REFUSED, ids=[r[0] for r in REFUSED])
@pytest.mark.parametrize("form", ["operator", "decorator", "override", "dag_default_args", "task_default_args"])
def test_refused_arguments_are_located_errors_naming_argument_and_value(
    tmp_path: Path, form: str, name: str, value: str, shown: str
) -> None:
    arg = f"{name}={value}"
    body = {
        "operator": f'with DAG("d", schedule=None):\n    PythonOperator(task_id="t", python_callable=work, {arg})\n',
        "decorator": f'with DAG("d", schedule=None):\n    task({arg})(work)()\n',
        "override": f'with DAG("d", schedule=None):\n    task(work).override({arg})()\n',
        "dag_default_args": f'with DAG("d", schedule=None, default_args=dict({arg})):\n    EmptyOperator(task_id="t")\n',
        "task_default_args": f'with DAG("d", schedule=None):\n    BashOperator(task_id="t", bash_command="echo", default_args=dict({arg}))\n',
    }[form]
    error = refusal(tmp_path, body)
    line = BODY_LINE + (0 if form == "dag_default_args" else 1)
    assert error["line"] == line, error
    assert f"{name}={shown}" in error["message"], error
    assert error["message"].count(" is not supported by Leoflow: ") == 1, error


@pytest.mark.parametrize(
    "body",
    [
        'BashOperator(task_id="t", bash_command="echo hi", multiple_outputs=True)',
        'BashOperator.partial(task_id="t", multiple_outputs=True).expand(bash_command=["echo 1"])',
        'task.bash(multiple_outputs=True)(work)()',
        'task.bash(work).override(multiple_outputs=True)()',
    ],
)
def test_bash_tasks_refuse_multiple_outputs_true(tmp_path: Path, body: str) -> None:
    error = refusal(tmp_path, f'with DAG("d", schedule=None):\n    {body}\n')
    assert error["line"] == BODY_LINE + 1, error
    assert "multiple_outputs=True" in error["message"], error
    assert "last line of output" in error["message"], error


def test_bash_operator_refuses_multiple_outputs_true_from_default_args(tmp_path: Path) -> None:
    error = refusal(tmp_path, """\
        with DAG("d", schedule=None, default_args={"multiple_outputs": True}):
            EmptyOperator(task_id="empty")
            PythonOperator(task_id="python", python_callable=work)
            BashOperator(task_id="bash", bash_command="echo hi")
        """)
    assert error["line"] == BODY_LINE + 3, error
    assert "default_args(multiple_outputs=True)" in error["message"], error


def test_weight_rule_is_recorded_unless_it_is_airflows_default(tmp_path: Path) -> None:
    default = compile_every_operator(tmp_path, '{"weight_rule": "downstream", "priority_weight": 5}')
    assert default["ok"], default
    assert default == compile_every_operator(tmp_path, '{"priority_weight": 5}')
    for rule in ("upstream", "absolute"):
        given = compile_every_operator(tmp_path, f'{{"weight_rule": "{rule}"}}')
        assert given["ok"], given
        assert {task.get("weight_rule") for task in given["dags"][0]["tasks"]} == {rule}
    refused = compile_every_operator(tmp_path, '{"weight_rule": "sideways"}')
    assert not refused["ok"]
    assert "weight_rule must be one of 'downstream', 'upstream', 'absolute', not 'sideways'" in refused["error"]["message"]


def test_a_task_s_limits_on_instances_at_once_are_recorded_only_when_set(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text(textwrap.dedent("""
        from airflow.sdk import DAG, task
        from airflow.providers.standard.operators.empty import EmptyOperator

        with DAG("d", schedule=None, default_args={"max_active_tis_per_dagrun": 2}):
            @task(max_active_tis_per_dag=3)
            def fetch(n):
                return n

            fetch.expand(n=[1, 2, 3, 4])
            EmptyOperator(task_id="plain", max_active_tis_per_dagrun=None)
    """))
    result = compile_file(path)
    assert result["ok"], result
    tasks = {t["task_id"]: t for t in result["dags"][0]["tasks"]}
    assert (tasks["fetch"]["max_active_tis_per_dag"], tasks["fetch"]["max_active_tis_per_dagrun"]) == (3, 2)
    assert "max_active_tis_per_dag" not in tasks["plain"] and "max_active_tis_per_dagrun" not in tasks["plain"]
    path.write_text("from airflow.sdk import DAG\nfrom airflow.providers.standard.operators.empty import EmptyOperator\n"
                    "with DAG('d', schedule=None):\n    EmptyOperator(task_id='t', max_active_tis_per_dag=0)\n")
    refused = compile_file(path)
    assert not refused["ok"] and "max_active_tis_per_dag must be at least 1, not 0" in refused["error"]["message"]
