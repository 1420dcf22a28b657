"""Every value in values.yaml is covered by values.schema.json (and the schema names no value
that has no default), and the chart's README lists every one with its default."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import yaml
from leoflow_chart import CHART_DIR

SCHEMA: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
VALUES: dict[str, Any] = yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SCHEMA["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def structured(schema: dict[str, Any]) -> bool:
    """An object whose keys are the chart's (not data such as labels)."""
    return "properties" in schema and schema.get("additionalProperties") is False


def leaves(values: Any, schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Each documented value: the leaves of values.yaml, not descending into data maps."""
    schema = resolve(schema)
    if isinstance(values, dict) and structured(schema):
        for key, value in values.items():
            assert key in schema["properties"], f"{prefix}{key} is not in values.schema.json"
            yield from leaves(value, schema["properties"][key], f"{prefix}{key}.")
    else:
        yield prefix.rstrip("."), values


def schema_paths(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    schema = resolve(schema)
    if structured(schema):
        for key, sub in schema["properties"].items():
            yield from schema_paths(sub, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


def test_the_schema_covers_every_value_and_refuses_others() -> None:
    documented = dict(leaves(VALUES, SCHEMA))
    assert len(documented) > 100
    assert set(schema_paths(SCHEMA)) == set(documented)


def test_every_structured_object_of_the_schema_refuses_unknown_keys() -> None:
    def objects(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        schema = resolve(schema)
        if "properties" in schema:
            yield path, schema
            for key, sub in schema["properties"].items():
                yield from objects(sub, f"{path}.{key}")

    for path, schema in objects(SCHEMA, "values"):
        assert schema.get("additionalProperties") is False, path
        if path.endswith(".resources"):
            continue  # requests and limits: either may be left out
        assert set(schema.get("required", [])) == set(schema["properties"]), path


def readme_rows() -> dict[str, str]:
    text = (CHART_DIR / "README.md").read_text()
    return dict(re.findall(r"^\| `([\w.]+)` \| `([^`]*)` \|", text, re.M))


def test_the_readme_lists_every_value_with_its_default() -> None:
    rows = readme_rows()
    documented = dict(leaves(VALUES, SCHEMA))
    assert sorted(rows) == sorted(documented)
    for path, default in documented.items():
        # Written as YAML (strings quoted, maps and lists in flow style).
        assert yaml.safe_load(rows[path]) == default, path
