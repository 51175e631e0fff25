"""Workflow-ID reuse and conflict policies (domain.starts), tried through the webhook routes on the
real dev server: a run that FAILED is redone by the next delivery; a run that COMPLETED is never
doubled, and its late redelivery starts no churn intervention either (the dunning run hands
failures to churn; the route makes one Temporal call).

The runs here are stand-ins registered under the real workflow type names on a task queue of
their own, finished on command (complete, or fail with an ApplicationError): what is under test is
what Temporal does with the route's start request when a closed run already has the ID, not the
use cases themselves.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.common import RawValue, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.worker import Worker

from domain import churn, dunning, quote, support
from domain.settings import Settings
from domain.starts import START_POLICIES
from tests.webhooks.door import door
from tests.webhooks.helpers import payment_failed

ROOT = Path(__file__).resolve().parents[2]


class _StandIn:
    """Waits for ``finish`` ("complete" or "fail"); every other signal is accepted and kept."""

    def __init__(self) -> None:
        self.outcome: str | None = None

    @workflow.signal
    def finish(self, outcome: str) -> None:
        self.outcome = outcome

    @workflow.signal(dynamic=True)
    def other(self, name: str, args: Sequence[RawValue]) -> None:
        pass

    async def _wait(self) -> str:
        await workflow.wait_condition(lambda: self.outcome is not None)
        if self.outcome == "fail":
            raise ApplicationError("stand-in failed on command", non_retryable=True)
        return "completed"


@workflow.defn(name=dunning.WORKFLOW_TYPE, sandboxed=False)
class DunningStandIn(_StandIn):
    @workflow.run
    async def run(self, input: dict[str, Any]) -> str:
        return await self._wait()


@workflow.defn(name=churn.WORKFLOW_TYPE, sandboxed=False)
class ChurnStandIn(_StandIn):
    @workflow.run
    async def run(self, input: dict[str, Any]) -> str:
        return await self._wait()


@workflow.defn(name=support.WORKFLOW_TYPE, sandboxed=False)
class SupportStandIn(_StandIn):
    @workflow.run
    async def run(self, input: dict[str, Any]) -> str:
        return await self._wait()


@pytest.fixture
async def queue(client: Client) -> AsyncIterator[str]:
    name = f"start-policies-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=name, workflows=[DunningStandIn, ChurnStandIn, SupportStandIn]
    ):
        yield name


async def finish(client: Client, workflow_id: str, outcome: str) -> str:
    """Finish the latest run of ``workflow_id``; its run ID."""
    handle = client.get_workflow_handle(workflow_id)
    run_id = (await handle.describe()).run_id
    await handle.signal("finish", outcome)
    if outcome == "fail":
        with pytest.raises(WorkflowFailureError):
            await asyncio.wait_for(handle.result(), timeout=10)
    else:
        assert await asyncio.wait_for(handle.result(), timeout=10) == "completed"
    return run_id


async def latest(client: Client, workflow_id: str) -> tuple[str, WorkflowExecutionStatus | None]:
    desc = await client.get_workflow_handle(workflow_id).describe()
    return desc.run_id, desc.status


async def test_a_failed_dunning_run_is_redone_and_a_finished_one_never_doubled(
    settings: Settings, client: Client, queue: str, uid: str
) -> None:
    invoice, customer = f"INV-{uid}", f"cust_{uid}"
    dunning_id, churn_id = f"dunning:chargebee:{invoice}", f"churn:chargebee:{customer}"
    d = door(settings, "chargebee", client, queue)
    async with d.http:
        first = await d.post(payment_failed(invoice, customer_id=customer, event_id=f"ev1_{uid}"))
        assert (first.status_code, first.json()["status"]) == (202, "accepted")
        failed_run = await finish(client, dunning_id, "fail")

        # the vendor redelivers (or a later attempt fails): the failed run is redone
        again = await d.post(payment_failed(invoice, customer_id=customer, event_id=f"ev1_{uid}"))
        assert (again.status_code, again.json()["status"]) == (202, "accepted")
        second_run, status = await latest(client, dunning_id)
        assert second_run != failed_run and status == WorkflowExecutionStatus.RUNNING

        completed_run = await finish(client, dunning_id, "complete")

        # a late redelivery of a finished run starts nothing: no dunning run, and no churn run
        # (the dunning run hands failures to churn; the service makes one call per event)
        late = await d.post(payment_failed(invoice, customer_id=customer, event_id=f"ev1_{uid}"))
        assert (late.status_code, late.json()["status"]) == (200, "duplicate")
    assert await latest(client, dunning_id) == (completed_run, WorkflowExecutionStatus.COMPLETED)
    with pytest.raises(RPCError):
        await latest(client, churn_id)


async def test_a_failed_support_context_run_is_redone_and_a_finished_one_never_doubled(
    settings: Settings, client: Client, queue: str, uid: str
) -> None:
    case = f"500S{uid}"
    workflow_id = f"case:salesforce:{case}"
    body = json.dumps(
        {"event": "case_created", "eventId": f"e-{uid}", "recordId": case, "record": {"Id": case}}
    ).encode()
    d = door(settings, "salesforce", client, queue)
    async with d.http:
        assert (await d.post(body)).json()["status"] == "accepted"
        running = await d.post(body)  # a redelivery while it runs
        assert (running.status_code, running.json()["status"]) == (200, "duplicate")
        failed_run = await finish(client, workflow_id, "fail")
        again = await d.post(body)
        assert (again.status_code, again.json()["status"]) == (202, "accepted")
        assert (await latest(client, workflow_id))[0] != failed_run
        completed_run = await finish(client, workflow_id, "complete")
        late = await d.post(body)
        assert (late.status_code, late.json()["status"]) == (200, "duplicate")
    assert await latest(client, workflow_id) == (completed_run, WorkflowExecutionStatus.COMPLETED)


def test_one_table_holds_every_started_workflow_types_policy() -> None:
    one_shot = (dunning.WORKFLOW_TYPE, quote.WORKFLOW_TYPE, support.WORKFLOW_TYPE)
    for workflow_type in one_shot:
        assert START_POLICIES[workflow_type].reuse == (
            WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY
        )
    # signal-with-start joins a running run
    assert START_POLICIES[dunning.WORKFLOW_TYPE].conflict == WorkflowIDConflictPolicy.USE_EXISTING
    assert START_POLICIES[churn.WORKFLOW_TYPE].conflict == WorkflowIDConflictPolicy.USE_EXISTING


@pytest.mark.parametrize(
    "path",
    [
        "webhooks/router.py",
        "activities/quote.py",  # the quote-to-cash catch-up
        "activities/churn.py",  # the churn sweep
        "activities/billing.py",  # the dunning catch-up
        "cli/approvals.py",  # revbridge start
    ],
)
def test_every_start_path_takes_its_policies_from_the_table(path: str) -> None:
    """The routes, the quote-to-cash and dunning catch-ups, the churn sweep and `revbridge start`
    start the same workflows: none may choose a reuse policy of its own."""
    source = (ROOT / path).read_text(encoding="utf-8")
    assert "start_options(" in source
    assert "WorkflowIDReusePolicy." not in source
