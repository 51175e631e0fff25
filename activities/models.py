"""One input and one output model per activity (fields are added with defaults, never removed)."""

from __future__ import annotations

from datetime import datetime

from domain.audit import AuditEntry
from domain.models import CaseDraft, CrmAccount, Frozen, InvoiceContext, NoteTarget, TaskDraft


class GetInvoiceContextInput(Frozen):
    invoice_id: str


class FindAccountInput(Frozen):
    billing: str
    customer_id: str


class FindAccountResult(Frozen):
    account: CrmAccount | None


class AssessFailureInput(Frozen):
    context: InvoiceContext
    account: CrmAccount | None
    now: datetime


class UpsertCaseInput(Frozen):
    draft: CaseDraft


class WriteAuditInput(Frozen):
    entry: AuditEntry


class AddBillingNoteInput(Frozen):
    target: NoteTarget
    target_id: str
    entry: AuditEntry


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
