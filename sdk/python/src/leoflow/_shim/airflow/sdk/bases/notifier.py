"""`airflow.sdk.bases.notifier`."""

from leoflow.hitl import BaseNotifier

__all__ = ["BaseNotifier"]
