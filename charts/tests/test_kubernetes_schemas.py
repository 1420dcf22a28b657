"""Every rendered manifest validates against Kubernetes 1.29 to 1.33's schemas (PyPI
kubernetes-validate, strict: an unknown field is an error), and the ServiceMonitor against the
Prometheus Operator CRD's own schema (vendored in fixtures/)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from leoflow_chart import Manifest, Rendered
from test_render import KUBERNETES_VERSIONS

FIXTURES = Path(__file__).resolve().parent / "fixtures"
# Kinds whose schema is not Kubernetes' own: checked against their CRD below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def validate_builtin(manifest: Manifest, version: str) -> None:
    kubernetes_validate.validate(manifest, version, strict=True)


def strict(schema: Any) -> Any:
    """The CRD's schema as the API server's strict field validation reads it: an object with
    declared properties takes no others (unless it says it preserves unknown fields)."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def service_monitor_schema() -> dict[str, Any]:
    vendored = json.loads((FIXTURES / "servicemonitor-v1.schema.json").read_text())
    schema: dict[str, Any] = strict(vendored["openAPIV3Schema"])
    return schema


def validate_service_monitor(manifest: Manifest) -> None:
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    jsonschema.validate(manifest, service_monitor_schema(), cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_every_manifest_validates_against_kubernetes(
    which: str, version: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    validated = 0
    for path, manifest in rendered.manifests:
        if (manifest["apiVersion"], manifest["kind"]) in CUSTOM_KINDS:
            continue
        try:
            validate_builtin(manifest, version)
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{path}: {e.message}")
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            pytest.fail(
                f"{path}: {manifest['kind']} {manifest['metadata']['name']}: {where}: {e.message}"
            )
        validated += 1
    assert validated == len(rendered.manifests) - len(rendered.of_kind("ServiceMonitor"))


def test_the_service_monitor_validates_against_its_crd(all_toggles: Rendered) -> None:
    (monitor,) = all_toggles.of_kind("ServiceMonitor")
    validate_service_monitor(monitor)


def test_a_misspelt_field_fails_kubernetes_validation(required: Rendered) -> None:
    # The validator is strict: the check above is not one that passes anything.
    deployment = copy.deepcopy(required.one("Deployment", "leoflow-api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(deployment, "1.33")
    deployment = copy.deepcopy(required.one("Deployment", "leoflow-api"))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(deployment, "1.29")


def test_a_misspelt_field_fails_the_crd_validation(all_toggles: Rendered) -> None:
    monitor = copy.deepcopy(all_toggles.of_kind("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        validate_service_monitor(monitor)
    monitor = copy.deepcopy(all_toggles.of_kind("ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["scheme"] = "gopher"
    with pytest.raises(jsonschema.ValidationError):
        validate_service_monitor(monitor)
