"""`airflow.io.path`, Airflow 2's (deprecated in Airflow 3) spelling of `airflow.sdk.ObjectStoragePath`."""

from leoflow.objectstorage import ObjectStoragePath

__all__ = ["ObjectStoragePath"]
