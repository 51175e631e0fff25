"""The backfill on Stripe, Zuora and Recurly, each × Salesforce and × HubSpot, on sandboxes of its
own (Chargebee: test_backfill.py): a dry run writes nothing; exact
(email — on HubSpot a contact's —, domain), fuzzy (name) and linked-already customers are linked,
ambiguous ones reported for a person; interrupted by a bulk write that commits and then answers
an error (an sObject Collections PATCH, 200 links a call; a ``companies/batch/update``, 100), it
resumes and writes each remaining link once (test_backfill.py ``interrupted_and_resumed``); the
book is read by list pages (one call per page: Stripe ``starting_after``, Zuora Object Query,
Recurly ``GET /accounts``), never one call per customer, and nothing is created on either side;
a last run writes nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.sync import backfill
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.recurly import RecurlyEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from sandbox.zuora import ZuoraEmulator
from tests.pairs import (
    HS_SECRET,
    HS_TOKEN,
    RECURLY_KEY,
    RECURLY_SECRET,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    ZUORA_ID,
    ZUORA_SECRET,
    Pair,
    pair_settings,
)
from tests.sync.book import Book, make_book
from tests.sync.test_backfill import (
    BATCH_UPDATE,
    BULK,
    companies,
    crm_links,
    crm_writes,
    interrupted_and_resumed,
    writes,
)

#: the book's size on each CRM: every kind ``domain/linking.py`` decides, N/5 customers each (a
#: book under 200's made-up names are too alike for the name match to be clearly ahead), over
#: pages; 2N/5 to link, so the interrupted first bulk write (200 on Salesforce, 100 on HubSpot)
#: leaves 40 (20) for the resume
N = {"salesforce": 400, "hubspot": 200}
#: how each vendor lists its book (method, path): what the backfill may call in billing
LISTS = {
    "stripe": ("GET", "/v1/customers"),
    "zuora": ("GET", "/object-query/accounts"),
    "recurly": ("GET", "/accounts"),
}


def seed_of(book: Book, billing: str) -> dict[str, Any]:
    """The book's customers in the vendor's seed shape."""
    rows = []
    for c in book.customers:
        if billing == "recurly":
            row = {"code": c["id"], "company": c["company"]}
        else:
            row = {"id": c["id"], "name": c["company"]}
        if c.get("email"):
            row["email"] = c["email"]
        rows.append(row)
    return {"accounts" if billing in ("zuora", "recurly") else "customers": rows}


def emulator(billing: str) -> Any:
    if billing == "stripe":
        return StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    if billing == "zuora":
        return ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    return RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )


def crm_emulator(crm: str) -> Any:
    if crm == "hubspot":
        return HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    return SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)


@pytest.fixture(
    scope="module",
    params=[(b, c) for c in ("salesforce", "hubspot") for b in ("stripe", "zuora", "recurly")],
    ids=lambda p: f"{p[0]}-{p[1]}",
)
async def books(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    billing, crm = request.param
    with ServerThread({emulator(billing): 0, crm_emulator(crm): 0}) as thread:
        urls = {**sandbox_urls, **thread.urls}
        queue = f"revbridge-sync-backfill-{billing}" + ("-hubspot" if crm == "hubspot" else "")
        settings = pair_settings(urls, billing, crm, queue)
        os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
        pair = Pair.build(settings, urls, "")
        async with build_worker(temporal_env.client, pair.billing, pair.crm, task_queue=queue):
            yield pair


def ledger(pair: Pair, side: str) -> list[dict[str, Any]]:
    rows = httpx.get(pair.urls[side] + "/_sandbox/requests").json()["requests"]
    return [r for r in rows if r["path"] != "/oauth/token"]


async def test_the_book_is_linked_from_list_pages(books: Pair) -> None:
    pair, billing, crm = books, books.settings.billing, books.settings.crm
    n = N[crm]
    book = make_book(n, f"b{'h' if crm == 'hubspot' else 'v'}{billing[:2]}", billing=billing)
    httpx.post(
        pair.urls[billing] + "/_sandbox/seed", json=seed_of(book, billing), timeout=60
    ).raise_for_status()
    crm_seed = book.hubspot_seed() if crm == "hubspot" else book.salesforce_seed()
    httpx.post(pair.urls[crm] + "/_sandbox/seed", json=crm_seed, timeout=60).raise_for_status()
    billing_calls = len(ledger(pair, billing))
    n_companies = len(companies(pair)) if crm == "hubspot" else 0

    dry = await backfill(pair.settings, dry_run=True, progress=False)
    assert dry.dry_run and dry.written == 0
    for kind in ("email", "domain", "name"):
        assert dry.counts[kind] == book.expected(kind), (kind, dry.counts)
    assert dry.linked_already == book.expected("linked")
    assert dry.counts["review"] == book.expected("ambiguous") == len(dry.review)
    assert not crm_writes(pair)
    if crm == "hubspot":
        assert dry.crm_reads == -(-n_companies // 100)

    # interrupted after the first bulk write, resumed for the rest
    done = await interrupted_and_resumed(pair, book)
    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    assert done.written == to_link - BULK[crm][2] and done.bulk_calls == 1
    if crm == "hubspot":
        paths = writes(pair)
        assert paths.count(BATCH_UPDATE) == 1 + 1  # the interrupted one, then the resume's
        assert paths.count("/crm/v3/objects/notes") == done.bulk_calls
        assert len(paths) == paths.count(BATCH_UPDATE) + done.bulk_calls, paths
    else:
        links, _ = crm_links(pair)
        assert len(links) == to_link + book.expected("linked")
    # billing was only listed, a page (up to 99-100 customers) a call, and nothing written: each
    # of the three runs (dry, interrupted, resumed) read the whole book once
    calls = ledger(pair, billing)[billing_calls:]
    assert {(r["method"], r["path"]) for r in calls} == {LISTS[billing]}
    assert len(calls) == dry.billing_reads + 2 * done.billing_reads
    assert dry.billing_reads == done.billing_reads
    assert done.billing_reads <= n // 99 + 1 + (billing == "stripe")  # Stripe: a last empty page

    again = await backfill(pair.settings, dry_run=False, progress=False)
    assert again.written == 0 and again.linked_already == to_link + book.expected("linked")
