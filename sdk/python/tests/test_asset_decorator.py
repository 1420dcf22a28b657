"""Airflow's `@asset` decorator: a function materialising an asset compiles to a DAG of one task
whose outlet is the asset, its other parameters naming its inlets (found among the DAG file's
assets), and runs with `self`, `context` and those inlets bound, as Airflow 3.2 runs it."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from task_harness import Agent, Project
from test_airflow_examples import fetch_wheel
from test_asset_events import event
from test_assets import BODY_LINE, C, SCHEMA, as_document, document, refusal

from leoflow.compiler import compile_file

EXAMPLE = "example_asset_decorator.py"


def example() -> str:
    with zipfile.ZipFile(fetch_wheel()) as wheel:
        return wheel.read(f"airflow/example_dags/{EXAMPLE}").decode()


def ref(name: str, uri: str, group: str = "asset", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "uri": uri, "group": group, "extra": extra or {}}


def shape(task: dict[str, Any]) -> dict[str, Any]:
    """What a task of an @asset DAG is about: its id, operator, callable and assets."""
    kept = {k: task[k] for k in ("task_id", "operator", "upstream", "outlets", "inlets") if k in task}
    kept["callable"] = task["python"]["callable"]["__callable__"]["qualname"]
    return kept


# --------------------------------------------------------------------------------------------
# Compiling


def test_airflow_s_example_asset_decorator_compiles_as_airflow_builds_it(tmp_path: Path) -> None:
    source = example()
    path = tmp_path / EXAMPLE
    path.write_text(source)
    doc = as_document(source, compile_file(path))
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    dags = {d["dag_id"]: d for d in doc["dags"]}
    assert list(dags) == ["asset1_producer", "asset2_producer", "consumes_asset_decorator"]
    producer_1 = ref("asset1_producer", "s3://bucket/asset1_producer")
    producer_2 = ref("asset2_producer", "s3://bucket/object")
    for dag_id in ("asset1_producer", "asset2_producer"):
        dag = dags[dag_id]
        assert (dag["schedule"], dag["timetable_summary"], dag["catchup"], dag["start_date"], dag["tags"]) == (
            {"type": "none"}, None, False, None, [],
        )
    assert [shape(t) for t in dags["asset1_producer"]["tasks"]] == [
        {"task_id": "asset1_producer", "operator": "PythonOperator", "upstream": [], "outlets": [producer_1], "callable": "asset1_producer"},
    ]
    # `asset1_producer`, a parameter of asset2_producer, is its inlet: the asset of that name.
    assert [shape(t) for t in dags["asset2_producer"]["tasks"]] == [
        {
            "task_id": "asset2_producer", "operator": "PythonOperator", "upstream": [],
            "outlets": [producer_2], "inlets": [producer_1], "callable": "asset2_producer",
        },
    ]
    consumer = dags["consumes_asset_decorator"]
    assert consumer["schedule"] == {"type": "assets", "condition": {"any": [{"asset": producer_1}, {"asset": producer_2}]}}
    assert [(t["task_id"], t["outlets"]) for t in consumer["tasks"]] == [("process_nothing", [ref("process_nothing", "process_nothing")])]


def test_the_decorator_s_arguments_name_the_asset_and_its_dag(tmp_path: Path) -> None:
    doc = document(tmp_path, """
        from airflow.sdk import asset

        @asset(
            schedule=c | a, name="orders", uri="s3://lake/orders/", group="tables", extra={"k": 1},
            dag_id="build_orders", tags=["t"], description="Orders", is_paused_upon_creation=True,
            dag_display_name="Build orders", params={"n": 1}, owner_links={}, access_control=None,
        )
        def make_orders(self, context, c, limit=3, *, ti=None):
            pass
    """)
    (dag,) = doc["dags"]
    assert {k: dag[k] for k in ("dag_id", "schedule", "catchup", "tags", "description", "is_paused_upon_creation", "display_name")} == {
        "dag_id": "build_orders",
        "schedule": {"type": "assets", "condition": {"any": [
            {"asset": C}, {"asset": ref("s3://lake/a", "s3://lake/a")},
        ]}},
        "catchup": False,
        "tags": ["t"],
        "description": "Orders",
        "is_paused_upon_creation": True,
        "display_name": "Build orders",
    }
    assert dag["params"] == {"n": {"description": None, "schema": {}, "default": 1}}
    # Only `c` (no default, not self or context) is an inlet; the URI is normalised, as an Asset's.
    assert [shape(t) for t in dag["tasks"]] == [
        {
            "task_id": "make_orders", "operator": "PythonOperator", "upstream": [],
            "outlets": [ref("orders", "s3://lake/orders", "tables", {"k": 1})], "inlets": [C], "callable": "make_orders",
        },
    ]


def test_inlets_are_found_among_every_asset_of_the_file_wherever_it_is_defined(tmp_path: Path) -> None:
    doc = document(tmp_path, """
        from airflow.sdk import asset

        @asset(schedule=None)
        def report(raw, orders, self):
            pass

        with DAG("ingest", schedule=None):
            EmptyOperator(task_id="load", outlets=[Asset(name="raw", uri="s3://lake/raw", extra={"from": "ingest"})])

        @asset(schedule=None, uri="s3://lake/orders")  # defined after its reader
        def orders():
            pass
    """)
    tasks = {t["task_id"]: t for d in doc["dags"] for t in d["tasks"]}
    assert tasks["report"]["inlets"] == [
        ref("raw", "s3://lake/raw", extra={"from": "ingest"}), ref("orders", "s3://lake/orders"),
    ]
    assert tasks["report"]["outlets"] == [ref("report", "report")]
    assert "inlets" not in tasks["orders"]


def test_the_asset_is_an_asset_the_file_can_schedule_on(tmp_path: Path) -> None:
    doc = document(tmp_path, """
        from airflow.sdk import asset

        @asset(schedule="@daily", uri="s3://lake/daily")
        def daily():
            pass

        with DAG("after_daily", schedule=[daily]):
            EmptyOperator(task_id="t", inlets=[daily])
    """)
    dags = {d["dag_id"]: d for d in doc["dags"]}
    assert dags["daily"]["schedule"]["type"] == "cron"
    assert dags["after_daily"]["schedule"] == {"type": "assets", "condition": {"all": [{"asset": ref("daily", "s3://lake/daily")}]}}
    assert dags["after_daily"]["tasks"][0]["inlets"] == [ref("daily", "s3://lake/daily")]


def test_a_task_function_keeps_its_task_and_gets_the_asset_as_outlet(tmp_path: Path) -> None:
    doc = document(tmp_path, """
        from airflow.sdk import asset

        @asset(schedule=None, uri="s3://lake/tasked")
        @task(retries=2, inlets=[a])
        def tasked():
            pass
    """)
    (task,) = doc["dags"][0]["tasks"]
    assert doc["dags"][0]["dag_id"] == "tasked"
    assert (task["task_id"], task["operator"], task["retries"]) == ("tasked", "@task", 2)
    assert (task["outlets"], task["inlets"]) == ([ref("tasked", "s3://lake/tasked")], [ref("s3://lake/a", "s3://lake/a")])


BAD = [
    ("@asset.multi", "@asset.multi(outlets=[a], schedule=None)\ndef f():\n    pass\n", 1, "UnsupportedConstruct",
     "@asset.multi is not supported by Leoflow: write a DAG whose task has outlets=[...] naming each asset it updates"),
    ("an inlet that names no asset", "@asset(schedule=None)\ndef f(self, nothing_here):\n    pass\n", 1, "DagDefinitionError",
     "@asset 'f': the parameter 'nothing_here' of f() names no asset of this DAG file. Leoflow finds an @asset "
     "function's inlets among the assets the file's DAGs name (an @asset function, or an "
     "Asset(name='nothing_here', ...) in a schedule, outlets or inlets); give the parameter a default if it is not an asset"),
    ("an inlet naming assets of two URIs",
     "@asset(schedule=None, uri='s3://x/1')\ndef twice():\n    pass\n"
     "with DAG('d', schedule=[Asset(name='twice', uri='s3://x/2')]):\n    EmptyOperator(task_id='t')\n"
     "@asset(schedule=None)\ndef f(twice):\n    pass\n", 6, "DagDefinitionError",
     "@asset 'f': the parameter 'twice' of f() names 2 assets of this DAG file, of URIs 's3://x/1', 's3://x/2'"),
    ("*args", "@asset(schedule=None)\ndef f(*args):\n    pass\n", 1, "DagDefinitionError", "wildcard '*args' is not supported in @asset"),
    ("**kwargs", "@asset(schedule=None)\ndef f(self, **kwargs):\n    pass\n", 1, "DagDefinitionError",
     "wildcard '**kwargs' is not supported in @asset"),
    ("positional-only", "@asset(schedule=None)\ndef f(c, /):\n    pass\n", 1, "DagDefinitionError",
     "positional-only argument 'c' without a default is not supported in @asset"),
    ("a nested function", "def outer():\n    @asset(schedule=None)\n    def inner():\n        pass\nouter()\n", 2, "DagDefinitionError",
     "@asset: nested function not supported (outer.<locals>.inner is defined inside another function or class: "
     "define it at the top level of the DAG file)"),
    ("no schedule", "@asset(uri='s3://x')\ndef f():\n    pass\n", 1, "DagDefinitionError",
     "@asset() needs a schedule (schedule=None for an asset materialised only when triggered)"),
    ("no arguments", "@asset\ndef f():\n    pass\n", 1, "DagDefinitionError",
     "@asset takes keyword arguments only, not f: write @asset(schedule=...) above the function"),
    ("an argument @asset does not take", "@asset(schedule=None, catchup=True)\ndef f():\n    pass\n", 1, "DagDefinitionError",
     "@asset() got an unexpected keyword argument 'catchup'"),
    ("watchers", "@asset(schedule=None, watchers=[object()])\ndef f():\n    pass\n", 1, "UnsupportedConstruct",
     "@asset(watchers=...) is not supported by Leoflow: asset watchers"),
    ("a task function with outlets", "@asset(schedule=None)\n@task(outlets=[a])\ndef f():\n    pass\n", 1, "DagDefinitionError",
     "@task decorator with 'outlets' argument is not supported in @asset"),
    ("a prohibited name", "@asset(schedule=None, name='self')\ndef f():\n    pass\n", 1, "DagDefinitionError",
     "prohibited name for asset: self"),
    ("a name that is no dag_id", "@asset(schedule=None, name='s3://x')\ndef f():\n    pass\n", 1, "DagDefinitionError",
     "dag_id 's3://x' may only contain letters, digits, dashes, dots and underscores"),
]


@pytest.mark.parametrize(("body", "line", "kind", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_what_the_decorator_cannot_build_is_refused_naming_it(tmp_path: Path, body: str, line: int, kind: str, message: str) -> None:
    error = refusal(tmp_path, "from airflow.sdk import asset\n" + body)
    assert (error["kind"], error["line"]) == (kind, BODY_LINE + line), error
    assert error["message"].startswith(message), error


# --------------------------------------------------------------------------------------------
# Running


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


RUNNING = """
from airflow.sdk import Asset, Metadata, asset

@asset(schedule=None, uri="s3://lake/raw")
def raw():
    pass

@asset(schedule=[raw], uri="s3://lake/report", group="reports", extra={"k": 1})
def report(self, context, raw, limit=3, *, ti=None):
    return {
        "self": [type(self).__name__, self.name, self.uri, self.group, self.extra],
        "context": [context["ti"].task_id, context["dag"].dag_id, [o.name for o in context["outlets"]]],
        "inlets": [[type(i).__name__, i.name, i.uri] for i in context["inlets"]],
        "raw": [type(raw).__name__, raw.name, raw.uri, raw is context["inlets"][0]],
        "events": [e.id for e in context["inlet_events"][raw]],
        # A parameter with a default keeps it, as in Airflow (no context value by its name).
        "defaults": [limit, ti],
    }

@asset(schedule=None, uri="s3://lake/generated")
def generated(self):
    yield Metadata(self, {"rows": 2})
    return "made"

@asset(schedule=None, uri="s3://lake/tasked")
@task
def tasked(*, outlet_events=None, inlets=None):
    outlet_events[Asset(name="tasked", uri="s3://lake/tasked")].extra["by"] = "task"
    return len(inlets)
"""

RAW = {"name": "raw", "uri": "s3://lake/raw", "group": "asset", "extra": {}}


def test_the_function_gets_its_asset_the_context_and_its_inlets(project: Project) -> None:
    agent = Agent()
    agent.asset_events[("raw", "s3://lake/raw")] = [event(1, RAW, {}), event(2, RAW, {"rows": 2})]
    outcome, agent = project.run(RUNNING, "report", agent, dag_id="report")
    assert outcome.message() == {"op": "done", "outcome": "success", "reason": ""}
    assert agent.pushed["return_value"] == {
        "self": ["Asset", "report", "s3://lake/report", "reports", {"k": 1}],
        "context": ["report", "report", ["report"]],
        "inlets": [["Asset", "raw", "s3://lake/raw"]],
        "raw": ["Asset", "raw", "s3://lake/raw", True],
        "events": [1, 2],
        "defaults": [3, None],
    }
    assert [r for r in agent.asked if r["op"] == "asset_events"] == [{"op": "asset_events", "name": "raw", "uri": "s3://lake/raw"}]


def test_a_generator_function_s_metadata_sets_its_own_asset_s_extra(project: Project) -> None:
    outcome, agent = project.run(RUNNING, "generated", dag_id="generated")
    assert outcome.message() == {
        "op": "done", "outcome": "success", "reason": "",
        "outlet_events": [{"name": "generated", "uri": "s3://lake/generated", "extra": {"rows": 2}}],
    }
    assert agent.pushed["return_value"] == "made"


def test_a_task_function_runs_as_a_task_with_the_asset_as_outlet(project: Project) -> None:
    outcome, agent = project.run(RUNNING, "tasked", dag_id="tasked")
    assert outcome.message() == {
        "op": "done", "outcome": "success", "reason": "",
        "outlet_events": [{"name": "tasked", "uri": "s3://lake/tasked", "extra": {"by": "task"}}],
    }
    assert agent.pushed["return_value"] == 0


def test_airflow_s_example_asset_decorator_runs(project: Project, capfd: pytest.CaptureFixture[str]) -> None:
    body = example().replace("from __future__ import annotations\n", "")
    for dag_id in ("asset1_producer", "asset2_producer"):
        outcome, agent = project.run(body, dag_id, dag_id=dag_id)
        assert outcome.message() == {"op": "done", "outcome": "success", "reason": ""}, dag_id
    printed = capfd.readouterr()
    assert "Asset(name='asset2_producer', uri='s3://bucket/object', group='asset', extra={})" in printed.out + printed.err
    assert (
        "InletEventsAccessor(_after=None, _before=None, _ascending=True, _limit=None, _asset_name='asset1_producer', "
        "_asset_uri='s3://bucket/asset1_producer', _alias_name=None)"
    ) in printed.out + printed.err


def test_the_version_of_an_asset_dag_is_stable(tmp_path: Path) -> None:
    # Compiling the same file twice gives the same document (and so the same version hash).
    source = example()
    path = tmp_path / EXAMPLE
    path.write_text(source)
    first, second = (as_document(source, compile_file(path)) for _ in range(2))
    assert [d["version_hash"] for d in first["dags"]] == [d["version_hash"] for d in second["dags"]]
