"""ExpansionWorkflow: an open expansion that goes silent — no usage batch, no win or loss —
expires on its day (``expire_after_days`` of policies/expansion.yaml, patch
``expansion-expiry``): the opportunity closed lost with the reason "expired…", the signal
Expired, audited, recorded for attribution; then the idle workflow ends. A deal a person won
meanwhile is not expired: quote-to-cash tells its outcome.

On a time-skipping server of this module's own: the runs here skip months, and a clock held by
another test's leftovers must not stall them (nor theirs these)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain import expansion as ex
from domain.expansion import ExpansionOutcome, OutcomeSignal
from tests.conftest import own_time_skipping
from tests.expansion.test_expansion_workflow import (
    ITEM,
    POLICY,
    SUB,
    TODAY,
    batch,
    fakes,
    growth,
    start,
    status,
)
from tests.expansion.test_q2c_upgrade import keep
from tests.pairs import eventually

expiry_env = pytest.fixture(scope="module")(own_time_skipping)


@pytest.fixture
def skip_client(expiry_env: WorkflowEnvironment) -> Client:
    return expiry_env.client


async def test_a_silent_open_expansion_expires_on_its_day_then_the_workflow_ends(
    skip_client: Client,
) -> None:
    f = fakes()
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(skip_client, f, first) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.open), "opened")
        # no batch and no outcome ever again: the server skips to the expiry, then the idle end
        result = await asyncio.wait_for(handle.result(), timeout=60)
        assert [c["outcome"] for c in result["closed"]] == ["expired"]
        assert result["closed"][0]["opportunity_id"] == "006OPP"
        reason = result["closed"][0]["reason"]
        assert reason.startswith(f"expired: no win or loss in {POLICY.expire_after_days} days")
        # asked the CRM first (a person might have closed it), then closed it lost
        assert f.names().count("expansion_opportunity_state") == 1
        [close] = f.inputs("expansion_close")
        assert close["opportunity_id"] == "006OPP" and close["quote_id"] == "0Q0QUOTE"
        assert close["reason"].startswith("expired")
        last = f.inputs("expansion_upsert_signal")[-1]["record"]
        assert last["status"] == "Expired" and last["close_reason"].startswith("expired")
        assert ("expansion_expired", "expired") in f.audited()
        # expired on its day: opened_on + expire_after_days (the close's timer, not idle_days)
        history = await handle.fetch_history()
        timers = [
            e.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            for e in history.events
            if e.HasField("timer_started_event_attributes")
        ]
        assert timers[-1] == timedelta(days=60)  # the idle wait after the expiry
        assert any(t < timedelta(days=POLICY.expire_after_days) for t in timers[:-1])
        await keep(handle, "ExpansionWorkflow__silent_expired")


async def test_a_deal_won_meanwhile_is_not_expired_and_its_win_is_recorded(
    skip_client: Client, expiry_env: WorkflowEnvironment
) -> None:
    f = fakes().on(
        "expansion_opportunity_state", {"closed": True, "won": True, "stage": "Closed Won"}
    )
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(skip_client, f, first) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.open), "opened")
        await expiry_env.sleep(timedelta(days=POLICY.expire_after_days + 5))
        s = await status(handle)
        assert s.open and not s.closed  # won: quote-to-cash tells the outcome
        assert f.names().count("expansion_opportunity_state") == 1  # asked once, not every second
        assert "expansion_close" not in f.names()
        await handle.signal(
            ex.SIGNAL_OUTCOME,
            OutcomeSignal(
                event_id="q2c:won:006OPP",
                opportunity_id="006OPP",
                outcome=ExpansionOutcome.WON,
                mrr_before=10_000,
                mrr_after=30_000,
                subscription_id=SUB,
            ),
        )
        s = await eventually(lambda: status(handle), lambda s: bool(s.closed), "won recorded")
        assert "won" in s.closed[0] and not s.open
        assert f"{SUB}/{ITEM}" in s.closed[0]
