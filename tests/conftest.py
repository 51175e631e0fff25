"""One conftest: a real Temporal dev server from the pinned binary (no download), the vendor
sandboxes in a background thread, settings pointing at them, and a worker on the real task queue.

Each test uses fresh business IDs (uuid-based), so tests share the session's server and worker.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli.stack import temporal_binary
from domain.settings import ChargebeeSettings, SalesforceSettings, Settings, WebhookSettings
from domain.temporal import ALL_SEARCH_ATTRIBUTE_KEYS
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.salesforce import SalesforceEmulator

CB_KEY = "test_chargebee_key"
SF_ID, SF_SECRET = "revbridge-local", "local-secret"
WEBHOOK_USER, WEBHOOK_PASSWORD = "chargebee-webhooks", "test-webhook-password"


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=[
            "--dynamic-config-value",
            "history.transferProcessorMaxPollRPS=1000",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def emulators() -> Iterator[tuple[ChargebeeEmulator, SalesforceEmulator, ServerThread]]:
    cb = ChargebeeEmulator(api_key=CB_KEY)
    sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    with ServerThread({cb: 0, sf: 0}) as thread:
        yield cb, sf, thread


@pytest.fixture(scope="session")
def chargebee_emulator(emulators) -> ChargebeeEmulator:  # noqa: ANN001
    return emulators[0]


@pytest.fixture(scope="session")
def salesforce_emulator(emulators) -> SalesforceEmulator:  # noqa: ANN001
    return emulators[1]


@pytest.fixture(scope="session")
def sandbox_urls(emulators) -> dict[str, str]:  # noqa: ANN001
    return emulators[2].urls


@pytest.fixture(scope="session")
def settings(sandbox_urls: dict[str, str]) -> Settings:
    return Settings(
        billing="chargebee",
        crm="salesforce",
        # short, so a "commit then time out" fault is seen as a timeout within the test
        http_timeout_s=2.0,
        chargebee=ChargebeeSettings(
            site="acme-test", api_key=SecretStr(CB_KEY), api_url=sandbox_urls["chargebee"]
        ),
        salesforce=SalesforceSettings(
            token_url=sandbox_urls["salesforce"] + "/services/oauth2/token",
            client_id=SF_ID,
            client_secret=SecretStr(SF_SECRET),
        ),
        webhooks=WebhookSettings(
            chargebee_username=WEBHOOK_USER, chargebee_password=SecretStr(WEBHOOK_PASSWORD)
        ),
    )


@pytest.fixture(scope="session")
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    from connectors.registry import build_billing, build_crm
    from workers.main import build_worker

    w = build_worker(client, build_billing(settings), build_crm(settings))
    task = asyncio.create_task(w.run())
    try:
        yield
    finally:
        await w.shutdown()
        await task


@pytest.fixture
def uid() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(autouse=True)
def _clear_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "emulators" in request.fixturenames:
        for url in request.getfixturevalue("sandbox_urls").values():
            httpx.delete(url + "/_sandbox/faults")


@pytest.fixture(scope="session")
def webhook_url(temporal_env: WorkflowEnvironment, settings: Settings) -> Iterator[str]:
    """The webhook service on a real port, with its own Temporal connection (its own loop)."""
    import os

    from sandbox.framework import App
    from webhooks.app import TemporalConnection, create_app

    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    with ServerThread(
        {App("webhooks", create_app(settings, client=TemporalConnection())): 0}
    ) as thread:
        yield thread.urls["webhooks"]
