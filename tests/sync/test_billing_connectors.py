"""The account sync's Zuora and Recurly connectors against their sandboxes, through the client
shape each uses (the Zuora REST shape of connectors/zuora.py; the official ``recurly`` client):
the golden fields read in a fixed number of calls, field sets written (and read back), and the
book listed by pages — one call per page, never one per customer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from connectors.registry import build_billing
from connectors.sync import sync_billing
from harness.drivers import RecurlyDriver, ZuoraDriver
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.scenarios import DunningCustomer
from sandbox.zuora import ZuoraEmulator
from tests.pairs import RECURLY_KEY, RECURLY_SECRET, ZUORA_ID, ZUORA_SECRET, pair_settings

VENDORS = ("zuora", "recurly")


@pytest.fixture(scope="module")
def tenants() -> Iterator[dict[str, str]]:
    z = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    r = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )
    with ServerThread({z: 0, r: 0}) as thread:
        yield thread.urls


def connector(urls: dict[str, str], vendor: str) -> tuple[Any, Any]:
    others = {k: "http://127.0.0.1:9" for k in ("chargebee", "stripe", "salesforce", "hubspot")}
    billing = build_billing(pair_settings({**others, **urls}, vendor, "salesforce", "unused"))
    driver = (ZuoraDriver if vendor == "zuora" else RecurlyDriver)(urls[vendor], billing)
    return billing, driver


def ledger(url: str) -> list[dict[str, Any]]:
    """The vendor API calls (Zuora's OAuth token requests are not API calls: billing-apis.md §3f)."""
    rows = httpx.get(url + "/_sandbox/requests").json()["requests"]
    return [r for r in rows if r["path"] != "/oauth/token"]


def customer(key: str) -> DunningCustomer:
    return DunningCustomer(
        key, f"{key.title()} Analytics", "SMB", "team-monthly", 4_900, 5, 400, None
    )


@pytest.mark.parametrize("vendor", VENDORS)
def test_view_write_and_read_back(tenants: dict[str, str], vendor: str, uid: str) -> None:
    billing, driver = connector(tenants, vendor)
    c = customer("view")
    driver.seed((c,), uid)
    cid = c.ids(uid)["customer"]
    sync = sync_billing(billing)
    before = len(ledger(tenants[vendor]))
    view = sync.sync_view(cid)
    calls = len(ledger(tenants[vendor])) - before
    assert view["account_name"] == "View Analytics"
    assert view["plan"] in ("PRP-TEAM-MONTHLY", "team-monthly")
    assert view["mrr"] == 5 * 4_900 and view["arr"] == 12 * 5 * 4_900
    assert view["subscription_status"] == "active" and view["payment_health"] == "ok"
    assert len(view["next_renewal"]) == 10 and "billing_contact" in view
    # account, subscriptions (+ Zuora's due invoices; Recurly's plan interval once per plan)
    assert calls <= 3, calls

    addr = {"line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"}
    sync.sync_write(
        cid,
        {
            "account_name": "View Renamed",
            "billing_contact": "ap@view.example",
            "billing_contact_name": "Ada Lovelace",
            "billing_address": addr,
        },
        "rb-k",
    )
    again = sync.sync_view(cid)
    assert again["account_name"] == "View Renamed" and again["billing_contact"] == "ap@view.example"
    assert again["billing_contact_name"] == "Ada Lovelace" and again["billing_address"] == addr
    # one call for every field (the account with its contact and address)
    writes = [r for r in ledger(tenants[vendor]) if r["method"] == "PUT"]
    assert len(writes) == 1
    # a one-word name and a changed address part read back as written
    sync.sync_write(
        cid, {"billing_contact_name": "Ada", "billing_address": {**addr, "line2": "Unit 4"}}, "rb-2"
    )
    renamed = sync.sync_view(cid)
    assert renamed["billing_contact_name"] == "Ada"
    assert renamed["billing_address"] == {**addr, "line2": "Unit 4"}
    sync.sync_write(cid, {"billing_contact_name": "Ada Lovelace", "billing_address": addr}, "rb-3")
    again = sync.sync_view(cid)
    # a field set: written twice, the same record
    sync.sync_write(cid, {"billing_contact": "ap@view.example"}, "rb-k")
    assert sync.sync_view(cid) == again


def test_zuora_payment_health_fails_on_a_due_invoice(tenants: dict[str, str], uid: str) -> None:
    billing, driver = connector(tenants, "zuora")
    c = customer("due")
    driver.seed((c,), uid)
    ids = c.ids(uid)
    sync = sync_billing(billing)
    assert sync.sync_view(ids["customer"])["payment_health"] == "ok"  # Net 30: not due yet
    billing.request("PUT", f"/v1/invoices/{ids['invoice']}", json={"dueDate": "2026-01-01"})
    assert sync.sync_view(ids["customer"])["payment_health"] == "failing"


def test_recurly_payment_health_fails_on_a_past_due_invoice(
    tenants: dict[str, str], uid: str
) -> None:
    billing, driver = connector(tenants, "recurly")
    c = customer("pastdue")
    driver.seed((c,), uid)
    ids = c.ids(uid)
    inv = billing.client.list_account_invoices(f"code-{ids['customer']}").first()
    httpx.post(
        f"{tenants['recurly']}/_sandbox/recurly/invoices/{inv.id}/fail_payment", json={}
    ).raise_for_status()
    assert sync_billing(billing).sync_view(ids["customer"])["payment_health"] == "failing"


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_book_is_read_by_pages(tenants: dict[str, str], vendor: str, uid: str) -> None:
    billing, driver = connector(tenants, vendor)
    keys = [f"bk{i}" for i in range(5)]
    driver.seed(tuple(customer(k) for k in keys), uid)
    wanted = {customer(k).ids(uid)["customer"] for k in keys}
    sync = sync_billing(billing)
    before = len(ledger(tenants[vendor]))
    seen: set[str] = set()
    cursor, pages = None, 0
    while True:
        parties, cursor = sync.sync_parties(cursor, 2)
        pages += 1
        seen |= {p.id for p in parties}
        assert all(p.company for p in parties)
        if not cursor:
            break
    assert wanted <= seen
    lists = [r for r in ledger(tenants[vendor])[before:] if r["method"] == "GET"]
    # one call per page of two, whatever the book holds: no read per customer
    assert len(lists) == pages and pages >= (len(seen) + 1) // 2


@pytest.mark.parametrize("vendor", VENDORS)
def test_health_inputs_come_with_the_view(tenants: dict[str, str], vendor: str, uid: str) -> None:
    """``sync_view_health``: the same view, the account's age, its seats, and — after a
    declined collection — the failed attempt and the invoice in dunning; without ``payments``
    the attempts are not read (one call fewer)."""
    billing, driver = connector(tenants, vendor)
    c = DunningCustomer(
        "health", "Health Analytics", "SMB", "team-monthly", 4_900, 5, 400, "card_declined"
    )
    driver.seed((c,), uid)
    ids = c.ids(uid)
    sync = sync_billing(billing)
    view, health = sync.sync_view_health(ids["customer"])
    assert view == sync.sync_view(ids["customer"])
    assert health.seats == 5 and health.currency == "USD" and health.payments_read
    assert health.customer_since is not None and health.customer_since < view["next_renewal"]
    assert (health.payments_failed, health.open_dunning) == (0, 0)
    if vendor == "zuora":
        driver.decline(ids["invoice"])  # collect now: the card declines
        billing.request("PUT", f"/v1/invoices/{ids['invoice']}", json={"dueDate": "2026-01-01"})
    else:
        inv = billing._call(
            lambda c: c.list_account_invoices(f"code-{ids['customer']}").first(), "invoice"
        )
        httpx.post(
            f"{tenants['recurly']}/_sandbox/recurly/invoices/{inv.id}/fail_payment", json={}
        ).raise_for_status()
    view, health = sync.sync_view_health(ids["customer"])
    assert view["payment_health"] == "failing"
    assert health.payments_failed >= 1 and health.open_dunning == 1
    before = len(ledger(tenants[vendor]))
    _, skipped = sync.sync_view_health(ids["customer"], payments=False)
    assert not skipped.payments_read and skipped.payments_failed == 0
    assert len(ledger(tenants[vendor])) - before < 4  # the view's reads (+ Recurly's dunning)
