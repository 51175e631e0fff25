"""Usage-based expansion end to end on Chargebee × HubSpot and Stripe × HubSpot, through a real
worker and the sandboxes: usage grows → the daily intake → the customer's ExpansionWorkflow
opens ONE deal (the company owner's, expansion properties set) with ONE draft quote and line
item (auto mode); a second intake changes nothing; a person moves the deal to closedwon (the
portal sends ``deal.propertyChange`` dealstage=closedwon; on Chargebee × HubSpot it goes through
the deployment's webhook service, which starts quote-to-cash itself) → quote-to-cash reads the expansion from the deal, and after RevOps
approves, CHANGES the existing subscription — no second subscription in the billing ledger —
writes the new MRR to the company, and the expansion workflow records the win."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from cli.demo_expansion import _auto_policies, _seed_billing
from connectors.hubspot import HubSpotCrm
from connectors.registry import build_billing, build_crm
from domain import expansion as ex
from domain.approvals import QUERY, Decision, PendingApproval
from domain.expansion import ExpansionStatus, IntakeInput, IntakeResult, expansion_workflow_id
from domain.ids import q2c_workflow_id
from domain.models import DealWon
from domain.quote import WORKFLOW_TYPE, QuoteToCashInput, QuoteToCashResult
from tests.expansion.flow import hubspot_deal, open_by_intake, win_recorded
from tests.expansion.test_hubspot_expansion import hubspot_company, hubspot_product, hubspot_ready
from tests.pairs import HS_APP_ID, Pair, eventually, on_pairs, pair_settings
from tests.sync.world import decide
from webhooks.hubspot import normalize
from workers.main import build_worker


def _subscriptions(billing_name: str, billing: Any, customer: str) -> list[str]:
    if billing_name == "chargebee":
        rows = billing.client.Subscription.list({"customer_id[is]": customer}).list
        return [r.subscription.id for r in rows]
    return [s.id for s in billing._client.v1.subscriptions.list({"customer": customer}).data]


@pytest.mark.parametrize("billing_name", ["stripe"])  # Chargebee's: through the webhook, below
async def test_hubspot_expansion_opens_once_and_the_won_deal_upgrades_in_place(
    client: Client, sandbox_urls: dict[str, str], uid: str, tmp_path: Path, billing_name: str
) -> None:
    settings = pair_settings(sandbox_urls, billing_name, "hubspot", f"exp-hs-{uid}")
    billing, crm = build_billing(settings), build_crm(settings)
    assert isinstance(crm, HubSpotCrm)
    hs_url = sandbox_urls["hubspot"]
    httpx.delete(hs_url + "/_sandbox/webhooks").raise_for_status()  # no other pair's service
    hubspot_ready(crm)  # revbridge setup crm
    seeded = _seed_billing(settings, billing, uid)
    company = hubspot_company(crm, seeded["customer"], billing_name)
    hubspot_product(crm, f"RB-GROWTH-{uid}", "300.00")
    policy_dir = _auto_policies(settings, tmp_path, seeded["growth"], uid)
    api = crm._client.crm

    expansion = client.get_workflow_handle(expansion_workflow_id(billing_name, seeded["customer"]))
    async with build_worker(
        client, billing, crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        # the second day's intake finds the expansion open: nothing new
        status = await open_by_intake(
            client,
            expansion,
            billing_name,
            uid,
            settings.task_queue,
            f"hs-{uid}",
            crm="hubspot",
        )
        deal, quote = hubspot_deal(api, company, status, seeded["growth"])
        lines = api.associations.v4.basic_api.get_page("quotes", quote, "line_items").results
        assert len(lines) == 1

        # the rep wins it in HubSpot: the portal's webhook is what the route sends to q2c
        httpx.post(
            f"{hs_url}/_sandbox/hubspot/objects/deals/{deal}/ui_update",
            json={"properties": {"dealstage": "closedwon"}},
        ).raise_for_status()
        events = httpx.get(hs_url + "/_sandbox/hubspot/webhooks/events").json()["events"]
        [won_event] = [
            e
            for e in events
            if e["subscriptionType"] == "deal.propertyChange"
            and str(e["objectId"]) == deal
            and e.get("propertyName") == "dealstage"
        ]
        won = normalize(won_event, HS_APP_ID)
        assert isinstance(won, DealWon) and won.opportunity_id == deal
        q2c = await client.start_workflow(
            WORKFLOW_TYPE,
            QuoteToCashInput(crm="hubspot", billing=billing_name, opportunity_id=deal),
            id=q2c_workflow_id("hubspot", deal) + f"-{uuid.uuid4().hex[:4]}",
            task_queue=settings.task_queue,
            result_type=QuoteToCashResult,
        )
        [pending] = await eventually(
            lambda: q2c.query(QUERY, result_type=list[PendingApproval]), bool, "approval"
        )
        assert pending.action.kind.value == "change_plan" and pending.approver_roles == ["revops"]
        # RevOps approves as from the Web UI (stamped where the stack verifies approvers)
        await decide(client, q2c.id, pending.action_id, Decision.APPROVE, "bob@example.com")
        result = await asyncio.wait_for(q2c.result(), timeout=60)
        assert result.outcome == "live", result.reason
        assert result.subscription_id == seeded["subscription"]
        # changed in place: the one subscription the test made, none created
        assert _subscriptions(billing_name, billing, seeded["customer"]) == [seeded["subscription"]]
        mrr = api.companies.basic_api.get_by_id(company, properties=["mrr"]).properties["mrr"]
        assert float(mrr) >= 300.0
        await win_recorded(expansion)
        assert (
            len(api.associations.v4.basic_api.get_page("companies", company, "deals").results) == 1
        )
        await expansion.terminate("test over")


@pytest.mark.parametrize("billing_name", ["chargebee", "stripe"])
async def test_a_hubspot_deal_the_rep_declines_is_recorded_lost_and_not_reopened(
    client: Client, sandbox_urls: dict[str, str], uid: str, tmp_path: Path, billing_name: str
) -> None:
    settings = pair_settings(sandbox_urls, billing_name, "hubspot", f"exp-hs-lost-{uid}")
    billing, crm = build_billing(settings), build_crm(settings)
    assert isinstance(crm, HubSpotCrm)
    httpx.delete(sandbox_urls["hubspot"] + "/_sandbox/webhooks").raise_for_status()
    hubspot_ready(crm)
    seeded = _seed_billing(settings, billing, uid)
    company = hubspot_company(crm, seeded["customer"], billing_name)
    hubspot_product(crm, f"RB-GROWTH-{uid}", "300.00")
    policy_dir = _auto_policies(settings, tmp_path, seeded["growth"], uid)
    api = crm._client.crm
    expansion = client.get_workflow_handle(expansion_workflow_id(billing_name, seeded["customer"]))

    async def intake(n: int) -> None:
        await client.execute_workflow(
            ex.INTAKE_WORKFLOW_TYPE,
            IntakeInput(billing=billing_name, crm="hubspot", intake_id=f"l{n}-{uid}"),
            id=f"expansion-intake-hs-lost-{uid}-{n}",
            task_queue=settings.task_queue,
            result_type=IntakeResult,
        )

    async with build_worker(
        client, billing, crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        await intake(1)
        await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.open) and "opportunity -" not in s.open[0],
            "an open expansion",
            within_s=60,
        )
        [row] = api.associations.v4.basic_api.get_page("companies", company, "deals").results
        deal = str(row.to_object_id)
        # the rep declines it in HubSpot; the next day's intake finds it closed lost
        httpx.post(
            f"{sandbox_urls['hubspot']}/_sandbox/hubspot/objects/deals/{deal}/ui_update",
            json={"properties": {"dealstage": "closedlost"}},
        ).raise_for_status()
        await intake(2)
        status = await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.closed),
            "the loss recorded",
            within_s=60,
        )
        assert "lost" in status.closed[0] and not status.open
        props = api.deals.basic_api.get_by_id(
            deal, properties=["dealstage", "expansion_status", "expansion_close_reason"]
        ).properties
        assert props["dealstage"] == "closedlost"  # the rep's decision, left as it is
        assert props["expansion_status"] == "Lost"
        assert "closedlost" in props["expansion_close_reason"]
        # nothing changed in billing
        assert _subscriptions(billing_name, billing, seeded["customer"]) == [seeded["subscription"]]
        await expansion.terminate("test over")


@on_pairs("chargebee×hubspot")
async def test_the_won_deals_webhook_starts_the_upgrade_through_the_webhook_service(
    client: Client, pair: Pair, uid: str, tmp_path: Path
) -> None:
    """Chargebee × HubSpot with the deployment's own webhook service: the expansion (its
    workflow on a worker in auto mode) opens the deal; the rep wins it in the portal; HubSpot's
    ``deal.propertyChange`` webhook reaches the service, which starts quote-to-cash on the
    deployment's worker (the shipped policies); it upgrades the existing subscription after
    RevOps approves, writes MRR to the company, and tells the expansion it was won."""
    settings = pair_settings(pair.urls, "chargebee", "hubspot", f"exp-hs-wh-{uid}")
    billing, crm = build_billing(settings), build_crm(settings)
    assert isinstance(crm, HubSpotCrm)
    hubspot_ready(crm)
    seeded = _seed_billing(settings, billing, uid)
    company = hubspot_company(crm, seeded["customer"], "chargebee")
    hubspot_product(crm, f"RB-GROWTH-{uid}", "300.00")
    policy_dir = _auto_policies(settings, tmp_path, seeded["growth"], uid)
    api = crm._client.crm
    expansion = client.get_workflow_handle(expansion_workflow_id("chargebee", seeded["customer"]))
    async with build_worker(
        client, billing, crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        await client.execute_workflow(
            ex.INTAKE_WORKFLOW_TYPE,
            IntakeInput(billing="chargebee", crm="hubspot", intake_id=f"w1-{uid}"),
            id=f"expansion-intake-hs-wh-{uid}",
            task_queue=settings.task_queue,
            result_type=IntakeResult,
        )
        await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.open) and "opportunity -" not in s.open[0],
            "an open expansion",
            within_s=60,
        )
        [row] = api.associations.v4.basic_api.get_page("companies", company, "deals").results
        deal = str(row.to_object_id)
        pair.route_crm_webhooks_here()
        try:
            httpx.post(
                f"{pair.urls['hubspot']}/_sandbox/hubspot/objects/deals/{deal}/ui_update",
                json={"properties": {"dealstage": "closedwon"}},
            ).raise_for_status()
            q2c = client.get_workflow_handle(
                q2c_workflow_id("hubspot", deal), result_type=QuoteToCashResult
            )
            [pending] = await eventually(
                lambda: q2c.query(QUERY, result_type=list[PendingApproval]),
                bool,
                "quote-to-cash started by the webhook, asking RevOps",
                within_s=60,
            )
        finally:
            httpx.delete(pair.urls["hubspot"] + "/_sandbox/webhooks").raise_for_status()
        assert pending.action.kind.value == "change_plan"
        await decide(client, q2c.id, pending.action_id, Decision.APPROVE, "bob@example.com")
        result = await asyncio.wait_for(q2c.result(), timeout=60)
        assert result.outcome == "live", result.reason
        assert result.subscription_id == seeded["subscription"]
        assert _subscriptions("chargebee", billing, seeded["customer"]) == [seeded["subscription"]]
        mrr = api.companies.basic_api.get_by_id(company, properties=["mrr"]).properties["mrr"]
        assert float(mrr) >= 300.0
        await win_recorded(expansion)
        await expansion.terminate("test over")
