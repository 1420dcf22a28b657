"""`airflow.configuration.conf`: the Airflow configuration keys DAG files read, with Airflow
3.2's defaults, overridden as in Airflow by `AIRFLOW__{SECTION}__{KEY}` environment variables.
A key Leoflow does not know is an error naming it, unless a `fallback` is given."""

from __future__ import annotations

import os
from typing import Any

from leoflow import context
from leoflow.errors import DagDefinitionError

#: Airflow 3.2's defaults of the keys DAG files commonly read (`dags_folder` is the DAG file's).
DEFAULTS: dict[tuple[str, str], str] = {
    ("core", "default_timezone"): "utc",
    ("core", "executor"): "LocalExecutor",
    ("core", "parallelism"): "32",
    ("core", "max_active_tasks_per_dag"): "16",
    ("core", "max_active_runs_per_dag"): "16",
    ("core", "load_examples"): "False",
    ("core", "default_task_retries"): "0",
    ("core", "default_task_retry_delay"): "300",
    ("core", "dagbag_import_timeout"): "30.0",
    ("operators", "default_owner"): "airflow",
    ("operators", "default_queue"): "default",
    ("operators", "default_deferrable"): "false",
    ("api", "base_url"): "http://localhost:8088",
    ("kubernetes_executor", "namespace"): "default",
    ("kubernetes_executor", "worker_container_repository"): "",
    ("kubernetes_executor", "worker_container_tag"): "",
}

_NOT_GIVEN: Any = object()


class ConfigurationError(DagDefinitionError):
    """A configuration key Leoflow does not know (Airflow's `AirflowConfigException`)."""


class Configuration:
    """What `from airflow.configuration import conf` gives a DAG file."""

    def get(self, section: str, key: str, fallback: Any = _NOT_GIVEN, **_: Any) -> Any:
        section, key = section.lower(), key.lower()
        from_env = os.environ.get(f"AIRFLOW__{section.upper()}__{key.upper()}")
        if from_env is not None:
            return from_env
        if (section, key) == ("core", "dags_folder"):
            return os.path.dirname(context.dag_file) if context.dag_file else os.getcwd()
        if (section, key) in DEFAULTS:
            return DEFAULTS[(section, key)]
        if fallback is not _NOT_GIVEN:
            return fallback
        raise ConfigurationError(
            f"section/key [{section}/{key}] not found in config: Leoflow knows the keys DAG files "
            "commonly read (docs/authoring.md); pass fallback=... or set "
            f"AIRFLOW__{section.upper()}__{key.upper()}"
        )

    def getboolean(self, section: str, key: str, fallback: Any = _NOT_GIVEN, **kwargs: Any) -> bool:
        value = self.get(section, key, fallback, **kwargs)
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("t", "true", "1", "yes", "on"):
            return True
        if text in ("f", "false", "0", "no", "off", ""):
            return False
        raise ConfigurationError(f"the value of [{section}/{key}] is not a boolean: {value!r}")

    def getint(self, section: str, key: str, fallback: Any = _NOT_GIVEN, **kwargs: Any) -> int:
        value = self.get(section, key, fallback, **kwargs)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"the value of [{section}/{key}] is not a whole number: {value!r}") from None

    def getfloat(self, section: str, key: str, fallback: Any = _NOT_GIVEN, **kwargs: Any) -> float:
        value = self.get(section, key, fallback, **kwargs)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(f"the value of [{section}/{key}] is not a number: {value!r}") from None

    def has_option(self, section: str, key: str) -> bool:
        section, key = section.lower(), key.lower()
        env = f"AIRFLOW__{section.upper()}__{key.upper()}" in os.environ
        return env or (section, key) in DEFAULTS or (section, key) == ("core", "dags_folder")


conf = Configuration()
