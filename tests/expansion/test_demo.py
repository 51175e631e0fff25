"""`revbridge demo --scenario expansion` end to end on Stripe × Salesforce (the scenario's own
logic against the session's sandboxes, as tests/quote_to_cash/test_demo.py does): the forecast,
the signal, the opportunity and draft quote, the won deal upgrading the same subscription — the
Stripe pair's end-to-end test (tests/expansion/test_expansion_pairs.py runs Chargebee's)."""

from __future__ import annotations

import httpx
from temporalio.client import Client

from tests.expansion.flow import demo_scenario
from tests.pairs import pair_settings


async def test_demo_scenario_forecasts_opens_wins_and_upgrades_in_place(
    client: Client, sandbox_urls: dict[str, str], uid: str
) -> None:
    settings = pair_settings(sandbox_urls, "stripe", "salesforce", f"demo-exp-{uid}")
    httpx.delete(sandbox_urls["salesforce"] + "/_sandbox/webhooks").raise_for_status()
    lines: list[str] = []
    summary = await demo_scenario(client, settings, uid, lines)
    assert summary["signal"]["Status__c"] == "Open"
    assert summary["quote"]["Status"] == "Draft"
    assert summary["opportunity"]["Type"] == "Existing Customer - Upgrade"
    assert summary["quote_to_cash"]["outcome"] == "live"
    [sub] = summary["subscriptions"]
    assert (
        len(sub["prices"]) == 2 and sub["id"] == summary["quote_to_cash"]["reason"].split()[1][:-1]
    )
    assert summary["crm_mrr"] == 300.0
    assert "won" in summary["expansion"][-1]
    assert any("forecast:" in line for line in lines)
    assert any("catch-up" in line for line in lines)  # no callout here: the catch-up's start
