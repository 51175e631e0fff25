"""Chargebee for usage-based expansion (billing-apis.md §2), wrapping :class:`ChargebeeBilling`.

- **Usage**: ``GET /usages`` (metered billing) filtered by ``subscription_id[in]`` (at most 100
  IDs a request) and ``usage_date[after]``, every page; summed per subscription, item price and
  UTC day here. One page of customers costs a few list calls, never one per customer.
- **Limits**: the plan item price's ``metadata`` (item prices carry a JSON ``metadata``):
  ``{"included_units": {"<metered item price>": 10000}, "upgrade_to": "<next plan price>"}``; the
  metered item price's ``price`` is the overage per unit. Subscriptions come from
  ``GET /subscriptions`` (``customer_id[in]``, live statuses) and prices from
  ``GET /item_prices`` (``id[in]``), reused for 15 minutes (one intake, not one per page).
- **Plan change**: ``POST /subscriptions/{id}/update_for_items`` with the new plan item price
  (a subscription holds exactly one plan: the new one replaces it) and ``prorate=true``, under
  the ``chargebee-idempotency-key`` header; a subscription already on the new plan is success,
  so a retry after the 30-minute key window changes nothing either.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import ConnectorError, ErrorKind
from connectors.chargebee import ChargebeeBilling
from domain.expansion import MeteredPlan, UsageDay
from domain.records import SubscriptionRef

BULK_IN_MAX = 100
USAGE_PAGES_MAX = 200
LIVE = ["active", "non_renewing", "in_trial"]
DAY_S = 86_400
#: how long the plan prices (limits, next tier) read for one intake are reused
PRICES_TTL_S = 900


def _metadata(ip: Any) -> dict[str, Any]:
    raw = getattr(ip, "metadata", None)
    if raw is None and hasattr(ip, "raw_data"):
        raw = ip.raw_data.get("metadata")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _period_days(ip: Any) -> int:
    unit = getattr(ip, "period_unit", None) or "month"
    n = int(getattr(ip, "period", None) or 1)
    return {"day": 1, "week": 7, "month": 30, "year": 365}.get(unit, 30) * n


class ChargebeeUsage:
    name = "chargebee"

    def __init__(self, billing: ChargebeeBilling) -> None:
        self.billing = billing
        self._prices: dict[str, Any] = {}
        self._prices_at = time.monotonic()

    @property
    def _cb(self) -> Any:
        return self.billing.client

    def _list(self, fetch: Any, what: str, max_pages: int = 50) -> list[Any]:
        return list(self.billing._pages(fetch, what, max_pages))

    def _item_prices(self, ids: set[str]) -> dict[str, Any]:
        if time.monotonic() - self._prices_at > PRICES_TTL_S:  # a catalogue edit shows by then
            self._prices, self._prices_at = {}, time.monotonic()
        missing = sorted(i for i in ids if i not in self._prices)
        for start in range(0, len(missing), BULK_IN_MAX):
            params = {"id": {"in": missing[start : start + BULK_IN_MAX]}, "limit": 100}
            for entry in self._list(
                lambda offset, p=params: self._cb.ItemPrice.list(
                    {**p, "offset": offset} if offset else dict(p)
                ),
                "item prices",
            ):
                self._prices[entry.item_price.id] = entry.item_price
        return {i: self._prices[i] for i in ids if i in self._prices}

    def metered_plans(self, customer_ids: list[str]) -> dict[str, list[MeteredPlan]]:
        subs: list[Any] = []
        for start in range(0, len(customer_ids), BULK_IN_MAX):
            params = {
                "customer_id": {"in": customer_ids[start : start + BULK_IN_MAX]},
                "status": {"in": LIVE},
                "limit": 100,
            }
            subs += [
                e.subscription
                for e in self._list(
                    lambda offset, p=params: self._cb.Subscription.list(
                        {**p, "offset": offset} if offset else dict(p)
                    ),
                    "subscriptions",
                )
            ]
        plan_ids = {
            i.item_price_id
            for s in subs
            for i in (s.subscription_items or [])
            if i.item_type == "plan"
        }
        prices = self._item_prices(plan_ids)
        wanted: set[str] = set()
        for ip in prices.values():
            meta = _metadata(ip)
            wanted |= set((meta.get("included_units") or {}).keys())
            if meta.get("upgrade_to"):
                wanted.add(str(meta["upgrade_to"]))
        prices.update(self._item_prices(wanted))
        out: dict[str, list[MeteredPlan]] = defaultdict(list)
        for s in subs:
            items = list(s.subscription_items or [])
            plan = next((i for i in items if i.item_type == "plan"), None)
            plan_ip = prices.get(plan.item_price_id) if plan else None
            if plan is None or plan_ip is None:
                continue
            meta = _metadata(plan_ip)
            included = meta.get("included_units") or {}
            upgrade_id = meta.get("upgrade_to")
            upgrade_ip = prices.get(str(upgrade_id)) if upgrade_id else None
            upgrade_included = _metadata(upgrade_ip).get("included_units") or {}
            on_sub = {i.item_price_id for i in items}
            for item, units in included.items():
                if item not in on_sub:
                    continue
                metered = prices.get(item)
                out[s.customer_id].append(
                    MeteredPlan(
                        subscription_id=s.id,
                        item=item,
                        plan_price_id=plan.item_price_id,
                        plan_unit_amount=int(plan.unit_price or plan_ip.price or 0),
                        plan_quantity=int(plan.quantity or 1),
                        included_per_period=float(units),
                        period_days=_period_days(plan_ip),
                        overage_unit_price=int(getattr(metered, "price", 0) or 0),
                        currency=(s.currency_code or "USD").upper(),
                        upgrade_price_id=upgrade_ip.id if upgrade_ip is not None else None,
                        upgrade_unit_amount=int(upgrade_ip.price or 0) if upgrade_ip else 0,
                        upgrade_included_per_period=float(upgrade_included[item])
                        if item in upgrade_included
                        else None,
                        customer_id=s.customer_id,
                    )
                )
        return dict(out)

    def daily_usage(self, plans: list[MeteredPlan], since: date) -> list[UsageDay]:
        subscription_ids = sorted({p.subscription_id for p in plans})
        after = int(datetime(since.year, since.month, since.day, tzinfo=UTC).timestamp()) - 1
        totals: dict[tuple[str, str, date], float] = defaultdict(float)
        for start in range(0, len(subscription_ids), BULK_IN_MAX):
            params = {
                "subscription_id": {"in": subscription_ids[start : start + BULK_IN_MAX]},
                "usage_date": {"after": after},
                "limit": 100,
            }
            for entry in self._list(
                lambda offset, p=params: self._cb.Usage.list(
                    {**p, "offset": offset} if offset else dict(p)
                ),
                "usages",
                USAGE_PAGES_MAX,
            ):
                u = entry.usage
                day = datetime.fromtimestamp(int(u.usage_date), UTC).date()
                totals[(u.subscription_id, u.item_price_id, day)] += float(u.quantity or 0)
        return [
            UsageDay(subscription_id=sub, item=item, day=day, quantity=q)
            for (sub, item, day), q in sorted(totals.items())
        ]

    def change_plan(
        self, subscription_id: str, from_price_id: str, to_price_id: str, idempotency_key: str
    ) -> SubscriptionRef:
        sub = self.billing._subscription_raw(subscription_id)
        plan = next((i for i in sub.subscription_items or [] if i.item_type == "plan"), None)
        if plan is not None and plan.item_price_id == to_price_id:
            return _ref(sub, created=False)
        if plan is None or plan.item_price_id != from_price_id:
            raise ConnectorError(
                self.name,
                ErrorKind.PERMANENT,
                f"subscription {subscription_id} is no longer on {from_price_id}",
                code="plan_moved",
            )
        params = {
            "subscription_items": [{"item_price_id": to_price_id}],
            "prorate": True,
        }
        resp = self.billing._call(
            lambda: self._cb.Subscription.update_for_items(
                subscription_id, params, headers={"chargebee-idempotency-key": idempotency_key}
            ),
            what=f"subscription {subscription_id}",
        )
        return _ref(resp.subscription, created=not resp.is_idempotency_replayed)


def _ref(sub: Any, created: bool) -> SubscriptionRef:
    return SubscriptionRef(
        id=sub.id,
        customer_id=sub.customer_id,
        status=sub.status,
        mrr=int(getattr(sub, "mrr", 0) or 0),
        currency=(sub.currency_code or "USD").upper(),
        created=created,
    )
