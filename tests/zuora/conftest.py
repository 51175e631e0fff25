"""Zuora's two pairs (Zuora × Salesforce, Zuora × HubSpot) as deployments of their own, mirroring
``pair_deployment`` in tests/conftest.py: each pair gets its own Zuora tenant (so a sweep walks
only that pair's book), its own task queue, worker and webhook service on the session's dev
server and CRM sandboxes. Not in the global PAIRS list: only tests/zuora runs on them."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from domain.settings import Settings, ZuoraSettings
from sandbox.framework import App, ServerThread
from sandbox.zuora import ZuoraEmulator
from tests.pairs import Pair, pair_settings

ZUORA_PAIRS = [("zuora", "salesforce"), ("zuora", "hubspot")]
Z_ID, Z_SECRET = "revbridge-zuora-local", "zuora-local-secret"
Z_HOOK_USER, Z_HOOK_PASSWORD = "zuora-callouts", "test-callout-password"


def zuora_settings(urls: dict[str, str], crm: str, task_queue: str) -> Settings:
    base = pair_settings(urls, "zuora", crm, task_queue)
    return base.model_copy(
        update={
            "zuora": ZuoraSettings(
                client_id=Z_ID, client_secret=SecretStr(Z_SECRET), api_url=urls["zuora"]
            ),
            "webhooks": base.webhooks.model_copy(
                update={
                    "zuora_username": Z_HOOK_USER,
                    "zuora_password": SecretStr(Z_HOOK_PASSWORD),
                }
            ),
        }
    )


def route_zuora_callouts_here(pair: Pair) -> None:
    """Point the tenant's callouts at this pair's webhook service (Basic auth, challenge)."""
    url = pair.urls["zuora"]
    httpx.delete(url + "/_sandbox/webhooks").raise_for_status()
    target: dict[str, Any] = {
        "url": f"{pair.webhook_url}/webhooks/zuora",
        "basic_auth": [Z_HOOK_USER, Z_HOOK_PASSWORD],
    }
    httpx.post(url + "/_sandbox/webhooks", json=target).raise_for_status()


@pytest.fixture(scope="session", params=ZUORA_PAIRS, ids=["-".join(p) for p in ZUORA_PAIRS])
async def zuora_pair_deployment(
    request: pytest.FixtureRequest, temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    billing, crm = request.param
    em = ZuoraEmulator(client_id=Z_ID, client_secret=Z_SECRET)
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    with ServerThread({em: 0}) as zthread:
        urls = {**sandbox_urls, "zuora": zthread.urls["zuora"]}
        settings = zuora_settings(urls, crm, f"revbridge-{billing}-{crm}")
        app = App("webhooks", create_app(settings, client=TemporalConnection()))
        with ServerThread({app: 0}) as thread:
            pair = Pair.build(settings, urls, thread.urls["webhooks"])
            pair.billing_driver.seed_catalog()
            async with build_worker(
                temporal_env.client, pair.billing, pair.crm, task_queue=settings.task_queue
            ):
                yield pair


@pytest.fixture
def zpair(zuora_pair_deployment: Pair) -> Pair:
    """The Zuora pair under test, its tenant's callouts routed to its webhook service."""
    route_zuora_callouts_here(zuora_pair_deployment)
    return zuora_pair_deployment
