"""Whole dunning schedules, walked on Temporal's time-skipping test server (days pass in seconds),
once per vendor (``on_cover``: every billing platform and every CRM): the exact emails in the SMTP
mailbox, tasks and cases in the CRM, and calls in the billing sandbox. Each branch of the schedule
is proven over fake activities in tests/fast/test_dunning.py.

The playbooks under test are the shipped ``policies/playbooks.yaml``: SMB and Mid-Market are
reminded by email on days 0, 3, 7 and 14 (a retry on day 3 when the decline allows one), Strategic
accounts are handled by their owner, and an unpaid invoice is written off on day 21.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import httpx
from temporalio.testing import WorkflowEnvironment

from domain import temporal as names
from domain.dunning import DunningResult
from domain.models import CaseDraft, CasePriority, InvoicePaid
from sandbox.mailbox import MailboxEmulator
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.dunning.conftest import Schedule, inbox
from tests.pairs import Pair, on_cover
from tests.workflows.test_dunning import keep_history

NORTHWIND, GLOBEX, INITECH = DEMO_CUSTOMERS  # SMB expired card, Enterprise, Mid-Market technical
UMBRELLA = replace(
    GLOBEX,
    key="umbrella",
    company="Umbrella Holdings",
    tier="Strategic",
    decline_code="expired_card",
)


async def start(
    env: WorkflowEnvironment,
    pair: Pair,
    queue: str,
    customer,
    uid: str,  # noqa: ANN001
) -> tuple[dict[str, str], Schedule]:
    ids = pair.seed(customer, uid)
    await asyncio.to_thread(pair.billing_driver.decline, ids["invoice"])  # the card declines
    handle = await pair.start_directly(env.client, ids, f"ev_{uid}", task_queue=queue)
    return ids, Schedule(env, handle)


async def paid(env: WorkflowEnvironment, pair: Pair, ids: dict[str, str], amount: int) -> None:
    """The customer pays in billing; the paid event reaches the run (the webhook route's job on
    the dev server — here the test delivers the canonical event itself)."""
    await asyncio.to_thread(pair.billing_driver.pay, ids["invoice"], amount)
    handle = env.client.get_workflow_handle(pair.workflow_id(ids["invoice"]))
    await handle.signal(
        names.SIGNAL_INVOICE_PAID,
        InvoicePaid(
            billing=pair.settings.billing,
            event_id=f"paid_{ids['invoice']}",
            invoice_id=ids["invoice"],
            customer_id=ids["customer"],
            occurred_at=datetime.now(UTC),
        ),
    )


def collect_calls(pair: Pair, invoice_id: str) -> int:
    """Payment attempts RevBridge asked billing for (Chargebee collect_payment / Stripe pay)."""
    ledger = httpx.get(pair.billing_url + "/_sandbox/requests").json()["requests"]
    tail = "/collect_payment" if pair.settings.billing == "chargebee" else "/pay"
    return sum(
        1
        for r in ledger
        if r["method"] == "POST" and invoice_id in r["path"] and r["path"].endswith(tail)
    )


@on_cover()
async def test_recovered_on_day_5_after_two_reminders(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    ids, run = await start(time_env, pair, schedule_worker, NORTHWIND, uid)
    declines = collect_calls(pair, ids["invoice"])  # the customer's own failed payment
    status = await run.idle()
    assert (status.segment, status.reminders_sent, status.reminders_total) == ("SMB", 1, 4)
    [first] = inbox(mailbox, ids["invoice"])
    assert first["to"] == [f"billing+{ids['customer']}@example.com"]
    assert "Reminder 1 of 4" in first["body"] and "expired" in first["body"]

    status = await run.to_next_step()  # day 3: reminder 2 (an expired card is not retried)
    assert status.reminders_sent == 2 and 3 <= await run.day() < 4
    assert len(inbox(mailbox, ids["invoice"])) == 2
    assert collect_calls(pair, ids["invoice"]) == declines

    await time_env.sleep(2 * 86_400)  # day 5: the customer updates the card and pays
    await paid(time_env, pair, ids, NORTHWIND.invoice_total)
    result: DunningResult = await run.handle.result()
    assert result.outcome == "recovered"
    assert result.attribution == "paid after reminder 2 (day 3)"
    mails = inbox(mailbox, ids["invoice"])
    assert [m["body"].count("Reminder") for m in mails] == [1, 1]  # and no third
    # exactly once: one delivery per step (the mailbox keeps every delivery, folds none)
    assert [m["delivery"] for m in mails] == [1, 1]
    assert len({m["message_id"] for m in mails}) == 2
    assert [r["action"] for r in pair.audit(ids["invoice"])] == [
        "create_case",
        "send_email",
        "send_email",
        "close_dunning",
    ]


@on_cover()
async def test_written_off_on_day_21_after_the_whole_schedule(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    ids, run = await start(time_env, pair, schedule_worker, INITECH, uid)  # Mid-Market, technical
    declines = collect_calls(pair, ids["invoice"])
    await run.idle()
    days = []
    for _ in range(4):  # days 3, 7, 14 and the end on day 21
        await run.to_next_step()
        days.append(int(await run.day()))
    assert days == [3, 7, 14, 21]
    result: DunningResult = await run.handle.result()
    assert result.outcome == "written_off"

    mails = inbox(mailbox, ids["invoice"])
    assert len(mails) == 4 and "Final reminder" in mails[-1]["subject"]
    assert collect_calls(pair, ids["invoice"]) == declines + 1  # day 3's retry, declined again
    account = pair.account_id(ids["customer"])
    tasks = pair.crm_driver.tasks(account)
    assert [t["subject"] for t in tasks] == [
        f"Call the customer about invoice {ids['invoice']} (day 7 of dunning)"
    ]
    log = [(r["action"], r["outcome"]) for r in pair.audit(ids["invoice"])]
    assert [a for a, _ in log] == [
        "create_case",
        "send_email",
        "send_email",
        "retry_payment",
        "send_email",
        "create_task",
        "send_email",
        "close_dunning",
    ]
    assert log[3][1].startswith("executed (declined")
    assert log[-1][1] == "written_off"
    await keep_history(pair, run.handle, "playbook_written_off")


@on_cover()
async def test_an_open_support_case_pauses_the_reminders(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    ids = pair.seed(NORTHWIND, uid)
    await asyncio.to_thread(pair.billing_driver.decline, ids["invoice"])
    account = pair.account_id(ids["customer"])
    outage = await asyncio.to_thread(
        pair.crm.upsert_case,
        CaseDraft(
            key=f"support-{uid}",
            account_id=account,
            subject="Dashboards are down",
            description="Nothing loads since this morning.",
            priority=CasePriority.HIGH,
            invoice_id="-",
        ),
    )
    handle = await pair.start_directly(
        time_env.client, ids, f"ev_{uid}", task_queue=schedule_worker
    )
    run = Schedule(time_env, handle)
    status = await run.idle()
    assert status.stage == "paused by an open support case"
    assert status.paused_by_case == outage.id
    for _ in range(5):  # five days of looking again, and not a single reminder
        status = await run.to_next_step()
    assert status.paused_by_case == outage.id and status.reminders_sent == 0
    assert inbox(mailbox, ids["invoice"]) == []
    assert 5 <= await run.day() < 6
    await time_env.sleep(86_400)

    await paid(time_env, pair, ids, NORTHWIND.invoice_total)
    result: DunningResult = await handle.result()
    assert result.outcome == "recovered" and result.attribution == "paid before any reminder"
    assert inbox(mailbox, ids["invoice"]) == []
    await keep_history(pair, handle, "playbook_paused_then_paid")


@on_cover()
async def test_a_strategic_account_goes_to_its_owner_not_to_email(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    ids, run = await start(time_env, pair, schedule_worker, UMBRELLA, uid)
    status = await run.idle()
    assert status.segment == "Strategic"
    account = await asyncio.to_thread(pair.crm.find_account, pair.settings.billing, ids["customer"])
    [task] = pair.crm_driver.tasks(account.id)
    assert task["subject"].startswith("Reach out to the customer: Payment for invoice")
    assert "not automated email" in task["description"]
    assert task["owner_id"] == account.owner_id and account.owner_id
    await run.to_next_step()  # day 3: a retry only if the decline allows (expired card: no)
    await run.to_next_step()  # day 7: the owner again
    assert len(pair.crm_driver.tasks(account.id)) == 2
    assert inbox(mailbox, ids["invoice"]) == []  # never an automated email
    await paid(time_env, pair, ids, UMBRELLA.invoice_total)
    result: DunningResult = await run.handle.result()
    assert result.attribution == "paid after reminder 2 (day 7)"


@on_cover()
async def test_a_second_failure_of_the_invoice_joins_the_running_schedule(
    time_env: WorkflowEnvironment,
    pair: Pair,
    schedule_worker: str,
    mailbox: tuple[MailboxEmulator, str],
    uid: str,
) -> None:
    ids, run = await start(time_env, pair, schedule_worker, NORTHWIND, uid)
    await run.idle()
    await run.to_next_step()  # day 3
    # the customer's bank declines again (their own retry): the event reaches the same run
    again = await pair.start_directly(
        time_env.client, ids, f"ev2_{uid}", task_queue=schedule_worker
    )
    assert again.id == run.handle.id
    status = await run.idle()
    assert status.failures_seen == 2
    assert (await again.describe()).run_id == (await run.handle.describe()).run_id
    await paid(time_env, pair, ids, NORTHWIND.invoice_total)
    result: DunningResult = await run.handle.result()
    assert result.outcome == "recovered"
    assert len(pair.cases(ids["invoice"])) == 1
    assert len(inbox(mailbox, ids["invoice"])) == 2
    closing = pair.audit(ids["invoice"])[-1]
    assert "2 failed attempt(s)" in closing["text"]
