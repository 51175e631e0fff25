"""The Stripe emulator, exercised through the official stripe-python 16 client (``StripeClient``).

Raw HTTP is only used for the ``/_sandbox`` control plane.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from sandbox.framework import App, ServerThread
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_local"
SECRET = "whsec_revbridge_local"


def make_client(base_url: str, api_key: str = API_KEY, **kwargs: Any) -> stripe.StripeClient:
    """How RevBridge points stripe-python 16 at the sandbox: ``base_addresses["api"]`` replaces
    https://api.stripe.com (paths stay ``/v1/...``); retries off so tests see every answer."""
    return stripe.StripeClient(
        api_key, base_addresses={"api": base_url}, max_network_retries=0, **kwargs
    )


class Receiver:
    """A tiny webhook endpoint that records what it gets (served by its own ServerThread)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.app = App("receiver", Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> JSONResponse:
        body = (await request.body()).decode("utf-8")
        with self.lock:
            self.records.append({"headers": dict(request.headers), "body": body})
        return JSONResponse({"received": True})

    def wait_for(self, event_type: str, obj_id: str | None = None, timeout: float = 5.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for rec in self.records:
                    evt = json.loads(rec["body"])
                    if evt["type"] == event_type and (
                        obj_id is None or evt["data"]["object"]["id"] == obj_id
                    ):
                        return rec
            time.sleep(0.02)
        raise AssertionError(f"no {event_type} webhook for {obj_id} within {timeout}s")


@pytest.fixture(scope="module")
def emulator() -> StripeEmulator:
    # focused on shapes and state: the account's rate limits and search lag are off here
    # (tests/sandbox/test_stripe_realism.py holds those)
    return StripeEmulator(api_key=API_KEY, webhook_secret=SECRET, realistic=False)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    with ServerThread({rec.app: 0}) as srv:
        yield rec, srv.urls["receiver"] + "/hook"


@pytest.fixture(scope="module")
def server(emulator: StripeEmulator) -> Iterator[str]:
    with ServerThread({emulator: 0}) as srv:
        yield srv.urls["stripe"]


@pytest.fixture(autouse=True)
def fresh(server: str, emulator: StripeEmulator) -> None:
    httpx.post(f"{server}/_sandbox/reset").raise_for_status()
    emulator.latency_s = 0.0


@pytest.fixture
def hooks(server: str, receiver: tuple[Receiver, str]) -> Iterator[Receiver]:
    """Deliver this test's events to the receiver (other tests skip delivery: it costs time)."""
    rec, url = receiver
    with rec.lock:
        rec.records.clear()
    httpx.post(f"{server}/_sandbox/webhooks", json={"url": url}).raise_for_status()
    yield rec
    httpx.delete(f"{server}/_sandbox/webhooks").raise_for_status()


@pytest.fixture
def client(server: str) -> stripe.StripeClient:
    return make_client(server)


def _catalog(client: stripe.StripeClient) -> tuple[Any, Any, Any]:
    prod = client.v1.products.create(params={"name": "Pro"})
    monthly = client.v1.prices.create(
        params={
            "product": prod.id,
            "unit_amount": 2000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    bigger = client.v1.prices.create(
        params={
            "product": prod.id,
            "unit_amount": 5000,
            "currency": "usd",
            "recurring": {"interval": "month"},
        }
    )
    return prod, monthly, bigger


# --- customers and lists ---------------------------------------------------------------------------


def test_customer_crud(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(
        params={"email": "ada@example.com", "name": "Ada", "metadata": {"crm_id": "001", "x": "1"}}
    )
    assert cus.id.startswith("cus_") and cus.object == "customer" and cus.livemode is False
    assert cus.metadata.to_dict() == {"crm_id": "001", "x": "1"}
    headers = cus.last_response.headers
    assert headers["request-id"].startswith("req_")
    assert headers["stripe-version"] == stripe.api_version

    got = client.v1.customers.retrieve(cus.id)
    assert got.email == "ada@example.com" and got.balance == 0

    upd = client.v1.customers.update(cus.id, params={"name": "Ada L", "metadata": {"x": ""}})
    assert upd.name == "Ada L" and upd.metadata.to_dict() == {"crm_id": "001"}

    client.v1.customers.create(params={"email": "bob@example.com"})
    found = client.v1.customers.list(params={"email": "ada@example.com"})
    assert [c.id for c in found.data] == [cus.id] and found.url == "/v1/customers"

    deleted = client.v1.customers.delete(cus.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(cus.id).deleted is True
    assert [c.email for c in client.v1.customers.list().data] == ["bob@example.com"]

    hits = client.v1.customers.search(params={"query": "email:'bob@example.com'"})
    assert [c.email for c in hits.data] == ["bob@example.com"]


def test_auto_paging_over_25_customers(client: stripe.StripeClient) -> None:
    made = [client.v1.customers.create(params={"email": f"c{i}@x.com"}).id for i in range(25)]
    page = client.v1.customers.list(params={"limit": 10})
    assert len(page.data) == 10 and page.has_more is True
    assert page.data[0].id == made[-1]  # newest first, like Stripe
    seen = [c.id for c in page.auto_paging_iter()]
    assert len(seen) == 25 and len(set(seen)) == 25 and seen == list(reversed(made))

    before = client.v1.customers.list(params={"limit": 5, "ending_before": made[10]})
    assert [c.id for c in before.data] == list(reversed(made[11:16]))
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.list(params={"limit": 101})


def test_not_found_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.invoices.retrieve("in_missing")
    assert exc.value.code == "resource_missing" and exc.value.http_status == 404
    assert exc.value.request_id and exc.value.request_id.startswith("req_")


def test_wrong_api_key(server: str) -> None:
    with pytest.raises(stripe.AuthenticationError) as exc:
        make_client(server, api_key="sk_test_wrong_key_123456").v1.customers.list()
    assert "Invalid API Key provided" in str(exc.value)


def test_unknown_parameter(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.create(params={"emial": "typo@example.com"})  # type: ignore[typeddict-unknown-key]
    assert exc.value.code == "parameter_unknown" and exc.value.param == "emial"


# --- subscriptions -----------------------------------------------------------------------------------


def test_subscription_create_change_plan_cancel(client: stripe.StripeClient) -> None:
    _, monthly, bigger = _catalog(client)
    coupon = client.v1.coupons.create(params={"percent_off": 25, "duration": "forever"})
    cus = client.v1.customers.create(params={"email": "sub@example.com"})

    sub = client.v1.subscriptions.create(
        params={
            "customer": cus.id,
            "items": [{"price": monthly.id}],
            "discounts": [{"coupon": coupon.id}],
            "metadata": {"deal": "D-1"},
            "expand": ["latest_invoice", "customer"],
        }
    )
    assert sub.id.startswith("sub_") and sub.status == "active"
    assert sub.customer.id == cus.id  # expanded
    item = sub["items"].data[0]
    assert item.id.startswith("si_") and item.price.id == monthly.id and item.quantity == 1
    assert sub.discounts[0].startswith("di_")
    inv = sub.latest_invoice
    assert inv.status == "paid" and inv.billing_reason == "subscription_create"
    assert (inv.subtotal, inv.total, inv.amount_paid) == (2000, 1500, 1500)
    assert inv.parent.subscription_details.subscription == sub.id
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1

    changed = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": item.id, "price": bigger.id}],
            "proration_behavior": "create_prorations",
        },
    )
    assert changed["items"].data[0].price.id == bigger.id
    assert changed["items"].data[0].id == item.id
    pending = client.v1.invoice_items.list(params={"customer": cus.id, "pending": True})
    assert sorted(ii.amount > 0 for ii in pending.data) == [False, True]
    assert all(ii.proration for ii in pending.data)

    later = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert later.cancel_at_period_end is True and later.status == "active"
    assert later.cancel_at == later["items"].data[0].current_period_end

    gone = client.v1.subscriptions.cancel(sub.id)
    assert gone.status == "canceled" and gone.canceled_at
    assert client.v1.subscriptions.list(params={"customer": cus.id}).data == []
    listed = client.v1.subscriptions.list(params={"customer": cus.id, "status": "canceled"})
    assert [s.id for s in listed.data] == [sub.id]

    types = [e.type for e in client.v1.events.list(params={"limit": 100}).data]
    for t in (
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
    ):
        assert t in types


def test_plan_change_always_invoice_and_expand_payment_intent(client: stripe.StripeClient) -> None:
    _, monthly, bigger = _catalog(client)
    cus = client.v1.customers.create(params={"email": "up@example.com"})
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": monthly.id}]}
    )
    upgraded = client.v1.subscriptions.update(
        sub.id,
        params={
            "items": [{"id": sub["items"].data[0].id, "price": bigger.id}],
            "proration_behavior": "always_invoice",
            "expand": ["latest_invoice.payments.data.payment.payment_intent"],
        },
    )
    inv = upgraded.latest_invoice
    assert inv.billing_reason == "subscription_update" and inv.status == "paid"
    assert sum(line.amount for line in inv.lines.data) == inv.total
    assert inv.total == 3000  # full-period proration at t≈start: -2000 + 5000
    pi = inv.payments.data[0].payment.payment_intent
    assert pi.id.startswith("pi_") and pi.status == "succeeded" and pi.amount == 3000


def test_subscription_with_declining_card_is_incomplete(
    client: stripe.StripeClient, emulator: StripeEmulator
) -> None:
    _, monthly, _ = _catalog(client)
    cus = client.v1.customers.create(params={"email": "broke@example.com"})
    emulator.set_card_decline(cus.id, "generic_decline")
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": monthly.id}]}
    )
    assert sub.status == "incomplete"
    with pytest.raises(stripe.CardError):
        client.v1.subscriptions.create(
            params={
                "customer": cus.id,
                "items": [{"price": monthly.id}],
                "payment_behavior": "error_if_incomplete",
            }
        )
    assert len(client.v1.subscriptions.list(params={"status": "all"}).data) == 1


# --- invoices, payments, webhooks --------------------------------------------------------------------


def _open_invoice(client: stripe.StripeClient, customer: str, amount: int = 4200) -> Any:
    inv = client.v1.invoices.create(params={"customer": customer, "auto_advance": True})
    client.v1.invoice_items.create(
        params={"customer": customer, "invoice": inv.id, "amount": amount, "currency": "usd"}
    )
    return client.v1.invoices.finalize_invoice(inv.id)


def test_invoice_pay_decline_then_success_with_signed_webhooks(
    client: stripe.StripeClient, emulator: StripeEmulator, hooks: Receiver
) -> None:
    rec = hooks
    cus = client.v1.customers.create(params={"email": "dunning@example.com"})
    emulator.set_card_decline(cus.id, "insufficient_funds")
    inv = _open_invoice(client, cus.id)
    assert inv.status == "open" and inv.amount_due == 4200 and inv.number

    with pytest.raises(stripe.CardError) as exc:
        client.v1.invoices.pay(inv.id)
    assert exc.value.http_status == 402
    assert exc.value.code == "card_declined"
    assert exc.value.error.decline_code == "insufficient_funds"

    after = client.v1.invoices.retrieve(inv.id)
    assert after.status == "open" and after.attempt_count == 1 and after.attempted is True
    assert after.next_payment_attempt and after.next_payment_attempt > time.time()
    assert after.amount_remaining == 4200
    pis = client.v1.payment_intents.list(params={"customer": cus.id}).data
    assert pis[0].status == "requires_payment_method"
    assert pis[0].last_payment_error.decline_code == "insufficient_funds"

    hit = rec.wait_for("invoice.payment_failed", inv.id)
    event = stripe.Webhook.construct_event(hit["body"], hit["headers"]["stripe-signature"], SECRET)
    assert event.type == "invoice.payment_failed"
    assert event.api_version == stripe.api_version
    assert event.data.object.attempt_count == 1 and event.data.object.status == "open"
    assert event.request.idempotency_key  # the client's automatic key on POST /pay
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(hit["body"], hit["headers"]["stripe-signature"], "whsec_x")

    emulator.set_card_decline(cus.id, None)
    paid = client.v1.invoices.pay(inv.id)
    assert paid.status == "paid" and paid.amount_paid == 4200 and paid.attempt_count == 2
    assert paid.next_payment_attempt is None
    hit = rec.wait_for("invoice.paid", inv.id)
    assert (
        stripe.Webhook.construct_event(
            hit["body"], hit["headers"]["stripe-signature"], SECRET
        ).data.object.status
        == "paid"
    )
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(inv.id)


def test_control_routes_fail_and_collect(
    client: stripe.StripeClient, server: str, hooks: Receiver
) -> None:
    _, monthly, _ = _catalog(client)
    cus = client.v1.customers.create(params={"email": "cycle@example.com"})
    sub = client.v1.subscriptions.create(
        params={"customer": cus.id, "items": [{"price": monthly.id}]}
    )

    renewed = httpx.post(f"{server}/_sandbox/stripe/subscriptions/{sub.id}/renew").json()
    cycle = renewed["invoice"]
    assert cycle["billing_reason"] == "subscription_cycle" and cycle["status"] == "paid"

    httpx.post(
        f"{server}/_sandbox/stripe/customers/{cus.id}/card", json={"decline_code": "expired_card"}
    )
    renewed = httpx.post(f"{server}/_sandbox/stripe/subscriptions/{sub.id}/renew").json()
    inv_id = renewed["invoice"]["id"]
    assert renewed["invoice"]["status"] == "open"
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    hit = hooks.wait_for("invoice.payment_failed", inv_id)
    evt = stripe.Webhook.construct_event(hit["body"], hit["headers"]["stripe-signature"], SECRET)
    assert evt.request.id is None  # automatic collection, not an API request

    forced = httpx.post(
        f"{server}/_sandbox/stripe/invoices/{inv_id}/fail_payment",
        json={"decline_code": "fraudulent"},
    ).json()
    assert forced["paid"] is False and forced["invoice"]["attempt_count"] == 2
    assert forced["error"]["decline_code"] == "fraudulent"

    httpx.post(f"{server}/_sandbox/stripe/customers/{cus.id}/card", json={"decline_code": None})
    collected = httpx.post(f"{server}/_sandbox/stripe/invoices/{inv_id}/pay").json()
    assert collected["paid"] is True and collected["invoice"]["status"] == "paid"
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    hooks.wait_for("customer.subscription.updated", sub.id)


def test_webhook_secret_rotation_signs_with_every_secret(
    client: stripe.StripeClient, emulator: StripeEmulator, hooks: Receiver
) -> None:
    emulator.add_webhook_secret("whsec_next")
    try:
        cus = client.v1.customers.create(params={"email": "rot@example.com"})
        client.v1.customers.update(cus.id, params={"name": "Rotated"})
        hit = hooks.wait_for("customer.updated", cus.id)
        header = hit["headers"]["stripe-signature"]
        assert header.count("v1=") == 2
        for secret in (SECRET, "whsec_next"):
            evt = stripe.Webhook.construct_event(hit["body"], header, secret)
            assert evt.data.previous_attributes.name is None
    finally:
        emulator.remove_webhook_secret("whsec_next")


def test_credit_note_and_void(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "cn@example.com"})
    inv = _open_invoice(client, cus.id, 3000)
    cn = client.v1.credit_notes.create(
        params={"invoice": inv.id, "amount": 1000, "reason": "order_change"}
    )
    assert cn.id.startswith("cn_") and cn.type == "pre_payment" and cn.status == "issued"
    assert client.v1.invoices.retrieve(inv.id).amount_remaining == 2000
    assert [c.id for c in client.v1.credit_notes.list(params={"invoice": inv.id}).data] == [cn.id]

    paid = client.v1.invoices.pay(inv.id)
    assert paid.amount_paid == 2000
    post = client.v1.credit_notes.create(params={"invoice": inv.id, "amount": 500})
    assert post.type == "post_payment"
    assert client.v1.customers.retrieve(cus.id).balance == -500

    other = _open_invoice(client, cus.id, 700)  # the 500 credit is applied at finalization
    assert other.amount_due == 200 and other.starting_balance == -500
    voided = client.v1.invoices.void_invoice(other.id)
    assert voided.status == "void"
    assert client.v1.customers.retrieve(cus.id).balance == -500  # credit given back


# --- balance, usage, events --------------------------------------------------------------------------


def test_balance_transaction_adjusts_balance(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "bal@example.com"})
    txn = client.v1.customers.balance_transactions.create(
        cus.id, params={"amount": -1500, "currency": "usd", "description": "goodwill"}
    )
    assert txn.id.startswith("cbtxn_") and txn.ending_balance == -1500 and txn.type == "adjustment"
    client.v1.customers.balance_transactions.create(
        cus.id, params={"amount": 200, "currency": "usd"}
    )
    assert client.v1.customers.retrieve(cus.id).balance == -1300
    txns = client.v1.customers.balance_transactions.list(cus.id)
    assert [t.amount for t in txns.data] == [200, -1500]
    assert txns.url == f"/v1/customers/{cus.id}/balance_transactions"


def test_meter_event_identifier_dedup(client: stripe.StripeClient, server: str) -> None:
    cus = client.v1.customers.create(params={"email": "usage@example.com"})
    params: Any = {
        "event_name": "api_calls",
        "identifier": "batch-42",
        "payload": {"stripe_customer_id": cus.id, "value": "25"},
    }
    first = client.v1.billing.meter_events.create(params=params)
    assert first.object == "billing.meter_event" and first.identifier == "batch-42"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.billing.meter_events.create(params=params)
    assert "already exists" in str(exc.value)
    got = httpx.get(f"{server}/_sandbox/stripe/meter_events", params={"customer": cus.id}).json()
    assert [e["payload"]["value"] for e in got["meter_events"]] == ["25"]


def test_events_list_filtered_by_type(client: stripe.StripeClient) -> None:
    cus = client.v1.customers.create(params={"email": "evt@example.com"})
    client.v1.customers.update(cus.id, params={"metadata": {"a": "1"}})
    client.v1.customers.update(cus.id, params={"metadata": {"a": "2"}})
    updated = client.v1.events.list(params={"type": "customer.updated"})
    assert [e.type for e in updated.data] == ["customer.updated"] * 2
    assert updated.data[0].data.previous_attributes.metadata.a == "1"
    assert updated.data[0].id.startswith("evt_")
    one = client.v1.events.retrieve(updated.data[0].id)
    assert one.data.object.metadata.a == "2"
    wild = client.v1.events.list(params={"type": "customer.*"})
    assert {e.type for e in wild.data} == {"customer.created", "customer.updated"}


# --- idempotency and faults --------------------------------------------------------------------------


def test_idempotent_replay_and_key_reuse(client: stripe.StripeClient, server: str) -> None:
    opts: Any = {"idempotency_key": "create-ada-1"}
    first = client.v1.customers.create(params={"email": "idem@example.com"}, options=opts)
    second = client.v1.customers.create(params={"email": "idem@example.com"}, options=opts)
    assert second.id == first.id and second.to_dict() == first.to_dict()
    assert second.last_response.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.last_response.headers
    assert len(client.v1.customers.list(params={"email": "idem@example.com"}).data) == 1

    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"email": "other@example.com"}, options=opts)

    ledger = httpx.get(f"{server}/_sandbox/requests", params={"method": "POST"}).json()
    keys = [r["headers"].get("idempotency-key") for r in ledger["requests"]]
    assert keys.count("create-ada-1") == 3


def test_idempotency_keys_expire(client: stripe.StripeClient, emulator: StripeEmulator) -> None:
    opts: Any = {"idempotency_key": "expiring"}
    first = client.v1.customers.create(params={"email": "ttl@example.com"}, options=opts)
    emulator.advance_clock(24 * 3600 + 5)
    again = client.v1.customers.create(params={"email": "ttl@example.com"}, options=opts)
    assert again.id != first.id


def test_concurrent_same_key_conflicts(server: str, emulator: StripeEmulator) -> None:
    emulator.latency_s = 0.4
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(
                make_client(server).v1.customers.create(
                    params={"email": "race@example.com"}, options={"idempotency_key": "race"}
                )
            )
        except stripe.StripeError as exc:
            results.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    errors = [r for r in results if isinstance(r, stripe.StripeError)]
    assert len(errors) == 1 and errors[0].http_status == 409
    assert errors[0].json_body["error"]["type"] == "idempotency_error"


def test_injected_429_is_rate_limit_error(client: stripe.StripeClient, server: str) -> None:
    httpx.post(
        f"{server}/_sandbox/faults",
        json={"kind": "status", "status": 429, "method": "GET", "path": "/v1/customers"},
    ).raise_for_status()
    with pytest.raises(stripe.RateLimitError) as exc:
        client.v1.customers.list()
    assert exc.value.code == "rate_limit" or exc.value.json_body["error"]["code"] == "rate_limit"
    assert client.v1.customers.list().data == []  # the fault is spent


def test_commit_then_timeout_then_retry_replays(client: stripe.StripeClient, server: str) -> None:
    httpx.post(
        f"{server}/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": "/v1/customers",
            "delay_s": 1.5,
        },
    ).raise_for_status()
    impatient = make_client(server, http_client=stripe.RequestsClient(timeout=0.4))
    opts: Any = {"idempotency_key": "timeout-1"}
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.create(params={"email": "late@example.com"}, options=opts)
    existing = client.v1.customers.list(params={"email": "late@example.com"}).data
    assert len(existing) == 1  # it was committed

    retried = client.v1.customers.create(params={"email": "late@example.com"}, options=opts)
    assert retried.id == existing[0].id
    assert retried.last_response.headers.get("idempotent-replayed") == "true"
    assert len(client.v1.customers.list(params={"email": "late@example.com"}).data) == 1


def test_injected_500_is_api_error(client: stripe.StripeClient, server: str) -> None:
    httpx.post(
        f"{server}/_sandbox/faults", json={"kind": "status", "status": 503, "path": "/v1/invoices"}
    ).raise_for_status()
    with pytest.raises(stripe.APIError) as exc:
        client.v1.invoices.list()
    assert exc.value.http_status == 503 and exc.value.json_body["error"]["type"] == "api_error"


# --- seeding -----------------------------------------------------------------------------------------


def test_seed_with_chosen_ids(client: stripe.StripeClient, server: str) -> None:
    created = httpx.post(
        f"{server}/_sandbox/seed",
        json={
            "products": [{"id": "prod_seed", "name": "Seeded"}],
            "prices": [
                {
                    "id": "price_seed",
                    "product": "prod_seed",
                    "unit_amount": 900,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                }
            ],
            "customers": [
                {
                    "id": "cus_seed",
                    "email": "s@example.com",
                    "card": {"decline_code": "expired_card"},
                }
            ],
            "subscriptions": [
                {"id": "sub_seed", "customer": "cus_seed", "items": [{"price": "price_seed"}]}
            ],
            "invoices": [
                {
                    "id": "in_seed",
                    "customer": "cus_seed",
                    "subscription": "sub_seed",
                    "lines": [{"amount": 900, "description": "Seeded month"}],
                    "attempt_count": 2,
                }
            ],
        },
    ).json()
    assert created["customers"] == ["cus_seed"] and created["invoices"] == ["in_seed"]
    inv = client.v1.invoices.retrieve(
        "in_seed", params={"expand": ["customer", "parent.subscription_details.subscription"]}
    )
    assert inv.status == "open" and inv.attempt_count == 2 and inv.customer.id == "cus_seed"
    assert inv.parent.subscription_details.subscription.status == "active"
    assert inv.amount_due == 900
    assert client.v1.subscriptions.retrieve("sub_seed").latest_invoice == "in_seed"
    assert client.v1.events.list().data == []  # seeding is silent
    with pytest.raises(stripe.CardError) as exc:
        client.v1.invoices.pay("in_seed")
    assert exc.value.code == "expired_card"
    listed = client.v1.invoices.list(params={"subscription": "sub_seed", "status": "open"})
    assert [i.id for i in listed.data] == ["in_seed"]
