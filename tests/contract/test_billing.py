"""The BillingPlatform contract: every implementation, against its emulator, through the official
SDK it uses. Reads, idempotent writes (a repeat and a committed-then-timed-out retry are one
effect), errors classified the way Temporal retries them, and paging."""

from __future__ import annotations

import pytest

from activities.errors import to_application_error
from connectors.base import ConnectorError, ErrorKind, NotFound
from domain.models import InvoiceStatus, NoteTarget
from tests.contract.conftest import CUSTOMER, OTHERS, TRANSIENT, TRANSIENT_IDS, BillingTarget

CREDIT = 2_500


def test_the_invoice_is_read_with_its_customer_and_the_failed_attempt(
    billing: BillingTarget,
) -> None:
    ids = billing.ids()
    ctx = billing.connector.get_invoice_context(ids["invoice"])
    assert (ctx.invoice.id, ctx.invoice.customer_id) == (ids["invoice"], ids["customer"])
    assert ctx.invoice.status is InvoiceStatus.OPEN
    assert ctx.invoice.amount_due == CUSTOMER.invoice_total
    assert (ctx.customer.id, ctx.customer.mrr) == (ids["customer"], CUSTOMER.invoice_total)
    assert ctx.last_failure is not None
    assert ctx.last_failure.decline_code == "insufficient_funds"


def test_the_customer_snapshot_has_its_subscription_and_invoices(billing: BillingTarget) -> None:
    ids = billing.ids()
    snap = billing.connector.customer_snapshot(ids["customer"])
    assert snap.customer.id == ids["customer"]
    assert ids["subscription"] in {s.id for s in snap.subscriptions}
    assert ids["invoice"] in {i.id for i in snap.invoices}


def test_a_missing_invoice_is_a_permanent_not_found(billing: BillingTarget) -> None:
    with pytest.raises(NotFound) as err:
        billing.connector.get_invoice_context(f"INV-nope-{billing.suffix}")
    assert err.value.kind is ErrorKind.PERMANENT
    failure = to_application_error(err.value)
    assert failure.non_retryable and (failure.type or "").endswith(".not_found")


def test_a_note_written_twice_with_one_key_is_one_note(billing: BillingTarget) -> None:
    invoice = billing.ids()["invoice"]
    text = f"contract note {billing.suffix}"
    key = f"rb-contract-note-{billing.suffix}"
    first = billing.connector.add_note(NoteTarget.INVOICE, invoice, text, idempotency_key=key)
    again = billing.connector.add_note(NoteTarget.INVOICE, invoice, text, idempotency_key=key)
    assert first == again
    assert billing.connector.list_notes(NoteTarget.INVOICE, invoice).count(text) == 1


def test_a_credit_applied_twice_with_one_key_is_one_credit(billing: BillingTarget) -> None:
    customer = billing.ids(OTHERS[0])["customer"]
    before = billing.spec.credits(billing.connector, customer)
    key = f"rb-contract-credit-{billing.suffix}"
    args = (customer, CREDIT, "USD", "contract: courtesy credit")
    first = billing.connector.apply_credit(*args, idempotency_key=key)
    again = billing.connector.apply_credit(*args, idempotency_key=key)
    assert first == again
    assert billing.spec.credits(billing.connector, customer) == before + CREDIT


def test_a_credit_committed_then_timed_out_is_one_credit_after_the_retry(
    billing: BillingTarget,
) -> None:
    customer = billing.ids(OTHERS[1])["customer"]
    before = billing.spec.credits(billing.connector, customer)
    key = f"rb-contract-timeout-{billing.suffix}"
    args = (customer, CREDIT, "USD", "contract: courtesy credit")
    # the vendor commits the credit, then the answer never arrives within the client's timeout
    billing.fault(billing.spec.credit_write, kind="commit_then_timeout", delay_s=3, times=1)
    with pytest.raises(ConnectorError) as err:
        billing.connector.apply_credit(*args, idempotency_key=key)
    assert err.value.kind is ErrorKind.RETRYABLE
    billing.connector.apply_credit(*args, idempotency_key=key)  # Temporal's retry, same key
    assert billing.spec.credits(billing.connector, customer) == before + CREDIT


@pytest.mark.parametrize(("fault", "kind"), TRANSIENT, ids=TRANSIENT_IDS)
def test_errors_are_classified_the_way_temporal_retries_them(
    billing: BillingTarget, fault: dict | None, kind: ErrorKind
) -> None:
    billing.fault(billing.spec.read, **(fault or billing.spec.rate_limit), times=1)
    with pytest.raises(ConnectorError) as err:
        billing.connector.get_invoice_context(billing.ids()["invoice"])
    assert err.value.kind is kind
    failure = to_application_error(err.value)
    assert not failure.non_retryable
    if kind is ErrorKind.RATE_LIMITED:
        assert err.value.retry_after == billing.spec.rate_limit_retry_after
        assert failure.next_retry_delay is not None
    # the fault was spent: the same read now succeeds
    assert billing.connector.get_invoice_context(billing.ids()["invoice"]).invoice.id


def test_list_customers_pages_through_the_whole_book_once(billing: BillingTarget) -> None:
    seen: list[str] = []
    pages, cursor = 0, None
    while True:
        page = billing.connector.list_customers(cursor=cursor, limit=1)
        pages += 1
        assert len(page.customers) <= 1
        seen.extend(c.id for c in page.customers)
        cursor = page.next_cursor
        if cursor is None or pages > 10:
            break
    expected = {billing.ids(c)["customer"] for c in (CUSTOMER, *OTHERS)}
    assert sorted(seen) == sorted(expected)
    assert pages >= len(expected)
