"""The backfill end to end on Chargebee × Salesforce and Chargebee × HubSpot (sandboxes of its
own, so linking a whole book never touches another test's records): a dry run writes nothing;
exact (email — on HubSpot a contact's —, domain), fuzzy (name) and linked-already customers are
linked, ambiguous ones reported for a person; HubSpot's companies are read by list pages (100 a
call, their contacts' emails one batch read a page), never one call per company; interrupted by
a refused bulk write, it resumes from where it stopped and writes each link once (on HubSpot one
``companies/batch/update`` per 100 links); and it creates nothing. ``interrupted_and_resumed``
is that interruption on any pair, shared by test_backfill_vendors.py."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.config import CliError
from cli.sync import backfill
from domain import golden
from domain.golden import BackfillReport
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import CB_KEY, HS_SECRET, HS_TOKEN, SF_ID, SF_SECRET, Pair, pair_settings
from tests.sync.book import Book, make_book
from tests.sync.test_workflow import keep_history

QUEUE = {"salesforce": "revbridge-sync-backfill", "hubspot": "revbridge-sync-backfill-hubspot"}
BATCH_UPDATE = "/crm/v3/objects/companies/batch/update"


@pytest.fixture(scope="module", params=["salesforce", "hubspot"])
async def books(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    crm, queue = request.param, QUEUE[request.param]
    cb = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    if crm == "hubspot":
        em: Any = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    else:
        em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({cb: 0, em: 0}) as thread:
        urls = {**sandbox_urls, **thread.urls}
        settings = pair_settings(urls, "chargebee", crm, queue)
        os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
        pair = Pair.build(settings, urls, "")
        async with build_worker(temporal_env.client, pair.billing, pair.crm, task_queue=queue):
            yield pair


def accounts(pair: Pair) -> list[dict[str, Any]]:
    url = pair.urls["salesforce"] + "/_sandbox/salesforce/records/Account"
    return httpx.get(url).json()["records"]


def companies(pair: Pair) -> list[dict[str, Any]]:
    """Every HubSpot company's properties (read through the vendor API: these calls are in the
    ledger, so read them only between the windows a test counts)."""
    out: list[dict[str, Any]] = []
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
        out += [c["properties"] for c in body["results"]]
        after = (body.get("paging") or {}).get("next", {}).get("after")
        if not after:
            return out


def crm_links(pair: Pair) -> tuple[dict[str, str], int]:
    """The billing links the CRM's records hold (customer → platform), and how many records."""
    if pair.settings.crm == "hubspot":
        rows = [(c.get("billing_customer_id"), c.get("billing_platform")) for c in companies(pair)]
    else:
        rows = [
            (a.get("Billing_Customer_Id__c"), a.get("Billing_Platform__c")) for a in accounts(pair)
        ]
    return {c: p for c, p in rows if c}, len(rows)


def ledger(pair: Pair, side: str) -> list[dict[str, Any]]:
    return httpx.get(pair.urls[side] + "/_sandbox/requests").json()["requests"]


def writes(pair: Pair) -> list[str]:
    """The paths of every write to HubSpot's CRM (the links and the audit's notes)."""
    return [
        r["path"]
        for r in ledger(pair, "hubspot")
        if r["method"] in ("POST", "PATCH", "PUT")
        and "/crm/" in r["path"]
        and not r["path"].endswith(("/batch/read", "/search"))
    ]


def crm_writes(pair: Pair) -> list[str]:
    """The paths of every write to the CRM's records (on Salesforce any sObject PATCH or POST)."""
    if pair.settings.crm == "hubspot":
        return writes(pair)
    return [
        r["path"]
        for r in ledger(pair, "salesforce")
        if r["method"] in ("PATCH", "POST") and "/sobjects" in r["path"]
    ]


#: each CRM's bulk write of links: method, path, links per call, and the error it answers when
#: it commits and still fails (a validation rule refusing one record, a proxy)
BULK = {
    "salesforce": (
        "PATCH",
        ".*/composite/sobjects",
        200,
        [{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "no"}],
    ),
    "hubspot": (
        "POST",
        "/crm/v3/objects/companies/batch/update",
        100,
        {
            "status": "error",
            "message": "Property values were not valid",
            "correlationId": "b9f1c1c2-0000-4000-8000-000000000000",
            "category": "VALIDATION_ERROR",
        },
    ),
}
#: links per backfill write (the workflow's chunk; one audit entry each)
CHUNK = 200


def bulk_writes(pair: Pair) -> list[dict[str, Any]]:
    method, path, _, _ = BULK[pair.settings.crm]
    return [
        r
        for r in ledger(pair, pair.settings.crm)
        if r["method"] == method and re.fullmatch(path, r["path"])
    ]


async def interrupted_and_resumed(pair: Pair, book: Book) -> BackfillReport:
    """The backfill of ``book`` (seeded, not linked yet beyond its ``linked`` kind) on
    ``pair``: its first bulk write commits but answers an error, so the run stops after that
    call's links; run again, it resumes where it stopped, writing each remaining link once,
    one call per ``BULK`` batch — every exact and fuzzy customer linked, every ambiguous one
    not, no record created. Returns the resumed run's report."""
    crm, billing = pair.settings.crm, pair.settings.billing
    method, path, per_call, body = BULK[crm]
    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    first = min(per_call, to_link)
    assert first < to_link, "a book too small to leave links for the resume"
    _, n_records = crm_links(pair)
    fault = {"kind": "commit_then_error", "method": method, "path": path, "status": 400}
    httpx.post(
        pair.urls[crm] + "/_sandbox/faults", json={**fault, "times": 1, "body": body}
    ).raise_for_status()
    with pytest.raises(CliError, match="run it again to resume"):
        await backfill(pair.settings, dry_run=False, progress=False)
    links, _ = crm_links(pair)
    assert len(links) == book.expected("linked") + first

    httpx.delete(pair.urls[crm] + "/_sandbox/faults")
    calls = len(bulk_writes(pair))
    done = await backfill(pair.settings, dry_run=False, progress=False)
    assert done.linked_already == book.expected("linked") + first
    assert done.written == done.to_write == to_link - first
    assert done.bulk_calls == -(-(to_link - first) // CHUNK)
    assert len(bulk_writes(pair)) - calls == -(-(to_link - first) // per_call)
    links, n = crm_links(pair)
    assert len(links) == to_link + book.expected("linked")
    for customer, kind in book.kinds.items():
        assert (customer in links) == (kind != "ambiguous"), (customer, kind)
        assert customer not in links or links[customer] == billing
    assert n == n_records  # created nothing in the CRM
    return done


async def test_backfill_dry_run_then_interrupted_and_resumed(
    books: Pair, temporal_env: WorkflowEnvironment
) -> None:
    pair, crm = books, books.settings.crm
    for side in ("chargebee", crm):
        httpx.post(pair.urls[side] + "/_sandbox/reset").raise_for_status()
    book = make_book(500, "bfhs" if crm == "hubspot" else "bf01")
    httpx.post(
        pair.urls["chargebee"] + "/_sandbox/seed", json=book.chargebee_seed(), timeout=60
    ).raise_for_status()
    crm_seed = book.hubspot_seed() if crm == "hubspot" else book.salesforce_seed()
    httpx.post(pair.urls[crm] + "/_sandbox/seed", json=crm_seed, timeout=60).raise_for_status()
    settings = pair.settings
    n_companies = len(companies(pair)) if crm == "hubspot" else 0
    before = len(ledger(pair, crm))

    dry = await backfill(settings, dry_run=True, progress=False)
    assert dry.dry_run and dry.written == 0
    for kind in ("email", "domain", "name"):
        assert dry.counts[kind] == book.expected(kind), (kind, dry.counts)
    assert dry.linked_already == book.expected("linked")
    assert dry.counts["review"] == book.expected("ambiguous") == len(dry.review)
    assert not crm_writes(pair)
    if crm == "hubspot":
        # read by pages: the companies 100 a call, their contacts' emails a batch read per page
        reads = [(r["method"], r["path"]) for r in ledger(pair, "hubspot")[before:]]
        pages = reads.count(("GET", "/crm/v3/objects/companies"))
        assert pages == dry.crm_reads == -(-n_companies // 100)
        assert reads.count(("POST", "/crm/v3/objects/contacts/batch/read")) <= pages
        assert set(reads) <= {
            ("GET", "/crm/v3/objects/companies"),
            ("POST", "/crm/v3/objects/contacts/batch/read"),
        }, reads

    # interrupted after the first bulk write (200 links on Salesforce, 100 on HubSpot), resumed
    # for the rest
    done = await interrupted_and_resumed(pair, book)
    if crm == "hubspot":
        # every write: the batch updates (the interrupted one, then one per 100) and one audit
        # note per backfill write (the interrupted run audited nothing: its write failed)
        paths = writes(pair)
        assert paths.count(BATCH_UPDATE) == 1 + -(-done.written // 100)
        assert paths.count("/crm/v3/objects/notes") == done.bulk_calls == 1
        assert len(paths) == paths.count(BATCH_UPDATE) + done.bulk_calls, paths
    else:
        wf_id = golden.backfill_workflow_id("chargebee", "salesforce")
        handle = temporal_env.client.get_workflow_handle(wf_id)
        await keep_history(handle, golden.BACKFILL_WORKFLOW_TYPE, "resumed")
    # no customer created in billing
    assert not [
        r
        for r in ledger(pair, "chargebee")
        if r["method"] == "POST" and r["path"].endswith("/customers")
    ]

    # once more: everything is linked already, nothing is written
    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    again = await backfill(settings, dry_run=False, progress=False)
    assert again.written == 0 and again.linked_already == to_link + book.expected("linked")
