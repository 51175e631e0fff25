"""Dunning schedules on Temporal's time-skipping test server: a worker for the pair under test on
the test server, mailing through the sandbox's SMTP mailbox over STARTTLS with a login."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle
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
    runs hand no failure to churn (tests/fast and tests/workflows test the handoff): with the
    churn interventions on this shared time-skipping server, the next pair's first schedule test
    timed out skipping time, even with every intervention closed or terminated after its test
    (not understood yet)."""
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

    def no_churn(billing: str, customer_id: str) -> str:
        raise ValueError("no churn interventions on the time-skipping server")

    # the handoff answers invalid_customer_id and starts nothing
    monkeypatch.setattr(billing_activities, "churn_workflow_id", no_churn)
    async with build_worker(
        time_env.client, pair.billing, pair.crm, task_queue=queue, mailer=mailer
    ):
        yield queue


def inbox(mailbox: tuple[MailboxEmulator, str], invoice_id: str) -> list[dict[str, Any]]:
    """Messages about one invoice, oldest first."""
    _, url = mailbox
    rows = httpx.get(url + "/_sandbox/mailbox/messages").json()["messages"]
    return [m for m in rows if invoice_id in m["subject"]]
