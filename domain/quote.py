"""Quote-to-cash: the workflow's input, result and query shapes (shared with the webhook service,
which starts it, and the CLI, which reads it)."""

from __future__ import annotations

from domain.approvals import ApprovalTiming
from domain.models import Frozen

WORKFLOW_TYPE = "QuoteToCashWorkflow"


class QuoteToCashInput(Frozen):
    crm: str
    billing: str
    opportunity_id: str
    #: event (the CRM's callout / webhook) | catch_up (the periodic query) | manual (the CLI)
    trigger: str = "event"
    approval: ApprovalTiming = ApprovalTiming()
    started_by: str | None = None


class QuoteToCashResult(Frozen):
    #: live | rolled_back | not_won
    outcome: str
    opportunity_id: str
    customer_id: str | None = None
    subscription_id: str | None = None
    reason: str = ""
    audit_ids: list[str] = []
