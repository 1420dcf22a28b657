"""Airflow's import paths, mapped onto Leoflow's SDK for parsing DAG files.

Only what Leoflow supports is here; importing any other `airflow.*` module or name raises an
error naming it, so a DAG file never silently loses a construct.
"""

import sys
from importlib.abc import MetaPathFinder

from leoflow import DAG
from leoflow.errors import UnsupportedConstruct


class _UnsupportedAirflowModules(MetaPathFinder):
    """Last on the import path: any `airflow.*` module the shim lacks is unsupported."""

    def find_spec(self, fullname, path, target=None):  # type: ignore[no-untyped-def]
        if fullname.startswith("airflow."):
            raise UnsupportedConstruct(
                f"module {fullname}",
                "Leoflow provides airflow.sdk and, of the standard provider, the Bash, Python and Empty "
                "operators, the branching operators and the sensors docs/authoring.md lists",
            )
        return None


if not any(isinstance(f, _UnsupportedAirflowModules) for f in sys.meta_path):
    sys.meta_path.append(_UnsupportedAirflowModules())


def __getattr__(name: str):  # type: ignore[no-untyped-def]
    if name.startswith("__"):
        raise AttributeError(name)
    raise UnsupportedConstruct(f"airflow.{name}", "import from airflow.sdk instead")


__all__ = ["DAG"]
