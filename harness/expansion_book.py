"""A metered customer for usage-based expansion on Zuora and Recurly, seeded the way the outside
world would make one (the catalogue as a billing admin sets it up, the usage as the product
reports it), and the customer's subscriptions as billing shows them afterwards.

Shared by the expansion pair tests and, for these platforms, ``revbridge demo --scenario
expansion`` (Chargebee and Stripe are seeded in ``cli/demo_expansion.py``).

- **Zuora**: product rate plans Starter ($100 a month, 10,000 API calls included through an
  ``Overage`` usage charge, 2 cents a call beyond; ``RevBridgeUpgradeTo__c`` = Growth) and Growth
  ($300, 50,000 included), seeded in the tenant's catalogue; the account and its subscription
  on Starter; one usage record a day through ``POST /v1/object/usage``.
- **Recurly**: plans Starter and Growth through the ``recurly`` client, each with the usage
  add-on ``api-calls`` whose first tier is free up to the included units, Starter's custom field
  ``upgrade_to`` = Growth; the account and its subscription in one create; one usage record a
  day through ``POST /subscriptions/{id}/add_ons/code-api-calls/usage``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from harness.errors import HarnessError

PLATFORMS = ("zuora", "recurly")
UOM = "API_CALL"
ADD_ON = "api-calls"


def _days(days: int) -> list[tuple[int, datetime]]:
    """(day index, noon of that day) for ``days`` days ending yesterday."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    return [(i, noon - timedelta(days=days - i)) for i in range(days)]


def seed_metered_customer(
    platform: str,
    billing: Any,
    api_url: str,
    suffix: str,
    days: int = 40,
    usage: Any = lambda i: 150 + 3 * i,
) -> dict[str, str]:
    """A customer on Starter whose daily API calls follow ``usage(day index)``: returns its
    ``customer``, ``subscription``, and the ``starter`` and ``growth`` prices (a Zuora product
    rate plan number, a Recurly plan code)."""
    if platform == "zuora":
        return _zuora(billing, api_url, suffix, days, usage)
    if platform == "recurly":
        return _recurly(billing, suffix, days, usage)
    raise HarnessError(f"no metered-customer seeding for {platform}")


def _zuora(billing: Any, url: str, suffix: str, days: int, usage: Any) -> dict[str, str]:
    starter, growth = f"PRP-STARTER-{suffix}", f"PRP-GROWTH-{suffix}"

    def plan(number: str, name: str, fee: int, included: int) -> dict[str, Any]:
        return {
            "number": number,
            "name": name,
            "charges": [
                {"name": f"{name} fee", "price": fee, "model": "FlatFee"},
                {
                    "name": "API calls",
                    "type": "Usage",
                    "model": "Overage",
                    "uom": UOM,
                    "price": 2,
                    "includedUnits": included,
                    "overagePrice": 2,
                },
            ],
        }

    catalogue = {
        "products": [
            {
                "name": f"Platform {suffix}",
                "sku": f"SKU-PLATFORM-{suffix}",
                "rate_plans": [
                    {**plan(starter, "Starter", 10_000, 10_000), "RevBridgeUpgradeTo__c": growth},
                    plan(growth, "Growth", 30_000, 50_000),
                ],
            }
        ]
    }

    def seed(body: dict[str, Any]) -> dict[str, Any]:
        resp = httpx.post(url + "/_sandbox/seed", json=body, timeout=60)
        if resp.status_code != 200:
            raise HarnessError(f"seeding Zuora failed: HTTP {resp.status_code}")
        return resp.json()

    seed(catalogue)
    [account] = seed(
        {"accounts": [{"name": f"Initech {suffix}", "email": f"ops-{suffix}@initech.example"}]}
    )["accounts"]
    number = f"S-EXP-{suffix}"
    start = (datetime.now(UTC) - timedelta(days=days + 20)).timestamp()
    seed(
        {
            "subscriptions": [
                {
                    "account": account,
                    "subscriptionNumber": number,
                    "plans": [{"plan": starter}],
                    "start": start,
                }
            ]
        }
    )
    for i, at in _days(days):
        billing.request(
            "POST",
            "/v1/object/usage",
            json={
                "AccountId": account,
                "SubscriptionNumber": number,
                "UOM": UOM,
                "Quantity": usage(i),
                "StartDateTime": at.strftime("%Y-%m-%dT%H:%M:%S"),
            },
        )
    return {"customer": account, "subscription": number, "starter": starter, "growth": growth}


def _recurly(billing: Any, suffix: str, days: int, usage: Any) -> dict[str, str]:
    rc = billing.client
    starter, growth = f"starter-{suffix}".lower(), f"growth-{suffix}".lower()

    def calls(included: int) -> dict[str, Any]:
        usd = lambda amount: [{"currency": "USD", "unit_amount": amount}]  # noqa: E731
        return {
            "code": ADD_ON,
            "name": "API calls",
            "add_on_type": "usage",
            "usage_type": "price",
            "tier_type": "tiered",
            "currencies": usd(0.02),
            "tiers": [
                {"ending_quantity": included, "currencies": usd(0)},
                {"currencies": usd(0.02)},
            ],
        }

    rc.create_plan(
        {
            "code": growth,
            "name": "Growth",
            "currencies": [{"currency": "USD", "unit_amount": 300}],
            "add_ons": [calls(50_000)],
        }
    )
    rc.create_plan(
        {
            "code": starter,
            "name": "Starter",
            "currencies": [{"currency": "USD", "unit_amount": 100}],
            "add_ons": [calls(10_000)],
            "custom_fields": [{"name": "upgrade_to", "value": growth}],
        }
    )
    code = f"initech-{suffix}".lower()
    sub = rc.create_subscription(
        {
            "plan_code": starter,
            "currency": "USD",
            "account": {
                "code": code,
                "company": f"Initech {suffix}",
                "email": f"ops-{suffix}@initech.example",
                "billing_info": {"token_id": "tok_visa"},
            },
            "add_ons": [{"code": ADD_ON}],
        }
    )
    for i, at in _days(days):
        rc.create_usage(
            sub.id,
            f"code-{ADD_ON}",
            {"amount": usage(i), "usage_timestamp": at.strftime("%Y-%m-%dT%H:%M:%SZ")},
        )
    return {"customer": code, "subscription": sub.id, "starter": starter, "growth": growth}


def subscriptions(platform: str, billing: Any, customer: str) -> list[dict[str, Any]]:
    """Every subscription of the customer with its prices (Zuora: product rate plan numbers of
    its live rate plans; Recurly: the plan code and its add-on codes)."""
    if platform == "zuora":
        listed = billing.request("GET", f"/v1/subscriptions/accounts/{customer}")
        return [
            {
                "id": s["subscriptionNumber"],
                "prices": [rp["productRatePlanNumber"] for rp in s.get("ratePlans") or []],
            }
            for s in listed.get("subscriptions") or []
        ]
    if platform == "recurly":
        return [
            {"id": s.id, "prices": [s.plan.code, *(a.add_on.code for a in s.add_ons or [])]}
            for s in billing.client.list_account_subscriptions(f"code-{customer}").items()
        ]
    raise HarnessError(f"no subscription listing for {platform}")


# --- a whole book at once (bench/expansion.py) ---------------------------------------------------


def seed_book(platform: str, url: str, n: int, lookback: int = 3) -> dict[str, Any]:
    """``n`` metered customers on Starter, each with ``lookback`` days of usage (the days the
    daily intake re-reads), through the sandbox's bulk ``/_sandbox/seed`` (one request, not
    ``n`` customers' worth of API calls): the same catalogue as ``seed_metered_customer``.
    Returns the customers' IDs (Zuora account IDs, Recurly account codes)."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    at = [int((noon - timedelta(days=d)).timestamp()) for d in range(1, lookback + 1)]
    if platform == "zuora":
        starter, growth = "PRP-STARTER-BOOK", "PRP-GROWTH-BOOK"

        def plan(number: str, name: str, fee: int, included: int) -> dict[str, Any]:
            return {
                "number": number,
                "name": name,
                "charges": [
                    {"name": f"{name} fee", "price": fee, "model": "FlatFee"},
                    {"name": "API calls", "type": "Usage", "model": "Overage", "uom": UOM,
                     "price": 2, "includedUnits": included, "overagePrice": 2},
                ],
            }  # fmt: skip

        ids = [f"2c9{i:029x}" for i in range(n)]
        start = int((noon - timedelta(days=60)).timestamp())
        body: dict[str, Any] = {
            "products": [
                {
                    "name": "Platform",
                    "sku": "SKU-PLATFORM-BOOK",
                    "rate_plans": [
                        {
                            **plan(starter, "Starter", 10_000, 10_000),
                            "RevBridgeUpgradeTo__c": growth,
                        },
                        plan(growth, "Growth", 30_000, 50_000),
                    ],
                }
            ],  # fmt: skip
            "accounts": [{"id": a, "name": f"Company {i}"} for i, a in enumerate(ids)],
            "subscriptions": [
                {
                    "account": a,
                    "subscriptionNumber": f"S-EXP-{i:06d}",
                    "plans": [{"plan": starter}],
                    "start": start,
                }
                for i, a in enumerate(ids)
            ],  # fmt: skip
            "usages": [
                {
                    "account": a,
                    "subscription": f"S-EXP-{i:06d}",
                    "uom": UOM,
                    "quantity": 200 + i % 100 + d,
                    "startDateTime": t,
                }
                for i, a in enumerate(ids)
                for d, t in enumerate(at)
            ],  # fmt: skip
        }
    elif platform == "recurly":
        starter, growth = "starter-book", "growth-book"

        def calls(included: int) -> dict[str, Any]:
            usd = lambda amount: [{"currency": "USD", "unit_amount": amount}]  # noqa: E731
            return {"code": ADD_ON, "name": "API calls", "add_on_type": "usage",
                    "usage_type": "price", "tier_type": "tiered", "currencies": usd(0.02),
                    "tiers": [{"ending_quantity": included, "currencies": usd(0)},
                              {"currencies": usd(0.02)}]}  # fmt: skip

        ids = [f"exp-{i:06d}" for i in range(n)]
        subs = [f"expsub{i:06d}" for i in range(n)]
        body = {
            "plans": [
                {
                    "code": growth,
                    "name": "Growth",
                    "currencies": [{"currency": "USD", "unit_amount": 300}],
                    "add_ons": [calls(50_000)],
                },
                {
                    "code": starter,
                    "name": "Starter",
                    "currencies": [{"currency": "USD", "unit_amount": 100}],
                    "add_ons": [calls(10_000)],
                    "custom_fields": [{"name": "upgrade_to", "value": growth}],
                },
            ],  # fmt: skip
            "accounts": [{"code": a, "company": f"Company {i}"} for i, a in enumerate(ids)],
            "subscriptions": [
                {"id": s, "account_code": a, "plan_code": starter, "add_ons": [{"code": ADD_ON}]}
                for a, s in zip(ids, subs, strict=True)
            ],
            "usage": [
                {
                    "subscription_id": s,
                    "add_on_code": ADD_ON,
                    "amount": 200 + i % 100 + d,
                    "usage_timestamp": t,
                }
                for i, s in enumerate(subs)
                for d, t in enumerate(at)
            ],  # fmt: skip
        }
    else:
        raise HarnessError(f"no metered book seeding for {platform}")
    resp = httpx.post(url + "/_sandbox/seed", json=body, timeout=900)
    if resp.status_code != 200:
        raise HarnessError(f"seeding {platform} failed: HTTP {resp.status_code}")
    return {"customers": ids, "starter": starter, "growth": growth}
