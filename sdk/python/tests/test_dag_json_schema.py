"""Every golden dag.json validates against the documented schema (docs/dag-json.schema.json)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "docs" / "dag-json.schema.json").read_text())
GOLDEN = sorted((REPO / "authoring" / "tests" / "golden").glob("*/expected.dag.json"))


def test_the_corpus_is_there() -> None:
    assert len(GOLDEN) >= 25


@pytest.mark.parametrize("path", GOLDEN, ids=[p.parent.name for p in GOLDEN])
def test_golden_documents_follow_the_schema(path: Path) -> None:
    jsonschema.validate(json.loads(path.read_text()), SCHEMA, format_checker=jsonschema.FormatChecker())


def test_the_schema_rejects_drift() -> None:
    document = json.loads(GOLDEN[0].read_text())
    document["dags"][0]["tasks"][0]["colour"] = "red"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)


def test_the_schema_knows_which_actions_each_resource_takes() -> None:
    document = json.loads((REPO / "authoring" / "tests" / "golden" / "access_control" / "expected.dag.json").read_text())
    jsonschema.validate(document, SCHEMA)
    document["dags"][0]["access_control"]["ops"]["DAGs"] = ["can_create"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMA)
