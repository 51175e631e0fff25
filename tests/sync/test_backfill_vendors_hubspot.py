"""The backfill on Stripe, Zuora and Recurly × HubSpot, each on sandboxes of its own (Chargebee ×
HubSpot: test_backfill_hubspot.py): a dry run writes nothing; exact (a contact's email, the
company domain), fuzzy (name) and linked-already customers are linked, ambiguous ones reported
for a person; interrupted by a ``companies/batch/update`` that commits and then answers an error,
it resumes and writes each remaining link once (test_backfill.py ``interrupted_and_resumed``);
billing is only listed by pages and HubSpot's companies by list pages, nothing created; a last
run writes nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.sync import backfill
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from tests.pairs import HS_SECRET, HS_TOKEN, Pair, pair_settings
from tests.sync.book import make_book
from tests.sync.test_backfill import companies, interrupted_and_resumed
from tests.sync.test_backfill_hubspot import BATCH_UPDATE, writes
from tests.sync.test_backfill_vendors import LISTS, emulator, ledger, seed_of

#: every kind, 40 customers each: 120 to link, so the interrupted first batch update (100)
#: leaves 20 for the resume
N = 200


@pytest.fixture(scope="module", params=["stripe", "zuora", "recurly"])
async def books(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    billing = request.param
    hs = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    with ServerThread({emulator(billing): 0, hs: 0}) as thread:
        urls = {**sandbox_urls, **thread.urls}
        queue = f"revbridge-sync-backfill-{billing}-hubspot"
        settings = pair_settings(urls, billing, "hubspot", queue)
        os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
        pair = Pair.build(settings, urls, "")
        async with build_worker(temporal_env.client, pair.billing, pair.crm, task_queue=queue):
            yield pair


async def test_the_book_is_linked_on_hubspot(books: Pair) -> None:
    pair, billing = books, books.settings.billing
    book = make_book(N, f"bh{billing[:2]}", billing=billing)
    httpx.post(
        pair.urls[billing] + "/_sandbox/seed", json=seed_of(book, billing), timeout=60
    ).raise_for_status()
    httpx.post(
        pair.urls["hubspot"] + "/_sandbox/seed", json=book.hubspot_seed(), timeout=60
    ).raise_for_status()
    billing_calls = len(ledger(pair, billing))
    n_companies = len(companies(pair))

    dry = await backfill(pair.settings, dry_run=True, progress=False)
    assert dry.dry_run and dry.written == 0
    for kind in ("email", "domain", "name"):
        assert dry.counts[kind] == book.expected(kind), (kind, dry.counts)
    assert dry.linked_already == book.expected("linked")
    assert dry.counts["review"] == book.expected("ambiguous") == len(dry.review)
    assert not writes(pair)
    assert dry.crm_reads == -(-n_companies // 100)

    # interrupted after the first batch update (100 links), resumed for the other 20
    done = await interrupted_and_resumed(pair, book)
    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    assert done.written == to_link - 100 and done.bulk_calls == 1
    paths = writes(pair)
    assert paths.count(BATCH_UPDATE) == 1 + 1  # the interrupted one, then the resume's
    assert paths.count("/crm/v3/objects/notes") == done.bulk_calls
    assert len(paths) == paths.count(BATCH_UPDATE) + done.bulk_calls, paths
    # billing was only listed, a page a call, nothing written
    calls = ledger(pair, billing)[billing_calls:]
    assert {(r["method"], r["path"]) for r in calls} == {LISTS[billing]}
    assert len(calls) == dry.billing_reads + 2 * done.billing_reads

    again = await backfill(pair.settings, dry_run=False, progress=False)
    assert again.written == 0 and again.linked_already == to_link + book.expected("linked")
