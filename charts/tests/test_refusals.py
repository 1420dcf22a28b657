"""Bad values are refused at render time, each with a message naming the value: by
values.schema.json (Helm checks it before rendering) or by the templates' `fail`."""

from __future__ import annotations

from dataclasses import dataclass

import helm_python as helm
import pytest
from leoflow_chart import Values, load_values, merged, render


@dataclass(frozen=True)
class Case:
    id: str
    # Laid over charts/leoflow/ci/required-values.yaml (None: a value removed).
    override: Values
    error: type[helm.HelmError]
    # Every one of these is in the message.
    says: tuple[str, ...]


SCHEMA = helm.HelmValuesError
TEMPLATE = helm.HelmRenderError

CASES = [
    Case(
        "misspelt top-level key",
        {"databse": {"url": "postgres://x/y"}},
        SCHEMA,
        ("additional properties 'databse' not allowed",),
    ),
    Case(
        "misspelt nested key",
        {"api": {"replica": 3}},
        SCHEMA,
        ("at '/api'", "additional properties 'replica' not allowed"),
    ),
    Case("misspelt toggle", {"ingress": {"enable": True}}, SCHEMA, ("at '/ingress'", "'enable'")),
    Case(
        "replicas as a string",
        {"api": {"replicas": "3"}},
        SCHEMA,
        ("at '/api/replicas'", "got string, want integer"),
    ),
    Case(
        "no scheduler replica",
        {"scheduler": {"replicas": 0}},
        SCHEMA,
        ("at '/scheduler/replicas'",),
    ),
    Case(
        "too many dispatch workers",
        {"scheduler": {"dispatchWorkers": 300}},
        SCHEMA,
        ("at '/scheduler/dispatchWorkers'",),
    ),
    Case("unknown auth mode", {"auth": {"mode": "ldap"}}, SCHEMA, ("at '/auth/mode'",)),
    Case(
        "a database URL of another scheme",
        {"database": {"url": "mysql://db/leoflow"}},
        SCHEMA,
        ("at '/database/url'",),
    ),
    Case(
        "a Redis URL of another scheme",
        {"redis": {"url": "memcached://cache:11211"}},
        SCHEMA,
        ("at '/redis/url'",),
    ),
    Case(
        "a tenant name with capitals",
        {"taskNamespaces": {"Team-A": "team-a"}},
        TEMPLATE,
        ('taskNamespaces: "Team-A" is not a tenant name',),
    ),
    Case(
        "a namespace that is not a DNS label",
        {"taskNamespaces": {"default": "Tasks_NS"}},
        SCHEMA,
        ("at '/taskNamespaces/default'",),
    ),
    Case(
        "an OTLP endpoint over https",
        {"otlpEndpoint": "https://collector:4317"},
        SCHEMA,
        ("at '/otlpEndpoint'",),
    ),
    Case(
        "a log retention that is no duration",
        {"logRetention": "a month"},
        SCHEMA,
        ("at '/logRetention'",),
    ),
    Case(
        "TLS on a string",
        {"agentTLS": {"enabled": "yes"}},
        SCHEMA,
        ("at '/agentTLS/enabled'", "want boolean"),
    ),
    Case(
        "no database",
        {"database": {"url": ""}},
        TEMPLATE,
        ("database.url or database.existingSecret is required", "external Postgres"),
    ),
    Case(
        "the database given twice",
        {"database": {"existingSecret": "db"}},
        TEMPLATE,
        ("database.url or database.existingSecret, not both",),
    ),
    Case(
        "no Redis",
        {"redis": {"url": ""}},
        TEMPLATE,
        ("redis.url or redis.existingSecret is required",),
    ),
    Case(
        "no keys",
        {"keys": {"fileContent": ""}},
        TEMPLATE,
        ("keys.existingSecret or keys.fileContent is required", "leoflow server keys generate"),
    ),
    Case(
        "no admin password",
        {"auth": {"admin": {"password": ""}}},
        TEMPLATE,
        ("auth.admin.existingSecret or auth.admin.password is required",),
    ),
    Case(
        "a short admin password",
        {"auth": {"admin": {"password": "short"}}},
        TEMPLATE,
        ("auth.admin.password: at least 8 characters",),
    ),
    Case(
        "tasks in the control plane's namespace",
        {"taskNamespaces": {"default": "leoflow"}},
        TEMPLATE,
        ('taskNamespaces.default: "leoflow" is the release\'s own namespace',),
    ),
    Case(
        "TLS without a certificate",
        {"agentTLS": {"enabled": True}},
        TEMPLATE,
        ("agentTLS.existingSecret is required with agentTLS.enabled",),
    ),
    Case(
        "single sign-on without a base URL",
        {
            "auth": {
                "mode": "oidc",
                "oidc": {
                    "issuer": "https://id.example.com",
                    "clientId": "leoflow",
                    "clientSecret": "s3cret-value",
                },
            }
        },
        TEMPLATE,
        ("baseUrl is required with auth.mode oidc",),
    ),
    Case(
        "single sign-on without an issuer",
        {
            "baseUrl": "https://leoflow.example.com",
            "auth": {
                "mode": "oidc",
                "oidc": {"clientId": "leoflow", "clientSecret": "s3cret-value"},
            },
        },
        TEMPLATE,
        ("auth.oidc.issuer is required",),
    ),
    Case(
        "single sign-on without a client secret",
        {
            "baseUrl": "https://leoflow.example.com",
            "auth": {
                "mode": "oidc",
                "oidc": {"issuer": "https://id.example.com", "clientId": "leoflow"},
            },
        },
        TEMPLATE,
        ("auth.oidc.existingSecret or auth.oidc.clientSecret is required",),
    ),
    Case(
        "an Ingress without a host",
        {"ingress": {"enabled": True}},
        TEMPLATE,
        ("ingress.host is required with ingress.enabled",),
    ),
    Case(
        "an HPA whose minimum is above its maximum",
        {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}},
        TEMPLATE,
        ("autoscaling.minReplicas is above autoscaling.maxReplicas",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_values_are_refused_with_a_message_naming_them(chart: helm.Chart, case: Case) -> None:
    values = merged(load_values("required"), case.override)
    with pytest.raises(helm.HelmError) as refused:
        render(chart, values)
    assert isinstance(refused.value, case.error), f"{type(refused.value).__name__}: {refused.value}"
    message = str(refused.value)
    for words in case.says:
        assert words in message, message


def test_the_defaults_alone_are_refused_naming_the_database(chart: helm.Chart) -> None:
    # `helm install` without values: the first thing missing is named.
    with pytest.raises(
        helm.HelmRenderError, match="database.url or database.existingSecret is required"
    ):
        render(chart, {})


def test_the_required_values_are_not_refused(chart: helm.Chart) -> None:
    # The cases above fail only through their override.
    render(chart, load_values("required"))
