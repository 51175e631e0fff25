"""Usage-based expansion end to end on Zuora × HubSpot and Recurly × HubSpot, through a real
worker and the sandboxes (each billing platform on this module's own tenant, as
test_zuora_recurly_pairs.py has them): usage grows → the daily intake → the customer's
ExpansionWorkflow opens ONE deal (the company owner's, expansion properties set) with ONE draft
quote and its line item (auto mode); a second intake duplicates nothing; the rep moves the deal to
closedwon in the portal → HubSpot's ``deal.propertyChange`` webhook reaches the deployment's
webhook service (this pair's settings, its own Temporal connection), which starts quote-to-cash
on the pair's worker → after RevOps approves, quote-to-cash CHANGES the existing subscription —
Zuora one ``ChangePlan`` order, Recurly one subscription change, no subscription create in the
billing ledger — writes the new MRR to the company, and the expansion workflow records the win
(the deal's ``expansion_status`` Won)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from connectors.hubspot import HubSpotCrm
from connectors.recurly import RecurlyBilling
from connectors.registry import build_billing, build_crm
from connectors.zuora import ZuoraBilling
from domain.approvals import QUERY, Decision, PendingApproval
from domain.expansion import expansion_workflow_id
from domain.ids import q2c_workflow_id
from domain.quote import QuoteToCashResult
from sandbox.framework import App, ServerThread
from tests.expansion.flow import hubspot_deal, open_by_intake, win_recorded
from tests.expansion.test_hubspot_expansion import hubspot_company, hubspot_product, hubspot_ready
from tests.expansion.test_zuora_recurly_pairs import (  # noqa: F401 (billing_urls: a fixture)
    billing_urls,
    change_path,
    create_paths,
    plans_of,
    policies,
    seed,
)
from tests.pairs import eventually, pair_settings
from tests.sync.world import decide
from webhooks.app import TemporalConnection, create_app
from workers.main import build_worker


@pytest.mark.parametrize("platform", ["zuora", "recurly"])
async def test_hubspot_expansion_opens_once_and_the_won_deal_changes_the_subscription(
    platform: str,
    client: Client,
    sandbox_urls: dict[str, str],
    billing_urls: dict[str, str],  # noqa: F811
    uid: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the webhook service's own Temporal connection (its own loop), as a deployment has it
    monkeypatch.setenv("TEMPORAL_ADDRESS", client.service_client.config.target_host)
    urls = {**sandbox_urls, **billing_urls}
    settings = pair_settings(urls, platform, "hubspot", f"exp-hs-{platform}-{uid}")
    billing, crm = build_billing(settings), build_crm(settings)
    assert isinstance(billing, ZuoraBilling | RecurlyBilling) and isinstance(crm, HubSpotCrm)
    url, hs_url = billing_urls[platform], sandbox_urls["hubspot"]
    httpx.delete(hs_url + "/_sandbox/webhooks").raise_for_status()  # no other pair's service
    hubspot_ready(crm)  # revbridge setup crm
    seeded = seed(platform, billing, url, uid)
    company = hubspot_company(crm, seeded.customer, platform)
    hubspot_product(crm, f"RB-GROWTH-{uid}", "300.00")
    policy_dir = policies(tmp_path / "policies", platform, uid, seeded.growth)
    api = crm._client.crm

    expansion = client.get_workflow_handle(expansion_workflow_id(platform, seeded.customer))
    async with build_worker(
        client, billing, crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        # the second day's intake finds the expansion open: nothing new
        status = await open_by_intake(
            client,
            expansion,
            platform,
            uid,
            settings.task_queue,
            f"hs-{platform}-{uid}",
            crm="hubspot",
        )
        deal, quote = hubspot_deal(api, company, status, seeded.growth, starter=seeded.starter)
        [line] = api.associations.v4.basic_api.get_page("quotes", quote, "line_items").results
        item = api.line_items.basic_api.get_by_id(
            str(line.to_object_id), properties=["price", "quantity"]
        ).properties
        assert float(item["price"]) == 300.0 and float(item["quantity"]) == 1

        # the rep wins it in HubSpot; the portal's deal.propertyChange webhook reaches this
        # deployment's webhook service, which starts quote-to-cash on its worker
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        with ServerThread(
            {App("webhooks", create_app(settings, client=TemporalConnection())): 0}
        ) as service:
            webhooks = {"url": f"{service.urls['webhooks']}/webhooks/hubspot"}
            httpx.post(hs_url + "/_sandbox/webhooks", json=webhooks).raise_for_status()
            try:
                httpx.post(
                    f"{hs_url}/_sandbox/hubspot/objects/deals/{deal}/ui_update",
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
                httpx.delete(hs_url + "/_sandbox/webhooks").raise_for_status()
        assert pending.action.kind.value == "change_plan" and pending.approver_roles == ["revops"]
        # RevOps approves as from the Web UI (stamped where the stack verifies approvers)
        await decide(client, q2c.id, pending.action_id, Decision.APPROVE, "bob@example.com")
        result = await asyncio.wait_for(q2c.result(), timeout=60)
        assert result.outcome == "live", result.reason
        assert result.subscription_id == seeded.subscription

        # changed in place: the one subscription, now on Growth, none created
        assert plans_of(platform, billing, seeded.customer) == [
            (seeded.subscription, seeded.growth)
        ]
        calls = httpx.get(url + "/_sandbox/requests").json()["requests"]
        changes = [
            c
            for c in calls
            if c["method"] == "POST" and c["path"] == change_path(platform, seeded.subscription)
        ]
        assert len(changes) == 1
        if platform == "zuora":
            [action] = json.loads(changes[0]["body"])["subscriptions"][0]["orderActions"]
            assert action["type"] == "ChangePlan"
        assert not [
            c for c in calls if c["method"] == "POST" and c["path"] in create_paths(platform)
        ]
        mrr = api.companies.basic_api.get_by_id(company, properties=["mrr"]).properties["mrr"]
        assert float(mrr) == 300.0
        await win_recorded(expansion)
        assert (
            len(api.associations.v4.basic_api.get_page("companies", company, "deals").results) == 1
        )
        won_props = api.deals.basic_api.get_by_id(deal, properties=["expansion_status"])
        assert won_props.properties["expansion_status"] == "Won"
        await expansion.terminate("test over")
