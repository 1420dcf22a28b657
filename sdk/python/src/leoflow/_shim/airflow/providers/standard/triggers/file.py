"""`airflow.providers.standard.triggers.file`."""

from leoflow.errors import UnsupportedConstruct
from leoflow.triggers import FileTrigger


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.providers.standard.triggers.file.{name}", "it needs a triggerer, which Leoflow does not run yet (it runs DateTimeTrigger and TimeDeltaTrigger); wait for the deletion in a sensor's poke")


__all__ = ["FileTrigger"]
