"""Usage-based pricing in the Zuora emulator (what usage-based expansion reads and changes).

- **Catalogue**: a product rate plan's usage charge carries its limit as Zuora models it: the
  ``Overage`` charge model with ``includedUnits`` and ``overagePrice``, or ``Tiered`` pricing
  whose ``tiers`` (``startingUnit``, ``endingUnit``, ``price``) start with a free tier; product
  rate plans carry custom fields (``…__c``) such as the tenant's ``RevBridgeUpgradeTo__c``.
  Seeded through ``/_sandbox/seed`` (``seeding``: ``includedUnits``, ``overagePrice``, ``tiers``
  on a charge, ``…__c`` on a rate plan) and shown by ``GET /v1/product-rate-plans/{id}`` in the
  charge's ``pricing`` entry.
- **Object Query subscriptions** expand their rate plans and charges in ``query_expand.py``
  (``expand[]=rateplans``, ``rateplans.rateplancharges``: ``chargeType``, ``uOM``, ...).
- **The ``ChangePlan`` order action** (``CreateOrderChangePlan``): the rate plan named by
  ``ratePlanId`` / ``subscriptionRatePlanNumber`` / ``productRatePlanId`` /
  ``productRatePlanNumber`` is replaced by ``newProductRatePlan`` on the same subscription, with
  ``subType`` (Upgrade, Downgrade, Crossgrade, PlanChange) and ``effectivePolicy``
  (EffectiveImmediately, or a trigger date). One order action, so its MRR metric is the net
  change (an upgrade is positive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .state import INVALID_VALUE, MISSING_FIELD, ORDER, ZuoraError, money

if TYPE_CHECKING:
    from .api import Api

#: the charge fields a seeded usage charge may carry (prices in cents)
CHARGE_FIELDS = ("includedUnits", "overagePrice", "tiers")
SUB_TYPES = ("Upgrade", "Downgrade", "Crossgrade", "PlanChange")
POLICIES = ("EffectiveImmediately", "EffectiveEndOfBillingPeriod", "SpecificDate")


def seeded_charge(spec: dict[str, Any]) -> dict[str, Any]:
    """The usage-pricing fields of a seeded charge spec, stored as given (cents)."""
    return {k: spec[k] for k in CHARGE_FIELDS if spec.get(k) is not None}


def pricing(ch: dict[str, Any]) -> dict[str, Any]:
    """A catalogue charge's usage pricing, as ``GET /v1/product-rate-plans/{id}`` shows it."""
    out: dict[str, Any] = {}
    if ch.get("includedUnits") is not None:
        out["includedUnits"] = float(ch["includedUnits"])
    if ch.get("overagePrice") is not None:
        out["overagePrice"] = money(int(ch["overagePrice"]))
    if ch.get("tiers"):
        out["tiers"] = [
            {
                "tier": n + 1,
                "startingUnit": float(t.get("startingUnit", 0)),
                "endingUnit": float(t["endingUnit"]) if t.get("endingUnit") is not None else None,
                "price": money(int(t.get("price", 0))),
                "priceFormat": t.get("priceFormat", "Per Unit"),
            }
            for n, t in enumerate(ch["tiers"])
        ]
    return out


def change_plan(api: Api, sub: dict[str, Any], action: dict[str, Any], when: float) -> None:
    """The ``ChangePlan`` order action on ``sub`` (the caller records the change's metric)."""
    cp = action.get("changePlan")
    if not isinstance(cp, dict):
        raise ZuoraError(ORDER, MISSING_FIELD, "'changePlan' may not be null")
    if cp.get("subType") is not None and cp["subType"] not in SUB_TYPES:
        raise ZuoraError(
            ORDER, INVALID_VALUE, f"'subType' should be one of: {', '.join(SUB_TYPES)}"
        )
    policy = cp.get("effectivePolicy") or "EffectiveImmediately"
    if policy not in POLICIES:
        raise ZuoraError(
            ORDER, INVALID_VALUE, f"'effectivePolicy' should be one of: {', '.join(POLICIES)}"
        )
    live = [rp for rp in sub["ratePlans"] if not rp.get("_removed")]
    old = next(
        (
            rp
            for rp in live
            if (cp.get("ratePlanId") and rp["id"] == cp["ratePlanId"])
            or (
                cp.get("subscriptionRatePlanNumber")
                and rp.get("number") == cp["subscriptionRatePlanNumber"]
            )
            or (cp.get("productRatePlanId") and rp["productRatePlanId"] == cp["productRatePlanId"])
            or (
                cp.get("productRatePlanNumber")
                and rp.get("productRatePlanNumber") == cp["productRatePlanNumber"]
            )
        ),
        None,
    )
    if old is None:
        raise ZuoraError(
            ORDER, INVALID_VALUE, "The rate plan to change is not on the subscription."
        )
    new = cp.get("newProductRatePlan")
    if not isinstance(new, dict) or not (
        new.get("productRatePlanId") or new.get("productRatePlanNumber")
    ):
        raise ZuoraError(ORDER, MISSING_FIELD, "'newProductRatePlan' may not be null")
    if policy == "EffectiveImmediately":
        when = min(when, api.store.now())
    api._remove_plan(sub, old["id"])
    old["effectiveEndDate"] = when
    added = api.add_rate_plan(sub, new, when, order_style=True)
    added["lastChangeType"] = "ChangePlan"
