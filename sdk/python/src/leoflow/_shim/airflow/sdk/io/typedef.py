"""`airflow.sdk.io.typedef`."""

Properties = dict[str, str]

__all__ = ["Properties"]
