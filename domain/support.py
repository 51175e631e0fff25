"""Support context (customer 360): the workflow's input and result (shared with the webhook
service, which starts it)."""

from __future__ import annotations

from domain.models import Frozen

WORKFLOW_TYPE = "SupportContextWorkflow"


class SupportContextInput(Frozen):
    crm: str
    billing: str
    case_id: str


class SupportContextResult(Frozen):
    #: summarized | no_billing_account | case_not_found
    outcome: str
    case_id: str
    customer_id: str | None = None
    note_id: str | None = None
