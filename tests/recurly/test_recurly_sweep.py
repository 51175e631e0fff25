"""The nightly churn sweep over a Recurly site's whole book, on its own site (the sweep reads every
account, paced at Recurly's documented 400 requests a minute, so it gets a small book of its own
rather than everything the other pair tests created). Recurly × Salesforce: the sweep reads billing;
the CRM side is the same as on every other pair."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.churn import SWEEP_WORKFLOW_TYPE, SweepInput, SweepResult
from domain.ids import churn_workflow_id
from sandbox import books
from sandbox.framework import App, ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import book_seed
from tests.pairs import RECURLY_KEY, RECURLY_SECRET, Pair, pair_settings
from tests.recurly.test_recurly_pairs import keep_history


@pytest.fixture(scope="module")
async def sweep_pair(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    em = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    with ServerThread({em: 0}) as sandbox:
        urls = {**sandbox_urls, "recurly": sandbox.urls["recurly"]}
        settings = pair_settings(urls, "recurly", "salesforce", "revbridge-recurly-sweep")
        app = App("webhooks", create_app(settings, client=TemporalConnection()))
        with ServerThread({app: 0}) as hooks:
            pair = Pair.build(settings, urls, hooks.urls["webhooks"])
            async with build_worker(
                temporal_env.client, pair.billing, pair.crm, task_queue=settings.task_queue
            ):
                yield pair


async def test_the_churn_sweep_walks_the_recurly_book(
    client: Client, sweep_pair: Pair, uid: str
) -> None:
    book = books.book(8, prefix=f"sw{uid[:6]}", seed=16)
    seeds = (
        ("recurly", book_seed(book)),
        ("salesforce", books.salesforce_seed(book, "recurly")),
    )
    for vendor, data in seeds:
        resp = httpx.post(sweep_pair.urls[vendor] + "/_sandbox/seed", json=data, timeout=90)
        resp.raise_for_status()
    handle = await client.start_workflow(
        SWEEP_WORKFLOW_TYPE,
        SweepInput(billing="recurly", follow_up=timedelta(seconds=3)),
        id=f"churn-sweep-recurly-{uid}",
        task_queue=sweep_pair.settings.task_queue,
        result_type=SweepResult,
    )
    swept = await asyncio.wait_for(handle.result(), timeout=120)
    assert swept.customers == len(book.customers)
    assert swept.runs >= 1  # the book has customers at risk: interventions were started
    for c in book.risky:  # those interventions are not this test's business
        with contextlib.suppress(RPCError):
            await client.get_workflow_handle(churn_workflow_id("recurly", c.id)).terminate()
    await keep_history(sweep_pair, handle, "finished")
