"""Scenario seeding for ``POST /_sandbox/seed`` and :meth:`ChargebeeEmulator.seed`.

Seeding writes state directly: it records no events and sends no webhooks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import models
from .errors import ChargebeeError
from .handlers import Call
from .state import random_id

if TYPE_CHECKING:
    from .emulator import ChargebeeEmulator

_CUSTOMER_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "company",
    "phone",
    "auto_collection",
    "net_term_days",
    "locale",
    "preferred_currency_code",
    "meta_data",
    "promotional_credits",
    "created_at",
)


def _form_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, dict):
        return {k: _form_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_form_value(x) for x in v]
    return v


def seed(em: ChargebeeEmulator, data: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, list[str]] = {
        "item_prices": [],
        "coupons": [],
        "customers": [],
        "subscriptions": [],
        "invoices": [],
        "transactions": [],
    }
    with em.lock:
        store = em.store
        now = store.now()
        for spec in data.get("custom_fields") or []:
            if not str(spec.get("api_name", "")).startswith("cf_"):
                raise ValueError(f"seed custom field: api_name must start with cf_: {spec!r}")
            store.custom_fields[spec["api_name"]] = {"entity_type": "customer", **spec}

        for spec in data.get("item_prices") or []:
            ip = models.new_item_price(store, spec)
            store.item_prices[ip["id"]] = ip
            out["item_prices"].append(ip["id"])

        for spec in data.get("coupons") or []:
            params = {k: _form_value(v) for k, v in spec.items() if k != "meta_data"}
            params.setdefault("apply_on", "invoice_amount")
            try:
                coupon = em.api.create_coupon(Call(params=params))["coupon"]
            except ChargebeeError as exc:
                raise ValueError(f"seed coupon {spec.get('id')}: {exc.message}") from None
            for ev_id in [
                k for k, e in store.events.items() if e["event_type"] == "coupon_created"
            ]:
                store.events.pop(ev_id)
                store.events_dropped += 1
            if "meta_data" in spec:
                store.coupons[coupon["id"]]["meta_data"] = spec["meta_data"]
            out["coupons"].append(coupon["id"])

        for spec in data.get("customers") or []:
            id_ = spec.get("id") or random_id()
            if id_ in store.customers:
                raise ValueError(f"seed: customer {id_} already exists")
            fields = {k: spec[k] for k in _CUSTOMER_FIELDS if k in spec}
            if isinstance(spec.get("billing_address"), dict):
                fields["billing_address"] = models.billing_address(spec["billing_address"])
            c = models.new_customer(store, id_, fields)
            store.customers[id_] = c
            card = spec.get("card", {} if em.default_card else None)
            if card is not None:
                store.cards[id_] = models.new_card(store, c, card)
                if card.get("decline_code") == "expired_card":
                    store.cards[id_]["status"] = c["card_status"] = "expired"
            out["customers"].append(id_)

        for spec in data.get("subscriptions") or []:
            sub = _seed_subscription(em, spec, now)
            out["subscriptions"].append(sub["id"])

        for spec in data.get("invoices") or []:
            if spec.get("customer_id") not in store.customers:
                raise ValueError(f"seed invoice: unknown customer {spec.get('customer_id')!r}")
            if spec.get("id") in store.invoices:
                raise ValueError(f"seed: invoice {spec['id']} already exists")
            spec = dict(spec)
            sub = store.subscriptions.get(spec.get("subscription_id") or "")
            if spec.get("subscription_id") and sub is None:
                raise ValueError(f"seed invoice: unknown subscription {spec['subscription_id']!r}")
            if sub is not None:
                spec.setdefault("currency_code", sub["currency_code"])
            inv = models.new_invoice(store, spec)
            store.invoices[inv["id"]] = inv
            out["invoices"].append(inv["id"])

        for spec in data.get("transactions") or []:
            txn = _seed_transaction(em, spec, now)
            out["transactions"].append(txn["id"])

        from .credit_notes import new_credit_note

        for spec in data.get("credit_notes") or []:
            cn = new_credit_note(store, spec)
            store.credit_notes[cn["id"]] = cn
            out.setdefault("credit_notes", []).append(cn["id"])
    return out


def _seed_subscription(em: ChargebeeEmulator, spec: Mapping[str, Any], now: int) -> dict[str, Any]:
    store = em.store
    customer_id = spec.get("customer_id")
    if customer_id not in store.customers:
        raise ValueError(f"seed subscription: unknown customer {customer_id!r}")
    id_ = spec.get("id") or random_id()
    if id_ in store.subscriptions:
        raise ValueError(f"seed: subscription {id_} already exists")
    status = spec.get("status") or "active"
    started_at = int(spec.get("started_at") or now)
    sub: dict[str, Any] = {
        "id": id_,
        "customer_id": customer_id,
        "status": status,
        "subscription_items": [],
        "coupons": [
            {"coupon_id": cid, "applied_count": 0, "object": "coupon"}
            for cid in spec.get("coupon_ids") or []
        ],
        "auto_collection": spec.get("auto_collection"),
        "has_scheduled_changes": False,
        "has_scheduled_advance_invoices": False,
        "channel": "web",
        "deleted": False,
        "object": "subscription",
        "created_at": int(spec.get("created_at") or started_at),
        "started_at": started_at,
        "activated_at": started_at if status != "in_trial" else None,
        "meta_data": spec.get("meta_data"),
    }
    for cid in spec.get("coupon_ids") or []:
        if cid not in store.coupons:
            raise ValueError(f"seed subscription {id_}: unknown coupon {cid!r}")
    items = []
    for item in spec.get("items") or spec.get("subscription_items") or []:
        ip = store.item_prices.get(item.get("item_price_id"))
        if ip is None:
            raise ValueError(
                f"seed subscription {id_}: unknown item price {item.get('item_price_id')!r}"
            )
        items.append((ip, {k: _form_value(v) for k, v in item.items()}))
    try:
        em.api.apply_items(sub, items, replace=True)
    except ChargebeeError as exc:
        raise ValueError(f"seed subscription {id_}: {exc.message}") from None
    if status == "in_trial":
        trial_end = int(spec.get("trial_end") or now + 14 * 86400)
        sub.update(trial_start=started_at, trial_end=trial_end)
        sub.update(
            current_term_start=started_at, current_term_end=trial_end, next_billing_at=trial_end
        )
    else:
        models.set_term(sub, started_at, sub["billing_period"], sub["billing_period_unit"], now)
    if status == "cancelled":
        sub["cancelled_at"] = int(spec.get("cancelled_at") or now)
        sub["next_billing_at"] = None
    elif status == "non_renewing":
        sub["cancelled_at"] = int(spec.get("cancelled_at") or sub["current_term_end"])
    store.stamp(sub, created=True)
    store.subscriptions[id_] = sub
    return sub


def _seed_transaction(em: ChargebeeEmulator, spec: Mapping[str, Any], now: int) -> dict[str, Any]:
    """Payment history: a transaction linked to an invoice; the invoice itself is left as seeded."""
    store = em.store
    inv = store.invoices.get(spec.get("invoice_id") or "")
    if inv is None:
        raise ValueError(f"seed transaction: unknown invoice {spec.get('invoice_id')!r}")
    status = spec.get("status") or "success"
    if status not in ("success", "failure"):
        raise ValueError(f"seed transaction: status must be success or failure, not {status!r}")
    code = spec.get("error_code") or ("card_declined" if status == "failure" else None)
    txn = models.new_transaction(
        store,
        inv,
        int(spec.get("amount") or inv["total"]),
        status,
        store.cards.get(inv["customer_id"]),
        payment_method=spec.get("payment_method") or "card",
        error_code=code,
        error_text=spec.get("error_text") or (models.decline_text(code)[0] if code else None),
        date=int(spec.get("date") or now),
    )
    if spec.get("id"):
        txn["id"] = spec["id"]
    store.transactions[txn["id"]] = txn
    return txn
