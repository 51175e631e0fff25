"""In-memory billing and CRM behind the real protocols, for workflow tests that must not depend
on any vendor: they record every call, so "read-only toward billing" is checked, not assumed."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from connectors.base import ConnectorError, ErrorKind, NotFound
from domain.audit import AuditEntry
from domain.models import BillingCustomer, CrmAccount, Invoice, InvoiceStatus, Payment
from domain.records import CaseDetail, CustomerSnapshot, Subscription

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def linked_snapshot(customer_id: str, invoice_id: str) -> CustomerSnapshot:
    return CustomerSnapshot(
        customer=BillingCustomer(id=customer_id, mrr=24_500),
        subscriptions=[
            Subscription(
                id=f"sub-{customer_id}",
                customer_id=customer_id,
                status="active",
                plan="team-monthly",
                quantity=5,
                mrr=24_500,
            )
        ],
        invoices=[
            Invoice(
                id=invoice_id,
                customer_id=customer_id,
                status=InvoiceStatus.OPEN,
                total=24_500,
                amount_due=24_500,
                currency="USD",
                issued_at=T0,
            ),
            Invoice(
                id=f"{invoice_id}-prev",
                customer_id=customer_id,
                status=InvoiceStatus.PAID,
                total=24_500,
                amount_due=0,
                currency="USD",
                issued_at=T0 - timedelta(days=30),
            ),
        ],
        payments=[
            Payment(
                id=f"pay-{invoice_id}",
                invoice_id=invoice_id,
                succeeded=False,
                amount=24_500,
                currency="USD",
                decline_code="expired_card",
                at=T0,
            )
        ],
    )


@dataclass
class FakeBilling:
    name: str = "fakebill"
    snapshots: dict[str, CustomerSnapshot] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        self.calls.append(f"customer_snapshot:{customer_id}")
        if customer_id not in self.snapshots:
            raise NotFound(self.name, f"customer {customer_id}")
        return self.snapshots[customer_id]

    def __getattr__(self, method: str) -> object:
        # Any other protocol method (all of the writes among them) is a call support context
        # must never make: record it and fail loudly.
        if method.startswith("_"):
            raise AttributeError(method)

        def forbidden(*args: object, **kwargs: object) -> object:
            self.calls.append(method)
            raise AssertionError(f"support context called billing.{method}")

        return forbidden


@dataclass
class FakeCrm:
    name: str = "fakecrm"
    cases: dict[str, CaseDetail] = field(default_factory=dict)
    accounts: dict[str, CrmAccount] = field(default_factory=dict)
    #: idempotency key → (note ID, case ID, text)
    notes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    annotate_calls: int = 0
    #: commit the next N annotations, then fail as if the answer was lost
    lose_answers: int = 0
    audits: dict[str, AuditEntry] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get_case(self, case_id: str) -> CaseDetail:
        if case_id not in self.cases:
            raise NotFound(self.name, f"case {case_id}")
        return self.cases[case_id]

    def get_account(self, account_id: str) -> CrmAccount:
        if account_id not in self.accounts:
            raise NotFound(self.name, f"account {account_id}")
        return self.accounts[account_id]

    def annotate_case(self, case_id: str, text: str, idempotency_key: str) -> str:
        with self.lock:
            self.annotate_calls += 1
            if idempotency_key not in self.notes:
                self.notes[idempotency_key] = (f"note-{len(self.notes) + 1}", case_id, text)
            if self.lose_answers:
                self.lose_answers -= 1
                raise ConnectorError(self.name, ErrorKind.RETRYABLE, "gateway timeout", status=504)
            return self.notes[idempotency_key][0]

    def write_audit(self, entry: AuditEntry) -> str:
        with self.lock:
            self.audits.setdefault(entry.key, entry)
            return f"log-{entry.key[:8]}"

    def upsert_task(self, draft: object) -> str:
        return "task-1"

    def add_case(self, case_id: str, account: CrmAccount | None) -> None:
        if account is not None:
            self.accounts[account.id] = account
        self.cases[case_id] = CaseDetail(
            id=case_id,
            number=f"N-{case_id}",
            account_id=account.id if account else None,
            subject="Why was my card declined?",
        )
