"""Canonical, vendor-neutral records and events.

Money is always an integer in the currency's minor unit (cents), as every billing API in scope
sends it. Provider IDs are opaque strings; nothing here holds a secret.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from domain.bounds import Subject, Summary


class Frozen(BaseModel):
    """Every model that crosses Temporal (inputs, results, signals, state). Unknown fields are
    ignored, so a newer webhook service or worker sending an extra field never breaks an older
    worker during a rolling deploy. Models that judge untrusted output (the LLM's reply in
    ``domain/containment.py``) use :class:`Strict`."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Strict(BaseModel):
    """A closed schema: an unknown field is an error (the LLM's reply, the approval signal)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- canonical events (webhooks/ → workflows) ----------------------------------------------------


class PaymentFailed(Frozen):
    """A payment attempt on an invoice failed. A trigger, not the truth: workflows re-fetch."""

    billing: str
    event_id: str
    invoice_id: str
    customer_id: str
    subscription_id: str | None = None
    amount_due: int = 0
    currency: str = "USD"
    decline_code: str | None = None
    occurred_at: datetime
    #: the failed attempt as the event carries it (ID, amount, decline code and message), so the
    #: run's first read skips the payment-attempt read it replaces; None when the event does not
    #: say (Stripe's invoice event, a catch-up, an event recorded before this field): the run
    #: reads the attempts from billing
    payment: Payment | None = None


class InvoicePaid(Frozen):
    billing: str
    event_id: str
    invoice_id: str
    customer_id: str
    occurred_at: datetime


class CaseOpened(Frozen):
    """A support case / ticket was created in the CRM (→ support context)."""

    crm: str
    event_id: str
    case_id: str
    occurred_at: datetime


class DealWon(Frozen):
    """An opportunity / deal reached closed-won (→ quote-to-cash)."""

    crm: str
    event_id: str
    opportunity_id: str
    occurred_at: datetime


class CrmAccountChanged(Frozen):
    """A CRM account / company changed (→ account sync)."""

    crm: str
    event_id: str
    account_id: str
    fields: list[str] = []
    occurred_at: datetime


CrmEvent = CaseOpened | DealWon | CrmAccountChanged


class RiskSignal(Frozen):
    """Something that moves a customer's churn risk, from the events RevBridge already receives
    (→ churn intervention, signal-with-start ``risk_signal`` on ``churn:{billing}:{customer}``)."""

    billing: str
    event_id: str
    customer_id: str
    #: payment_failed | downgrade | usage_drop
    kind: str
    occurred_at: datetime


# --- records read from the billing platform -------------------------------------------------------


class InvoiceStatus(StrEnum):
    PAID = "paid"
    OPEN = "open"  # payment due / not paid
    VOID = "void"
    OTHER = "other"


class Invoice(Frozen):
    id: str
    customer_id: str
    subscription_id: str | None = None
    status: InvoiceStatus
    total: int
    amount_due: int
    currency: str
    issued_at: datetime | None = None

    @property
    def settled(self) -> str | None:
        """Why nobody should be chased for this invoice any more — ``paid``, ``voided`` or
        ``credited`` (open, but credit notes left nothing due) — or None while money is due."""
        if self.status is InvoiceStatus.PAID:
            return "paid"
        if self.status is InvoiceStatus.VOID:
            return "voided"
        if self.status is InvoiceStatus.OPEN and self.amount_due <= 0 < self.total:
            return "credited"
        return None


class Payment(Frozen):
    id: str
    invoice_id: str | None = None
    succeeded: bool
    amount: int
    currency: str
    decline_code: str | None = None
    decline_message: str | None = None
    at: datetime | None = None


#: ``PaymentFailed.payment`` names :class:`Payment`, defined after it
PaymentFailed.model_rebuild()


class BillingCustomer(Frozen):
    id: str
    company: str | None = None
    created_at: datetime | None = None
    mrr: int = 0
    currency: str = "USD"
    #: the billing contact (PII: goes to SMTP only; never logged, in IDs, prompts or audit text)
    email: str | None = None
    #: free-form key/values on the customer (customer-controlled text: data, never instructions)
    metadata: dict[str, str] = {}
    #: the customer's language (ISO 639-1) from the platform's locale field (Chargebee
    #: ``locale``, Stripe ``preferred_locales``, Recurly ``preferred_locale``); None: unknown
    language: str | None = None


class InvoiceContext(Frozen):
    """Everything dunning needs from billing, fetched in one activity (fewer round trips)."""

    invoice: Invoice
    customer: BillingCustomer
    recent_payments: list[Payment] = Field(default_factory=list)
    #: True: ``customer`` is what the invoice says of it (ID, company, contact; Recurly's
    #: AccountMini, on the hot path where the event carried the attempt) and its account —
    #: tenure, language, CRM link — is left to a read after the case (issue 15). Left out of the
    #: serialized form when False, so every other context reads as it did
    customer_later: bool = False

    @model_serializer(mode="wrap")
    def _drop_unset_later(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data = handler(self)
        if isinstance(data, dict) and not self.customer_later:
            data.pop("customer_later", None)
        return data

    @property
    def last_failure(self) -> Payment | None:
        return next((p for p in self.recent_payments if not p.succeeded), None)


# --- records read from / written to the CRM -------------------------------------------------------


class CustomerTier(StrEnum):
    SMB = "SMB"
    MID_MARKET = "Mid-Market"
    ENTERPRISE = "Enterprise"
    STRATEGIC = "Strategic"


class CrmAccount(Frozen):
    id: str
    name: str
    tier: CustomerTier = CustomerTier.SMB
    owner_id: str | None = None
    #: the billing link quote-to-cash writes (Billing_Customer_Id__c / billing_customer_id)
    billing_customer_id: str | None = None
    billing_platform: str | None = None


class CaseSummary(Frozen):
    """An open support case on an account (its text is customer-controlled; bounded: a summary
    for the decision, the full case stays in the CRM)."""

    id: str
    subject: Subject = ""
    description: Summary = ""
    opened_at: datetime | None = None


class CasePriority(StrEnum):
    HIGH = "High"
    MEDIUM = "Medium"
    LOW = "Low"


class CaseDraft(Frozen):
    """A support case to open in the CRM; ``key`` makes the create idempotent."""

    key: str
    account_id: str | None
    subject: str
    description: str
    priority: CasePriority
    invoice_id: str


class CaseRef(Frozen):
    id: str
    number: str | None = None
    created: bool


class TaskDraft(Frozen):
    """A to-do for a person in the CRM (a reminder to approve, a call to make)."""

    key: str
    account_id: str | None
    subject: str
    description: str
    high_priority: bool = False
    due: datetime | None = None
    #: the CRM user to assign it to (the account owner); None: the integration user
    owner_id: str | None = None


class PaymentAttempt(Frozen):
    succeeded: bool
    decline_code: str | None = None
    message: str | None = None
    #: the invoice was already settled (paid, voided, credited) when the retry came: nothing was
    #: charged, and the dunning run is over — a recovery, not a failure
    already: str | None = None


class NoteTarget(StrEnum):
    CUSTOMER = "customer"
    INVOICE = "invoice"


class CatchUpWindow(Frozen):
    """Where a scheduled catch-up looks (the dunning and quote-to-cash catch-ups): from the last
    run's watermark minus ``overlap``, or ``lookback`` on the very first run, or an explicit
    ``since``; asking for ``limit`` records first and more on a full page."""

    #: look back this far on the very first run (no previous watermark)
    lookback: timedelta = timedelta(hours=24)
    #: look back this much before the last watermark (clock skew, late indexing)
    overlap: timedelta = timedelta(minutes=5)
    #: the first page size asked for; grows on a full page up to the use case's maximum
    limit: int = 200
    #: an explicit start (tests, a manual backfill); None: the last run's watermark
    since: datetime | None = None
