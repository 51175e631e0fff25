"""The backfill on Chargebee × HubSpot, on sandboxes of its own: a dry run writes nothing; exact
(a contact's email, the company domain), fuzzy (name) and linked-already customers are linked,
ambiguous ones reported for a person; the companies are read by list pages (100 a call, their
contacts' emails one batch read a page), never one call per company; interrupted by a batch
update that commits and then answers an error, it resumes and writes each remaining link once,
one ``companies/batch/update`` per 100 links (test_backfill.py ``interrupted_and_resumed``);
and it creates nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.sync import backfill
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, Pair, pair_settings
from tests.sync.book import make_book
from tests.sync.test_backfill import companies, interrupted_and_resumed, ledger

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


def writes(pair: Pair) -> list[str]:
    """The paths of every write to HubSpot's CRM (the links and the audit's notes)."""
    return [
        r["path"]
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

    # interrupted after the first batch update (100 links), resumed for the other 200
    done = await interrupted_and_resumed(pair, book)
    # every write: the batch updates (the interrupted one, then one per 100) and one audit note
    # per backfill write (the interrupted run audited nothing: its write failed)
    paths = writes(pair)
    assert paths.count(BATCH_UPDATE) == 1 + -(-done.written // 100)
    assert paths.count("/crm/v3/objects/notes") == done.bulk_calls == 1
    assert len(paths) == paths.count(BATCH_UPDATE) + done.bulk_calls, paths
    assert not [
        r
        for r in ledger(pair, "chargebee")
        if r["method"] == "POST" and r["path"].endswith("/customers")
    ]

    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    again = await backfill(settings, dry_run=False, progress=False)
    assert again.written == 0 and again.linked_already == to_link + book.expected("linked")
