"""The backfill end to end (Chargebee × Salesforce on sandboxes of its own, so linking a whole
book never touches another test's records): a dry run writes nothing; exact (email, domain),
fuzzy (name) and linked-already customers are linked, ambiguous ones reported for a person;
interrupted by a refused bulk write, it resumes from where it stopped and writes each link once;
and it creates nothing."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.config import CliError
from cli.sync import backfill
from domain import golden
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator
from tests.pairs import CB_KEY, SF_ID, SF_SECRET, Pair, pair_settings
from tests.sync.book import make_book
from tests.sync.test_workflow import keep_history

QUEUE = "revbridge-sync-backfill"


@pytest.fixture(scope="module")
async def books(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    from workers.main import build_worker

    cb = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({cb: 0, sf: 0}) as thread:
        urls = {**sandbox_urls, **thread.urls}
        settings = pair_settings(urls, "chargebee", "salesforce", QUEUE)
        os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
        pair = Pair.build(settings, urls, "")
        async with build_worker(temporal_env.client, pair.billing, pair.crm, task_queue=QUEUE):
            yield pair


def accounts(pair: Pair) -> list[dict[str, Any]]:
    url = pair.urls["salesforce"] + "/_sandbox/salesforce/records/Account"
    return httpx.get(url).json()["records"]


def ledger(pair: Pair, side: str) -> list[dict[str, Any]]:
    return httpx.get(pair.urls[side] + "/_sandbox/requests").json()["requests"]


def bulk_writes(pair: Pair) -> list[dict[str, Any]]:
    return [
        r
        for r in ledger(pair, "salesforce")
        if r["method"] == "PATCH" and r["path"].endswith("/composite/sobjects")
    ]


async def test_backfill_dry_run_then_interrupted_and_resumed(
    books: Pair, temporal_env: WorkflowEnvironment
) -> None:
    pair = books
    for side in ("chargebee", "salesforce"):
        httpx.post(pair.urls[side] + "/_sandbox/reset").raise_for_status()
    book = make_book(500, "bf01")
    httpx.post(
        pair.urls["chargebee"] + "/_sandbox/seed", json=book.chargebee_seed(), timeout=60
    ).raise_for_status()
    httpx.post(
        pair.urls["salesforce"] + "/_sandbox/seed", json=book.salesforce_seed(), timeout=60
    ).raise_for_status()
    settings = pair.settings
    n_accounts = len(accounts(pair))

    dry = await backfill(settings, dry_run=True, progress=False)
    assert dry.dry_run and dry.written == 0
    assert dry.counts["email"] == book.expected("email")
    assert dry.counts["domain"] == book.expected("domain")
    assert dry.counts["name"] == book.expected("name")
    assert dry.linked_already == book.expected("linked")
    assert dry.counts["review"] == book.expected("ambiguous") == len(dry.review)
    assert not [
        r
        for r in ledger(pair, "salesforce")
        if r["method"] in ("PATCH", "POST") and "/sobjects" in r["path"]
    ]

    # the first bulk write commits but its answer is an error (a validation rule refusing one
    # record, a proxy): the run stops after 200 links
    httpx.post(
        pair.urls["salesforce"] + "/_sandbox/faults",
        json={
            "kind": "commit_then_error",
            "method": "PATCH",
            "path": ".*/composite/sobjects",
            "status": 400,
            "times": 1,
            "body": [{"errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION", "message": "no"}],
        },
    ).raise_for_status()
    with pytest.raises(CliError, match="run it again to resume"):
        await backfill(settings, dry_run=False, progress=False)
    to_link = book.expected("email") + book.expected("domain") + book.expected("name")
    linked_first = sum(1 for a in accounts(pair) if a.get("Billing_Customer_Id__c"))
    assert linked_first == book.expected("linked") + 200

    # run again: it resumes where it stopped, writing each remaining link once
    httpx.delete(pair.urls["salesforce"] + "/_sandbox/faults")
    patches = len(bulk_writes(pair))
    done = await backfill(settings, dry_run=False, progress=False)
    assert done.linked_already == book.expected("linked") + 200
    assert done.written == done.to_write == to_link - 200
    assert done.bulk_calls == 1
    assert len(bulk_writes(pair)) == patches + 1
    wf_id = golden.backfill_workflow_id("chargebee", "salesforce")
    handle = temporal_env.client.get_workflow_handle(wf_id)
    await keep_history(handle, golden.BACKFILL_WORKFLOW_TYPE, "resumed")
    rows = accounts(pair)
    linked = {a["Billing_Customer_Id__c"]: a for a in rows if a.get("Billing_Customer_Id__c")}
    assert len(linked) == to_link + book.expected("linked")
    for customer, kind in book.kinds.items():
        assert (customer in linked) == (kind != "ambiguous"), (customer, kind)
    # created nothing: the same accounts, no customer created in billing
    assert len(rows) == n_accounts
    assert not [
        r
        for r in ledger(pair, "chargebee")
        if r["method"] == "POST" and r["path"].endswith("/customers")
    ]

    # once more: everything is linked already, nothing is written
    again = await backfill(settings, dry_run=False, progress=False)
    assert again.written == 0 and again.linked_already == to_link + book.expected("linked")
