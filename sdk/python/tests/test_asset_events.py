"""Asset events inside a task, as Airflow 3.2's task SDK gives them: `outlet_events[asset].extra`
and `yield Metadata(asset, extra)` set the extras a successful try reports for its outlets (the
`done` message's `outlet_events`); `inlet_events` reads an inlet's events and
`triggering_asset_events` the events the run consumed, each fetched from the agent when first
read. Each task runs as a whole attempt against a scripted agent (and once through the real
runner process, to see the `done` line itself)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from task_harness import Agent, Project
from test_airflow_examples import fetch_wheel

from leoflow.asset_events import InletEventsAccessors, OutletEventAccessors, TriggeringAssetEventsAccessor
from leoflow.assets import Asset, Metadata
from leoflow.compiler import compile_file
from leoflow.errors import UnsupportedConstruct

SDK = str(Path(__file__).resolve().parents[1] / "src")

BODY = """
from airflow.sdk import Asset, BaseOperator, Metadata
from airflow.sdk.exceptions import AirflowSkipException
from airflow.providers.standard.operators.python import ShortCircuitOperator

orders = Asset("s3://lake/orders", extra={"owner": "ingest"})
clean = Asset(name="clean", uri="s3://lake/clean")
elsewhere = Asset("s3://lake/elsewhere")

def produce():
    yield Metadata(clean, {"rows": 1})
    yield "not metadata"
    yield Metadata(elsewhere, {"ignored": True})
    yield Metadata(clean, {"more": [1, 2]})
    return "produced"

def annotate(context, result):
    context["outlet_events"][clean].extra = {"hi": "bye", "result": result}

def in_hook(context):
    context["outlet_events"][orders].extra["hook"] = "pre"

def on_execute(context):
    yield Metadata(clean, {"callback": 1})

def too_late(context):
    context["outlet_events"][clean].extra["late"] = True

class Marking(BaseOperator):
    def pre_execute(self, context):
        yield Metadata(orders, {"pre": True})
        super().pre_execute(context)

    def execute(self, context):
        return 41

    def post_execute(self, context, result=None):
        context["outlet_events"][orders].extra["post"] = result + 1

with DAG("d", schedule=None):
    @task(outlets=[clean, orders])
    def generator_task():
        yield Metadata(clean, {"rows": 1})
        yield "not metadata"
        yield Metadata(elsewhere, {"ignored": True})
        yield Metadata(clean, {"more": [1, 2]})
        return "produced"

    @task.short_circuit(outlets=[clean])
    def gate():
        yield Metadata(clean, {"gate": 1})
        return True

    @task(outlets=[clean, orders])
    def by_context(*, outlet_events=None):
        outlet_events[clean].extra = {"hi": "bye"}
        outlet_events.for_asset(uri="s3://lake/orders").extra["rows"] = 3
        get_current_context()["outlet_events"][clean].extra["k"] = "v"
        return [type(outlet_events[clean]).__name__, len(outlet_events), sorted(a.uri for a in outlet_events)]

    @task(outlets=[clean])
    def sets_nothing(*, outlet_events=None):
        outlet_events[clean]
        outlet_events[elsewhere].extra = {"not": "an outlet"}

    @task(outlets=[clean])
    def sets_then_skips(*, outlet_events=None):
        outlet_events[clean].extra = {"hi": "bye"}
        raise AirflowSkipException("later")

    @task(outlets=[clean])
    def sets_then_fails(*, outlet_events=None):
        outlet_events[clean].extra = {"hi": "bye"}
        raise ValueError("no")

    @task(outlets=[clean], on_execute_callback=on_execute)
    def after_callback(*, outlet_events=None):
        outlet_events[clean].extra["task"] = 2

    @task(outlets=[clean], on_success_callback=too_late)
    def callback_too_late(*, outlet_events=None):
        outlet_events[clean].extra = {"hi": "bye"}

    @task(outlets=[clean])
    def bad_list(*, outlet_events=None):
        outlet_events[clean].extra = ["x"]

    @task(outlets=[clean])
    def bad_date(*, outlet_events=None):
        outlet_events[clean].extra["when"] = datetime.datetime(2026, 1, 1)

    @task(outlets=[clean])
    def bad_key(*, outlet_events=None):
        outlet_events[clean].extra[1] = "one"

    @task(outlets=[clean])
    def bad_nan(*, outlet_events=None):
        outlet_events[clean].extra["x"] = {"y": [float("nan")]}

    @task(outlets=[clean])
    def bad_metadata():
        yield Metadata(clean, 5)

    @task(inlets=[orders, clean])
    def reads(*, inlet_events=None):
        events = inlet_events[orders]
        first = events[0]
        return {
            "len": len(events),
            "ids": [e.id for e in events],
            "all_but_last_two": [e.id for e in events[:-2]],
            "last": events[-1].extra,
            "asset": [type(first.asset).__name__, first.asset.name, first.asset.uri, first.asset.group, first.asset.extra],
            "source": [first.source_dag_id, first.source_task_id, first.source_run_id, first.source_map_index],
            "timestamp": [type(first.timestamp).__name__, first.timestamp.isoformat()],
            "manual": [events[-1].source_dag_id, events[-1].source_task_id],
            "by_position": [e.id for e in inlet_events[0]],
            "by_name": [e.id for e in inlet_events.for_asset(name="s3://lake/orders")],
            "by_uri": [e.id for e in get_current_context()["inlet_events"].for_asset(uri="s3://lake/orders")],
            "latest_two": [e.id for e in inlet_events[orders].ascending(False).limit(2)],
            "between": [e.id for e in inlet_events[orders].after("2026-12-02T00:00:00+00:00").before("2026-12-03T00:30:00.250000Z")],
            "clean": len(inlet_events[clean]),
            "inlets": [len(inlet_events), orders in inlet_events, elsewhere in inlet_events],
        }

    @task(inlets=[orders])
    def reads_elsewhere(*, inlet_events=None):
        return len(inlet_events[elsewhere])

    @task(inlets=[orders])
    def reads_unknown_uri(*, inlet_events=None):
        return len(inlet_events.for_asset(uri="s3://lake/orders/"))

    @task(inlets=[orders], outlets=[clean])
    def lazy():
        return 1

    @task
    def triggered(*, triggering_asset_events=None):
        context = get_current_context()
        return {
            "groups": {asset.uri: [e.id for e in events] for asset, events in triggering_asset_events.items()},
            "types": sorted({type(a).__name__ for a in triggering_asset_events}),
            "orders": [e.id for e in triggering_asset_events[orders]],
            "clean": [e.extra for e in context["triggering_asset_events"].for_asset(name="clean")],
            "elsewhere": list(triggering_asset_events[elsewhere]),
            "len": len(triggering_asset_events),
            "contains": [orders in triggering_asset_events, elsewhere in triggering_asset_events],
        }

    generator_task()
    gate()
    by_context()
    sets_nothing()
    sets_then_skips()
    sets_then_fails()
    callback_too_late()
    after_callback()
    bad_list()
    bad_date()
    bad_key()
    bad_nan()
    bad_metadata()
    reads()
    reads_elsewhere()
    reads_unknown_uri()
    lazy()
    triggered()
    PythonOperator(task_id="generator_operator", python_callable=produce, outlets=[clean])
    ShortCircuitOperator(task_id="generator_short_circuit", python_callable=produce, outlets=[clean])
    BashOperator(task_id="classic", outlets=[clean], bash_command=":", post_execute=annotate)
    Marking(task_id="marking", outlets=[orders], pre_execute=in_hook)
    BashOperator(
        task_id="templated_outlet", outlets=[clean],
        bash_command="{% do outlet_events[outlets[0]].extra.update({'from': 'jinja'}) %}"
        "echo {{ outlet_events[outlets[0]].extra['from'] }}",
    )
    BashOperator(
        task_id="templated_inlet", inlets=[orders],
        bash_command="echo '{{ inlet_events.for_asset(uri='s3://lake/orders')[-1].extra | tojson }}' "
        "{{ inlet_events[0][:-2] | length }}",
    )
"""

ORDERS = {"name": "s3://lake/orders", "uri": "s3://lake/orders", "group": "asset", "extra": {"owner": "ingest"}}
CLEAN = {"name": "clean", "uri": "s3://lake/clean", "group": "asset", "extra": {}}


def event(id: int, asset: dict[str, Any], extra: dict[str, Any], made_by_task: bool = True) -> dict[str, Any]:
    """An asset event as the agent answers it: event `id` happened on December `id`, 00:30 UTC."""
    return {
        "id": id, "asset": asset, "extra": extra,
        "source_dag_id": "ingest" if made_by_task else None,
        "source_task_id": "load" if made_by_task else None,
        "source_run_id": f"scheduled__{id}" if made_by_task else None,
        "source_map_index": -1,
        "timestamp": f"2026-12-0{id}T01:30:00.250000+01:00",
    }


#: Four events of `orders`, the last posted by no task.
ORDERS_EVENTS = [
    event(1, ORDERS, {"rows": 1}),
    event(2, ORDERS, {"rows": 2}),
    event(3, ORDERS, {"rows": 3}),
    event(4, ORDERS, {"rows": 4}, made_by_task=False),
]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    folder = tmp_path / "project"
    folder.mkdir()
    return Project(folder, monkeypatch, whole_attempt=True)


def done(project: Project, task_id: str, agent: Agent | None = None, body: str = BODY, **fields: Any) -> tuple[dict[str, Any], Agent]:
    """The `done` message of a try of `task_id`, and the agent it ran against."""
    outcome, agent = project.run(body, task_id, agent, **fields)
    return dict(outcome.message()), agent


def asked(agent: Agent, *ops: str) -> list[dict[str, Any]]:
    return [r for r in agent.asked if r["op"] in ops]


# --------------------------------------------------------------------------------------------
# Outlets


@pytest.mark.parametrize("task_id", ["generator_task", "generator_operator", "generator_short_circuit"])
def test_a_generator_task_s_metadata_sets_its_outlets_extra_and_its_return_value_is_the_result(
    project: Project, task_id: str, capfd: pytest.CaptureFixture[str]
) -> None:
    message, agent = done(project, task_id)
    assert message["outcome"] == "success", message
    # Merged into the asset's extra, in the order yielded; `elsewhere` is not an outlet: left out.
    assert message["outlet_events"] == [{"name": "clean", "uri": "s3://lake/clean", "extra": {"rows": 1, "more": [1, 2]}}]
    # As in Airflow, the generator's return value is the task's result.
    assert agent.pushed["return_value"] == "produced"
    log = capfd.readouterr().err
    assert "ignoring unknown data of <class 'str'> received from task" in log
    assert "Asset(name='s3://lake/elsewhere', uri='s3://lake/elsewhere') is ignored: it is not one of the task's outlets" in log


def test_a_short_circuit_s_metadata_is_recorded_with_its_decision(project: Project) -> None:
    message, _ = done(project, "gate")
    assert message == {
        "op": "done", "outcome": "success", "reason": "", "proceed": True,
        "outlet_events": [{"name": "clean", "uri": "s3://lake/clean", "extra": {"gate": 1}}],
    }


def test_outlet_events_extra_set_in_a_taskflow_function_and_through_the_context(project: Project) -> None:
    message, agent = done(project, "by_context")
    assert message == {
        "op": "done", "outcome": "success", "reason": "",
        "outlet_events": [
            {"name": "clean", "uri": "s3://lake/clean", "extra": {"hi": "bye", "k": "v"}},
            {"name": "s3://lake/orders", "uri": "s3://lake/orders", "extra": {"rows": 3}},
        ],
    }
    assert agent.pushed["return_value"] == ["OutletEventAccessor", 2, ["s3://lake/clean", "s3://lake/orders"]]


def test_outlet_events_in_a_classic_operator_s_post_execute(project: Project) -> None:
    # Airflow's example_outlet_event_extra.py: a BashOperator's post_execute callable.
    message, _ = done(project, "classic")
    assert message["outlet_events"] == [{"name": "clean", "uri": "s3://lake/clean", "extra": {"hi": "bye", "result": None}}]


def test_a_custom_operator_s_hooks_and_its_own_pre_and_post_execute_set_extras(project: Project) -> None:
    # The pre_execute argument, then the class's pre_execute (a generator yielding Metadata,
    # calling BaseOperator's, which does nothing), then post_execute with the result.
    message, _ = done(project, "marking")
    assert message["outcome"] == "success", message
    assert message["outlet_events"] == [
        {"name": "s3://lake/orders", "uri": "s3://lake/orders", "extra": {"hook": "pre", "pre": True, "post": 42}}
    ]


def test_outlet_events_in_a_template(project: Project) -> None:
    message, agent = done(project, "templated_outlet")
    assert message["outlet_events"] == [{"name": "clean", "uri": "s3://lake/clean", "extra": {"from": "jinja"}}]
    assert agent.pushed["return_value"] == "jinja"


def test_a_success_without_extras_has_no_outlet_events(project: Project) -> None:
    # An accessor read but no extra set, and an extra for an asset that is not an outlet.
    message, _ = done(project, "sets_nothing")
    assert message == {"op": "done", "outcome": "success", "reason": ""}


def test_an_execute_callback_may_yield_metadata(project: Project) -> None:
    message, _ = done(project, "after_callback")
    assert message["outlet_events"] == [{"name": "clean", "uri": "s3://lake/clean", "extra": {"callback": 1, "task": 2}}]


def test_what_a_success_callback_sets_comes_too_late(project: Project) -> None:
    # As in Airflow, the success callbacks run once the outcome (and its events) is decided.
    message, _ = done(project, "callback_too_late")
    assert message["outlet_events"] == [{"name": "clean", "uri": "s3://lake/clean", "extra": {"hi": "bye"}}]


@pytest.mark.parametrize("task_id", ["sets_then_skips", "sets_then_fails"])
def test_only_a_success_reports_outlet_events(project: Project, task_id: str) -> None:
    message, _ = done(project, task_id)
    assert message["outcome"] in ("skipped", "failed"), message
    assert "outlet_events" not in message


@pytest.mark.parametrize(
    ("task_id", "reason"),
    [
        ("bad_list", "the extra of the asset event of Asset(name='clean', uri='s3://lake/clean') must be a JSON object "
         "of JSON values, not ['x']"),
        ("bad_date", "the extra of the asset event of Asset(name='clean', uri='s3://lake/clean') must be a JSON object "
         "of JSON values: extra['when'] is a datetime (datetime.datetime(2026, 1, 1, 0, 0)), not a JSON value"),
        ("bad_key", "the extra of the asset event of Asset(name='clean', uri='s3://lake/clean') must be a JSON object "
         "of JSON values: extra is an object with the key 1, which is not a string"),
        ("bad_nan", "the extra of the asset event of Asset(name='clean', uri='s3://lake/clean') must be a JSON object "
         "of JSON values: extra['x']['y'][0] is nan, which JSON cannot hold"),
        ("bad_metadata", "the Metadata yielded for Asset(name='clean', uri='s3://lake/clean') has an extra that is not "
         "a JSON object: 5"),
    ],
)
def test_an_extra_that_is_not_a_json_object_fails_the_try_naming_the_asset(project: Project, task_id: str, reason: str) -> None:
    message, _ = done(project, task_id)
    assert message == {"op": "done", "outcome": "failed", "reason": reason}


def test_airflow_s_example_outlet_event_extra_runs_as_in_airflow(project: Project) -> None:
    with zipfile.ZipFile(fetch_wheel()) as wheel:
        source = wheel.read("airflow/example_dags/example_outlet_event_extra.py").decode()
    body = source.replace("from __future__ import annotations\n", "")
    expected = [{"name": "test-asset", "uri": "s3://output/1.txt", "extra": {"hi": "bye"}}]
    for dag_id in ("asset_with_extra_by_yield", "asset_with_extra_by_context", "asset_with_extra_from_classic_operator"):
        message, _ = done(project, dag_id, body=body, dag_id=dag_id)
        assert message == {"op": "done", "outcome": "success", "reason": "", "outlet_events": expected}, dag_id


def test_the_done_line_the_runner_writes_carries_the_outlet_events(tmp_path: Path) -> None:
    source = (
        "from airflow.sdk import DAG, Asset, Metadata, task\n"
        "clean = Asset(name='clean', uri='s3://lake/clean')\n"
        "with DAG('d', schedule=None):\n"
        "    @task(outlets=[clean, Asset('s3://lake/raw')])\n"
        "    def produce(outlet_events=None):\n"
        "        yield Metadata(clean, {'rows': 3, 'tables': ('a', 'b')})\n"
        "        outlet_events[Asset('s3://lake/raw')].extra['hi'] = 'bye'\n"
        "    produce()\n"
    )
    (tmp_path / "dag.py").write_text(source)
    compiled = compile_file(tmp_path / "dag.py")
    spec = compiled["dags"][0]["tasks"][0]
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
    assert json.loads(lines[0]) == {"op": "hello", "protocol": 3}
    assert json.loads(lines[-1]) == {
        "op": "done", "outcome": "success", "reason": "",
        "outlet_events": [
            {"name": "clean", "uri": "s3://lake/clean", "extra": {"rows": 3, "tables": ["a", "b"]}},
            {"name": "s3://lake/raw", "uri": "s3://lake/raw", "extra": {"hi": "bye"}},
        ],
    }


def test_the_outlet_event_accessors_behave_as_airflow_s() -> None:
    clean = Asset(name="clean", uri="s3://lake/clean")
    events = OutletEventAccessors([clean])
    assert len(events) == 0
    # Any asset has an accessor, made when first asked for (`in` asks for it, as Airflow's).
    assert Asset("s3://lake/other") in events
    assert events[clean] is events.for_asset(name="clean", uri="s3://lake/clean") is events.for_asset(name="clean")
    assert events.for_asset(uri="s3://lake/clean") is events[clean]
    assert events[clean].key == ("clean", "s3://lake/clean")
    assert sorted(a.uri for a in events) == ["s3://lake/clean", "s3://lake/other"]
    events[clean].add(clean, {"ignored": True})  # an asset alias's; an asset's ignores it
    assert events[clean].extra == {}
    with pytest.raises(TypeError, match="Key should be either an asset or an asset alias, not <class 'str'>"):
        events["s3://lake/clean"]  # type: ignore[index]
    with pytest.raises(ValueError, match="name and uri cannot both be None"):
        events.for_asset()  # type: ignore[call-overload]
    assert Metadata(clean, {"a": 1}) == Metadata(asset=clean, extra={"a": 1})
    assert Metadata(clean).extra == {}


# --------------------------------------------------------------------------------------------
# Inlets


def test_inlet_events_are_a_sequence_of_airflow_s_asset_events_fetched_once(project: Project) -> None:
    agent = Agent()
    agent.asset_events[("s3://lake/orders", "s3://lake/orders")] = ORDERS_EVENTS
    message, agent = done(project, "reads", agent)
    assert message["outcome"] == "success", message
    assert agent.pushed["return_value"] == {
        "len": 4,
        "ids": [1, 2, 3, 4],
        "all_but_last_two": [1, 2],
        "last": {"rows": 4},
        "asset": ["Asset", "s3://lake/orders", "s3://lake/orders", "asset", {"owner": "ingest"}],
        "source": ["ingest", "load", "scheduled__1", -1],
        # In UTC, as Airflow's.
        "timestamp": ["datetime", "2026-12-01T00:30:00.250000+00:00"],
        "manual": [None, None],
        "by_position": [1, 2, 3, 4],
        "by_name": [1, 2, 3, 4],
        "by_uri": [1, 2, 3, 4],
        "latest_two": [4, 3],
        "between": [2, 3],
        "clean": 0,
        "inlets": [2, True, False],
    }
    # Each inlet's events asked for once, when first read, and kept for the try.
    assert asked(agent, "asset_events", "triggering_asset_events") == [
        {"op": "asset_events", "name": "s3://lake/orders", "uri": "s3://lake/orders"},
        {"op": "asset_events", "name": "clean", "uri": "s3://lake/clean"},
    ]


def test_a_task_that_reads_no_events_asks_for_none(project: Project) -> None:
    message, agent = done(project, "lazy")
    assert message == {"op": "done", "outcome": "success", "reason": ""}
    assert asked(agent, "asset_events", "triggering_asset_events") == []


@pytest.mark.parametrize(
    ("task_id", "reason"),
    [
        ("reads_elsewhere", "KeyError: \"Asset(name='s3://lake/elsewhere', uri='s3://lake/elsewhere') is not one of the task's inlets\""),
        # As Airflow's, a URI given alone is compared as it is (not normalised).
        ("reads_unknown_uri", "KeyError: \"no inlet of the task has the uri 's3://lake/orders/'\""),
    ],
)
def test_an_asset_that_is_not_an_inlet_is_a_key_error(project: Project, task_id: str, reason: str) -> None:
    message, agent = done(project, task_id)
    assert message == {"op": "done", "outcome": "failed", "reason": reason}
    assert asked(agent, "asset_events") == []


def test_inlet_events_in_a_template_as_airflow_s_example(project: Project) -> None:
    agent = Agent()
    agent.asset_events[("s3://lake/orders", "s3://lake/orders")] = ORDERS_EVENTS
    message, agent = done(project, "templated_inlet", agent)
    assert message["outcome"] == "success", message
    assert agent.rendered["bash_command"] == "echo '{\"rows\": 4}' 2"
    assert agent.pushed["return_value"] == '{"rows": 4} 2'
    assert len(asked(agent, "asset_events")) == 1


def test_airflow_s_example_inlet_event_extra_runs(project: Project) -> None:
    with zipfile.ZipFile(fetch_wheel()) as wheel:
        source = wheel.read("airflow/example_dags/example_inlet_event_extra.py").decode()
    body = source.replace("from __future__ import annotations\n", "")
    output = {"name": "s3://output/1.txt", "uri": "s3://output/1.txt", "group": "asset", "extra": {}}
    agent = Agent()
    agent.asset_events[("s3://output/1.txt", "s3://output/1.txt")] = [event(i, output, {"hi": f"bye {i}"}) for i in (1, 2, 3)]
    message, agent = done(project, "read_asset_event_from_classic", agent, body=body, dag_id="read_asset_event_from_classic")
    assert message["outcome"] == "success", message
    assert agent.pushed["return_value"] == '{"hi": "bye 3"}'
    message, agent = done(project, "read_asset_event", agent, body=body, dag_id="read_asset_event")
    assert message["outcome"] == "success", message


def test_the_inlet_event_accessors_behave_as_airflow_s() -> None:
    orders = Asset("s3://lake/orders")
    fetched: list[tuple[str, str]] = []

    def fetch(name: str, uri: str) -> Any:
        fetched.append((name, uri))
        return ORDERS_EVENTS

    events = InletEventsAccessors([orders], fetch, lambda name: pytest.fail("no alias is read"))
    assert list(events) == [orders] and len(events) == 1
    with pytest.raises(IndexError):
        events[1]
    with pytest.raises(TypeError, match="`key` is of unknown type \\(str\\)"):
        events["s3://lake/orders"]
    sequence = events[orders]
    assert fetched == []  # nothing fetched until read
    assert sequence[-1].timestamp == dt.datetime(2026, 12, 4, 0, 30, 0, 250000, tzinfo=dt.timezone.utc)
    assert sequence[-1].timestamp.tzinfo is dt.timezone.utc
    assert [e.id for e in reversed(sequence)] == [4, 3, 2, 1]
    assert sequence.index(sequence[2]) == 2
    assert [e.id for e in events[orders].after(dt.datetime(2026, 12, 3, 0, 30, 0, 250000, tzinfo=dt.timezone.utc))] == [3, 4]
    assert fetched == [("s3://lake/orders", "s3://lake/orders")]
    assert "AssetEvent(id=1, asset=Asset(name='s3://lake/orders'" in repr(sequence[0])


# --------------------------------------------------------------------------------------------
# The run's triggering events


def test_triggering_asset_events_group_the_run_s_events_by_asset(project: Project) -> None:
    agent = Agent()
    agent.triggering_events = [event(1, ORDERS, {"rows": 1}), event(2, CLEAN, {"k": 2}), event(3, ORDERS, {"rows": 3})]
    message, agent = done(project, "triggered", agent)
    assert message["outcome"] == "success", message
    result = agent.pushed["return_value"]
    assert result == {
        "groups": {"s3://lake/orders": [1, 3], "s3://lake/clean": [2]},
        "types": ["Asset"],
        "orders": [1, 3],
        "clean": [{"k": 2}],
        "elsewhere": [],
        "len": 2,
        "contains": [True, False],
    }
    assert list(result["groups"]) == ["s3://lake/orders", "s3://lake/clean"]
    assert asked(agent, "asset_events", "triggering_asset_events") == [{"op": "triggering_asset_events"}]


def test_a_run_no_asset_started_has_no_triggering_events(project: Project) -> None:
    message, agent = done(project, "triggered")
    assert message["outcome"] == "success", message
    assert agent.pushed["return_value"] == {
        "groups": {}, "types": [], "orders": [], "clean": [], "elsewhere": [], "len": 0, "contains": [False, False],
    }


def test_the_triggering_events_accessor_refuses_aliases_and_other_keys() -> None:
    accessor = TriggeringAssetEventsAccessor(lambda: [event(1, CLEAN, {})])
    assert "TriggeringAssetEventAccessor(_events={AssetUniqueKey(name='clean', uri='s3://lake/clean')" in str(accessor)
    assert [e.id for e in accessor.for_asset(uri="s3://lake/clean")] == [1]
    with pytest.raises(TypeError, match="not <class 'int'>"):
        accessor[1]  # type: ignore[index]
    with pytest.raises(UnsupportedConstruct, match="^triggering_asset_events.for_asset_alias\\(\\)"):
        accessor.for_asset_alias(name="a")

