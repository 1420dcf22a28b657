"""`airflow.providers.standard.operators.hitl`."""

from leoflow.hitl import ApprovalOperator, HITLBranchOperator, HITLEntryOperator, HITLOperator

__all__ = ["ApprovalOperator", "HITLBranchOperator", "HITLEntryOperator", "HITLOperator"]
