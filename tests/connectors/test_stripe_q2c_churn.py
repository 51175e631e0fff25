"""The Stripe connector's quote-to-cash, churn and support-context methods, through the official
client against the stateful emulator: idempotent creates (also after a commit-then-timeout), the
CRM link in metadata, prices by lookup key, cancellation, the customer sweep's pagination, the
customer snapshot and retention discounts."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
import stripe
from pydantic import SecretStr

from connectors.base import BillingPlatform, ConnectorError, ErrorKind, NotFound
from connectors.stripe import StripeBilling
from domain.ids import idempotency_key
from domain.records import CustomerDraft, SubscriptionDraft, SubscriptionLine
from domain.settings import StripeSettings
from harness.drivers import StripeDriver
from sandbox.framework import ServerThread
from sandbox.scenarios import CATALOG, stripe_seed
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_q2c"
CORE, SEAT, SUPPORT = (p.stripe_lookup_key for p in CATALOG if p.in_billing)


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[StripeEmulator, str]]:
    em = StripeEmulator(api_key=API_KEY)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["stripe"]
        seed(url, stripe_seed((), "q2c"))  # the shared catalogue, by lookup key
        yield em, url


@pytest.fixture(scope="module")
def url(emulator: tuple[StripeEmulator, str]) -> str:
    return emulator[1]


@pytest.fixture(scope="module")
def em(emulator: tuple[StripeEmulator, str]) -> StripeEmulator:
    return emulator[0]


def connector(url: str, timeout_s: float = 5.0) -> StripeBilling:
    return StripeBilling(StripeSettings(api_key=SecretStr(API_KEY), api_url=url), timeout_s)


@pytest.fixture(scope="module")
def billing(url: str) -> StripeBilling:
    return connector(url)


@pytest.fixture(scope="module")
def client(billing: StripeBilling) -> stripe.StripeClient:
    return billing.client


@pytest.fixture(autouse=True)
def _no_faults(url: str) -> Iterator[None]:
    yield
    httpx.delete(url + "/_sandbox/faults")


def seed(url: str, data: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + "/_sandbox/seed", json=data)
    assert resp.status_code == 200, resp.text
    return resp.json()


def ledger(url: str, method: str, path_prefix: str) -> list[dict[str, Any]]:
    params = {"method": method, "path_prefix": path_prefix}
    return httpx.get(url + "/_sandbox/requests", params=params).json()["requests"]


def fault(url: str, **spec: Any) -> None:
    assert httpx.post(url + "/_sandbox/faults", json=spec).status_code == 201


def key(step: str) -> str:
    return idempotency_key(f"q2c:salesforce:{uuid.uuid4().hex[:18]}", step)


def customer_draft(**overrides: Any) -> CustomerDraft:
    u = uuid.uuid4().hex[:8]
    fields: dict[str, Any] = {
        "key": key("customer"),
        "company": f"Wayne Enterprises {u}",
        "email": f"ap-{u}@example.com",
        "crm": "salesforce",
        "crm_account_id": f"001{u}",
    }
    return CustomerDraft(**{**fields, **overrides})


def sub_draft(customer_id: str, **overrides: Any) -> SubscriptionDraft:
    fields: dict[str, Any] = {
        "key": key("subscription"),
        "customer_id": customer_id,
        "lines": [SubscriptionLine(price_id=CORE), SubscriptionLine(price_id=SEAT, quantity=10)],
        "crm": "salesforce",
        "crm_opportunity_id": f"006{uuid.uuid4().hex[:12]}",
    }
    return SubscriptionDraft(**{**fields, **overrides})


def subscriptions_of(client: stripe.StripeClient, customer_id: str) -> list[Any]:
    return client.v1.subscriptions.list({"customer": customer_id, "status": "all"}).data


def test_the_connector_still_satisfies_the_protocol(billing: StripeBilling) -> None:
    assert isinstance(billing, BillingPlatform)


# --- the catalogue and prices -------------------------------------------------------------------


def test_catalogue_seeding_is_idempotent_per_lookup_key(
    url: str, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    driver = StripeDriver(url, billing)
    seed(url, stripe_seed((), "again"))  # a second seed of the same emulator
    driver.seed_catalog()  # and the driver's own way, through the API
    keys = [p.stripe_lookup_key for p in CATALOG if p.in_billing]
    held = client.v1.prices.list({"lookup_keys": keys, "limit": 100}).data
    assert sorted(p.lookup_key for p in held) == sorted(keys)  # one price per key
    legacy = next(p for p in CATALOG if not p.in_billing)
    assert client.v1.prices.list({"lookup_keys": [legacy.stripe_lookup_key]}).data == []


def test_get_price_by_lookup_key_or_id(billing: StripeBilling) -> None:
    by_key = billing.get_price(CORE)
    assert by_key.unit_amount == 50_000 and by_key.currency == "USD"
    assert by_key.period == "month" and by_key.period_count == 1
    assert by_key.product == "prod_rb_core"
    assert billing.get_price(by_key.id) == by_key
    with pytest.raises(NotFound):
        billing.get_price("legacy_addon_monthly")  # sold in the CRM only
    with pytest.raises(NotFound):
        billing.get_price("price_doesnotexist")


# --- customers ----------------------------------------------------------------------------------


def test_create_customer_is_idempotent_by_key(
    url: str, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    draft = customer_draft()
    first = billing.create_customer(draft)
    again = billing.create_customer(draft)
    assert again.id == first.id and first.company == draft.company
    assert first.metadata == {"crm": "salesforce", "crm_account_id": draft.crm_account_id}
    assert [c.id for c in client.v1.customers.list({"email": draft.email}).data] == [first.id]
    posts = ledger(url, "POST", "/v1/customers")
    assert [p["headers"].get("idempotency-key") for p in posts[-2:]] == [draft.key, draft.key]
    # the same key for a different customer is Stripe's idempotency_error: never retried
    with pytest.raises(ConnectorError) as exc:
        billing.create_customer(draft.model_copy(update={"company": "Someone Else"}))
    assert exc.value.kind is ErrorKind.PERMANENT and exc.value.code == "idempotency_error"


def test_find_customer_by_crm_follows_the_link(billing: StripeBilling) -> None:
    draft = customer_draft()
    cus = billing.create_customer(draft)
    found = billing.find_customer_by_crm("salesforce", draft.crm_account_id)
    assert found is not None and found.id == cus.id
    assert billing.find_customer_by_crm("hubspot", draft.crm_account_id) is None

    billing.set_crm_link(cus.id, "salesforce", None, key("unlink"))
    assert billing.find_customer_by_crm("salesforce", draft.crm_account_id) is None

    billing.set_crm_link(cus.id, "hubspot", "9876543210", key("relink"))
    relinked = billing.find_customer_by_crm("hubspot", "9876543210")
    assert relinked is not None and relinked.id == cus.id
    assert relinked.metadata == {"crm": "hubspot", "crm_account_id": "9876543210"}


def test_find_customers_by_email_then_company(billing: StripeBilling) -> None:
    u = uuid.uuid4().hex[:6]
    email = f"finance-{u}@example.com"
    by_mail = billing.create_customer(customer_draft(company=f"Stark {u} Holdings", email=email))
    other = billing.create_customer(customer_draft(company=f"stark {u} industries"))
    unrelated = billing.create_customer(customer_draft(company=f"Oscorp {u}"))
    found = billing.find_customers(email, f"STARK {u}")
    assert [c.id for c in found] == [by_mail.id, other.id]  # exact email first, no duplicates
    assert unrelated.id not in {c.id for c in billing.find_customers(None, f"Stark {u}")}
    assert billing.find_customers(f"nobody-{u}@example.com", None) == []


def test_delete_customer_twice_is_success(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    billing.delete_customer(cus.id, key("delete"))
    billing.delete_customer(cus.id, key("delete"))  # already gone
    assert client.v1.customers.retrieve(cus.id).to_dict().get("deleted") is True


# --- subscriptions --------------------------------------------------------------------------------


def test_create_subscription_with_override_discount_terms_and_metadata(
    url: str, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    draft = sub_draft(
        cus.id,
        lines=[
            SubscriptionLine(price_id=CORE),
            SubscriptionLine(price_id=SEAT, quantity=10, unit_amount=3_500),  # a price override
        ],
        discount_percent=10,
        net_term_days=30,
        term_months=24,
    )
    ref = billing.create_subscription(draft)
    # (50,000 + 10 × 3,500) × 90 %
    assert ref.created and ref.status == "active" and ref.mrr == 76_500 and ref.currency == "USD"

    sub = client.v1.subscriptions.retrieve(ref.id, {"expand": ["discounts.source.coupon"]})
    assert sub.collection_method == "send_invoice" and sub.days_until_due == 30
    assert sub.metadata.to_dict() == {
        "crm": "salesforce",
        "crm_opportunity_id": draft.crm_opportunity_id,
        "term_months": "24",
    }
    core, seat = sub["items"].data
    assert core.price.lookup_key == CORE and core.quantity == 1
    assert seat.price.unit_amount == 3_500 and seat.price.product == "prod_rb_seat"
    assert seat.quantity == 10
    (discount,) = sub.discounts
    coupon = discount.source.coupon
    assert coupon.percent_off == 10 and coupon.duration == "forever"

    again = billing.create_subscription(draft)
    assert again.id == ref.id and not again.created and again.mrr == ref.mrr
    assert len(subscriptions_of(client, cus.id)) == 1
    keys = [p["headers"].get("idempotency-key") for p in ledger(url, "POST", "/v1/coupons")]
    assert f"{draft.key}-coupon" in keys
    posts = ledger(url, "POST", "/v1/subscriptions")
    assert [p["headers"].get("idempotency-key") for p in posts].count(draft.key) == 1


def test_a_retried_create_replays_stripes_answer(
    billing: StripeBilling, client: stripe.StripeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the opportunity lookup (e.g. two attempts racing), the key alone keeps it single."""
    cus = billing.create_customer(customer_draft())
    draft = sub_draft(cus.id, discount_percent=15)
    monkeypatch.setattr(billing, "_subscription_for", lambda draft: None)
    first = billing.create_subscription(draft)
    second = billing.create_subscription(draft)
    assert first.created and not second.created and second.id == first.id
    assert len(subscriptions_of(client, cus.id)) == 1


def test_commit_then_timeout_then_retry_makes_one_subscription(
    url: str, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    draft = sub_draft(cus.id, discount_percent=5)
    fast = connector(url, timeout_s=0.5)
    fault(url, kind="commit_then_timeout", delay_s=1.5, method="POST", path="/v1/subscriptions")
    with pytest.raises(ConnectorError) as exc:
        fast.create_subscription(draft)
    assert exc.value.kind is ErrorKind.RETRYABLE  # outcome unknown: Temporal retries
    assert len(subscriptions_of(client, cus.id)) == 1  # it did land

    retried = fast.create_subscription(draft)
    (only,) = subscriptions_of(client, cus.id)
    assert retried.id == only.id and not retried.created
    assert retried.mrr == round((50_000 + 10 * 4_000) * 0.95)


def test_a_declined_first_payment_leaves_it_incomplete_with_the_deals_mrr(
    em: StripeEmulator, billing: StripeBilling
) -> None:
    cus = billing.create_customer(customer_draft())
    em.set_card_decline(cus.id, "card_velocity_exceeded")
    ref = billing.create_subscription(sub_draft(cus.id))
    assert ref.status == "incomplete" and ref.mrr == 90_000  # Stripe's status, the sold MRR


def test_a_future_start_date_anchors_the_billing_cycle(
    billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    start = datetime.now(UTC).date() + timedelta(days=10)
    ref = billing.create_subscription(sub_draft(cus.id, start_date=start))
    sub = client.v1.subscriptions.retrieve(ref.id, {"expand": ["latest_invoice"]})
    midnight = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    assert ref.status == "active" and sub.billing_cycle_anchor == midnight
    assert sub.latest_invoice.amount_due == 0  # nothing is charged before the start date

    later: date = datetime.now(UTC).date() + timedelta(days=200)  # beyond one monthly period
    far = billing.create_subscription(sub_draft(cus.id, start_date=later))
    assert far.status == "trialing"
    assert client.v1.subscriptions.retrieve(far.id).trial_end == int(
        datetime(later.year, later.month, later.day, tzinfo=UTC).timestamp()
    )


def test_cancel_twice_is_success(
    url: str, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    ref = billing.create_subscription(sub_draft(cus.id))
    assert billing.cancel_subscription(ref.id, key("cancel"), "deal rolled back") == "canceled"
    assert billing.cancel_subscription(ref.id, key("cancel"), "deal rolled back") == "canceled"
    sub = client.v1.subscriptions.retrieve(ref.id)
    assert sub.status == "canceled" and sub.cancellation_details.comment == "deal rolled back"
    (delete, *_) = ledger(url, "DELETE", f"/v1/subscriptions/{ref.id}")
    assert "prorate=false" in delete["query"] and "invoice_now=false" in delete["query"]
    with pytest.raises(NotFound):
        billing.cancel_subscription("sub_missing", key("cancel"), "gone")


# --- churn and support context ----------------------------------------------------------------------


def test_list_customers_pages_through_the_whole_book() -> None:
    em = StripeEmulator(api_key=API_KEY)
    with ServerThread({em: 0}) as thread:
        url = thread.urls["stripe"]
        ids = seed(
            url,
            {
                "customers": [
                    {"name": f"Customer {i}", "email": f"c{i}@example.com"} for i in range(250)
                ]
            },
        )["customers"]
        billing = connector(url)
        pages, cursor = [], None
        while True:
            page = billing.list_customers(cursor, limit=100)
            pages.append([c.id for c in page.customers])
            cursor = page.next_cursor
            if cursor is None:
                break
            assert cursor == page.customers[-1].id
        assert [len(p) for p in pages] == [100, 100, 50]
        seen = [cid for p in pages for cid in p]
        assert seen == list(reversed(ids))  # Stripe's order: newest first, each once


def test_customer_snapshot(
    url: str, em: StripeEmulator, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    ref = billing.create_subscription(sub_draft(cus.id, discount_percent=20))  # card: paid
    seat = next(
        i for i in client.v1.subscriptions.retrieve(ref.id)["items"].data if i.quantity == 10
    )
    up: Any = {"items": [{"id": seat.id, "quantity": 12}], "proration_behavior": "none"}
    client.v1.subscriptions.update(ref.id, up)  # an upgrade: not a downgrade
    down: Any = {"items": [{"id": seat.id, "quantity": 5}], "proration_behavior": "none"}
    client.v1.subscriptions.update(ref.id, down)
    # someone else's downgrade is not this customer's
    other = billing.create_customer(customer_draft())
    other_ref = billing.create_subscription(sub_draft(other.id))
    other_seat = next(
        i for i in client.v1.subscriptions.retrieve(other_ref.id)["items"].data if i.quantity == 10
    )
    client.v1.subscriptions.update(
        other_ref.id,
        {"items": [{"id": other_seat.id, "quantity": 1}], "proration_behavior": "none"},
    )
    # metered usage on a second subscription
    meter = client.v1.billing.meters.create(
        {
            "display_name": "API calls",
            "event_name": f"api_calls_{uuid.uuid4().hex[:6]}",
            "default_aggregation": {"formula": "sum"},
        }
    )
    metered = client.v1.prices.create(
        {
            "product": "prod_rb_core",
            "currency": "usd",
            "unit_amount": 2,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
        }
    )
    client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": metered.id}]})
    now = int(time.time())
    for ts, value in ((now - 86_400, 30), (now - 2 * 86_400, 12), (now - 32 * 86_400, 7)):
        client.v1.billing.meter_events.create(
            {
                "event_name": meter.event_name,
                "timestamp": ts,
                "payload": {"stripe_customer_id": cus.id, "value": str(value)},
            }
        )
    # a declined collection attempt on an open invoice, and some account credit
    (inv_id,) = seed(url, {"invoices": [{"customer": cus.id, "lines": [{"amount": 9_900}]}]})[
        "invoices"
    ]
    em.set_card_decline(cus.id, "insufficient_funds")
    with pytest.raises(stripe.CardError):
        client.v1.invoices.pay(inv_id)
    billing.apply_credit(cus.id, 2_500, "USD", "goodwill", key("credit"))

    snap = billing.customer_snapshot(cus.id, invoices=5)

    main = next(s for s in snap.subscriptions if s.id == ref.id)
    # (50,000 + 5 × 4,000) × 80 %
    assert main.status == "active" and main.mrr == 56_000 and main.discount_percent == 20
    assert main.plan == billing.get_price(CORE).id
    assert main.current_term_end is not None and main.current_term_end > datetime.now(UTC)
    assert main.started_at is not None
    assert len(snap.subscriptions) == 2 and snap.customer.mrr == 56_000
    assert snap.customer.id == cus.id and snap.customer.currency == "USD"

    issued = client.v1.invoices.list({"customer": cus.id}).data
    assert [i.id for i in snap.invoices] == [i.id for i in issued][:5]
    assert snap.invoices[0].id == inv_id and snap.invoices[0].amount_due == 9_900
    assert all(
        a.issued_at >= b.issued_at  # type: ignore[operator]
        for a, b in zip(snap.invoices, snap.invoices[1:], strict=False)
    )

    declined = next(p for p in snap.payments if not p.succeeded)
    assert declined.invoice_id == inv_id and declined.decline_code == "insufficient_funds"
    assert declined.amount == 9_900 and declined.decline_message
    paid = [p for p in snap.payments if p.succeeded]
    assert paid and paid[-1].amount == round((50_000 + 10 * 4_000) * 0.8)

    assert snap.credit_balance == 2_500
    assert snap.downgrades_90d == 1
    assert snap.usage_30d == 42 and snap.usage_prev_30d == 7


def test_customer_snapshot_without_meters_or_history(billing: StripeBilling) -> None:
    cus = billing.create_customer(customer_draft())
    snap = billing.customer_snapshot(cus.id)
    assert snap.subscriptions == [] and snap.invoices == [] and snap.payments == []
    assert snap.credit_balance == 0 and snap.downgrades_90d == 0
    assert snap.usage_30d is None and snap.usage_prev_30d is None
    with pytest.raises(NotFound):
        billing.customer_snapshot("cus_missing")


def test_apply_discount_adds_a_repeating_coupon_once(
    url: str, billing: StripeBilling, client: stripe.StripeClient
) -> None:
    cus = billing.create_customer(customer_draft())
    ref = billing.create_subscription(sub_draft(cus.id, discount_percent=10))  # the deal's
    k = key("retention-offer")
    discount_id = billing.apply_discount(ref.id, 25, 3, k)
    again = billing.apply_discount(ref.id, 25, 3, k)
    assert again == discount_id and discount_id.startswith("di_")

    sub = client.v1.subscriptions.retrieve(ref.id, {"expand": ["discounts.source.coupon"]})
    coupons = {d.id: d.source.coupon for d in sub.discounts}
    assert len(coupons) == 2  # the deal discount stays
    offer = coupons[discount_id]
    assert offer.percent_off == 25 and offer.duration == "repeating"
    assert offer.duration_in_months == 3
    posts = ledger(url, "POST", f"/v1/subscriptions/{ref.id}")
    assert [p["headers"].get("idempotency-key") for p in posts] == [k]

    snap = billing.customer_snapshot(cus.id)
    (view,) = snap.subscriptions
    # 90,000 × 90 % × 75 %
    assert view.mrr == 60_750 and view.discount_percent == pytest.approx(32.5)
