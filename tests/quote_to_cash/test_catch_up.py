"""The catch-up: won deals whose callout never came still get exactly one run; and the Temporal
Schedule that runs it every 15 minutes is created once and updated in place."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from temporalio.client import Client, ScheduleActionStartWorkflow

from domain.quote import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
from domain.quote import CatchUpInput, CatchUpResult, QuoteToCashResult
from sandbox.hubspot.emulator import SEARCH_LAG_S
from tests.pairs import Pair, on_pairs
from tests.quote_to_cash.conftest import keep_history, live_subscriptions, won_deal
from workers.catch_ups import EVERY, ensure_q2c_schedule
from workers.catch_ups import q2c_schedule_id as schedule_id

STANDARD = [("RB-CORE", 1, 50_000, 0.0), ("RB-SEAT", 3, 4_000, 0.0)]


async def catch_up(client: Client, pair: Pair, since: datetime, uid: str, n: int) -> CatchUpResult:
    return await client.execute_workflow(
        WORKFLOW_TYPE,
        CatchUpInput(since=since),
        id=f"q2c-catch-up-test-{uid}-{n}",
        task_queue=pair.settings.task_queue,
        result_type=CatchUpResult,
    )


async def index_lag(pair: Pair) -> None:
    """HubSpot's search index shows a write seconds later (the sandbox: SEARCH_LAG_S)."""
    if pair.settings.crm == "hubspot":
        await asyncio.sleep(SEARCH_LAG_S + 0.2)


@on_pairs("chargebee×salesforce", "stripe×hubspot")
async def test_the_catch_up_starts_a_missed_deal_once_and_never_again(
    client: Client, pair: Pair, uid: str
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    # Won in the CRM; its callout is lost (no run is started here)
    deal = won_deal(pair, uid, STANDARD, callout=False)
    wf_id = deal.workflow_id(pair)
    await index_lag(pair)  # the catch-up searches the CRM: a won deal shows once indexed

    first = await catch_up(client, pair, since, uid, 1)
    assert deal.opportunity_id in first.found
    assert wf_id in first.running and wf_id not in first.already_done
    assert first.watermark > since
    handle = client.get_workflow_handle(wf_id, result_type=QuoteToCashResult)
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "live", result.reason

    # our write-back modified the deal, so the next catch-up sees it again: it starts nothing
    await index_lag(pair)
    second = await catch_up(client, pair, since, uid, 2)
    assert deal.opportunity_id in second.found
    assert wf_id in second.already_done and wf_id not in second.running
    [customer] = pair.billing_driver.customers(email=deal.email)
    assert len(live_subscriptions(pair, customer["id"])) == 1
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{wf_id}'")]
    assert len(runs) == 1
    await keep_history(pair, client.get_workflow_handle(f"q2c-catch-up-test-{uid}-1"), "started")


@on_pairs("chargebee×salesforce")  # pair-independent
async def test_the_schedule_is_created_once_and_updated_in_place(
    client: Client, pair: Pair
) -> None:
    settings = pair.settings.model_copy(update={"task_queue": "q2c-schedule-test"})
    handle = client.get_schedule_handle(schedule_id(settings))
    try:
        assert await ensure_q2c_schedule(client, settings) == "created"
        await handle.pause(note="paused by an operator")
        assert await ensure_q2c_schedule(client, settings) == "updated"
        desc = await handle.describe()
        assert [i.every for i in desc.schedule.spec.intervals] == [EVERY]
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == WORKFLOW_TYPE and action.task_queue == "q2c-schedule-test"
        assert desc.schedule.state.paused  # the operator's pause survives an update
    finally:
        await handle.delete()
