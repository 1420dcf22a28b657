"""Airflow's assets: a DAG scheduled on assets (an Asset, a list, `&` / `|` conditions,
AssetOrTimeSchedule) and tasks' outlets and inlets compile into dag.json's asset references and
conditions (docs/dag-json.md, "Assets"); bad input is refused as Airflow refuses it; what Leoflow
does not support yet is refused naming it; a DAG without assets compiles as it did before."""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from leoflow.assets import Asset, AssetAll, AssetAny, normalise_uri
from leoflow.compiler import compile_file
from leoflow.errors import DagDefinitionError, UnsupportedConstruct
from task_harness import Project

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "docs" / "dag-json.schema.json").read_text())
GOLDEN = REPO / "authoring" / "tests" / "golden"

HEADER = """\
import datetime
from airflow.sdk import DAG, Asset, AssetAll, AssetAny, AssetOrTimeSchedule, CronTriggerTimetable, task
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator

a = Asset("s3://lake/a")
b = Asset("s3://lake/b", extra={"hi": "bye"})
c = Asset(name="c", uri="s3://lake/c", group="tables")

def work():
    pass
"""

#: The asset references of HEADER's `a`, `b` and `c`.
A = {"name": "s3://lake/a", "uri": "s3://lake/a", "group": "asset", "extra": {}}
B = {"name": "s3://lake/b", "uri": "s3://lake/b", "group": "asset", "extra": {"hi": "bye"}}
C = {"name": "c", "uri": "s3://lake/c", "group": "tables", "extra": {}}
CRON = {"type": "cron", "expression": "0 1 * * 3", "timezone": "UTC", "interval": 0.0, "run_immediately": False}


def canonical(value: Any) -> str:
    """JSON as version hashes take it: keys sorted, no whitespace (authoring/src/document.rs)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def as_document(source: str, compiled: dict[str, Any]) -> dict[str, Any]:
    """The project document `leoflow compile` writes around the SDK's DAGs for a project without
    leoflow.yaml (authoring/src/document.rs `build`): what the schema and version hashes cover."""
    assert compiled["ok"], compiled
    source_sha256 = hashlib.sha256(source.encode()).hexdigest()
    dags = copy.deepcopy(compiled["dags"])
    for dag in dags:
        for task in dag["tasks"]:
            task.setdefault("env", None)
            task.setdefault("resources", None)
        dag["source_sha256"] = source_sha256
        dag["overrides"] = []
        dag["version_hash"] = hashlib.sha256(canonical(dag).encode()).hexdigest()
    return {
        "dag_json_version": 1,
        "project": "assets",
        "source": {"file": "dag.py", "sha256": source_sha256, "text": source},
        "config": {"file": None, "python_version": None, "dependencies": []},
        "dags": dags,
    }


def compile_body(tmp_path: Path, body: str) -> dict[str, Any]:
    path = tmp_path / "dag.py"
    path.write_text(HEADER + textwrap.dedent(body), encoding="utf-8")
    return compile_file(path)


def document(tmp_path: Path, body: str) -> dict[str, Any]:
    """The project document of `HEADER + body`, checked against dag.json's schema."""
    source = HEADER + textwrap.dedent(body)
    doc = as_document(source, compile_body(tmp_path, body))
    jsonschema.validate(doc, SCHEMA, format_checker=jsonschema.FormatChecker())
    return doc


def refusal(tmp_path: Path, body: str) -> dict[str, Any]:
    result = compile_body(tmp_path, body)
    assert not result["ok"], result
    error: dict[str, Any] = result["error"]
    return error


#: The line of a body's first line, after HEADER.
BODY_LINE = HEADER.count("\n") + 1


# --------------------------------------------------------------------------------------------
# Schedules

SCHEDULES = [
    ("one asset", "a", {"asset": A}),
    ("a list of one", "[a]", {"all": [{"asset": A}]}),
    ("a list", "[a, b]", {"all": [{"asset": A}, {"asset": B}]}),
    ("a tuple", "(b, a)", {"all": [{"asset": B}, {"asset": A}]}),
    ("a set, in a stable order", "{b, c, a}", {"all": [{"asset": C}, {"asset": A}, {"asset": B}]}),
    ("and", "a & b", {"all": [{"asset": A}, {"asset": B}]}),
    ("or", "a | b", {"any": [{"asset": A}, {"asset": B}]}),
    ("or of an and", "a | (b & c)", {"any": [{"asset": A}, {"all": [{"asset": B}, {"asset": C}]}]}),
    ("and of an or", "(a | b) & c", {"all": [{"any": [{"asset": A}, {"asset": B}]}, {"asset": C}]}),
    # Airflow's AssetAll.__and__ / AssetAny.__or__ extend the condition on their left...
    ("and flattened on the left", "(a & b) & c", {"all": [{"asset": A}, {"asset": B}, {"asset": C}]}),
    ("or flattened on the left", "(a | b) | c", {"any": [{"asset": A}, {"asset": B}, {"asset": C}]}),
    # ...but not one on their right.
    ("and nested on the right", "a & (b & c)", {"all": [{"asset": A}, {"all": [{"asset": B}, {"asset": C}]}]}),
    ("AssetAll and AssetAny", "AssetAny(a, AssetAll(b, c))", {"any": [{"asset": A}, {"all": [{"asset": B}, {"asset": C}]}]}),
    ("a list holding a condition", "[a | b, c]", {"all": [{"any": [{"asset": A}, {"asset": B}]}, {"asset": C}]}),
]


@pytest.mark.parametrize(("schedule", "condition"), [s[1:] for s in SCHEDULES], ids=[s[0] for s in SCHEDULES])
def test_asset_schedules_compile_into_their_condition(tmp_path: Path, schedule: str, condition: dict[str, Any]) -> None:
    dag = document(tmp_path, f"with DAG('d', schedule={schedule}):\n    EmptyOperator(task_id='t')\n")["dags"][0]
    assert dag["schedule"] == {"type": "assets", "condition": condition}
    assert dag["timetable_summary"] == "Asset"


TIME_AND_ASSETS = [
    ("a cron timetable and a list", "CronTriggerTimetable('0 1 * * 3', timezone='UTC')", "[a, b]",
     CRON, {"all": [{"asset": A}, {"asset": B}]}, "Asset or 0 1 * * 3"),
    ("a delta timetable and a condition", "DeltaTriggerTimetable(datetime.timedelta(hours=6))", "a | (b & c)",
     {"type": "timedelta", "seconds": 21600.0, "interval": 0.0},
     {"any": [{"asset": A}, {"all": [{"asset": B}, {"asset": C}]}]}, "Asset or 6:00:00"),
    ("one asset", "CronTriggerTimetable('@daily', timezone='UTC')", "a",
     {**CRON, "expression": "0 0 * * *"}, {"asset": A}, "Asset or 0 0 * * *"),
    ("the null timetable", "NullTimetable()", "[c]", {"type": "none"}, {"all": [{"asset": C}]}, "Asset or None"),
]


@pytest.mark.parametrize(
    ("timetable", "assets", "inner", "condition", "summary"), [s[1:] for s in TIME_AND_ASSETS], ids=[s[0] for s in TIME_AND_ASSETS]
)
@pytest.mark.parametrize("module", ["airflow.sdk", "airflow.timetables.assets"])
def test_asset_or_time_schedule_compiles_with_its_timetable_and_summary(
    tmp_path: Path, module: str, timetable: str, assets: str, inner: dict[str, Any], condition: dict[str, Any], summary: str
) -> None:
    dag = document(tmp_path, f"""
        from {module} import AssetOrTimeSchedule
        from airflow.sdk import DeltaTriggerTimetable
        from airflow.timetables.simple import NullTimetable
        with DAG('d', schedule=AssetOrTimeSchedule(timetable={timetable}, assets={assets})):
            EmptyOperator(task_id='t')
    """)["dags"][0]
    assert dag["schedule"] == {"type": "asset_or_time", "condition": condition, "timetable": inner}
    assert dag["timetable_summary"] == summary


def test_airflow_s_example_assets_compile_as_airflow_builds_them(tmp_path: Path) -> None:
    # The schedules of example_assets.py (apache-airflow-core 3.2.2), spelled as there.
    dag = document(tmp_path, """
        with DAG(dag_id="conditional_asset_and_time_based_timetable", catchup=False,
                 schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 1 * * 3", timezone="UTC"), assets=(a & b))):
            BashOperator(outlets=[Asset("s3://asset_time_based/asset_other_unknown.txt")], task_id="t", bash_command="sleep 5")
    """)["dags"][0]
    assert dag["schedule"] == {"type": "asset_or_time", "condition": {"all": [{"asset": A}, {"asset": B}]}, "timetable": CRON}
    assert dag["timetable_summary"] == "Asset or 0 1 * * 3"
    other = "s3://asset_time_based/asset_other_unknown.txt"
    assert dag["tasks"][0]["outlets"] == [{"name": other, "uri": other, "group": "asset", "extra": {}}]


# --------------------------------------------------------------------------------------------
# Asset references

REFERENCES = [
    ("a URI alone is its name too", "Asset('s3://bucket/key')",
     {"name": "s3://bucket/key", "uri": "s3://bucket/key", "group": "asset", "extra": {}}),
    ("a name alone is its URI too", "Asset(name='orders')", {"name": "orders", "uri": "orders", "group": "asset", "extra": {}}),
    ("the URI by keyword", "Asset(uri='s3://bucket/key')",
     {"name": "s3://bucket/key", "uri": "s3://bucket/key", "group": "asset", "extra": {}}),
    ("every field", "Asset('orders', 's3://bucket/orders', group='sales', extra={'rows': [1, 2], 'ok': True, 'n': None})",
     {"name": "orders", "uri": "s3://bucket/orders", "group": "sales", "extra": {"rows": [1, 2], "ok": True, "n": None}}),
    ("an empty group, as Airflow allows", "Asset('orders', group='')",
     {"name": "orders", "uri": "orders", "group": "", "extra": {}}),
    ("extra=None", "Asset('orders', extra=None)", {"name": "orders", "uri": "orders", "group": "asset", "extra": {}}),
    ("extra as JSON", "Asset('orders', extra={'pair': (1, 2), 3: 'x'})",
     {"name": "orders", "uri": "orders", "group": "asset", "extra": {"pair": [1, 2], "3": "x"}}),
    # The name is the URI as given; the URI is normalised as Airflow's core does.
    ("a normalised URI", "Asset(uri='S3://Bucket/dir/?b=2&a=1#part')",
     {"name": "S3://Bucket/dir/?b=2&a=1#part", "uri": "s3://Bucket/dir?a=1&b=2", "group": "asset", "extra": {}}),
]


@pytest.mark.parametrize(("asset", "reference"), [r[1:] for r in REFERENCES], ids=[r[0] for r in REFERENCES])
def test_an_asset_is_recorded_as_its_reference(tmp_path: Path, asset: str, reference: dict[str, Any]) -> None:
    dag = document(tmp_path, f"with DAG('d', schedule={asset}):\n    EmptyOperator(task_id='t', outlets={asset})\n")["dags"][0]
    assert dag["schedule"]["condition"] == {"asset": reference}
    assert dag["tasks"][0]["outlets"] == [reference]


@pytest.mark.parametrize(
    ("uri", "normalised"),
    [
        ("s3://bucket", "s3://bucket/"),
        ("s3://bucket/dir//", "s3://bucket/dir"),
        ("file:///tmp/dir/", "file:///tmp/dir"),
        ("HTTP://Example.com/A/", "http://Example.com/A"),
        ("gs://b/x?q=2&q=1&empty=", "gs://b/x?q=1&q=2"),
        ("postgres://user@host/db/", "postgres://user@host/db"),
        # Not a URI, or a scheme of the project's own (`x-`): as given.
        ("plain name/", "plain name/"),
        ("//host/path/", "//host/path/"),
        ("x-mine://Thing/?z=1#f", "x-mine://Thing/?z=1#f"),
    ],
)
def test_uris_are_normalised_as_airflow_s_core_normalises_them(uri: str, normalised: str) -> None:
    # Checked against airflow.sdk.definitions.asset._sanitize_uri of apache-airflow-task-sdk 1.2.2,
    # without providers.
    assert normalise_uri(uri) == normalised
    assert Asset(uri=uri).uri == normalised


def test_a_password_in_the_uri_is_dropped_with_airflow_s_warning() -> None:
    with pytest.warns(UserWarning, match="An Asset URI should not contain a password. User info has been automatically dropped."):
        asset = Asset(uri="postgres://user:secret@host:5432/db")
    assert asset.uri == "postgres://host:5432/db"
    # As in Airflow, the name is the URI as given (dag.json holds the DAG file's text anyway).
    assert asset.name == "postgres://user:secret@host:5432/db"


def test_assets_compare_build_conditions_and_stand_for_their_uri_as_airflow_s() -> None:
    import os

    a, b = Asset("s3://x/a"), Asset(name="b", uri="s3://x/b")
    assert a == Asset(name="s3://x/a", uri="s3://x/a", group="asset", extra={})
    assert a != Asset("s3://x/a", extra={"k": 1})
    assert len({a, Asset("s3://x/a"), b}) == 2
    assert Asset("n", extra={3: "x", "k": (1,)}) == Asset("n", extra={"3": "x", "k": [1]})
    assert os.fspath(b) == "s3://x/b"
    assert a & b == AssetAll(a, b) and a | b == AssetAny(a, b)
    assert (a & b) & a == AssetAll(a, b, a)
    assert a & (b & a) == AssetAll(a, AssetAll(b, a))
    assert repr(a | b) == (
        "AssetAny(Asset(name='s3://x/a', uri='s3://x/a', group='asset', extra={}), "
        "Asset(name='b', uri='s3://x/b', group='asset', extra={}))"
    )


# --------------------------------------------------------------------------------------------
# Outlets and inlets

OPERATORS = """
class Publish(BaseOperator):
    def __init__(self, table, **kwargs):
        super().__init__(**kwargs)
        self.table = table

    def execute(self, context):
        pass

with DAG("d", schedule=None, default_args={"outlets": [c]}):
    BashOperator(task_id="bash", bash_command="echo", outlets=[a], inlets=[b])
    PythonOperator(task_id="python", python_callable=work, inlets=b)
    EmptyOperator(task_id="empty", outlets=(a, b), inlets=[])
    EmptyOperator(task_id="from_default_args")
    EmptyOperator(task_id="no_assets", outlets=None)
    Publish(task_id="custom", table="t", outlets=[b, a])
    BashOperator.partial(task_id="mapped", outlets=[a]).expand(bash_command=["echo 1", "echo 2"])

    @task(outlets=[a], inlets=[b, c])
    def decorated():
        pass

    @task.bash(inlets=a)
    def decorated_bash():
        return "echo"

    decorated()
    decorated_bash()
    decorated.override(task_id="overridden", outlets=[c])()
"""


def test_outlets_and_inlets_are_recorded_on_every_kind_of_task(tmp_path: Path) -> None:
    doc = document(tmp_path, "from airflow.sdk import BaseOperator\n" + OPERATORS)
    recorded = {t["task_id"]: {k: t[k] for k in ("outlets", "inlets") if k in t} for t in doc["dags"][0]["tasks"]}
    assert recorded == {
        "bash": {"outlets": [A], "inlets": [B]},
        "python": {"outlets": [C], "inlets": [B]},
        "empty": {"outlets": [A, B]},
        "from_default_args": {"outlets": [C]},
        # An argument given, None included, wins over default_args, as in Airflow.
        "no_assets": {},
        "custom": {"outlets": [B, A]},
        "mapped": {"outlets": [A]},
        "decorated": {"outlets": [A], "inlets": [B, C]},
        "decorated_bash": {"outlets": [C], "inlets": [A]},
        "overridden": {"outlets": [C], "inlets": [B, C]},
    }


def test_a_task_without_assets_has_neither_key(tmp_path: Path) -> None:
    doc = document(tmp_path, """
        with DAG("d", schedule="@daily"):
            BashOperator(task_id="bash", bash_command="echo", outlets=[], inlets=None)
            PythonOperator(task_id="python", python_callable=work, outlets=())
    """)
    for task in doc["dags"][0]["tasks"]:
        assert "outlets" not in task and "inlets" not in task, task


def test_the_task_keeps_its_asset_objects(tmp_path: Path) -> None:
    from leoflow import context

    compile_body(tmp_path, "with DAG('d', schedule=None):\n    EmptyOperator(task_id='t', outlets=a, inlets={b, c})\n")
    task = context.dags[0].tasks["t"]
    assert task.outlets == [Asset("s3://lake/a")]
    assert task.inlets == [Asset(name="c", uri="s3://lake/c", group="tables"), Asset("s3://lake/b", extra={"hi": "bye"})]


# --------------------------------------------------------------------------------------------
# A DAG without assets


@pytest.mark.parametrize(
    "project", sorted(p.name for p in GOLDEN.iterdir() if not (p / "leoflow.yaml").exists()), ids=str
)
def test_a_dag_without_assets_compiles_to_the_same_document_as_before(tmp_path: Path, project: str) -> None:
    # The golden documents were written before assets existed: the same DAGs, keys and version
    # hashes come out (only a DAG or task with assets has anything new).
    copy_of = tmp_path / project
    shutil.copytree(GOLDEN / project, copy_of)
    source = (copy_of / "dag.py").read_text(encoding="utf-8")
    expected = json.loads((GOLDEN / project / "expected.dag.json").read_text())
    assert as_document(source, compile_file(copy_of / "dag.py"))["dags"] == expected["dags"]


# --------------------------------------------------------------------------------------------
# Bad input

BAD_ASSETS = [
    ("no name or uri", "Asset()", "Asset() requires either 'name' or 'uri'"),
    ("empty name", "Asset('')", "Asset name cannot be empty"),
    ("empty uri", "Asset('n', uri='')", "Asset uri cannot be empty"),
    ("whitespace name", "Asset('   ')", "Asset name cannot be just whitespace"),
    ("whitespace group", "Asset('n', group=' ')", "Asset group cannot be just whitespace"),
    ("long name", "Asset('n' * 1501)", "Asset name cannot exceed 1500 characters"),
    ("long uri", "Asset('n', 's3://b/' + 'k' * 1500)", "Asset uri cannot exceed 1500 characters"),
    ("name not a string", "Asset(5)", "Asset name must be a string, not 5"),
    ("group not a string", "Asset('n', group=['g'])", "Asset group must be a string, not ['g']"),
    ("reserved name self", "Asset('self')", "prohibited name for asset: self"),
    ("reserved name context", "Asset(name='context', uri='s3://b/k')", "prohibited name for asset: context"),
    ("airflow scheme", "Asset(uri='airflow://dags/x')", "Asset scheme 'airflow' is reserved"),
    ("airflow scheme in capitals", "Asset('n', 'AIRFLOW://x')", "Asset scheme 'airflow' is reserved"),
    ("extra not a dict", "Asset('n', extra=[1])", "Asset extra must be a dict, not [1]"),
    ("extra not JSON", "Asset('n', extra={'at': datetime.datetime(2026, 1, 1)})", "Asset extra must hold only JSON values"),
    ("extra not finite", "Asset('n', extra={'x': float('nan')})", "Asset extra must hold only JSON values"),
    ("a condition over a string", "AssetAll(a, 's3://lake/b')",
     "expect asset expressions in condition: AssetAll got str 's3://lake/b'"),
    ("a condition over a task", "AssetAny(a, EmptyOperator)", "expect asset expressions in condition: AssetAny got"),
]


@pytest.mark.parametrize(("expression", "message"), [b[1:] for b in BAD_ASSETS], ids=[b[0] for b in BAD_ASSETS])
def test_bad_assets_are_refused_with_airflow_s_message(tmp_path: Path, expression: str, message: str) -> None:
    error = refusal(tmp_path, f"x = {expression}\n")
    assert (error["kind"], error["line"]) == ("DagDefinitionError", BODY_LINE), error
    assert message in error["message"], error


def test_combining_an_asset_with_something_else_is_python_s_type_error(tmp_path: Path) -> None:
    # As with Airflow's assets: `&` and `|` take assets and conditions only.
    error = refusal(tmp_path, "x = a & 's3://lake/b'\n")
    assert error["kind"] == "TypeError", error
    assert "unsupported operand type(s) for &: 'Asset' and 'str'" in error["message"], error


BAD_SCHEDULES = [
    ("a list holding a string", "[a, 's3://lake/b']", "DagDefinitionError",
     "All elements in 'schedule' should be assets (Asset, AssetAlias, AssetAll or AssetAny), not str 's3://lake/b'"),
    ("a list of crons", "['0 * * * *']", "DagDefinitionError", "All elements in 'schedule' should be assets"),
    ("an empty list", "[]", "DagDefinitionError",
     "'schedule' names no asset: use schedule=None for a DAG that runs only when triggered"),
    ("an empty condition", "AssetAll()", "DagDefinitionError", "AssetAll() names no asset"),
    ("an empty condition inside", "a | AssetAny()", "DagDefinitionError", "AssetAny() names no asset"),
    ("nested asset timetables",
     "AssetOrTimeSchedule(timetable=AssetOrTimeSchedule(timetable=CronTriggerTimetable('@daily', timezone='UTC'), assets=[a]), assets=[b])",
     "DagDefinitionError", "cannot nest asset timetables"),
    ("a cron string as the timetable", "AssetOrTimeSchedule(timetable='0 1 * * 3', assets=[a])", "DagDefinitionError",
     "AssetOrTimeSchedule's timetable must be a timetable such as CronTriggerTimetable(...), not '0 1 * * 3'"),
    ("a string as the assets", "AssetOrTimeSchedule(timetable=CronTriggerTimetable('@daily', timezone='UTC'), assets='s3://lake/a')",
     "DagDefinitionError", "AssetOrTimeSchedule's 'assets' must be an Asset, a list of Assets or a condition"),
    ("no assets", "AssetOrTimeSchedule(timetable=CronTriggerTimetable('@daily', timezone='UTC'), assets=[])",
     "DagDefinitionError", "AssetOrTimeSchedule's 'assets' names no asset: schedule the DAG on its timetable alone"),
    ("assets holding a string", "AssetOrTimeSchedule(timetable=CronTriggerTimetable('@daily', timezone='UTC'), assets=[a, 'b'])",
     "DagDefinitionError", "All elements in AssetOrTimeSchedule's 'assets' should be assets"),
    ("a custom timetable without next_dagrun_info", "AssetOrTimeSchedule(timetable=Mine(), assets=[a])", "UnsupportedConstruct",
     "custom timetable Mine without next_dagrun_info is not supported by Leoflow"),
]


@pytest.mark.parametrize(("schedule", "kind", "message"), [b[1:] for b in BAD_SCHEDULES], ids=[b[0] for b in BAD_SCHEDULES])
def test_bad_asset_schedules_are_refused_naming_what_is_wrong(tmp_path: Path, schedule: str, kind: str, message: str) -> None:
    error = refusal(tmp_path, (
        "from airflow.timetables.base import Timetable\nclass Mine(Timetable):\n    pass\n"
        f"with DAG('d', schedule={schedule}):\n    EmptyOperator(task_id='t')\n"
    ))
    assert (error["kind"], error["line"]) == (kind, BODY_LINE + 3), error
    assert message in error["message"], error


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ('["s3://lake/out"]', "str 's3://lake/out'"),
        ('"s3://lake/out"', "str 's3://lake/out'"),
        ("[a, a & b]", "AssetAll AssetAll(Asset(name='s3://lake/a'"),
        ("[{'uri': 's3://lake/out'}]", "dict {'uri': 's3://lake/out'}"),
    ],
)
@pytest.mark.parametrize("argument", ["outlets", "inlets"])
@pytest.mark.parametrize("form", ["operator", "decorator", "override", "dag_default_args", "task_default_args"])
def test_an_outlet_or_inlet_that_is_not_an_asset_is_refused_naming_it(
    tmp_path: Path, form: str, argument: str, value: str, shown: str
) -> None:
    arg = f"{argument}={value}"
    body = {
        "operator": f'with DAG("d", schedule=None):\n    PythonOperator(task_id="t", python_callable=work, {arg})\n',
        "decorator": f'with DAG("d", schedule=None):\n    task({arg})(work)()\n',
        "override": f'with DAG("d", schedule=None):\n    task(work).override({arg})()\n',
        "dag_default_args": f'with DAG("d", schedule=None, default_args=dict({arg})):\n    EmptyOperator(task_id="t")\n',
        "task_default_args": f'with DAG("d", schedule=None):\n    BashOperator(task_id="t", bash_command="echo", default_args=dict({arg}))\n',
    }[form]
    error = refusal(tmp_path, body)
    assert (error["kind"], error["line"]) == ("UnsupportedConstruct", BODY_LINE + 1), error
    assert error["message"].startswith(shown), error
    assert f" in the {argument} of " in error["message"], error
    assert (
        "is not supported by Leoflow: inlets and outlets take Asset and AssetAlias objects (airflow.sdk.Asset, "
        "airflow.sdk.AssetAlias); asset references and other lineage are not supported"
    ) in error["message"], error


STILL_REFUSED = [
    ("PartitionedAssetTimetable", "partitioned asset runs are not supported"),
    ("CronPartitionTimetable", "partitioned runs are not supported"),
    ("IdentityMapper", "partitioned asset runs are not supported"),
    ("StartOfDayMapper", "partitioned asset runs are not supported"),
    ("PartitionMapper", "partitioned asset runs are not supported"),
]


@pytest.mark.parametrize(("name", "hint"), STILL_REFUSED, ids=[s[0] for s in STILL_REFUSED])
def test_what_leoflow_does_not_support_yet_is_refused_naming_it(tmp_path: Path, name: str, hint: str) -> None:
    error = refusal(tmp_path, f"from airflow.sdk import {name}\n")
    assert (error["kind"], error["line"]) == ("UnsupportedConstruct", BODY_LINE), error
    assert error["message"].startswith(f"airflow.sdk.{name} is not supported by Leoflow: "), error
    assert hint in error["message"], error
    assert "asset-driven scheduling is not supported" not in error["message"], error


def test_asset_references_are_refused_naming_them(tmp_path: Path) -> None:
    error = refusal(tmp_path, "x = Asset.ref(name='orders')\n")
    assert (error["kind"], error["line"]) == ("UnsupportedConstruct", BODY_LINE), error
    assert "Asset.ref() is not supported by Leoflow: asset references are not supported yet" in error["message"], error


WATCHED = """\
from airflow.sdk import AssetWatcher
from airflow.providers.standard.triggers.file import FileDeleteTrigger
inbox = Asset("inbox", watchers=[AssetWatcher(name="w", trigger=FileDeleteTrigger(filepath="/data/in", poke_interval=2))])
"""
WATCHER = {
    "asset": {"name": "inbox", "uri": "inbox"},
    "name": "w",
    "trigger": {
        "classpath": "airflow.providers.standard.triggers.file.FileDeleteTrigger",
        "kwargs": {"filepath": "/data/in", "poke_interval": 2},
    },
}


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("inbox", [WATCHER]),
        ("[inbox, a]", [WATCHER]),
        ("inbox | (a & inbox)", [WATCHER]),  # each watcher once
        ("AssetOrTimeSchedule(timetable=CronTriggerTimetable('@daily', timezone='UTC'), assets=inbox)", [WATCHER]),
        ("a", None),  # no watcher: the schedule says nothing of them
    ],
)
def test_the_watchers_of_a_schedules_assets_are_in_dag_json(tmp_path: Path, schedule: str, expected: Any) -> None:
    dag = document(tmp_path, WATCHED + f"with DAG('d', schedule={schedule}):\n    EmptyOperator(task_id='t')\n")["dags"][0]
    assert dag["schedule"].get("watchers") == expected


def test_a_watcher_is_not_part_of_what_identifies_its_asset(tmp_path: Path) -> None:
    dag = document(tmp_path, WATCHED + "with DAG('d', schedule=inbox & Asset('inbox')):\n    EmptyOperator(task_id='t')\n")["dags"][0]
    assert dag["schedule"]["condition"] == {"all": [{"asset": {"name": "inbox", "uri": "inbox", "group": "asset", "extra": {}}}] * 2}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        (
            "AssetWatcher(name='w', trigger=FileTrigger(filepath='/x'))",
            "AssetWatcher 'w': its trigger must be a BaseEventTrigger (airflow.triggers.base.BaseEventTrigger, "
            "e.g. FileDeleteTrigger), not",
        ),
        ("AssetWatcher(name='', trigger=FileDeleteTrigger(filepath='/x'))", "AssetWatcher name cannot be empty"),
        ("Asset('orders', watchers=[object()])", "Asset(watchers=...) takes AssetWatcher objects, not"),
    ],
)
def test_bad_watchers_are_refused_saying_why(tmp_path: Path, expression: str, message: str) -> None:
    imports = (
        "from airflow.sdk import AssetWatcher\n"
        "from airflow.providers.standard.triggers.file import FileDeleteTrigger, FileTrigger\n"
    )
    error = refusal(tmp_path, imports + f"x = {expression}\n")
    assert (error["kind"], error["line"]) == ("DagDefinitionError", BODY_LINE + 2), error
    assert message in error["message"], error


def test_the_schema_holds_asset_documents_to_their_shape(tmp_path: Path) -> None:
    doc = document(tmp_path, "with DAG('d', schedule=a | b):\n    EmptyOperator(task_id='t', outlets=[c])\n")
    breakages: list[Callable[[dict[str, Any]], Any]] = [
        lambda d: d["schedule"]["condition"]["any"].clear(),  # a condition over nothing
        lambda d: d["schedule"]["condition"]["any"][0]["asset"].pop("extra"),  # a reference without extra
        lambda d: d["schedule"]["condition"]["any"][0].update(none=[]),  # an unknown condition
        lambda d: d["tasks"][0]["outlets"].clear(),  # an empty outlets list (absent instead)
        lambda d: d["tasks"][0]["outlets"][0].update(uri=""),  # an empty URI
        lambda d: d["schedule"].update(type="asset_or_time"),  # without its timetable
    ]
    for broken in breakages:
        changed = copy.deepcopy(doc)
        broken(changed["dags"][0])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(changed, SCHEMA)


# --------------------------------------------------------------------------------------------
# Running


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


RUNNING = """
from airflow.sdk import Asset

orders = Asset("s3://lake/orders", extra={"hi": "bye"})
clean = Asset(name="clean", uri="s3://lake/clean")

def describe(assets):
    return [[type(x).__name__, x.name, x.uri, x.extra] for x in assets]

with DAG("d", schedule=[orders]):
    @task(inlets=[orders], outlets=[clean])
    def context_assets(inlets=None, outlets=None):
        current = get_current_context()
        assert current["outlets"] == [clean] and current["inlets"] == [orders]
        return {"inlets": describe(inlets), "outlets": describe(outlets)}

    context_assets()
"""


def test_the_context_holds_the_task_s_assets(project: Project) -> None:
    outcome, agent = project.run(RUNNING, "context_assets")
    assert outcome.outcome == "success", outcome.reason
    assert agent.pushed["return_value"] == {
        "inlets": [["Asset", "s3://lake/orders", "s3://lake/orders", {"hi": "bye"}]],
        "outlets": [["Asset", "clean", "s3://lake/clean", {}]],
    }


def test_errors_are_leoflow_s_own() -> None:
    # Bad assets are DAG definition errors, located by the compiler like every other.
    with pytest.raises(DagDefinitionError, match="Asset name cannot be empty"):
        Asset("")
    with pytest.raises(UnsupportedConstruct):
        Asset.ref(uri="s3://x")
