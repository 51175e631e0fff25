"""Recurly for usage-based expansion (billing-apis.md §4), wrapping :class:`RecurlyBilling`.

- **Plans and limits**: Recurly's subscription list cannot filter by account, so the site's
  active subscriptions are one walk (``GET /subscriptions?state=active``, pages of 200) kept for
  ``WALK_TTL_S`` (one intake) and grouped by account code. A subscription's usage add-on
  (``add_on_type`` usage) carries its pricing: a ``tiered`` / ``volume`` / ``stairstep`` add-on
  whose first tier is free up to its ``ending_quantity`` includes that many units, and the next
  tier's ``unit_amount`` is the overage per unit (a flat usage add-on has no limit to outgrow).
  The plan (``GET /plans/code-…``, read once per intake) gives the price, the billing period,
  and the next tier in its custom field ``upgrade_to`` (a plan code; the site defines it for
  plans); the next plan's add-on of the same code (``GET /plans/{id}/add_ons/code-…``) gives the
  upgrade's included units. The metered item is the add-on code: it keeps its name across
  the upgrade.
- **Usage**: ``GET /subscriptions/{id}/add_ons/{add_on_id}/usage`` with
  ``sort=usage_timestamp`` and ``begin_time``, every page of 200, summed per UTC day here.
  Recurly has no site-wide usage list: one list per metered subscription add-on.
- **Plan change**: ``POST /subscriptions/{id}/change`` with the new ``plan_code``,
  ``timeframe=now`` (Recurly prorates: a credit for the unused part of the old plan, a charge
  for the new one) and the subscription's add-ons that the new plan also has (by code), so
  the usage add-on carries over. v2021-02-25 documents no idempotency header: the request
  still carries ``Idempotency-Key`` (as every RevBridge write to Recurly does), and what makes
  a retry a no-op is the read before it: a subscription already on the new plan is success.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.recurly import SWEEP_WALK_PAGES_MAX, RecurlyBilling, _epoch, _key, to_minor
from domain.expansion import MeteredPlan, UsageDay
from domain.records import SubscriptionRef

#: the plan custom field naming the next tier (a plan code)
UPGRADE_FIELD = "upgrade_to"
#: how long one walk of the site's subscriptions, and the plans read with it, are reused
WALK_TTL_S = 900
USAGE_PAGES_MAX = 50
_TIERED = ("tiered", "volume", "stairstep")


class RecurlyUsage:
    name = "recurly"

    def __init__(self, billing: RecurlyBilling) -> None:
        self.billing = billing
        self._walk: dict[str, list[Any]] | None = None
        self._plans: dict[str, Any] = {}
        self._add_ons: dict[tuple[str, str], Any] = {}
        self._at = 0.0

    # --- reads, reused within one intake -----------------------------------------------------

    def _fresh(self) -> None:
        if time.monotonic() - self._at > WALK_TTL_S:
            self._walk, self._plans, self._add_ons = None, {}, {}
            self._at = time.monotonic()

    def _subscriptions(self) -> dict[str, list[Any]]:
        self._fresh()
        if self._walk is None:
            walk: dict[str, list[Any]] = defaultdict(list)
            for s in self.billing._scan(
                lambda c: c.list_subscriptions(params={"limit": 200, "state": "active"}),
                "subscriptions",
                pages=SWEEP_WALK_PAGES_MAX,
            ):
                walk[s.account.code].append(s)
            self._walk = dict(walk)
        return self._walk

    def _plan(self, code: str) -> Any | None:
        self._fresh()
        if code not in self._plans:
            try:
                self._plans[code] = self.billing._call(
                    lambda c: c.get_plan(f"code-{code}"), f"plan {code}"
                )
            except NotFound:
                self._plans[code] = None
        return self._plans[code]

    def _plan_add_on(self, plan: Any, code: str) -> Any | None:
        key = (plan.id, code)
        if key not in self._add_ons:
            try:
                self._add_ons[key] = self.billing._call(
                    lambda c: c.get_plan_add_on(plan.id, f"code-{code}"), f"add-on {code}"
                )
            except NotFound:
                self._add_ons[key] = None
        return self._add_ons[key]

    # --- the protocol ----------------------------------------------------------------------

    def metered_plans(self, customer_ids: list[str]) -> dict[str, list[MeteredPlan]]:
        walk = self._subscriptions()
        out: dict[str, list[MeteredPlan]] = {}
        for cid in customer_ids:
            for sub in walk.get(cid, []):
                plans = self._metered(sub)
                if plans:
                    out.setdefault(cid, []).extend(plans)
        return out

    def _metered(self, sub: Any) -> list[MeteredPlan]:
        usage = [
            sa
            for sa in sub.add_ons or []
            if getattr(sa.add_on, "add_on_type", None) == "usage"
            and getattr(sa, "expired_at", None) is None
        ]
        if not usage:
            return []
        plan = self._plan(sub.plan.code)
        if plan is None:
            return []
        currency = (sub.currency or "USD").upper()
        upgrade_code = _custom_field(plan, UPGRADE_FIELD)
        upgrade = self._plan(upgrade_code) if upgrade_code else None
        out = []
        for sa in usage:
            limit = _limit(
                sa.tier_type, [(t.ending_quantity, t.unit_amount) for t in sa.tiers or []]
            )
            if limit is None:
                continue
            included, overage = limit
            up_add_on = self._plan_add_on(upgrade, sa.add_on.code) if upgrade else None
            up_limit = (
                _limit(
                    up_add_on.tier_type,
                    [(t.ending_quantity, _tier_price(t, currency)) for t in up_add_on.tiers or []],
                )
                if up_add_on is not None
                else None
            )
            out.append(
                MeteredPlan(
                    subscription_id=sub.id,
                    item=sa.add_on.code,
                    plan_price_id=plan.code,
                    plan_unit_amount=_monthly(plan, currency),
                    plan_quantity=int(sub.quantity or 1),
                    included_per_period=included,
                    period_days=_period_days(plan),
                    overage_unit_price=to_minor(overage, currency),
                    currency=currency,
                    upgrade_price_id=upgrade.code if upgrade is not None else None,
                    upgrade_unit_amount=_monthly(upgrade, currency) if upgrade is not None else 0,
                    upgrade_included_per_period=up_limit[0] if up_limit else None,
                    customer_id=sub.account.code,
                    # the subscription add-on's add-on: the usage list's path names it
                    plan_item_id=sa.add_on.id,
                )
            )
        return out

    def daily_usage(self, plans: list[MeteredPlan], since: date) -> list[UsageDay]:
        begin = datetime(since.year, since.month, since.day, tzinfo=UTC)
        totals: dict[tuple[str, str, date], float] = defaultdict(float)
        for plan in plans:
            add_on = plan.plan_item_id or (f"code-{plan.item}" if plan.item else None)
            if not add_on:
                continue
            try:
                rows = list(
                    self.billing._scan(
                        lambda c, s=plan.subscription_id, a=add_on: c.list_usage(
                            s,
                            a,
                            params={"limit": 200, "sort": "usage_timestamp", "begin_time": begin},
                        ),
                        "usage",
                        pages=USAGE_PAGES_MAX,
                    )
                )
            except NotFound:
                continue  # the add-on left the subscription since the plans were read
            for u in rows:
                at = datetime.fromtimestamp(_epoch(u.usage_timestamp), UTC)
                if at >= begin:
                    totals[(plan.subscription_id, plan.item, at.date())] += float(u.amount or 0)
        return [
            UsageDay(subscription_id=sub, item=item, day=day, quantity=q)
            for (sub, item, day), q in sorted(totals.items())
        ]

    def change_plan(
        self, subscription_id: str, from_price_id: str, to_price_id: str, idempotency_key: str
    ) -> SubscriptionRef:
        sub = self.billing._call(
            lambda c: c.get_subscription(subscription_id), f"subscription {subscription_id}"
        )
        if sub.plan.code == to_price_id:
            return self.billing._ref(sub, created=False)
        if sub.plan.code != from_price_id:
            raise ConnectorError(
                self.name,
                ErrorKind.PERMANENT,
                f"subscription {subscription_id} is no longer on {from_price_id}",
                code="plan_moved",
            )
        target = self._plan(to_price_id)
        if target is None:
            raise ConnectorError(
                self.name, ErrorKind.PERMANENT, f"plan {to_price_id} not found", code="not_found"
            )
        add_ons = []
        for sa in sub.add_ons or []:
            if self._plan_add_on(target, sa.add_on.code) is None:
                continue  # not sold on the new plan: Recurly would refuse it
            entry: dict[str, Any] = {"code": sa.add_on.code}
            if getattr(sa.add_on, "add_on_type", None) != "usage":
                entry["quantity"] = int(sa.quantity or 1)
            add_ons.append(entry)
        body = {"plan_code": to_price_id, "timeframe": "now", "add_ons": add_ons}
        self.billing._call(
            lambda c: c.create_subscription_change(
                subscription_id, body, headers=_key(idempotency_key)
            ),
            f"subscription {subscription_id}",
        )
        if self._walk is not None:  # the walk no longer shows this subscription's plan
            self._walk = None
        changed = self.billing._call(
            lambda c: c.get_subscription(subscription_id), f"subscription {subscription_id}"
        )
        return self.billing._ref(changed, created=True)


def _custom_field(obj: Any, name: str) -> str | None:
    for f in getattr(obj, "custom_fields", None) or []:
        if getattr(f, "name", None) == name and getattr(f, "value", None):
            return str(f.value)
    return None


def _tier_price(tier: Any, currency: str) -> float:
    return next(
        (float(c.unit_amount or 0) for c in tier.currencies or [] if c.currency == currency), 0.0
    )


def _limit(tier_type: str | None, tiers: list[tuple[Any, Any]]) -> tuple[float, float] | None:
    """(included units, overage per unit in major units) of a usage add-on's tiers: a first
    tier free up to its ending quantity; None for flat pricing (nothing included)."""
    if tier_type not in _TIERED or len(tiers) < 2:
        return None
    (ending, first), (_, second) = tiers[0], tiers[1]
    if ending is None or float(first or 0) != 0:
        return None
    return float(ending), float(second or 0)


def _price(plan: Any, currency: str) -> float:
    return next(
        (float(c.unit_amount or 0) for c in plan.currencies or [] if c.currency == currency), 0.0
    )


def _months(plan: Any) -> float:
    n = int(plan.interval_length or 1)
    return n if plan.interval_unit == "months" else n / 30


def _monthly(plan: Any, currency: str) -> int:
    """The plan's price per month, in minor units."""
    return int(round(to_minor(_price(plan, currency), currency) / max(_months(plan), 1e-9)))


def _period_days(plan: Any) -> int:
    n = int(plan.interval_length or 1)
    return n * 30 if plan.interval_unit == "months" else n
