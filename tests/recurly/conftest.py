"""The Recurly pairs (Recurly × Salesforce, Recurly × HubSpot): a Recurly sandbox next to the
session's CRM sandboxes, and one deployment per pair (task queue, worker, webhook service), as
``pair_deployment`` builds them for the pairs in ``tests.pairs.PAIRS``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from sandbox.framework import App, ServerThread
from sandbox.recurly import RecurlyEmulator
from tests.pairs import RECURLY_KEY, RECURLY_SECRET, Pair, pair_settings

RECURLY_PAIRS = [("recurly", "salesforce"), ("recurly", "hubspot")]


@pytest.fixture(scope="session")
def recurly_sandbox() -> Iterator[tuple[RecurlyEmulator, str]]:
    # rate limits are the emulator's and connector's own tests' business, not the smoke runs'
    em = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["recurly"]


@pytest.fixture(scope="session", params=RECURLY_PAIRS, ids=["-".join(p) for p in RECURLY_PAIRS])
async def recurly_pair_deployment(
    request: pytest.FixtureRequest,
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
    recurly_sandbox: tuple[RecurlyEmulator, str],
) -> AsyncIterator[Pair]:
    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    billing, crm = request.param
    urls = {**sandbox_urls, "recurly": recurly_sandbox[1]}
    settings = pair_settings(urls, billing, crm, f"revbridge-{billing}-{crm}")
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    app = App("webhooks", create_app(settings, client=TemporalConnection()))
    with ServerThread({app: 0}) as thread:
        pair = Pair.build(settings, urls, thread.urls["webhooks"])
        async with build_worker(
            temporal_env.client, pair.billing, pair.crm, task_queue=settings.task_queue
        ):
            yield pair


@pytest.fixture
def rpair(recurly_pair_deployment: Pair) -> Iterator[Pair]:
    """The Recurly pair under test, its sandbox's notifications routed to its webhook service;
    faults left on the Recurly sandbox are cleared after the test (the CRMs' by conftest)."""
    recurly_pair_deployment.route_billing_webhooks_here()
    yield recurly_pair_deployment
    httpx.delete(recurly_pair_deployment.billing_url + "/_sandbox/faults")
