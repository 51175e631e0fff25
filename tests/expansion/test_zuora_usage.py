"""Usage-based expansion on Zuora through the REST shape the connector uses, against the Zuora
sandbox: limits from the catalogue (an ``Overage`` usage charge's included units, a ``Tiered``
one's free tier, the next tier from ``RevBridgeUpgradeTo__c``), daily usage from Object Query
usage pages for a page of accounts at once, and the upgrade as ONE ``ChangePlan`` order on the
existing subscription — retried after a committed-then-timed-out order, still one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorError
from connectors.expansion import usage_source
from connectors.expansion.zuora import ZuoraUsage
from connectors.registry import build_billing
from connectors.zuora import ZuoraBilling
from sandbox.framework import ServerThread
from sandbox.zuora import ZuoraEmulator
from tests.pairs import ZUORA_ID, ZUORA_SECRET, pair_settings


def seed_zuora_catalog(url: str, uid: str, tiered: bool = False) -> dict[str, str]:
    """Starter ($100 a month, 10,000 API calls included, 2 cents a call beyond, the next tier
    Growth) and Growth ($300, 50,000 included), each one rate plan with a recurring and a usage
    charge in the same unit of measure."""
    ids = {"starter": f"PRP-STARTER-{uid}", "growth": f"PRP-GROWTH-{uid}", "uom": "API_CALL"}

    def usage(included: int) -> dict[str, Any]:
        if tiered:
            return {
                "name": "API calls",
                "type": "Usage",
                "model": "Tiered",
                "uom": ids["uom"],
                "tiers": [
                    {"startingUnit": 0, "endingUnit": included, "price": 0},
                    {"startingUnit": included + 1, "price": 2},
                ],
            }
        return {
            "name": "API calls",
            "type": "Usage",
            "model": "Overage",
            "uom": ids["uom"],
            "price": 2,
            "includedUnits": included,
            "overagePrice": 2,
        }

    data = {
        "products": [
            {
                "name": f"Platform {uid}",
                "sku": f"SKU-PLATFORM-{uid}",
                "rate_plans": [
                    {
                        "number": ids["starter"],
                        "name": "Starter",
                        "charges": [
                            {"name": "Starter fee", "price": 10_000, "model": "FlatFee"},
                            usage(10_000),
                        ],
                        "RevBridgeUpgradeTo__c": ids["growth"],
                    },
                    {
                        "number": ids["growth"],
                        "name": "Growth",
                        "charges": [
                            {"name": "Growth fee", "price": 30_000, "model": "FlatFee"},
                            usage(50_000),
                        ],
                    },
                ],
            }
        ]
    }
    httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
    return ids


def zuora_customer_on_starter(
    url: str, ids: dict[str, str], uid: str, n: int = 0
) -> tuple[str, str]:
    number = f"S-EXP-{uid}-{n}"
    seeded = httpx.post(
        url + "/_sandbox/seed",
        json={
            "accounts": [{"name": f"Initech {uid} {n}", "email": f"ops-{uid}-{n}@example.com"}],
        },
        timeout=30,
    ).json()
    account = seeded["accounts"][0]
    httpx.post(
        url + "/_sandbox/seed",
        json={
            "subscriptions": [
                {
                    "account": account,
                    "subscriptionNumber": number,
                    "plans": [{"plan": ids["starter"]}],
                    "start": (datetime.now(UTC) - timedelta(days=60)).timestamp(),
                }
            ]
        },
        timeout=30,
    ).raise_for_status()
    return account, number


def record_zuora_usage(
    billing: ZuoraBilling, account: str, sub: str | None, uom: str, days: int, base: int = 100
) -> None:
    """Two usage records a day for ``days`` days ending yesterday (day i: base + 10 i), through
    ``POST /v1/object/usage`` (``sub`` None: uploaded by account and UOM only)."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for i in range(days):
        at = noon - timedelta(days=days - i)
        for part in (0.5, 0.5):
            body = {
                "AccountId": account,
                "UOM": uom,
                "Quantity": int((base + 10 * i) * part),
                "StartDateTime": at.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            if sub:
                body["SubscriptionNumber"] = sub
            billing._request("POST", "/v1/object/usage", what="usage", json=body)


def ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests").json()["requests"]


@pytest.fixture(scope="module")
def zuora_url() -> Iterator[str]:
    """A Zuora tenant of this module's own (the session's sandboxes hold no Zuora)."""
    em = ZuoraEmulator(client_id=ZUORA_ID, client_secret=ZUORA_SECRET)
    with ServerThread({em: 0}) as thread:
        yield thread.urls["zuora"]


@pytest.fixture
def zuora(zuora_url: str, sandbox_urls: dict[str, str]) -> Iterator[ZuoraBilling]:
    urls = {**sandbox_urls, "zuora": zuora_url}
    billing = build_billing(pair_settings(urls, "zuora", "salesforce", "unused"))
    assert isinstance(billing, ZuoraBilling)
    yield billing
    httpx.delete(zuora_url + "/_sandbox/faults")
    billing.close()


def test_limits_and_usage_in_bulk_then_one_change_plan_order(
    zuora: ZuoraBilling, zuora_url: str, uid: str
) -> None:
    url = zuora_url
    ids = seed_zuora_catalog(url, uid)
    first, sub = zuora_customer_on_starter(url, ids, uid, 0)
    second, sub2 = zuora_customer_on_starter(url, ids, uid, 1)
    record_zuora_usage(zuora, first, sub, ids["uom"], days=5)
    record_zuora_usage(zuora, second, None, ids["uom"], days=3, base=1_000)  # by account only
    usage = usage_source(zuora)
    assert isinstance(usage, ZuoraUsage)

    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    plans = usage.metered_plans([first, second, "2c93808457d787030157e0324aea5158"])
    every = [p for ps in plans.values() for p in ps]
    days = usage.daily_usage(every, date.today() - timedelta(days=10))
    paths = [c["path"] for c in ledger(url) if not c["path"].startswith("/oauth")]
    # one subscriptions query for the page, the two plans of the catalogue, one usage query
    assert len(paths) <= 4, paths
    assert sorted(plans) == sorted([first, second])
    [plan] = plans[first]
    assert (plan.subscription_id, plan.item, plan.plan_price_id) == (
        sub,
        "API_CALL",
        ids["starter"],
    )
    assert plan.included_per_period == 10_000 and plan.overage_unit_price == 2
    assert plan.plan_unit_amount == 10_000 and plan.currency == "USD"
    assert plan.upgrade_price_id == ids["growth"] and plan.upgrade_mrr == 20_000
    assert plan.upgrade_included_per_period == 50_000 and plan.customer_id == first
    mine = [(d.day, d.quantity) for d in days if d.subscription_id == sub]
    assert mine == [(date.today() - timedelta(days=5 - i), 100 + 10 * i) for i in range(5)]
    theirs = [d.quantity for d in days if d.subscription_id == sub2]
    assert theirs == [1_000, 1_010, 1_020]  # records without a subscription: the account's one

    # the upgrade: its first answer is lost after Zuora committed the order
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "POST", "path": "/v1/orders", "delay_s": 4},
    ).raise_for_status()
    key = f"rb-upgrade-{uid}"
    with pytest.raises(ConnectorError):
        usage.change_plan(sub, ids["starter"], ids["growth"], key)
    changed = usage.change_plan(sub, ids["starter"], ids["growth"], key)
    assert changed.id == sub and changed.created is False and changed.mrr == 30_000
    again = usage.change_plan(sub, ids["starter"], ids["growth"], key)
    assert again.created is False
    listed = zuora._request("GET", f"/v1/subscriptions/accounts/{first}", what="subs")
    [only] = listed["subscriptions"]  # changed in place: no second subscription
    assert only["subscriptionNumber"] == sub
    assert [rp["productRatePlanNumber"] for rp in only["ratePlans"]] == [ids["growth"]]
    orders = [c for c in ledger(url) if c["method"] == "POST" and c["path"] == "/v1/orders"]
    assert len(orders) == 1 and orders[0].get("fault") == "commit_then_timeout"
    [order] = zuora._request("GET", f"/v1/orders/subscription/{sub}", what="orders")["orders"]
    [action] = order["subscriptions"][0]["orderActions"]
    assert action["type"] == "ChangePlan"
    assert float(action["orderMetrics"][0]["mrr"][0]["amount"]) == 200.0  # an upgrade: up
    # after the upgrade the limit is Growth's, read from the same subscription
    [after] = usage.metered_plans([first])[first]
    assert after.plan_price_id == ids["growth"] and after.included_per_period == 50_000
    assert after.subscription_id == sub and after.upgrade_price_id is None


def test_tiered_usage_charge_limit_is_its_free_tier(
    zuora: ZuoraBilling, zuora_url: str, uid: str
) -> None:
    url = zuora_url
    ids = seed_zuora_catalog(url, uid, tiered=True)
    account, sub = zuora_customer_on_starter(url, ids, uid)
    [plan] = ZuoraUsage(zuora).metered_plans([account])[account]
    assert plan.included_per_period == 10_000 and plan.overage_unit_price == 2
    assert plan.upgrade_included_per_period == 50_000 and plan.subscription_id == sub
    with pytest.raises(ConnectorError, match="not found"):  # permanent: never retried
        ZuoraUsage(zuora).change_plan(sub, ids["starter"], f"PRP-NONE-{uid}", f"k-{uid}")
    # already on the target: nothing to change, nothing ordered
    same = ZuoraUsage(zuora).change_plan(sub, ids["growth"], ids["starter"], f"k2-{uid}")
    assert same.created is False and same.id == sub


def test_the_reads_and_the_change_plan_order_fit_zuoras_models(
    zuora: ZuoraBilling, zuora_url: str, uid: str
) -> None:
    """What the connector sends and reads has the shapes of Zuora's generated models
    (``zuora-sdk`` 3.21.0): the ChangePlan order (CreateOrderRequest, required fields too), the
    Object Query subscriptions with rate plans and charges expanded, and the usage pages."""
    import json

    from tests.zuora import shapes

    url = zuora_url
    ids = seed_zuora_catalog(url, uid)
    account, sub = zuora_customer_on_starter(url, ids, uid)
    record_zuora_usage(zuora, account, sub, ids["uom"], days=2)
    since = (datetime.now(UTC) - timedelta(days=5)).strftime("%Y-%m-%dT%H:%M:%S")
    subs = zuora._query(
        "subscriptions",
        [f"accountId.IN:[{account}]"],
        expand=["rateplans", "rateplans.rateplancharges"],
    )
    assert subs["data"][0]["ratePlans"][0]["ratePlanCharges"]
    assert shapes.problems("QuerySubscriptionsResponse", subs) == []
    usages = zuora._query("usages", [f"accountId.IN:[{account}]", f"startDateTime.GE:{since}"])
    assert len(usages["data"]) == 4
    assert shapes.problems("QueryUsagesResponse", usages) == []
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    ZuoraUsage(zuora).change_plan(sub, ids["starter"], ids["growth"], f"rb-shape-{uid}")
    [order] = [c for c in ledger(url) if c["path"] == "/v1/orders"]
    assert shapes.problems("CreateOrderRequest", json.loads(order["body"]), request=True) == []
