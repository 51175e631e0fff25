"""The Stripe sandbox's charges and refunds, through the official ``stripe`` client: a paid invoice
has a charge (the payment intent's ``latest_charge``); ``POST /v1/refunds`` refunds it by payment
intent or by charge, in part or in full, updating the charge's ``amount_refunded`` / ``refunded``
and sending ``charge.refunded``; Stripe's refusals (over the unrefunded amount, already refunded,
a payment intent with nothing to refund, neither target given); ``GET /v1/refunds`` filtered by
``created``, ``payment_intent`` and ``charge`` and paged with ``starting_after`` / ``has_more``;
a credit note's ``refund_amount`` is a real refund the credit note names."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import stripe as stripe_lib

from sandbox.framework import ServerThread
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_refunds"


EMULATOR = StripeEmulator(api_key=API_KEY, realistic=False)


@pytest.fixture(scope="module")
def stripe() -> Iterator[stripe_lib.StripeClient]:
    with ServerThread({EMULATOR: 0}) as thread:
        yield stripe_lib.StripeClient(
            API_KEY, base_addresses={"api": thread.urls["stripe"]}, max_network_retries=0
        )


def paid_invoice(stripe: stripe_lib.StripeClient, amount: int) -> Any:  # noqa: ANN401
    cus = stripe.v1.customers.create({"name": f"Refund {uuid.uuid4().hex[:6]}"}).id
    inv = stripe.v1.invoices.create(
        {"customer": cus, "collection_method": "send_invoice", "days_until_due": 30}
    )
    stripe.v1.invoice_items.create(
        {"customer": cus, "invoice": inv.id, "amount": amount, "currency": "usd"}
    )
    stripe.v1.invoices.finalize_invoice(inv.id)
    return stripe.v1.invoices.pay(inv.id)


def payment_intent(stripe: stripe_lib.StripeClient, inv: Any) -> Any:  # noqa: ANN401
    (pay,) = stripe.v1.invoice_payments.list({"invoice": inv.id}).data
    return stripe.v1.payment_intents.retrieve(pay.payment.payment_intent)


def test_a_paid_invoice_refunded_in_part_then_in_full(stripe: stripe_lib.StripeClient) -> None:
    inv = paid_invoice(stripe, 5_000)
    assert inv.status == "paid"
    pi = payment_intent(stripe, inv)
    charge = stripe.v1.charges.retrieve(pi.latest_charge)
    assert (charge.amount, charge.amount_refunded, charge.refunded) == (5_000, 0, False)
    assert charge.payment_intent == pi.id and charge.status == "succeeded"

    first = stripe.v1.refunds.create(
        {
            "payment_intent": pi.id,
            "amount": 1_500,
            "reason": "requested_by_customer",
            "metadata": {"ticket": "T-1"},
        }  # fmt: skip
    )
    assert first.object == "refund" and first.status == "succeeded"
    assert (first.charge, first.payment_intent, first.amount, first.currency) == (
        charge.id, pi.id, 1_500, "usd",
    )  # fmt: skip
    assert first.metadata.to_dict() == {"ticket": "T-1"} and first.created > 0
    charge = stripe.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (1_500, False)

    with pytest.raises(stripe_lib.InvalidRequestError) as over:
        stripe.v1.refunds.create({"charge": charge.id, "amount": 4_000})
    assert over.value.http_status == 400 and "greater than unrefunded amount" in str(
        over.value.user_message
    )
    rest = stripe.v1.refunds.create({"charge": charge.id})  # the rest, by the charge
    assert rest.amount == 3_500 and rest.payment_intent == pi.id
    charge = stripe.v1.charges.retrieve(charge.id)
    assert (charge.amount_refunded, charge.refunded) == (5_000, True)
    with pytest.raises(stripe_lib.InvalidRequestError) as again:
        stripe.v1.refunds.create({"payment_intent": pi.id})
    assert again.value.code == "charge_already_refunded"
    assert stripe.v1.invoices.retrieve(inv.id).status == "paid"  # a refund leaves it paid

    events = stripe.v1.events.list({"type": "charge.refunded"}).data
    mine = [e for e in events if e.data.object["id"] == charge.id]
    assert [e.data.object["amount_refunded"] for e in mine] == [5_000, 1_500]  # newest first
    assert mine[-1].data.previous_attributes.to_dict() == {"amount_refunded": 0, "refunded": False}

    listed = stripe.v1.refunds.list({"payment_intent": pi.id}).data
    assert [r.id for r in listed] == [rest.id, first.id]
    assert stripe.v1.refunds.retrieve(first.id).amount == 1_500


def test_refusals(stripe: stripe_lib.StripeClient) -> None:
    with pytest.raises(stripe_lib.InvalidRequestError) as neither:
        stripe.v1.refunds.create({"amount": 100})
    assert neither.value.http_status == 400
    with pytest.raises(stripe_lib.InvalidRequestError) as missing:
        stripe.v1.refunds.create({"charge": "ch_nope"})
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    cus = stripe.v1.customers.create({"name": "Declined"}).id
    EMULATOR.set_card_decline(cus, "insufficient_funds")
    inv = stripe.v1.invoices.create(
        {"customer": cus, "collection_method": "send_invoice", "days_until_due": 30}
    )
    stripe.v1.invoice_items.create(
        {"customer": cus, "invoice": inv.id, "amount": 700, "currency": "usd"}
    )
    stripe.v1.invoices.finalize_invoice(inv.id)
    with pytest.raises(stripe_lib.CardError):
        stripe.v1.invoices.pay(inv.id)
    (pay,) = stripe.v1.invoice_payments.list({"invoice": inv.id}).data
    with pytest.raises(stripe_lib.InvalidRequestError) as nothing:  # a declined payment intent
        stripe.v1.refunds.create({"payment_intent": pay.payment.payment_intent})
    assert "does not have a successful charge" in str(nothing.value.user_message)
    with pytest.raises(stripe_lib.InvalidRequestError) as unknown:
        stripe.v1.refunds.create({"payment_intent": "pi_nope"})
    assert unknown.value.http_status == 404
    with pytest.raises(stripe_lib.InvalidRequestError) as param:
        stripe.v1.refunds.create({"charge": "ch_x", "bogus": "1"})  # type: ignore[typeddict-unknown-key]
    assert param.value.code == "parameter_unknown"


def test_the_list_pages_and_filters_by_created(stripe: stripe_lib.StripeClient) -> None:
    ids = []
    for amount in (100, 200, 300):
        pi = payment_intent(stripe, paid_invoice(stripe, amount))
        ids.append(stripe.v1.refunds.create({"payment_intent": pi.id}).id)
    created = stripe.v1.refunds.retrieve(ids[0]).created
    page = stripe.v1.refunds.list({"limit": 2, "created": {"gte": created}})
    assert [r.id for r in page.data] == [ids[2], ids[1]] and page.has_more
    nxt = stripe.v1.refunds.list(
        {"limit": 2, "created": {"gte": created}, "starting_after": page.data[-1].id}
    )
    assert ids[0] in [r.id for r in nxt.data]
    earlier = stripe.v1.refunds.list({"created": {"lt": created}, "limit": 100}).data
    assert all(r.created < created for r in earlier)
    assert stripe.v1.refunds.list({"created": {"gt": created + 3600}}).data == []


def test_a_credit_note_refund_is_a_refund_it_names(stripe: stripe_lib.StripeClient) -> None:
    inv = paid_invoice(stripe, 2_000)
    pi = payment_intent(stripe, inv)
    cn = stripe.v1.credit_notes.create({"invoice": inv.id, "amount": 800, "refund_amount": 800})
    ((named,),) = [[r.refund for r in cn.refunds]]
    refund = stripe.v1.refunds.retrieve(named)
    assert (refund.amount, refund.payment_intent) == (800, pi.id)
    assert stripe.v1.charges.retrieve(pi.latest_charge).amount_refunded == 800
