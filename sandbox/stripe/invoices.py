"""Invoices, invoice items, payment attempts (payment intents, invoice payments) and discounts."""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import StripeError, card_error, decline_details, missing
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
from .store import Store, clean

INVOICE_PARAMS = {
    "account_tax_ids", "application_fee_amount", "auto_advance", "automatic_tax",
    "automatically_finalizes_at", "collection_method", "currency", "custom_fields", "customer",
    "days_until_due", "default_payment_method", "default_source", "default_tax_rates",
    "description", "discounts", "due_date", "effective_at", "footer", "from_invoice", "issuer",
    "metadata", "number", "on_behalf_of", "payment_settings", "pending_invoice_items_behavior",
    "rendering", "shipping_cost", "shipping_details", "statement_descriptor", "subscription",
    "transfer_data",
}  # fmt: skip
INVOICEITEM_PARAMS = {
    "amount", "currency", "customer", "description", "discountable", "discounts", "invoice",
    "metadata", "period", "price", "price_data", "pricing", "quantity", "subscription",
    "tax_behavior", "tax_code", "tax_rates", "unit_amount_decimal",
}  # fmt: skip


def add_interval(ts: int, interval: str, count: int = 1) -> int:
    dt = datetime.fromtimestamp(ts, UTC)
    if interval == "day":
        dt += timedelta(days=count)
    elif interval == "week":
        dt += timedelta(weeks=count)
    else:
        months = count * (12 if interval == "year" else 1)
        m = dt.month - 1 + months
        year, month = dt.year + m // 12, m % 12 + 1
        day = min(dt.day, calendar.monthrange(year, month)[1])
        dt = dt.replace(year=year, month=month, day=day)
    return int(dt.timestamp())


def money(amount: int, currency: str) -> str:
    sign = "-" if amount < 0 else ""
    sym = "$" if currency == "usd" else f"{currency.upper()} "
    return f"{sign}{sym}{abs(amount) / 100:.2f}"


class InvoiceMixin(Store):
    retry_schedule_days: tuple[int, ...] = (3, 5, 7)
    final_dunning_action: str = "cancel"

    def _discounts_from(self, params: dict[str, Any], **ref: Any) -> list[str]:
        """Discount objects for ``coupon=`` (legacy) and ``discounts[i][coupon]=``."""
        specs = []
        if params.get("coupon"):
            specs.append((params["coupon"], "coupon"))
        for i, d in enumerate(as_list(params, "discounts")):
            if not isinstance(d, dict):
                raise StripeError(400, "Invalid hash", param=f"discounts[{i}]")
            if d.get("promotion_code"):
                raise StripeError(
                    400,
                    "Promotion codes are not supported by this sandbox.",
                    param=f"discounts[{i}][promotion_code]",
                )
            if d.get("discount"):
                self.get(d["discount"], "discount", f"discounts[{i}][discount]")
                specs.append((d["discount"], "discount"))
                continue
            if not d.get("coupon"):
                raise missing(f"discounts[{i}][coupon]")
            specs.append((d["coupon"], f"discounts[{i}][coupon]"))
        out = []
        for ident, param in specs:
            if param == "discount":
                out.append(ident)
                continue
            coupon = self.redeem_coupon(ident, param)
            now = self.now()
            end = None
            if coupon["duration"] == "repeating":
                end = add_interval(now, "month", coupon["duration_in_months"])
            disc = {
                "id": self.new_id("di"),
                "object": "discount",
                "checkout_session": None,
                "customer": ref.get("customer"),
                "end": end,
                "invoice": ref.get("invoice"),
                "invoice_item": None,
                "promotion_code": None,
                "source": {"coupon": coupon["id"], "type": "coupon"},
                "start": now,
                "subscription": ref.get("subscription"),
                "subscription_item": None,
            }
            self.put(disc)
            out.append(disc["id"])
        return out

    def _customer(self, cus_id: Any, param: str = "customer") -> dict[str, Any]:
        if not cus_id:
            raise missing(param)
        return self.get(cus_id, "customer", param)

    def _product_name(self, price: dict[str, Any]) -> str:
        prod = self.find(price["product"], "product")
        return prod["name"] if prod else price["product"]

    def render_invoice(self, out: dict[str, Any], stored: dict[str, Any]) -> None:
        lines = clean(stored["_lines"])
        out["lines"] = {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{stored['id']}/lines",
        }

    def includable(self, obj: dict[str, Any], field: str) -> Any:
        if obj.get("object") == "invoice" and field == "payments":
            data = [self.render(self.objects[p]) for p in obj["_payments"]]
            return {
                "object": "list",
                "data": data,
                "has_more": False,
                "total_count": len(data),
                "url": f"/v1/invoice_payments?invoice={obj['id']}",
            }
        return None

    def _new_invoice(
        self,
        cus: dict[str, Any],
        *,
        billing_reason: str,
        sub: dict[str, Any] | None = None,
        collection_method: str = "charge_automatically",
        auto_advance: bool = True,
        currency: str | None = None,
        days_until_due: int | None = None,
        period: list[int] | None = None,
        inv_id: str | None = None,
    ) -> dict[str, Any]:
        now = self.now()
        inv = {
            "id": inv_id or self.new_id("in"),
            "object": "invoice",
            "account_country": "US",
            "account_name": "RevBridge Sandbox",
            "account_tax_ids": None,
            "amount_due": 0,
            "amount_overpaid": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": auto_advance,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": False,
                "liability": None,
                "provider": None,
                "status": None,
            },
            "automatically_finalizes_at": now + 3600 if auto_advance else None,
            "billing_reason": billing_reason,
            "collection_method": collection_method,
            "created": now,
            "currency": currency or (sub or {}).get("currency") or cus["currency"] or "usd",
            "custom_fields": None,
            "customer": cus["id"],
            "customer_address": cus["address"],
            "customer_email": cus["email"],
            "customer_name": cus["name"],
            "customer_phone": cus["phone"],
            "customer_shipping": cus["shipping"],
            "customer_tax_exempt": cus["tax_exempt"],
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": None,
            "discounts": [],
            "due_date": None,
            "effective_at": None,
            "ending_balance": None,
            "footer": None,
            "from_invoice": None,
            "hosted_invoice_url": None,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "livemode": False,
            "metadata": {},
            "next_payment_attempt": None,
            "number": None,
            "on_behalf_of": None,
            "parent": (
                {
                    "quote_details": None,
                    "subscription_details": {
                        "metadata": dict(sub["metadata"]),
                        "subscription": sub["id"],
                    },
                    "type": "subscription_details",
                }
                if sub
                else None
            ),
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": (period or [now, now])[1],
            "period_start": (period or [now, now])[0],
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": 0,
            "statement_descriptor": None,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "test_clock": None,
            "total": 0,
            "total_discount_amounts": [],
            "total_excluding_tax": 0,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": None,
            "_lines": [],
            "_payments": [],
            "_sub": sub["id"] if sub else None,
            "_pi": None,
            "_days_until_due": days_until_due,
        }
        return self.put(inv)

    def _subscription_invoice(
        self,
        sub: dict[str, Any],
        reason: str,
        lines: list[tuple[Any, ...]],
        period: list[int],
    ) -> dict[str, Any]:
        cus = self.get(sub["customer"], "customer", allow_deleted=True)
        inv = self._new_invoice(
            cus,
            billing_reason=reason,
            sub=sub,
            collection_method=sub["collection_method"],
            days_until_due=sub["days_until_due"],
            period=period,
        )
        for si, price, qty, amount, desc in lines:
            rec = price["recurring"] or {}
            if desc is None:
                per = rec.get("interval", "")
                desc = (
                    f"{qty or 0} × {self._product_name(price)} "
                    f"(at {money(price['unit_amount'] or 0, price['currency'])} / {per})"
                )
            inv["_lines"].append(
                {
                    "id": self.new_id("il"),
                    "object": "line_item",
                    "amount": amount,
                    "currency": price["currency"],
                    "description": desc,
                    "discount_amounts": [],
                    "discountable": True,
                    "discounts": [],
                    "invoice": inv["id"],
                    "livemode": False,
                    "metadata": dict(si["metadata"]),
                    "parent": {
                        "invoice_item_details": None,
                        "subscription_item_details": {
                            "invoice_item": None,
                            "proration": False,
                            "proration_details": {"credited_items": None},
                            "subscription": sub["id"],
                            "subscription_item": si["id"],
                        },
                        "type": "subscription_item_details",
                    },
                    "period": {"end": period[1], "start": period[0]},
                    "pretax_credit_amounts": [],
                    "pricing": {
                        "price_details": {"price": price["id"], "product": price["product"]},
                        "type": "price_details",
                        "unit_amount_decimal": price["unit_amount_decimal"],
                    },
                    "quantity": qty,
                    "subtotal": amount,
                    "taxes": [],
                }
            )
        for ii in self._pending_items(sub["customer"], sub["id"]):
            self._attach_item(inv, ii)
        now = self.now()
        active, keep = [], []
        for did in sub["discounts"]:
            disc = self.find(did, "discount")
            if disc is None or (disc["end"] is not None and disc["end"] <= now):
                continue  # ended: Stripe drops it from the subscription
            active.append(did)
            if self._coupon_of(did).get("duration") == "once":
                disc["end"] = now  # used up by this invoice
            else:
                keep.append(did)
        inv["discounts"] = active
        sub["discounts"] = keep
        sub["latest_invoice"] = inv["id"]
        self._recalc(inv)
        self.event("invoice.created", inv)
        return inv

    def _coupon_of(self, discount_id: str) -> dict[str, Any]:
        disc = self.find(discount_id, "discount")
        return (self.find(disc["source"]["coupon"], "coupon") if disc else None) or {}

    def _pending_items(self, customer: str, sub_id: str | None = None) -> list[dict[str, Any]]:
        items = [
            ii
            for ii in self.all("invoiceitem")
            if ii["customer"] == customer
            and ii["invoice"] is None
            and (sub_id is None or ii.get("_sub") == sub_id)
        ]
        return list(reversed(items))

    def _attach_item(self, inv: dict[str, Any], ii: dict[str, Any]) -> None:
        ii["invoice"] = inv["id"]
        inv["_lines"].append(
            {
                "id": self.new_id("il"),
                "object": "line_item",
                "amount": ii["amount"],
                "currency": ii["currency"],
                "description": ii["description"],
                "discount_amounts": [],
                "discountable": ii["discountable"],
                "discounts": [],
                "invoice": inv["id"],
                "livemode": False,
                "metadata": dict(ii["metadata"]),
                "parent": {
                    "invoice_item_details": {
                        "invoice_item": ii["id"],
                        "proration": ii["proration"],
                        "proration_details": {"credited_items": None},
                        "subscription": ii.get("_sub"),
                    },
                    "subscription_item_details": None,
                    "type": "invoice_item_details",
                },
                "period": dict(ii["period"]),
                "pretax_credit_amounts": [],
                "pricing": ii["pricing"],
                "quantity": ii["quantity"],
                "subtotal": ii["amount"],
                "taxes": [],
                "_ii": ii["id"],
            }
        )

    def _recalc(self, inv: dict[str, Any]) -> None:
        lines = inv["_lines"]
        subtotal = sum(line["amount"] for line in lines)
        base = max(0, sum(line["amount"] for line in lines if line["discountable"]))
        remaining = base
        totals = []
        for did in inv["discounts"]:
            coupon = self._coupon_of(did)
            if coupon.get("percent_off"):
                amt = round(base * coupon["percent_off"] / 100)
            else:
                amt = coupon.get("amount_off") or 0
            amt = max(0, min(amt, remaining))
            remaining -= amt
            totals.append({"amount": amt, "discount": did})
        total = subtotal - sum(t["amount"] for t in totals)
        inv.update(
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal,
            total=total,
            total_excluding_tax=total,
            total_discount_amounts=totals,
        )
        if inv["status"] == "draft":
            inv["amount_due"] = max(0, total)
            inv["amount_remaining"] = inv["amount_due"] - inv["amount_paid"]

    def create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, INVOICE_PARAMS)
        cus = self._customer(as_str(params, "customer"))
        sub = None
        if params.get("subscription"):
            sub = self.get(params["subscription"], "subscription", "subscription")
            if sub["customer"] != cus["id"]:
                raise StripeError(
                    400,
                    "The subscription does not belong to the customer.",
                    param="subscription",
                )
        collection = as_enum(
            params, "collection_method", ("charge_automatically", "send_invoice"),
            "charge_automatically",
        )  # fmt: skip
        days = as_int(params, "days_until_due")
        due_date = as_int(params, "due_date")
        if collection == "send_invoice" and days is None and due_date is None:
            raise missing("days_until_due")
        behavior = as_enum(
            params, "pending_invoice_items_behavior", ("exclude", "include"), "exclude"
        )
        currency = as_str(params, "currency")
        inv = self._new_invoice(
            cus,
            billing_reason="manual",
            sub=sub,
            collection_method=collection or "charge_automatically",
            auto_advance=bool(as_bool(params, "auto_advance", False)),
            currency=currency.lower() if currency else None,
            days_until_due=days,
        )
        inv["due_date"] = due_date
        inv["description"] = as_str(params, "description")
        inv["footer"] = as_str(params, "footer")
        inv["metadata"] = apply_metadata({}, params.get("metadata"))
        inv["discounts"] = self._discounts_from(params, customer=cus["id"], invoice=inv["id"])
        if behavior == "include":
            for ii in self._pending_items(cus["id"], sub["id"] if sub else None):
                self._attach_item(inv, ii)
        self._recalc(inv)
        self.event("invoice.created", inv)
        return inv

    def update_invoice(self, inv_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, INVOICE_PARAMS - {"customer", "subscription", "currency",
                                              "pending_invoice_items_behavior", "from_invoice"})  # fmt: skip
        inv = self.get(inv_id, "invoice")
        before = self.render(inv)
        if inv["status"] != "draft":
            extra = set(params) - {"metadata", "auto_advance", "expand", "description", "footer"}
            if extra:
                raise StripeError(
                    400,
                    f"Finalized invoices can't be updated in this way ({sorted(extra)[0]}).",
                    code="invoice_not_editable",
                    param=sorted(extra)[0],
                )
        if "auto_advance" in params:
            inv["auto_advance"] = bool(as_bool(params, "auto_advance", False))
        for key in ("description", "footer"):
            if key in params:
                inv[key] = as_str(params, key)
        if "collection_method" in params:
            inv["collection_method"] = as_enum(
                params, "collection_method", ("charge_automatically", "send_invoice")
            )
        if "days_until_due" in params:
            inv["_days_until_due"] = as_int(params, "days_until_due")
        if "due_date" in params:
            inv["due_date"] = as_int(params, "due_date")
        if "discounts" in params:
            inv["discounts"] = (
                []
                if params["discounts"] == ""
                else self._discounts_from(params, customer=inv["customer"], invoice=inv_id)
            )
            self._recalc(inv)
        inv["metadata"] = apply_metadata(inv["metadata"], params.get("metadata"))
        self._updated("invoice.updated", inv, before)
        return inv

    def delete_invoice(self, inv_id: str) -> dict[str, Any]:
        inv = self.get(inv_id, "invoice")
        if inv["status"] != "draft":
            raise StripeError(
                400,
                "You can only delete draft invoices. This invoice is "
                f"{inv['status']}; void it instead.",
                code="invoice_not_editable",
            )
        for line in inv["_lines"]:
            ii = self.find(line.get("_ii"), "invoiceitem")
            if ii:
                ii["invoice"] = None
        self.event("invoice.deleted", inv)
        inv["_deleted"] = True
        return inv

    def list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        sub = params.get("subscription")
        status = params.get("status")
        collection = params.get("collection_method")
        return self.page(
            self.all("invoice"),
            params,
            "/v1/invoices",
            lambda i: (
                (not customer or i["customer"] == customer)
                and (not sub or i["_sub"] == sub)
                and (not status or i["status"] == status)
                and (not collection or i["collection_method"] == collection)
            ),
        )

    def list_invoice_lines(self, inv_id: str, params: dict[str, Any]) -> dict[str, Any]:
        inv = self.get(inv_id, "invoice")
        return self.page(list(inv["_lines"]), params, f"/v1/invoices/{inv_id}/lines")

    def finalize(self, inv: dict[str, Any], auto_advance: bool | None = None) -> dict[str, Any]:
        if inv["status"] != "draft":
            raise StripeError(
                400,
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        cus = self.get(inv["customer"], "customer", allow_deleted=True)
        if auto_advance is not None:
            inv["auto_advance"] = auto_advance
        self._recalc(inv)
        now = self.now()
        starting = cus["balance"]
        combined = inv["total"] + starting
        ending = min(0, combined)
        inv["starting_balance"] = starting
        inv["ending_balance"] = ending
        if ending != starting and not cus.get("_deleted"):
            self.balance_txn(
                cus, ending - starting, "applied_to_invoice", invoice=inv["id"], emit=False
            )
        inv["amount_due"] = max(0, combined)
        inv["amount_remaining"] = inv["amount_due"] - inv["amount_paid"]
        inv["number"] = f"{cus['invoice_prefix']}-{cus['next_invoice_sequence']:04d}"
        cus["next_invoice_sequence"] += 1
        inv["status"] = "open"
        inv["effective_at"] = now
        inv["status_transitions"]["finalized_at"] = now
        inv["automatically_finalizes_at"] = None
        inv["hosted_invoice_url"] = f"https://invoice.stripe.com/i/acct_sandbox/test_{inv['id']}"
        inv["invoice_pdf"] = f"https://pay.stripe.com/invoice/acct_sandbox/test_{inv['id']}/pdf"
        if inv["collection_method"] == "send_invoice":
            days = inv["_days_until_due"]
            inv["due_date"] = inv["due_date"] or now + (days if days is not None else 30) * 86400
        elif inv["auto_advance"] and inv["amount_due"] > 0:
            inv["next_payment_attempt"] = now + 3600
        self.event("invoice.finalized", inv)
        if inv["amount_remaining"] <= 0:
            self._mark_paid(inv, succeeded_event=True)
        return inv

    def finalize_invoice(self, inv_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"auto_advance"})
        inv = self.get(inv_id, "invoice")
        return self.finalize(inv, as_bool(params, "auto_advance"))

    def _mark_paid(self, inv: dict[str, Any], *, succeeded_event: bool) -> None:
        now = self.now()
        inv["status"] = "paid"
        inv["amount_remaining"] = 0
        inv["next_payment_attempt"] = None
        inv["status_transitions"]["paid_at"] = now
        inv["webhooks_delivered_at"] = inv["webhooks_delivered_at"] or now
        self.event("invoice.paid", inv)
        if succeeded_event:
            self.event("invoice.payment_succeeded", inv)
        cus = self.find(inv["customer"], "customer")
        if cus and not any(
            i["status"] == "open" and i["attempt_count"] > 0 and i["customer"] == cus["id"]
            for i in self.all("invoice")
        ):
            cus["delinquent"] = False
        sub = self.find(inv["_sub"], "subscription")
        if sub and sub["status"] in ("incomplete", "past_due", "unpaid"):
            still_open = [
                i
                for i in self.all("invoice")
                if i["_sub"] == sub["id"] and i["status"] == "open" and i["amount_remaining"] > 0
            ]
            if not still_open:
                self._set_status(sub, "active")

    def pay_invoice(self, inv_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"forgive", "mandate", "off_session", "paid_out_of_band",
                             "payment_method", "source"})  # fmt: skip
        inv = self.get(inv_id, "invoice")
        if inv["status"] == "draft":
            self.finalize(inv)
            if inv["status"] == "paid":
                return inv
        if inv["status"] == "paid":
            raise StripeError(400, "Invoice is already paid", code="invoice_already_paid")
        if inv["status"] == "void":
            raise StripeError(
                400, "This invoice is void and can't be paid.", code="invoice_not_editable"
            )
        if as_bool(params, "paid_out_of_band", False):
            inv["amount_paid"] += inv["amount_remaining"]
            self._mark_paid(inv, succeeded_event=False)
            return inv
        pm = as_str(params, "payment_method")
        if pm:
            self.get(pm, "payment_method", "payment_method")
        ok, err = self.attempt_payment(inv)
        if not ok and err:
            raise err
        return inv

    def _next_attempt(self, inv: dict[str, Any]) -> int | None:
        if (
            inv["collection_method"] != "charge_automatically"
            or not inv["auto_advance"]
            or inv["billing_reason"] == "subscription_create"
        ):
            return None
        n = inv["attempt_count"]
        if n > len(self.retry_schedule_days):
            return None
        return self.now() + self.retry_schedule_days[n - 1] * 86400

    def _payment_intent(self, inv: dict[str, Any]) -> dict[str, Any]:
        pi = self.find(inv["_pi"], "payment_intent")
        if pi and pi["status"] not in ("succeeded", "canceled"):
            pi["amount"] = inv["amount_remaining"]
            return pi
        now = self.now()
        pi_id = self.new_id("pi")
        descriptions = {
            "subscription_create": "Subscription creation",
            "subscription_cycle": "Subscription cycle",
            "subscription_update": "Subscription update",
        }
        pi = {
            "id": pi_id,
            "object": "payment_intent",
            "amount": inv["amount_remaining"],
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{pi_id}_secret_{self.new_id('s', 25)[2:]}",
            "confirmation_method": "automatic",
            "created": now,
            "currency": inv["currency"],
            "customer": inv["customer"],
            "description": descriptions.get(inv["billing_reason"]),
            "excluded_payment_method_types": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": None,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                }
            },
            "payment_method_types": ["card"],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        self.put(pi)
        inpay = {
            "id": self.new_id("inpay"),
            "object": "invoice_payment",
            "amount_paid": None,
            "amount_requested": inv["amount_remaining"],
            "created": now,
            "currency": inv["currency"],
            "invoice": inv["id"],
            "is_default": True,
            "livemode": False,
            "payment": {"payment_intent": pi_id, "type": "payment_intent"},
            "status": "open",
            "status_transitions": {"canceled_at": None, "paid_at": None},
        }
        for old in inv["_payments"]:
            self.objects[old]["is_default"] = False
        self.put(inpay)
        inv["_payments"].append(inpay["id"])
        inv["_pi"] = pi_id
        return pi

    def attempt_payment(
        self, inv: dict[str, Any], *, decline: str | None = None, automatic: bool = False
    ) -> tuple[bool, StripeError | None]:
        """Charge the customer's default card for the invoice's remaining amount."""
        cus = self.get(inv["customer"], "customer", allow_deleted=True)
        if inv["status"] not in ("open", "uncollectible"):
            raise StripeError(400, f"Invoice is {inv['status']}; it can't be paid.")
        pi = self._payment_intent(inv)
        inpay = self.objects[inv["_payments"][-1]]
        pm_id = cus["invoice_settings"]["default_payment_method"]
        decline = decline or cus.get("_decline")
        inv["attempt_count"] += 1
        inv["attempted"] = True
        sub = self.find(inv["_sub"], "subscription")
        if decline:
            code, message = decline_details(decline)
            pm = self.find(pm_id, "payment_method")
            pi["status"] = "requires_payment_method"
            pi["payment_method"] = None
            pi["last_payment_error"] = {
                "type": "card_error",
                "code": code,
                "decline_code": decline,
                "doc_url": f"https://stripe.com/docs/error-codes/{code}",
                "message": message,
                "payment_method": self.render(pm) if pm else None,
            }
            inv["next_payment_attempt"] = self._next_attempt(inv)
            cus["delinquent"] = True
            self.event("payment_intent.payment_failed", pi)
            self.event("invoice.payment_failed", inv)
            if sub and inv["billing_reason"] != "subscription_create":
                exhausted = (
                    inv["next_payment_attempt"] is None
                    and inv["auto_advance"]
                    and inv["attempt_count"] > len(self.retry_schedule_days)
                )
                if exhausted and automatic and self.final_dunning_action == "cancel":
                    self.cancel_subscription_now(sub, reason="payment_failed")
                elif exhausted and automatic and self.final_dunning_action == "unpaid":
                    self._set_status(sub, "unpaid")
                elif sub["status"] in ("active", "trialing"):
                    self._set_status(sub, "past_due")
            return False, card_error(decline, extra={"payment_intent": self.render(pi)})
        now = self.now()
        amount = inv["amount_remaining"]
        pi.update(
            status="succeeded",
            amount_received=amount,
            payment_method=pm_id,
            last_payment_error=None,
        )
        inpay.update(status="paid", amount_paid=amount)
        inpay["status_transitions"]["paid_at"] = now
        inv["amount_paid"] += amount
        self.event("payment_intent.succeeded", pi)
        self._mark_paid(inv, succeeded_event=True)
        return True, None

    def void_invoice(self, inv_id: str) -> dict[str, Any]:
        inv = self.get(inv_id, "invoice")
        if inv["status"] not in ("open", "uncollectible"):
            raise StripeError(
                400,
                f"You can only void an open or uncollectible invoice. This invoice is "
                f"{inv['status']}.",
                code="invoice_not_editable",
            )
        now = self.now()
        inv["status"] = "void"
        inv["status_transitions"]["voided_at"] = now
        inv["next_payment_attempt"] = None
        pi = self.find(inv["_pi"], "payment_intent")
        if pi and pi["status"] != "succeeded":
            pi.update(status="canceled", canceled_at=now, cancellation_reason="void_invoice")
            inpay = self.objects[inv["_payments"][-1]]
            inpay["status"] = "canceled"
            inpay["status_transitions"]["canceled_at"] = now
        cus = self.find(inv["customer"], "customer")
        if cus and inv["ending_balance"] is not None:
            delta = inv["starting_balance"] - inv["ending_balance"]
            if delta:
                self.balance_txn(
                    cus, delta, "unapplied_from_invoice", invoice=inv["id"], emit=False
                )
        self.event("invoice.voided", inv)
        return inv

    def mark_uncollectible(self, inv_id: str) -> dict[str, Any]:
        inv = self.get(inv_id, "invoice")
        if inv["status"] != "open":
            raise StripeError(
                400,
                "You can only mark an open invoice as uncollectible.",
                code="invoice_not_editable",
            )
        inv["status"] = "uncollectible"
        inv["status_transitions"]["marked_uncollectible_at"] = self.now()
        inv["next_payment_attempt"] = None
        self.event("invoice.marked_uncollectible", inv)
        return inv

    def create_invoiceitem(
        self, params: dict[str, Any], *, internal: bool = False
    ) -> dict[str, Any]:
        if not internal:
            check_known(params, INVOICEITEM_PARAMS)
        cus = self._customer(as_str(params, "customer"))
        inv = None
        if params.get("invoice"):
            inv = self.get(params["invoice"], "invoice", "invoice")
            if inv["status"] != "draft":
                raise StripeError(
                    400,
                    f"You can only add invoice items to draft invoices. Invoice {inv['id']} is "
                    f"{inv['status']}.",
                    code="invoice_not_editable",
                    param="invoice",
                )
            if inv["customer"] != cus["id"]:
                raise StripeError(
                    400, "The invoice does not belong to the customer.", param="invoice"
                )
        sub = None
        if params.get("subscription"):
            sub = self.get(params["subscription"], "subscription", "subscription")
        quantity = as_int(params, "quantity", 1) or 1
        pricing = as_dict(params, "pricing")
        price_id = params.get("price") or pricing.get("price")
        price = None
        if price_id:
            price = self.get(price_id, "price", "pricing[price]")
        elif params.get("price_data"):
            price = self.create_price(as_dict(params, "price_data"), seeded=True)
        if price is not None:
            amount = (price["unit_amount"] or 0) * quantity
            currency = price["currency"]
            unit_dec = price["unit_amount_decimal"]
        else:
            if params.get("amount") not in (None, ""):
                amount = as_int(params, "amount") or 0
                unit_dec = str(amount // quantity) if quantity else str(amount)
            elif params.get("unit_amount_decimal"):
                unit_dec = str(params["unit_amount_decimal"])
                amount = round(float(unit_dec) * quantity)
            else:
                raise missing("amount")
            currency = as_str(params, "currency") or (inv or {}).get("currency") or cus["currency"]
            if not currency:
                raise missing("currency")
        currency = currency.lower()
        now = self.now()
        period = as_dict(params, "period")
        ii = {
            "id": self.new_id("ii"),
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": cus["id"],
            "date": now,
            "description": as_str(params, "description")
            or (self._product_name(price) if price else None),
            "discountable": bool(as_bool(params, "discountable", amount >= 0)),
            "discounts": [],
            "invoice": None,
            "livemode": False,
            "metadata": apply_metadata({}, params.get("metadata")),
            "net_amount": amount,
            "parent": (
                {
                    "subscription_details": {"subscription": sub["id"]},
                    "type": "subscription_details",
                }
                if sub
                else None
            ),
            "period": {
                "end": as_int(period, "end", now),
                "start": as_int(period, "start", now),
            },
            "pricing": {
                "price_details": (
                    {"price": price["id"], "product": price["product"]} if price else None
                ),
                "type": "price_details",
                "unit_amount_decimal": unit_dec,
            },
            "proration": False,
            "quantity": quantity,
            "tax_rates": [],
            "test_clock": None,
            "_sub": sub["id"] if sub else None,
        }
        self.put(ii)
        cus["currency"] = cus["currency"] or currency
        if inv is not None:
            self._attach_item(inv, ii)
            self._recalc(inv)
        self.event("invoiceitem.created", ii)
        return ii

    def update_invoiceitem(self, ii_id: str, params: dict[str, Any]) -> dict[str, Any]:
        check_known(params, {"amount", "description", "discountable", "metadata", "period",
                             "quantity", "discounts", "tax_rates"})  # fmt: skip
        ii = self.get(ii_id, "invoiceitem")
        inv = self.find(ii["invoice"], "invoice")
        if inv and inv["status"] != "draft":
            raise StripeError(
                400,
                "Invoice items on finalized invoices can't be updated.",
                code="invoice_not_editable",
            )
        if "amount" in params:
            ii["amount"] = ii["net_amount"] = as_int(params, "amount")
        if "description" in params:
            ii["description"] = as_str(params, "description")
        if "discountable" in params:
            ii["discountable"] = as_bool(params, "discountable")
        ii["metadata"] = apply_metadata(ii["metadata"], params.get("metadata"))
        if inv:
            for line in inv["_lines"]:
                if line.get("_ii") == ii_id:
                    line.update(
                        amount=ii["amount"],
                        subtotal=ii["amount"],
                        description=ii["description"],
                        discountable=ii["discountable"],
                        metadata=dict(ii["metadata"]),
                    )
            self._recalc(inv)
        return ii

    def delete_invoiceitem(self, ii_id: str) -> dict[str, Any]:
        ii = self.get(ii_id, "invoiceitem")
        inv = self.find(ii["invoice"], "invoice")
        if inv and inv["status"] != "draft":
            raise StripeError(
                400,
                "Invoice items on finalized invoices can't be deleted.",
                code="invoice_not_editable",
            )
        if inv:
            inv["_lines"] = [line for line in inv["_lines"] if line.get("_ii") != ii_id]
            self._recalc(inv)
        ii["_deleted"] = True
        return ii

    def list_invoiceitems(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        invoice = params.get("invoice")
        pending = as_bool(params, "pending")
        return self.page(
            self.all("invoiceitem"),
            params,
            "/v1/invoiceitems",
            lambda ii: (
                (not customer or ii["customer"] == customer)
                and (not invoice or ii["invoice"] == invoice)
                and (pending is None or (ii["invoice"] is None) == pending)
            ),
        )

    def list_payment_intents(self, params: dict[str, Any]) -> dict[str, Any]:
        customer = params.get("customer")
        return self.page(
            self.all("payment_intent"),
            params,
            "/v1/payment_intents",
            lambda pi: not customer or pi["customer"] == customer,
        )

    def list_invoice_payments(self, params: dict[str, Any]) -> dict[str, Any]:
        invoice = params.get("invoice")
        status = params.get("status")
        payment = as_dict(params, "payment")
        return self.page(
            self.all("invoice_payment"),
            params,
            "/v1/invoice_payments",
            lambda p: (
                (not invoice or p["invoice"] == invoice)
                and (not status or p["status"] == status)
                and (
                    not payment.get("payment_intent")
                    or p["payment"]["payment_intent"] == payment["payment_intent"]
                )
            ),
        )
