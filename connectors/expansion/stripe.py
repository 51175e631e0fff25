"""Stripe for usage-based expansion (billing-apis.md §1), wrapping :class:`StripeBilling`.

- **Plans and limits**: the customer's active subscriptions (``GET /v1/subscriptions?customer=``,
  one call per customer: Stripe's list filters by one customer), their items carrying the full
  price. The licensed (plan) price's ``metadata``: ``included_units`` a JSON object
  ``{"<metered price ID>": 10000}`` and ``upgrade_to`` the next plan's price ID; the metered
  price's ``unit_amount`` is the overage per unit, its ``recurring.meter`` the billing meter.
  Next-tier prices are read once per intake (``GET /v1/prices/{id}``).
- **Usage**: billing meter event summaries
  (``GET /v1/billing/meters/{id}/event_summaries?customer=…&value_grouping_window=day``), one
  call per customer and meter, with day-aligned windows; Stripe keeps meter events 35 days back.
- **Plan change**: ``POST /v1/subscriptions/{id}`` moving the plan's subscription item to the new
  price with ``proration_behavior=create_prorations``, under the ``Idempotency-Key``; a
  subscription already on the new price is success.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from typing import Any

import stripe

from connectors.base import ConnectorError, ErrorKind
from connectors.stripe import StripeBilling
from domain.expansion import MeteredPlan, UsageDay
from domain.records import SubscriptionRef

DAY_S = 86_400
PRICES_TTL_S = 900
_PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


def _dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj or {})


def _included(price: dict[str, Any]) -> dict[str, float]:
    raw = (price.get("metadata") or {}).get("included_units")
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


class StripeUsage:
    name = "stripe"

    def __init__(self, billing: StripeBilling) -> None:
        self.billing = billing
        self._prices: dict[str, dict[str, Any] | None] = {}
        self._prices_at = time.monotonic()

    @property
    def _client(self) -> stripe.StripeClient:
        return self.billing._client

    def _price(self, price_id: str) -> dict[str, Any] | None:
        if time.monotonic() - self._prices_at > PRICES_TTL_S:
            self._prices, self._prices_at = {}, time.monotonic()
        if price_id not in self._prices:
            self._prices[price_id] = self.billing._price_by_id(price_id)
        return self._prices[price_id]

    def metered_plans(self, customer_ids: list[str]) -> dict[str, list[MeteredPlan]]:
        out: dict[str, list[MeteredPlan]] = {}
        for cid in customer_ids:
            page = self.billing._call(
                lambda c=cid: self._client.v1.subscriptions.list(
                    {"customer": c, "status": "active", "limit": 100}
                ),
                what=f"subscriptions of {cid}",
            )
            for sub in (_dict(s) for s in page.data):
                plans = self._plans(cid, sub)
                if plans:
                    out.setdefault(cid, []).extend(plans)
        return out

    def _plans(self, customer_id: str, sub: dict[str, Any]) -> list[MeteredPlan]:
        items = (sub.get("items") or {}).get("data") or []
        metered = {
            i["price"]["id"]: i
            for i in items
            if ((i.get("price") or {}).get("recurring") or {}).get("usage_type") == "metered"
        }
        licensed = [i for i in items if i["price"]["id"] not in metered]
        if not licensed:
            return []
        plan = licensed[0]
        price = plan["price"]
        meta = price.get("metadata") or {}
        upgrade = self._price(meta["upgrade_to"]) if meta.get("upgrade_to") else None
        recurring = price.get("recurring") or {}
        period = _PERIOD_DAYS.get(recurring.get("interval", "month"), 30) * int(
            recurring.get("interval_count") or 1
        )
        out = []
        for item_price, units in _included(price).items():
            line = metered.get(item_price)
            if line is None:
                continue
            mp = line["price"]
            out.append(
                MeteredPlan(
                    subscription_id=sub["id"],
                    item=item_price,
                    plan_price_id=price["id"],
                    plan_unit_amount=int(price.get("unit_amount") or 0),
                    plan_quantity=int(plan.get("quantity") or 1),
                    included_per_period=units,
                    period_days=period,
                    overage_unit_price=int(float(mp.get("unit_amount_decimal") or 0)),
                    currency=str(sub.get("currency") or "usd").upper(),
                    upgrade_price_id=upgrade["id"] if upgrade else None,
                    upgrade_unit_amount=int(upgrade.get("unit_amount") or 0) if upgrade else 0,
                    upgrade_included_per_period=_included(upgrade).get(item_price)
                    if upgrade
                    else None,
                    customer_id=customer_id,
                    meter=(mp.get("recurring") or {}).get("meter"),
                    plan_item_id=plan["id"],
                )
            )
        return out

    def daily_usage(self, plans: list[MeteredPlan], since: date) -> list[UsageDay]:
        start = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp())
        today = datetime.now(UTC).date()
        end = int(datetime(today.year, today.month, today.day, tzinfo=UTC).timestamp())
        start = max(start, end - 35 * DAY_S)  # Stripe keeps meter events 35 days back
        if end <= start:
            return []
        out: list[UsageDay] = []
        for plan in plans:
            if not plan.meter or not plan.customer_id:
                continue
            params = {
                "customer": plan.customer_id,
                "start_time": start,
                "end_time": end,
                "value_grouping_window": "day",
                "limit": 100,
            }
            page = self.billing._call(
                lambda p=params, m=plan.meter: self._client.v1.billing.meters.event_summaries.list(
                    m,
                    p,  # type: ignore[arg-type]
                ),
                what=f"meter {plan.meter}",
            )
            for s in page.auto_paging_iter():
                day = datetime.fromtimestamp(int(s.start_time), UTC).date()
                out.append(
                    UsageDay(
                        subscription_id=plan.subscription_id,
                        item=plan.item,
                        day=day,
                        quantity=float(s.aggregated_value or 0),
                    )
                )
        return sorted(out, key=lambda d: (d.subscription_id, d.item, d.day))

    def change_plan(
        self, subscription_id: str, from_price_id: str, to_price_id: str, idempotency_key: str
    ) -> SubscriptionRef:
        sub = _dict(
            self.billing._call(
                lambda: self._client.v1.subscriptions.retrieve(subscription_id),
                what=f"subscription {subscription_id}",
            )
        )
        items = (sub.get("items") or {}).get("data") or []
        prices = {i["price"]["id"]: i for i in items}
        if to_price_id in prices:
            return _ref(sub, created=False)
        line = prices.get(from_price_id)
        if line is None:
            raise ConnectorError(
                self.name,
                ErrorKind.PERMANENT,
                f"subscription {subscription_id} is no longer on {from_price_id}",
                code="plan_moved",
            )
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        updated = self.billing._call(
            lambda: self._client.v1.subscriptions.update(
                subscription_id,
                {
                    "items": [{"id": line["id"], "price": to_price_id}],
                    "proration_behavior": "create_prorations",
                },
                options,
            ),
            what=f"subscription {subscription_id}",
        )
        return _ref(_dict(updated), created=True)


def _ref(sub: dict[str, Any], created: bool) -> SubscriptionRef:
    items = (sub.get("items") or {}).get("data") or []
    mrr = 0
    for i in items:
        price = i.get("price") or {}
        recurring = price.get("recurring") or {}
        if recurring.get("usage_type") == "metered":
            continue
        months = {"month": 1, "year": 12, "week": 12 / 52, "day": 12 / 365}.get(
            recurring.get("interval", "month"), 1
        ) * int(recurring.get("interval_count") or 1)
        mrr += round(int(price.get("unit_amount") or 0) * int(i.get("quantity") or 1) / months)
    return SubscriptionRef(
        id=sub["id"],
        customer_id=sub["customer"] if isinstance(sub["customer"], str) else sub["customer"]["id"],
        status=sub.get("status") or "",
        mrr=mrr,
        currency=str(sub.get("currency") or "usd").upper(),
        created=created,
    )
