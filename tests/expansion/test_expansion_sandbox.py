"""Usage-based expansion on Chargebee × Salesforce through the official clients against the
sandboxes: usage and plan limits read in bulk, the plan change on the existing subscription,
and the CRM records (signal, opportunity, draft quote, close) — each write retried after a
committed-then-timed-out call leaves ONE effect in the sandbox's ledger and records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from simple_salesforce import format_soql

from activities.expansion import (
    CloseExpansionInput,
    ExpansionActivities,
    UpsertExpansionInput,
    UpsertSignalInput,
)
from connectors.base import ConnectorError
from connectors.chargebee import ChargebeeBilling
from connectors.expansion.chargebee import ChargebeeUsage
from connectors.expansion.salesforce import SalesforceExpansion
from connectors.registry import build_billing, build_crm
from connectors.salesforce import SalesforceCrm
from domain.expansion import ExpansionDraft, SignalRecord
from tests.pairs import pair_settings

DAY = 86_400


def seed_catalog(url: str, uid: str) -> dict[str, str]:
    """Starter and Growth plans whose metadata carries the metered limit and the next tier, and
    the metered API-calls add-on (2 cents a call over the included units)."""
    ids = {
        "starter": f"starter-{uid}-USD-monthly",
        "growth": f"growth-{uid}-USD-monthly",
        "calls": f"calls-{uid}-USD-monthly",
    }
    common = {"currency_code": "USD", "period": 1, "period_unit": "month"}
    data = {
        "item_prices": [
            {
                **common,
                "id": ids["starter"],
                "price": 10_000,
                "item_type": "plan",
                "metadata": {"included_units": {ids["calls"]: 10_000}, "upgrade_to": ids["growth"]},
            },
            {
                **common,
                "id": ids["growth"],
                "price": 30_000,
                "item_type": "plan",
                "metadata": {"included_units": {ids["calls"]: 50_000}},
            },
            {**common, "id": ids["calls"], "price": 2, "item_type": "addon", "metered": True},
        ]
    }
    httpx.post(url + "/_sandbox/seed", json=data, timeout=30).raise_for_status()
    return ids


@pytest.fixture
def chargebee(sandbox_urls: dict[str, str]) -> ChargebeeBilling:
    billing = build_billing(pair_settings(sandbox_urls, "chargebee", "salesforce", "unused"))
    assert isinstance(billing, ChargebeeBilling)
    return billing


@pytest.fixture
def salesforce(sandbox_urls: dict[str, str]) -> SalesforceCrm:
    crm = build_crm(pair_settings(sandbox_urls, "chargebee", "salesforce", "unused"))
    assert isinstance(crm, SalesforceCrm)
    return crm


def customer_on_starter(
    billing: ChargebeeBilling, ids: dict[str, str], uid: str
) -> tuple[str, str]:
    cb = billing.client
    cus = cb.Customer.create({"company": f"Initech {uid}", "email": f"ops-{uid}@example.com"})
    sub = cb.Subscription.create_with_items(
        cus.customer.id,
        {
            "subscription_items": [
                {"item_price_id": ids["starter"]},
                {"item_price_id": ids["calls"]},
            ]
        },
    ).subscription
    return cus.customer.id, sub.id


def record_usage(billing: ChargebeeBilling, sub: str, item: str, days: int) -> None:
    """Two usage records a day for ``days`` days ending yesterday (day i: 100 + 10 i calls)."""
    today = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for i in range(days):
        at = int((today - timedelta(days=days - i)).timestamp())
        for part in (0.5, 0.5):
            billing.client.Usage.create(
                sub,
                {
                    "item_price_id": item,
                    "quantity": str(int((100 + 10 * i) * part)),
                    "usage_date": at,
                },
            )


def growth_upsert(uid: str, account: str, owner_id: str | None = None) -> UpsertExpansionInput:
    """The upsert of an expansion towards ``growth-{uid}``: its opportunity and draft quote."""
    draft = ExpansionDraft(
        opportunity_key=f"rb-opp-{uid}",
        quote_key=f"rb-quote-{uid}",
        account_id=account,
        owner_id=owner_id,
        name="Expansion: calls → growth",
        close_date=date.today() + timedelta(days=20),
        description="usage heads for the limit",
        unit_amount=30_000,
        upgrade_mrr=20_000,
        quote_expires=date.today() + timedelta(days=50),
    )
    return UpsertExpansionInput(
        draft=draft, billing="chargebee", upgrade_price_id=f"growth-{uid}-USD-monthly"
    )


def growth_signal(uid: str, account: str, made: Any) -> SignalRecord:
    """The open signal of that expansion, on the records ``made`` by its upsert."""
    return SignalRecord(
        key=f"rb-signal-{uid}",
        account_id=account,
        billing="chargebee",
        customer_id=f"cus-{uid}",
        subscription_id=f"sub-{uid}",
        item="calls",
        status="Open",
        current_price_id="starter",
        recommended_price_id=f"growth-{uid}-USD-monthly",
        upgrade_mrr=20_000,
        days_to_limit=20,
        confidence=0.97,
        reasons=["calls: 9,700 of 10,000 included", "reaches the limit in about 20 days"],
        opportunity_id=made.opportunity_id,
        quote_id=made.quote_id,
        workflow_id=f"expansion:chargebee:cus-{uid}",
    )


def ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests").json()["requests"]


def test_usage_and_limits_in_bulk_then_the_plan_change_once(
    chargebee: ChargebeeBilling, sandbox_urls: dict[str, str], uid: str
) -> None:
    url = sandbox_urls["chargebee"]
    ids = seed_catalog(url, uid)
    customer, sub = customer_on_starter(chargebee, ids, uid)
    record_usage(chargebee, sub, ids["calls"], days=5)
    usage = ChargebeeUsage(chargebee)

    httpx.delete(url + "/_sandbox/requests").raise_for_status()
    plans = usage.metered_plans([customer, "nobody"])
    days = usage.daily_usage([plans[customer][0]], date.today() - timedelta(days=10))
    calls = ledger(url)
    assert len(calls) <= 4, [c["path"] for c in calls]  # subscriptions, plan prices, limits, usage
    [plan] = plans[customer]
    assert (plan.subscription_id, plan.item, plan.plan_price_id) == (
        sub,
        ids["calls"],
        ids["starter"],
    )
    assert plan.included_per_period == 10_000 and plan.overage_unit_price == 2
    assert plan.upgrade_price_id == ids["growth"] and plan.upgrade_mrr == 20_000
    assert plan.upgrade_included_per_period == 50_000
    assert [d.quantity for d in days] == [100, 110, 120, 130, 140]  # two records a day, summed
    assert days[-1].day == date.today() - timedelta(days=1)

    # the plan change: its first answer is lost after Chargebee committed it
    httpx.post(
        url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": f"/api/v2/subscriptions/{sub}/update_for_items",
            "delay_s": 4,
        },
    ).raise_for_status()
    with pytest.raises(ConnectorError):
        usage.change_plan(sub, ids["starter"], ids["growth"], f"rb-upgrade-{uid}")
    changed = usage.change_plan(sub, ids["starter"], ids["growth"], f"rb-upgrade-{uid}")
    assert changed.id == sub and changed.mrr >= 30_000
    again = usage.change_plan(sub, ids["starter"], ids["growth"], f"rb-upgrade-{uid}")
    assert again.created is False
    subs = chargebee.client.Subscription.list({"customer_id[is]": customer}).list
    assert [s.subscription.id for s in subs] == [sub]  # changed, not a second subscription
    plan_items = [i for i in subs[0].subscription.subscription_items if i.item_type == "plan"]
    assert [i.item_price_id for i in plan_items] == [ids["growth"]]
    updates = [c for c in ledger(url) if c["path"].endswith("/update_for_items")]
    assert len(updates) == 1 and updates[0].get("fault") == "commit_then_timeout"


@pytest.fixture
def policy_dir(tmp_path: Path, uid: str) -> Iterator[Path]:
    src = Path(__file__).resolve().parents[2] / "policies" / "expansion.yaml"
    (tmp_path / "expansion.yaml").write_text(src.read_text())
    (tmp_path / "products.yaml").write_text(
        f"products:\n  RB-GROWTH-{uid}:\n    chargebee: growth-{uid}-USD-monthly\n"
    )
    yield tmp_path


def product(crm: SalesforceCrm, code: str, unit_price: float) -> None:
    sf = crm.client
    book = crm.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")[0]["Id"]
    pid = sf.Product2.create({"Name": "Growth", "ProductCode": code, "IsActive": True})["id"]
    sf.PricebookEntry.create(
        {"Pricebook2Id": book, "Product2Id": pid, "UnitPrice": unit_price, "IsActive": True}
    )


def test_crm_records_once_even_after_a_committed_then_timed_out_upsert(
    chargebee: ChargebeeBilling,
    salesforce: SalesforceCrm,
    sandbox_urls: dict[str, str],
    policy_dir: Path,
    uid: str,
) -> None:
    url = sandbox_urls["salesforce"]
    product(salesforce, f"RB-GROWTH-{uid}", 300.0)
    account = salesforce.client.Account.create({"Name": f"Initech {uid}"})["id"]
    acts = ExpansionActivities(chargebee, salesforce, policy_dir)
    arg = growth_upsert(uid, account)
    httpx.post(
        url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "PATCH",
            "path": ".*/sobjects/Quote/RevBridge_Key__c/.*",
            "delay_s": 4,
        },
    ).raise_for_status()
    with pytest.raises(Exception):  # noqa: B017 - the activity's timeout, classified retryable
        acts.expansion_upsert_records(arg)
    made = acts.expansion_upsert_records(arg)  # Temporal's retry
    again = acts.expansion_upsert_records(arg)  # a rising forecast's update
    assert (again.opportunity_id, again.quote_id) == (made.opportunity_id, made.quote_id)

    def rows(soql: str) -> list[dict[str, Any]]:
        return salesforce.query(soql)

    opps = rows(
        format_soql(
            "SELECT Id, StageName, Type, Amount FROM Opportunity WHERE AccountId = {}", account
        )
    )
    assert len(opps) == 1 and opps[0]["StageName"] == "Qualification"
    assert (
        opps[0]["Type"] == "Existing Customer - Upgrade" and opps[0]["Amount"] == 300.0
    )  # rolled up from its product
    quotes = rows(
        format_soql("SELECT Id, Status FROM Quote WHERE OpportunityId = {}", made.opportunity_id)
    )
    assert [q["Status"] for q in quotes] == ["Draft"]  # drafted, never sent
    lines = rows(
        format_soql("SELECT Id, UnitPrice FROM QuoteLineItem WHERE QuoteId = {}", made.quote_id)
    )
    assert [line["UnitPrice"] for line in lines] == [300.0]
    opp_lines = rows(
        format_soql(
            "SELECT Id FROM OpportunityLineItem WHERE OpportunityId = {}", made.opportunity_id
        )
    )
    assert len(opp_lines) == 1

    record = growth_signal(uid, account, made)
    first = acts.expansion_upsert_signal(UpsertSignalInput(record=record))
    second = acts.expansion_upsert_signal(UpsertSignalInput(record=record))
    assert first.id == second.id
    signals = rows(
        format_soql(
            "SELECT Id, Status__c, Confidence__c, Days_To_Limit__c FROM Expansion_Signal__c "
            "WHERE Account__c = {}",
            account,
        )
    )
    assert len(signals) == 1 and signals[0]["Status__c"] == "Open"
    assert signals[0]["Confidence__c"] == 97.0 and signals[0]["Days_To_Limit__c"] == 20
    link = SalesforceExpansion(salesforce).expansion_of(made.opportunity_id)
    assert link is not None and link.subscription_id == f"sub-{uid}"
    assert link.to_price_id == f"growth-{uid}-USD-monthly"

    closed = acts.expansion_close(
        CloseExpansionInput(
            opportunity_id=made.opportunity_id, quote_id=made.quote_id, reason="usage fell"
        )
    )
    assert closed.closed and not closed.won
    stage = rows(
        format_soql("SELECT StageName FROM Opportunity WHERE Id = {}", made.opportunity_id)
    )
    assert stage[0]["StageName"] == "Closed Lost"
    # a closed opportunity is never reopened by a later update
    assert acts.expansion_upsert_records(arg).opportunity_closed is True


def test_stripe_meter_summaries_by_day_and_the_plan_change_once(
    sandbox_urls: dict[str, str], uid: str
) -> None:
    """Stripe: limits from the plan price's metadata, daily usage from the billing meter's
    event summaries (``value_grouping_window=day``), the plan item moved to the next price
    (prorated) once after a committed-then-timed-out update."""
    import json

    from connectors.expansion.stripe import StripeUsage
    from connectors.stripe import StripeBilling

    url = sandbox_urls["stripe"]
    billing = build_billing(pair_settings(sandbox_urls, "stripe", "salesforce", "unused"))
    assert isinstance(billing, StripeBilling)
    sc = billing._client
    meter = sc.v1.billing.meters.create(
        {
            "display_name": f"API calls {uid}",
            "event_name": f"api_calls_{uid}",
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
            "value_settings": {"event_payload_key": "value"},
        }
    )
    calls = sc.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 2,
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "product_data": {"name": f"API calls {uid}"},
        }
    )
    growth = sc.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 30_000,
            "recurring": {"interval": "month"},
            "product_data": {"name": f"Growth {uid}"},
            "metadata": {"included_units": json.dumps({calls.id: 50_000})},
        }
    )
    starter = sc.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 10_000,
            "recurring": {"interval": "month"},
            "product_data": {"name": f"Starter {uid}"},
            "metadata": {
                "included_units": json.dumps({calls.id: 10_000}),
                "upgrade_to": growth.id,
            },
        }
    )
    customer = sc.v1.customers.create({"name": f"Initech {uid}", "email": f"ops-{uid}@example.com"})
    sub = sc.v1.subscriptions.create(
        {"customer": customer.id, "items": [{"price": starter.id}, {"price": calls.id}]}
    )
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    for d in range(1, 6):  # two events a day for the last 5 days: day -d has 100 + 10 (5 - d)
        for part in (0.5, 0.5):
            sc.v1.billing.meter_events.create(
                {
                    "event_name": f"api_calls_{uid}",
                    "payload": {
                        "stripe_customer_id": customer.id,
                        "value": str(int((100 + 10 * (5 - d)) * part)),
                    },
                    "timestamp": int((noon - timedelta(days=d)).timestamp()),
                }
            )
    usage = StripeUsage(billing)
    [plan] = usage.metered_plans([customer.id])[customer.id]
    assert (plan.subscription_id, plan.item, plan.plan_price_id) == (sub.id, calls.id, starter.id)
    assert plan.included_per_period == 10_000 and plan.overage_unit_price == 2
    assert plan.upgrade_price_id == growth.id and plan.upgrade_mrr == 20_000
    assert plan.meter == meter.id and plan.customer_id == customer.id
    days = usage.daily_usage([plan], date.today() - timedelta(days=7))
    assert [(d.day, d.quantity) for d in days if d.quantity] == [
        (date.today() - timedelta(days=5 - i), 100 + 10 * i) for i in range(5)
    ]

    httpx.post(
        url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": f"/v1/subscriptions/{sub.id}",
            "delay_s": 4,
        },
    ).raise_for_status()
    key = f"rb-upgrade-{uid}"
    with pytest.raises(ConnectorError):
        usage.change_plan(sub.id, starter.id, growth.id, key)
    changed = usage.change_plan(sub.id, starter.id, growth.id, key)
    assert changed.id == sub.id and changed.created is False and changed.mrr == 30_000
    subs = sc.v1.subscriptions.list({"customer": customer.id, "status": "all"}).data
    assert [s.id for s in subs] == [sub.id]
    prices = sorted(i.price.id for i in subs[0]["items"].data)
    assert prices == sorted([growth.id, calls.id])
    updates = [
        r
        for r in ledger(url)
        if r["method"] == "POST" and r["path"] == f"/v1/subscriptions/{sub.id}"
    ]
    assert len(updates) == 1 and updates[0].get("fault") == "commit_then_timeout"
