"""Dunning schedules on Temporal's time-skipping test server: a worker for the pair under test on
the test server, mailing through the sandbox's SMTP mailbox over STARTTLS with a login."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from activities import billing as billing_activities
from connectors.email import SmtpMailer
from domain.dunning import DunningStatus
from sandbox.framework import ServerThread
from sandbox.mailbox import MailboxEmulator
from tests.pairs import Pair, eventually
from workers.main import build_worker

#: the relay's login: the dunning schedules mail through the production path (STARTTLS with the
#: relay's certificate verified, then AUTH), as a deployment with SMTP_STARTTLS does
SMTP_USER, SMTP_PASSWORD = "revbridge", "sandbox-relay-password"  # noqa: S105 - sandbox only


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[MailboxEmulator, str]]:
    em = MailboxEmulator(username=SMTP_USER, password=SMTP_PASSWORD)
    with ServerThread({em: 0}) as thread:
        em.start_smtp()
        try:
            yield em, thread.urls["mailbox"]
        finally:
            em.stop_smtp()


@dataclass
class Schedule:
    """Walks a dunning run through its schedule, one step at a time, on the test server's clock.

    Time moves only in :meth:`to_next_step` (auto-skipping stays locked): to one second past the
    next step, then — in real time — until the workflow is idle again. Activities never see the
    clock jump under them."""

    env: WorkflowEnvironment
    handle: WorkflowHandle

    async def status(self) -> DunningStatus:
        return await self.handle.query("status", result_type=DunningStatus)

    async def idle(self, within_s: float = 30.0) -> DunningStatus:
        """Until the run waits (for a step, or paused) or has closed."""

        return await eventually(
            self.status,
            lambda s: (
                s.stage in ("waiting for payment", "paused by an open support case", "closed")
            ),
            "the run waiting for its next step",
            within_s=within_s,
        )

    async def to_next_step(self) -> DunningStatus:
        before = await self.idle()
        assert before.next_step_at is not None, before
        now = await self.env.get_current_time()
        await self.env.sleep(max(before.next_step_at - now, timedelta(0)) + timedelta(seconds=1))

        await eventually(
            self.status,
            lambda s: s.next_step_at != before.next_step_at or s.stage == "closed",
            "the step running",
            within_s=30,
        )
        return await self.idle()

    async def day(self) -> float:
        """Days since the run's schedule started (test server clock)."""
        start = (await self.handle.describe()).start_time
        return ((await self.env.get_current_time()) - start).total_seconds() / 86_400


@pytest.fixture
async def schedule_worker(
    time_env: WorkflowEnvironment,
    pair: Pair,
    mailbox: tuple[MailboxEmulator, str],
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[str]:
    """A worker for this pair on the time-skipping server; yields its task queue. Its dunning
    runs hand their failures to churn as in production. Before the worker leaves, every churn
    intervention they started is let finish what it is doing (no activity or workflow task in
    flight), then ended if still running: one left mid-activity when its worker stopped kept the
    shared server's clock locked, so the next pair's first ``env.sleep`` timed out ("Timeout
    expired"), terminated or not (seen with the second-failure test's intervention, still busy
    at its test's end). The handoff used to be switched off here for that reason."""
    em, _ = mailbox
    assert em.smtp_port
    # billing's webhooks would start the same runs on the dev server's deployment: not here
    httpx.delete(pair.billing_url + "/_sandbox/webhooks").raise_for_status()
    queue = f"dunning-ts-{pair.settings.billing}-{pair.settings.crm}-{uuid.uuid4().hex[:6]}"
    mailer = SmtpMailer(
        "127.0.0.1",
        em.smtp_port,
        "billing@revbridge.local",
        timeout_s=2,
        starttls=True,
        username=SMTP_USER,
        password=SMTP_PASSWORD,
        ca_file=em.cert_file,
    )

    started: set[str] = set()
    churn_id = billing_activities.churn_workflow_id

    def recorded(billing: str, customer_id: str) -> str:
        started.add(churn_id(billing, customer_id))
        return churn_id(billing, customer_id)

    monkeypatch.setattr(billing_activities, "churn_workflow_id", recorded)
    async with build_worker(
        time_env.client, pair.billing, pair.crm, task_queue=queue, mailer=mailer
    ):
        yield queue
        for wf_id in sorted(started):
            await _settle(time_env.client.get_workflow_handle(wf_id))


async def _settle(handle: WorkflowHandle, within_s: float = 20.0) -> None:
    """Until the run has nothing in flight (or has closed); then end it if it still runs."""
    for _ in range(int(within_s / 0.2)):
        desc = await handle.describe()
        if desc.status is not WorkflowExecutionStatus.RUNNING:
            return
        raw = desc.raw_description
        idle = PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_UNSPECIFIED
        if not raw.pending_activities and raw.pending_workflow_task.state == idle:
            break
        await asyncio.sleep(0.2)
    try:
        await handle.terminate("its test is over")
    except RPCError as exc:  # it closed between the look and the terminate: nothing to end
        if "Completed workflow" not in str(exc) and exc.status is not RPCStatusCode.NOT_FOUND:
            raise


def inbox(mailbox: tuple[MailboxEmulator, str], invoice_id: str) -> list[dict[str, Any]]:
    """Messages about one invoice, oldest first."""
    _, url = mailbox
    rows = httpx.get(url + "/_sandbox/mailbox/messages").json()["messages"]
    return [m for m in rows if invoice_id in m["subject"]]
