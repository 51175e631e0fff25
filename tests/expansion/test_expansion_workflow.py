"""ExpansionWorkflow over fake activities on the time-skipping server: a forecast that crosses
the policy opens ONE opportunity with a draft quote; repeated usage changes nothing; a decline
closes it; a won deal is recorded; assist mode proposes instead of creating; observe writes
nothing."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle

from domain import expansion as ex
from domain.expansion import (
    ExpansionInput,
    ExpansionOutcome,
    ExpansionStatus,
    MeteredPlan,
    OutcomeSignal,
    UsageBatch,
    UsageDay,
    expansion_workflow_id,
)
from domain.forecast import ExpansionPolicy
from domain.policy import Mode, Outcome
from tests.fast.fakes import Fakes, counter, governance, policy, started
from tests.pairs import eventually

BILLING, CRM = "fakebill", "fakecrm"
TODAY = date(2026, 12, 1)
SUB, ITEM = "sub-1", "api-calls-USD-monthly"
POLICY = ExpansionPolicy(min_deal_mrr=5000)


def plan() -> MeteredPlan:
    return MeteredPlan(
        subscription_id=SUB,
        item=ITEM,
        plan_price_id="starter-USD-monthly",
        plan_unit_amount=10_000,
        included_per_period=10_000,
        overage_unit_price=2,
        upgrade_price_id="growth-USD-monthly",
        upgrade_unit_amount=30_000,
        upgrade_included_per_period=50_000,
    )


def growth(first: date, last: date, start: float = 150, per_day: float = 2) -> list[UsageDay]:
    """Steady growth: ``start + per_day * (days since TODAY - 87)``."""
    origin = TODAY - timedelta(days=87)
    n = (last - first).days + 1
    return [
        UsageDay(
            subscription_id=SUB,
            item=ITEM,
            day=first + timedelta(days=i),
            quantity=start + per_day * ((first + timedelta(days=i)) - origin).days,
        )
        for i in range(n)
    ]


def batch(event: str, days: list[UsageDay], covers_from: date | None = None) -> UsageBatch:
    return UsageBatch(
        event_id=event,
        customer_id=CUSTOMER,
        today=TODAY,
        days=days,
        plans=[plan()],
        policy=POLICY,
        covers_from=covers_from or TODAY - timedelta(days=2),
    )


CUSTOMER = "cus-exp"


def fakes(mode: Mode = Mode.AUTO, **outcomes: Outcome) -> Fakes:
    f = governance(Fakes())
    if mode is not Mode.AUTO or outcomes:
        f.on("decide_policy", policy(outcomes, mode=mode))
    backfill = growth(TODAY - timedelta(days=87), TODAY - timedelta(days=3))
    return (
        f.on("expansion_backfill", {"days": [d.model_dump(mode="json") for d in backfill]})
        .on(
            "expansion_find_account",
            {"account": {"id": "001A", "name": "Initech", "owner_id": "005OWNER"}},
        )
        .on(
            "expansion_upsert_records",
            {"opportunity_id": "006OPP", "quote_id": "0Q0QUOTE", "created": True},
        )
        .on("expansion_upsert_signal", counter("a0E"))
        .on(
            "expansion_opportunity_state", {"closed": False, "won": False, "stage": "Qualification"}
        )
        .on("expansion_close", {"closed": True, "won": False, "stage": "Closed Lost"})
        .on("upsert_crm_task", {"id": "00TTASK"})
    )


async def status(handle: WorkflowHandle[Any, Any]) -> ExpansionStatus:
    return await handle.query(ex.QUERY_STATUS, result_type=ExpansionStatus)


async def start(client: Client, f: Fakes, first: UsageBatch):  # type: ignore[no-untyped-def]
    wf_id = expansion_workflow_id(BILLING, CUSTOMER) + "-" + uuid.uuid4().hex[:6]
    return started(
        client,
        f,
        ex.WORKFLOW_TYPE,
        ExpansionInput(billing=BILLING, crm=CRM, customer_id=CUSTOMER),
        id=wf_id,
        start_signal=ex.SIGNAL_USAGE,
        start_signal_args=[first],
    )


async def test_a_crossing_opens_one_opportunity_with_a_draft_quote_and_repeats_change_nothing(
    fast_client: Client,
) -> None:
    f = fakes()
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(fast_client, f, first) as handle:
        s = await eventually(lambda: status(handle), lambda s: bool(s.open), "opened")
        assert "opportunity 006OPP, quote 0Q0QUOTE" in s.open[0]
        assert f.names().count("expansion_backfill") == 1
        draft = f.inputs("expansion_upsert_records")[0]["draft"]
        assert draft["owner_id"] == "005OWNER" and draft["unit_amount"] == 30_000
        assert draft["upgrade_mrr"] == 20_000 and draft["discount_percent"] == 0
        signal = f.inputs("expansion_upsert_signal")[0]["record"]
        assert signal["status"] == "Open" and signal["opportunity_id"] == "006OPP"
        assert signal["days_to_limit"] is not None and signal["days_to_limit"] <= 45
        assert signal["recommended_price_id"] == "growth-USD-monthly"
        assert ("expansion_opened", "opportunity and draft quote") in f.audited()

        # the same batch again (a redelivered signal), and the next day's intake re-sending
        # the same totals: no second opportunity, quote or signal write
        await handle.signal(ex.SIGNAL_USAGE, first)
        await handle.signal(
            ex.SIGNAL_USAGE, batch("intake-2:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
        )
        await eventually(
            lambda: status(handle),
            lambda s: "update" in s.last_forecast.get(f"{SUB}/{ITEM}", ""),
            "second batch forecast",
        )
        assert f.names().count("expansion_upsert_records") == 1
        assert f.names().count("expansion_upsert_signal") == 1
        assert f.names().count("expansion_backfill") == 1  # never re-read
        # every write's key is the same on every attempt (derived from the workflow)
        assert (
            draft["opportunity_key"].startswith("rb-")
            and draft["quote_key"] != draft["opportunity_key"]
        )


async def test_a_decline_closes_it_with_the_reason(fast_client: Client) -> None:
    f = fakes()
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(fast_client, f, first) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.open), "opened")
        # a month of falling usage (corrected totals for the last 30 days)
        fall = [
            UsageDay(subscription_id=SUB, item=ITEM, day=TODAY - timedelta(days=i), quantity=60)
            for i in range(30)
        ]
        await handle.signal(
            ex.SIGNAL_USAGE, batch("intake-3:cus-exp", fall, covers_from=TODAY - timedelta(29))
        )
        s = await eventually(lambda: status(handle), lambda s: bool(s.closed), "closed")
        assert not s.open and "closed" in s.closed[0]
        close = f.inputs("expansion_close")
        assert len(close) == 1 and close[0]["opportunity_id"] == "006OPP"
        assert "no longer heads for the limit" in close[0]["reason"]
        last = f.inputs("expansion_upsert_signal")[-1]["record"]
        assert last["status"] == "Closed" and "no longer" in last["close_reason"]
        assert ("expansion_closed", "closed") in f.audited()
        from tests.expansion.test_q2c_upgrade import keep

        await keep(handle, "ExpansionWorkflow__opened_repeated_declined")


async def test_a_won_deal_is_recorded_for_attribution(fast_client: Client) -> None:
    f = fakes()
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(fast_client, f, first) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.open), "opened")
        won = OutcomeSignal(
            event_id="q2c:won:006OPP",
            opportunity_id="006OPP",
            outcome=ExpansionOutcome.WON,
            mrr_before=10_000,
            mrr_after=30_000,
            subscription_id=SUB,
        )
        await handle.signal(ex.SIGNAL_OUTCOME, won)
        await handle.signal(ex.SIGNAL_OUTCOME, won)  # redelivered: once
        s = await eventually(lambda: status(handle), lambda s: bool(s.closed), "won")
        assert s.closed == [f"{SUB}/{ITEM}: won (opportunity 006OPP won)"]
        assert "expansion_close" not in f.names()  # a won opportunity is not closed lost
        assert f.inputs("expansion_upsert_signal")[-1]["record"]["status"] == "Won"
        entries = [e for e in f.crm_entries() if e["action"] == "expansion_won"]
        assert len(entries) == 1 and "100.00 → 300.00" in entries[0]["summary"]


async def test_assist_mode_proposes_in_a_task_and_creates_no_opportunity(
    fast_client: Client,
) -> None:
    f = fakes(
        Mode.ASSIST, update_crm_field=Outcome.NEEDS_APPROVAL, create_task=Outcome.NEEDS_APPROVAL
    )
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(fast_client, f, first) as handle:
        s = await eventually(lambda: status(handle), lambda s: bool(s.open), "proposed")
        assert "task 00TTASK" in s.open[0]
        assert "expansion_upsert_records" not in f.names()
        task = f.inputs("upsert_crm_task")[0]["draft"]
        assert task["owner_id"] == "005OWNER" and "assist mode" in task["description"]
        assert f.inputs("expansion_upsert_signal")[0]["record"]["opportunity_id"] is None


async def test_observe_mode_writes_nothing(fast_client: Client) -> None:
    f = fakes(
        Mode.OBSERVE,
        update_crm_field=Outcome.DENY,
        create_task=Outcome.DENY,
        write_note=Outcome.DENY,
    )
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with await start(fast_client, f, first) as handle:
        await eventually(lambda: status(handle), lambda s: bool(s.last_forecast), "forecast")
        await eventually(lambda: status(handle), lambda s: s.stage == "waiting for usage", "idle")
        assert f.writes() == []
        assert f.crm_entries() == [] and f.billing_entries() == []


async def test_a_discount_waits_for_revops_before_any_record(fast_client: Client) -> None:
    """With a discount in the policy the draft quote waits for a RevOps decision (the approval
    itself is the governed base's, tested in tests/fast): nothing is written meanwhile."""
    f = fakes(offer_discount=Outcome.NEEDS_APPROVAL)
    f.on("eligible_approvers", {"emails": ["bob@example.com"]})
    discounted = POLICY.model_copy(update={"upgrade_discount_percent": 10})
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY)).model_copy(
        update={"policy": discounted}
    )
    async with await start(fast_client, f, first) as handle:
        pending = await eventually(
            lambda: handle.query("pending_approvals"), lambda p: bool(p), "approval asked"
        )
        assert pending[0]["action"]["kind"] == "offer_discount"
        assert pending[0]["action"]["discount_percent"] == 10
        assert pending[0]["eligible_approvers"] == ["bob@example.com"]
        assert "expansion_upsert_records" not in f.names()
        assert "expansion_upsert_signal" not in f.names()
