"""The task runner's pure parts: templates, argument markers, mapping, JSON results, context
injection. (Running real tasks end to end is tested from Rust with real agents.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from leoflow.runner import Resolved, TaskError, call_with_context, mapped_arguments, render, to_json_value


class FakeTi:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.pulled: list[tuple[Any, str]] = []

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        self.pulled.append((task_ids, key))
        return self.values[task_ids]


CTX: dict[str, Any] = {
    "ds": "2026-11-24",
    "run_id": "manual__x",
    "params": {"name": "world", "nested": {"n": 3}},
    "dag_run": type("R", (), {"conf": {"key": "v"}})(),
    "logical_date": None,
    "ts": None,
}


def test_templates_render_lookups_and_leave_plain_text_alone() -> None:
    assert render("echo {{ ds }} {{ params.name }} {{params['nested'].n}}", CTX) == "echo 2026-11-24 world 3"
    assert render("{{ dag_run.conf['key'] }}-{{ run_id }}", CTX) == "v-manual__x"
    assert render(["{{ ds }}", {"k": "{{ params.name }}"}, 3], CTX) == ["2026-11-24", {"k": "world"}, 3]
    assert render("no templates here", CTX) == "no templates here"
    # Statements, filters and calls are Jinja's (tests/test_templates.py has the rest).
    assert render("{% for i in range(2) %}{{ ds | upper }};{% endfor %}", CTX) == "2026-11-24;2026-11-24;"


@pytest.mark.parametrize(
    "template, message",
    [
        ("{{ nowhere }}", "'nowhere' is undefined"),
        ("{{ params.missing }}", "has no attribute 'missing'"),
        ("{% if ds %}x", "TemplateSyntaxError"),
    ],
)
def test_templates_that_do_not_render_fail_the_task_naming_the_field(template: str, message: str) -> None:
    with pytest.raises(TaskError, match=f"rendering bash_command failed: .*{message}"):
        render(template, CTX, "bash_command")


def test_mapped_arguments_pick_the_map_index_of_the_cartesian_product_and_pull_xcoms() -> None:
    ti = FakeTi({"numbers": [10, 20]})
    task = {"mapped": {"expand": {"a": {"__xcom__": {"task_id": "numbers", "key": "return_value"}}, "b": ["x", "y", "z"]}, "expand_kwargs": None}}
    combos = [mapped_arguments(task, i, ti, {}) for i in range(6)]  # type: ignore[arg-type]
    # Values from an XCom are marked as resolved: as in Airflow, they are not rendered.
    assert combos[0] == {"a": Resolved(10), "b": "x"}
    assert combos[2] == {"a": Resolved(10), "b": "z"}
    assert combos[3] == {"a": Resolved(20), "b": "x"}
    with pytest.raises(TaskError, match="beyond"):
        mapped_arguments(task, 6, ti, {})  # type: ignore[arg-type]
    kwargs_task = {"mapped": {"expand": {}, "expand_kwargs": [{"op_args": [1]}, {"op_args": [2]}]}}
    assert mapped_arguments(kwargs_task, 1, ti, {}) == {"op_args": [2]}  # type: ignore[arg-type]


def test_results_must_be_json_and_dates_become_iso_strings() -> None:
    assert to_json_value({"when": dt.date(2026, 1, 2), "items": (1, 2)}, "r") == {"when": "2026-01-02", "items": [1, 2]}
    with pytest.raises(TaskError, match="not JSON-serializable"):
        to_json_value(object(), "the task's return value")
    with pytest.raises(TaskError, match="not JSON-serializable"):
        to_json_value(float("nan"), "the task's return value")


def test_context_values_are_passed_to_the_parameters_that_ask_for_them() -> None:
    def wants_some(x: int, ds: str | None = None, params: dict[str, Any] | None = None) -> Any:
        return (x, ds, params)

    def wants_all(**kwargs: Any) -> Any:
        return sorted(kwargs)

    assert call_with_context(wants_some, [1], {}, CTX) == (1, "2026-11-24", CTX["params"])
    # An explicit argument wins over the context value of the same name.
    assert call_with_context(wants_some, [1], {"ds": "given"}, CTX)[1] == "given"
    assert "run_id" in call_with_context(wants_all, [], {}, {**CTX, "__private__": 1})
    assert "__private__" not in call_with_context(wants_all, [], {}, {**CTX, "__private__": 1})
