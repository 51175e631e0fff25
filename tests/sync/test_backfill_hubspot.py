"""The backfill on Chargebee × HubSpot, on sandboxes of its own: a dry run writes nothing; exact
(a contact's email, the company domain), fuzzy (name) and linked-already customers are linked,
ambiguous ones reported for a person; the companies are read by list pages (100 a call, their
contacts' emails one batch read a page), never one call per company; interrupted by a batch
update that commits and then answers an error, it resumes and writes each remaining link once,
one ``companies/batch/update`` per 100 links; and it creates nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.config import CliError
from cli.sync import backfill
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, Pair, pair_settings
from tests.sync.book import make_book

QUEUE = "revbridge-sync-backfill-hubspot"
BATCH_UPDATE = "/crm/v3/objects/companies/batch/update"


@pytest.fixture(scope="module")
async def books(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    cb = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    hs = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    with ServerThread({cb: 0, hs: 0}) as thread:
        urls = {**sandbox_urls, **thread.urls}
        settings = pair_settings(urls, "chargebee", "hubspot", QUEUE)
        os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
        pair = Pair.build(settings, urls, "")
        async with build_worker(temporal_env.client, pair.billing, pair.crm, task_queue=QUEUE):
            yield pair


def companies(pair: Pair) -> dict[str, dict[str, Any]]:
    """Every company's properties by ID (read through the vendor API: its calls are in the
    ledger, so read it only between the windows a test counts)."""
    out: dict[str, dict[str, Any]] = {}
    after: str | None = None
    while True:
        r = httpx.get(
            pair.urls["hubspot"] + "/crm/v3/objects/companies",
            params={
                "limit": 100,
                "properties": "name,billing_customer_id,billing_platform",
                **({"after": after} if after else {}),
            },
            headers={"Authorization": f"Bearer {HS_TOKEN}"},
        )
        r.raise_for_status()
        body = r.json()
        out.update({c["id"]: c["properties"] for c in body["results"]})
        after = (body.get("paging") or {}).get("next", {}).get("after")
        if not after:
            return out


def ledger(pair: Pair, side: str) -> list[dict[str, Any]]:
    return httpx.get(pair.urls[side] + "/_sandbox/requests").json()["requests"]


def writes(pair: Pair) -> list[dict[str, Any]]:
    """Every write to HubSpot's CRM (the links and the audit's notes)."""
    return [
        r
        for r in ledger(pair, "hubspot")
        if r["method"] in ("POST", "PATCH", "PUT")
        and "/crm/" in r["path"]
        and not r["path"].endswith(("/batch/read", "/search"))
    ]


async def test_backfill_on_hubspot_dry_run_then_interrupted_and_resumed(books: Pair) -> None:
    pair = books
    for side in ("chargebee", "hubspot"):
        httpx.post(pair.urls[side] + "/_sandbox/reset").raise_for_status()
    book = make_book(500, "bfhs")
    httpx.post(
        pair.urls["chargebee"] + "/_sandbox/seed", json=book.chargebee_seed(), timeout=60
    ).raise_for_status()
    httpx.post(
        pair.urls["hubspot"] + "/_sandbox/seed", json=book.hubspot_seed(), timeout=60
    ).raise_for_status()
    settings = pair.settings
    n_companies = len(companies(pair))
    before = len(ledger(pair, "hubspot"))

    dry = await backfill(settings, dry_run=True, progress=False)
    assert dry.dry_run and dry.written == 0
    for kind in ("email", "domain", "name"):
        assert dry.counts[kind] == book.expected(kind), (kind, dry.counts)
    assert dry.linked_already == book.expected("linked")
    assert dry.counts["review"] == book.expected("ambiguous") == len(dry.review)
    assert not writes(pair)
    # read by pages: the companies 100 a call, their contacts' emails a batch read per page
    reads = [(r["method"], r["path"]) for r in ledger(pair, "hubspot")[before:]]
    pages = reads.count(("GET", "/crm/v3/objects/companies"))
    assert pages == dry.crm_reads == -(-n_companies // 100)
    assert reads.count(("POST", "/crm/v3/objects/contacts/batch/read")) <= pages
    assert set(reads) <= {
        ("GET", "/crm/v3/objects/companies"),
        ("POST", "/crm/v3/objects/contacts/batch/read"),
    }, reads

    # the first batch update commits but answers an error: the run stops after 100 links
    httpx.post(
        pair.urls["hubspot"] + "/_sandbox/faults",
        json={
            "kind": "commit_then_error",
            "method": "POST",
            "path": BATCH_UPDATE,
            "status": 400,
            "times": 1,
            "body": {
                "status": "error",
                "message": "Property values were not valid",
                "correlationId": "b9f1c1c2-0000-4000-8000-000000000000",
                "category": "VALIDATION_ERROR",
            },
        },
    ).raise_for_status()
    with pytest.raises(CliError, match="run it again to resume"):
        await backfill(settings, dry_run=False, progress=False)
    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    first = [c for c in companies(pair).values() if c.get("billing_customer_id")]
    assert len(first) == book.expected("linked") + 100

    # run again: it resumes where it stopped, each remaining link once, one call per 100
    httpx.delete(pair.urls["hubspot"] + "/_sandbox/faults")
    calls = len(writes(pair))
    done = await backfill(settings, dry_run=False, progress=False)
    assert done.linked_already == book.expected("linked") + 100
    assert done.written == done.to_write == to_link - 100
    new = [r["path"] for r in writes(pair)[calls:]]
    assert new.count(BATCH_UPDATE) == -(-(to_link - 100) // 100)
    # and each backfill write (up to 200 links) audited once in the agent log, a note
    assert new.count("/crm/v3/objects/notes") == done.bulk_calls == 1
    assert len(new) == new.count(BATCH_UPDATE) + done.bulk_calls, new
    rows = companies(pair)
    linked = {c["billing_customer_id"]: c for c in rows.values() if c.get("billing_customer_id")}
    assert len(linked) == to_link + book.expected("linked")
    for customer, kind in book.kinds.items():
        assert (customer in linked) == (kind != "ambiguous"), (customer, kind)
        if customer in linked:
            assert linked[customer]["billing_platform"] == "chargebee"
    # created nothing: the same companies, no customer created in billing
    assert len(rows) == n_companies
    assert not [
        r
        for r in ledger(pair, "chargebee")
        if r["method"] == "POST" and r["path"].endswith("/customers")
    ]

    again = await backfill(settings, dry_run=False, progress=False)
    assert again.written == 0 and again.linked_already == to_link + book.expected("linked")
