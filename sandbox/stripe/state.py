"""All Stripe state in one object, plus scenario seeding."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from .catalog import CatalogMixin
from .credit_notes import CreditNoteMixin
from .customers import CustomerMixin
from .errors import StripeError
from .invoices import InvoiceMixin
from .refunds import RefundMixin
from .subscriptions import SubscriptionMixin


class StripeState(
    RefundMixin, SubscriptionMixin, InvoiceMixin, CreditNoteMixin, CustomerMixin, CatalogMixin
):
    def __init__(self, clock: Callable[[], float], api_version: str) -> None:
        super().__init__(clock, api_version)
        self.meter_events: list[dict[str, Any]] = []
        self.meter_identifiers: dict[str, int] = {}

    def seed(self, data: Mapping[str, Any]) -> dict[str, list[str]]:
        """Load a scenario without emitting events or charging anyone.

        ``{"products": [...], "prices": [...], "coupons": [...], "meters": [...],
        "customers": [{..., "card": {"decline_code": null | "insufficient_funds"}}],
        "subscriptions": [{"customer", "items": [{"price", "quantity"}], "status"?, ...}],
        "invoices": [{"customer", "subscription"?, "status"?, "lines": [{"amount", ...}], ...}]}``
        Caller-chosen ``id`` values are kept. The catalogue is idempotent: a product or price
        whose ``id`` exists, or a price whose ``lookup_key`` is taken, is kept as it is (its id
        is returned). Returns the ids per kind.
        """
        out: dict[str, list[str]] = {}
        self.emit_events = False
        try:
            for spec in data.get("products", []):
                kept = self.find(spec.get("id"), "product")
                out.setdefault("products", []).append(
                    kept["id"] if kept else self.create_product(dict(spec), seeded=True)["id"]
                )
            for spec in data.get("meters", []):
                out.setdefault("meters", []).append(self.create_meter(dict(spec))["id"])
            for spec in data.get("prices", []):
                kept = self._seeded_price(spec)
                out.setdefault("prices", []).append(
                    kept["id"] if kept else self.create_price(dict(spec), seeded=True)["id"]
                )
            for spec in data.get("coupons", []):
                out.setdefault("coupons", []).append(
                    self.create_coupon(dict(spec), seeded=True)["id"]
                )
            for spec in data.get("customers", []):
                spec = dict(spec)
                card = spec.pop("card", None) or {}
                cus = self.create_customer(spec, seeded=True)
                if card.get("decline_code"):
                    self.set_decline(cus["id"], card["decline_code"])
                out.setdefault("customers", []).append(cus["id"])
            for spec in data.get("subscriptions", []):
                out.setdefault("subscriptions", []).append(self._seed_subscription(dict(spec)))
            for spec in data.get("invoices", []):
                out.setdefault("invoices", []).append(self._seed_invoice(dict(spec)))
        finally:
            self.emit_events = True
        return out

    def _seeded_price(self, spec: Mapping[str, Any]) -> dict[str, Any] | None:
        """The price a catalogue entry already is: same ``id``, or the holder of its
        ``lookup_key`` (unique per account: Stripe rejects a second price with the key unless
        ``transfer_lookup_key``), so seeding one catalogue many times adds nothing."""
        kept = self.find(spec.get("id"), "price")
        if kept is None and spec.get("lookup_key"):
            kept = next(
                (p for p in self.all("price") if p["lookup_key"] == spec["lookup_key"]), None
            )
        return kept

    def _seed_subscription(self, spec: dict[str, Any]) -> str:
        status = spec.pop("status", "active")
        start = spec.pop("current_period_start", None)
        end = spec.pop("current_period_end", None)
        created = spec.pop("created", None)
        sub = self.create_subscription(spec, seeded=True)
        sub["status"] = status
        if created is not None:
            sub["created"] = sub["start_date"] = int(created)
        if start is not None or end is not None:
            s0, e0 = sub["_period"]
            self._set_period(sub, int(start or s0), int(end or e0))
        if status == "canceled":
            sub["canceled_at"] = sub["ended_at"] = self.now()
        return sub["id"]

    def _seed_invoice(self, spec: dict[str, Any]) -> str:
        cus = self.get(spec.get("customer"), "customer", "customer")
        sub = self.find(spec.get("subscription"), "subscription")
        if spec.get("subscription") and sub is None:
            raise StripeError(400, f"No such subscription: {spec['subscription']}")
        status = spec.get("status", "open")
        inv = self._new_invoice(
            cus,
            billing_reason=spec.get("billing_reason")
            or ("subscription_cycle" if sub else "manual"),
            sub=sub,
            collection_method=spec.get("collection_method", "charge_automatically"),
            auto_advance=bool(spec.get("auto_advance", True)),
            currency=spec.get("currency"),
            days_until_due=spec.get("days_until_due"),
            period=sub["_period"] if sub else None,
            inv_id=spec.get("id"),
        )
        inv["metadata"] = {k: str(v) for k, v in (spec.get("metadata") or {}).items()}
        lines = spec.get("lines") or [
            {"amount": spec.get("amount_due", 0), "description": spec.get("description")}
        ]
        for line in lines:
            ii = self.create_invoiceitem(
                {
                    "customer": cus["id"],
                    "invoice": inv["id"],
                    "subscription": sub["id"] if sub else None,
                    "currency": inv["currency"],
                    **{k: v for k, v in line.items() if v is not None},
                },
                internal=True,
            )
            ii["_sub"] = sub["id"] if sub else None
        if sub:
            sub["latest_invoice"] = inv["id"]
        self._recalc(inv)
        if status != "draft":
            self.finalize(inv)
            inv["attempt_count"] = int(spec.get("attempt_count", 0))
            inv["attempted"] = inv["attempt_count"] > 0
            if "next_payment_attempt" in spec:
                inv["next_payment_attempt"] = spec["next_payment_attempt"]
            if status == "paid" and inv["status"] != "paid":
                inv["amount_paid"] = inv["amount_remaining"]
                inv["amount_remaining"] = 0
                inv["status"] = "paid"
                inv["next_payment_attempt"] = None
                inv["status_transitions"]["paid_at"] = self.now()
            elif status in ("void", "uncollectible"):
                inv["status"] = status
                inv["next_payment_attempt"] = None
                key = "voided_at" if status == "void" else "marked_uncollectible_at"
                inv["status_transitions"][key] = self.now()
        if spec.get("due_date"):
            inv["due_date"] = int(spec["due_date"])
        return inv["id"]
