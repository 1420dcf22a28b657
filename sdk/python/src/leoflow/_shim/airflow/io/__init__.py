"""`airflow.io`, Airflow 2's (deprecated in Airflow 3) spelling of `airflow.sdk.io`."""

from leoflow.objectstorage import attach, get_fs, has_fs

Properties = dict[str, str]

__all__ = ["Properties", "attach", "get_fs", "has_fs"]
