"""Subscriptions: create, change plan (prorations), cancel, renew (the billing cycle)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .errors import StripeError, card_error, missing, no_such
from .forms import (
    apply_metadata,
    as_bool,
    as_dict,
    as_enum,
    as_int,
    as_list,
    as_str,
    check_known,
)
from .invoices import add_interval
from .store import Store

SUB_PARAMS = {
    "add_invoice_items", "application_fee_percent", "automatic_tax", "backdate_start_date",
    "billing_cycle_anchor", "billing_cycle_anchor_config", "billing_mode", "billing_schedules",
    "billing_thresholds", "cancel_at", "cancel_at_period_end", "collection_method", "coupon",
    "currency", "customer", "days_until_due", "default_payment_method", "default_source",
    "default_tax_rates", "description", "discounts", "invoice_settings", "items", "metadata",
    "off_session", "on_behalf_of", "payment_behavior", "payment_settings",
    "pending_invoice_item_interval", "proration_behavior", "transfer_data", "trial_end",
    "trial_from_plan", "trial_period_days", "trial_settings",
}  # fmt: skip
SUB_UPDATE_PARAMS = (SUB_PARAMS - {"customer", "currency", "backdate_start_date", "billing_mode",
                                   "billing_cycle_anchor_config", "trial_period_days"}) | {
    "cancellation_details", "pause_collection", "proration_date",
}  # fmt: skip
LIVE_STATUSES = ("active", "past_due", "unpaid", "trialing", "incomplete", "paused")


class SubscriptionMixin(Store):
    def _item_price(self, spec: dict[str, Any], param: str) -> dict[str, Any]:
        if spec.get("price_data"):
            return self.create_price(dict(as_dict(spec, "price_data")), seeded=True)
        pid = spec.get("price") or spec.get("plan")
        if not pid:
            raise missing(f"{param}[price]")
        price = self.get(pid, "price", f"{param}[price]")
        if price["type"] != "recurring":
            raise StripeError(
                400,
                "The price specified is set to `type=one_time` but this field only accepts "
                "prices with `type=recurring`.",
                param=f"{param}[price]",
            )
        if not price["active"]:
            raise StripeError(
                400,
                "The price specified is inactive. This field only accepts active prices.",
                param=f"{param}[price]",
            )
        return price

    @staticmethod
    def _metered(price: dict[str, Any]) -> bool:
        return (price.get("recurring") or {}).get("usage_type") == "metered"

    def _quantity(self, spec: dict[str, Any], price: dict[str, Any], param: str) -> int | None:
        qty = as_int(spec, "quantity")
        if self._metered(price):
            if qty is not None:
                raise StripeError(
                    400,
                    "Quantity should not be specified where usage_type is `metered`. Remove "
                    "quantity from the request.",
                    param=f"{param}[quantity]",
                )
            return None
        if qty is not None and qty < 0:
            raise StripeError(
                400, "This value must be greater than or equal to 0.", param=f"{param}[quantity]"
            )
        return 1 if qty is None else qty

    def _check_consistent(self, prices: list[dict[str, Any]]) -> None:
        keys = {(p["currency"], p["recurring"]["interval"], p["recurring"]["interval_count"])
                for p in prices}  # fmt: skip
        if len(keys) > 1:
            raise StripeError(
                400,
                "Currency and interval fields must match across all plans on this subscription. "
                "Found mismatch in interval field.",
                param="items",
            )

    def render_subscription_item(self, out: dict[str, Any], stored: dict[str, Any]) -> None:
        price = self.objects[stored["_price"]]
        out["price"] = self.render(price)
        out["plan"] = self.plan_view(price)

    def render_subscription(self, out: dict[str, Any], stored: dict[str, Any]) -> None:
        items = [self.render(self.objects[i]) for i in stored["_items"]]
        out["items"] = {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={stored['id']}",
        }

    def _new_item(
        self, sub_id: str, price: dict[str, Any], qty: int | None, metadata: Any, period: list[int]
    ) -> dict[str, Any]:
        si = {
            "id": self.new_id("si", 14),
            "object": "subscription_item",
            "billing_thresholds": None,
            "created": self.now(),
            "current_period_end": period[1],
            "current_period_start": period[0],
            "discounts": [],
            "metadata": apply_metadata({}, metadata),
            "quantity": qty,
            "subscription": sub_id,
            "tax_rates": [],
            "_price": price["id"],
        }
        return self.put(si)

    def _items(self, sub: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.objects[i] for i in sub["_items"]]

    def _set_period(self, sub: dict[str, Any], start: int, end: int) -> None:
        sub["_period"] = [start, end]
        for si in self._items(sub):
            si["current_period_start"], si["current_period_end"] = start, end

    def create_subscription(
        self, params: dict[str, Any], *, seeded: bool = False
    ) -> dict[str, Any]:
        if not seeded:
            check_known(params, SUB_PARAMS)
        cus = self._customer(as_str(params, "customer"))
        specs = as_list(params, "items")
        if not specs:
            raise missing("items")
        prices, qtys = [], []
        for i, spec in enumerate(specs):
            if not isinstance(spec, dict):
                raise StripeError(400, "Invalid hash", param=f"items[{i}]")
            price = self._item_price(spec, f"items[{i}]")
            prices.append(price)
            qtys.append(self._quantity(spec, price, f"items[{i}]"))
        self._check_consistent(prices)
        currency = prices[0]["currency"]
        rec = prices[0]["recurring"]
        collection = as_enum(
            params, "collection_method", ("charge_automatically", "send_invoice"),
            "charge_automatically",
        )  # fmt: skip
        days_until_due = as_int(params, "days_until_due")
        if collection == "send_invoice" and days_until_due is None:
            raise missing("days_until_due")
        behavior = as_enum(
            params,
            "payment_behavior",
            ("allow_incomplete", "default_incomplete", "error_if_incomplete",
             "pending_if_incomplete"),
            "allow_incomplete",
        )  # fmt: skip
        now = self.now()
        trial_end: int | None = None
        if params.get("trial_end") not in (None, "", "now"):
            trial_end = as_int(params, "trial_end")
            if trial_end is not None and trial_end <= now:
                raise StripeError(
                    400,
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                    param="trial_end",
                )
        elif params.get("trial_period_days") not in (None, ""):
            days = as_int(params, "trial_period_days") or 0
            trial_end = now + days * 86400 if days else None
        elif as_bool(params, "trial_from_plan", False) and rec.get("trial_period_days"):
            trial_end = now + rec["trial_period_days"] * 86400
        anchor = as_int(params, "billing_cycle_anchor")
        full_end = add_interval(now, rec["interval"], rec["interval_count"])
        if anchor is not None and not trial_end and not seeded:
            if anchor < now:
                raise StripeError(
                    400,
                    "Invalid timestamp: must be an integer Unix timestamp in the future.",
                    param="billing_cycle_anchor",
                )
            if anchor > full_end:
                # Stripe: the anchor must come before the next natural billing date.
                raise StripeError(
                    400,
                    "billing_cycle_anchor cannot be later than next natural billing date "
                    f"({full_end}) for plan",
                    param="billing_cycle_anchor",
                )
        if trial_end:
            period = [now, trial_end]
        elif anchor and now < anchor < full_end:
            period = [now, anchor]
        else:
            anchor = None
            period = [now, full_end]
        # With an anchor, proration_behavior=none makes the initial period up to it free.
        free_until_anchor = (
            bool(anchor) and as_enum(
                params, "proration_behavior", ("create_prorations", "none", "always_invoice"),
                "create_prorations",
            ) == "none"
        )  # fmt: skip
        first_amount = (
            0
            if free_until_anchor
            else sum((p["unit_amount"] or 0) * (q or 0) for p, q in zip(prices, qtys, strict=True))
        )
        if (
            not seeded
            and behavior == "error_if_incomplete"
            and collection == "charge_automatically"
            and not trial_end
            and first_amount > 0
            and cus["_decline"]
        ):
            raise card_error(cus["_decline"])
        sub_id = (as_str(params, "id") if seeded else None) or self.new_id("sub")
        needs_payment = (
            not seeded
            and not trial_end
            and collection == "charge_automatically"
            and first_amount > 0
        )
        sub = {
            "id": sub_id,
            "object": "subscription",
            "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": trial_end or anchor or period[0],
            "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": None, "type": "classic"},
            "billing_thresholds": None,
            "cancel_at": None,
            "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": collection,
            "created": now,
            "currency": currency,
            "customer": cus["id"],
            "days_until_due": days_until_due,
            "default_payment_method": as_str(params, "default_payment_method"),
            "default_source": None,
            "default_tax_rates": [],
            "description": as_str(params, "description"),
            "discounts": [],
            "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "latest_invoice": None,
            "livemode": False,
            "metadata": apply_metadata({}, params.get("metadata")),
            "next_pending_invoice_item_invoice": None,
            "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {
                "payment_method_options": None,
                "payment_method_types": None,
                "save_default_payment_method": "off",
            },
            "pending_invoice_item_interval": None,
            "pending_setup_intent": None,
            "pending_update": None,
            "schedule": None,
            "start_date": now,
            "status": "trialing" if trial_end else ("incomplete" if needs_payment else "active"),
            "test_clock": None,
            "transfer_data": None,
            "trial_end": trial_end,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": now if trial_end else None,
            "_items": [],
            "_period": period,
        }
        self.put(sub)
        for spec, price, qty in zip(specs, prices, qtys, strict=True):
            si = self._new_item(sub_id, price, qty, spec.get("metadata"), period)
            sub["_items"].append(si["id"])
        sub["discounts"] = self._discounts_from(params, customer=cus["id"], subscription=sub_id)
        if as_bool(params, "cancel_at_period_end", False):
            sub["cancel_at_period_end"] = True
            sub["cancel_at"] = period[1]
        elif params.get("cancel_at"):
            sub["cancel_at"] = as_int(params, "cancel_at")
        cus["currency"] = cus["currency"] or currency
        self.event("customer.subscription.created", sub)
        if seeded:
            return sub
        # The first invoice.
        lines = []
        for si, price, qty in zip(self._items(sub), prices, qtys, strict=True):
            if trial_end:
                lines.append((si, price, qty, 0, f"Trial period for {self._product_name(price)}"))
            elif not self._metered(price):
                amount = (price["unit_amount"] or 0) * (qty or 0)
                if free_until_anchor:
                    amount = 0
                elif anchor:
                    amount = round(amount * (period[1] - period[0]) / (full_end - period[0]))
                lines.append((si, price, qty, amount, None))
        extra = []
        for i, spec in enumerate(as_list(params, "add_invoice_items")):
            extra.append(self._one_off_item(cus, sub, spec, f"add_invoice_items[{i}]"))
        inv = self._subscription_invoice(sub, "subscription_create", lines, period)
        for ii in extra:
            self._attach_item(inv, ii)
        self._recalc(inv)
        self.finalize(inv)
        if inv["status"] == "open" and collection == "charge_automatically":
            if behavior != "default_incomplete":
                self.attempt_payment(inv)
        elif inv["status"] == "paid" and sub["status"] == "incomplete":
            self._set_status(sub, "active")
        return sub

    def _one_off_item(
        self, cus: dict[str, Any], sub: dict[str, Any], spec: Any, param: str
    ) -> dict[str, Any]:
        if not isinstance(spec, dict):
            raise StripeError(400, "Invalid hash", param=param)
        return self.create_invoiceitem(
            {**spec, "customer": cus["id"], "subscription": sub["id"]}, internal=True
        )

    def _set_status(self, sub: dict[str, Any], status: str) -> None:
        if sub["status"] == status:
            return
        before = self.render(sub)
        sub["status"] = status
        self._updated("customer.subscription.updated", sub, before)

    def update_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, SUB_UPDATE_PARAMS)
        sub = self.get(sub_id, "subscription")
        ended = sub["status"] in ("canceled", "incomplete_expired")
        if ended and set(params) - {"metadata", "cancellation_details", "expand"}:
            raise StripeError(
                400,
                "A canceled subscription can only update its cancellation_details and metadata.",
            )
        before = self.render(sub)
        cus = self.get(sub["customer"], "customer", allow_deleted=True)
        now = self.now()
        proration = as_enum(
            params, "proration_behavior", ("create_prorations", "none", "always_invoice"),
            "create_prorations",
        )  # fmt: skip
        behavior = as_enum(
            params,
            "payment_behavior",
            ("allow_incomplete", "default_incomplete", "error_if_incomplete",
             "pending_if_incomplete"),
            "allow_incomplete",
        )  # fmt: skip
        # Work out item changes before touching anything.
        current = {si["id"]: si for si in self._items(sub)}
        plan: list[tuple[str, Any, Any, Any]] = []  # (op, si, price, qty)
        for i, spec in enumerate(as_list(params, "items")):
            param = f"items[{i}]"
            if not isinstance(spec, dict):
                raise StripeError(400, "Invalid hash", param=param)
            if spec.get("id"):
                si = current.get(spec["id"])
                if si is None:
                    raise StripeError(
                        400,
                        f"Subscription item {spec['id']} is not part of subscription {sub_id}.",
                        param=f"{param}[id]",
                    )
                if as_bool(spec, "deleted", False):
                    plan.append(("delete", si, None, None))
                    continue
                new_price = spec.get("price") or spec.get("plan") or spec.get("price_data")
                price = self._item_price(spec, param) if new_price else self.objects[si["_price"]]
                if "quantity" in spec:
                    qty = self._quantity(spec, price, param)
                elif self._metered(price):
                    qty = None
                else:
                    qty = si["quantity"] if si["quantity"] is not None else 1
                plan.append(("change", si, price, qty))
                if "metadata" in spec:
                    si["metadata"] = apply_metadata(si["metadata"], spec["metadata"])
            else:
                price = self._item_price(spec, param)
                plan.append(("add", spec, price, self._quantity(spec, price, param)))
        resulting = {si_id: self.objects[si["_price"]] for si_id, si in current.items()}
        for op, si, price, _ in plan:
            if op == "delete":
                resulting.pop(si["id"], None)
            elif op == "change":
                resulting[si["id"]] = price
        added = [p for op, _, p, _ in plan if op == "add"]
        final_prices = list(resulting.values()) + added
        if not final_prices:
            raise StripeError(
                400, "A subscription must have at least one active plan.", param="items"
            )
        self._check_consistent(final_prices)
        old_rec = self.objects[next(iter(current.values()))["_price"]]["recurring"]
        new_rec = final_prices[0]["recurring"]
        interval_changed = (old_rec["interval"], old_rec["interval_count"]) != (
            new_rec["interval"],
            new_rec["interval_count"],
        )
        changes = [
            (op, si, price, qty)
            for op, si, price, qty in plan
            if op != "change" or price["id"] != si["_price"] or qty != si["quantity"]
        ]
        trial_now = params.get("trial_end") == "now"
        invoice_now = (
            interval_changed or trial_now or (proration == "always_invoice" and bool(changes))
        ) and sub["status"] in LIVE_STATUSES
        if (
            behavior == "error_if_incomplete"
            and invoice_now
            and cus.get("_decline")
            and sub["collection_method"] == "charge_automatically"
        ):
            raise card_error(cus["_decline"])

        # Apply.
        start, end = sub["_period"]
        frac = max(0.0, min(1.0, (end - now) / (end - start))) if end > start else 0.0
        prorate = (
            proration != "none" and sub["status"] in ("active", "past_due", "unpaid") and changes
        )
        for op, si, price, qty in changes:
            old_price = None if op == "add" else self.objects[si["_price"]]
            old_qty = None if op == "add" else si["quantity"]
            if op == "delete":
                sub["_items"].remove(si["id"])
                si["_deleted"] = True
            elif op == "change":
                si["_price"], si["quantity"] = price["id"], qty
            else:
                new_si = self._new_item(sub_id, price, qty, si.get("metadata"), sub["_period"])
                sub["_items"].append(new_si["id"])
                si = new_si
            if not prorate:
                continue
            if old_price is not None and not self._metered(old_price):
                credit = round((old_price["unit_amount"] or 0) * (old_qty or 0) * frac)
                if credit:
                    self._proration_item(
                        sub, si, old_price, old_qty, -credit, [now, end],
                        f"Unused time on {old_qty} × {self._product_name(old_price)} after "
                        f"{datetime.fromtimestamp(now, UTC):%d %b %Y}",
                    )  # fmt: skip
            if price is not None and not interval_changed and not self._metered(price):
                debit = round((price["unit_amount"] or 0) * (qty or 0) * frac)
                if debit:
                    self._proration_item(
                        sub, si, price, qty, debit, [now, end],
                        f"Remaining time on {qty} × {self._product_name(price)} after "
                        f"{datetime.fromtimestamp(now, UTC):%d %b %Y}",
                    )  # fmt: skip
        if "cancel_at_period_end" in params:
            flag = bool(as_bool(params, "cancel_at_period_end", False))
            sub["cancel_at_period_end"] = flag
            sub["cancel_at"] = sub["_period"][1] if flag else None
            sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
        if "cancel_at" in params:
            sub["cancel_at"] = as_int(params, "cancel_at")
            sub["cancel_at_period_end"] = False
        details = params.get("cancellation_details")
        if isinstance(details, dict):
            for key in ("comment", "feedback"):
                if key in details:
                    sub["cancellation_details"][key] = details[key] or None
        if "coupon" in params or "discounts" in params:
            if params.get("coupon") == "" or params.get("discounts") == "":
                sub["discounts"] = []
            else:
                sub["discounts"] = self._discounts_from(
                    params, customer=sub["customer"], subscription=sub_id
                )
        for key in ("description", "default_payment_method"):
            if key in params:
                sub[key] = as_str(params, key)
        if "collection_method" in params:
            sub["collection_method"] = as_enum(
                params, "collection_method", ("charge_automatically", "send_invoice")
            )
        if "days_until_due" in params:
            sub["days_until_due"] = as_int(params, "days_until_due")
        if sub["collection_method"] == "send_invoice" and sub["days_until_due"] is None:
            raise missing("days_until_due")
        if "pause_collection" in params:
            pause = params["pause_collection"]
            sub["pause_collection"] = (
                {"behavior": pause.get("behavior"), "resumes_at": as_int(pause, "resumes_at")}
                if isinstance(pause, dict)
                else None
            )
        sub["metadata"] = apply_metadata(sub["metadata"], params.get("metadata"))
        if params.get("trial_end") not in (None, "", "now"):
            sub["trial_end"] = as_int(params, "trial_end")
            sub["status"] = "trialing"
            self._set_period(sub, sub["_period"][0], sub["trial_end"])
        if interval_changed or trial_now:
            if trial_now:
                sub["trial_end"] = now
                if sub["status"] == "trialing":
                    sub["status"] = "active"
            sub["billing_cycle_anchor"] = now
            self._set_period(
                sub, now, add_interval(now, new_rec["interval"], new_rec["interval_count"])
            )
        self._updated("customer.subscription.updated", sub, before)
        if invoice_now:
            lines = []
            if interval_changed or trial_now:
                for si in self._items(sub):
                    price = self.objects[si["_price"]]
                    if not self._metered(price):
                        amount = (price["unit_amount"] or 0) * (si["quantity"] or 0)
                        lines.append((si, price, si["quantity"], amount, None))
            inv = self._subscription_invoice(sub, "subscription_update", lines, sub["_period"])
            self.finalize(inv)
            if (
                inv["status"] == "open"
                and sub["collection_method"] == "charge_automatically"
                and behavior != "default_incomplete"
            ):
                self.attempt_payment(inv)
        return sub

    def _proration_item(
        self,
        sub: dict[str, Any],
        si: dict[str, Any],
        price: dict[str, Any],
        qty: Any,
        amount: int,
        period: list[int],
        description: str,
    ) -> dict[str, Any]:
        ii = self.create_invoiceitem(
            {
                "customer": sub["customer"],
                "subscription": sub["id"],
                "amount": amount,
                "currency": sub["currency"],
                "description": description,
                "discountable": True,
                "period": {"start": period[0], "end": period[1]},
            },
            internal=True,
        )
        ii["proration"] = True
        ii["quantity"] = qty or 1
        ii["pricing"] = {
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price["unit_amount_decimal"],
        }
        ii["_si"] = si["id"]
        return ii

    def cancel_subscription(self, sub_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"cancellation_details", "invoice_now", "prorate"})
        sub = self.get(sub_id, "subscription")
        if sub["status"] in ("canceled", "incomplete_expired"):
            # Stripe treats a canceled subscription as gone for DELETE: 404 "No such subscription"
            # (it can still be retrieved, and its metadata / cancellation_details updated).
            raise no_such("subscription", sub_id)
        now = self.now()
        if as_bool(params, "prorate", False) and sub["status"] in ("active", "past_due"):
            start, end = sub["_period"]
            frac = max(0.0, min(1.0, (end - now) / (end - start))) if end > start else 0.0
            for si in self._items(sub):
                price = self.objects[si["_price"]]
                credit = round((price["unit_amount"] or 0) * (si["quantity"] or 0) * frac)
                if credit and not self._metered(price):
                    self._proration_item(
                        sub, si, price, si["quantity"], -credit, [now, end],
                        f"Unused time on {si['quantity']} × {self._product_name(price)}",
                    )  # fmt: skip
        details = params.get("cancellation_details")
        self.cancel_subscription_now(
            sub,
            reason="cancellation_requested",
            details=details if isinstance(details, dict) else None,
        )
        if as_bool(params, "invoice_now", False):
            lines = []
            start, _ = sub["_period"]
            for si in self._items(sub):
                price = self.objects[si["_price"]]
                meter = self.find((price["recurring"] or {}).get("meter"), "billing.meter")
                if meter:
                    usage = int(round(self.meter_usage(meter, sub["customer"], start, now + 1)))
                    lines.append((si, price, usage, usage * (price["unit_amount"] or 0), None))
            if lines or self._pending_items(sub["customer"], sub["id"]):
                inv = self._subscription_invoice(sub, "subscription_update", lines, [start, now])
                self.finalize(inv)
                if inv["status"] == "open" and sub["collection_method"] == "charge_automatically":
                    self.attempt_payment(inv)
        return sub

    def cancel_subscription_now(
        self,
        sub: dict[str, Any],
        *,
        reason: str,
        at: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        now = self.now()
        sub["status"] = "canceled"
        sub["canceled_at"] = now
        sub["ended_at"] = at or now
        sub["cancellation_details"]["reason"] = reason
        for key in ("comment", "feedback"):
            if details and key in details:
                sub["cancellation_details"][key] = details[key] or None
        self.event("customer.subscription.deleted", sub)

    def list_subscriptions(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        status = params.get("status")
        price = params.get("price")
        collection = params.get("collection_method")

        def ok(s: dict[str, Any]) -> bool:
            if customer and s["customer"] != customer:
                return False
            if status == "all":
                pass
            elif status == "ended":
                if s["status"] not in ("canceled", "incomplete_expired"):
                    return False
            elif status:
                if s["status"] != status:
                    return False
            elif s["status"] == "canceled":
                return False
            if collection and s["collection_method"] != collection:
                return False
            return not price or any(self.objects[i]["_price"] == price for i in s["_items"])

        return self.page(self.all("subscription"), params, "/v1/subscriptions", ok)

    def list_subscription_items(self, params: dict[str, Any]) -> dict[str, Any]:
        sub = self.get(
            as_str(params, "subscription", required=True), "subscription", "subscription"
        )
        items = list(reversed(self._items(sub)))
        return self.page(items, params, "/v1/subscription_items")

    def renew_subscription(self, sub_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Advance a subscription to its next billing period, as Stripe's scheduler does."""
        sub = self.get(sub_id, "subscription")
        if sub["status"] in ("canceled", "incomplete_expired"):
            raise StripeError(400, f"Subscription {sub_id} is canceled.")
        old_start, old_end = sub["_period"]
        if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= old_end):
            self.cancel_subscription_now(sub, reason="cancellation_requested", at=old_end)
            return sub, None
        rec = self.objects[self._items(sub)[0]["_price"]]["recurring"]
        before = self.render(sub)
        was_trialing = sub["status"] == "trialing"
        if was_trialing:
            sub["status"] = "active"
        new_period = [old_end, add_interval(old_end, rec["interval"], rec["interval_count"])]
        lines = []
        for si in self._items(sub):
            price = self.objects[si["_price"]]
            if self._metered(price):
                meter = self.find((price["recurring"] or {}).get("meter"), "billing.meter")
                usage = 0
                if meter and not was_trialing:
                    usage = int(round(self.meter_usage(meter, sub["customer"], old_start, old_end)))
                lines.append((si, price, usage, usage * (price["unit_amount"] or 0), None))
            else:
                amount = (price["unit_amount"] or 0) * (si["quantity"] or 0)
                lines.append((si, price, si["quantity"], amount, None))
        self._set_period(sub, *new_period)
        self._updated("customer.subscription.updated", sub, before)
        inv = self._subscription_invoice(sub, "subscription_cycle", lines, new_period)
        self.finalize(inv)
        if inv["status"] == "open" and sub["collection_method"] == "charge_automatically":
            self.attempt_payment(inv, automatic=True)
        return sub, inv
