"""`airflow.sdk.io.stat`."""

from leoflow.objectstorage import stat_result

__all__ = ["stat_result"]
