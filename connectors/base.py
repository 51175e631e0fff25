"""The two vendor-neutral protocols every connector implements, and the error vocabulary
activities translate into Temporal retry behaviour.

The protocols are shaped by what all four billing platforms (Stripe, Chargebee, Zuora, Recurly)
and both CRMs (Salesforce, HubSpot) can do: notes/comments exist everywhere but Stripe (which has
metadata), idempotency is a header for Stripe/Chargebee/Zuora and lookup-before-create for
Recurly, and CRM creates are made idempotent with a unique external key where the CRM offers one
(Salesforce external-ID upsert; HubSpot tickets and companies by a unique property) and, for
HubSpot notes and tasks — engagements cannot have unique properties — by a marker in the body
found through the record's associations before creating (not search: no index lag). No Temporal
imports here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from domain.audit import AuditEntry
from domain.models import (
    BillingCustomer,
    CaseDraft,
    CaseRef,
    CaseSummary,
    CrmAccount,
    InvoiceContext,
    InvoicePaid,
    NoteTarget,
    PaymentAttempt,
    PaymentFailed,
    TaskDraft,
)
from domain.records import (
    BillingLink,
    CaseDetail,
    ChurnScoreRecord,
    CustomerDraft,
    CustomerPage,
    CustomerSnapshot,
    Opportunity,
    Price,
    SubscriptionDraft,
    SubscriptionRef,
)


class ErrorKind(StrEnum):
    RETRYABLE = "retryable"  # network, timeouts, 5xx: try again with backoff
    RATE_LIMITED = "rate_limited"  # 429 / API allocation: try again after retry_after
    PERMANENT = "permanent"  # 4xx the same request will never fix


class ConnectorError(Exception):
    """A vendor call failed. ``code`` is the vendor's own error code (stable, safe to log)."""

    def __init__(
        self,
        vendor: str,
        kind: ErrorKind,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{vendor}: {message}"[:500])
        self.vendor = vendor
        self.kind = kind
        self.status = status
        self.code = code
        self.retry_after = retry_after


class NotFound(ConnectorError):
    def __init__(self, vendor: str, what: str, status: int | None = 404) -> None:
        super().__init__(
            vendor, ErrorKind.PERMANENT, f"{what} not found", status=status, code="not_found"
        )


@runtime_checkable
class BillingPlatform(Protocol):
    name: str

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        """The invoice, its customer (with MRR) and the latest payment attempts, newest first."""
        ...

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        """Attach an audit note to a customer or invoice; returns the note's ID. Idempotent by key."""
        ...

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        """Collect the invoice now with the payment method on file. A decline is an outcome,
        not an error. Idempotent by key (a retried call does not charge twice)."""
        ...

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        """Give the customer ``amount`` (minor units) of account credit; returns its ID."""
        ...

    # --- quote-to-cash ---------------------------------------------------------------------------

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        """The customer linked to this CRM account (the link quote-to-cash stores on the customer:
        Chargebee ``meta_data``, Stripe ``metadata`` ``crm`` + ``crm_account_id``), or None."""
        ...

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        """Candidates by unique key (exact email) and by company name (case-insensitive
        contains), at most 10, exact-email matches first. The caller does the fuzzy ranking."""
        ...

    def create_customer(self, draft: CustomerDraft) -> BillingCustomer:
        """Create the customer with the CRM link in its metadata. Idempotent by ``draft.key``."""
        ...

    def set_crm_link(
        self, customer_id: str, crm: str, account_id: str | None, idempotency_key: str
    ) -> None:
        """Write (or, with ``account_id=None``, clear) the CRM link on an existing customer."""
        ...

    def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        """Remove a customer quote-to-cash created (compensation). Already gone is success."""
        ...

    def get_price(self, price_id: str) -> Price:
        """A price by ID (Chargebee item price ID; Stripe price ID or lookup key). NotFound if
        the platform has no such price."""
        ...

    def create_subscription(self, draft: SubscriptionDraft) -> SubscriptionRef:
        """Create the subscription (Chargebee ``subscription_for_items``, Stripe subscriptions)
        with the opportunity ID in its metadata. Idempotent by ``draft.key``."""
        ...

    def cancel_subscription(self, subscription_id: str, idempotency_key: str, reason: str) -> str:
        """Cancel now, without proration or credits (compensation, or an end action). Returns
        the resulting status; an already cancelled subscription is success."""
        ...

    # --- churn and support context ------------------------------------------------------------

    def list_customers(self, cursor: str | None = None, limit: int = 100) -> CustomerPage:
        """One page of customers, oldest first (the sweep walks the whole book)."""
        ...

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        """Subscriptions, latest invoices and payments, credit balance, downgrades, usage."""
        ...

    def customer_snapshots(
        self, customer_ids: list[str], invoices: int = 5
    ) -> dict[str, CustomerSnapshot]:
        """``customer_snapshot`` for a page of customers at once (the churn sweep), with the
        vendor's bulk reads where it has them; keyed by customer ID, a deleted customer absent."""
        ...

    def apply_discount(
        self, subscription_id: str, percent: float, months: int, idempotency_key: str
    ) -> str:
        """A retention offer: ``percent`` off the subscription for ``months`` billing months
        (a coupon on the subscription). Returns the coupon / discount ID."""
        ...

    # --- the dunning catch-up (a lost webhook is repaired within one period) -----------------

    def paid_invoices(self, since: datetime, limit: int = 200) -> list[InvoicePaid]:
        """Invoices paid, voided or credited at or after ``since``, oldest first, at most
        ``limit``: the "paid" events a webhook outage may have lost."""
        ...

    def failed_payments(self, since: datetime, limit: int = 200) -> list[PaymentFailed]:
        """Failed payment attempts on invoices at or after ``since``, oldest first, at most
        ``limit``, with the event ID the webhook would have carried where the vendor has one."""
        ...


@runtime_checkable
class CrmSystem(Protocol):
    name: str

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        """The CRM account linked to a billing customer, or None."""
        ...

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        """The account's open support cases, newest first."""
        ...

    def find_account_with_cases(
        self, billing: str, customer_id: str, limit: int = 5
    ) -> tuple[CrmAccount | None, list[CaseSummary]]:
        """``find_account`` and its ``open_cases`` in one request where the CRM allows it
        (Salesforce: one SOQL with a Cases subquery). The hot path's only CRM read."""
        ...

    def upsert_case(self, draft: CaseDraft, audit: AuditEntry | None = None) -> CaseRef:
        """Open (or find again) the case for ``draft.key``: a retried call never opens two.
        With ``audit``, the audit entry is written in the same request where the CRM allows it
        (Salesforce ``/composite``), idempotent by ``audit.key`` as ``write_audit`` is. The
        returned ref comes from the write itself, never from a re-read."""
        ...

    def write_audit(self, entry: AuditEntry) -> str:
        """Record one audit entry on the account; idempotent by ``entry.key``."""
        ...

    def upsert_task(self, draft: TaskDraft) -> str:
        """Open (or find again) a task for a person; idempotent by ``draft.key``."""
        ...

    # --- quote-to-cash ---------------------------------------------------------------------------

    def get_opportunity(self, opportunity_id: str) -> Opportunity:
        """The opportunity / deal with its account (incl. its billing link), contacts and line
        items (product code, quantity, prices, discount). NotFound if it does not exist."""
        ...

    def won_opportunities(self, since: datetime, limit: int = 200) -> list[str]:
        """IDs of opportunities / deals closed-won and modified at or after ``since``, oldest
        first (the catch-up for callouts that never arrived)."""
        ...

    def write_billing_link(self, link: BillingLink) -> None:
        """Write the billing customer / subscription IDs, MRR and status to the account and the
        opportunity (field sets: idempotent). ``None`` IDs clear them (compensation)."""
        ...

    # --- churn and support context ------------------------------------------------------------

    def get_account(self, account_id: str) -> CrmAccount:
        """One account / company with its billing link. NotFound if it does not exist."""
        ...

    def write_churn_score(self, record: ChurnScoreRecord) -> None:
        """Write score, level, reasons and narrative onto the account (Salesforce
        ``Churn_Risk__c``, ``Churn_Level__c``, ``Churn_Reasons__c``; HubSpot ``churn_risk``,
        ``churn_level``, ``churn_reasons``). A field set: idempotent."""
        ...

    def find_accounts_with_cases(
        self, billing: str, customer_ids: list[str], limit: int = 5
    ) -> dict[str, tuple[CrmAccount, list[CaseSummary]]]:
        """A page of customers' accounts with their open cases (the churn sweep's one CRM read
        per page), keyed by billing customer ID; customers without an account are absent. The
        accounts carry the churn score the CRM stores (``domain.churn.ScoredAccount``), so an
        unchanged score is not written again."""
        ...

    def write_churn_scores(self, records: list[ChurnScoreRecord]) -> dict[str, str]:
        """A page of scores in the CRM's bulk write (Salesforce sObject Collections, HubSpot batch
        update), each account on its own; returns the accounts that failed with the CRM's error
        code. Field sets: idempotent."""
        ...

    def get_case(self, case_id: str) -> CaseDetail:
        """A case / ticket and the account it belongs to. NotFound if it does not exist."""
        ...

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        """Put the billing context on the case (Salesforce ``Billing_Context__c``; HubSpot a note
        associated to the ticket, found again by its key marker). Returns the written record's ID;
        a retried call writes nothing new."""
        ...
