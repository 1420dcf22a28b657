"""`from airflow.configuration import conf` in a DAG file: Airflow's defaults of the keys DAG
files read, `AIRFLOW__SECTION__KEY` overrides, typed getters, and a clear error for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from leoflow.compiler import compile_file

DAG = """
from airflow.configuration import conf
from airflow.sdk import DAG
from airflow.providers.standard.operators.empty import EmptyOperator

with DAG("configured", schedule=None, tags=[
    conf.get("core", "dags_folder").rsplit("/", 1)[-1],
    conf.get("operators", "default_owner"),
    str(conf.getboolean("operators", "default_deferrable")),
    str(conf.getint("core", "parallelism")),
    conf.get("kubernetes_executor", "namespace"),
    conf.get("custom", "missing", fallback="fallback"),
    str(conf.has_option("custom", "missing")),
]):
    EmptyOperator(task_id="t")
"""


def compiled_tags(tmp_path: Path, source: str) -> list[str]:
    project = tmp_path / "myproject"
    project.mkdir(exist_ok=True)
    path = project / "dag.py"
    path.write_text(source)
    result = compile_file(path)
    assert result["ok"], result
    tags: list[str] = result["dags"][0]["tags"]
    return tags


def test_the_keys_dag_files_read_have_airflow_s_defaults(tmp_path: Path) -> None:
    tags = compiled_tags(tmp_path, DAG)
    assert sorted(tags) == sorted(["myproject", "airflow", "False", "32", "default", "fallback"])


def test_airflow_environment_variables_override_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__KUBERNETES_EXECUTOR__NAMESPACE", "batch")
    monkeypatch.setenv("AIRFLOW__CUSTOM__MISSING", "set")
    tags = compiled_tags(tmp_path, DAG)
    assert "batch" in tags and "set" in tags and "True" in tags


def test_an_unknown_key_without_fallback_names_it(tmp_path: Path) -> None:
    path = tmp_path / "dag.py"
    path.write_text("from airflow.configuration import conf\nconf.get('secrets', 'backend')\n")
    result = compile_file(path)
    assert not result["ok"]
    assert result["error"]["line"] == 2
    assert "section/key [secrets/backend] not found in config" in result["error"]["message"]
    assert "AIRFLOW__SECRETS__BACKEND" in result["error"]["message"]
