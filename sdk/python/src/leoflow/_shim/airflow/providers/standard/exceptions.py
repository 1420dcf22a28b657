"""`airflow.providers.standard.exceptions` (the human-in-the-loop operators' errors)."""

from leoflow.hitl import HITLRejectException, HITLTimeoutError, HITLTriggerEventError

__all__ = ["HITLRejectException", "HITLTimeoutError", "HITLTriggerEventError"]
