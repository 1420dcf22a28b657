"""`airflow.io.storage`, Airflow 2's (deprecated in Airflow 3) spelling of `airflow.sdk.io.attach`."""

from leoflow.objectstorage import attach

__all__ = ["attach"]
