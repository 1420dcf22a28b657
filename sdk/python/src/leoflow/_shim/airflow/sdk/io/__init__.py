"""`airflow.sdk.io`: object storage paths and stores (`leoflow.objectstorage`)."""

from leoflow.objectstorage import ObjectStoragePath, attach, get_fs, has_fs

Properties = dict[str, str]

__all__ = ["ObjectStoragePath", "Properties", "attach", "get_fs", "has_fs"]
