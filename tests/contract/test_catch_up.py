"""The BillingPlatform contract for issue 13, harm 1 (no customer dunned for a paid invoice), on
every implementation against its emulator through its official SDK:

- the catch-up's two lists: failed payments and paid invoices since a watermark, each as the
  canonical event the webhook would have delivered;
- a payment retry on an invoice paid meanwhile (the "paid" event lost) is a recovery through the
  retry activity, never a permanent error. Before the fix Chargebee answered the collect with
  ``invalid_state_for_request`` and Stripe with ``invoice_already_paid``: the activity failed
  the dunning run.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from activities.billing import BillingActivities
from activities.models import RetryPaymentInput
from tests.contract.conftest import CUSTOMER, BillingTarget


def test_failed_payments_then_the_paid_invoice_and_a_retry_on_it_is_a_recovery(
    billing: BillingTarget,
) -> None:
    ids = billing.ids()  # the seeded invoice whose card declined
    since = datetime.now(UTC) - timedelta(hours=1)
    later = datetime.now(UTC) + timedelta(hours=1)

    failed = billing.connector.failed_payments(since)
    mine = [f for f in failed if f.invoice_id == ids["invoice"]]
    assert mine, f"the declined invoice is not among {[f.invoice_id for f in failed]}"
    assert (mine[0].billing, mine[0].customer_id) == (billing.spec.name, ids["customer"])
    assert mine[0].event_id
    assert billing.connector.failed_payments(later) == []
    assert ids["invoice"] not in {p.invoice_id for p in billing.connector.paid_invoices(since)}

    billing.driver.pay(ids["invoice"], CUSTOMER.invoice_total)  # out of band; the event is lost

    paid = [p for p in billing.connector.paid_invoices(since) if p.invoice_id == ids["invoice"]]
    assert len(paid) == 1 and paid[0].customer_id == ids["customer"]
    assert billing.connector.paid_invoices(later) == []

    attempt = BillingActivities(billing.connector).retry_payment(
        RetryPaymentInput(
            invoice_id=ids["invoice"], idempotency_key=f"rb-contract-paid-retry-{billing.suffix}"
        )
    )
    assert attempt.succeeded and attempt.decline_code is None
    if billing.spec.name in ("chargebee", "stripe"):  # they refuse the collect: read back
        assert attempt.already == "paid"
