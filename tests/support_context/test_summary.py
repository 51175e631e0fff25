"""The pure summary a case gets: cites IDs and amounts, no PII, bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.models import BillingCustomer, CrmAccount, Invoice, InvoiceStatus, Payment
from domain.records import CustomerSnapshot, Subscription
from domain.support import (
    MAX_NOTE_CHARS,
    NO_BILLING_ACCOUNT,
    OpenDunning,
    billing_link,
    money,
    no_billing_account_note,
    summarize,
    unpaid_invoice_ids,
)

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def snapshot(invoices: int = 2, payments: int = 2, **extra: object) -> CustomerSnapshot:
    return CustomerSnapshot(
        customer=BillingCustomer(
            id="cus_42",
            company="Northwind Analytics",
            mrr=24_500,
            metadata={"contact": "jane.doe@northwind.example", "note": "ignore previous"},
        ),
        subscriptions=[
            Subscription(
                id="sub_42",
                customer_id="cus_42",
                status="active",
                plan="team-monthly",
                quantity=5,
                mrr=24_500,
                current_term_end=T0 + timedelta(days=20),
            )
        ],
        invoices=[
            Invoice(
                id=f"INV-{n}",
                customer_id="cus_42",
                status=InvoiceStatus.OPEN if n == 0 else InvoiceStatus.PAID,
                total=24_500,
                amount_due=24_500 if n == 0 else 0,
                currency="USD",
                issued_at=T0 - timedelta(days=30 * n),
            )
            for n in range(invoices)
        ],
        payments=[
            Payment(
                id=f"pay_{n}",
                invoice_id=f"INV-{n}",
                succeeded=n != 0,
                amount=24_500,
                currency="USD",
                decline_code="expired_card" if n == 0 else None,
                decline_message="Card 4242 of jane.doe@northwind.example expired",
                at=T0 - timedelta(days=30 * n),
            )
            for n in range(payments)
        ],
        **extra,  # type: ignore[arg-type]
    )


def test_cites_invoices_payments_amounts_and_open_dunning() -> None:
    dunning = OpenDunning(
        workflow_id="dunning:chargebee:INV-0",
        invoice_id="INV-0",
        started_at=T0,
        stage="waiting for payment",
        case_number="00001001",
    )
    text = summarize(
        snapshot(credit_balance=1_200, usage_30d=1_100, usage_prev_30d=1_000),
        [dunning],
        "chargebee",
        as_of=T0,
        workflow_id="case:salesforce:500X",
    )
    assert text.startswith(
        "Billing context (chargebee customer cus_42, as of 2025-03-01 12:00 UTC)"
    )
    assert "Plan: team-monthly × 5 (active), subscription sub_42, MRR 245.00 USD" in text
    assert "Payment status: 1 unpaid invoice(s), 245.00 USD due (INV-0)." in text
    assert "Last payment: pay_0 failed (expired_card), 245.00 USD on 2025-03-01." in text
    assert (
        "Open dunning: invoice INV-0 since 2025-03-01 (waiting for payment, dunning case "
        "00001001), workflow dunning:chargebee:INV-0." in text
    )
    assert "- INV-1: 245.00 USD, paid, issued 2025-01-30" in text
    assert "- pay_1: 245.00 USD succeeded for INV-1, 2025-01-30" in text
    assert "Credits: 12.00 USD account credit." in text
    assert "Usage: 1,100 in the last 30 days (+10% vs the 30 days before)." in text
    assert text.endswith(
        "Written by RevBridge workflow case:salesforce:500X; read-only: nothing was changed in billing."
    )


def test_no_pii_and_no_customer_controlled_text() -> None:
    text = summarize(snapshot(), [], "stripe")
    assert "@" not in text
    assert "jane" not in text.lower()
    assert "ignore previous" not in text
    assert "Northwind" not in text  # the company name is the CRM's business, not billing's
    assert "Open dunning: none." in text


def test_bounded_however_long_the_history() -> None:
    big = snapshot(invoices=200, payments=200).model_copy(
        update={
            "subscriptions": [
                Subscription(id=f"sub_{n}" + "x" * 400, customer_id="cus_42", status="active")
                for n in range(50)
            ]
        }
    )
    text = summarize(big, [], "chargebee", workflow_id="case:hubspot:1")
    assert len(text) <= MAX_NOTE_CHARS
    assert text.count("\n- INV-") == 5  # only the latest invoices are cited
    assert "(+47 more subscriptions)" in text
    assert text.endswith("nothing was changed in billing.")


def test_empty_customer_reads_sensibly() -> None:
    empty = CustomerSnapshot(customer=BillingCustomer(id="cus_new"))
    text = summarize(empty, [], "stripe")
    assert "Plan: no subscription." in text
    assert "Payment status: no invoices yet." in text
    assert "Usage: not metered." in text
    assert "Latest invoices" not in text


def test_money_and_unpaid() -> None:
    assert money(123_456, "usd") == "1,234.56 USD"
    assert money(5_000, "JPY") == "5,000 JPY"
    assert unpaid_invoice_ids(snapshot(invoices=3)) == ["INV-0"]


def test_billing_link_only_for_this_platform() -> None:
    linked = CrmAccount(id="001", name="A", billing_customer_id="cus_1", billing_platform="stripe")
    assert billing_link(linked, "stripe") == "cus_1"
    assert billing_link(linked, "chargebee") is None
    assert (
        billing_link(linked.model_copy(update={"billing_platform": None}), "chargebee") == "cus_1"
    )
    assert billing_link(CrmAccount(id="002", name="B"), "stripe") is None
    assert billing_link(None, "stripe") is None


def test_no_billing_account_note_is_short() -> None:
    text = no_billing_account_note("account 001 has no stripe customer", "case:salesforce:500")
    assert text.startswith(f"{NO_BILLING_ACCOUNT}: account 001 has no stripe customer.")
    assert len(text.splitlines()) == 2
