"""`revbridge demo --scenario quote-to-cash` end to end on one pair: one deal goes live, the
discounted one waits for RevOps."""

from __future__ import annotations

from temporalio.client import Client

from cli.demo_q2c import run_scenario
from tests.pairs import Pair, on_pairs


@on_pairs("chargebee×hubspot")  # one pair is enough for the demo's own logic
async def test_demo_scenario_shows_a_live_deal_and_one_waiting_for_approval(
    client: Client, pair: Pair, uid: str
) -> None:
    pair.route_crm_webhooks_here()  # the CRM's callouts reach this deployment (as `make dev` sets up)
    lines: list[str] = []
    summary = await run_scenario(
        pair.settings,
        pair.billing,
        pair.crm,
        client,
        lines.append,
        ui_url="http://ui.test/namespaces/default/workflows",
        suffix=uid,
    )
    standard, discounted = summary["deals"]
    assert standard["state"] == "live"
    [sub] = standard["subscriptions"]
    assert standard["crm"]["opportunity_subscription"] == sub["id"]
    assert standard["crm"]["account_billing_customer"] == standard["customer"]["id"]
    assert standard["provisioning_tasks"]
    assert discounted["state"] == "waiting for approval"
    [pending] = discounted["pending_approvals"]
    assert pending["approver_roles"] == ["revops"] and "bob@example.com" in pending["cli"]
    assert discounted["subscriptions"] == []
    assert any("written back to the CRM" in line for line in lines)
    assert not any("catch-up" in line for line in lines)  # the callouts started both runs
