"""A DAG's `access_control`: Airflow's two spellings become one in dag.json; bad grants are located errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from leoflow.compiler import compile_file


def compile_dag(tmp_path: Path, access_control: str) -> dict[str, Any]:
    path = tmp_path / "dag.py"
    path.write_text(
        textwrap.dedent(
            f"""\
            from airflow.sdk import DAG, task

            with DAG("guarded", schedule=None,
                     access_control={access_control}):
                @task
                def work():
                    pass
                work()
            """
        ),
        encoding="utf-8",
    )
    return compile_file(path)


def dag_of(result: dict[str, Any]) -> dict[str, Any]:
    assert result["ok"], result
    dag: dict[str, Any] = result["dags"][0]
    return dag


def test_airflow_2_spelling_grants_on_the_dag(tmp_path: Path) -> None:
    dag = dag_of(compile_dag(tmp_path, '{"team-a": {"can_read", "can_edit"}, "team-b": ["can_read"]}'))
    assert dag["access_control"] == {
        "team-a": {"DAGs": ["can_edit", "can_read"]},
        "team-b": {"DAGs": ["can_read"]},
    }


def test_resource_spelling_sorts_actions_and_omits_empty_resources(tmp_path: Path) -> None:
    dag = dag_of(
        compile_dag(
            tmp_path,
            '{"team-a": {"DAGs": {"can_read", "can_edit", "can_delete"}, "DAG Runs": {"can_create", "can_read"}},'
            ' "auditors": {"DAGs": {"can_read"}, "DAG Runs": set()}}',
        )
    )
    assert dag["access_control"] == {
        "team-a": {"DAGs": ["can_delete", "can_edit", "can_read"], "DAG Runs": ["can_create", "can_read"]},
        "auditors": {"DAGs": ["can_read"]},
    }


def test_a_dag_without_access_control_has_no_key(tmp_path: Path) -> None:
    assert "access_control" not in dag_of(compile_dag(tmp_path, "None"))
    assert "access_control" not in dag_of(compile_dag(tmp_path, "{}"))


def test_the_dag_decorator_takes_it_too(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text(
        "from airflow.sdk import dag, task\n"
        "@dag(schedule=None, access_control={'ops': {'DAG Runs': ['can_create']}})\n"
        "def decorated():\n    @task\n    def t():\n        pass\n    t()\n"
        "decorated()\n",
        encoding="utf-8",
    )
    assert dag_of(compile_file(path))["access_control"] == {"ops": {"DAG Runs": ["can_create"]}}


REFUSED = [
    ("not a dict", '["team-a"]', "access_control must be a dict of role → actions, not list"),
    ("empty role", '{"": {"can_read"}}', "access_control: a role must be a non-empty string, not ''"),
    ("role not a string", '{1: {"can_read"}}', "a role must be a non-empty string, not 1"),
    ("unknown action, old spelling", '{"team-a": {"can_read", "can_trigger"}}',
     "access_control['team-a']['DAGs']: 'can_trigger' is not an action on DAGs; use can_read, can_edit, can_delete"),
    ("can_create on DAGs", '{"team-a": {"DAGs": {"can_create"}}}',
     "access_control['team-a']['DAGs']: 'can_create' is not an action on DAGs"),
    ("can_edit on DAG Runs", '{"team-a": {"DAG Runs": {"can_edit"}}}',
     "access_control['team-a']['DAG Runs']: 'can_edit' is not an action on DAG Runs; use can_read, can_create, can_delete"),
    ("unknown resource", '{"team-a": {"Task Instances": {"can_read"}}}',
     "access_control['team-a']: unknown resource 'Task Instances'; per-DAG access grants on 'DAGs' and 'DAG Runs'"),
    ("actions as one string", '{"team-a": "can_read"}', "access_control['team-a']['DAGs'] must be a set of actions"),
    ("non-string action", '{"team-a": {"DAGs": [["can_read"]]}}', "['team-a']['DAGs']: ['can_read'] is not an action on DAGs"),
]


@pytest.mark.parametrize(("access_control", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_bad_grants_are_refused_naming_role_resource_and_action(tmp_path: Path, access_control: str, message: str) -> None:
    result = compile_dag(tmp_path, access_control)
    assert not result["ok"], result
    error = result["error"]
    assert error["kind"] == "DagDefinitionError", error
    assert error["line"] == 3, error
    assert message in error["message"], error
