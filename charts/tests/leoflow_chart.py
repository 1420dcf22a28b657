"""Rendering charts/leoflow with Helm's own library (PyPI helm-python-sdk, which embeds Helm's
Go SDK through a C ABI: no `helm` binary), and the value sets the tests render."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "leoflow"
CI_VALUES = CHART_DIR / "ci"
RELEASE = "leoflow"
NAMESPACE = "leoflow"

Values = dict[str, Any]
Manifest = dict[str, Any]


def load_values(name: str) -> Values:
    """A value file of charts/leoflow/ci (without its `-values.yaml` suffix)."""
    loaded = yaml.safe_load((CI_VALUES / f"{name}-values.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def merged(base: Values, override: Values) -> Values:
    """`base` with `override` laid over it, maps merged key by key as Helm merges values files."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


@dataclass(frozen=True)
class Rendered:
    """One render: each template's text, and the manifests parsed from them."""

    templates: dict[str, str]
    manifests: list[tuple[str, Manifest]]

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for _, m in self.manifests if m["kind"] == kind]

    def one(self, kind: str, name: str) -> Manifest:
        found = [m for m in self.of_kind(kind) if m["metadata"]["name"] == name]
        assert len(found) == 1, f"{len(found)} {kind} named {name}"
        return found[0]

    @property
    def notes(self) -> str:
        return self.templates[f"{CHART_NAME}/templates/NOTES.txt"]


CHART_NAME = "leoflow"


def render(chart: helm.Chart, values: Values) -> Rendered:
    """Renders the chart as `helm template` would (an install of release `leoflow` into
    namespace `leoflow`). Helm's values.schema.json check and the templates' `fail` raise
    helm_python's errors."""
    templates = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    manifests: list[tuple[str, Manifest]] = []
    for path, text in sorted(templates.items()):
        if path.endswith("NOTES.txt"):
            continue
        for document in yaml.safe_load_all(text):
            if document is None:
                continue
            assert isinstance(document, dict), f"{path}: a document that is not a mapping"
            manifests.append((path, document))
    return Rendered(templates=templates, manifests=manifests)


def server_config(rendered: Rendered, role: str) -> dict[str, Any]:
    """The server configuration file the chart gives a role (`api` or `scheduler`)."""
    configmap = rendered.one("ConfigMap", RELEASE)
    config = yaml.safe_load(configmap["data"][f"{role}.yaml"])
    assert isinstance(config, dict)
    return config


def containers(manifest: Manifest) -> list[dict[str, Any]]:
    """The containers of a Deployment or a Job."""
    spec = manifest["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])
