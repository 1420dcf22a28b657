"""`airflow.sdk.io.path`."""

from leoflow.objectstorage import ObjectStoragePath

__all__ = ["ObjectStoragePath"]
