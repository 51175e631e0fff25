"""The steps a full-stack expansion test on Salesforce walks through, whatever the billing
platform: two days' intake open one expansion (opportunity, draft quote, signal record), and the
rep's win becomes a plan change that RevOps approves in quote-to-cash; and the demo scenario run
on any pair (:func:`demo_scenario`)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from simple_salesforce import format_soql
from temporalio.client import Client, WorkflowHandle

from connectors.registry import build_billing, build_crm
from connectors.salesforce import SalesforceCrm
from domain import expansion as ex
from domain.approvals import QUERY, UPDATE, ApprovalSignal, Decision, PendingApproval
from domain.expansion import ExpansionStatus, IntakeInput, IntakeResult
from domain.ids import q2c_workflow_id
from domain.quote import WORKFLOW_TYPE, QuoteToCashInput, QuoteToCashResult
from domain.settings import Settings
from tests.pairs import eventually
from workers.main import build_worker


async def open_by_intake(
    client: Client,
    expansion: WorkflowHandle[Any, Any],
    billing: str,
    uid: str,
    queue: str,
    tag: str,
    crm: str = "salesforce",
) -> ExpansionStatus:
    """Two days' intake on ``queue``: the first opens the customer's expansion (an opportunity,
    a deal on HubSpot), the second finds it open and adds nothing. Returns the expansion's
    status."""
    for n in (1, 2):
        intake = await client.execute_workflow(
            ex.INTAKE_WORKFLOW_TYPE,
            IntakeInput(billing=billing, crm=crm, intake_id=f"t{n}-{uid}"),
            id=f"expansion-intake-{tag}-{n}",
            task_queue=queue,
            result_type=IntakeResult,
        )
        assert intake.customers >= 1

        def opened(s: ExpansionStatus, n: int = n) -> bool:
            if crm == "hubspot":  # a deal: its ID is a number, "-" until written
                return s.batches >= n and bool(s.open) and "opportunity -" not in s.open[0]
            return bool(s.open) and "opportunity 006" in s.open[0]

        status = await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            opened,
            "an open expansion",
            within_s=60,
        )
    return status


def hubspot_deal(
    api: Any, company: str, status: ExpansionStatus, growth: str, starter: str | None = None
) -> tuple[str, str]:
    """The company's one expansion deal — the company owner's, its expansion properties Open for
    ``growth`` (and from ``starter`` where given) — with one DRAFT quote: (deal ID, quote ID)."""
    deals = api.associations.v4.basic_api.get_page("companies", company, "deals").results
    assert len(deals) == 1, status
    deal = str(deals[0].to_object_id)
    props = api.deals.basic_api.get_by_id(
        deal,
        properties=[
            "dealtype",
            "hubspot_owner_id",
            "expansion_status",
            "expansion_current_price",
            "expansion_recommended_price",
            "expansion_days_to_limit",
            "expansion_reasons",
        ],
    ).properties
    assert props["dealtype"] == "existingbusiness" and props["hubspot_owner_id"] == "77001"
    assert props["expansion_status"] == "Open"
    if starter is not None:
        assert props["expansion_current_price"] == starter
    assert props["expansion_recommended_price"] == growth
    assert float(props["expansion_days_to_limit"]) <= 45
    assert "reaches the limit" in props["expansion_reasons"]
    quotes = api.associations.v4.basic_api.get_page("deals", deal, "quotes").results
    assert len(quotes) == 1
    quote = str(quotes[0].to_object_id)
    assert (
        api.quotes.basic_api.get_by_id(quote, properties=["hs_status"]).properties["hs_status"]
        == "DRAFT"
    )
    return deal, quote


async def win_recorded(expansion: WorkflowHandle[Any, Any]) -> ExpansionStatus:
    """The expansion's status once it recorded the win: closed as won, nothing open."""
    status = await eventually(
        lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
        lambda s: bool(s.closed),
        "the win recorded",
    )
    assert "won" in status.closed[0] and not status.open
    return status


def salesforce_upgrade(
    crm: SalesforceCrm, account: str, status: ExpansionStatus
) -> tuple[str, dict[str, Any]]:
    """The account's one upgrade opportunity, with one draft quote, and its one open expansion
    signal: (the opportunity's ID, the signal's fields)."""
    opps = crm.query(format_soql("SELECT Id, Type FROM Opportunity WHERE AccountId = {}", account))
    assert len(opps) == 1, status
    assert opps[0]["Type"] == "Existing Customer - Upgrade"
    opp = opps[0]["Id"]
    quotes = crm.query(format_soql("SELECT Id, Status FROM Quote WHERE OpportunityId = {}", opp))
    assert [q["Status"] for q in quotes] == ["Draft"]
    signals = crm.query(
        format_soql(
            "SELECT Status__c, Recommended_Price__c, Days_To_Limit__c, Reasons__c "
            "FROM Expansion_Signal__c WHERE Account__c = {}",
            account,
        )
    )
    assert len(signals) == 1 and signals[0]["Status__c"] == "Open"
    return opp, signals[0]


async def win_and_approve(
    client: Client, crm: SalesforceCrm, opp: str, billing: str, queue: str, timeout_s: float
) -> QuoteToCashResult:
    """The rep wins the opportunity; quote-to-cash starts as the CRM's callout would start it,
    asks RevOps for the plan change, is approved, and ends within ``timeout_s``."""
    crm.client.Opportunity.update(opp, {"StageName": "Closed Won"})
    q2c = await client.start_workflow(
        WORKFLOW_TYPE,
        QuoteToCashInput(crm="salesforce", billing=billing, opportunity_id=opp),
        id=q2c_workflow_id("salesforce", opp) + f"-{uuid.uuid4().hex[:4]}",
        task_queue=queue,
        result_type=QuoteToCashResult,
    )
    [pending] = await eventually(
        lambda: q2c.query(QUERY, result_type=list[PendingApproval]), bool, "approval"
    )
    assert pending.action.kind.value == "change_plan" and pending.approver_roles == ["revops"]
    await q2c.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.APPROVE, approver="bob@example.com"
        ),
    )
    return await asyncio.wait_for(q2c.result(), timeout=timeout_s)


async def demo_scenario(
    client: Client, settings: Settings, uid: str, lines: list[str]
) -> dict[str, Any]:
    """``revbridge demo --scenario expansion``'s own logic on ``settings``' pair, with the stack's
    own worker (quote-to-cash runs there, under the shipped policies); no callout reaches a test,
    so the catch-up's start stands in for it at once. The scenario's lines go to ``lines``."""
    from cli.demo_expansion import run_scenario

    async with build_worker(
        client, build_billing(settings), build_crm(settings), task_queue=settings.task_queue
    ):
        return await run_scenario(
            settings,
            client,
            client,
            lines.append,
            ui_url="http://ui.test/namespaces/default/workflows",
            suffix=uid,
            callout_wait_s=0,
        )
