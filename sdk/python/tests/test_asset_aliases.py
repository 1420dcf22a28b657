"""Asset aliases (`AssetAlias`), as Airflow 3.2's task SDK has them: compiled into dag.json (an
`alias` leaf of an asset condition, a task's `outlet_aliases` / `inlet_aliases`), and at run
time `outlet_events[alias].add(asset, extra=...)` reported in the `done` message and
`inlet_events[alias]` asked of the agent (`asset_alias_events`)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from task_harness import Agent, Project
from test_airflow_examples import fetch_wheel
from test_asset_events import SDK, event
from test_assets import A, B, CRON, SCHEMA, document, refusal

from leoflow.asset_events import InletEventsAccessors, OutletEventAccessors, TriggeringAssetEventsAccessor
from leoflow.assets import Asset, AssetAlias, Metadata
from leoflow.errors import DagDefinitionError, UnsupportedConstruct

#: The alias references of `AssetAlias("x")` and `AssetAlias("y", group="tables")`.
X = {"name": "x", "group": "asset"}
Y = {"name": "y", "group": "tables"}

ALIASES = "from airflow.sdk import AssetAlias\nx = AssetAlias('x')\ny = AssetAlias(name='y', group='tables')\n"

#: What every task of dag.json has, whatever it does (docs/dag-json.md).
TASK_KEYS = {
    "task_id", "operator", "line", "group", "upstream", "trigger_rule", "retries", "retry_delay",
    "retry_exponential_backoff", "max_retry_delay", "execution_timeout", "pool", "pool_slots",
    "priority_weight", "owner", "queue", "doc_md", "display_name", "do_xcom_push", "params", "mapped",
    "env", "resources",
}


# --------------------------------------------------------------------------------------------
# dag.json

SCHEDULES = [
    ("one alias", "x", {"alias": X}),
    ("a list of one", "[x]", {"all": [{"alias": X}]}),
    ("a list of an asset and an alias", "[a, y]", {"all": [{"asset": A}, {"alias": Y}]}),
    ("or", "a | x", {"any": [{"asset": A}, {"alias": X}]}),
    ("and of an or", "x & (y | b)", {"all": [{"alias": X}, {"any": [{"alias": Y}, {"asset": B}]}]}),
    ("flattened as Airflow's", "(x | y) | a", {"any": [{"alias": X}, {"alias": Y}, {"asset": A}]}),
    ("the same alias by keyword", "AssetAlias(name='x')", {"alias": X}),
]


@pytest.mark.parametrize(("schedule", "condition"), [s[1:] for s in SCHEDULES], ids=[s[0] for s in SCHEDULES])
def test_alias_schedules_compile_into_their_condition(tmp_path: Path, schedule: str, condition: dict[str, Any]) -> None:
    dag = document(tmp_path, f"{ALIASES}with DAG('d', schedule={schedule}):\n    EmptyOperator(task_id='t')\n")["dags"][0]
    assert dag["schedule"] == {"type": "assets", "condition": condition}
    assert dag["timetable_summary"] == "Asset"


def test_an_alias_in_an_asset_or_time_schedule(tmp_path: Path) -> None:
    dag = document(tmp_path, f"""{ALIASES}
with DAG('d', schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable('0 1 * * 3', timezone='UTC'), assets=[x, a])):
    EmptyOperator(task_id='t')
""")["dags"][0]
    assert dag["schedule"] == {"type": "asset_or_time", "condition": {"all": [{"alias": X}, {"asset": A}]}, "timetable": CRON}
    assert dag["timetable_summary"] == "Asset or 0 1 * * 3"


OPERATORS = f"""{ALIASES}
from airflow.sdk import BaseOperator

class Publish(BaseOperator):
    def execute(self, context):
        pass

with DAG("d", schedule=None):
    PythonOperator(task_id="python", python_callable=work, outlets=[x, a, y], inlets=[y])
    BashOperator(task_id="bash", bash_command="echo", outlets=x)
    EmptyOperator(task_id="empty", inlets=(b, x))
    Publish(task_id="custom", outlets=[y])
    EmptyOperator(task_id="from_default_args", default_args={{"outlets": [x]}})

    @task(outlets=[a], inlets=[x, b])
    def decorated():
        pass

    decorated()
    decorated.override(task_id="overridden", outlets=[y, b])()
"""


def test_aliases_are_recorded_apart_from_assets_on_every_kind_of_task(tmp_path: Path) -> None:
    doc = document(tmp_path, OPERATORS)
    lineage = ("outlets", "inlets", "outlet_aliases", "inlet_aliases")
    recorded = {t["task_id"]: {k: t[k] for k in lineage if k in t} for t in doc["dags"][0]["tasks"]}
    assert recorded == {
        "python": {"outlets": [A], "outlet_aliases": [X, Y], "inlet_aliases": [Y]},
        "bash": {"outlet_aliases": [X]},
        "empty": {"inlets": [B], "inlet_aliases": [X]},
        "custom": {"outlet_aliases": [Y]},
        "from_default_args": {"outlet_aliases": [X]},
        "decorated": {"outlets": [A], "inlets": [B], "inlet_aliases": [X]},
        "overridden": {"outlets": [B], "inlets": [B], "inlet_aliases": [X], "outlet_aliases": [Y]},
    }


def test_a_task_without_aliases_has_the_keys_it_had_before(tmp_path: Path) -> None:
    # Only a task with aliases has the new keys: one with assets alone is as before (and one with
    # neither too: the golden documents of test_assets.py, whose version hashes predate assets).
    doc = document(tmp_path, "with DAG('d', schedule=[a]):\n    EmptyOperator(task_id='t', outlets=[a], inlets=[b])\n")
    task = doc["dags"][0]["tasks"][0]
    assert set(task) == TASK_KEYS | {"outlets", "inlets"}
    assert (task["outlets"], task["inlets"]) == ([A], [B])


def test_the_task_keeps_its_assets_and_aliases_in_order(tmp_path: Path) -> None:
    from leoflow import context

    document(tmp_path, f"{ALIASES}with DAG('d', schedule=None):\n    EmptyOperator(task_id='t', outlets=[x, a, y])\n")
    assert context.dags[0].tasks["t"].outlets == [AssetAlias("x"), Asset("s3://lake/a"), AssetAlias("y", group="tables")]


def example(name: str) -> str:
    with zipfile.ZipFile(fetch_wheel()) as wheel:
        return wheel.read(f"airflow/example_dags/{name}").decode()


def test_airflow_s_example_asset_alias_compiles_as_airflow_builds_it(tmp_path: Path) -> None:
    path = tmp_path / "example_asset_alias.py"
    path.write_text(example("example_asset_alias.py"))
    from leoflow.compiler import compile_file

    compiled = compile_file(path)
    assert compiled["ok"], compiled
    bucket = {"name": "s3://bucket/my-task", "uri": "s3://bucket/my-task", "group": "asset", "extra": {}}
    alias = {"name": "example-alias", "group": "asset"}
    lineage = ("outlets", "inlets", "outlet_aliases", "inlet_aliases")
    shapes = {
        d["dag_id"]: (d["schedule"], d["timetable_summary"], [{k: t[k] for k in ("task_id", *lineage) if k in t} for t in d["tasks"]])
        for d in compiled["dags"]
    }
    assert shapes == {
        "asset_s3_bucket_producer": ({"type": "none"}, None, [{"task_id": "produce_asset_events", "outlets": [bucket]}]),
        "asset_alias_example_alias_producer": (
            {"type": "none"}, None, [{"task_id": "produce_asset_events_through_asset_alias", "outlet_aliases": [alias]}],
        ),
        "asset_s3_bucket_consumer": (
            {"type": "assets", "condition": {"all": [{"asset": bucket}]}}, "Asset", [{"task_id": "consume_asset_event"}],
        ),
        "asset_alias_example_alias_consumer": (
            {"type": "assets", "condition": {"all": [{"alias": alias}]}}, "Asset",
            [{"task_id": "consume_asset_event_from_asset_alias", "inlet_aliases": [alias]}],
        ),
    }


BAD_ALIASES = [
    ("empty name", "AssetAlias('')", DagDefinitionError, "AssetAlias name cannot be empty"),
    ("empty name by keyword", "AssetAlias(name='')", DagDefinitionError, "AssetAlias name cannot be empty"),
    ("whitespace name", "AssetAlias('  ')", DagDefinitionError, "AssetAlias name cannot be just whitespace"),
    ("name not a string", "AssetAlias(5)", DagDefinitionError, "AssetAlias name must be a string, not 5"),
    ("long name", "AssetAlias('n' * 1501)", DagDefinitionError, "AssetAlias name cannot exceed 1500 characters"),
    ("group not a string", "AssetAlias('n', group=None)", DagDefinitionError, "AssetAlias group must be a string, not None"),
    ("whitespace group", "AssetAlias('n', group='\\t')", DagDefinitionError, "AssetAlias group cannot be just whitespace"),
    ("group by position", "AssetAlias('n', 'g')", TypeError, "takes 2 positional arguments but 3 were given"),
    ("no name", "AssetAlias()", TypeError, "missing 1 required positional argument: 'name'"),
]


@pytest.mark.parametrize(("expression", "kind", "message"), [b[1:] for b in BAD_ALIASES], ids=[b[0] for b in BAD_ALIASES])
def test_bad_aliases_are_refused_with_airflow_s_message(tmp_path: Path, expression: str, kind: type, message: str) -> None:
    error = refusal(tmp_path, f"from airflow.sdk import AssetAlias\nx = {expression}\n")
    assert error["kind"] == kind.__name__, error
    assert message in error["message"], error
    with pytest.raises(kind, match=message.replace("(", "\\(").replace(")", "\\)").replace("*", "\\*")):
        eval(expression)  # noqa: S307 - the expressions above


def test_an_alias_compares_as_airflow_s_and_an_empty_group_is_allowed() -> None:
    assert AssetAlias("x") == AssetAlias(name="x", group="asset") != AssetAlias("x", group="g")
    assert len({AssetAlias("x"), AssetAlias("x"), AssetAlias("y")}) == 2
    assert AssetAlias("x", group="").as_reference() == {"name": "x", "group": ""}
    assert repr(AssetAlias("x") | Asset("a")) == (
        "AssetAny(AssetAlias(name='x', group='asset'), Asset(name='a', uri='a', group='asset', extra={}))"
    )
    assert AssetAlias("x") != Asset("x")


def test_the_schema_holds_alias_documents_to_their_shape(tmp_path: Path) -> None:
    doc = document(tmp_path, f"{ALIASES}with DAG('d', schedule=x | a):\n    EmptyOperator(task_id='t', outlets=[y], inlets=[x])\n")
    breakages = [
        lambda d: d["schedule"]["condition"]["any"][0]["alias"].pop("group"),  # an alias without its group
        lambda d: d["schedule"]["condition"]["any"][0]["alias"].update(uri="x"),  # an alias with a URI
        lambda d: d["schedule"]["condition"]["any"][0]["alias"].update(name=""),  # an empty name
        lambda d: d["tasks"][0]["outlet_aliases"].clear(),  # an empty list (absent instead)
        lambda d: d["tasks"][0]["inlet_aliases"].append(A),  # an asset among the aliases
        lambda d: d["tasks"][0]["outlet_aliases"][0].update(extra={}),  # an alias with an extra
    ]
    for broken in breakages:
        changed = copy.deepcopy(doc)
        broken(changed["dags"][0])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(changed, SCHEMA)


# --------------------------------------------------------------------------------------------
# Running: outlet_events[alias].add(...)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


BODY = """
from airflow.sdk import Asset, AssetAlias, Metadata

clean = Asset(name="clean", uri="s3://lake/clean")
alias = AssetAlias("partitions")
other = AssetAlias("other")

with DAG("d", schedule=None):
    @task(outlets=[clean, alias])
    def adds(*, outlet_events=None):
        outlet_events[clean].extra = {"rows": 3}
        outlet_events[alias].add(Asset("s3://lake/p=1", group="parts", extra={"own": True}), extra={"rows": 1})
        outlet_events.for_asset_alias(name="partitions").add(Asset("s3://lake/p=2"))
        # Airflow records the same asset and extra added twice through one alias once.
        outlet_events[AssetAlias("partitions", group="another")].add(Asset("s3://lake/p=2"), extra={})
        outlet_events[other].add(Asset("s3://lake/ignored"))  # not an outlet alias: left out
        outlet_events[clean].add(Asset("s3://lake/ignored"))  # an asset's accessor ignores it
        extra = {"late": 1}
        outlet_events[alias].add(Asset("s3://lake/p=3"), extra=extra)
        extra["later"] = 2  # as in Airflow, the extra itself is kept
        return [type(a).__name__ for a in outlet_events]

    @task(outlets=[alias])
    def yields():
        yield Metadata(Asset("s3://lake/p=4"), {"rows": 4}, alias=alias)
        yield Metadata(Asset("s3://lake/p=5"), {"rows": 5}, alias=other)

    @task(outlets=[alias])
    def adds_then_fails(*, outlet_events=None):
        outlet_events[alias].add(Asset("s3://lake/p=1"))
        raise ValueError("no")

    @task(outlets=[alias])
    def adds_a_string(*, outlet_events=None):
        outlet_events[alias].add("s3://lake/p=1")

    @task(outlets=[alias])
    def adds_a_list_extra(*, outlet_events=None):
        outlet_events[alias].add(Asset("s3://lake/p=1"), extra=[1])

    @task(outlets=[alias])
    def adds_a_date(*, outlet_events=None):
        outlet_events[alias].add(Asset("s3://lake/p=1"), extra={"when": datetime.date(2026, 1, 1)})

    @task(outlets=[alias])
    def yields_an_alias():
        yield Metadata(alias, {"rows": 1})

    adds()
    yields()
    adds_then_fails()
    adds_a_string()
    adds_a_list_extra()
    adds_a_date()
    yields_an_alias()
"""


def done(project: Project, task_id: str, agent: Agent | None = None, body: str = BODY, **fields: Any) -> tuple[dict[str, Any], Agent]:
    outcome, agent = project.run(body, task_id, agent, **fields)
    return dict(outcome.message()), agent


def test_the_done_message_carries_the_events_added_through_outlet_aliases(project: Project) -> None:
    message, agent = done(project, "adds")
    assert message == {
        "op": "done", "outcome": "success", "reason": "",
        "outlet_events": [
            {"name": "clean", "uri": "s3://lake/clean", "extra": {"rows": 3}},
            {"name": "s3://lake/p=1", "uri": "s3://lake/p=1", "group": "parts", "extra": {"rows": 1}, "alias": "partitions"},
            {"name": "s3://lake/p=2", "uri": "s3://lake/p=2", "group": "asset", "extra": {}, "alias": "partitions"},
            {"name": "s3://lake/p=3", "uri": "s3://lake/p=3", "group": "asset", "extra": {"late": 1, "later": 2}, "alias": "partitions"},
        ],
    }
    # An accessor for each asset and alias asked for (one alias, whatever its group).
    assert agent.pushed["return_value"] == ["Asset", "AssetAlias", "AssetAlias"]


def test_metadata_with_an_alias_adds_an_event_through_it(project: Project) -> None:
    message, _ = done(project, "yields")
    assert message == {
        "op": "done", "outcome": "success", "reason": "",
        "outlet_events": [
            {"name": "s3://lake/p=4", "uri": "s3://lake/p=4", "group": "asset", "extra": {"rows": 4}, "alias": "partitions"},
        ],
    }


@pytest.mark.parametrize(
    ("task_id", "reason"),
    [
        ("adds_then_fails", "ValueError: no"),
        ("adds_a_string", "outlet_events[AssetAlias(name='partitions')].add() takes an Asset, not str 's3://lake/p=1'"),
        ("adds_a_list_extra", "the extra given to outlet_events[AssetAlias(name='partitions')].add() for "
         "Asset(name='s3://lake/p=1', uri='s3://lake/p=1', group='asset', extra={}) must be a JSON object, not [1]"),
        ("adds_a_date", "the extra of the asset event added to Asset(name='s3://lake/p=1', uri='s3://lake/p=1') through "
         "AssetAlias(name='partitions') must be a JSON object of JSON values: extra['when'] is a date "
         "(datetime.date(2026, 1, 1)), not a JSON value"),
        ("yields_an_alias", "a Metadata was yielded for AssetAlias(name='partitions', group='asset'): its asset must be "
         "an Asset (add an event through an alias with Metadata(asset, extra, alias=AssetAlias(...)))"),
    ],
)
def test_a_failed_try_reports_no_alias_event_and_bad_adds_fail_it_naming_the_alias(project: Project, task_id: str, reason: str) -> None:
    message, _ = done(project, task_id)
    assert message == {"op": "done", "outcome": "failed", "reason": reason}


def test_airflow_s_example_asset_alias_producers_add_through_their_alias(project: Project) -> None:
    cases = [
        ("example_asset_alias.py", "asset_alias_example_alias_producer", "produce_asset_events_through_asset_alias", "example-alias"),
        ("example_asset_alias_with_no_taskflow.py", "asset_alias_example_alias_producer_with_no_taskflow",
         "produce_asset_events_through_asset_alias_with_no_taskflow", "example-alias-no-taskflow"),
    ]
    for file, dag_id, task_id, alias in cases:
        body = example(file).replace("from __future__ import annotations\n", "")
        message, _ = done(project, task_id, body=body, dag_id=dag_id)
        assert message == {
            "op": "done", "outcome": "success", "reason": "",
            "outlet_events": [{"name": "s3://bucket/my-task", "uri": "s3://bucket/my-task", "group": "asset", "extra": {}, "alias": alias}],
        }, file


def test_the_done_line_the_runner_writes_carries_the_alias_events(tmp_path: Path) -> None:
    from leoflow.compiler import compile_file

    source = (
        "from airflow.sdk import DAG, Asset, AssetAlias, task\n"
        "with DAG('d', schedule=None):\n"
        "    @task(outlets=[AssetAlias('parts'), Asset('s3://lake/raw')])\n"
        "    def produce(outlet_events=None):\n"
        "        outlet_events[AssetAlias('parts')].add(Asset(name='p1', uri='s3://lake/p=1', group='g'), extra={'rows': (1, 2)})\n"
        "        outlet_events[Asset('s3://lake/raw')].extra['hi'] = 'bye'\n"
        "    produce()\n"
    )
    (tmp_path / "dag.py").write_text(source)
    spec = compile_file(tmp_path / "dag.py")["dags"][0]["tasks"][0]
    start = {
        "dag_id": "d", "run_id": "r", "task_id": "produce", "map_index": -1, "try_number": 1, "task": spec,
        "source": source, "fileloc": "dag.py", "run": {"run_id": "r", "conf": {}},
    }
    bootstrap = f"import sys; sys.path.insert(0, {SDK!r}); from leoflow.runner import main; sys.exit(main())"
    runner = subprocess.Popen(
        [sys.executable, "-I", "-u", "-c", bootstrap], cwd=tmp_path,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert runner.stdin is not None and runner.stdout is not None
    runner.stdin.write(json.dumps(start) + "\n")
    runner.stdin.flush()
    lines = []
    while line := runner.stdout.readline():
        lines.append(line)
        runner.stdin.write('{"ok": true}\n')
        runner.stdin.flush()
    _, log = runner.communicate(timeout=30)
    assert runner.returncode == 0, log
    assert lines[-1] == (
        '{"op": "done", "outcome": "success", "reason": "", "outlet_events": ['
        '{"name": "s3://lake/raw", "uri": "s3://lake/raw", "extra": {"hi": "bye"}}, '
        '{"name": "p1", "uri": "s3://lake/p=1", "group": "g", "extra": {"rows": [1, 2]}, "alias": "parts"}]}\n'
    )


def test_the_outlet_event_accessors_of_aliases_behave_as_airflow_s(capsys: pytest.CaptureFixture[str]) -> None:
    alias = AssetAlias("a")
    events = OutletEventAccessors([alias])
    accessor = events[alias]
    assert events.for_asset_alias(name="a") is accessor is events[AssetAlias("a", group="other")]
    assert accessor.key == ("a",)
    assert list(events) == [AssetAlias("a")]
    accessor.add(Asset("s3://x/k"), {"k": 1})
    assert [(e.source_alias_name, e.dest_asset_key, e.extra) for e in accessor.asset_alias_events] == [("a", ("s3://x/k", "s3://x/k"), {"k": 1})]
    assert accessor.extra == {}
    events[AssetAlias("elsewhere")].add(Asset("s3://y/k"))
    assert events.recorded() == [{"name": "s3://x/k", "uri": "s3://x/k", "group": "asset", "extra": {"k": 1}, "alias": "a"}]
    assert "the asset events added through AssetAlias(name='elsewhere') are ignored" in capsys.readouterr().err
    with pytest.raises(DagDefinitionError, match="AssetAlias name cannot be empty"):
        events.for_asset_alias(name="")


# --------------------------------------------------------------------------------------------
# Running: inlet_events[alias]

PARTS = {"name": "s3://lake/p=1", "uri": "s3://lake/p=1", "group": "asset", "extra": {}}

READING = """
from airflow.sdk import Asset, AssetAlias

alias = AssetAlias("partitions")
orders = Asset("s3://lake/orders")

with DAG("d", schedule=[alias]):
    @task(inlets=[alias, orders])
    def reads(*, inlet_events=None):
        events = inlet_events[alias]
        return {
            "ids": [e.id for e in events],
            "extras": [e.extra for e in events],
            "assets": [e.asset.uri for e in events],
            "by_name": [e.id for e in inlet_events.for_asset_alias(name="partitions")],
            "by_group": [e.id for e in inlet_events[AssetAlias("partitions", group="other")]],
            "by_position": [e.id for e in inlet_events[0]],
            "latest": inlet_events[alias].ascending(False).limit(1)[0].id,
            "orders": len(inlet_events[orders]),
            "repr": repr(inlet_events[alias]),
        }

    @task(inlets=[orders])
    def reads_another(*, inlet_events=None):
        return len(inlet_events[alias])

    @task(inlets=[alias])
    def reads_nothing():
        return 1

    @task(inlets=[alias])
    def triggered(*, triggering_asset_events=None):
        return len(triggering_asset_events[alias])

    reads()
    reads_another()
    reads_nothing()
    triggered()
"""


def test_inlet_events_of_an_alias_are_asked_for_once_and_returned(project: Project) -> None:
    agent = Agent()
    agent.alias_events["partitions"] = [event(1, PARTS, {"rows": 1}), event(3, {**PARTS, "uri": "s3://lake/p=2"}, {})]
    message, agent = done(project, "reads", agent, body=READING)
    assert message["outcome"] == "success", message
    assert agent.pushed["return_value"] == {
        "ids": [1, 3],
        "extras": [{"rows": 1}, {}],
        "assets": ["s3://lake/p=1", "s3://lake/p=2"],
        "by_name": [1, 3],
        "by_group": [1, 3],
        "by_position": [1, 3],
        "latest": 3,
        "orders": 0,
        "repr": "InletEventsAccessor(_after=None, _before=None, _ascending=True, _limit=None, "
        "_asset_name=None, _asset_uri=None, _alias_name='partitions')",
    }
    assert [r for r in agent.asked if r["op"] in ("asset_events", "asset_alias_events")] == [
        {"op": "asset_alias_events", "name": "partitions"},
        {"op": "asset_events", "name": "s3://lake/orders", "uri": "s3://lake/orders"},
    ]


def test_an_alias_that_is_not_an_inlet_is_a_key_error_and_nothing_is_asked(project: Project) -> None:
    message, agent = done(project, "reads_another", body=READING)
    assert message == {"op": "done", "outcome": "failed", "reason": "KeyError: \"AssetAlias(name='partitions') is not one of the task's inlets\""}
    assert [r for r in agent.asked if r["op"] == "asset_alias_events"] == []
    message, agent = done(project, "reads_nothing", body=READING)
    assert message["outcome"] == "success"
    assert [r for r in agent.asked if r["op"] == "asset_alias_events"] == []


def test_the_triggering_events_of_an_alias_are_refused_naming_them(project: Project) -> None:
    message, _ = done(project, "triggered", body=READING)
    assert message["outcome"] == "failed"
    assert message["reason"].startswith(
        "UnsupportedConstruct: triggering_asset_events[AssetAlias(name='partitions', group='asset')] is not supported by "
        "Leoflow: the events that started a run do not say which asset alias they came through"
    ), message
    with pytest.raises(UnsupportedConstruct, match="^triggering_asset_events.for_asset_alias\\(\\) is not supported"):
        TriggeringAssetEventsAccessor(lambda: []).for_asset_alias(name="partitions")


def test_airflow_s_example_asset_alias_consumers_read_their_alias(project: Project) -> None:
    cases = [
        ("example_asset_alias.py", "asset_alias_example_alias_consumer", "consume_asset_event_from_asset_alias", "example-alias"),
        ("example_asset_alias_with_no_taskflow.py", "asset_alias_example_alias_consumer_with_no_taskflow",
         "consume_asset_event_from_asset_alias", "example-alias-no-taskflow"),
    ]
    for file, dag_id, task_id, alias in cases:
        body = example(file).replace("from __future__ import annotations\n", "")
        agent = Agent()
        agent.alias_events[alias] = [event(2, PARTS, {})]
        message, agent = done(project, task_id, agent, body=body, dag_id=dag_id)
        assert message == {"op": "done", "outcome": "success", "reason": ""}, file
        assert [r for r in agent.asked if r["op"] == "asset_alias_events"] == [{"op": "asset_alias_events", "name": alias}]


def test_the_inlet_event_accessors_of_aliases_behave_as_airflow_s() -> None:
    alias = AssetAlias("a")
    fetched: list[str] = []

    def fetch_alias(name: str) -> Any:
        fetched.append(name)
        return [event(5, PARTS, {"k": 5})]

    events = InletEventsAccessors([alias], lambda name, uri: pytest.fail("no asset is read"), fetch_alias)
    assert list(events) == [alias] and len(events) == 1
    with pytest.raises(KeyError, match="AssetAlias\\(name='b'\\) is not one of the task's inlets"):
        events.for_asset_alias(name="b")
    accessor = events[alias]
    assert fetched == []  # nothing fetched until read
    assert [e.id for e in accessor] == [5] and [e.id for e in events[0]] == [5]
    assert fetched == ["a"]


def test_metadata_keeps_its_alias() -> None:
    clean = Asset("s3://lake/clean")
    assert Metadata(clean, {"a": 1}, alias=AssetAlias("x")) == Metadata(asset=clean, extra={"a": 1}, alias=AssetAlias("x"))
    assert Metadata(clean, {"a": 1}, alias=AssetAlias("x")) != Metadata(clean, {"a": 1})
    assert repr(Metadata(clean, alias=AssetAlias("x"))).endswith("alias=AssetAlias(name='x', group='asset'))")
