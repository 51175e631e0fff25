"""Issue 15: the hot path's activities over fake connectors — the one-request forms where a
connector has them (``find_account_with_cases``, ``upsert_case(draft, audit)``), the separate
calls where it does not yet, and the email address taken from the context this process read
(no second read of billing). Plain calls: no Temporal, no vendor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from activities.billing import CONTACTS, BillingActivities
from activities.crm import CrmActivities
from activities.messaging import MessagingActivities
from activities.models import (
    AddBillingNoteInput,
    FindAccountInput,
    GetInvoiceContextInput,
    SendEmailInput,
    UpsertCaseInput,
)
from domain.audit import AuditEntry
from domain.models import (
    BillingCustomer,
    CaseDraft,
    CasePriority,
    CaseRef,
    CaseSummary,
    CrmAccount,
    Invoice,
    InvoiceContext,
    InvoiceStatus,
    NoteTarget,
)

ACCOUNT = CrmAccount(id="001acct", name="Globex")
CASES = [CaseSummary(id="500other", subject="Outage")]


def entry(action: str = "create_case") -> AuditEntry:
    return AuditEntry(
        key=f"rb-{uuid.uuid4().hex[:8]}",
        use_case="dunning",
        action=action,
        parameters_hash="h",
        decision="allow",
        outcome="executed",
        summary="s",
        workflow_id="dunning:fake:INV-1",
        run_id="run",
        at=datetime.now(UTC),
    )


def draft() -> CaseDraft:
    return CaseDraft(
        key="rb-case",
        account_id=ACCOUNT.id,
        subject="Payment failed",
        description="d",
        priority=CasePriority.HIGH,
        invoice_id="INV-1",
    )


class OldCrm:
    """A connector before issue 15: separate reads and writes."""

    name = "oldcrm"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        self.calls.append("find_account")
        return ACCOUNT

    def open_cases(self, account_id: str, limit: int = 5) -> list[CaseSummary]:
        self.calls.append("open_cases")
        return CASES

    def upsert_case(self, draft: CaseDraft) -> CaseRef:
        self.calls.append("upsert_case")
        return CaseRef(id="500case", created=True)

    def write_audit(self, entry: AuditEntry) -> str:
        self.calls.append(f"write_audit:{entry.case_id}")
        return "log-1"


class NewCrm(OldCrm):
    """A connector with the one-request forms."""

    def find_account_with_cases(
        self, billing: str, customer_id: str, limit: int = 5
    ) -> tuple[CrmAccount | None, list[CaseSummary]]:
        self.calls.append("find_account_with_cases")
        return ACCOUNT, CASES

    def upsert_case(self, draft: CaseDraft, audit: AuditEntry | None = None) -> CaseRef:  # type: ignore[override]
        self.calls.append(f"upsert_case+{audit.action if audit else 'none'}")
        return CaseRef(id="500case", created=True)


def test_a_connector_with_the_one_request_forms_gets_one_call_each() -> None:
    crm = NewCrm()
    acts = CrmActivities(crm)  # type: ignore[arg-type]
    found = acts.find_crm_account(FindAccountInput(billing="fake", customer_id="cus-1"))
    case = acts.upsert_crm_case(UpsertCaseInput(draft=draft(), audit=entry()))
    assert (found.account, found.open_cases, case.id) == (ACCOUNT, CASES, "500case")
    assert crm.calls == ["find_account_with_cases", "upsert_case+create_case"]


def test_a_connector_without_them_falls_back_to_the_separate_calls() -> None:
    crm = OldCrm()
    acts = CrmActivities(crm)  # type: ignore[arg-type]
    found = acts.find_crm_account(FindAccountInput(billing="fake", customer_id="cus-1"))
    case = acts.upsert_crm_case(UpsertCaseInput(draft=draft(), audit=entry()))
    assert (found.account, found.open_cases, case.id) == (ACCOUNT, CASES, "500case")
    # the entry is written on the case it is about
    assert crm.calls == ["find_account", "open_cases", "upsert_case", "write_audit:500case"]


class FakeBilling:
    name = "fakebill"

    def __init__(self) -> None:
        self.reads = 0
        self.notes: list[str] = []

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        self.reads += 1
        return InvoiceContext(
            invoice=Invoice(
                id=invoice_id,
                customer_id="cus-1",
                status=InvoiceStatus.OPEN,
                total=100,
                amount_due=100,
                currency="USD",
            ),
            customer=BillingCustomer(id="cus-1", email="ap@example.com"),
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        self.notes.append(idempotency_key)
        return f"note-{len(self.notes)}"


class FakeMailer:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, email: Any) -> str:
        self.sent.append(email)
        return f"<{email.key}@revbridge>"


def test_the_email_goes_to_the_address_this_process_read_without_a_second_read() -> None:
    billing, mailer = FakeBilling(), FakeMailer()
    invoice = f"INV-{uuid.uuid4().hex[:8]}"
    ctx = BillingActivities(billing).get_invoice_context(  # type: ignore[arg-type]
        GetInvoiceContextInput(invoice_id=invoice)
    )
    assert ctx.customer.email is None  # the address never enters history
    sent = MessagingActivities(billing, mailer).send_email(  # type: ignore[arg-type]
        SendEmailInput(key="rb-mail", invoice_id=invoice, subject="s", body="b")
    )
    assert sent.sent and mailer.sent[0].to == "ap@example.com"
    assert billing.reads == 1


def test_a_process_that_did_not_read_the_context_reads_billing_once() -> None:
    billing, mailer = FakeBilling(), FakeMailer()
    invoice = f"INV-{uuid.uuid4().hex[:8]}"
    assert CONTACTS.get(invoice) == (False, None)
    messaging = MessagingActivities(billing, mailer)  # type: ignore[arg-type]
    for key in ("rb-1", "rb-2"):
        messaging.send_email(SendEmailInput(key=key, invoice_id=invoice, subject="s", body="b"))
    assert [m.to for m in mailer.sent] == ["ap@example.com"] * 2
    assert billing.reads == 1


def test_a_note_carries_the_earlier_entries_each_under_its_own_key() -> None:
    billing = FakeBilling()
    case_note, email_note = entry("create_case"), entry("send_email")
    result = BillingActivities(billing).add_billing_note(  # type: ignore[arg-type]
        AddBillingNoteInput(
            target=NoteTarget.INVOICE, target_id="INV-1", entry=email_note, more=[case_note]
        )
    )
    assert billing.notes == [case_note.key, email_note.key]
    assert result.id == "note-2"
