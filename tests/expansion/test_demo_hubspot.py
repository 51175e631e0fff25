"""`revbridge demo --scenario expansion --crm hubspot` end to end on Chargebee × HubSpot (the
scenario's own logic against the session's sandboxes, as test_demo.py runs Stripe × Salesforce):
the expansion deal properties set up, the deal with its expansion properties and the DRAFT quote
with its line item, the deal won in the sandbox portal, the same subscription on Growth, the
company's MRR, the win recorded. Stripe × HubSpot's records and win are
test_hubspot_pairs.py's."""

from __future__ import annotations

import httpx
import pytest
from temporalio.client import Client

from cli.config import CliError
from cli.demo_expansion import check_pair, print_summary
from tests.expansion.flow import demo_scenario
from tests.pairs import pair_settings


def test_the_pairs_the_demo_runs_on() -> None:
    for billing in ("chargebee", "stripe"):
        check_pair(billing, "hubspot")
    for billing in ("chargebee", "stripe", "zuora", "recurly"):
        check_pair(billing, "salesforce")
    with pytest.raises(CliError, match="HubSpot with chargebee or stripe"):
        check_pair("zuora", "hubspot")


async def test_demo_scenario_on_hubspot_opens_the_deal_and_quote_wins_and_upgrades_in_place(
    client: Client, sandbox_urls: dict[str, str], uid: str
) -> None:
    settings = pair_settings(sandbox_urls, "chargebee", "hubspot", f"demo-exp-hs-{uid}")
    # no other pair's webhook service: the scenario's catch-up start stands in for the webhook
    httpx.delete(sandbox_urls["hubspot"] + "/_sandbox/webhooks").raise_for_status()
    lines: list[str] = []
    try:
        summary = await demo_scenario(client, settings, uid, lines)
    finally:
        # the shared portal's ledger as this test found it empty of quote creates: a later test
        # counts its own (test_hubspot_expansion.py reads the whole ledger)
        httpx.delete(sandbox_urls["hubspot"] + "/_sandbox/requests").raise_for_status()
    deal = summary["opportunity"]["properties"]
    assert deal["dealtype"] == "existingbusiness" and deal["hubspot_owner_id"] == "77001"
    assert deal["expansion_status"] == "Open"  # as read before the win
    assert float(deal["expansion_days_to_limit"]) <= 45
    assert "reaches the limit" in deal["expansion_reasons"]
    quote = summary["quote"]
    assert quote["Status"] == "DRAFT" and len(quote["lines"]) == 1
    assert float(quote["lines"][0]["price"]) == 300.0
    assert summary["quote_to_cash"]["outcome"] == "live"
    [sub] = summary["subscriptions"]  # the same subscription, moved to Growth
    assert any(p.startswith("growth-") for p in sub["prices"])
    # Growth's 300.00 (Chargebee's MRR also counts the metered add-on's 0.02 unit price once, as
    # test_hubspot_pairs.py allows with >= 300)
    assert 300.0 <= summary["crm_mrr"] < 301.0
    assert "won" in summary["expansion"][-1]
    assert any("won deal" in line and "HubSpot portal" in line for line in lines)
    assert any("expansion_status Open" in line for line in lines)
    out: list[str] = []
    print_summary(summary, out.append)
    assert any("draft quote" in line for line in out)
