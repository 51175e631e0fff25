"""The churn sweep's bulk page read on Chargebee: a page of customers through ``[in]`` filters
(the official client against the sandbox) gives the same snapshots as one customer at a time, in a
handful of requests for the whole page instead of several per customer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import unquote

import httpx
import pytest

from connectors import limits
from connectors.chargebee import ChargebeeBilling
from connectors.registry import build_billing
from domain.churn import signals_from
from sandbox import books
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.stripe import StripeEmulator
from tests.pairs import CB_KEY, RECURLY_KEY, STRIPE_KEY, STRIPE_SECRET, pair_settings

N = 120  # more than one [in] chunk of 100


@pytest.fixture(scope="module", autouse=True)
def _unpaced() -> Iterator[None]:
    """These count calls against sandboxes whose limits are off: a session worker's pacing of
    the same vendors in this process (a production share) only made them wait (75 s for
    Recurly's page in the suite, 2 s alone)."""
    vendors = ("chargebee", "stripe", "stripe.search", "recurly", "zuora", "salesforce")
    with limits.unpaced(*vendors):
        yield


@pytest.fixture(scope="module")
def seeded() -> Iterator[tuple[ChargebeeBilling, str, books.Book]]:
    em = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        url = dict(thread.urls)["chargebee"]
        book = books.book(N, prefix="bulk")
        httpx.post(url + "/_sandbox/seed", json=books.chargebee_seed(book), timeout=60)
        urls = {
            "chargebee": url,
            "stripe": "http://127.0.0.1:9",
            "salesforce": "http://127.0.0.1:9",
        }
        urls["hubspot"] = "http://127.0.0.1:9"
        billing = build_billing(pair_settings(urls, "chargebee", "salesforce", "unused"))
        assert isinstance(billing, ChargebeeBilling)
        # seeded subscriptions have no creation event: the first change is the baseline, the
        # second (one seat fewer) the downgrade the event log shows
        for sub_id, price, quantity in books.chargebee_downgrades(book):
            for q in (quantity + 1, quantity):
                billing.client.Subscription.update_for_items(
                    sub_id, {"subscription_items": [{"item_price_id": price, "quantity": q}]}
                )
        yield billing, url, book


def by_id_sub(book: books.Book, customer_id: str) -> str:
    return next(c.subscription_id for c in book.customers if c.id == customer_id)


def ledger(url: str) -> list[dict]:
    return httpx.get(url + "/_sandbox/requests").json()["requests"]


def test_a_page_reads_only_what_the_score_uses_in_four_requests(
    seeded: tuple[ChargebeeBilling, str, books.Book],
) -> None:
    """Issue 15, ≤ 1 vendor call per 20 customers: a listed page of 100 costs the list, the
    subscriptions, the failed payments (their invoices' status rides on ``linked_invoices``)
    and the usage — 4 Chargebee calls, the CRM's one SOQL making 5 (and one coupons list when
    subscriptions carry coupons) — plus the event log once per sweep. Every customer's score
    is the one-at-a-time snapshot's (both take the MRR baseline from the event log)."""
    from domain import churn

    billing, url, book = seeded
    billing.customer_snapshots([book.customers[0].id])  # the sweep's event log, read once
    page = billing.list_customers(limit=100)
    ids = [c.id for c in page.customers]
    assert len(ids) == 100
    offered = ids[:2]  # retention offers: a coupon of its own each
    for cid in offered:
        billing.apply_discount(by_id_sub(book, cid), 10, 3, f"bulk-offer-{cid}")
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    bulk = billing.customer_snapshots(ids)
    calls = ledger(url)
    assert "nobody" not in billing.customer_snapshots(["nobody"])  # not listed: read by ID
    paths = sorted(c["path"] for c in calls)
    # the coupons the page's subscriptions carry: one id[in] list, not one read each
    assert paths == [
        "/api/v2/coupons",
        "/api/v2/subscriptions",
        "/api/v2/transactions",
        "/api/v2/usages",
    ], paths
    assert all(bulk[cid].subscriptions[0].discount_percent == 10 for cid in offered)
    assert all("[in]" in unquote(c["query"]) for c in calls)
    txn = next(c for c in calls if c["path"] == "/api/v2/transactions")
    assert "status[is]=failure" in unquote(txn["query"])
    assert set(bulk) == set(ids)
    now = datetime.now(UTC)
    by_id = {c.id: c for c in book.customers}
    for cid in ids:
        one = billing.customer_snapshot(cid)
        mine = churn.signals_from(bulk[cid], None, [], now)
        assert mine == churn.signals_from(one, None, [], now), cid
        assert all(not p.succeeded for p in bulk[cid].payments)
        if by_id[cid].downgrade_by:  # the value before the window's downgrade: one seat more
            assert mine.baseline_mrr > mine.mrr, cid
        else:
            assert mine.baseline_mrr == mine.mrr, cid
    failing = {c.id for c in book.customers if c.failures and c.id in bulk}
    assert {cid for cid, s in bulk.items() if s.payments} == failing
    unpaid = {c.id for c in book.customers if c.failures and c.unpaid and c.id in bulk}
    assert {
        cid for cid in bulk if churn.signals_from(bulk[cid], None, [], now).unrecovered_failures
    } == unpaid
    assert sum(s.downgrades_90d for s in bulk.values()) == sum(
        1 for c in book.customers if c.downgrade_by and c.id in bulk
    )


def test_stripe_reads_a_page_from_one_walk_of_each_list_per_sweep() -> None:
    """Stripe's lists filter by one customer only: the page's snapshots come from one walk per
    sweep of the account's subscriptions, invoices, payment intents and events (none filtered
    by customer) and the customers the page listed, equal to one customer at a time."""
    import stripe

    st = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    with ServerThread({st: 0}) as thread:
        url = dict(thread.urls)["stripe"]
        book = books.book(30, prefix="stb")
        httpx.post(url + "/_sandbox/seed", json=books.stripe_seed(book), timeout=60)
        urls = {"stripe": url, "chargebee": "http://127.0.0.1:9", "hubspot": "http://127.0.0.1:9"}
        urls["salesforce"] = "http://127.0.0.1:9"
        billing = build_billing(pair_settings(urls, "stripe", "salesforce", "unused"))
        ids = [c.id for c in book.customers]
        downgraded = [c for c in book.customers if c.downgrade_by][:3] or book.customers[:1]
        for c in downgraded:  # Stripe records a downgrade as a subscription.updated event
            (sub,) = billing.client.v1.subscriptions.list({"customer": c.id}).data
            item = sub["items"]["data"][0]
            billing.client.v1.subscriptions.update(
                sub.id, {"items": [{"id": item.id, "quantity": max(1, item.quantity - 1)}]}
            )
        for invoice_id, attempts in books.stripe_failed_attempts(book):
            for _ in range(attempts):  # the card declines: a failed payment intent
                with contextlib.suppress(stripe.CardError):
                    billing.client.v1.invoices.pay(invoice_id)
        page = billing.list_customers(limit=100)  # a new pass over the book
        assert {c.id for c in page.customers} == set(ids)
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        bulk = billing.customer_snapshots(ids)
        calls = ledger(url)
        again = billing.customer_snapshots(ids[:5])  # the next page of the same sweep
        calls_again = ledger(url)[len(calls) :]
        one_by_one = {cid: billing.customer_snapshot(cid) for cid in ids}
    assert bulk == one_by_one
    assert all(again[cid] == one_by_one[cid] for cid in ids[:5])
    assert any(s.downgrades_90d for s in bulk.values())
    failing = {c.id for c in book.customers if c.failures}
    assert {cid for cid, s in bulk.items() if any(not p.succeeded for p in s.payments)} == failing
    paths = sorted(c["path"] for c in calls)
    assert paths == ["/v1/events", "/v1/invoices", "/v1/payment_intents", "/v1/subscriptions"]
    assert all("customer=" not in unquote(c["query"]) for c in calls)
    assert calls_again == []  # the walks serve the whole sweep


def test_recurly_reads_a_page_from_one_walk_of_each_site_list_per_sweep() -> None:
    """Recurly's site lists cannot filter by account: the page's snapshots come from one walk
    per sweep of subscriptions, invoices, payment transactions and line items (the site's own
    ``GET /line_items``), grouped by account code, equal to one customer at a time."""
    from sandbox.recurly import RecurlyEmulator
    from sandbox.recurly.seeding import book_seed

    em = RecurlyEmulator(api_key=RECURLY_KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        url = dict(thread.urls)["recurly"]
        book = books.book(40, prefix="rcb")
        httpx.post(url + "/_sandbox/seed", json=book_seed(book), timeout=60).raise_for_status()
        urls = {"recurly": url}
        for other in ("chargebee", "stripe", "salesforce", "hubspot"):
            urls[other] = "http://127.0.0.1:9"
        billing = build_billing(pair_settings(urls, "recurly", "salesforce", "unused"))
        ids = [c.id for c in billing.list_customers(limit=200).customers]
        assert set(ids) == {c.id for c in book.customers}
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        bulk = billing.customer_snapshots([*ids, "nobody"])
        calls = ledger(url)
        again = billing.customer_snapshots(ids[:5])
        calls_again = ledger(url)[len(calls) :]
        one_by_one = {cid: billing.customer_snapshot(cid) for cid in ids}
    assert set(bulk) == set(one_by_one)  # the unknown account is absent, as one at a time
    now = datetime.now(UTC)
    for cid, one in one_by_one.items():  # the same score: only the failed payments are read
        assert signals_from(bulk[cid], None, [], now) == signals_from(one, None, [], now), cid
        assert bulk[cid].payments == [p for p in one.payments if not p.succeeded], cid
        assert bulk[cid].model_dump(exclude={"payments", "baseline_mrr"}) == one.model_dump(
            exclude={"payments"}
        )
    assert all(again[cid] == bulk[cid] for cid in ids[:5])
    assert sum(s.downgrades_90d for s in bulk.values()) == sum(
        1 for c in book.customers if c.downgrade_by
    )
    failing = {c.id for c in book.customers if c.failures}
    assert {cid for cid, s in bulk.items() if s.payments} == failing
    (txns,) = [c for c in calls if c["path"] == "/transactions"]
    assert "success=false" in unquote(txns["query"])
    plans = [c for c in calls if c["path"].startswith("/plans/")]
    assert len(plans) <= len(books.PLANS)  # each plan read once for its billing period
    paths = sorted(c["path"] for c in calls if c not in plans)
    assert paths == [
        "/accounts/code-nobody",  # not on the listed page: read alone (404)
        "/invoices",
        "/line_items",
        "/line_items",
        "/subscriptions",
        "/transactions",
    ], paths
    assert calls_again == []


def test_zuora_reads_a_page_with_object_query_in_filters() -> None:
    """Zuora: the page's accounts, subscriptions (with rate plans and charges), unpaid invoices
    (with their items' subscriptions), failed payments and usage are Object Query reads with
    ``accountId.IN`` / ``id.IN`` for the whole page — nothing per customer — and score as one
    customer at a time does; the orders are walked once."""
    from harness.drivers import ZuoraDriver
    from sandbox.zuora import ZuoraEmulator
    from sandbox.zuora.scenarios import book_downgrades, book_seed
    from tests.pairs import ZUORA_ID, ZUORA_SECRET

    em = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    with ServerThread({em: 0}) as thread:
        url = dict(thread.urls)["zuora"]
        book = books.book(30, prefix="zb")
        httpx.post(url + "/_sandbox/seed", json=book_seed(book), timeout=60).raise_for_status()
        urls = {"zuora": url}
        for other in ("chargebee", "stripe", "salesforce", "hubspot"):
            urls[other] = "http://127.0.0.1:9"
        billing = build_billing(pair_settings(urls, "zuora", "salesforce", "unused"))
        driver = ZuoraDriver(url, billing)  # type: ignore[arg-type]
        for number, quantity in book_downgrades(book):
            driver.downgrade(number, quantity)
        ids = [c.id for c in book.customers]
        billing.apply_credit(ids[0], 1234, "USD", "goodwill", "bulk-zuora-credit")  # a memo
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        bulk = billing.customer_snapshots([*ids, "nobody"])
        calls = [c for c in ledger(url) if c["path"] != "/oauth/token"]
        one_by_one = {cid: billing.customer_snapshot(cid) for cid in ids}
    assert set(bulk) == set(one_by_one)
    now = datetime.now(UTC)
    for cid, one in one_by_one.items():  # the same score from the failed payments and the
        # unpaid invoices only
        assert signals_from(bulk[cid], None, [], now) == signals_from(one, None, [], now), cid
        assert bulk[cid].payments == [p for p in one.payments if not p.succeeded], cid
        assert bulk[cid].invoices == [i for i in one.invoices if i.amount_due > 0], cid
        assert bulk[cid].model_dump(
            exclude={"payments", "invoices", "baseline_mrr", "credit_balance"}
        ) == one.model_dump(exclude={"payments", "invoices", "credit_balance"})
    assert sum(s.downgrades_90d for s in bulk.values()) == len(book_downgrades(book))
    failing = {c.id for c in book.customers if c.failures}
    assert {cid for cid, s in bulk.items() if any(not p.succeeded for p in s.payments)} == failing
    queries = [c for c in calls if c["path"].startswith("/object-query/")]
    # nothing per customer (issue 15): the subscriptions with their rate plans and charges, and
    # an unpaid invoice's subscription, come from Object Query expansions for the whole page
    assert sorted(c["path"] for c in queries) == [
        "/object-query/accounts",  # "nobody" was not on a listed page: read by ID
        "/object-query/invoices",
        "/object-query/payments",
        "/object-query/subscriptions",
        "/object-query/usages",
    ]
    assert all(".IN:" in unquote(c["query"]) for c in queries)
    query = {c["path"]: unquote(c["query"]) for c in queries}
    assert "status.EQ:Error" in query["/object-query/payments"]
    assert "balance.GT:0" in query["/object-query/invoices"]
    # the orders walked once for the page (and the sweep: GET /v1/orders by order date)
    assert [c["path"] for c in calls].count("/v1/orders") == 1
    assert len(calls) == len(queries) + 1, sorted(c["path"] for c in calls)
    assert any(sub.cancel_at for snap in bulk.values() for sub in snap.subscriptions)
    assert any(inv.subscription_id for snap in bulk.values() for inv in snap.invoices)
    # the credit memo is the per-customer snapshot's (support context): the sweep does not read it
    assert sum(s.credit_balance for s in one_by_one.values()) > 0


def test_recurly_steady_sweep_costs_at_most_one_call_per_20_customers() -> None:
    """Issue 15 on Recurly: a sweep over 500 accounts (the plans aside: each is read once per
    process) lists them 200 a page (Recurly's limit; the sweep's CRM read is one per page too) and
    walks each site list once at 200 a page, the payments failed only: with the CRM's one read
    per page, at most 25 calls (1.0 per 20 customers)."""
    from sandbox.recurly import RecurlyEmulator
    from sandbox.recurly.seeding import book_seed

    n = 500
    em = RecurlyEmulator(api_key=RECURLY_KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        url = dict(thread.urls)["recurly"]
        book = books.book(n, prefix="rcs")
        httpx.post(url + "/_sandbox/seed", json=book_seed(book), timeout=120).raise_for_status()
        urls = {"recurly": url}
        for other in ("chargebee", "stripe", "salesforce", "hubspot"):
            urls[other] = "http://127.0.0.1:9"
        billing = build_billing(pair_settings(urls, "recurly", "salesforce", "unused"))

        def sweep() -> tuple[int, int]:
            cursor, pages, seen = None, 0, 0
            while True:
                page = billing.list_customers(cursor, billing.sweep_page_size)  # type: ignore[attr-defined]
                pages += 1
                seen += len(billing.customer_snapshots([c.id for c in page.customers]))
                if not (cursor := page.next_cursor):
                    return pages, seen

        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        pages, seen = sweep()
        # each plan is read once per process for its billing period, not once per sweep
        calls = [c for c in ledger(url) if not c["path"].startswith("/plans/")]
    assert seen == n
    assert pages == 3
    paths = [c["path"] for c in calls]
    assert len(calls) + pages <= n // 20, sorted(paths)
    assert paths.count("/transactions") <= 2
