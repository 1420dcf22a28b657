"""`airflow.utils.trigger_rule`."""

from leoflow.model import TriggerRule

__all__ = ["TriggerRule"]
