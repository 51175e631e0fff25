"""Usage-based pricing in the Recurly emulator (what usage-based expansion reads).

- **Add-on tiers** (``AddOnCreate.tier_type`` flat | tiered | stairstep | volume, ``tiers``
  ``[{ending_quantity, currencies: [{currency, unit_amount}]}]``, the last tier without an
  ``ending_quantity``): kept on the plan's add-on and copied to a subscription's add-on as
  ``SubscriptionAddOnTier`` (``ending_quantity``, ``unit_amount`` in the subscription's
  currency), as Recurly shows them. A usage add-on whose first tier is free up to its
  ``ending_quantity`` is a plan with included units.
- **Plan custom fields** (``PlanCreate.custom_fields``; the site defines them with
  ``related_type`` plan), e.g. ``upgrade_to``: the next tier's plan code.
"""

from __future__ import annotations

from typing import Any

from .errors import validation

TIER_TYPES = ("flat", "tiered", "stairstep", "volume")


def add_on_tiers(body: dict[str, Any]) -> dict[str, Any]:
    """``tier_type`` and ``tiers`` of an add-on create, validated as Recurly does."""
    tier_type = body.get("tier_type") or "flat"
    if tier_type not in TIER_TYPES:
        raise validation("tier_type", "is not included in the list")
    raw = body.get("tiers") or []
    if tier_type == "flat":
        if raw:
            raise validation("tiers", "must be blank for a flat add-on")
        return {"tier_type": "flat", "tiers": []}
    if not isinstance(raw, list) or not raw:
        raise validation("tiers", "can't be blank")
    tiers = []
    for n, t in enumerate(raw):
        last = n == len(raw) - 1
        ending = t.get("ending_quantity") if isinstance(t, dict) else None
        if (ending is None) != last:
            raise validation("tiers", "only the final tier leaves ending_quantity empty")
        if ending is not None and not (isinstance(ending, int) and 1 <= ending <= 999_999_999):
            raise validation("tiers", "ending_quantity must be an integer from 1 to 999999999")
        prices = t.get("currencies")
        if not isinstance(prices, list) or not prices:
            raise validation("tiers", "each tier needs its currencies")
        tiers.append(
            {
                "ending_quantity": ending,
                "usage_percentage": None,
                "currencies": [
                    {"currency": str(c["currency"]).upper(), "unit_amount": float(c["unit_amount"])}
                    for c in prices
                ],
            }
        )
    return {"tier_type": tier_type, "tiers": tiers}


def subscription_tiers(add_on: dict[str, Any], currency: str) -> dict[str, Any]:
    """The plan add-on's tiers as a subscription add-on carries them (one currency)."""
    tiers = []
    for t in add_on.get("tiers") or []:
        price = next((c["unit_amount"] for c in t["currencies"] if c["currency"] == currency), 0.0)
        tiers.append(
            {
                "ending_quantity": t["ending_quantity"],
                "unit_amount": price,
                "unit_amount_decimal": None,
                "usage_percentage": None,
            }
        )
    return {"tier_type": add_on.get("tier_type", "flat"), "tiers": tiers}
