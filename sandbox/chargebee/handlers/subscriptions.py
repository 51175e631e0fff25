"""Subscriptions (Product Catalog 2.0: ``*_for_items``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import models
from ..errors import ChargebeeError, duplicate, invalid_state, not_found, param_error
from ..forms import to_bool, to_int, to_json_object
from ..listing import apply_filters, paginate
from ..state import public, random_id
from .base import Call, _opt_int, _required
from .payments import PaymentHandlers


class SubscriptionHandlers(PaymentHandlers):
    def _items(self, raw: Any, required: bool) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """``subscription_items[item_price_id][i]`` & co -> [(item_price, params)]."""
        if raw in (None, ""):
            if required:
                raise param_error("subscription_items[item_price_id][0]")
            return []
        if not isinstance(raw, list):
            raise param_error(
                "subscription_items",
                "subscription_items : expected subscription_items[item_price_id][0]=... (index last)",
            )
        out = []
        for i, item in enumerate(raw):
            label = f"subscription_items[item_price_id][{i}]"
            if not isinstance(item, dict):
                raise param_error(label, f"{label} : invalid value")
            ip_id = _required(item, "item_price_id", label)
            ip = self.store.item_prices.get(ip_id)
            if ip is None:
                raise not_found("Item price", ip_id, label)
            if item.get("quantity") not in (None, ""):
                qty = to_int(item["quantity"], f"subscription_items[quantity][{i}]")
                if qty < 1:
                    raise param_error(
                        f"subscription_items[quantity][{i}]",
                        f"subscription_items[quantity][{i}] : should be at least 1",
                    )
            out.append((ip, item))
        return out

    def _coupons(self, raw: Any) -> list[dict[str, Any]]:
        if raw in (None, ""):
            return []
        ids = raw if isinstance(raw, list) else [raw]
        out = []
        for i, cid in enumerate(ids):
            coupon = self.store.coupons.get(cid)
            if coupon is None or coupon["status"] != "active":
                raise not_found("Coupon", cid, f"coupon_ids[{i}]")
            out.append(coupon)
        return out

    def apply_items(
        self, sub: dict[str, Any], items: list[tuple[dict[str, Any], dict[str, Any]]], replace: bool
    ) -> None:
        current = [] if replace else list(sub["subscription_items"])
        for ip, params in items:
            qty = int(params.get("quantity") or 0) or None
            existing = next((x for x in current if x["item_price_id"] == ip["id"]), None)
            if existing is None and ip["item_type"] == "plan":
                # one plan per subscription: a new plan item price replaces the old one
                old_plan = next((x for x in current if x["item_type"] == "plan"), None)
                if old_plan is not None:
                    qty = qty or old_plan["quantity"]
                    current.remove(old_plan)
            if existing is None:
                existing = models.subscription_item(ip, qty or 1, sub)
                current.append(existing)
            elif qty:
                existing["quantity"] = qty
            if params.get("unit_price") not in (None, ""):
                existing["unit_price"] = to_int(
                    params["unit_price"], "subscription_items[unit_price]"
                )
            existing["amount"] = existing["unit_price"] * existing["quantity"]
        plans = [x for x in current if x["item_type"] == "plan"]
        if len(plans) != 1:
            raise param_error(
                "subscription_items[item_price_id][0]",
                "subscription_items[item_price_id] : exactly one plan item price is required",
            )
        currencies = {self.store.item_prices[x["item_price_id"]]["currency_code"] for x in current}
        if len(currencies) > 1:
            raise param_error(
                "subscription_items[item_price_id][0]",
                "subscription_items[item_price_id] : item prices must share one currency",
            )
        sub["subscription_items"] = current
        sub["billing_period"] = plans[0]["billing_period"]
        sub["billing_period_unit"] = plans[0]["billing_period_unit"]
        sub["currency_code"] = currencies.pop()

    def _first_invoice(self, sub: dict[str, Any]) -> dict[str, Any]:
        subtotal = sum(x["amount"] for x in sub["subscription_items"])
        discounts = []
        remaining = subtotal
        for applied in sub["coupons"]:
            coupon = self.store.coupons[applied["coupon_id"]]
            if coupon["discount_type"] == "percentage":
                amount = round(remaining * float(coupon.get("discount_percentage") or 0) / 100)
            else:
                amount = min(int(coupon.get("discount_amount") or 0), remaining)
            remaining -= amount
            discounts.append(
                {
                    "amount": amount,
                    "description": coupon["name"],
                    "entity_type": "document_level_coupon",
                    "discount_type": coupon["discount_type"],
                    "entity_id": coupon["id"],
                }
            )
        items = [
            {
                "amount": x["amount"],
                "unit_amount": x["unit_price"],
                "quantity": x["quantity"],
                "description": self.store.item_prices[x["item_price_id"]]["name"],
                "entity_type": f"{x['item_type']}_item_price",
                "entity_id": x["item_price_id"],
                "date_from": sub["current_term_start"],
                "date_to": sub["current_term_end"],
            }
            for x in sub["subscription_items"]
        ]
        customer = self.store.customers[sub["customer_id"]]
        net = int(customer.get("net_term_days") or 0)
        now = self.store.now()
        return models.new_invoice(
            self.store,
            {
                "customer_id": sub["customer_id"],
                "subscription_id": sub["id"],
                "currency_code": sub["currency_code"],
                "sub_total": subtotal,
                "total": remaining,
                "status": "payment_due",
                "date": now,
                "due_date": now + net * 86400,
                "net_term_days": net,
                "line_items": items,
                "discounts": discounts,
                "first_invoice": True,
            },
        )

    def create_subscription(self, call: Call) -> dict[str, Any]:
        p = call.params
        customer = self.customer(call.path["customer_id"], "customer_id")
        id_ = p.get("id") or random_id()
        if id_ in self.store.subscriptions:
            raise duplicate("id", id_)
        items = self._items(p.get("subscription_items"), required=True)
        coupons = self._coupons(p.get("coupon_ids"))
        now = self.store.now()
        trial_end = _opt_int(p, "trial_end")
        start_date = _opt_int(p, "start_date")
        sub: dict[str, Any] = {
            "id": id_,
            "customer_id": customer["id"],
            "status": "active",
            "subscription_items": [],
            "coupons": [
                {"coupon_id": c["id"], "applied_count": 0, "object": "coupon"} for c in coupons
            ],
            "auto_collection": p.get("auto_collection") or None,
            "has_scheduled_changes": False,
            "has_scheduled_advance_invoices": False,
            "channel": "web",
            "deleted": False,
            "object": "subscription",
            "created_at": now,
        }
        if "meta_data" in p:
            sub["meta_data"] = to_json_object(p["meta_data"], "meta_data")
        self.apply_items(sub, items, replace=True)
        if start_date and start_date > now:
            sub.update(status="future", start_date=start_date)
            sub["next_billing_at"] = start_date
        elif trial_end and trial_end > now:
            sub.update(status="in_trial", trial_start=now, trial_end=trial_end, started_at=now)
            sub.update(
                current_term_start=now, current_term_end=trial_end, next_billing_at=trial_end
            )
        else:
            sub.update(started_at=now, activated_at=now)
            models.set_term(sub, now, sub["billing_period"], sub["billing_period_unit"], now)

        invoice = None
        auto = sub["auto_collection"] or customer["auto_collection"]
        if sub["status"] == "active":
            card = self.store.cards.get(customer["id"])
            invoice = self._first_invoice(sub)  # not stored yet: nothing is committed on errors
            if invoice["total"] > 0 and auto == "on":
                if card is None:
                    raise ChargebeeError(
                        400,
                        "payment_method_not_present",
                        "Subscription cannot be created as the customer has no payment method",
                        type="payment",
                        param="customer_id",
                    )
                if card["_decline_code"]:
                    raise self._payment_error(
                        card["_decline_code"], invoice, "Subscription cannot be created"
                    )
        self.store.stamp(sub, created=True)
        self.store.subscriptions[id_] = sub
        for c in coupons:
            c["redemptions"] = int(c.get("redemptions") or 0) + 1
        charge_events: list[dict[str, Any]] = []
        if invoice is not None:
            self.store.invoices[invoice["id"]] = invoice
            if invoice["total"] == 0:
                invoice.update(status="paid", paid_at=now, amount_due=0, amount_to_collect=0)
            elif auto == "off":
                invoice["status"] = "posted" if invoice["net_term_days"] else "payment_due"
            else:
                mark = len(call.events)
                self.charge(call, invoice, outcome="success")
                charge_events = call.events[mark:]
                del call.events[mark:]
        out = self.subscription_wrap(sub)
        if invoice is not None:
            out["invoice"] = public(invoice)
        self.event(call, "subscription_created", dict(out))
        if invoice is not None:
            self.event(call, "invoice_generated", {"invoice": public(invoice)})
        for ev in charge_events:  # Chargebee's order: created, invoice_generated, payment_succeeded
            ev["_seq"] = self.store.next_seq()
            call.events.append(ev)
        return out

    def list_subscriptions(self, call: Call) -> dict[str, Any]:
        include_deleted = to_bool(call.params.get("include_deleted", False), "include_deleted")
        rows = [
            s for s in self.store.subscriptions.values() if include_deleted or not s.get("deleted")
        ]
        virtual: dict[str, Callable[[dict[str, Any]], Any]] = {
            "item_price_id": lambda s: [x["item_price_id"] for x in s["subscription_items"]],
            "item_id": lambda s: [
                self.store.item_prices[x["item_price_id"]]["item_id"]
                for x in s["subscription_items"]
            ],
            "plan_id": lambda s: [
                x["item_price_id"] for x in s["subscription_items"] if x["item_type"] == "plan"
            ],
        }
        rows = apply_filters(rows, call.params, virtual=virtual)
        return paginate(
            rows, call.params, self.subscription_wrap, ("created_at", "updated_at"), "created_at"
        )

    def subscriptions_for_customer(self, call: Call) -> dict[str, Any]:
        customer = self.customer(call.path["id"])
        rows = [
            s
            for s in self.store.subscriptions.values()
            if s["customer_id"] == customer["id"] and not s.get("deleted")
        ]
        return paginate(
            rows,
            call.params,
            lambda s: {"subscription": models.render_subscription(self.store, s)},
            ("created_at", "updated_at"),
            "created_at",
        )

    def retrieve_subscription(self, call: Call) -> dict[str, Any]:
        return self.subscription_wrap(self.subscription(call.path["id"]))

    def update_subscription(self, call: Call) -> dict[str, Any]:
        p = call.params
        sub = self.subscription(call.path["id"])
        if sub["status"] == "cancelled":
            raise invalid_state(f"Subscription {sub['id']} is cancelled and cannot be changed")
        items = self._items(p.get("subscription_items"), required=False)
        replace = to_bool(p.get("replace_items_list", False), "replace_items_list")
        coupons = self._coupons(p.get("coupon_ids"))
        if items or replace:
            self.apply_items(sub, items, replace)
        if coupons or to_bool(p.get("replace_coupon_list", False), "replace_coupon_list"):
            kept = (
                []
                if to_bool(p.get("replace_coupon_list", False), "replace_coupon_list")
                else sub["coupons"]
            )
            known = {c["coupon_id"] for c in kept}
            sub["coupons"] = kept + [
                {"coupon_id": c["id"], "applied_count": 0, "object": "coupon"}
                for c in coupons
                if c["id"] not in known
            ]
        if "auto_collection" in p:
            if p["auto_collection"] not in ("on", "off"):
                raise param_error("auto_collection", "auto_collection : invalid value")
            sub["auto_collection"] = p["auto_collection"]
        if "meta_data" in p:
            sub["meta_data"] = to_json_object(p["meta_data"], "meta_data")
        self.store.stamp(sub)
        out = self.subscription_wrap(sub)
        self.event(call, "subscription_changed", dict(out))
        return out

    def cancel_subscription(self, call: Call) -> dict[str, Any]:
        p = call.params
        sub = self.subscription(call.path["id"])
        if sub["status"] == "cancelled":
            raise invalid_state(f"Subscription {sub['id']} is already cancelled")
        option = p.get("cancel_option") or (
            "end_of_term" if to_bool(p.get("end_of_term", False), "end_of_term") else "immediately"
        )
        now = self.store.now()
        if option not in ("immediately", "end_of_term", "specific_date", "end_of_billing_term"):
            raise param_error("cancel_option", "cancel_option : invalid value")
        if p.get("cancel_reason_code"):
            sub["cancel_reason_code"] = p["cancel_reason_code"]
        if option == "immediately":
            sub.update(status="cancelled", cancelled_at=now, next_billing_at=None)
            sub["current_term_end"] = now
            event_type = "subscription_cancelled"
        else:
            at = sub.get("current_term_end") or now
            if option == "specific_date":
                at = to_int(_required(p, "cancel_at"), "cancel_at")
            sub.update(status="non_renewing", cancelled_at=at, next_billing_at=None)
            sub["cancel_schedule_created_at"] = now
            event_type = "subscription_cancellation_scheduled"
        self.store.stamp(sub)
        out = self.subscription_wrap(sub)
        self.event(call, event_type, dict(out))
        return out
