"""The account sync's end-to-end set-up, shared by its full-stack tests: a billing × CRM
deployment with ``REVBRIDGE_ACCOUNT_SYNC`` on (the webhook service on a free port, a worker on
the session's dev server), and the wiring that lets both sides' webhooks reach it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import httpx
from temporalio.testing import WorkflowEnvironment

from domain.settings import WebhookSettings
from sandbox.framework import App, ServerThread
from tests.pairs import Pair, pair_settings


@asynccontextmanager
async def sync_deployment(
    temporal_env: WorkflowEnvironment,
    sandbox_urls: dict[str, str],
    billing: str,
    crm: str,
    queue: str,
) -> AsyncIterator[Pair]:
    """``billing`` × ``crm`` with the account sync switched on, its worker on ``queue``."""
    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    settings = pair_settings(sandbox_urls, billing, crm, queue)
    hooks = settings.webhooks.model_dump()
    settings = settings.model_copy(
        update={"webhooks": WebhookSettings(**{**hooks, "account_sync": True})}
    )
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    app = App("webhooks", create_app(settings, client=TemporalConnection()))
    with ServerThread({app: 0}) as thread:
        pair = Pair.build(settings, sandbox_urls, thread.urls["webhooks"])
        async with build_worker(temporal_env.client, pair.billing, pair.crm, task_queue=queue):
            yield pair


@contextmanager
def salesforce_flow(pair: Pair) -> Iterator[Pair]:
    """Both sandboxes' webhooks to ``pair``'s service and Salesforce's account-change Flow
    active; the Flow off and the CRM's webhooks removed afterwards."""
    pair.route_billing_webhooks_here()
    pair.route_crm_webhooks_here()
    flows = pair.urls["salesforce"] + "/_sandbox/salesforce/flows"
    httpx.post(flows, json={"account_changed": True}).raise_for_status()
    try:
        yield pair
    finally:
        httpx.post(flows, json={"account_changed": False})
        httpx.delete(pair.urls["salesforce"] + "/_sandbox/webhooks")
