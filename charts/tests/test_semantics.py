"""What the rendered chart means, beyond being valid Kubernetes: secrets never written as
literals, the executor's Role exactly what it does, the migration Job a hook, agents dialing
the scheduler Service's real port, probes on the server's real endpoints, every file the
server's configuration names mounted from the right Secret, and the hardening in place."""

from __future__ import annotations

import base64
import posixpath
from typing import Any
from urllib.parse import urlsplit

import pytest
import helm_python as helm
from leoflow_chart import (
    NAMESPACE,
    Manifest,
    Rendered,
    Values,
    containers,
    merged,
    render,
    server_config,
)

ROLES = ("api", "scheduler")


def secret_values(values: Values) -> list[str]:
    """The secrets given inline in a value set."""
    found = [
        values.get("database", {}).get("url"),
        values.get("redis", {}).get("url"),
        values.get("auth", {}).get("admin", {}).get("password"),
        values.get("auth", {}).get("oidc", {}).get("clientSecret"),
    ]
    # The passwords inside the URLs, should a template ever take a URL apart.
    found += [urlsplit(url).password for url in found[:2] if url]
    keys = values.get("keys", {}).get("fileContent")
    if keys:
        found.append(keys)
        # The key material itself, wherever the file's text might be re-flowed.
        found += [
            line.split(":")[1].strip().strip('",') for line in keys.splitlines() if ":" in line
        ]
    return [s for s in found if s]


@pytest.mark.parametrize(
    ("which", "values_fixture", "expected"),
    [("required", "required_values", 8), ("all_toggles", "all_toggles_values", 1)],
)
def test_secrets_never_appear_as_literals(
    which: str, values_fixture: str, expected: int, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    values: Values = request.getfixturevalue(values_fixture)
    secrets = secret_values(values)
    assert len(secrets) == expected
    for path, text in rendered.templates.items():
        for secret in secrets:
            assert secret not in text, f"{path} holds a secret as a literal"
    # Encoded, they are only in Secrets' data.
    for path, manifest in rendered.manifests:
        if manifest["kind"] == "Secret":
            assert set(manifest) == {"apiVersion", "kind", "metadata", "type", "data"}
            continue
        text = repr(manifest)
        for secret in secrets:
            assert base64.b64encode(secret.encode()).decode() not in text, path


def test_every_inline_secret_is_in_the_release_secret(
    required: Rendered, required_values: Values
) -> None:
    data = required.one("Secret", "leoflow")["data"]
    decoded = {key: base64.b64decode(value).decode() for key, value in data.items()}
    assert decoded == {
        "database-url": required_values["database"]["url"],
        "redis-url": required_values["redis"]["url"],
        "keys.json": required_values["keys"]["fileContent"],
        "admin-password": required_values["auth"]["admin"]["password"],
    }


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_environment_variables_carry_no_secret_value(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    sensitive = ("URL", "PASSWORD", "SECRET", "TOKEN", "KEY")
    checked = 0
    for _, manifest in rendered.manifests:
        if manifest["kind"] not in ("Deployment", "Job"):
            continue
        for container in containers(manifest):
            for variable in container.get("env", []):
                if any(word in variable["name"] for word in sensitive):
                    assert "value" not in variable, variable
                    assert "secretKeyRef" in variable["valueFrom"], variable
                    checked += 1
    assert checked == 1  # the migration Job's LEOFLOW_DATABASE_URL


EXECUTOR_RULES = [
    {
        "apiGroups": [""],
        "resources": ["pods"],
        "verbs": ["create", "get", "list", "watch", "delete"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "delete", "patch"]},
]


@pytest.mark.parametrize(
    ("which", "values_fixture"),
    [("required", "required_values"), ("all_toggles", "all_toggles_values")],
)
def test_the_executor_role_is_exactly_what_it_does_in_each_task_namespace(
    which: str, values_fixture: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    values: Values = request.getfixturevalue(values_fixture)
    task_namespaces = sorted(
        set(values.get("taskNamespaces", {"default": "leoflow-tasks"}).values())
    )
    roles = rendered.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == task_namespaces
    for role in roles:
        assert role["rules"] == EXECUTOR_RULES
    bindings = rendered.of_kind("RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == task_namespaces
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "leoflow-executor",
        }
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "leoflow-scheduler", "namespace": NAMESPACE}
        ]
    # Nothing cluster-wide, and nothing for the api role.
    assert not rendered.of_kind("ClusterRole") and not rendered.of_kind("ClusterRoleBinding")
    scheduler = rendered.one("Deployment", "leoflow-scheduler")["spec"]["template"]["spec"]
    assert scheduler["serviceAccountName"] == "leoflow-scheduler"
    assert scheduler["automountServiceAccountToken"] is True
    api = rendered.one("Deployment", "leoflow-api")["spec"]["template"]["spec"]
    assert api["serviceAccountName"] == "leoflow-api"
    assert api["automountServiceAccountToken"] is False
    assert rendered.one("ServiceAccount", "leoflow-api")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_task_pods_get_a_service_account_without_permissions_or_token(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    config = server_config(rendered, "scheduler")
    name = config["kubernetes"]["pod_defaults"]["service_account"]
    accounts = [a for a in rendered.of_kind("ServiceAccount") if a["metadata"]["name"] == name]
    assert sorted(a["metadata"]["namespace"] for a in accounts) == sorted(
        set(config["kubernetes"]["namespaces"].values())
    )
    for account in accounts:
        assert account["automountServiceAccountToken"] is False
    for binding in rendered.of_kind("RoleBinding"):
        assert all(s["name"] != name for s in binding["subjects"])


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_the_migration_job_is_a_hook_running_db_migrate(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    job = rendered.one("Job", "leoflow-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    (container,) = containers(job)
    assert container["command"] + container["args"] == ["/usr/local/bin/leoflow", "db", "migrate"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    (url,) = [v for v in container["env"] if v["name"] == "LEOFLOW_DATABASE_URL"]
    reference = url["valueFrom"]["secretKeyRef"]
    # Its Secret exists before it runs: a hook of a lower weight, or the operator's own.
    hook_secrets = [
        s
        for s in rendered.of_kind("Secret")
        if "helm.sh/hook" in s["metadata"].get("annotations", {})
    ]
    if which == "required":
        (secret,) = hook_secrets
        assert secret["metadata"]["name"] == reference["name"]
        assert reference["key"] in secret["data"]
        assert secret["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
            annotations["helm.sh/hook-weight"]
        )
    else:
        assert hook_secrets == []
        assert reference == {"name": "leoflow-database", "key": "uri"}
    # Only the Job and its Secret are hooks: the rest is the release itself.
    hooks = [
        m for _, m in rendered.manifests if "helm.sh/hook" in m["metadata"].get("annotations", {})
    ]
    assert len(hooks) == 1 + len(hook_secrets)


def named_port(deployment: Manifest, name: str) -> int:
    (container,) = containers(deployment)
    (port,) = [p for p in container["ports"] if p["name"] == name]
    number = port["containerPort"]
    assert isinstance(number, int)
    return number


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_agents_dial_the_scheduler_service_port(which: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    config = server_config(rendered, "scheduler")
    host, port = config["advertise_grpc"].rsplit(":", 1)
    service = rendered.one("Service", "leoflow-scheduler")
    assert host == f"leoflow-scheduler.{NAMESPACE}.svc.cluster.local"
    (service_port,) = service["spec"]["ports"]
    assert int(port) == service_port["port"] == 9091
    # The Service reaches the scheduler pods' gRPC port, the one the server listens on.
    scheduler = rendered.one("Deployment", "leoflow-scheduler")
    pod_labels = scheduler["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert named_port(scheduler, service_port["targetPort"]) == config["grpc_port"] == 9091


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_services_reach_the_ports_the_server_listens_on(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    api = rendered.one("Deployment", "leoflow-api")
    service = rendered.one("Service", "leoflow-api")
    assert (
        service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()
    )
    (http,) = service["spec"]["ports"]
    assert (
        http["port"]
        == named_port(api, http["targetPort"])
        == server_config(rendered, "api")["http_port"]
    )
    metrics = rendered.one("Service", "leoflow-metrics")
    (port,) = metrics["spec"]["ports"]
    for role in ROLES:
        deployment = rendered.one("Deployment", f"leoflow-{role}")
        assert (
            metrics["spec"]["selector"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )
        assert (
            port["port"]
            == named_port(deployment, port["targetPort"])
            == server_config(rendered, role)["metrics_port"]
        )


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_probes_hit_healthz_and_readyz_on_the_metrics_port(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    for role in ROLES:
        deployment = rendered.one("Deployment", f"leoflow-{role}")
        (container,) = containers(deployment)
        paths = {
            probe: container[probe]["httpGet"]["path"]
            for probe in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert paths == {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            port = container[probe]["httpGet"]["port"]
            assert (
                named_port(deployment, port)
                == 9090
                == server_config(rendered, role)["metrics_port"]
            )


def mounted_files(deployment: Manifest) -> dict[str, tuple[str, str]]:
    """Each file the container sees from a Secret or a ConfigMap: path → (object, key)."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = containers(deployment)
    volumes = {v["name"]: v for v in pod["volumes"]}
    files: dict[str, tuple[str, str]] = {}
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        sources: list[tuple[str, dict[str, Any]]] = []
        if "projected" in volume:
            sources = [("secret", s["secret"]) for s in volume["projected"]["sources"]]
        elif "secret" in volume:
            sources = [("secret", {"name": volume["secret"]["secretName"], **volume["secret"]})]
        elif "configMap" in volume:
            sources = [("configMap", volume["configMap"])]
        for kind, source in sources:
            for item in source["items"]:
                files[posixpath.join(mount["mountPath"], item["path"])] = (
                    f"{kind}/{source['name']}",
                    item["key"],
                )
    return files


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        (
            "required",
            {
                "database_url_file": ("secret/leoflow", "database-url"),
                "redis_url_file": ("secret/leoflow", "redis-url"),
                "keys_file": ("secret/leoflow", "keys.json"),
                "admin_password_file": ("secret/leoflow", "admin-password"),
            },
        ),
        (
            "all_toggles",
            {
                "database_url_file": ("secret/leoflow-database", "uri"),
                "redis_url_file": ("secret/leoflow-redis", "url"),
                "keys_file": ("secret/leoflow-keys", "keys.json"),
                "auth.oidc.client_secret_file": ("secret/leoflow", "oidc-client-secret"),
                "agent_tls.cert_file": ("secret/leoflow-agent-tls", "tls.crt"),
                "agent_tls.key_file": ("secret/leoflow-agent-tls", "tls.key"),
                "agent_tls.ca_file": ("secret/leoflow-agent-tls", "ca.crt"),
            },
        ),
    ],
)
def test_every_file_the_configuration_names_is_mounted_from_its_secret(
    which: str, expected: dict[str, tuple[str, str]], request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    seen: dict[str, tuple[str, str]] = {}
    for role in ROLES:
        deployment = rendered.one("Deployment", f"leoflow-{role}")
        files = mounted_files(deployment)
        (container,) = containers(deployment)
        config_path = container["args"][container["args"].index("--config") + 1]
        assert files[config_path] == ("configMap/leoflow", f"{role}.yaml")
        config = server_config(rendered, role)
        for key, path in file_keys(config):
            assert path in files, f"{role}: {key} names {path}, which is not mounted"
            assert seen.setdefault(key, files[path]) == files[path]
    assert seen == expected


def file_keys(config: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """The configuration's `*_file` keys, dotted, with the paths they name."""
    found: list[tuple[str, str]] = []
    for key, value in config.items():
        if isinstance(value, dict):
            found += file_keys(value, f"{prefix}{key}.")
        elif key.endswith("_file"):
            found.append((prefix + key, value))
    return found


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_secret_files_are_readable_by_the_server_user_only(
    which: str, request: pytest.FixtureRequest
) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    for role in ROLES:
        pod = rendered.one("Deployment", f"leoflow-{role}")["spec"]["template"]["spec"]
        for volume in pod["volumes"]:
            if "projected" in volume:
                assert volume["projected"]["defaultMode"] == 0o400
            if "secret" in volume:
                assert volume["secret"]["defaultMode"] == 0o400
        # With the fsGroup, Kubernetes makes them 0440: owner and the pod's group, which
        # the keys file check accepts (never "others").
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


@pytest.mark.parametrize("which", ["required", "all_toggles"])
def test_every_container_runs_hardened(which: str, request: pytest.FixtureRequest) -> None:
    rendered: Rendered = request.getfixturevalue(which)
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("Job")
    assert len(workloads) == 3
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert volumes[tmp["name"]]["emptyDir"] == {}
            assert "resources" in container and container["resources"]["requests"]


def test_the_executor_configuration_comes_from_the_values(
    all_toggles: Rendered, all_toggles_values: Values
) -> None:
    kubernetes = server_config(all_toggles, "scheduler")["kubernetes"]
    tasks = all_toggles_values["tasks"]
    assert kubernetes["namespaces"] == all_toggles_values["taskNamespaces"]
    assert kubernetes["image"] == f"{tasks['image']['repository']}:{tasks['image']['tag']}"
    assert kubernetes["max_pods_per_namespace"] == 500
    assert kubernetes["unschedulable_timeout"] == "5m"
    defaults = kubernetes["pod_defaults"]
    assert defaults["service_account"] == "leoflow-task"
    assert defaults["node_selector"] == tasks["nodeSelector"]
    assert defaults["tolerations"] == tasks["tolerations"]
    assert defaults["labels"] == tasks["labels"]
    assert defaults["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    # The api role dispatches nothing: no executor section, no agent TLS.
    api = server_config(all_toggles, "api")
    assert (
        "kubernetes" not in api and "agent_tls" not in api and "allow_plaintext_agents" not in api
    )


def test_agent_tls_on_mounts_the_certificate_and_refuses_plaintext(all_toggles: Rendered) -> None:
    config = server_config(all_toggles, "scheduler")
    assert config["agent_tls"] == {
        "cert_file": "/etc/leoflow/agent-tls/tls.crt",
        "key_file": "/etc/leoflow/agent-tls/tls.key",
        "ca_file": "/etc/leoflow/agent-tls/ca.crt",
    }
    assert "allow_plaintext_agents" not in config
    assert "plaintext" not in all_toggles.notes
    # Only the scheduler holds the server's private key.
    api_files = mounted_files(all_toggles.one("Deployment", "leoflow-api"))
    assert not any("agent-tls" in path for path in api_files)


def test_agent_tls_off_allows_plaintext_and_warns(required: Rendered) -> None:
    config = server_config(required, "scheduler")
    assert config["allow_plaintext_agents"] is True
    assert "agent_tls" not in config
    assert "WARNING: the agents' channel to the scheduler is plaintext gRPC" in required.notes


def test_the_api_configuration_signs_people_in_as_the_values_say(
    required: Rendered, all_toggles: Rendered, all_toggles_values: Values
) -> None:
    admin = server_config(required, "api")
    assert admin["auth"] == {"mode": "admin"}
    assert admin["ui_dir"] == "/opt/leoflow/ui"
    oidc = server_config(all_toggles, "api")
    values = all_toggles_values["auth"]["oidc"]
    assert oidc["base_url"] == all_toggles_values["baseUrl"]
    assert oidc["auth"]["trusted_proxies"] == all_toggles_values["auth"]["trustedProxies"]
    assert oidc["auth"]["oidc"] == {
        "issuer": values["issuer"],
        "client_id": values["clientId"],
        "client_secret_file": "/etc/leoflow/secrets/oidc-client-secret",
        "scopes": values["scopes"],
        "roles_claim": values["rolesClaim"],
        "tenant_claim": "tenant",
        "role_map": values["roleMap"],
        "cli_client_id": values["cliClientId"],
    }
    assert "admin_password_file" not in oidc
    assert server_config(all_toggles, "scheduler").get("auth") is None


def test_network_policies_open_only_what_each_role_needs(all_toggles: Rendered) -> None:
    api = all_toggles.one("NetworkPolicy", "leoflow-api")["spec"]
    scheduler = all_toggles.one("NetworkPolicy", "leoflow-scheduler")["spec"]
    for spec in (api, scheduler):
        assert spec["policyTypes"] == ["Ingress", "Egress"]

    def ports(rules: list[dict[str, Any]]) -> list[list[int]]:
        return [sorted(p["port"] for p in rule["ports"]) for rule in rules]

    assert ports(api["ingress"]) == [[8080], [9090]]
    assert ports(scheduler["ingress"]) == [[9091], [9090]]
    (agents,) = scheduler["ingress"][0]["from"]
    assert agents["namespaceSelector"]["matchExpressions"] == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": ["leoflow-analytics", "leoflow-tasks"],
        }
    ]
    # DNS, Postgres, Redis, then the Kubernetes API (scheduler) or the OpenID provider (api),
    # then the OTLP collector.
    assert ports(api["egress"]) == [[53, 53], [5432], [6379], [443], [4317]]
    assert ports(scheduler["egress"]) == [[53, 53], [5432], [6379], [443, 6443], [4317]]


def test_the_autoscaler_owns_the_api_replicas(all_toggles: Rendered, required: Rendered) -> None:
    (hpa,) = all_toggles.of_kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "leoflow-api",
    }
    assert "replicas" not in all_toggles.one("Deployment", "leoflow-api")["spec"]
    assert all_toggles.one("Deployment", "leoflow-scheduler")["spec"]["replicas"] == 3
    assert required.one("Deployment", "leoflow-api")["spec"]["replicas"] == 2


def test_the_service_monitor_scrapes_the_metrics_service(all_toggles: Rendered) -> None:
    (monitor,) = all_toggles.of_kind("ServiceMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    matched = [
        s
        for s in all_toggles.of_kind("Service")
        if selector.items() <= s["metadata"]["labels"].items()
    ]
    assert [s["metadata"]["name"] for s in matched] == ["leoflow-metrics"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == matched[0]["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_pod_disruption_budgets_select_each_role(all_toggles: Rendered) -> None:
    for role in ROLES:
        budget = all_toggles.one("PodDisruptionBudget", f"leoflow-{role}")
        labels = all_toggles.one("Deployment", f"leoflow-{role}")["spec"]["template"]["metadata"][
            "labels"
        ]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert budget["spec"]["maxUnavailable"] == 1


def test_the_ingress_routes_to_the_api_service(all_toggles: Rendered) -> None:
    (ingress,) = all_toggles.of_kind("Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "leoflow.example.com"
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "leoflow-api", "port": {"name": "http"}}
    assert ingress["spec"]["tls"] == [
        {"hosts": ["leoflow.example.com"], "secretName": "leoflow-example-com-tls"}
    ]


def test_a_configuration_change_rolls_the_replicas(
    chart: helm.Chart, required_values: Values
) -> None:
    before = render(chart, required_values)
    after = render(chart, merged(required_values, {"logRetention": "7d"}))
    for role in ROLES:
        old = before.one("Deployment", f"leoflow-{role}")["spec"]["template"]["metadata"][
            "annotations"
        ]
        new = after.one("Deployment", f"leoflow-{role}")["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert old["checksum/config"] != new["checksum/config"]
        assert old["checksum/secret"] == new["checksum/secret"]
