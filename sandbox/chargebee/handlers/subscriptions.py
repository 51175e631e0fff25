"""Subscriptions (Product Catalog 2.0: ``*_for_items``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import models
from ..errors import ChargebeeError, duplicate, invalid_state, not_found, param_error
from ..forms import to_bool, to_int, to_json_object
from ..listing import apply_filters, paginate, wanted_ids
from ..state import add_period, public, random_id
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

    def _discounts(self, raw: Any, currency: str) -> list[dict[str, Any]]:
        """``discounts[apply_on][i]``, ``[duration_type][i]``, ``[percentage][i]`` | ``[amount][i]``,
        ``[period][i]``/``[period_unit][i]`` (limited_period), ``[included_in_mrr][i]``,
        ``[item_price_id][i]`` (apply_on=specific_item_price) -> subscription discounts."""
        if raw in (None, ""):
            return []
        if not isinstance(raw, list):
            raise param_error("discounts[apply_on][0]", "discounts : expected discounts[...][0]")
        now = self.store.now()
        out = []
        for i, d in enumerate(raw):
            if not isinstance(d, dict):
                raise param_error(f"discounts[apply_on][{i}]")
            apply_on = _required(d, "apply_on", f"discounts[apply_on][{i}]")
            if apply_on not in ("invoice_amount", "specific_item_price"):
                raise param_error(
                    f"discounts[apply_on][{i}]", f"discounts[apply_on][{i}] : invalid"
                )
            duration = _required(d, "duration_type", f"discounts[duration_type][{i}]")
            if duration not in ("one_time", "forever", "limited_period"):
                raise param_error(
                    f"discounts[duration_type][{i}]", f"discounts[duration_type][{i}] : invalid"
                )
            disc: dict[str, Any] = {
                "id": random_id("disc_"),
                "invoice_name": d.get("invoice_name") or None,
                "duration_type": duration,
                "included_in_mrr": to_bool(
                    d.get("included_in_mrr", True), f"discounts[included_in_mrr][{i}]"
                ),
                "apply_on": apply_on,
                "created_at": now,
                "applied_count": 0,
                "index": i,
                "object": "discount",
            }
            has_pct = d.get("percentage") not in (None, "")
            has_amount = d.get("amount") not in (None, "")
            if has_pct == has_amount:
                raise param_error(
                    f"discounts[percentage][{i}]",
                    f"discounts[percentage][{i}] : exactly one of percentage and amount is required",
                )
            if has_pct:
                try:
                    pct = float(d["percentage"])
                except ValueError:
                    raise param_error(f"discounts[percentage][{i}]") from None
                if not 0 < pct <= 100:
                    raise param_error(
                        f"discounts[percentage][{i}]",
                        f"discounts[percentage][{i}] : must be in (0, 100]",
                    )
                disc.update(type="percentage", percentage=pct)
            else:
                amount = to_int(d["amount"], f"discounts[amount][{i}]")
                disc.update(type="fixed_amount", amount=amount, currency_code=currency)
            if duration == "limited_period":
                period = to_int(
                    _required(d, "period", f"discounts[period][{i}]"), f"discounts[period][{i}]"
                )
                unit = d.get("period_unit") or "month"
                disc.update(
                    period=period, period_unit=unit, apply_till=add_period(now, period, unit)
                )
            if apply_on == "specific_item_price":
                disc["item_price_id"] = _required(
                    d, "item_price_id", f"discounts[item_price_id][{i}]"
                )
            out.append(disc)
        return out

    def _coupon_entry(self, coupon: dict[str, Any]) -> dict[str, Any]:
        """A coupon as applied to a subscription; limited-period coupons get ``apply_till``."""
        entry: dict[str, Any] = {"coupon_id": coupon["id"], "applied_count": 0, "object": "coupon"}
        if coupon.get("duration_type") == "limited_period":
            entry["apply_till"] = add_period(
                self.store.now(),
                int(coupon.get("period") or 1),
                coupon.get("period_unit") or "month",
            )
        return entry

    def _contract_term(self, sub: dict[str, Any], p: dict[str, Any]) -> None:
        """``billing_cycles`` with ``contract_term[action_at_term_end]``: a contract term of that
        many billing cycles (Contract Terms enabled on the site); ``billing_cycles`` alone: the
        subscription is cancelled once they are billed (``remaining_billing_cycles``)."""
        cycles = _opt_int(p, "billing_cycles")
        if cycles is not None and cycles < 1:
            raise param_error("billing_cycles", "billing_cycles : should be at least 1")
        term = p.get("contract_term")
        renewal = _opt_int(p, "contract_term_billing_cycle_on_renewal")
        if isinstance(term, dict) and term:
            self.require_contract_terms()
            action = term.get("action_at_term_end") or "renew"
            if action not in ("renew", "evergreen", "cancel", "renew_once"):
                raise param_error(
                    "contract_term[action_at_term_end]",
                    "contract_term[action_at_term_end] : invalid value",
                )
            cycles = cycles or 12  # the site's default contract term length
            start = sub.get("start_date") or sub.get("started_at") or self.store.now()
            end = add_period(start, cycles * sub["billing_period"], sub["billing_period_unit"])
            mrr = sum(
                models.monthly(x["amount"], x["billing_period"], x["billing_period_unit"])
                for x in sub["subscription_items"]
            )
            months = (
                cycles * sub["billing_period"] * (12 if sub["billing_period_unit"] == "year" else 1)
            )
            sub["contract_term"] = {
                "id": random_id("ct_"),
                "status": "active",
                "contract_start": start,
                "contract_end": end,
                "billing_cycle": cycles,
                "action_at_term_end": action,
                "total_contract_value": int(round(mrr * months)),
                "cancellation_cutoff_period": _opt_int(
                    term, "cancellation_cutoff_period", "contract_term[cancellation_cutoff_period]"
                )
                or 0,
                "created_at": self.store.now(),
                "subscription_id": sub["id"],
                "remaining_billing_cycles": cycles,
                "object": "contract_term",
            }
            sub["contract_term_billing_cycle_on_renewal"] = renewal or cycles
        elif cycles is not None:
            sub["remaining_billing_cycles"] = cycles

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
        for disc in sub.get("discounts") or []:
            if disc["type"] == "percentage":
                amount = round(remaining * float(disc["percentage"]) / 100)
            else:
                amount = min(int(disc["amount"]), remaining)
            remaining -= amount
            discounts.append(
                {
                    "amount": amount,
                    "description": disc.get("invoice_name") or "Discount",
                    "entity_type": "document_level_discount",
                    "discount_type": disc["type"],
                    "entity_id": disc["id"],
                }
            )
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
        net = int(sub.get("net_term_days") or customer.get("net_term_days") or 0)
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
            "coupons": [self._coupon_entry(c) for c in coupons],
            "auto_collection": p.get("auto_collection") or None,
            "net_term_days": self.net_term_days(p),
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
        sub["discounts"] = self._discounts(p.get("discounts"), sub["currency_code"])
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
        self._contract_term(sub, p)

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
        ids = wanted_ids(call.params, "customer_id")
        source = (
            self.store.subscriptions.values()
            if ids is None
            else self.store.rows_of_customers("subscriptions", ids)
        )
        rows = [s for s in source if include_deleted or not s.get("deleted")]
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
            sub["coupons"] = kept + [self._coupon_entry(c) for c in coupons if c["id"] not in known]
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
        credit = p.get("credit_option_for_current_term_charges") or None
        if credit not in (None, "none", "prorate", "full"):
            raise param_error(
                "credit_option_for_current_term_charges",
                "credit_option_for_current_term_charges : invalid value",
            )
        term_option = p.get("contract_term_cancel_option") or None
        if term_option not in (
            None,
            "terminate_immediately",
            "end_of_contract_term",
            "specific_date",
            "end_of_subscription_billing_term",
        ):
            raise param_error(
                "contract_term_cancel_option", "contract_term_cancel_option : invalid value"
            )
        if p.get("cancel_reason_code"):
            sub["cancel_reason_code"] = p["cancel_reason_code"]
        term = sub.get("contract_term")
        if option == "immediately":
            sub.update(status="cancelled", cancelled_at=now, next_billing_at=None)
            sub["current_term_end"] = now
            if term and term["status"] == "active":
                term["status"] = "terminated"
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
