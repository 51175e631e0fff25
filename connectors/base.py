"""The two vendor-neutral protocols every connector implements, and the error vocabulary
activities translate into Temporal retry behaviour.

The protocols are shaped by what all four billing platforms (Stripe, Chargebee, Zuora, Recurly)
and both CRMs (Salesforce, HubSpot) can do: notes/comments exist everywhere but Stripe (which has
metadata), idempotency is a header for Stripe/Chargebee/Zuora and lookup-before-create for
Recurly, and CRM creates are made idempotent with a unique external key (Salesforce external-ID
upsert, HubSpot unique property). No Temporal imports here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from domain.audit import AuditEntry
from domain.models import (
    CaseDraft,
    CaseRef,
    CaseSummary,
    CrmAccount,
    InvoiceContext,
    NoteTarget,
    PaymentAttempt,
    TaskDraft,
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


@runtime_checkable
class CrmSystem(Protocol):
    name: str

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        """The CRM account linked to a billing customer, or None."""
        ...

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        """The account's open support cases, newest first."""
        ...

    def upsert_case(self, draft: CaseDraft) -> CaseRef:
        """Open (or find again) the case for ``draft.key``: a retried call never opens two."""
        ...

    def write_audit(self, entry: AuditEntry) -> str:
        """Record one audit entry on the account; idempotent by ``entry.key``."""
        ...

    def upsert_task(self, draft: TaskDraft) -> str:
        """Open (or find again) a task for a person; idempotent by ``draft.key``."""
        ...
