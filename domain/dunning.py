"""The dunning workflow's inputs, outputs and query results: shared by the workflow, the webhook
service (which starts it) and the CLI (which reads it)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from domain.approvals import ApprovalTiming
from domain.decisions import DunningAssessment
from domain.models import (
    CaseRef,
    CatchUpWindow,
    CrmAccount,
    Frozen,
    InvoiceContext,
    InvoicePaid,
    PaymentFailed,
)
from domain.playbook import SegmentPlaybook

WORKFLOW_TYPE = "DunningWorkflow"


class DunningStatus(Frozen):
    stage: str
    invoice_id: str
    customer_id: str | None = None
    case_id: str | None = None
    case_number: str | None = None
    failure_class: str | None = None
    priority: str | None = None
    failures_seen: int = 0
    audit_ids: list[str] = []
    #: one line per governed action: "apply_credit: needs_approval → executed (alice@…)"
    actions: list[str] = []
    outcome: str | None = None
    #: the playbook's segment, and how far along its schedule the run is
    segment: str | None = None
    reminders_sent: int = 0
    reminders_total: int = 0
    next_step_at: datetime | None = None
    #: the open support case that pauses reminders, if one does
    paused_by_case: str | None = None
    #: what recovered the payment ("payment retry on day 3", "after reminder 2 (day 3)")
    attribution: str | None = None


class DunningPhase(StrEnum):
    """Where a continuation picks up."""

    #: pre-playbook runs: the payment retry has not run yet / it has (or there is none)
    RETRY_DUE = "retry_due"
    PAYMENT_WAIT = "payment_wait"
    #: the segment's playbook, at ``step``
    PLAYBOOK = "playbook"


class DunningOutcome(StrEnum):
    RECOVERED = "recovered"
    WRITTEN_OFF = "written_off"
    CANCELLED = "cancelled"
    ALREADY_PAID = "already_paid"
    UNKNOWN_INVOICE = "unknown_invoice"
    #: runs started before the playbook
    UNRESOLVED = "unresolved"


class DunningState(BaseModel):
    """Everything a dunning run knows, in one object: the workflow works on it, a continuation
    receives it whole (``DunningInput.carry``), nothing is re-fetched or re-done.

    The first fields are those of the carry model of earlier releases, so their continued-as-new
    inputs (running workflows, committed histories) load as this state."""

    model_config = ConfigDict(extra="ignore")

    phase: DunningPhase = DunningPhase.PLAYBOOK
    #: set on a continuation: the end of the wait that was handed over
    deadline: datetime | None = None
    context: InvoiceContext | None = None
    account: CrmAccount | None = None
    assessment: DunningAssessment | None = None
    case: CaseRef | None = None
    status: DunningStatus
    failures: list[PaymentFailed] = []
    seen_events: list[str] = []
    playbook: SegmentPlaybook | None = None
    started_at: datetime | None = None
    step: int = 0
    paused: timedelta = timedelta(0)
    reminders_sent: int = 0
    last_step: str | None = None
    #: the invoice-paid event, once it came
    paid: InvoicePaid | None = None
    #: a playbook retry that collected the invoice (no need to wait for the paid event)
    recovered_by: str | None = None
    #: scopes idempotency keys of actions a playbook may repeat on several days
    key_scope: str = ""

    @property
    def settled(self) -> bool:
        return self.paid is not None or self.recovered_by is not None


#: the name earlier releases gave the state a continuation carries
DunningCarry = DunningState


class DunningInput(Frozen):
    billing: str
    invoice_id: str
    #: how long to wait for the invoice to be paid before closing as unresolved
    payment_wait: timedelta = timedelta(days=14)
    #: when a recommended payment retry runs if the invoice is still unpaid
    retry_after: timedelta = timedelta(days=3)
    approval: ApprovalTiming = ApprovalTiming()
    #: who started this run by hand (``revbridge start dunning``); None when an event did
    started_by: str | None = None
    #: continue-as-new once the history reaches this many events (or Temporal suggests it)
    history_limit: int = 10_000
    #: set on a continuation: the state the previous run carried over
    carry: DunningCarry | None = None


class DunningResult(Frozen):
    #: recovered | written_off | cancelled | already_paid | unknown_invoice (unresolved: runs
    #: started before the playbook)
    outcome: DunningOutcome
    invoice_id: str
    attribution: str | None = None
    case_id: str | None = None
    audit_ids: list[str] = []


# --- the billing-side catch-up (workflows/dunning/catch_up.py) -------------------------------------

CATCH_UP_WORKFLOW_TYPE = "DunningCatchUpWorkflow"
#: the most invoices one catch-up asks billing for, per kind (paid, failed)
CATCH_UP_MAX_LIMIT = 2_000


class DunningCatchUpInput(CatchUpWindow):
    """The dunning catch-up's window (invoices settled and payments failed in it)."""


class BillingChangesInput(Frozen):
    since: datetime
    limit: int = 200


class BillingChanges(Frozen):
    """What billing says happened since the watermark, as the webhooks would have said it."""

    billing: str
    #: invoices paid, voided or credited since the watermark (oldest first)
    paid: list[InvoicePaid] = []
    #: failed payments since the watermark (the vendor's event ID where it has one)
    failed: list[PaymentFailed] = []


class CatchUpRunsInput(Frozen):
    billing: str
    paid: list[InvoicePaid] = []
    failed: list[PaymentFailed] = []


class CatchUpRuns(Frozen):
    #: dunning runs started for a failed payment that had none
    started: list[str] = []
    #: running dunning runs a failure joined (deduplicated by event ID) or a payment settled
    signalled: list[str] = []
    #: runs that had closed already (a finished dunning run is never doubled)
    closed: list[str] = []


class DunningCatchUpResult(Frozen):
    #: where the next run starts (this run's start time)
    watermark: datetime
    since: datetime
    paid: list[str] = []
    failed: list[str] = []
    runs: CatchUpRuns = CatchUpRuns()
    truncated: bool = False
