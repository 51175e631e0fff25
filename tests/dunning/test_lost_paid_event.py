"""Issue 13, harm 1: no customer is chased for an invoice they paid, even when the "paid" webhook
never arrives — on Temporal's time-skipping server, once per vendor, asserting from the SMTP
mailbox and the billing sandbox's request ledger.

The customer pays in billing after the first reminder and no webhook reaches RevBridge (the
sandbox's webhook endpoints are removed, as in an outage). Two repairs, each shown alone:

- the billing catch-up (the schedule's workflow, run once here) finds the payment and settles the
  run at once, days before its next step;
- without it, the run reads the invoice again before its next customer-facing step and closes as
  recovered instead of sending reminder 2 (or retrying the payment).

On the code before the fix both runs went on: reminder 2 went out on day 3 (and the catch-up
workflow did not exist).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from temporalio.client import Client, ScheduleActionStartWorkflow, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain.dunning import (
    CATCH_UP_WORKFLOW_TYPE,
    DunningCatchUpInput,
    DunningCatchUpResult,
    DunningResult,
)
from domain.settings import Settings
from sandbox.mailbox import MailboxEmulator
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.conftest import start_time_skipping
from tests.dunning.conftest import inbox
from tests.dunning.test_playbook_schedules import start
from tests.pairs import Pair, on_cover
from workers.catch_ups import EVERY, ensure_dunning_schedule
from workers.catch_ups import dunning_schedule_id as schedule_id

_, _, INITECH = DEMO_CUSTOMERS  # Mid-Market, a technical decline: reminders and a day-3 retry
HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def keep_history(pair: Pair, handle: WorkflowHandle, name: str) -> None:
    """With REVBRIDGE_WRITE_HISTORIES=1 (`make histories`), commit the run for the replay gate."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1" and pair.name == "chargebee×salesforce":
        wf_type = (await handle.describe()).workflow_type
        history = await handle.fetch_history()
        (HISTORIES / f"{wf_type}__{name}.json").write_text(history.to_json())


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of each test's own: the catch-up may start runs for other tests'
    invoices in the shared sandbox, and one of those left without its worker would stall the
    session's clock for every later time-skipping test."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


def ledger_after(pair: Pair, invoice_id: str, index: int) -> list[dict]:
    """Billing requests about the invoice after the ``index``-th ledger entry."""
    rows = httpx.get(pair.billing_url + "/_sandbox/requests").json()["requests"]
    return [r for r in rows[index:] if invoice_id in r["path"]]


def not_retried(pair: Pair, invoice_id: str, index: int) -> bool:
    """No payment attempt (Chargebee collect_payment, Stripe pay) after ledger entry ``index``."""
    return not [
        r
        for r in ledger_after(pair, invoice_id, index)
        if r["method"] == "POST" and r["path"].endswith(("/collect_payment", "/pay"))
    ]


def ledger_size(pair: Pair) -> int:
    return len(httpx.get(pair.billing_url + "/_sandbox/requests").json()["requests"])


@on_cover()
async def test_the_catch_up_settles_the_run_when_the_paid_event_is_lost(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    # from this test's start: failures other tests left in the shared sandbox stay out of it
    began = datetime.now(UTC)
    ids, run = await start(time_env, pair, schedule_worker, INITECH, uid)
    status = await run.idle()
    assert status.reminders_sent == 1 and len(inbox(mailbox, ids["invoice"])) == 1

    # the customer pays; the "paid" webhook is lost (no endpoint: the outage)
    await asyncio.to_thread(pair.billing_driver.pay, ids["invoice"], INITECH.invoice_total)
    paid_at = ledger_size(pair)
    caught: DunningCatchUpResult = await time_env.client.execute_workflow(
        CATCH_UP_WORKFLOW_TYPE,
        DunningCatchUpInput(since=began),  # the test server's clock runs ahead of the sandbox's
        id=f"dunning-catch-up-test-{uid}",
        task_queue=schedule_worker,
        result_type=DunningCatchUpResult,
    )
    # The sandbox is shared: failures other tests left in the window started runs here too.
    # They would outlive this test's worker and stall the test server's clock: end them.
    mine = pair.workflow_id(ids["invoice"])
    for wf_id in {*caught.runs.started, *caught.runs.signalled} - {mine}:
        await time_env.client.get_workflow_handle(wf_id).terminate("not this test's invoice")
    assert ids["invoice"] in caught.paid
    assert pair.workflow_id(ids["invoice"]) in caught.runs.signalled

    result: DunningResult = await run.handle.result()
    assert result.outcome == "recovered"
    # closed well before day 3 (the run's own clock): no reminder, no retry after the payment
    desc = await run.handle.describe()
    assert desc.close_time is not None and desc.close_time - desc.start_time < timedelta(days=1)
    assert len(inbox(mailbox, ids["invoice"])) == 1
    assert not_retried(pair, ids["invoice"], paid_at)
    assert [r["action"] for r in pair.audit(ids["invoice"])][-1] == "close_dunning"
    await keep_history(
        pair, time_env.client.get_workflow_handle(f"dunning-catch-up-test-{uid}"), "settled"
    )


@on_cover()
async def test_the_run_reads_the_invoice_again_before_its_next_step(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    ids, run = await start(time_env, pair, schedule_worker, INITECH, uid)  # retried on day 3
    await run.idle()
    assert len(inbox(mailbox, ids["invoice"])) == 1

    await asyncio.to_thread(pair.billing_driver.pay, ids["invoice"], INITECH.invoice_total)
    paid_at = ledger_size(pair)
    status = await run.to_next_step()  # day 3: reminder 2 and a retry were due
    assert status.stage == "closed"
    result: DunningResult = await run.handle.result()
    assert result.outcome == "recovered"
    assert result.attribution == "paid before day 3 (billing said so; no paid event came)"
    assert len(inbox(mailbox, ids["invoice"])) == 1  # reminder 2 never went out
    assert not_retried(pair, ids["invoice"], paid_at)  # and the payment was not retried
    log = [(r["action"], r["outcome"]) for r in pair.audit(ids["invoice"])]
    assert [a for a, _ in log] == ["create_case", "send_email", "close_dunning"]
    assert log[-1][1] == "recovered"
    await keep_history(pair, run.handle, "playbook_paid_found_on_reread")


async def test_the_catch_up_schedule_is_created_once_and_updated_in_place(client: Client) -> None:
    settings = Settings(
        billing="stripe", crm="hubspot", task_queue=f"dunning-sched-{uuid4().hex[:6]}"
    )
    handle = client.get_schedule_handle(schedule_id(settings))
    try:
        assert await ensure_dunning_schedule(client, settings) == "created"
        await handle.pause(note="paused by an operator")
        assert await ensure_dunning_schedule(client, settings) == "updated"
        desc = await handle.describe()
        assert [i.every for i in desc.schedule.spec.intervals] == [EVERY]
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == CATCH_UP_WORKFLOW_TYPE
        assert action.task_queue == settings.task_queue
        assert desc.schedule.state.paused  # the operator's pause survives an update
    finally:
        await handle.delete()
