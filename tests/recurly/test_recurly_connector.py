"""``connectors.recurly.RecurlyBilling`` against the Recurly sandbox, through the official client:
every protocol method, error classification, pagination, idempotent replay, rate limits."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors import recurly as recurly_connector
from connectors.base import BillingPlatform, ConnectorError, ErrorKind, NotFound
from connectors.recurly import RecurlyBilling
from domain.models import InvoiceStatus, NoteTarget
from domain.records import CustomerDraft, SubscriptionDraft, SubscriptionLine
from domain.settings import RecurlySettings
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import catalog_plans, dunning_seed, price_ref
from sandbox.scenarios import DEMO_CUSTOMERS

KEY = "recurly_connector_test_key"


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[RecurlyEmulator, str]]:
    em = RecurlyEmulator(api_key=KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["recurly"]


@pytest.fixture
def url(server: tuple[RecurlyEmulator, str]) -> str:
    em, base = server
    with em.lock:
        em.ledger.clear()
        em.faults.clear()
        em.reset_state()
        em.rate_limit_per_minute = None
    httpx.post(base + "/_sandbox/seed", json={"plans": catalog_plans()}).raise_for_status()
    return base


@pytest.fixture
def billing(url: str) -> RecurlyBilling:
    return RecurlyBilling(RecurlySettings(api_key=SecretStr(KEY), api_url=url), timeout_s=3.0)


def seed(url: str, data: dict) -> dict:
    resp = httpx.post(url + "/_sandbox/seed", json=data)
    assert resp.status_code == 200, resp.text
    return resp.json()


def fault(url: str, **spec: object) -> None:
    httpx.post(url + "/_sandbox/faults", json=spec).raise_for_status()


def ledger(url: str, method: str | None = None) -> list[dict]:
    q = f"?method={method}" if method else ""
    return httpx.get(url + "/_sandbox/requests" + q).json()["requests"]


def test_is_a_billing_platform(billing: RecurlyBilling) -> None:
    assert isinstance(billing, BillingPlatform)


# --- dunning --------------------------------------------------------------------------------------


def test_invoice_context_retry_note_and_credit(url: str, billing: RecurlyBilling) -> None:
    s = uuid.uuid4().hex[:6]
    seed(url, dunning_seed(DEMO_CUSTOMERS, s))
    ids = DEMO_CUSTOMERS[0].ids(s)
    attempt = billing.retry_payment(ids["invoice"], "rb-k-retry-1")
    assert not attempt.succeeded and attempt.decline_code == "expired_card"
    ctx = billing.get_invoice_context(ids["invoice"])
    assert ctx.invoice.status is InvoiceStatus.OPEN
    assert ctx.invoice.total == DEMO_CUSTOMERS[0].invoice_total
    assert ctx.customer.id == ids["customer"] and ctx.customer.company == "Northwind Analytics"
    assert ctx.customer.mrr == DEMO_CUSTOMERS[0].invoice_total
    assert ctx.last_failure is not None and ctx.last_failure.decline_code == "expired_card"
    assert ctx.last_failure.invoice_id == ids["invoice"]

    note = billing.add_note(NoteTarget.INVOICE, ids["invoice"], "dunning: case opened", "rb-n-1")
    again = billing.add_note(NoteTarget.INVOICE, ids["invoice"], "dunning: case opened", "rb-n-1")
    assert note == again
    assert billing.list_notes(NoteTarget.INVOICE, ids["invoice"]) == ["dunning: case opened"]
    credit = billing.apply_credit(ids["customer"], 1500, "USD", "courtesy", "rb-c-1")
    assert billing.apply_credit(ids["customer"], 1500, "USD", "courtesy", "rb-c-1") == credit
    snap = billing.customer_snapshot(ids["customer"])
    assert snap.credit_balance == 1500

    # the customer fixes the card: the retry pays; a retry after that charges nothing
    httpx.post(f"{url}/_sandbox/recurly/accounts/{ids['customer']}/card", json={})
    assert billing.retry_payment(ids["invoice"], "rb-k-retry-2").succeeded
    collects = len([r for r in ledger(url, "PUT") if r["path"].endswith("/collect")])
    assert billing.retry_payment(ids["invoice"], "rb-k-retry-2").succeeded
    assert len([r for r in ledger(url, "PUT") if r["path"].endswith("/collect")]) == collects
    posts = ledger(url, "POST")
    assert posts and all(r["headers"].get("idempotency-key", "").startswith("rb-") for r in posts)


def test_a_collect_whose_answer_is_lost_is_not_charged_twice(
    url: str, billing: RecurlyBilling
) -> None:
    s = uuid.uuid4().hex[:6]
    seed(url, dunning_seed(DEMO_CUSTOMERS[:1], s))
    ids = DEMO_CUSTOMERS[0].ids(s)
    httpx.post(f"{url}/_sandbox/recurly/accounts/{ids['customer']}/card", json={})
    fault(url, kind="commit_then_timeout", method="PUT", path=".*/collect", delay_s=5)
    with pytest.raises(ConnectorError) as lost:
        billing.retry_payment(ids["invoice"], "rb-k-lost")
    assert lost.value.kind is ErrorKind.RETRYABLE
    assert billing.retry_payment(ids["invoice"], "rb-k-lost").succeeded
    txns = billing.client.list_account_transactions(f"code-{ids['customer']}").items()
    assert [t.status for t in txns] == ["success"]


def test_an_active_dunning_campaign_is_not_fought(url: str, billing: RecurlyBilling) -> None:
    s = uuid.uuid4().hex[:6]
    seed(url, {"campaigns": [{"id": "camp-std", "code": "standard", "default_campaign": True}]})
    seed(url, dunning_seed(DEMO_CUSTOMERS[:1], s))
    ids = DEMO_CUSTOMERS[0].ids(s)
    httpx.post(f"{url}/_sandbox/recurly/invoices/{ids['invoice']}/fail_payment", json={})
    before = len(ledger(url, "PUT"))
    attempt = billing.retry_payment(ids["invoice"], "rb-k-camp")
    assert not attempt.succeeded and "standard" in (attempt.message or "")
    assert len(ledger(url, "PUT")) == before  # no forced collection


# --- errors and rate limits --------------------------------------------------------------------


def test_errors_are_classified(url: str, billing: RecurlyBilling) -> None:
    with pytest.raises(NotFound):
        billing.get_invoice_context("no-such-invoice")
    fault(url, path="/invoices/.*", status=503)
    with pytest.raises(ConnectorError) as unavailable:
        billing.get_invoice_context("x")
    assert unavailable.value.kind is ErrorKind.RETRYABLE
    fault(url, path="/invoices/.*", status=500, body="not json")
    with pytest.raises(ConnectorError) as opaque:
        billing.get_invoice_context("x")
    assert opaque.value.kind is ErrorKind.RETRYABLE
    with pytest.raises(ConnectorError) as invalid:
        billing.apply_credit("nobody-here", 100, "USD", "x", "rb-c-x")
    assert invalid.value.kind is ErrorKind.PERMANENT
    fault(
        url,
        kind="status",
        path="/accounts/.*",
        status=422,
        times=1,
        body={"error": {"type": "simultaneous_request", "message": "busy"}},
    )
    with pytest.raises(ConnectorError) as busy:
        billing.customer_snapshot("anyone")
    assert busy.value.kind is ErrorKind.RETRYABLE


def test_rate_limit_maps_to_retry_after_the_reset(url: str, billing: RecurlyBilling) -> None:
    httpx.post(url + "/_sandbox/recurly/rate_limit", json={"per_minute": 1, "window_s": 60})
    billing.list_customers(limit=1)
    with pytest.raises(ConnectorError) as limited:
        billing.list_customers(limit=1)
    assert limited.value.kind is ErrorKind.RATE_LIMITED
    assert 1.0 <= (limited.value.retry_after or 0) <= 61


# --- quote-to-cash ----------------------------------------------------------------------------


def test_customer_link_subscription_and_compensation(url: str, billing: RecurlyBilling) -> None:
    key = f"rb-q2c-{uuid.uuid4().hex[:8]}-customer"
    draft = CustomerDraft(
        key=key,
        company="Hooli",
        email="ap@hooli.example",
        crm="salesforce",
        crm_account_id="001A",
    )
    made = billing.create_customer(draft)
    assert billing.create_customer(draft) == made  # replay: the same account
    assert billing.find_customer_by_crm("salesforce", "001A") == made
    assert billing.find_customer_by_crm("hubspot", "001A") is None
    found = billing.find_customers("ap@hooli.example", "hooli")
    assert [c.id for c in found] == [made.id]
    billing.client.update_account(f"code-{made.id}", {"billing_info": {"token_id": "tok_visa"}})

    assert billing.get_price(price_ref("RB-CORE")).unit_amount == 50_000
    seat = billing.get_price(price_ref("RB-SEAT"))
    assert seat.unit_amount == 4_000 and seat.period == "month"
    with pytest.raises(NotFound):
        billing.get_price("no-such-plan")

    sdraft = SubscriptionDraft(
        key=f"{key}-sub",
        customer_id=made.id,
        lines=[
            SubscriptionLine(price_id=price_ref("RB-CORE")),
            SubscriptionLine(price_id=price_ref("RB-SEAT"), quantity=10),
        ],
        term_months=12,
        discount_percent=10,
        crm="salesforce",
        crm_opportunity_id="006B",
    )
    ref = billing.create_subscription(sdraft)
    assert ref.created and ref.status == "active"
    assert ref.mrr == round((50_000 + 10 * 4_000) * 0.9)
    again = billing.create_subscription(sdraft)
    assert again.id == ref.id and not again.created
    sub = billing.client.get_subscription(ref.id)
    fields = {f.name: f.value for f in sub.custom_fields}
    assert fields["crm_opportunity_id"] == "006B" and sub.total_billing_cycles == 12

    billing.set_crm_link(made.id, "salesforce", None, "rb-unlink")
    assert billing.find_customer_by_crm("salesforce", "001A") is None
    assert billing.cancel_subscription(ref.id, "rb-cancel", "rolled back") == "expired"
    assert billing.cancel_subscription(ref.id, "rb-cancel", "rolled back") == "expired"
    billing.delete_customer(made.id, "rb-delete")
    billing.delete_customer(made.id, "rb-delete")
    assert billing.client.get_account(f"code-{made.id}").state == "inactive"


def test_a_declined_first_invoice_is_permanent(url: str, billing: RecurlyBilling) -> None:
    made = billing.create_customer(
        CustomerDraft(key="rb-q2c-declined", company="Broke", crm="hubspot", crm_account_id="9")
    )
    billing.client.update_account(
        f"code-{made.id}", {"billing_info": {"token_id": "tok_decline_insufficient_funds"}}
    )
    draft = SubscriptionDraft(
        key="rb-q2c-declined-sub",
        customer_id=made.id,
        lines=[SubscriptionLine(price_id=price_ref("RB-CORE"))],
        crm="hubspot",
        crm_opportunity_id="d1",
    )
    with pytest.raises(ConnectorError) as declined:
        billing.create_subscription(draft)
    assert declined.value.kind is ErrorKind.PERMANENT and declined.value.code == "transaction"


# --- churn and support -------------------------------------------------------------------------


def test_pages_snapshot_downgrades_usage_and_retention_offer(
    url: str, billing: RecurlyBilling
) -> None:
    now = int(datetime.now(UTC).timestamp())
    day = 86_400
    accounts = [
        {"code": f"book-{n:02d}", "company": f"Book {n}", "created_at": now - (100 - n) * day}
        for n in range(7)
    ]
    seed(url, {"accounts": accounts})
    seen, cursor = [], None
    while True:
        page = billing.list_customers(cursor, limit=3)
        seen += [c.id for c in page.customers]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [a["code"] for a in accounts]

    seed(
        url,
        {
            "subscriptions": [
                {
                    "id": "sub-book-00",
                    "account_code": "book-00",
                    "plan_code": "rb-core",
                    "add_ons": [{"code": "seat", "quantity": 10}, {"code": "api-calls"}],
                    "created_at": now - 200 * day,
                }
            ],
            "usage": [
                {
                    "subscription_id": "sub-book-00",
                    "add_on_code": "api-calls",
                    "amount": 100,
                    "usage_timestamp": now - 5 * day,
                },
                {
                    "subscription_id": "sub-book-00",
                    "add_on_code": "api-calls",
                    "amount": 400,
                    "usage_timestamp": now - 40 * day,
                },
            ],
            "invoices": [
                {
                    "account_code": "book-00",
                    "subscription_id": "sub-book-00",
                    "total": 900,
                    "state": "past_due",
                    "decline_code": "insufficient_funds",
                    "created_at": now - 3 * day,
                },
            ],
        },
    )
    billing.client.create_subscription_change(
        "sub-book-00",
        {"timeframe": "now", "add_ons": [{"code": "seat", "quantity": 4}, {"code": "api-calls"}]},
    )
    snap = billing.customer_snapshot("book-00")
    assert snap.downgrades_90d == 1
    assert (snap.usage_30d, snap.usage_prev_30d) == (100.0, 400.0)
    assert snap.subscriptions[0].mrr == 50_000 + 4 * 4_000
    assert snap.invoices and snap.payments[0].decline_code == "insufficient_funds"

    code = billing.apply_discount("sub-book-00", 20, 3, "rb-churn-offer-1")
    assert billing.apply_discount("sub-book-00", 20, 3, "rb-churn-offer-1") == code
    after = billing.customer_snapshot("book-00")
    assert after.subscriptions[0].discount_percent == 20
    assert after.downgrades_90d == 1  # a coupon lowers MRR but is not a downgrade


def test_a_future_start_date_makes_a_future_subscription(url: str, billing: RecurlyBilling) -> None:
    from datetime import date, timedelta

    made = billing.create_customer(
        CustomerDraft(key="rb-q2c-future", company="Later Inc", crm="hubspot", crm_account_id="7")
    )
    start = date.today() + timedelta(days=20)
    ref = billing.create_subscription(
        SubscriptionDraft(
            key="rb-q2c-future-sub",
            customer_id=made.id,
            lines=[SubscriptionLine(price_id=price_ref("RB-CORE"))],
            start_date=start,
            net_term_days=30,
            crm="hubspot",
            crm_opportunity_id="d7",
        )
    )
    assert ref.status == "future"
    sub = billing.client.get_subscription(ref.id)
    assert sub.current_period_started_at.date() == start and sub.collection_method == "manual"
    assert list(billing.client.list_subscription_invoices(ref.id).items()) == []


def test_an_account_without_billing_info_is_invoiced_not_declined(
    url: str, billing: RecurlyBilling
) -> None:
    made = billing.create_customer(
        CustomerDraft(key="rb-q2c-nocard", company="No Card", crm="hubspot", crm_account_id="8")
    )
    ref = billing.create_subscription(
        SubscriptionDraft(
            key="rb-q2c-nocard-sub",
            customer_id=made.id,
            lines=[SubscriptionLine(price_id=price_ref("RB-CORE"))],
            crm="hubspot",
            crm_opportunity_id="d8",
        )
    )
    assert ref.status == "active"
    [invoice] = billing.client.list_subscription_invoices(ref.id).items()
    assert (invoice.state, invoice.collection_method) == ("pending", "manual")


def test_a_connection_idle_past_the_servers_keep_alive_is_renewed(
    url: str, billing: RecurlyBilling
) -> None:
    """The client's one connection is kept alive between calls, and renewed after an idle spell
    (servers close idle connections: the first request on a closed one failed and waited out an
    activity retry)."""

    def plans() -> Any:
        return billing._call(lambda c: c.list_plans(params={"limit": 1}).first(), "plans")

    conn = billing.client._BaseClient__conn
    plans()
    first = conn.sock
    plans()
    assert first is not None and conn.sock is first  # back to back: the same connection
    billing._last_call -= recurly_connector.IDLE_RECONNECT_S + 1  # as if idle that long
    plans()
    assert conn.sock is not None and conn.sock is not first
    assert [r["status"] for r in ledger(url, "GET")][-3:] == [200, 200, 200]
