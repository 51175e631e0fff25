"""Object Query's nested ``expand[]`` for the reconciliation's bulk reads (issue 20).

Zuora's Object Query returns related records inline when asked (``expand[]``, case-insensitive,
dotted for distantly related objects; field names from the generated models of ``zuora-sdk``
3.21.0, ``ExpandedRatePlan``, ``ExpandedRatePlanCharge``, ``ExpandedRatePlanChargeTier``,
``ExpandedProductRatePlan``, ``ExpandedInvoiceItem``, ``ExpandedPaymentApplication``):

- ``GET /object-query/subscriptions``: ``expand[]=rateplans`` (each subscription's rate plans),
  ``rateplans.rateplancharges`` (their charges: ``chargeModel``, ``chargeType``, ``quantity``,
  ``mRR``, effective dates), ``rateplans.rateplancharges.rateplanchargetiers`` (the price:
  ``price``, ``discountPercentage``), ``rateplans.productrateplan`` (the catalogue plan, with its
  ``productRatePlanNumber``);
- ``GET /object-query/invoices`` with ``expand[]=invoiceitems``: each item also names its
  ``ratePlanChargeId``, ``productRatePlanChargeId``, ``productRatePlanId`` and ``unitPrice``;
- ``GET /object-query/payments``: ``expand[]=paymentapplications`` (already rendered);
- ``GET /object-query/product-rate-plans`` (:func:`product_rate_plans`): the catalogue's plans,
  for an invoice item billing a plan no subscription has any more.

:func:`expand_page` adds these to the rows of one page, after filtering and paging, from the
stored records the rows name (by ``id``): only what was asked is added.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .render import charge_monthly
from .state import GENERIC, INVALID_VALUE, Store, ZuoraError, day, money, stamp


def _asked(expand: list[str]) -> set[str]:
    return {e.strip().lower() for e in expand if e.strip()}


def expand_page(
    store: Store, kind: str, rows: list[dict[str, Any]], expand: list[str]
) -> list[dict[str, Any]]:
    asked = _asked(expand)
    if not asked:
        return rows
    if kind == "subscriptions" and any(a.startswith("rateplans") for a in asked):
        return [_subscription(store, r, asked) for r in rows]
    if kind == "invoices" and "invoiceitems" in asked:
        return [_invoice(store, r) for r in rows]
    return rows


# --- subscriptions: rate plans, charges, tiers, the catalogue plan --------------------------------


def _subscription(store: Store, row: dict[str, Any], asked: set[str]) -> dict[str, Any]:
    sub = store.subscriptions.get(row.get("id") or "")
    if sub is None:
        return row
    currency = store.accounts.get(sub["accountId"], {}).get("currency")
    plans = []
    for rp in sub["ratePlans"]:
        if rp.get("_removed"):
            continue
        plan: dict[str, Any] = {
            "id": rp["id"],
            "name": rp["ratePlanName"],
            "productId": rp["productId"],
            "productRatePlanId": rp["productRatePlanId"],
            "subscriptionId": sub["id"],
            "subscriptionRatePlanNumber": rp.get("number"),
            "amendmentType": "NewProduct" if rp.get("lastChangeType") == "Add" else None,
            "createdDate": stamp(rp["effectiveStartDate"]),
            "updatedDate": stamp(rp["effectiveStartDate"]),
        }
        if "rateplans.productrateplan" in asked:
            prp = store.product_rate_plans.get(rp["productRatePlanId"], {})
            plan["productRatePlan"] = {
                "id": rp["productRatePlanId"],
                "productRatePlanNumber": rp.get("productRatePlanNumber"),
                "name": prp.get("name", rp["ratePlanName"]),
                "productId": rp["productId"],
            }
        if any(a.startswith("rateplans.rateplancharges") for a in asked):
            tiers = "rateplans.rateplancharges.rateplanchargetiers" in asked
            plan["ratePlanCharges"] = [
                _charge(sub, rp, ch, currency, tiers) for ch in rp["charges"]
            ]
        plans.append(plan)
    # where another expansion already rendered the rate plans (metering.py), keep its fields
    # and add only what is missing (the tiers, the catalogue plan)
    theirs = {p.get("id"): p for p in row.get("ratePlans") or []}
    merged = []
    for plan in plans:
        other = theirs.get(plan["id"], {})
        mine_charges = {c["id"]: c for c in plan.get("ratePlanCharges") or []}
        if other.get("ratePlanCharges") is not None:
            plan = {
                **plan,
                **other,
                "ratePlanCharges": [
                    {**mine_charges.get(c.get("id"), {}), **c} for c in other["ratePlanCharges"]
                ],
            }
        else:
            plan = {**plan, **{k: v for k, v in other.items() if k != "ratePlanCharges"}}
        merged.append(plan)
    return {**row, "ratePlans": merged}


def _charge(
    sub: dict[str, Any], rp: dict[str, Any], ch: dict[str, Any], currency: Any, tiers: bool
) -> dict[str, Any]:
    discount = ch["model"] == "DiscountPercentage"
    out: dict[str, Any] = {
        "id": ch["id"],
        "chargeNumber": ch["number"],
        "name": ch["name"],
        "chargeModel": {
            "PerUnit": "Per Unit Pricing",
            "FlatFee": "Flat Fee Pricing",
            "DiscountPercentage": "Discount-Percentage",
        }.get(ch["model"], ch["model"]),
        "chargeType": ch["type"],
        "quantity": None if discount else ch.get("quantity", 1),
        "billingPeriod": ch.get("billingPeriod"),
        "uOM": ch.get("uom"),
        "mRR": money(int(round(charge_monthly(ch)))),
        "effectiveStartDate": day(ch.get("effectiveStartDate", rp["effectiveStartDate"])),
        "effectiveEndDate": day(rp["effectiveEndDate"]) if rp.get("effectiveEndDate") else None,
        "productRatePlanChargeId": ch["productRatePlanChargeId"],
        "ratePlanId": rp["id"],
        "subscriptionId": sub["id"],
        "isLastSegment": True,
    }
    if tiers:
        out["ratePlanChargeTiers"] = [
            {
                "id": f"{ch['id']}-1",
                "tier": 1,
                "currency": currency,
                "startingUnit": 1,
                "price": None if discount else money(ch["price"]),
                "discountPercentage": ch.get("discountPercentage") if discount else None,
                "priceFormat": "Per Unit" if ch["model"] == "PerUnit" else "Flat Fee",
                "ratePlanChargeId": ch["id"],
            }
        ]
    return out


# --- invoice items: the charge and catalogue plan each one bills -----------------------------------


def _invoice(store: Store, row: dict[str, Any]) -> dict[str, Any]:
    inv = store.invoices.get(row.get("id") or "")
    if inv is None or "invoiceItems" not in row:
        return row
    charges: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for item in inv["items"]:
        sub = store.subscriptions.get(item.get("subscriptionId") or "")
        for rp in (sub or {}).get("ratePlans", []):
            for ch in rp["charges"]:
                charges[ch["id"]] = (rp, ch)
    stored = {it["id"]: it for it in inv["items"]}
    items = []
    for out in row["invoiceItems"]:
        it = stored.get(out.get("id") or "", {})
        rp, ch = charges.get(it.get("chargeId") or "", ({}, {}))
        sku = out.get("sKU", out.get("sku"))
        items.append(
            {
                # as ExpandedInvoiceItem has them: the SKU spelled ``sKU``, no product name
                **{k: v for k, v in out.items() if k not in ("sku", "productName")},
                "sKU": sku,
                "ratePlanChargeId": it.get("chargeId"),
                "ratePlanId": rp.get("id"),
                "productRatePlanId": it.get("productRatePlanId") or rp.get("productRatePlanId"),
                "productRatePlanChargeId": ch.get("productRatePlanChargeId"),
                "unitPrice": money(it.get("unitPrice", it.get("amount", 0))),
            }
        )
    return {**row, "invoiceItems": items}


# --- GET /object-query/product-rate-plans: the catalogue's plans, by ID or number ------------------


#: Object Query's largest page (the same bound as every other Object Query route)
QUERY_PAGE_MAX = 99
_KEYS = {"id": "id", "productrateplannumber": "productRatePlanNumber", "productid": "productId"}


def _pick(rows: list[dict[str, Any]], spec: str) -> list[dict[str, Any]]:
    """``field.EQ:value`` or ``field.IN:[a,b]`` on ``id``, ``productRatePlanNumber`` or
    ``productId`` (case-insensitive field names, as Object Query treats them)."""
    head, sep, value = spec.partition(":")
    name, _, op = head.rpartition(".")
    key = _KEYS.get(name.lower())
    if not sep or key is None or op.upper() not in ("EQ", "IN"):
        raise ZuoraError(GENERIC, INVALID_VALUE, f"invalid filter {spec!r}", http_status=400)
    wanted = {v.strip() for v in value.strip("[]").split(",")} if op.upper() == "IN" else {value}
    return [r for r in rows if str(r.get(key)) in wanted]


def product_rate_plans(api: Any) -> Callable[[Any], dict[str, Any]]:
    """The handler of ``GET /object-query/product-rate-plans`` (``ExpandedProductRatePlan``:
    ``id``, ``productRatePlanNumber``, ``name``, ``productId``, ``state``, effective dates):
    ``filter[]`` by ``id``, ``productRatePlanNumber`` or ``productId`` (``EQ``, ``IN``),
    ``pageSize`` ≤ 99, ``cursor``."""

    def handler(req: Any) -> dict[str, Any]:
        s = api.store
        rows = [
            {
                "id": p["id"],
                "productRatePlanNumber": p["productRatePlanNumber"],
                "name": p["name"],
                "productId": p["productId"],
                "state": "Active",
                "effectiveStartDate": "2020-01-01",
                "effectiveEndDate": "2099-12-31",
            }
            for p in s.product_rate_plans.values()
        ]
        for f in req.qs("filter[]"):
            rows = _pick(rows, f)
        try:
            size = int(req.q("pageSize") or 10)
        except ValueError:
            size = 0
        if not 1 <= size <= QUERY_PAGE_MAX:
            raise ZuoraError(
                GENERIC,
                INVALID_VALUE,
                f"pageSize must be between 1 and {QUERY_PAGE_MAX}",
                http_status=400,
            )
        start = int(req.q("cursor") or 0) if (req.q("cursor") or "0").isdigit() else 0
        out: dict[str, Any] = {"data": rows[start : start + size]}
        if start + size < len(rows):
            out["nextPage"] = str(start + size)
        return out

    return handler
