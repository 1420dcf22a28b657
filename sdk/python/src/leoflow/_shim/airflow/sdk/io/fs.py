"""`airflow.sdk.io.fs`."""

from leoflow.objectstorage import get_fs, has_fs

__all__ = ["get_fs", "has_fs"]
