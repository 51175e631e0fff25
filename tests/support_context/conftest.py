"""Fixtures for support context: a worker over in-memory fakes (vendor-independent workflow
tests), and helpers that start a run the way the webhook service does."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from activities.policy import DEFAULT_POLICY_DIR
from domain import temporal as names
from domain.ids import support_workflow_id
from domain.starts import start_options
from domain.support import (
    WORKFLOW_TYPE,
    SupportContextInput,
    SupportContextResult,
    static_summary,
)
from tests.pairs import Pair
from tests.support_context.fakes import FakeBilling, FakeCrm

HISTORIES = Path(__file__).parent.parent / "histories"


async def start_support(
    client: Client, crm: str, billing: str, case_id: str, task_queue: str
) -> WorkflowHandle:
    """Start the run for a case as the webhook service does; if the CRM's own webhook already
    started it, join that run (one run per case, ever)."""
    wf_id = support_workflow_id(crm, case_id)
    try:
        return await client.start_workflow(
            WORKFLOW_TYPE,
            SupportContextInput(crm=crm, billing=billing, case_id=case_id),
            id=wf_id,
            task_queue=task_queue,
            **start_options(WORKFLOW_TYPE),
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(names.USE_CASE_KEY, names.UseCase.SUPPORT_CONTEXT),
                    SearchAttributePair(names.APPROVAL_KEY, "none"),
                ]
            ),
            static_summary=static_summary(
                SupportContextInput(crm=crm, billing=billing, case_id=case_id)
            ),
            result_type=SupportContextResult,
        )
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(wf_id, result_type=SupportContextResult)


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """`REVBRIDGE_WRITE_HISTORIES=1` commits this run's history for the replay gate."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"{WORKFLOW_TYPE}__{name}.json").write_text(history.to_json())


class FakeDeployment:
    def __init__(self, billing: FakeBilling, crm: FakeCrm, task_queue: str) -> None:
        self.billing, self.crm, self.task_queue = billing, crm, task_queue

    async def run(
        self, client: Client, case_id: str
    ) -> tuple[WorkflowHandle, SupportContextResult]:
        handle = await start_support(
            client, self.crm.name, self.billing.name, case_id, self.task_queue
        )
        return handle, await handle.result()


async def _deployment(
    client: Client, uid: str, policy_dir: Path = DEFAULT_POLICY_DIR
) -> AsyncIterator[FakeDeployment]:
    from workers.main import build_worker

    billing, crm = FakeBilling(), FakeCrm()
    queue = f"support-fake-{uid}"
    async with build_worker(client, billing, crm, task_queue=queue, policy_dir=policy_dir):
        yield FakeDeployment(billing, crm, queue)


@pytest.fixture
async def fake(client: Client, uid: str) -> AsyncIterator[FakeDeployment]:
    """A worker (the real registration from workers.main) over fresh in-memory vendors."""
    async for d in _deployment(client, uid):
        yield d


@pytest.fixture
def observe_policies(tmp_path: Path) -> Iterator[Path]:
    """The shipped policies with support context switched to ``observe``."""
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    modes = target / "modes.yaml"
    text = modes.read_text()
    assert "support_context: auto" in text
    modes.write_text(text.replace("support_context: auto", "support_context: observe"))
    yield target


@pytest.fixture
async def fake_observe(
    client: Client, uid: str, observe_policies: Path
) -> AsyncIterator[FakeDeployment]:
    async for d in _deployment(client, uid, observe_policies):
        yield d


@pytest.fixture
def crm_webhooks(pair: Pair) -> Iterator[Pair]:
    """The pair with its CRM sandbox's callouts / webhooks routed to its webhook service, for
    this test only (left on, every case opened later — dunning's too — would start a run)."""
    pair.route_crm_webhooks_here()
    yield pair
    httpx.delete(pair.urls[pair.settings.crm] + "/_sandbox/webhooks").raise_for_status()


@pytest.fixture(autouse=True)
def no_stray_crm_webhooks(request: pytest.FixtureRequest) -> None:
    """The CRM sandbox is shared by every pair of the session, and a test elsewhere (a won deal's
    callout) may have left its webhooks pointing at another pair's service: that service would
    start this test's case run first, with its own billing platform. Off, unless the test asks
    for ``crm_webhooks`` (which routes them here after this)."""
    if "pair" in request.fixturenames:
        pair: Pair = request.getfixturevalue("pair")
        httpx.delete(pair.urls[pair.settings.crm] + "/_sandbox/webhooks").raise_for_status()
