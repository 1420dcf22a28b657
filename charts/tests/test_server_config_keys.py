"""The server configuration the chart writes uses only keys `leoflow server` accepts: its file
structs (`#[serde(deny_unknown_fields)]`, so an unknown key stops a replica at start-up) are
read from the Rust sources, so a key renamed on either side fails here, not in a cluster."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from leoflow_chart import REPO, Rendered, server_config

CONFIG_RS = REPO / "cli" / "src" / "commands" / "server" / "config.rs"
KUBERNETES_RS = REPO / "cli" / "src" / "commands" / "server" / "config" / "kubernetes.rs"
POD_RS = REPO / "executors" / "src" / "kubernetes" / "pod.rs"
AGENT_TLS_RS = REPO / "cli" / "src" / "commands" / "server" / "config" / "agent_tls.rs"

# Values whose keys are data (tenants, labels, resource names, claim values), not the server's.
DATA = {
    "auth.oidc.role_map",
    "kubernetes.namespaces",
    "kubernetes.pod_defaults.node_selector",
    "kubernetes.pod_defaults.tolerations",
    "kubernetes.pod_defaults.affinity",
    "kubernetes.pod_defaults.labels",
    "kubernetes.pod_defaults.annotations",
    "kubernetes.pod_defaults.resources",
}

STRUCT = re.compile(
    r"#\[serde\(deny_unknown_fields\)\]\s*(?:pub(?:\([^)]*\))?\s+)?struct\s+(\w+)\s*\{(.*?)\n\}",
    re.S,
)
FIELD = re.compile(
    r"^\s*(?:#\[serde\(rename\s*=\s*\"([^\"]+)\"\)\]\s*)?(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:", re.M
)


def fields_of(body: str) -> set[str]:
    # Attributes on their own line apply to the next field: join them first.
    joined = re.sub(r"(#\[serde\(rename\s*=\s*\"[^\"]+\"\)\])\s*\n", r"\1 ", body)
    return {rename or name for rename, name in FIELD.findall(joined)}


@cache
def file_structs(path: Path) -> dict[str, set[str]]:
    return {name: fields_of(body) for name, body in STRUCT.findall(path.read_text())}


def keys(config: dict[str, Any], prefix: str = "") -> list[str]:
    """The configuration's keys, dotted, not descending into data."""
    found: list[str] = []
    for key, value in config.items():
        path = prefix + key
        found.append(path)
        if isinstance(value, dict) and path not in DATA:
            found += keys(value, path + ".")
    return found


def written_keys(rendered: Rendered) -> set[str]:
    return {key for role in ("api", "scheduler") for key in keys(server_config(rendered, role))}


def test_the_parser_reads_the_servers_file_structs() -> None:
    structs = file_structs(CONFIG_RS)
    assert {"FileConfig", "AuthFile", "OidcFile"} <= set(structs)
    assert {"role", "database_url_file", "keys_file", "auth"} <= structs["FileConfig"]
    assert {"issuer", "client_secret_file", "cli_client_id"} <= structs["OidcFile"]


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_the_chart_writes_only_keys_the_server_accepts(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    structs = file_structs(CONFIG_RS)
    section = {
        "": structs["FileConfig"],
        "auth.": structs["AuthFile"],
        "auth.oidc.": structs["OidcFile"],
        "kubernetes.": file_structs(KUBERNETES_RS)["KubernetesFile"],
        "agent_tls.": file_structs(AGENT_TLS_RS)["AgentTlsFile"],
        "kubernetes.pod_defaults.": file_structs(POD_RS)["PodDefaultsFile"],
    }
    unknown = []
    for key in written_keys(rendered):
        parent, _, name = key.rpartition(".")
        accepted = section[parent + "." if parent else ""]
        if name not in accepted:
            unknown.append(key)
    assert unknown == [], f"keys the server refuses: {sorted(unknown)}"
