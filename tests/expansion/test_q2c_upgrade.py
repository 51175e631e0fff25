"""Closing the loop on fakes: a won expansion opportunity makes quote-to-cash CHANGE the existing
subscription (no create), write the new MRR to the CRM and tell the customer's expansion
workflow, which records the win; a refused change leaves billing as it was. Also the daily intake
walking its pages."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client

from domain import expansion as ex
from domain.expansion import (
    ExpansionInput,
    ExpansionLink,
    ExpansionStatus,
    IntakeInput,
    IntakeResult,
    expansion_workflow_id,
)
from domain.ids import idempotency_key, q2c_workflow_id
from domain.models import CrmAccount
from domain.policy import Outcome
from domain.quote import WORKFLOW_TYPE, QuoteToCashInput, QuoteToCashResult
from domain.records import Opportunity, OpportunityLine
from tests.expansion.test_expansion_workflow import (
    CUSTOMER,
    ITEM,
    SUB,
    TODAY,
    batch,
    fakes,
    growth,
)
from tests.fast.fakes import Fakes, governance, started
from tests.pairs import eventually

HISTORIES = Path(__file__).resolve().parents[1] / "histories"
CRM, BILLING = "fakecrm", "fakebill"


async def keep(handle, name: str) -> None:  # type: ignore[no-untyped-def]
    """`make histories`: this run's history for the replay gate (tests/replay)."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"{name}.json").write_text(history.to_json())


def won_expansion(opp_id: str, workflow_id: str) -> dict:
    opp = Opportunity(
        id=opp_id,
        name="Expansion: api-calls → growth",
        stage="Closed Won",
        won=True,
        amount=20_000,
        account=CrmAccount(id="001A", name="Initech", owner_id="005OWNER"),
        lines=[OpportunityLine(id="00k1", product_code="RB-GROWTH", quantity=1)],
    )
    link = ExpansionLink(
        opportunity_id=opp_id,
        customer_id=CUSTOMER,
        subscription_id=SUB,
        from_price_id="starter-USD-monthly",
        to_price_id="growth-USD-monthly",
        workflow_id=workflow_id,
        item=ITEM,
    )
    return {"opportunity": opp.model_dump(mode="json"), "expansion": link.model_dump(mode="json")}


def upgrade_fakes(found: dict, f: Fakes | None = None, **outcomes: Outcome) -> Fakes:
    return (
        (f or governance(Fakes(), **outcomes))
        .on("q2c_get_opportunity", found)
        .on(
            "q2c_change_subscription",
            {
                "subscription": {
                    "id": SUB,
                    "customer_id": CUSTOMER,
                    "status": "active",
                    "mrr": 30_000,
                    "created": True,
                },
                "mrr_before": 10_000,
            },
        )
        .on("q2c_write_billing_link", None)
    )


async def test_a_won_expansion_changes_the_subscription_and_the_expansion_records_it(
    fast_client: Client,
) -> None:
    f = fakes()
    exp_id = expansion_workflow_id(BILLING, CUSTOMER) + "-" + uuid.uuid4().hex[:6]
    first = batch("intake-1:cus-exp", growth(TODAY - timedelta(days=2), TODAY))
    async with started(
        fast_client,
        f,
        ex.WORKFLOW_TYPE,
        ExpansionInput(billing=BILLING, crm=CRM, customer_id=CUSTOMER),
        id=exp_id,
        start_signal=ex.SIGNAL_USAGE,
        start_signal_args=[first],
    ) as expansion:
        await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.open),
            "opened",
        )
        opp_id = "006OPP"
        upgrade_fakes(won_expansion(opp_id, exp_id), f)
        q2c_id = q2c_workflow_id(CRM, opp_id) + "-" + uuid.uuid4().hex[:6]
        async with started(
            fast_client,
            f,
            WORKFLOW_TYPE,
            QuoteToCashInput(crm=CRM, billing=BILLING, opportunity_id=opp_id),
            id=q2c_id,
            result_type=QuoteToCashResult,
        ) as q2c:
            result = await q2c.result()
            await keep(q2c, "QuoteToCashWorkflow__expansion_upgrade")
        assert result.outcome == "live" and result.subscription_id == SUB
        assert "upgraded sub-1: starter-USD-monthly → growth-USD-monthly" in result.reason
        assert "q2c_create_subscription" not in f.names()
        assert "q2c_create_billing_customer" not in f.names()
        (change,) = f.inputs("q2c_change_subscription")
        assert change["idempotency_key"] == idempotency_key(q2c_id, "change-subscription")
        assert (change["from_price_id"], change["to_price_id"]) == (
            "starter-USD-monthly",
            "growth-USD-monthly",
        )
        (link,) = f.inputs("q2c_write_billing_link")
        assert link["link"]["subscription_id"] == SUB and link["link"]["mrr"] == 30_000
        kinds = [i["action"] for i in f.inputs("decide_policy")]
        assert "change_plan" in kinds
        s = await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.closed),
            "won recorded",
        )
        assert s.closed == [f"{SUB}/{ITEM}: won (opportunity 006OPP won)"]
        assert any(
            e["action"] == "expansion_won" and "100.00 → 300.00" in e["summary"]
            for e in f.crm_entries()
        )
        await keep(expansion, "ExpansionWorkflow__opened_then_won")


async def test_a_refused_plan_change_leaves_billing_as_it_was(fast_client: Client) -> None:
    f = upgrade_fakes(won_expansion("006NO", "expansion:fakebill:gone"), change_plan=Outcome.DENY)
    async with started(
        fast_client,
        f,
        WORKFLOW_TYPE,
        QuoteToCashInput(crm=CRM, billing=BILLING, opportunity_id="006NO"),
        id=q2c_workflow_id(CRM, "006NO") + "-" + uuid.uuid4().hex[:6],
        result_type=QuoteToCashResult,
    ) as q2c:
        result = await q2c.result()
    assert result.outcome == "rolled_back" and "change_plan blocked" in result.reason
    assert "q2c_change_subscription" not in f.names()
    assert "q2c_create_subscription" not in f.names()


async def test_the_intake_walks_every_page_and_continues_as_new(fast_client: Client) -> None:
    pages = iter(
        [
            {"customers": 100, "metered": 40, "signalled": 40, "next_cursor": "c1"},
            {"customers": 100, "metered": 10, "signalled": 10, "next_cursor": "c2"},
            {"customers": 7, "metered": 1, "signalled": 1, "next_cursor": None},
        ]
    )
    f = Fakes().on("expansion_intake_page", lambda _i: next(pages))
    async with started(
        fast_client,
        f,
        ex.INTAKE_WORKFLOW_TYPE,
        IntakeInput(billing=BILLING, crm=CRM, pages_per_run=2, intake_id="intake-t"),
        id=f"expansion-intake-{uuid.uuid4().hex[:6]}",
        result_type=IntakeResult,
    ) as intake:
        result = await intake.result()
        await keep(intake, "ExpansionIntakeWorkflow__three_pages")
    assert (result.customers, result.pages, result.runs) == (207, 3, 2)
    cursors = [i["cursor"] for i in f.inputs("expansion_intake_page")]
    assert cursors == [None, "c1", "c2"]
    assert {i["intake_id"] for i in f.inputs("expansion_intake_page")} == {"intake-t"}


async def test_the_intake_schedule_is_created_once_and_updated_after(client: Client) -> None:
    from workers.expansion_schedule import IntakeSchedule, ensure_expansion_schedule

    spec = IntakeSchedule(
        billing="chargebee",
        crm="salesforce",
        task_queue=f"exp-{uuid.uuid4().hex[:6]}",
        schedule_id=f"revbridge-expansion-intake-{uuid.uuid4().hex[:6]}",
    )
    assert await ensure_expansion_schedule(client, spec) == "created"
    assert await ensure_expansion_schedule(client, spec) == "updated"
    desc = await client.get_schedule_handle(spec.schedule_id).describe()
    assert desc.schedule.action.workflow == ex.INTAKE_WORKFLOW_TYPE  # type: ignore[union-attr]
    await client.get_schedule_handle(spec.schedule_id).delete()
