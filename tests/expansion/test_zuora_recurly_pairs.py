"""Usage-based expansion end to end on Zuora × Salesforce and Recurly × Salesforce, through a
real worker and the sandboxes (each billing platform on a tenant of this module's own): usage
grows → the daily intake → the customer's ExpansionWorkflow opens ONE opportunity with a draft
quote and an Expansion_Signal__c (auto mode); a second intake changes nothing; the rep wins the
deal → quote-to-cash (after RevOps approves) CHANGES the existing subscription — the plan
change's first answer is lost after the platform committed it, Temporal retries the activity,
and the ledger shows ONE change call and no subscription create — writes the new MRR to the
CRM, and the expansion workflow records the win."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from simple_salesforce import format_soql
from temporalio.client import Client

from connectors.recurly import RecurlyBilling
from connectors.registry import build_billing, build_crm
from connectors.salesforce import SalesforceCrm
from connectors.zuora import ZuoraBilling
from domain import expansion as ex
from domain.expansion import ExpansionStatus, expansion_workflow_id
from harness.expansion_book import seed_metered_customer, subscriptions
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.zuora import ZuoraEmulator
from tests.expansion.flow import demo_scenario, open_by_intake, salesforce_upgrade, win_and_approve
from tests.pairs import (
    RECURLY_KEY,
    RECURLY_SECRET,
    ZUORA_ID,
    ZUORA_SECRET,
    eventually,
    pair_settings,
)
from workers.main import build_worker

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture(scope="module")
def billing_urls() -> Iterator[dict[str, str]]:
    """A Zuora tenant and a Recurly site of this module's own: the intake walks only this
    module's book."""
    zuora = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    recurly = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )
    with ServerThread({zuora: 0, recurly: 0}) as thread:
        yield {"zuora": thread.urls["zuora"], "recurly": thread.urls["recurly"]}


@dataclass
class Seeded:
    customer: str
    subscription: str
    starter: str
    growth: str


def seed(platform: str, billing: Any, url: str, uid: str) -> Seeded:
    """Starter → Growth catalogue, a customer on Starter, 40 days of usage growing 3 API calls a
    day from 150, one record a day ending yesterday (harness/expansion_book.py, as the demo)."""
    made = seed_metered_customer(platform, billing, url, uid)
    return Seeded(made["customer"], made["subscription"], made["starter"], made["growth"])


def change_path(platform: str, sub: str) -> str:
    return "/v1/orders" if platform == "zuora" else f"/subscriptions/{sub}/change"


def create_paths(platform: str) -> tuple[str, ...]:
    """The requests that would create a subscription."""
    return ("/v1/subscriptions",) if platform == "zuora" else ("/subscriptions", "/purchases")


def plans_of(platform: str, billing: Any, customer: str) -> list[tuple[str, str]]:
    """(subscription, plan) of every subscription the customer has, as billing shows them."""
    return [(s["id"], s["prices"][0]) for s in subscriptions(platform, billing, customer)]


def policies(tmp: Path, platform: str, uid: str, growth: str) -> Path:
    shutil.copytree(POLICIES, tmp, dirs_exist_ok=True)
    modes = (tmp / "modes.yaml").read_text().replace("expansion: assist", "expansion: auto")
    (tmp / "modes.yaml").write_text(modes)
    products = (tmp / "products.yaml").read_text()
    (tmp / "products.yaml").write_text(products + f"  RB-GROWTH-{uid}:\n    {platform}: {growth}\n")
    return tmp


@pytest.mark.parametrize("platform", ["zuora", "recurly"])
async def test_usage_growth_to_one_draft_quote_and_an_upgrade_in_place(
    platform: str,
    client: Client,
    sandbox_urls: dict[str, str],
    billing_urls: dict[str, str],
    uid: str,
    tmp_path: Path,
) -> None:
    urls = {**sandbox_urls, **billing_urls}
    settings = pair_settings(urls, platform, "salesforce", f"exp-{platform}-{uid}")
    billing, crm = build_billing(settings), build_crm(settings)
    assert isinstance(billing, ZuoraBilling | RecurlyBilling) and isinstance(crm, SalesforceCrm)
    url = billing_urls[platform]
    httpx.delete(sandbox_urls["salesforce"] + "/_sandbox/webhooks").raise_for_status()
    seeded = seed(platform, billing, url, uid)
    sf = crm.client
    account = sf.Account.create(
        {
            "Name": f"Initech {uid}",
            "Billing_Customer_Id__c": seeded.customer,
            "Billing_Platform__c": platform,
        }
    )["id"]
    book = crm.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")[0]["Id"]
    product = sf.Product2.create(
        {"Name": "Growth", "ProductCode": f"RB-GROWTH-{uid}", "IsActive": True}
    )["id"]
    sf.PricebookEntry.create(
        {"Pricebook2Id": book, "Product2Id": product, "UnitPrice": 300.0, "IsActive": True}
    )
    policy_dir = policies(tmp_path / "policies", platform, uid, seeded.growth)

    expansion = client.get_workflow_handle(expansion_workflow_id(platform, seeded.customer))
    async with build_worker(
        client, billing, crm, task_queue=settings.task_queue, policy_dir=policy_dir
    ):
        # the second day's intake finds the expansion open: nothing new
        status = await open_by_intake(
            client, expansion, platform, uid, settings.task_queue, tag=f"{platform}-{uid}"
        )
        opp, signal = salesforce_upgrade(crm, account, status)
        assert signal["Recommended_Price__c"] == seeded.growth
        assert signal["Days_To_Limit__c"] <= 45

        # the rep wins it; the plan change's first answer will be lost after it committed
        httpx.delete(url + "/_sandbox/requests").raise_for_status()
        httpx.post(
            url + "/_sandbox/faults",
            json={
                "kind": "commit_then_timeout",
                "method": "POST",
                "path": change_path(platform, seeded.subscription),
                "delay_s": 4,
            },
        ).raise_for_status()
        result = await win_and_approve(
            client, crm, opp, platform, settings.task_queue, timeout_s=90
        )
        assert result.outcome == "live", result.reason
        assert result.subscription_id == seeded.subscription

        assert plans_of(platform, billing, seeded.customer) == [
            (seeded.subscription, seeded.growth)
        ]  # changed in place, none created
        calls = httpx.get(url + "/_sandbox/requests").json()["requests"]
        changes = [
            c
            for c in calls
            if c["method"] == "POST" and c["path"] == change_path(platform, seeded.subscription)
        ]
        assert len(changes) == 1 and changes[0].get("fault") == "commit_then_timeout"
        assert not [
            c for c in calls if c["method"] == "POST" and c["path"] in create_paths(platform)
        ]
        row = crm.query(format_soql("SELECT MRR__c FROM Account WHERE Id = {}", account))[0]
        assert row["MRR__c"] == 300.0
        status = await eventually(
            lambda: expansion.query(ex.QUERY_STATUS, result_type=ExpansionStatus),
            lambda s: bool(s.closed),
            "the win recorded",
        )
        assert "won" in status.closed[0] and not status.open
        await expansion.terminate("test over")


async def test_the_demo_scenario_on_zuora(
    client: Client, sandbox_urls: dict[str, str], billing_urls: dict[str, str], uid: str
) -> None:
    """``revbridge demo --scenario expansion --billing zuora``'s own logic against these
    sandboxes (as tests/expansion/test_demo.py runs Stripe's): seeded through
    harness/expansion_book.py, forecast, records, the win, the same subscription on Growth."""
    urls = {**sandbox_urls, **billing_urls}
    settings = pair_settings(urls, "zuora", "salesforce", f"demo-zuora-{uid}")
    httpx.delete(sandbox_urls["salesforce"] + "/_sandbox/webhooks").raise_for_status()
    lines: list[str] = []
    summary = await demo_scenario(client, settings, uid, lines)
    assert summary["signal"]["Status__c"] == "Open" and summary["quote"]["Status"] == "Draft"
    assert summary["quote_to_cash"]["outcome"] == "live"
    [sub] = summary["subscriptions"]
    assert sub["prices"] == [f"PRP-GROWTH-{uid}"] and summary["crm_mrr"] == 300.0
    assert "won" in summary["expansion"][-1]
