"""Builders and renderers for the Chargebee resources the emulator keeps.

Field names follow the 3.29.0 client's ``chargebee/models/<resource>/responses.py`` so typed
responses parse; amounts are integers in the currency's minor unit, times are unix seconds.
"""

from __future__ import annotations

from typing import Any

from .state import Store, add_period, public, random_id

BILLING_ADDRESS_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "company",
    "phone",
    "line1",
    "line2",
    "line3",
    "city",
    "state_code",
    "state",
    "country",
    "zip",
)

DECLINE_TEXT = {
    "card_declined": ("Your card was declined.", "gateway.general.decline"),
    "insufficient_funds": (
        "Your card has insufficient funds.",
        "gateway.transaction_processing.low_balance",
    ),
    "expired_card": ("Your card has expired.", "gateway.card.expired"),
    "do_not_honor": (
        "The card issuer declined the payment: do not honor.",
        "gateway.general.decline",
    ),
    "fraudulent": ("Your card was declined (suspected fraud).", "gateway.fraud.suspected"),
    "incorrect_cvc": ("Your card's security code is incorrect.", "gateway.card.invalid_cvc"),
    "processing_error": (
        "An error occurred while processing your card.",
        "gateway.transaction_processing.error",
    ),
    "lost_card": ("Your card was declined (reported lost).", "gateway.card.lost"),
    "stolen_card": ("Your card was declined (reported stolen).", "gateway.card.stolen"),
}


def decline_text(code: str) -> tuple[str, str]:
    return DECLINE_TEXT.get(code, (f"Your card was declined ({code}).", "gateway.general.decline"))


# --- customers and cards ------------------------------------------------------------------------


def new_customer(store: Store, id_: str, fields: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": id_,
        "first_name": None,
        "last_name": None,
        "email": None,
        "phone": None,
        "company": None,
        "auto_collection": "on",
        "net_term_days": 0,
        "allow_direct_debit": False,
        "taxability": "taxable",
        "pii_cleared": "active",
        "channel": "web",
        "card_status": "no_card",
        "preferred_currency_code": "USD",
        "promotional_credits": 0,
        "refundable_credits": 0,
        "excess_payments": 0,
        "unbilled_charges": 0,
        "deleted": False,
        "object": "customer",
    }
    c.update({k: v for k, v in fields.items() if v is not None})
    store.stamp(c, created=True)
    return c


def billing_address(fields: dict[str, Any]) -> dict[str, Any]:
    addr = {k: str(fields[k]) for k in BILLING_ADDRESS_FIELDS if fields.get(k) not in (None, "")}
    addr["validation_status"] = "not_validated"
    addr["object"] = "billing_address"
    return addr


def new_card(store: Store, customer: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    last4 = str(spec.get("last4") or "1111")
    now = store.now()
    exp_year = int(spec.get("expiry_year") or 2030)
    exp_month = int(spec.get("expiry_month") or 12)
    card = {
        "payment_source_id": random_id("pm_"),
        "status": "valid",
        "gateway": "stripe",
        "gateway_account_id": "gw_sandbox_stripe",
        "first_name": customer.get("first_name"),
        "last_name": customer.get("last_name"),
        "iin": str(spec.get("iin") or "411111"),
        "last4": last4,
        "card_type": spec.get("card_type") or "visa",
        "funding_type": "credit",
        "expiry_month": exp_month,
        "expiry_year": exp_year,
        "masked_number": "************" + last4,
        "customer_id": customer["id"],
        "created_at": now,
        "object": "card",
        "_decline_code": spec.get("decline_code"),
    }
    store.stamp(card)
    customer["card_status"] = "valid"
    customer["primary_payment_source_id"] = card["payment_source_id"]
    customer["payment_method"] = {
        "type": "card",
        "gateway": "stripe",
        "gateway_account_id": "gw_sandbox_stripe",
        "status": "valid",
        "reference_id": "cus_sandbox_" + customer["id"] + "/" + card["payment_source_id"],
        "object": "payment_method",
    }
    return card


# --- catalogue, subscriptions ---------------------------------------------------------------------


def new_item_price(store: Store, spec: dict[str, Any]) -> dict[str, Any]:
    ip = {
        "id": spec["id"],
        "item_id": spec.get("item_id") or spec["id"].rsplit("-", 2)[0],
        "name": spec.get("name") or spec["id"],
        "external_name": spec.get("name") or spec["id"],
        "status": "active",
        "pricing_model": spec.get("pricing_model") or "per_unit",
        "price": int(spec.get("price") or 0),
        "currency_code": spec.get("currency_code") or "USD",
        "period": int(spec.get("period") or 1),
        "period_unit": spec.get("period_unit") or "month",
        "item_type": spec.get("item_type") or "plan",
        "free_quantity": 0,
        "is_taxable": True,
        "channel": "web",
        "object": "item_price",
        # Chargebee keeps "metered" on the item; the sandbox has no items, so the price carries it
        "_metered": bool(spec.get("metered", False)),
    }
    if spec.get("metadata") is not None:
        ip["metadata"] = spec["metadata"]  # the item price's own JSON (expansion: plan limits)
    store.stamp(ip, created=True)
    return ip


def monthly(amount: int, period: int, unit: str) -> float:
    per_unit = {"day": 365 / 12, "week": 52 / 12, "month": 1.0, "year": 1 / 12}[unit]
    return amount * per_unit / max(period, 1)


def subscription_item(ip: dict[str, Any], quantity: int, sub: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_price_id": ip["id"],
        "item_type": ip["item_type"],
        "quantity": quantity,
        "unit_price": ip["price"],
        "amount": ip["price"] * quantity,
        "billing_period": ip["period"],
        "billing_period_unit": ip["period_unit"],
        "free_quantity": 0,
        "object": "subscription_item",
    }


def set_term(sub: dict[str, Any], start: int, period: int, unit: str, now: int) -> None:
    """Current term = the one containing ``now`` (seeded subscriptions may be old)."""
    term_start, term_end = start, add_period(start, period, unit)
    for _ in range(2000):
        if term_end > now:
            break
        term_start, term_end = term_end, add_period(term_end, period, unit)
    sub["current_term_start"] = term_start
    sub["current_term_end"] = term_end
    sub["next_billing_at"] = term_end if sub["status"] in ("active", "in_trial") else None


def render_subscription(store: Store, sub: dict[str, Any]) -> dict[str, Any]:
    out = public(sub)
    mrr = 0.0
    if sub["status"] in ("active", "non_renewing"):
        for item in sub["subscription_items"]:
            mrr += monthly(item["amount"], item["billing_period"], item["billing_period_unit"])
        now = store.now()
        # Discounts that count towards MRR (``included_in_mrr``) and have not run out, in the order
        # Chargebee applies them: subscription discounts, then coupons.
        for disc in sub.get("discounts") or []:
            if disc.get("included_in_mrr") is False or (disc.get("apply_till") or now + 1) <= now:
                continue
            if disc["type"] == "percentage":
                mrr -= mrr * float(disc["percentage"]) / 100
            else:
                mrr -= int(disc.get("amount") or 0)
        for applied in sub.get("coupons") or []:
            coupon = store.coupons.get(applied["coupon_id"])
            if not coupon or coupon.get("included_in_mrr") is False:
                continue
            if (applied.get("apply_till") or now + 1) <= now:
                continue
            if coupon["discount_type"] == "percentage":
                mrr -= mrr * float(coupon.get("discount_percentage") or 0) / 100
            else:
                mrr -= int(coupon.get("discount_amount") or 0)
    out["mrr"] = max(int(round(mrr)), 0)
    due = [
        inv
        for inv in store.invoices_of_subscription(sub["id"])
        if inv["status"] in ("payment_due", "not_paid")
    ]
    out["due_invoices_count"] = len(due)
    if due:
        out["due_since"] = min(inv["date"] for inv in due)
        out["total_dues"] = sum(inv["amount_due"] for inv in due)
    return out


# --- invoices and transactions ----------------------------------------------------------------------


def new_invoice(store: Store, spec: dict[str, Any]) -> dict[str, Any]:
    now = store.now()
    total = int(spec.get("total") or 0)
    status = spec.get("status") or "payment_due"
    if "amount_paid" in spec:
        amount_paid = int(spec["amount_paid"])
    elif status == "paid":
        amount_paid = total
    else:
        amount_paid = total - int(spec.get("amount_due", total))
    date = int(spec.get("date") or now)
    inv: dict[str, Any] = {
        "id": spec.get("id") or store.next_invoice_id(),
        "customer_id": spec["customer_id"],
        "subscription_id": spec.get("subscription_id"),
        "recurring": bool(spec.get("subscription_id")),
        "status": status,
        "price_type": "tax_exclusive",
        "date": date,
        "due_date": int(spec.get("due_date") or date),
        "net_term_days": int(spec.get("net_term_days") or 0),
        "exchange_rate": 1.0,
        "currency_code": spec.get("currency_code") or "USD",
        "base_currency_code": spec.get("currency_code") or "USD",
        "sub_total": int(spec.get("sub_total", total)),
        "tax": 0,
        "total": total,
        "amount_paid": amount_paid,
        "amount_adjusted": 0,
        "write_off_amount": 0,
        "credits_applied": 0,
        "amount_due": 0 if status in ("paid", "voided") else total - amount_paid,
        "paid_at": int(spec.get("paid_at") or date) if status == "paid" else None,
        "dunning_status": spec.get("dunning_status"),
        "next_retry_at": spec.get("next_retry_at"),
        "voided_at": now if status == "voided" else None,
        "first_invoice": bool(spec.get("first_invoice", False)),
        "has_advance_charges": False,
        "term_finalized": True,
        "is_gifted": False,
        "generated_at": date,
        "channel": "web",
        "deleted": False,
        "object": "invoice",
        "line_items": [],
        "discounts": [],
        "taxes": [],
        "linked_payments": [],
        "dunning_attempts": [],
        "applied_credits": [],
        "adjustment_credit_notes": [],
        "issued_credit_notes": [],
        "linked_orders": [],
        "created_at": date,
    }
    inv["amount_to_collect"] = inv["amount_due"]
    for li in spec.get("line_items") or [
        {"amount": total, "description": "Sandbox charge", "quantity": 1, "unit_amount": total}
    ]:
        amount = int(li.get("amount", 0))
        inv["line_items"].append(
            {
                "id": li.get("id") or random_id("li_"),
                "subscription_id": inv["subscription_id"],
                "date_from": int(li.get("date_from") or date),
                "date_to": int(li.get("date_to") or date),
                "unit_amount": int(li.get("unit_amount", amount)),
                "quantity": int(li.get("quantity", 1)),
                "amount": amount,
                "pricing_model": li.get("pricing_model") or "per_unit",
                "is_taxed": False,
                "tax_amount": 0,
                "discount_amount": int(li.get("discount_amount", 0)),
                "item_level_discount_amount": 0,
                "description": li.get("description") or "Sandbox charge",
                "entity_type": li.get("entity_type") or "plan_item_price",
                "entity_id": li.get("entity_id"),
                "customer_id": inv["customer_id"],
                "object": "line_item",
            }
        )
    for d in spec.get("discounts") or []:
        inv["discounts"].append({**d, "object": "discount"})
    store.stamp(inv, created=True)
    return inv


def new_transaction(
    store: Store,
    invoice: dict[str, Any],
    amount: int,
    status: str,
    card: dict[str, Any] | None,
    payment_method: str = "card",
    error_code: str | None = None,
    error_text: str | None = None,
    date: int | None = None,
    reference_number: str | None = None,
) -> dict[str, Any]:
    now = store.now()
    offline = payment_method != "card"
    txn: dict[str, Any] = {
        "id": random_id("txn_"),
        "customer_id": invoice["customer_id"],
        "subscription_id": invoice.get("subscription_id"),
        "payment_source_id": None if offline or not card else card["payment_source_id"],
        "payment_method": payment_method,
        "gateway": "not_applicable" if offline else "stripe",
        "gateway_account_id": None if offline else "gw_sandbox_stripe",
        "reference_number": reference_number,
        "type": "payment",
        "date": int(date or now),
        "currency_code": invoice["currency_code"],
        "exchange_rate": 1.0,
        "amount": amount,
        "id_at_gateway": None if offline else random_id("ch_"),
        "status": status,
        "initiator_type": "merchant",
        "error_code": error_code,
        "error_text": error_text,
        "amount_unused": 0,
        "masked_card_number": None if offline or not card else card["masked_number"],
        "last4": None if offline or not card else card["last4"],
        "iin": None if offline or not card else card["iin"],
        "fraud_reason": None,
        "deleted": False,
        "object": "transaction",
        "linked_invoices": [
            {
                "invoice_id": invoice["id"],
                "applied_amount": amount if status == "success" else 0,
                "applied_at": now,
                "invoice_date": invoice["date"],
                "invoice_total": invoice["total"],
                "invoice_status": invoice["status"],
            }
        ],
        "linked_credit_notes": [],
        "linked_refunds": [],
        "_invoice_id": invoice["id"],
    }
    if status == "failure" and error_code:
        _, cause = decline_text(error_code)
        txn["error_detail"] = {
            "error_category": "hard_decline"
            if error_code != "insufficient_funds"
            else "soft_decline",
            "error_code": error_code,
            "error_message": error_text,
            "decline_code": error_code,
            "decline_message": error_text,
            "error_cause_id": cause,
            "object": "gateway_error_detail",
        }
    store.stamp(txn, created=True)
    return txn


# --- comments, coupons, credits, events -------------------------------------------------------------


def new_comment(store: Store, entity_type: str, entity_id: str, notes: str) -> dict[str, Any]:
    c = {
        "id": random_id("cmt_"),
        "entity_type": entity_type,
        "entity_id": entity_id,
        "added_by": "sandbox_api_key",
        "notes": notes,
        "type": "user",
        "object": "comment",
    }
    return store.stamp(c, created=True)


def new_promotional_credit(
    store: Store, customer: dict[str, Any], amount: int, description: str, extra: dict[str, Any]
) -> dict[str, Any]:
    pc = {
        "id": random_id("pc_"),
        "customer_id": customer["id"],
        "type": "increment",
        "amount": amount,
        "amount_in_decimal": f"{amount / 100:.2f}",
        "currency_code": extra.get("currency_code") or customer.get("preferred_currency_code"),
        "description": description,
        "credit_type": extra.get("credit_type") or "general",
        "reference": extra.get("reference"),
        "closing_balance": customer["promotional_credits"],
        "done_by": "sandbox_api_key",
        "object": "promotional_credit",
    }
    return store.stamp(pc, created=True)


def new_event(
    store: Store,
    event_type: str,
    content: dict[str, Any],
    source: str,
    webhooks_configured: bool,
) -> dict[str, Any]:
    ev_id = random_id("ev_")
    status = "scheduled" if webhooks_configured else "not_configured"
    ev: dict[str, Any] = {
        "id": ev_id,
        "occurred_at": store.now(),
        "source": source,
        "object": "event",
        "api_version": "v2",
        "event_type": event_type,
        "webhook_status": status,
        "webhooks": [{"id": "whv2_sandbox", "webhook_status": status, "object": "webhook"}]
        if webhooks_configured
        else [],
        "content": {k: v for k, v in content.items() if v is not None},
        "_seq": store.next_seq(),
    }
    store.events[ev_id] = ev
    return ev
