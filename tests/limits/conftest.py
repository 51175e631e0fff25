"""The limits tests' own sandboxes (a Chargebee whose idempotency keys expire after a second, a
Salesforce whose daily allowance the test sets) and a deployment: the real worker group from
``build_worker`` plus the probe workflow's worker, routing to the same vendor queues."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.budget import Limits
from connectors import limits as vendor_limits
from connectors.registry import build_billing, build_crm
from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import ServerThread
from sandbox.hubspot import HubSpotEmulator
from sandbox.salesforce import SalesforceEmulator
from sandbox.stripe import StripeEmulator
from tests.conftest import start_time_skipping
from tests.limits.probe import LimitsProbeWorkflow
from tests.pairs import (
    CB_KEY,
    HS_SECRET,
    HS_TOKEN,
    SF_ID,
    SF_SECRET,
    STRIPE_KEY,
    STRIPE_SECRET,
    pair_settings,
)
from workers.main import build_worker
from workers.vendor_queues import VendorRouting
from workflows.options import BILLING, CRM

#: the Chargebee emulator forgets idempotency keys after this many (real) seconds
KEY_WINDOW_S = 1.0
#: vendor calls' timeout: a loaded CI machine answers slowly, and a timeout here is a retry
HTTP_TIMEOUT_S = 10.0


@dataclass
class Sandboxes:
    chargebee: ChargebeeEmulator
    salesforce: SalesforceEmulator
    hubspot: HubSpotEmulator
    urls: dict[str, str]


@pytest.fixture(scope="module")
def sandboxes() -> Iterator[Sandboxes]:
    # these tests set RevBridge's own rates: the emulated test-site limit (150/min) is off
    cb = ChargebeeEmulator(
        api_key=CB_KEY, idempotency_window_s=KEY_WINDOW_S, rate_limit_per_minute=None
    )
    sf = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    st = StripeEmulator(api_key=STRIPE_KEY, webhook_secret=STRIPE_SECRET)
    hs = HubSpotEmulator(access_token=HS_TOKEN, client_secret=HS_SECRET, rate_limit_per_10s=5000)
    with ServerThread({cb: 0, sf: 0, st: 0, hs: 0}) as thread:
        yield Sandboxes(cb, sf, hs, thread.urls)


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping test server of this module's own (it shadows the session's): a run
    another suite leaves open on the shared one, without its worker, stalls its clock."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(autouse=True)
def _fresh_limits() -> Iterator[None]:
    vendor_limits.forget()
    yield
    vendor_limits.configure_pacing({"chargebee": None, "salesforce": None, "hubspot": None})
    vendor_limits.forget()


@dataclass
class Deployment:
    client: Client
    task_queue: str
    probe_queue: str
    billing: Any
    crm: Any
    group: Any


@contextlib.asynccontextmanager
async def deployment(
    client: Client, sandboxes: Sandboxes, billing: str, crm: str, limits: Limits
) -> AsyncIterator[Deployment]:
    task_queue = f"limits-{uuid.uuid4().hex[:8]}"
    settings = pair_settings(sandboxes.urls, billing, crm, task_queue).model_copy(
        update={"http_timeout_s": HTTP_TIMEOUT_S}
    )
    b, c = build_billing(settings), build_crm(settings)
    group = build_worker(client, b, c, task_queue=task_queue, limits=limits)
    probe_queue = f"{task_queue}-probe"
    probe = Worker(
        client,
        task_queue=probe_queue,
        workflows=[LimitsProbeWorkflow],
        interceptors=[VendorRouting(task_queue, {BILLING: b.name, CRM: c.name})],
    )
    async with group, probe:
        yield Deployment(client, task_queue, probe_queue, b, c, group)


def peak_per_second(times: list[float]) -> int:
    """The most requests in any 1-second window [t, t + 1) of the ledger."""
    times = sorted(times)
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    return peak
