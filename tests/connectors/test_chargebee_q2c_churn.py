"""The Chargebee connector's quote-to-cash, churn and support-context methods, against the
emulator through the official client (what the activities will call)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date

import httpx
import pytest
from pydantic import SecretStr

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.chargebee import ChargebeeBilling
from domain.records import CustomerDraft, SubscriptionDraft, SubscriptionLine
from domain.settings import ChargebeeSettings
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.scenarios import chargebee_seed

DAY = 86_400
METERED = "api-calls-USD-monthly"


@dataclass
class Site:
    billing: ChargebeeBilling
    url: str
    em: ChargebeeEmulator
    #: seconds added to the emulator's clock (events and objects "in the past")
    offset: list[float] = field(default_factory=lambda: [0.0])

    def at(self, days_ago: float) -> None:
        self.offset[0] = -days_ago * DAY

    def seed(self, data: dict) -> dict:
        resp = httpx.post(self.url + "/_sandbox/seed", json=data)
        resp.raise_for_status()
        return resp.json()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    offset = [0.0]
    em = ChargebeeEmulator(api_key="k", clock=lambda: time.time() + offset[0])
    with ServerThread({em: 0}) as thread:
        url = thread.urls["chargebee"]
        s = Site(
            ChargebeeBilling(
                ChargebeeSettings(site="acme-test", api_key=SecretStr("k"), api_url=url),
                timeout_s=1,
            ),
            url,
            em,
            offset,
        )
        catalog = chargebee_seed((), "q2c")["item_prices"]
        metered = {
            "id": METERED,
            "item_id": "api-calls",
            "name": "API calls",
            "price": 1,
            "item_type": "addon",
            "metered": True,
        }
        s.seed({"item_prices": [*catalog, metered]})
        yield s


@pytest.fixture(autouse=True)
def _present(site: Site) -> Iterator[None]:
    yield
    site.at(0)
    httpx.delete(site.url + "/_sandbox/faults")


def _draft(uid: str, **kw: object) -> CustomerDraft:
    base: dict = {
        "key": f"rb-cust-{uid}",
        "company": f"Acme {uid}",
        "email": f"ap+{uid}@acme.test",
        "first_name": "Ada",
        "last_name": "Ng",
        "crm": "salesforce",
        "crm_account_id": f"001{uid}",
        "net_term_days": 30,
    }
    return CustomerDraft(**{**base, **kw})


def _sub_draft(uid: str, customer_id: str, **kw: object) -> SubscriptionDraft:
    base: dict = {
        "key": f"rb-sub-{uid}",
        "customer_id": customer_id,
        "lines": [
            SubscriptionLine(price_id="core-USD-monthly"),
            SubscriptionLine(price_id="seat-USD-monthly", quantity=10, unit_amount=3_500),
        ],
        "discount_percent": 10,
        "net_term_days": 30,
        "term_months": 12,
        "crm": "salesforce",
        "crm_opportunity_id": f"006{uid}",
    }
    return SubscriptionDraft(**{**base, **kw})


def _uid() -> str:
    return uuid.uuid4().hex[:8]


# --- customers ----------------------------------------------------------------------------------


def test_create_customer_is_idempotent_and_carries_the_link(site: Site) -> None:
    uid = _uid()
    first = site.billing.create_customer(_draft(uid))
    again = site.billing.create_customer(_draft(uid))
    assert again.id == first.id
    assert first.metadata == {"crm": "salesforce", "crm_account_id": f"001{uid}"}
    listed = site.billing.client.Customer.list({"email": {"is": f"ap+{uid}@acme.test"}}).list
    assert [e.customer.id for e in listed] == [first.id]
    cust = listed[0].customer
    assert (cust.net_term_days, cust.auto_collection) == (30, "off")
    assert cust.preferred_currency_code == "USD"
    posts = httpx.get(site.url + "/_sandbox/requests", params={"method": "POST"}).json()
    keys = {
        r["headers"].get("chargebee-idempotency-key")
        for r in posts["requests"]
        if r["path"] == "/api/v2/customers"
    }
    assert f"rb-cust-{uid}" in keys


def test_create_customer_after_the_idempotency_window_finds_the_same_customer(
    site: Site,
) -> None:
    uid = _uid()
    first = site.billing.create_customer(_draft(uid))
    with site.em.lock:
        site.em.store.idempotency.clear()  # 30 minutes later: Chargebee forgot the key
    again = site.billing.create_customer(_draft(uid))
    assert again.id == first.id
    assert len(site.billing.find_customers(f"ap+{uid}@acme.test", None)) == 1


def test_find_customer_by_crm_follows_create_and_unlink(site: Site) -> None:
    uid = _uid()
    assert site.billing.find_customer_by_crm("salesforce", f"001{uid}") is None
    made = site.billing.create_customer(_draft(uid))
    found = site.billing.find_customer_by_crm("salesforce", f"001{uid}")
    assert found is not None and found.id == made.id
    assert site.billing.find_customer_by_crm("hubspot", f"001{uid}") is None

    site.billing.set_crm_link(made.id, "salesforce", None, idempotency_key=f"rb-unlink-{uid}")
    assert site.billing.find_customer_by_crm("salesforce", f"001{uid}") is None
    cust = site.billing.client.Customer.retrieve(made.id).customer
    assert cust.meta_data == {}

    site.billing.set_crm_link(made.id, "hubspot", f"77{uid}", idempotency_key=f"rb-link-{uid}")
    relinked = site.billing.find_customer_by_crm("hubspot", f"77{uid}")
    assert relinked is not None and relinked.id == made.id
    assert relinked.metadata == {"crm": "hubspot", "crm_account_id": f"77{uid}"}


def test_an_unsearchable_link_field_is_a_loud_error_not_a_wrong_match(site: Site) -> None:
    uid = _uid()
    site.billing.create_customer(_draft(uid))
    site.seed({"custom_fields": [{"api_name": "cf_crm_link", "searchable": False}]})
    try:
        with pytest.raises(ConnectorError) as err:
            site.billing.find_customer_by_crm("salesforce", "001-someone-else")
        assert err.value.kind is ErrorKind.PERMANENT
        assert err.value.code == "needs_configuration"
        assert "searchable" in str(err.value)
    finally:
        site.seed({"custom_fields": [{"api_name": "cf_crm_link", "searchable": True}]})


def test_find_customers_ranks_email_then_exact_company_then_prefix(site: Site) -> None:
    uid = _uid()
    c = site.billing.client
    prefix = c.Customer.create({"company": f"Zeta {uid} Holdings"}).customer.id
    exact = c.Customer.create({"company": f"Zeta {uid}"}).customer.id
    by_mail = c.Customer.create({"company": "Other", "email": f"cfo+{uid}@zeta.test"}).customer.id
    c.Customer.create({"company": f"Not Zeta {uid}"})
    found = site.billing.find_customers(f"cfo+{uid}@zeta.test", f"Zeta {uid}")
    assert [f.id for f in found] == [by_mail, exact, prefix]
    assert [f.id for f in site.billing.find_customers(None, f"Zeta {uid}")] == [exact, prefix]
    assert site.billing.find_customers(f"nobody+{uid}@zeta.test", None) == []


def test_delete_customer_twice_is_success(site: Site) -> None:
    made = site.billing.create_customer(_draft(_uid()))
    site.billing.delete_customer(made.id, idempotency_key="rb-del-1-" + made.id[-8:])
    site.billing.delete_customer(made.id, idempotency_key="rb-del-2-" + made.id[-8:])
    with pytest.raises(NotFound):
        site.billing.customer_snapshot(made.id)


# --- prices and subscriptions ---------------------------------------------------------------------


def test_get_price_reads_the_item_price(site: Site) -> None:
    price = site.billing.get_price("core-USD-monthly")
    assert (price.id, price.product, price.unit_amount) == ("core-USD-monthly", "core", 50_000)
    assert (price.currency, price.period, price.period_count) == ("USD", "month", 1)
    with pytest.raises(NotFound):
        site.billing.get_price("legacy-addon-USD-monthly")  # RB-LEGACY is not in billing


def test_create_subscription_is_idempotent_with_terms_discount_and_link(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    ref = site.billing.create_subscription(_sub_draft(uid, cust.id))
    assert ref.created and ref.status == "active"
    assert ref.mrr == round((50_000 + 10 * 3_500) * 0.9)  # overridden seat price, 10 % off
    again = site.billing.create_subscription(_sub_draft(uid, cust.id))
    assert (again.id, again.created, again.mrr) == (ref.id, False, ref.mrr)

    subs = site.billing.client.Subscription.list({"customer_id": {"is": cust.id}}).list
    assert [e.subscription.id for e in subs] == [ref.id]
    sub = subs[0].subscription
    assert sub.meta_data == {"crm": "salesforce", "crm_opportunity_id": f"006{uid}"}
    assert sub.net_term_days == 30
    assert (sub.contract_term.billing_cycle, sub.contract_term.action_at_term_end) == (12, "renew")
    assert [(d.type, d.percentage, d.duration_type) for d in sub.discounts] == [
        ("percentage", 10.0, "forever")
    ]
    seat = next(i for i in sub.subscription_items if i.item_price_id == "seat-USD-monthly")
    assert (seat.quantity, seat.unit_price) == (10, 3_500)


def test_a_future_start_date_makes_a_future_subscription(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    start = date.fromtimestamp(time.time() + 40 * DAY)
    ref = site.billing.create_subscription(_sub_draft(uid, cust.id, start_date=start))
    assert ref.status == "future"


def test_subscription_commit_then_timeout_then_retry_makes_one(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    httpx.post(
        site.url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": rf"/api/v2/customers/{cust.id}/subscription_for_items",
            "delay_s": 2.5,
        },
    ).raise_for_status()
    with pytest.raises(ConnectorError) as err:
        site.billing.create_subscription(_sub_draft(uid, cust.id))
    assert err.value.kind is ErrorKind.RETRYABLE
    retry = site.billing.create_subscription(_sub_draft(uid, cust.id))
    assert retry.created is False and retry.status == "active"
    subs = site.billing.client.Subscription.list({"customer_id": {"is": cust.id}}).list
    assert [e.subscription.id for e in subs] == [retry.id]


def test_unknown_price_in_a_draft_is_not_found(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    bad = _sub_draft(uid, cust.id, lines=[SubscriptionLine(price_id="nope-USD-monthly")])
    with pytest.raises(NotFound):
        site.billing.create_subscription(bad)


def test_cancel_twice_is_success_and_ends_the_contract_term(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    ref = site.billing.create_subscription(_sub_draft(uid, cust.id))
    assert (
        site.billing.cancel_subscription(ref.id, f"rb-cancel-{uid}", "rolled back") == "cancelled"
    )
    assert site.billing.cancel_subscription(ref.id, f"rb-cancel2-{uid}", "again") == "cancelled"
    sub = site.billing.client.Subscription.retrieve(ref.id).subscription
    assert sub.status == "cancelled" and sub.contract_term.status == "terminated"
    assert sub.mrr == 0
    cancels = [
        r
        for r in httpx.get(site.url + "/_sandbox/requests").json()["requests"]
        if r["path"].endswith(f"/{ref.id}/cancel_for_items")
    ]
    assert len(cancels) == 1
    assert "end_of_term=false" in cancels[0]["body"]
    assert "credit_option_for_current_term_charges=none" in cancels[0]["body"]


# --- churn and support context ----------------------------------------------------------------------


def test_list_customers_walks_the_book_oldest_first(site: Site) -> None:
    uid = _uid()
    base = int(time.time()) - 5_000 * DAY  # older than anyone else on this site
    ids = [f"book-{uid}-{i:03d}" for i in range(250)]
    site.seed(
        {
            "customers": [
                {"id": cid, "company": f"Book {i}", "created_at": base + i}
                for i, cid in enumerate(ids)
            ]
        }
    )
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = site.billing.list_customers(cursor, limit=100)
        pages += 1
        seen += [c.id for c in page.customers]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages >= 3
    assert len(seen) == len(set(seen))
    assert seen[:250] == ids  # oldest first, nothing skipped or repeated across pages


def test_customer_snapshot_reads_everything_churn_and_support_need(site: Site) -> None:
    uid = _uid()
    c = site.billing.client
    site.at(120)
    cust = site.billing.create_customer(_draft(uid, net_term_days=None))
    items = [
        {"item_price_id": "core-USD-monthly", "quantity": 1},
        {"item_price_id": "seat-USD-monthly", "quantity": 25},
        {"item_price_id": METERED, "quantity": 1},
    ]
    sub_id = c.Subscription.create_with_items(
        cust.id, {"subscription_items": items}
    ).subscription.id
    inv_old = c.Invoice.list({"subscription_id": {"is": sub_id}}).list[0].invoice.id

    def seats(n: int, days_ago: float) -> None:
        site.at(days_ago)
        c.Subscription.update_for_items(
            sub_id, {"subscription_items": [{"item_price_id": "seat-USD-monthly", "quantity": n}]}
        )

    seats(20, 95)  # a downgrade, but before the 90-day window
    seats(5, 10)  # the downgrade that counts (its baseline is the change at -95 d)
    seats(8, 5)  # an upgrade
    site.at(0)
    for days_ago, qty in ((10, "100"), (20, "50"), (40, "30")):
        c.Usage.create(
            sub_id,
            {
                "item_price_id": METERED,
                "quantity": qty,
                "usage_date": int(time.time() - days_ago * DAY),
            },
        )
    seeded = site.seed(
        {
            "invoices": [
                {
                    "id": f"INV-{uid}-{n}",
                    "customer_id": cust.id,
                    "subscription_id": sub_id,
                    "total": 82_001,
                    "status": "payment_due",
                    "date": int(time.time()) - n * 30 * DAY,
                }
                for n in (1, 2)
            ],
            "transactions": [
                {
                    "invoice_id": f"INV-{uid}-1",
                    "status": "failure",
                    "error_code": "insufficient_funds",
                    "date": int(time.time()) - DAY,
                },
                {
                    "invoice_id": f"INV-{uid}-2",
                    "status": "success",
                    "date": int(time.time()) - 50 * DAY,
                },
            ],
        }
    )
    assert len(seeded["invoices"]) == 2
    site.billing.apply_credit(cust.id, 2_500, "USD", "goodwill", f"rb-credit-{uid}")
    # a retention coupon lowers MRR but is not the customer downgrading
    site.billing.apply_discount(sub_id, 10, 3, f"rb-offer-{uid}")

    snap = site.billing.customer_snapshot(cust.id, invoices=3)

    [sub] = snap.subscriptions
    monthly = 50_000 + 8 * 4_000 + 1  # core + 8 seats + the metered add-on's base
    assert sub.mrr == round(monthly * 0.9) and sub.discount_percent == 10
    assert (sub.plan, sub.quantity, sub.status) == ("core-USD-monthly", 1, "active")
    # the sandbox runs no renewal jobs: the term is the first month after the start 120 days ago
    assert sub.started_at is not None and sub.current_term_end is not None
    assert 27 * DAY <= (sub.current_term_end - sub.started_at).total_seconds() <= 31 * DAY
    assert snap.customer.mrr == sub.mrr and snap.customer.id == cust.id
    assert [i.id for i in snap.invoices] == [f"INV-{uid}-1", f"INV-{uid}-2", inv_old]
    assert [p.succeeded for p in snap.payments[:2]] == [False, True]
    assert snap.payments[0].decline_code == "insufficient_funds"
    assert snap.credit_balance == 2_500
    assert snap.downgrades_90d == 1
    assert (snap.usage_30d, snap.usage_prev_30d) == (150.0, 30.0)


def test_snapshot_without_metered_usage_has_none(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    site.billing.create_subscription(_sub_draft(uid, cust.id))
    snap = site.billing.customer_snapshot(cust.id)
    assert snap.usage_30d is None and snap.usage_prev_30d is None
    assert snap.downgrades_90d == 0 and len(snap.subscriptions) == 1


def test_apply_discount_is_idempotent_and_shows_on_the_subscription(site: Site) -> None:
    uid = _uid()
    cust = site.billing.create_customer(_draft(uid))
    ref = site.billing.create_subscription(
        _sub_draft(
            uid, cust.id, discount_percent=0, lines=[SubscriptionLine(price_id="core-USD-monthly")]
        )
    )
    assert ref.mrr == 50_000
    coupon = site.billing.apply_discount(ref.id, 20, 3, f"rb-retain-{uid}")
    with site.em.lock:
        site.em.store.idempotency.clear()  # a retry long after: the coupon's ID finds it again
    assert site.billing.apply_discount(ref.id, 20, 3, f"rb-retain-{uid}") == coupon

    sub = site.billing.client.Subscription.retrieve(ref.id).subscription
    assert [a.coupon_id for a in sub.coupons] == [coupon]
    assert sub.coupons[0].apply_till > time.time() + 80 * DAY
    assert sub.mrr == 40_000
    made = site.billing.client.Coupon.retrieve(coupon).coupon
    assert (made.duration_type, made.period, made.period_unit) == ("limited_period", 3, "month")
    [snap_sub] = site.billing.customer_snapshot(cust.id).subscriptions
    assert snap_sub.discount_percent == 20 and snap_sub.mrr == 40_000
