"""The compiler on small DAG files: constructs become dag.json, bad input becomes a located error."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from leoflow.compiler import compile_file

SRC = Path(__file__).resolve().parents[1] / "src"


def compile_source(tmp_path: Path, source: str, name: str = "dag.py") -> dict[str, Any]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return compile_file(path)


def only_dag(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"], result
    assert len(result["dags"]) == 1
    return result["dags"][0]


def tasks(dag: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["task_id"]: t for t in dag["tasks"]}


def error(result: dict[str, Any]) -> dict[str, Any]:
    assert not result["ok"], result
    return result["error"]


def test_taskflow_dag_with_xcom_arguments(tmp_path: Path) -> None:
    dag = only_dag(
        compile_source(
            tmp_path,
            """
            import pendulum
            from airflow.sdk import DAG, task

            with DAG("etl", schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="Europe/Amsterdam"),
                     catchup=True, tags=["b", "a"], description="ETL"):
                @task
                def extract() -> dict:
                    return {"a": 1}

                @task(retries=2)
                def load(data, *, mode="append"):
                    pass

                load(extract(), mode="replace")
            """,
        )
    )
    assert dag["dag_id"] == "etl"
    assert dag["schedule"] == {"type": "cron", "expression": "0 0 * * *", "preset": "@daily"}
    assert dag["timetable_summary"] == "@daily"
    assert dag["start_date"] == "2025-12-31T23:00:00Z"
    assert dag["timezone"] == "Europe/Amsterdam"
    assert dag["catchup"] is True
    assert dag["tags"] == ["a", "b"]
    by_id = tasks(dag)
    assert by_id["extract"]["python"]["multiple_outputs"] is True
    load = by_id["load"]
    assert load["operator"] == "@task"
    assert load["upstream"] == ["extract"]
    assert load["retries"] == 2
    assert load["python"]["args"] == [{"__xcom__": {"task_id": "extract", "key": "return_value"}}]
    assert load["python"]["kwargs"] == {"mode": "replace"}
    assert load["python"]["callable"]["__callable__"]["qualname"] == "load"


def test_results_nested_in_lists_and_dicts_all_reach_the_consumer(tmp_path: Path) -> None:
    dag = only_dag(
        compile_source(
            tmp_path,
            """
            from leoflow import dag, task

            @dag(schedule=None)
            def fan_in():
                @task
                def work(i: int) -> int:
                    return i

                @task
                def aggregate(values, named):
                    return sum(values)

                aggregate([work(i) for i in range(5)], named={"first": work(99)})

            fan_in()
            """,
        )
    )
    by_id = tasks(dag)
    assert sorted(by_id) == ["aggregate", "work", "work__1", "work__2", "work__3", "work__4", "work__5"]
    aggregate = by_id["aggregate"]
    assert aggregate["upstream"] == ["work", "work__1", "work__2", "work__3", "work__4", "work__5"]
    values = aggregate["python"]["args"][0]
    assert [v["__xcom__"]["task_id"] for v in values] == ["work", "work__1", "work__2", "work__3", "work__4"]
    assert aggregate["python"]["kwargs"]["named"]["first"]["__xcom__"]["task_id"] == "work__5"


def test_classic_operators_dependencies_and_trigger_rules(tmp_path: Path) -> None:
    dag = only_dag(
        compile_source(
            tmp_path,
            """
            import datetime
            from airflow.sdk import DAG, chain, cross_downstream
            from airflow.providers.standard.operators.bash import BashOperator
            from airflow.providers.standard.operators.empty import EmptyOperator
            from airflow.providers.standard.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
            from airflow.utils.trigger_rule import TriggerRule

            def choose():
                return "b"

            def check():
                return True

            with DAG("classic", schedule=datetime.timedelta(hours=6), start_date=datetime.datetime(2026, 1, 1),
                     default_args={"retries": 1, "retry_delay": datetime.timedelta(seconds=30), "owner": "ana",
                                   "depends_on_past": False}):
                start = EmptyOperator(task_id="start")
                branch = BranchPythonOperator(task_id="branch", python_callable=choose)
                a = BashOperator(task_id="a", bash_command="echo {{ ds }}", env={"X": "1"})
                b = PythonOperator(task_id="b", python_callable=check, op_kwargs={"n": 1}, retries=5)
                gate = ShortCircuitOperator(task_id="gate", python_callable=check)
                join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
                x, y = EmptyOperator(task_id="x"), EmptyOperator(task_id="y")
                start >> branch >> [a, b]
                join << [a, b]
                chain(join, gate, [x, y])
                cross_downstream([x, y], [EmptyOperator(task_id="z1"), EmptyOperator(task_id="z2")])
            """,
        )
    )
    assert dag["schedule"] == {"type": "timedelta", "seconds": 21600.0}
    assert dag["owners"] == ["ana"]
    by_id = tasks(dag)
    assert by_id["branch"]["operator"] == "BranchPythonOperator"
    assert by_id["a"]["bash"]["command"] == "echo {{ ds }}"
    assert by_id["a"]["bash"]["env"] == {"X": "1"}
    assert by_id["a"]["retries"] == 1 and by_id["a"]["retry_delay"] == 30.0
    assert by_id["b"]["retries"] == 5, "an explicit argument beats default_args"
    assert by_id["join"]["upstream"] == ["a", "b"]
    assert by_id["join"]["trigger_rule"] == "none_failed_min_one_success"
    assert by_id["gate"]["short_circuit"] == {"ignore_downstream_trigger_rules": True}
    assert by_id["x"]["upstream"] == ["gate"]
    assert by_id["z1"]["upstream"] == ["x", "y"] and by_id["z2"]["upstream"] == ["x", "y"]


def test_task_groups_prefix_ids_and_groups_chain_as_a_whole(tmp_path: Path) -> None:
    dag = only_dag(
        compile_source(
            tmp_path,
            """
            from airflow.sdk import DAG, TaskGroup, task, task_group
            from airflow.providers.standard.operators.empty import EmptyOperator

            with DAG("groups", schedule=None):
                start = EmptyOperator(task_id="start")
                with TaskGroup("section", tooltip="first") as section:
                    inner_a = EmptyOperator(task_id="a")
                    inner_b = EmptyOperator(task_id="b")
                    inner_a >> inner_b

                @task_group
                def transform(value):
                    @task
                    def double(v):
                        return v * 2
                    return double(value)

                @task
                def seed():
                    return 1

                end = EmptyOperator(task_id="end")
                start >> section >> end
                transform(seed()) >> end
            """,
        )
    )
    by_id = tasks(dag)
    assert by_id["section.a"]["upstream"] == ["start"]
    assert by_id["section.b"]["upstream"] == ["section.a"]
    assert by_id["end"]["upstream"] == ["section.b", "transform.double"]
    assert by_id["transform.double"]["group"] == "transform"
    assert [g["group_id"] for g in dag["task_groups"]] == ["section", "transform"]


def test_dynamic_mapping_partial_expand_and_expand_kwargs(tmp_path: Path) -> None:
    dag = only_dag(
        compile_source(
            tmp_path,
            """
            from airflow.sdk import DAG, task
            from airflow.providers.standard.operators.bash import BashOperator

            with DAG("mapping", schedule=None):
                @task
                def numbers():
                    return [1, 2, 3]

                @task
                def add(x, y):
                    return x + y

                @task
                def total(values):
                    return sum(values)

                added = add.partial(y=10).expand(x=numbers())
                total(added)
                BashOperator.partial(task_id="echo").expand(bash_command=["echo 1", "echo 2"])
                add.expand_kwargs([{"x": 1, "y": 2}])
            """,
        )
    )
    by_id = tasks(dag)
    assert by_id["add"]["mapped"] == {
        "expand": {"x": {"__xcom__": {"task_id": "numbers", "key": "return_value"}}},
        "expand_kwargs": None,
    }
    assert by_id["add"]["python"]["kwargs"] == {"y": 10}
    assert by_id["add"]["upstream"] == ["numbers"]
    assert by_id["total"]["upstream"] == ["add"]
    assert by_id["echo"]["mapped"]["expand"] == {"bash_command": ["echo 1", "echo 2"]}
    assert by_id["echo"]["bash"]["command"] == {"__mapped__": True}
    assert by_id["add__1"]["mapped"]["expand_kwargs"] == [{"x": 1, "y": 2}]


def test_decorator_variants_params_and_dag_settings(tmp_path: Path) -> None:
    dag = only_dag(
        compile_source(
            tmp_path,
            """
            import datetime
            from airflow.sdk import Param, dag, task

            @dag(schedule="*/15 9-17 * * MON-FRI", max_active_runs=1, max_active_tasks=4,
                 params={"n": Param(3, type="integer", minimum=1), "name": "x"},
                 doc_md="# Docs", end_date=datetime.datetime(2027, 1, 1), is_paused_upon_creation=False)
            def variants(limit: int = 5):
                @task.bash
                def say() -> str:
                    return "echo hi"

                @task.branch
                def pick():
                    return "say"

                @task.short_circuit
                def proceed():
                    return True

                @task.sensor(poke_interval=5, timeout=60, mode="reschedule")
                def ready():
                    return True

                @task(pool="small", pool_slots=2, priority_weight=7, execution_timeout=datetime.timedelta(minutes=1),
                      retry_exponential_backoff=True, max_retry_delay=600, queue="q")
                def heavy(limit):
                    return limit

                ready() >> pick() >> [say(), proceed()]
                heavy(limit)

            variants()
            """,
        )
    )
    assert dag["schedule"] == {"type": "cron", "expression": "*/15 9-17 * * MON-FRI"}
    assert dag["max_active_runs"] == 1 and dag["max_active_tasks"] == 4
    assert dag["params"]["n"] == {"default": 3, "description": None, "schema": {"type": "integer", "minimum": 1}}
    assert dag["params"]["name"]["default"] == "x"
    assert dag["params"]["limit"]["default"] == 5, "@dag function arguments become params"
    assert dag["is_paused_upon_creation"] is False
    assert dag["end_date"] == "2027-01-01T00:00:00Z"
    by_id = tasks(dag)
    assert by_id["say"]["operator"] == "@task.bash" and by_id["say"]["bash"]["command"] is None
    assert by_id["pick"]["operator"] == "@task.branch"
    assert by_id["proceed"]["operator"] == "@task.short_circuit"
    assert by_id["ready"]["sensor"]["poke_interval"] == {"__timedelta__": 5.0}
    assert by_id["ready"]["sensor"]["mode"] == "reschedule"
    heavy = by_id["heavy"]
    assert (heavy["pool"], heavy["pool_slots"], heavy["priority_weight"]) == ("small", 2, 7)
    assert heavy["execution_timeout"] == 60.0 and heavy["max_retry_delay"] == 600.0
    assert heavy["retry_exponential_backoff"] is True
    assert heavy["python"]["args"] == [{"__param__": "limit"}]


def test_several_dags_in_one_file_and_leoflow_imports(tmp_path: Path) -> None:
    result = compile_source(
        tmp_path,
        """
        from leoflow import DAG, EmptyOperator

        for name in ("one", "two"):
            with DAG(name, schedule="@once"):
                EmptyOperator(task_id="only")
        """,
    )
    assert result["ok"], result
    assert [d["dag_id"] for d in result["dags"]] == ["one", "two"]
    assert result["dags"][0]["schedule"] == {"type": "once"}


def test_prints_in_the_dag_file_do_not_corrupt_the_output(tmp_path: Path) -> None:
    (tmp_path / "dag.py").write_text(
        "print('hello from module level')\nfrom leoflow import DAG, EmptyOperator\n"
        "with DAG('p', schedule=None):\n    EmptyOperator(task_id='t')\n"
    )
    out = subprocess.run(
        [sys.executable, "-m", "leoflow.compiler", str(tmp_path / "dag.py")],
        capture_output=True, text=True, env={"PYTHONPATH": str(SRC)}, check=True,
    )
    assert json.loads(out.stdout)["ok"] is True
    assert "hello from module level" in out.stderr


BAD_INPUT = [
    ("syntax error", "from leoflow import DAG\nwith DAG('x'\n", 2, "SyntaxError", ""),
    (
        "unknown keyword argument",
        "from leoflow import DAG, EmptyOperator\nwith DAG('x', schedule=None):\n    EmptyOperator(task_id='t', colour='red')\n",
        3, "DagDefinitionError", "unexpected keyword argument 'colour'",
    ),
    (
        "unknown DAG argument",
        "from leoflow import DAG\nwith DAG('x', schedule=None, sla_miss_callback=print):\n    pass\n",
        2, "UnsupportedConstruct", "sla_miss_callback",
    ),
    ("bad cron", "from leoflow import DAG, EmptyOperator\nwith DAG('x', schedule='61 * * * *'):\n    EmptyOperator(task_id='t')\n",
     2, "DagDefinitionError", "minute field '61' is out of range 0-59"),
    ("bad preset", "from leoflow import DAG, EmptyOperator\nwith DAG('x', schedule='@fortnightly'):\n    EmptyOperator(task_id='t')\n",
     2, "DagDefinitionError", "unknown schedule preset '@fortnightly'"),
    (
        "cycle",
        "from leoflow import DAG, EmptyOperator\nwith DAG('x', schedule=None):\n    a = EmptyOperator(task_id='a')\n"
        "    b = EmptyOperator(task_id='b')\n    a >> b >> a\n",
        2, "DagDefinitionError", "has a cycle",
    ),
    (
        "duplicate task id",
        "from leoflow import DAG, EmptyOperator\nwith DAG('x', schedule=None):\n    EmptyOperator(task_id='a')\n"
        "    EmptyOperator(task_id='a')\n",
        4, "DagDefinitionError", "task_id 'a' is used twice in DAG 'x' (first at line 3)",
    ),
    ("unsupported import", "from airflow.sdk import AssetRef\n", 1, "UnsupportedConstruct", "airflow.sdk.AssetRef"),
    (
        "unsupported module",
        "from airflow.providers.standard.operators.smooth import SmoothOperator\n",
        1, "UnsupportedConstruct", "module airflow.providers.standard.operators.smooth",
    ),
    ("unknown operator", "from airflow.providers.standard.operators.python import PythonOperatorThatIsNot\n",
     1, "UnsupportedConstruct", "PythonOperatorThatIsNot"),
    ("missing package", "import pandas_that_does_not_exist\n", 1, "ImportError", "leoflow.yaml `dependencies`"),
    ("bad trigger rule", "from leoflow import DAG, EmptyOperator\nwith DAG('x', schedule=None):\n    EmptyOperator(task_id='t', trigger_rule='most_success')\n",
     3, "DagDefinitionError", "unknown trigger_rule 'most_success'"),
    ("task outside a DAG", "from leoflow import EmptyOperator\nEmptyOperator(task_id='t')\n", 2, "DagDefinitionError", "created outside a DAG"),
    ("no DAG at all", "x = 1\n", None, "NoDag", "defines no DAG"),
    ("callable of another kind", "import functools\nfrom leoflow import DAG, PythonOperator\nwith DAG('x', schedule=None):\n"
     "    PythonOperator(task_id='t', python_callable=functools.partial(print, 1))\n",
     4, "UnsupportedConstruct", "python_callable of type partial"),
    ("iterating a result", "from leoflow import DAG, task\nwith DAG('x', schedule=None):\n    @task\n    def f():\n        return []\n    for v in f():\n        pass\n",
     6, "DagDefinitionError", "cannot be iterated"),
    ("custom operator without execute", "from airflow.sdk import DAG, BaseOperator\nclass Mine(BaseOperator):\n    pass\n"
     "with DAG('x', schedule=None):\n    Mine(task_id='t')\n", 5, "DagDefinitionError", "Mine does not define execute"),
    ("unsupported decorator", "from airflow.sdk import DAG, task\nwith DAG('x', schedule=None):\n    @task.docker(image='x')\n    def f():\n        pass\n",
     3, "UnsupportedConstruct", "@task.docker"),
    ("exception at module level", "raise RuntimeError('boom')\n", 1, "RuntimeError", "RuntimeError: boom"),
    ("exit at module level", "import sys\nsys.exit(3)\n", 2, "SystemExit", "exit(3)"),
    ("parse-time Variable", "from airflow.sdk import Variable\nVariable.get('x')\n", 2, "DagDefinitionError", "read Variables inside a task"),
    ("mismatched chain lists", "from leoflow import DAG, EmptyOperator, chain\nwith DAG('x', schedule=None):\n"
     "    chain([EmptyOperator(task_id='a')], [EmptyOperator(task_id='b'), EmptyOperator(task_id='c')])\n",
     3, "DagDefinitionError", "lists of 1 and 2 elements"),
    ("non-JSON argument", "from leoflow import DAG, task\nwith DAG('x', schedule=None):\n    @task\n    def f(v):\n        pass\n    f(object())\n",
     6, "DagDefinitionError", "a value of type object cannot be passed to a task"),
    ("object storage path argument", "from airflow.sdk import DAG, ObjectStoragePath, task\nwith DAG('x', schedule=None):\n"
     "    @task\n    def f(v):\n        pass\n    f(ObjectStoragePath('s3://b/k'))\n",
     6, "DagDefinitionError", "a value of type ObjectStoragePath cannot be passed to a task"),
]


@pytest.mark.parametrize(("source", "line", "kind", "message"), [case[1:] for case in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_a_located_error(tmp_path: Path, source: str, line: int | None, kind: str, message: str) -> None:
    err = error(compile_source(tmp_path, source))
    assert err["kind"] == kind, err
    assert err["line"] == line, err
    assert err["file"] == "dag.py"
    assert message in err["message"], err


def test_edge_labels_name_the_edges_they_make(tmp_path: Path) -> None:
    result = compile_source(tmp_path, (
        "from airflow.sdk import DAG, Label, chain\n"
        "from airflow.providers.standard.operators.empty import EmptyOperator as E\n"
        "with DAG('x', schedule=None):\n"
        "    a, b, c = E(task_id='a'), E(task_id='b'), E(task_id='c')\n"
        "    chain(a, Label('first'), b)\n"
        "    c << Label('late') << [a, b]\n"
    ))
    assert result["ok"], result
    dag = result["dags"][0]
    assert dag["edge_labels"] == [
        {"source_id": "a", "target_id": "b", "label": "first"},
        {"source_id": "a", "target_id": "c", "label": "late"},
        {"source_id": "b", "target_id": "c", "label": "late"},
    ]
    assert {t["task_id"]: t["upstream"] for t in dag["tasks"]} == {"a": [], "b": ["a"], "c": ["a", "b"]}
    unlabelled = compile_source(tmp_path, "from airflow.sdk import DAG\nwith DAG('y', schedule=None):\n    pass\n")
    assert "edge_labels" not in unlabelled["dags"][0]
    empty = compile_source(tmp_path, "from airflow.sdk import Label\nLabel('')\n")
    assert not empty["ok"] and "Label needs a non-empty string" in empty["error"]["message"]
