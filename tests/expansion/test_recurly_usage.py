"""Usage-based expansion on Recurly through the official ``recurly`` client against the Recurly
sandbox: the limit from the usage add-on's tiers (a free first tier), the next tier from the
plan's ``upgrade_to`` custom field, daily usage from the add-on usage lists, and the upgrade as
ONE ``POST /subscriptions/{id}/change`` (timeframe now, prorated) on the existing subscription —
retried after a committed-then-timed-out change, still one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorError
from connectors.expansion import usage_source
from connectors.expansion.recurly import RecurlyUsage
from connectors.recurly import RecurlyBilling
from connectors.registry import build_billing
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from tests.pairs import RECURLY_KEY, RECURLY_SECRET, pair_settings


def seed_recurly_catalog(billing: RecurlyBilling, uid: str) -> dict[str, str]:
    """Starter ($100 a month, 10,000 API calls free then 2 cents a call; next tier Growth) and
    Growth ($300, 50,000 free), each with the usage add-on ``api-calls``."""
    ids = {"starter": f"starter-{uid}", "growth": f"growth-{uid}", "calls": "api-calls"}

    def calls(included: int) -> dict[str, Any]:
        return {
            "code": ids["calls"],
            "name": "API calls",
            "add_on_type": "usage",
            "usage_type": "price",
            "tier_type": "tiered",
            "currencies": [{"currency": "USD", "unit_amount": 0.02}],
            "tiers": [
                {
                    "ending_quantity": included,
                    "currencies": [{"currency": "USD", "unit_amount": 0}],
                },
                {"currencies": [{"currency": "USD", "unit_amount": 0.02}]},
            ],
        }

    rc = billing.client
    rc.create_plan(
        {
            "code": ids["growth"],
            "name": "Growth",
            "currencies": [{"currency": "USD", "unit_amount": 300}],
            "add_ons": [calls(50_000)],
        }
    )
    rc.create_plan(
        {
            "code": ids["starter"],
            "name": "Starter",
            "currencies": [{"currency": "USD", "unit_amount": 100}],
            "add_ons": [calls(10_000)],
            "custom_fields": [{"name": "upgrade_to", "value": ids["growth"]}],
        }
    )
    return ids


def recurly_customer_on_starter(
    billing: RecurlyBilling, ids: dict[str, str], uid: str
) -> tuple[str, str]:
    code = f"initech-{uid}"
    sub = billing.client.create_subscription(
        {
            "plan_code": ids["starter"],
            "currency": "USD",
            "account": {
                "code": code,
                "company": f"Initech {uid}",
                "email": f"ops-{uid}@example.com",
                "billing_info": {"token_id": "tok_visa"},
            },
            "add_ons": [{"code": ids["calls"]}],
        }
    )
    return code, sub.id


def record_recurly_usage(billing: RecurlyBilling, sub: str, add_on: str, days: int) -> None:
    """Two usage records a day for ``days`` days ending yesterday (day i: 100 + 10 i calls)."""
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for i in range(days):
        at = (noon - timedelta(days=days - i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for part in (0.5, 0.5):
            billing.client.create_usage(
                sub, f"code-{add_on}", {"amount": (100 + 10 * i) * part, "usage_timestamp": at}
            )


def ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests").json()["requests"]


@pytest.fixture(scope="module")
def recurly_url() -> Iterator[str]:
    em = RecurlyEmulator(
        api_key=RECURLY_KEY, webhook_secrets=[RECURLY_SECRET], rate_limit_per_minute=None
    )
    with ServerThread({em: 0}) as thread:
        yield thread.urls["recurly"]


@pytest.fixture
def recurly_billing(recurly_url: str, sandbox_urls: dict[str, str]) -> Iterator[RecurlyBilling]:
    urls = {**sandbox_urls, "recurly": recurly_url}
    billing = build_billing(pair_settings(urls, "recurly", "salesforce", "unused"))
    assert isinstance(billing, RecurlyBilling)
    yield billing
    httpx.delete(recurly_url + "/_sandbox/faults")


def test_tiers_usage_lists_and_one_subscription_change(
    recurly_billing: RecurlyBilling, recurly_url: str, uid: str
) -> None:
    billing, url = recurly_billing, recurly_url
    ids = seed_recurly_catalog(billing, uid)
    customer, sub = recurly_customer_on_starter(billing, ids, uid)
    record_recurly_usage(billing, sub, ids["calls"], days=5)
    usage = usage_source(billing)
    assert isinstance(usage, RecurlyUsage)

    plans = usage.metered_plans([customer, "nobody"])
    [plan] = plans[customer]
    assert (plan.subscription_id, plan.item, plan.plan_price_id) == (
        sub,
        "api-calls",
        ids["starter"],
    )
    assert plan.included_per_period == 10_000 and plan.overage_unit_price == 2
    assert plan.plan_unit_amount == 10_000 and plan.period_days == 30
    assert plan.upgrade_price_id == ids["growth"] and plan.upgrade_mrr == 20_000
    assert plan.upgrade_included_per_period == 50_000
    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    days = usage.daily_usage([plan], date.today() - timedelta(days=10))
    assert len(ledger(url)) == 1  # one usage list for the subscription's add-on
    assert [(d.day, d.quantity) for d in days] == [
        (date.today() - timedelta(days=5 - i), 100 + 10 * i) for i in range(5)
    ]

    # the upgrade: its first answer is lost after Recurly committed the change
    httpx.post(
        url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": f"/subscriptions/{sub}/change",
            "delay_s": 4,
        },
    ).raise_for_status()
    key = f"rb-upgrade-{uid}"
    with pytest.raises(ConnectorError):
        usage.change_plan(sub, ids["starter"], ids["growth"], key)
    changed = usage.change_plan(sub, ids["starter"], ids["growth"], key)
    assert changed.id == sub and changed.created is False and changed.mrr == 30_000
    subs = list(billing.client.list_account_subscriptions(f"code-{customer}").items())
    assert [s.id for s in subs] == [sub]  # changed in place, not a second subscription
    assert subs[0].plan.code == ids["growth"]
    assert [a.add_on.code for a in subs[0].add_ons] == ["api-calls"]  # the usage add-on stays
    changes = [c for c in ledger(url) if c["method"] == "POST" and c["path"].endswith("/change")]
    assert len(changes) == 1 and changes[0].get("fault") == "commit_then_timeout"
    # Recurly prorated the immediate change: a credit and a charge on the subscription
    kinds = sorted(li.type for li in billing.client.list_subscription_line_items(sub).items())
    assert "credit" in kinds and "charge" in kinds
    with pytest.raises(ConnectorError, match="no longer on"):
        usage.change_plan(sub, f"basic-{uid}", f"other-{uid}", f"k-{uid}")


def test_tiered_plans_and_subscriptions_fit_the_client_and_the_spec(
    recurly_billing: RecurlyBilling, recurly_url: str, uid: str
) -> None:
    """The sandbox's tiered usage add-ons, plan custom fields and subscription add-on tiers as
    the recurly client reads them in strict mode (an unknown field raises) and as the OpenAPI
    spec describes them (Plan, AddOn, Subscription)."""
    import recurly

    from tests.recurly.test_recurly_spec import ACCEPT, violations

    ids = seed_recurly_catalog(recurly_billing, uid)
    _, sub = recurly_customer_on_starter(recurly_billing, ids, uid)
    rc = recurly_billing.client
    strict = recurly.STRICT_MODE
    recurly.STRICT_MODE = True
    try:
        plan = rc.get_plan(f"code-{ids['starter']}")
        [add_on] = list(rc.list_plan_add_ons(plan.id).items())
        read = rc.get_subscription(sub)
    finally:
        recurly.STRICT_MODE = strict
    assert [(f.name, f.value) for f in plan.custom_fields] == [("upgrade_to", ids["growth"])]
    assert add_on.tier_type == "tiered" and add_on.tiers[0].ending_quantity == 10_000
    [sa] = read.add_ons
    assert [(t.ending_quantity, t.unit_amount) for t in sa.tiers] == [(10_000, 0), (None, 0.02)]
    for path, schema in (
        (f"/plans/code-{ids['starter']}", "Plan"),
        (f"/plans/code-{ids['starter']}/add_ons/code-{ids['calls']}", "AddOn"),
        (f"/subscriptions/{sub}", "Subscription"),
    ):
        body = httpx.get(
            recurly_url + path, auth=(RECURLY_KEY, ""), headers=ACCEPT, timeout=10
        ).json()
        assert violations(body, {"$ref": f"#/components/schemas/{schema}"}, path) == []
