"""Zuora for usage-based expansion (billing-apis.md §3), wrapping :class:`ZuoraBilling`.

- **Plans and limits** come from the catalogue. A customer's live subscriptions, their rate
  plans and charges are one Object Query read per page of customers
  (``/object-query/subscriptions`` with ``accountId.IN:[…]``, ``status.EQ:Active``,
  ``isLatestVersion.EQ:true`` — Zuora keeps a record per subscription version —,
  ``expand[]=rateplans``, ``expand[]=rateplans.rateplancharges``). A subscription rate plan
  with a usage charge (``chargeType`` Usage) is a metered plan: its product rate plan
  (``GET /v1/product-rate-plans/{id}``, read once per intake) gives the limit of that usage
  charge, as Zuora prices it: the ``Overage`` model's ``includedUnits`` (``overagePrice`` per
  unit beyond), or ``Tiered`` pricing whose first tier is free up to its ``endingUnit`` (the
  next tier's price is the overage). The plan's recurring charge is its price; the next tier is
  the product rate plan custom field ``RevBridgeUpgradeTo__c`` (a product rate plan number or
  ID) and is priced the same way. The metered item is the usage charge's unit of measure
  (``uOM``): usage records are uploaded per UOM, and the item keeps its name across the upgrade.
- **Usage**: Object Query ``/object-query/usages`` for the page's accounts at once
  (``accountId.IN:[…]``, ``startDateTime.GE:…``), every page of 99, summed per subscription,
  UOM and UTC day here. A record names its subscription by ID; a record without one (uploaded
  by account and UOM), or naming another version of it, belongs to the account's only live
  subscription with that UOM (with two such subscriptions it is not attributed).
- **Plan change**: one order (``POST /v1/orders``) with a ``ChangePlan`` order action
  (``subType`` Upgrade, ``effectivePolicy`` EffectiveImmediately) replacing the plan's rate plan
  by the new product rate plan on the SAME subscription (Zuora prorates the recurring charge by
  the charge's proration settings when it bills). Exactly once: the ``Idempotency-Key`` header
  (24 hours), the order number derived from our key (a second order with it is refused), and a
  subscription already on the new plan is success. The tenant needs the Change Plan order
  action (Orders).
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.zuora import (
    BULK_IN_MAX,
    BULK_PAGES_MAX,
    ORDER_KEY_FIELD,
    ZuoraBilling,
    _ts,
    header_key,
    minor,
    order_number,
)
from domain.expansion import MeteredPlan, UsageDay
from domain.records import SubscriptionRef

#: the product rate plan custom field naming the next tier (a product rate plan number or ID)
UPGRADE_FIELD = "RevBridgeUpgradeTo__c"
PRICES_TTL_S = 900
_PERIOD_DAYS = {"Month": 30, "Quarter": 91, "Semi_Annual": 182, "Annual": 365, "Week": 7}


class ZuoraUsage:
    name = "zuora"

    def __init__(self, billing: ZuoraBilling) -> None:
        self.billing = billing
        self._catalogue: dict[str, dict[str, Any]] = {}
        self._catalogue_at = time.monotonic()

    # --- the catalogue ------------------------------------------------------------------------

    def _product_rate_plan(self, key: str) -> dict[str, Any] | None:
        """A product rate plan by ID or number, read once per ``PRICES_TTL_S`` (one intake)."""
        if time.monotonic() - self._catalogue_at > PRICES_TTL_S:  # a catalogue edit shows by then
            self._catalogue, self._catalogue_at = {}, time.monotonic()
        if key not in self._catalogue:
            try:
                prp = self.billing._request(
                    "GET", f"/v1/product-rate-plans/{key}", what=f"product rate plan {key}"
                )
            except NotFound:
                return None
            for k in {key, str(prp.get("id")), str(prp.get("productRatePlanNumber"))}:
                self._catalogue[k] = prp
        return self._catalogue[key]

    def metered_plans(self, customer_ids: list[str]) -> dict[str, list[MeteredPlan]]:
        out: dict[str, list[MeteredPlan]] = defaultdict(list)
        for start in range(0, len(customer_ids), BULK_IN_MAX):
            among = f"[{','.join(customer_ids[start : start + BULK_IN_MAX])}]"
            for sub in self.billing._query_all(
                "subscriptions",
                [f"accountId.IN:{among}", "status.EQ:Active", "isLatestVersion.EQ:true"],
                max_pages=BULK_PAGES_MAX,
                expand=["rateplans", "rateplans.rateplancharges"],
            ):
                if sub.get("isLatestVersion") is False:
                    continue
                for plan in self._plans(sub):
                    out[plan.customer_id].append(plan)
        return dict(out)

    def _plans(self, sub: dict[str, Any]) -> list[MeteredPlan]:
        currency = str(sub.get("currency") or "USD").upper()
        out = []
        for rp in sub.get("ratePlans") or []:
            charges = [c for c in rp.get("ratePlanCharges") or [] if _live(c)]
            usage = [c for c in charges if c.get("chargeType") == "Usage" and c.get("uOM")]
            if not usage:
                continue
            prp = self._product_rate_plan(str(rp.get("productRatePlanId")))
            if prp is None:
                continue
            recurring = [c for c in charges if c.get("chargeType") == "Recurring"]
            quantity = int(float((recurring[0].get("quantity") if recurring else 1) or 1))
            upgrade_key = prp.get(UPGRADE_FIELD)
            upgrade = self._product_rate_plan(str(upgrade_key)) if upgrade_key else None
            for charge in usage:
                uom = str(charge["uOM"])
                limit = _limit(prp, uom, currency)
                if limit is None:
                    continue
                included, overage, period = limit
                up_limit = _limit(upgrade, uom, currency) if upgrade else None
                out.append(
                    MeteredPlan(
                        subscription_id=str(sub.get("name") or sub.get("subscriptionNumber")),
                        item=uom,
                        plan_price_id=str(prp.get("productRatePlanNumber") or prp["id"]),
                        plan_unit_amount=_recurring_price(prp, currency),
                        plan_quantity=quantity,
                        included_per_period=included,
                        period_days=period,
                        overage_unit_price=overage,
                        currency=currency,
                        upgrade_price_id=str(upgrade.get("productRatePlanNumber") or upgrade["id"])
                        if upgrade
                        else None,
                        upgrade_unit_amount=_recurring_price(upgrade, currency) if upgrade else 0,
                        upgrade_included_per_period=up_limit[0] if up_limit else None,
                        customer_id=str(sub.get("accountId")),
                        # the subscription version's ID: what its usage records name
                        plan_item_id=str(sub.get("id")),
                    )
                )
        return out

    # --- usage --------------------------------------------------------------------------------

    def daily_usage(self, plans: list[MeteredPlan], since: date) -> list[UsageDay]:
        accounts = sorted({p.customer_id for p in plans if p.customer_id})
        by_sub_id = {(p.plan_item_id, p.item): p for p in plans if p.plan_item_id}
        by_account: dict[tuple[str, str], list[MeteredPlan]] = defaultdict(list)
        for p in plans:
            by_account[(p.customer_id, p.item)].append(p)
        start = datetime(since.year, since.month, since.day, tzinfo=UTC)
        totals: dict[tuple[str, str, date], float] = defaultdict(float)
        for first in range(0, len(accounts), BULK_IN_MAX):
            among = f"[{','.join(accounts[first : first + BULK_IN_MAX])}]"
            for u in self.billing._query_all(
                "usages",
                [f"accountId.IN:{among}", f"startDateTime.GE:{start:%Y-%m-%dT%H:%M:%S}"],
                max_pages=BULK_PAGES_MAX,
            ):
                at = _ts(u.get("startDateTime"))
                uom = str(u.get("uOM") or u.get("uom") or "")
                if at is None or at < start:
                    continue
                plan = by_sub_id.get((str(u.get("subscriptionId")), uom))
                if plan is None:
                    candidates = by_account.get((str(u.get("accountId")), uom), [])
                    plan = candidates[0] if len(candidates) == 1 else None
                if plan is None:
                    continue  # another subscription's, or not a metered item we watch
                totals[(plan.subscription_id, plan.item, at.date())] += float(
                    u.get("quantity") or 0
                )
        return [
            UsageDay(subscription_id=sub, item=item, day=day, quantity=q)
            for (sub, item, day), q in sorted(totals.items())
        ]

    # --- the upgrade --------------------------------------------------------------------------

    def change_plan(
        self, subscription_id: str, from_price_id: str, to_price_id: str, idempotency_key: str
    ) -> SubscriptionRef:
        sub = self.billing._subscription_raw(subscription_id)
        currency = str(sub.get("currency") or "USD").upper()
        target = self._product_rate_plan(to_price_id)
        if target is None:
            raise ConnectorError(
                self.name,
                ErrorKind.PERMANENT,
                f"product rate plan {to_price_id} not found",
                code="not_found",
            )
        source = self._product_rate_plan(from_price_id)
        plans = sub.get("ratePlans") or []
        if any(rp.get("productRatePlanId") == target["id"] for rp in plans):
            return self.billing._ref(sub, currency, created=False)
        current = next(
            (rp for rp in plans if source and rp.get("productRatePlanId") == source["id"]), None
        )
        if current is None:
            raise ConnectorError(
                self.name,
                ErrorKind.PERMANENT,
                f"subscription {subscription_id} is no longer on {from_price_id}",
                code="plan_moved",
            )
        today = date.today().isoformat()
        body = {
            "orderNumber": order_number(idempotency_key),
            "orderDate": today,
            "existingAccountNumber": sub.get("accountNumber") or sub["accountId"],
            "customFields": {ORDER_KEY_FIELD: header_key(idempotency_key)[:255]},
            "subscriptions": [
                {
                    "subscriptionNumber": sub["subscriptionNumber"],
                    "orderActions": [
                        {
                            "type": "ChangePlan",
                            "triggerDates": [
                                {"name": n, "triggerDate": today}
                                for n in (
                                    "ContractEffective",
                                    "ServiceActivation",
                                    "CustomerAcceptance",
                                )
                            ],
                            "changePlan": {
                                "ratePlanId": current["id"],
                                "subType": "Upgrade",
                                "effectivePolicy": "EffectiveImmediately",
                                "newProductRatePlan": {"productRatePlanId": target["id"]},
                            },
                        }
                    ],
                }
            ],
            "processingOptions": {"runBilling": False, "collectPayment": False},
        }
        created = self.billing._place_order(
            body, what=f"subscription {subscription_id}", key=idempotency_key
        )
        return self.billing._ref(
            self.billing._subscription_raw(subscription_id), currency, created=created
        )


def _live(charge: dict[str, Any]) -> bool:
    end = _ts(charge.get("effectiveEndDate"))
    return end is None or end > datetime.now(UTC)


def _pricing(charge: dict[str, Any], currency: str) -> dict[str, Any]:
    rows = charge.get("pricing") or []
    return next(
        (p for p in rows if str(p.get("currency") or "").upper() == currency),
        rows[0] if rows else {},
    )


def _recurring_price(prp: dict[str, Any] | None, currency: str) -> int:
    """The plan's recurring price per month (minor units), from its recurring charges."""
    total = 0
    for ch in (prp or {}).get("productRatePlanCharges") or []:
        if ch.get("type") != "Recurring" or ch.get("model") == "DiscountPercentage":
            continue
        months = {"Month": 1, "Quarter": 3, "Semi_Annual": 6, "Annual": 12}.get(
            ch.get("billingPeriod") or "Month", 1
        )
        total += round(minor(_pricing(ch, currency).get("price"), currency) / months)
    return total


def _limit(prp: dict[str, Any] | None, uom: str, currency: str) -> tuple[float, int, int] | None:
    """(included units per period, overage per unit in minor units, period days) of the
    product rate plan's usage charge for ``uom``; None when it has no limit (pure pay-as-you-go
    usage has nothing to outgrow)."""
    for ch in (prp or {}).get("productRatePlanCharges") or []:
        if ch.get("type") != "Usage" or str(ch.get("uom") or "") != uom:
            continue
        pricing = _pricing(ch, currency)
        period = _PERIOD_DAYS.get(ch.get("billingPeriod") or "Month", 30)
        if pricing.get("includedUnits") is not None:  # the Overage charge model
            overage = pricing.get("overagePrice", pricing.get("price"))
            return float(pricing["includedUnits"]), minor(overage, currency), period
        tiers = pricing.get("tiers") or []
        if (
            len(tiers) >= 2
            and float(tiers[0].get("price") or 0) == 0
            and tiers[0].get("endingUnit")
        ):
            return float(tiers[0]["endingUnit"]), minor(tiers[1].get("price"), currency), period
    return None
