"""Usage-based expansion end to end on Chargebee × Salesforce (Stripe's: tests/expansion/test_demo.py),
through a real worker and the
sandboxes: usage grows → the daily intake → the customer's ExpansionWorkflow opens ONE
opportunity with a draft quote and an Expansion_Signal__c (auto mode); a second intake changes
nothing; the rep wins the deal → quote-to-cash (after RevOps approves the plan change) CHANGES
the existing subscription — no second subscription in the billing ledger — writes the new MRR to
the CRM, and the expansion workflow records the win."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from simple_salesforce import format_soql
from temporalio.client import Client

from connectors.chargebee import ChargebeeBilling
from connectors.registry import build_billing, build_crm
from connectors.salesforce import SalesforceCrm
from domain import expansion as ex
from domain.expansion import ExpansionStatus, expansion_workflow_id
from tests.expansion.flow import open_by_intake, salesforce_upgrade, win_and_approve
from tests.expansion.test_expansion_sandbox import customer_on_starter, seed_catalog
from tests.pairs import eventually, pair_settings
from workers.main import build_worker

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def deployment_policies(tmp: Path, uid: str) -> Path:
    """The repository's policies with expansion in ``auto`` (the opportunity and draft quote
    are created, not proposed) and the test's Growth product mapped."""
    shutil.copytree(POLICIES, tmp, dirs_exist_ok=True)
    modes = (tmp / "modes.yaml").read_text().replace("expansion: assist", "expansion: auto")
    (tmp / "modes.yaml").write_text(modes)
    products = (tmp / "products.yaml").read_text()
    (tmp / "products.yaml").write_text(
        products + f"  RB-GROWTH-{uid}:\n    chargebee: growth-{uid}-USD-monthly\n"
    )
    return tmp


def grow_usage(billing: ChargebeeBilling, sub: str, item: str, days: int = 40) -> None:
    """One usage record a day ending yesterday, growing 3 calls a day from 150."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for i in range(days):
        at = int((noon - timedelta(days=days - i)).timestamp())
        billing.client.Usage.create(
            sub, {"item_price_id": item, "quantity": str(150 + 3 * i), "usage_date": at}
        )


async def test_usage_growth_becomes_one_draft_quote_and_the_won_deal_upgrades_in_place(
    client: Client, sandbox_urls: dict[str, str], uid: str, tmp_path: Path
) -> None:
    settings = pair_settings(sandbox_urls, "chargebee", "salesforce", f"exp-{uid}")
    billing, crm = build_billing(settings), build_crm(settings)
    assert isinstance(billing, ChargebeeBilling) and isinstance(crm, SalesforceCrm)
    httpx.delete(sandbox_urls["salesforce"] + "/_sandbox/webhooks").raise_for_status()
    ids = seed_catalog(sandbox_urls["chargebee"], uid)
    customer, sub = customer_on_starter(billing, ids, uid)
    grow_usage(billing, sub, ids["calls"])
    sf = crm.client
    account = sf.Account.create(
        {
            "Name": f"Initech {uid}",
            "Billing_Customer_Id__c": customer,
            "Billing_Platform__c": "chargebee",
        }
    )["id"]
    book = crm.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")[0]["Id"]
    product = sf.Product2.create(
        {"Name": "Growth", "ProductCode": f"RB-GROWTH-{uid}", "IsActive": True}
    )["id"]
    sf.PricebookEntry.create(
        {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 300.0, "IsActive": True}
    )
    policy_dir = deployment_policies(tmp_path / "policies", uid)

    expansion = client.get_workflow_handle(expansion_workflow_id("chargebee", customer))
    async with build_worker(
        client, billing, crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        # the second day's intake finds the expansion open: nothing new
        status = await open_by_intake(
            client, expansion, "chargebee", uid, settings.task_queue, tag=uid
        )
        opp, signal = salesforce_upgrade(crm, account, status)
        assert signal["Recommended_Price__c"] == ids["growth"]
        assert signal["Days_To_Limit__c"] <= 45 and "reaches the limit" in signal["Reasons__c"]

        # the rep wins it; quote-to-cash starts as the CRM's callout would start it
        result = await win_and_approve(
            client, crm, opp, "chargebee", settings.task_queue, timeout_s=60
        )
        assert result.outcome == "live", result.reason
        assert result.subscription_id == sub

        subs = billing.client.Subscription.list({"customer_id[is]": customer}).list
        assert [s.subscription.id for s in subs] == [sub]  # changed in place, none created
        plan = [
            i.item_price_id
            for i in subs[0].subscription.subscription_items
            if i.item_type == "plan"
        ]
        assert plan == [ids["growth"]]
        creates = [
            r
            for r in httpx.get(sandbox_urls["chargebee"] + "/_sandbox/requests").json()["requests"]
            if r["path"] == f"/api/v2/customers/{customer}/subscription_for_items"
        ]
        assert len(creates) == 1  # the one the test made at the start
        row = crm.query(format_soql("SELECT MRR__c FROM Account WHERE Id = {}", account))[0]
        assert row["MRR__c"] >= 300.0
        status = await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.closed),
            "the win recorded",
        )
        assert "won" in status.closed[0] and not status.open
        await expansion.terminate("test over")
