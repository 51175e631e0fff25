"""One input and one output model per activity (fields are added with defaults, never removed)."""

from __future__ import annotations

from datetime import datetime

from domain.audit import AuditEntry
from domain.containment import LlmUsage
from domain.models import (
    CaseDraft,
    CaseSummary,
    CrmAccount,
    Frozen,
    InvoiceContext,
    NoteTarget,
    Payment,
    RiskSignal,
    TaskDraft,
)


class GetInvoiceContextInput(Frozen):
    invoice_id: str
    #: the failed attempt the event carried (``PaymentFailed.payment``): the read skips the
    #: payment attempts and the context lists this one (issue 15); None: read them
    failure: Payment | None = None


class GetBillingCustomerInput(Frozen):
    """The billing customer of an invoice whose context left it for after the case
    (``InvoiceContext.customer_later``: issue 15)."""

    invoice_id: str
    customer_id: str


class FindAccountInput(Frozen):
    billing: str
    customer_id: str


class FindAccountResult(Frozen):
    account: CrmAccount | None
    #: the account's open support cases (context for the reasoner; customer-controlled text)
    open_cases: list[CaseSummary] = []
    #: the CRM writes several audit entries in one request (``write_audits``: HubSpot's notes
    #: batch), so a case's entry may ride with the next one (``UpsertCaseInput.audit_rides``)
    audits_batch: bool = False


class AssessFailureInput(Frozen):
    context: InvoiceContext
    account: CrmAccount | None
    now: datetime
    open_cases: list[CaseSummary] = []
    #: LLM usage this workflow has had so far (the per-workflow budget applies to it)
    usage_so_far: LlmUsage = LlmUsage()


class UpsertCaseInput(Frozen):
    draft: CaseDraft
    #: the case's own audit entry, written with the case in one request where the CRM allows it
    #: (``CrmSystem.upsert_case(draft, audit)``); idempotent by ``audit.key``
    audit: AuditEntry | None = None
    #: ``audit`` rides with the run's next CRM audit entry where the CRM batches its audit notes
    #: (``write_audits``: HubSpot), so the case is written alone; ignored elsewhere (Salesforce
    #: writes it with the case in one /composite). False: histories from before it
    audit_rides: bool = False


class WriteAuditInput(Frozen):
    entry: AuditEntry
    #: earlier entries whose CRM side rode (the case's, ``UpsertCaseInput.audit_rides``), written
    #: with ``entry`` in one request where the CRM batches audit notes; ignored elsewhere (they
    #: went with their write)
    more: list[AuditEntry] = []
    #: ``entry`` rode too (a flush before a durable wait): where the CRM does not batch, it went
    #: with its write and nothing is written (the result's ID is empty)
    entry_rides: bool = False


class AddBillingNoteInput(Frozen):
    target: NoteTarget
    target_id: str
    entry: AuditEntry
    #: earlier entries for the same record written in the same activity (one note each, each
    #: idempotent by its own key): the hot path's case note rides with the next audit entry
    more: list[AuditEntry] = []


class WriteResult(Frozen):
    id: str


class RetryPaymentInput(Frozen):
    invoice_id: str
    idempotency_key: str


class ApplyCreditInput(Frozen):
    customer_id: str
    amount: int
    currency: str
    reason: str
    idempotency_key: str


class UpsertTaskInput(Frozen):
    draft: TaskDraft


class PlaybookInput(Frozen):
    tier: str


class DraftReminderInput(Frozen):
    invoice_id: str
    company: str | None
    amount_due: int
    currency: str
    failure_class: str
    reminder: int
    reminders: int
    tone: str
    days_left: int


class SendEmailInput(Frozen):
    """The recipient is looked up inside the activity (billing contact of the invoice's customer),
    so no address is ever in workflow history."""

    key: str
    invoice_id: str
    subject: str
    body: str


class SendEmailResult(Frozen):
    sent: bool
    message_id: str | None = None
    #: why nothing was sent (no relay configured, no contact address)
    reason: str = ""


class CancelSubscriptionInput(Frozen):
    subscription_id: str
    idempotency_key: str
    reason: str


#: the churn intervention's signal that carries what a dunning run already read (a RiskSignal
#: plus the CRM account and its open cases), so its first score does not read the CRM again
SIGNAL_RISK_CONTEXT = "risk_signal_with_context"


class RiskContext(Frozen):
    """A failed payment as a churn signal, with what the dunning run read seconds before."""

    signal: RiskSignal
    #: whether ``account`` / ``open_cases`` were read (False: the intervention reads them itself)
    has_crm: bool = False
    account: CrmAccount | None = None
    open_cases: list[CaseSummary] = []


class SignalChurnInput(Frozen):
    """``dunning_signal_churn``: signal-with-start the customer's churn intervention."""

    billing: str
    customer_id: str
    risks: list[RiskContext]


class SignalChurnResult(Frozen):
    workflow_id: str
    #: accepted (started or signalled) | closed (a finished intervention is never restarted) |
    #: invalid_customer_id (no workflow ID can hold it: nothing started)
    status: str
