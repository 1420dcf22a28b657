"""The example DAGs shipped in apache-airflow-core 3.2.2: each compiles unmodified, or fails
with a clear message naming the unsupported construct (docs/airflow-examples.md lists which).

The wheel is fetched from the package index once (pinned by SHA-256) into .venv/artifacts.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from leoflow.compiler import compile_file

WHEEL = "apache_airflow_core-3.2.2-py3-none-any.whl"
WHEEL_SHA256 = "877be429d59193b5e9aab1ae69f44066134bf483c633e9f7c59a9220ebfcc013"
REPO = Path(__file__).resolve().parents[3]
EXPECTATIONS = Path(__file__).with_name("airflow_examples.json")


def fetch_wheel() -> Path:
    cache = Path(os.environ.get("LEOFLOW_ARTIFACTS", REPO / ".venv" / "artifacts"))
    wheel = cache / WHEEL
    if not wheel.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "apache-airflow-core==3.2.2", "-d", str(cache)],
            check=True,
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert digest == WHEEL_SHA256, f"{wheel} has SHA-256 {digest}, not the pinned {WHEEL_SHA256}"
    return wheel


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    target = tmp_path_factory.mktemp("airflow")
    with zipfile.ZipFile(fetch_wheel()) as wheel:
        names = [n for n in wheel.namelist() if n.startswith("airflow/example_dags/") and n.endswith(".py")]
        wheel.extractall(target, names)
    files = {}
    for name in names:
        path = target / name
        relative = name.removeprefix("airflow/example_dags/")
        if path.name != "__init__.py" and "/" not in relative.replace("standard/", "", 1):
            files[relative] = path
    return files


def outcome(result: dict[str, Any]) -> dict[str, Any]:
    if result["ok"]:
        return {"ok": True, "dags": sorted(d["dag_id"] for d in result["dags"])}
    error = result["error"]
    return {"ok": False, "kind": error["kind"], "line": error["line"], "message": error["message"]}


def rewrite_requested() -> bool:
    """Whether LEOFLOW_UPDATE_GOLDEN asks to rewrite the expectations: never in CI, where a test
    that rewrites itself would pass whatever the compiler produced (as authoring/tests/golden.rs)."""
    update = os.environ.get("LEOFLOW_UPDATE_GOLDEN") is not None
    if update and os.environ.get("CI") is not None:
        pytest.fail("LEOFLOW_UPDATE_GOLDEN is set in CI: golden tests never rewrite themselves there")
    return update


def test_ci_never_rewrites_the_expectations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("LEOFLOW_UPDATE_GOLDEN", raising=False)
    assert not rewrite_requested()
    monkeypatch.setenv("LEOFLOW_UPDATE_GOLDEN", "1")
    assert rewrite_requested()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="set in CI"):
        rewrite_requested()


def test_every_example_is_listed(examples: dict[str, Path]) -> None:
    expected = json.loads(EXPECTATIONS.read_text())
    assert sorted(expected) == sorted(examples)


def test_examples_compile_or_name_the_unsupported_construct(examples: dict[str, Path]) -> None:
    update = rewrite_requested()
    actual = {name: outcome(compile_file(path)) for name, path in sorted(examples.items())}
    if update:
        EXPECTATIONS.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    expected = json.loads(EXPECTATIONS.read_text())
    for name, result in actual.items():
        if not result["ok"]:
            # A failure is a located, named refusal, never a crash inside Leoflow.
            assert result["kind"] in {"UnsupportedConstruct", "ImportError", "DagDefinitionError"}, (name, result)
            assert result["line"] is not None, (name, result)
    assert actual == expected
    assert sum(r["ok"] for r in actual.values()) >= 20


def test_the_documented_tables_say_what_the_expectations_say() -> None:
    """docs/airflow-examples.md's two tables and their counts follow the expectations."""
    expected = json.loads(EXPECTATIONS.read_text())
    text = (REPO / "docs" / "airflow-examples.md").read_text()
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    compiled = {cells[0].strip("| `"): sorted(d.strip("`") for d in cells[1].rstrip(" |").split(", ")) for cells in rows if len(cells) == 2}
    refused = {cells[0].strip("| `"): (int(cells[1]), cells[2].rstrip(" |")) for cells in rows if len(cells) == 3}
    assert compiled == {name: r["dags"] for name, r in expected.items() if r["ok"]}
    assert refused == {name: (r["line"], f"{r['kind']}: {r['message']}") for name, r in expected.items() if not r["ok"]}
    total = len(expected)
    assert f"## Compile unmodified ({len(compiled)} of {total})" in text
    assert f"## Refused with a named construct ({len(refused)} of {total})" in text
