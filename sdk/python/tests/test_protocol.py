"""Both sides of the agent ↔ runner protocol agree on every message: each example of
`executors/tests/runner_protocol.json` (which a Rust test reads with the agent's types) has the
keys and value types of its TypedDict in `leoflow.protocol`, and every TypedDict has an example.
The runner's own requests are checked against the same TypedDicts."""

from __future__ import annotations

import io
import json
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

from leoflow import protocol
from leoflow.asset_events import context_accessors
from leoflow.assets import Asset, AssetAlias
from leoflow.runner import Channel, Connections, Outcome, TaskInstance, Variables

FIXTURE = Path(__file__).resolve().parents[3] / "executors" / "tests" / "runner_protocol.json"


@pytest.fixture(scope="module")
def examples() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return loaded


def problems(value: Any, expected: Any, where: str = "$") -> list[str]:
    """What in `value` does not fit the type `expected` (empty when it fits)."""
    if expected is Any:
        return []
    if is_typeddict(expected):
        return typeddict_problems(value, expected, where)
    origin, args = get_origin(expected), get_args(expected)
    if origin is Literal:
        return [] if any(value == a and type(value) is type(a) for a in args) else [f"{where}: {value!r} is not one of {args}"]
    if origin in (Union, types.UnionType):
        return [] if any(not problems(value, a, where) for a in args) else [f"{where}: {value!r} fits none of {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {value!r} is not a list"]
        return [p for i, item in enumerate(value) for p in problems(item, args[0], f"{where}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {value!r} is not an object"]
        return [p for k, v in value.items() for p in problems(k, args[0], where) + problems(v, args[1], f"{where}.{k}")]
    if expected is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    if expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, expected)
    return [] if ok else [f"{where}: {value!r} is not a {expected.__name__}"]


def typeddict_problems(value: Any, kind: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {value!r} is not an object"]
    found = [f"{where}: no {key!r}" for key in kind.__required_keys__ - value.keys()]
    known = kind.__required_keys__ | kind.__optional_keys__
    found += [f"{where}: unknown key {key!r}" for key in value.keys() - known]
    hints = get_type_hints(kind)
    for key in value.keys() & known:
        found += problems(value[key], hints[key], f"{where}.{key}")
    return found


def fitting(value: Any, kinds: tuple[Any, ...]) -> Any:
    """The one TypedDict of `kinds` that `value` fits."""
    fits = [kind for kind in kinds if not problems(value, kind)]
    assert len(fits) == 1, f"{value} fits {[k.__name__ for k in fits]}: " + "; ".join(
        p for kind in kinds for p in problems(value, kind)
    )
    return fits[0]


def test_the_fixture_is_of_this_protocol_version(examples: dict[str, Any]) -> None:
    assert examples["protocol"] == protocol.PROTOCOL_VERSION


def test_every_request_fits_its_typeddict_and_every_request_has_an_example(examples: dict[str, Any]) -> None:
    seen = {fitting(request, protocol.REQUESTS) for request in examples["requests"]}
    assert seen == set(protocol.REQUESTS)
    assert set(get_args(protocol.Request)) == set(protocol.REQUESTS)
    outcomes = {r["outcome"] for r in examples["requests"] if r["op"] == "done"}
    assert outcomes == set(get_args(protocol.OutcomeName))


def test_every_reply_fits_exactly_one_typeddict_and_every_reply_has_an_example(examples: dict[str, Any]) -> None:
    seen = {fitting(reply, protocol.REPLIES) for reply in examples["replies"]}
    assert seen == set(protocol.REPLIES) == set(get_args(protocol.Reply))


def test_start_lines_and_every_operator_fit(examples: dict[str, Any]) -> None:
    for start in examples["start"]:
        assert problems(start, protocol.Start) == []
    assert examples["operators"] == list(get_args(protocol.OperatorName))


def test_the_zygote_messages_fit(examples: dict[str, Any]) -> None:
    for request in examples["fork_requests"]:
        assert problems(request, protocol.ForkRequest) == []
    seen = {fitting(answer, protocol.FORK_ANSWERS) for answer in examples["fork_answers"]}
    assert seen == set(protocol.FORK_ANSWERS) == set(get_args(protocol.ForkAnswer))


def test_a_message_that_does_not_fit_is_caught() -> None:
    assert problems({"op": "variable"}, protocol.VariableLookup) == ["$: no 'key'"]
    assert problems({"op": "done", "outcome": "great", "reason": ""}, protocol.Done)
    assert problems({"ok": True, "found": 1, "value": None}, protocol.Found)
    assert problems({"op": "hello", "protocol": 1, "extra": 0}, protocol.Hello) == ["$: unknown key 'extra'"]


def test_the_asset_events_of_the_fixture_fit_their_typeddict(examples: dict[str, Any]) -> None:
    lists = [r["value"] for r in examples["replies"] if r.get("found") and isinstance(r["value"], list)]
    assert lists, "no example of a Found holding asset events"
    for events in lists:
        assert events
        for event in events:
            assert problems(event, protocol.AssetEventRecord) == []
    outlet_events = [e for r in examples["requests"] if r["op"] == "done" for e in r.get("outlet_events", [])]
    # Both kinds of entry have examples, each fitting its own kind only: an outlet's extra, and
    # an event added through an outlet alias.
    kinds = (protocol.OutletEvent, protocol.AliasOutletEvent)
    assert {fitting(e, kinds) for e in outlet_events} == set(kinds)
    assert problems({"name": "a", "uri": "a", "extra": []}, protocol.OutletEvent)
    added = {"name": "a", "uri": "a", "group": "asset", "extra": {}, "alias": "x"}
    assert problems(added, protocol.AliasOutletEvent) == []
    assert problems({k: v for k, v in added.items() if k != "group"}, protocol.AliasOutletEvent) == ["$: no 'group'"]
    assert problems({**added, "alias": None}, protocol.AliasOutletEvent)


def test_what_the_runner_sends_fits_the_requests() -> None:
    record = {
        "id": 1, "asset": {"name": "a", "uri": "s3://lake/a", "group": "asset", "extra": {}}, "extra": {"k": 1},
        "source_dag_id": "d", "source_task_id": "t", "source_run_id": "r", "source_map_index": -1,
        "timestamp": "2026-12-01T00:00:00+00:00",
    }
    found = [{"ok": True, "found": True, "value": v} for v in ("x", "x", "v", {"host": "h"}, [record], [record], [record])]
    replies = [{"ok": True}, *found, {"ok": True}, {"ok": True}]
    sent = io.StringIO()
    channel = Channel(sent, io.StringIO("".join(json.dumps(r) + "\n" for r in replies)))
    attempt: Any = {"dag_id": "d", "run_id": "r", "task_id": "t", "map_index": -1, "try_number": 1}
    ti = TaskInstance(channel, attempt)
    asset = Asset(name="a", uri="s3://lake/a")
    alias = AssetAlias("example-alias")
    accessors = context_accessors(
        [asset, alias], [asset, alias],
        fetch_events=lambda name, uri: channel.look_up({"op": "asset_events", "name": name, "uri": uri})[1],
        fetch_alias_events=lambda name: channel.look_up({"op": "asset_alias_events", "name": name})[1],
        fetch_triggering=lambda: channel.look_up({"op": "triggering_asset_events"})[1],
    )
    channel.greet()
    ti.xcom_pull(task_ids="up")
    ti.xcom_pull(task_ids="up", map_indexes=3)
    Variables(channel).get("name")
    Connections(channel).get("db")
    assert accessors["inlet_events"][asset][0].extra == {"k": 1}
    assert accessors["inlet_events"][alias][0].extra == {"k": 1}
    assert len(accessors["triggering_asset_events"][asset]) == 1
    ti.xcom_push("return_value", {"n": 1})
    accessors["outlet_events"][asset].extra["rows"] = 2
    accessors["outlet_events"][alias].add(Asset("s3://lake/b", group="raw"), extra={"n": 1})
    outlet_events = accessors["outlet_events"].recorded()
    channel.ask(Outcome("success", branch=["a"], proceed=None, outlet_events=outlet_events).message())
    requests = [json.loads(line) for line in sent.getvalue().splitlines()]
    assert [r["op"] for r in requests] == [
        "hello", "xcom_pull", "xcom_pull", "variable", "connection", "asset_events", "asset_alias_events",
        "triggering_asset_events", "xcom_push", "done",
    ]
    assert requests[5] == {"op": "asset_events", "name": "a", "uri": "s3://lake/a"}
    assert requests[6] == {"op": "asset_alias_events", "name": "example-alias"}
    assert requests[7] == {"op": "triggering_asset_events"}
    assert requests[-1]["outlet_events"] == [
        {"name": "a", "uri": "s3://lake/a", "extra": {"rows": 2}},
        {"name": "s3://lake/b", "uri": "s3://lake/b", "group": "raw", "extra": {"n": 1}, "alias": "example-alias"},
    ]
    for request in requests:
        fitting(request, protocol.REQUESTS)


def test_a_refused_hello_is_an_error_naming_the_reason() -> None:
    refusal = {"ok": False, "error": "the task runner speaks protocol 1 and this agent protocol 2"}
    channel = Channel(io.StringIO(), io.StringIO(json.dumps(refusal) + "\n"))
    with pytest.raises(Exception, match="hello failed: the task runner speaks protocol 1 and this agent protocol 2"):
        channel.greet()
