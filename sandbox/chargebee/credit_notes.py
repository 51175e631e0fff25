"""Credit notes (Chargebee API v2 ``credit_note``), read-only over the API: ``GET /credit_notes``
(filters as the other lists: ``date[between]``, ``status[in]``, ``customer_id[in]``,
``reference_invoice_id[is]``, …; sorted by ``date``) and ``GET /credit_notes/{id}``.

On a real site a credit note comes from a cancellation or downgrade with prorated credits, or
from ``POST /credit_notes``; here a scenario seeds them (``"credit_notes"`` in
``POST /_sandbox/seed``: ``{"id"?, "reference_invoice_id", "type"?: adjustment | refundable,
"status"?, "date", "reason_code"?, "line_items": [{"amount", "date_from", "date_to",
"entity_id"?, "entity_type"?, "description"?, "discount_amount"?}]}``). The customer, the
subscription and the currency come from the referenced invoice, as on Chargebee.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import not_found
from .handlers import Call
from .listing import apply_filters, paginate
from .state import Store, public, random_id

STATUSES = ("adjusted", "refunded", "refund_due", "voided")


def new_credit_note(store: Store, spec: Mapping[str, Any]) -> dict[str, Any]:
    inv = store.invoices.get(str(spec.get("reference_invoice_id") or ""))
    if inv is None:
        raise ValueError(f"seed credit note: unknown invoice {spec.get('reference_invoice_id')!r}")
    status = spec.get("status") or "adjusted"
    if status not in STATUSES:
        raise ValueError(f"seed credit note: status {status!r} is not one of {STATUSES}")
    date = int(spec.get("date") or store.now())
    lines = []
    for li in spec.get("line_items") or []:
        amount = int(li["amount"])
        lines.append(
            {
                "id": li.get("id") or random_id("li_"),
                "subscription_id": inv.get("subscription_id"),
                "date_from": int(li.get("date_from") or date),
                "date_to": int(li.get("date_to") or date),
                "unit_amount": amount,
                "quantity": 1,
                "amount": amount,
                "pricing_model": "per_unit",
                "is_taxed": False,
                "tax_amount": 0,
                "discount_amount": int(li.get("discount_amount", 0)),
                "item_level_discount_amount": 0,
                "description": li.get("description") or "Credit",
                "entity_type": li.get("entity_type") or "plan_item_price",
                "entity_id": li.get("entity_id"),
                "customer_id": inv["customer_id"],
                "object": "line_item",
            }
        )
    total = sum(x["amount"] - x["discount_amount"] for x in lines)
    cn = {
        "id": spec.get("id") or f"CN-{random_id()}",
        "customer_id": inv["customer_id"],
        "subscription_id": inv.get("subscription_id"),
        "reference_invoice_id": inv["id"],
        "type": spec.get("type") or "adjustment",
        "reason_code": spec.get("reason_code") or "subscription_cancellation",
        "status": status,
        "date": date,
        "price_type": "tax_exclusive",
        "currency_code": inv["currency_code"],
        "total": total,
        "amount_allocated": total if status == "adjusted" else 0,
        "amount_refunded": total if status == "refunded" else 0,
        "amount_available": 0,
        "refunded_at": date if status == "refunded" else None,
        "voided_at": date if status == "voided" else None,
        "generated_at": date,
        "sub_total": total,
        "round_off_amount": 0,
        "fractional_correction": 0,
        "deleted": False,
        "object": "credit_note",
        "line_items": lines,
        "discounts": [],
        "taxes": [],
        "allocations": [],
        "linked_refunds": [],
    }
    store.stamp(cn, created=True)
    return cn


class Handlers:
    """The two endpoints, over the emulator's current store (a reset replaces it)."""

    def __init__(self, emulator: Any) -> None:
        self.em = emulator

    def list(self, call: Call) -> dict[str, Any]:
        rows = [c for c in self.em.store.credit_notes.values() if not c.get("deleted")]
        rows = apply_filters(rows, call.params)
        return paginate(rows, call.params, lambda c: {"credit_note": public(c)}, ("date",), "date")

    def retrieve(self, call: Call) -> dict[str, Any]:
        cn = self.em.store.credit_notes.get(call.path["id"])
        if cn is None or cn.get("deleted"):
            raise not_found("Credit note", call.path["id"], "id")
        return {"credit_note": public(cn)}
