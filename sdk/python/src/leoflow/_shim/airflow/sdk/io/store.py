"""`airflow.sdk.io.store`."""

from leoflow.objectstorage import ObjectStore, attach

__all__ = ["ObjectStore", "attach"]
