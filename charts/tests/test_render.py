"""The chart renders with Helm's own library, with the required values and with every toggle
on, and `helm lint --strict` finds nothing to warn about."""

from __future__ import annotations

from collections import Counter
from typing import Any

import helm_python as helm
import pytest
from leoflow_chart import CHART_DIR, NAMESPACE, Rendered, Values, load_values

KUBERNETES_VERSIONS = ["1.29", "1.30", "1.31", "1.32", "1.33"]


def kinds(rendered: Rendered) -> Counter[str]:
    return Counter(m["kind"] for _, m in rendered.manifests)


def test_helm_library_is_the_one_pinned() -> None:
    # The render is Helm's, not an imitation: the SDK reports the Go SDK it embeds.
    assert helm.helm_sdk_version().startswith("v4.")


def test_required_values_render_the_control_plane(required: Rendered) -> None:
    assert kinds(required) == Counter(
        {
            "ConfigMap": 1,
            "Secret": 2,  # the release's, and the migration hook's database URL
            "ServiceAccount": 3,  # api, scheduler, and the task pods' in leoflow-tasks
            "Deployment": 2,
            "Service": 3,
            "Job": 1,
            "Role": 1,
            "RoleBinding": 1,
        }
    )
    for role in ("api", "scheduler"):
        required.one("Deployment", f"leoflow-{role}")
        required.one("Service", f"leoflow-{role}")
    required.one("Service", "leoflow-metrics")
    required.one("Job", "leoflow-migrate")


def test_all_toggles_render_every_optional_object(all_toggles: Rendered) -> None:
    counted = kinds(all_toggles)
    assert counted["Ingress"] == 1
    assert counted["HorizontalPodAutoscaler"] == 1
    assert counted["PodDisruptionBudget"] == 2
    assert counted["NetworkPolicy"] == 2
    assert counted["ServiceMonitor"] == 1
    assert counted["Namespace"] == 2
    assert counted["Role"] == 2
    assert counted["RoleBinding"] == 2
    # Datastores and keys from the operator's Secrets: the chart keeps only the OIDC secret,
    # and the migration Job reads the operator's Secret (no hook Secret).
    secrets = all_toggles.of_kind("Secret")
    assert [s["metadata"]["name"] for s in secrets] == ["leoflow"]
    assert set(secrets[0]["data"]) == {"oidc-client-secret"}


def test_every_object_lives_in_the_release_or_a_task_namespace(
    required: Rendered, all_toggles: Rendered, all_toggles_values: Values
) -> None:
    task_namespaces = set(all_toggles_values["taskNamespaces"].values())
    for rendered in (required, all_toggles):
        for path, manifest in rendered.manifests:
            namespace = manifest["metadata"].get("namespace")
            if manifest["kind"] == "Namespace":
                assert namespace is None
                assert manifest["metadata"]["name"] in task_namespaces
                continue
            assert namespace == NAMESPACE or namespace in task_namespaces | {"leoflow-tasks"}, (
                path,
                manifest["metadata"],
            )


def lint_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    """What `helm lint --strict` fails on: warnings (severity 2) and errors (3). Info, such
    as "icon is recommended", does not fail it."""
    return [m for m in report["messages"] if m["severity"] >= 2] + [
        {"error": e} for e in report["errors"]
    ]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values_name", ["required", "all-toggles"])
def test_lint_strict_is_clean(values_name: str, version: str) -> None:
    report = helm.lint(
        CHART_DIR, load_values(values_name), strict=True, kube_version=f"v{version}.0"
    )
    assert report["total_charts_linted"] == 1
    assert lint_findings(report) == []


def test_lint_reports_values_the_schema_refuses() -> None:
    # The same lint, with a misspelt value: it is not a lint that passes whatever it is given.
    # (Helm's lint mode logs a template's `fail` instead of failing: test_refusals.py renders.)
    values = load_values("required")
    values["api"] = {"replica": 3}
    findings = lint_findings(helm.lint(CHART_DIR, values, strict=True))
    assert any("additional properties 'replica' not allowed" in f["error"] for f in findings)
