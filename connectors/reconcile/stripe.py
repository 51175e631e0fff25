"""Stripe's side of the reconciliation: the account's lists walked once each, 100 objects a
request — customers, prices (to map a price back to its lookup key), subscriptions (all
statuses, discounts expanded), invoices (lines included, payments expanded) and payment
intents — instead of one list per customer (Stripe's lists filter by one customer at a time).

Payments are ``invoice_payment`` objects (current API versions): a payment intent applied to an
invoice. A succeeded payment intent that no invoice payment names was taken without being
applied to an invoice (the reconciliation's "unapplied payment"); an invoice paid out of band
has no payment at all ("paid without a payment").
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from typing import Any

import stripe

from connectors.reconcile.views import BillingSide
from connectors.stripe import StripeBilling, _subscription, classify
from domain.reconcile import LIVE, Customer, Invoice, Line, Payment, Sub

_STATUS = {"paid": "paid", "void": "void"}


class StripeBook:
    name = "stripe"

    def __init__(self, billing: StripeBilling) -> None:
        self.billing = billing

    def _walk(self, service: Any, params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        try:
            return [o.to_dict() for o in service.list({**params, "limit": 100}).auto_paging_iter()]
        except stripe.StripeError as exc:
            raise classify(exc, what) from None

    def read_billing(self, since: date | None, product_of: dict[str, str]) -> BillingSide:
        v1 = self.billing.client.v1
        now = time.time()
        created = {"created": {"gte": _ts(since)}} if since else {}
        customers = self._walk(v1.customers, {}, "customers")
        prices = self._walk(v1.prices, {}, "prices")
        lookup = {p["id"]: p.get("lookup_key") or p["id"] for p in prices}

        def code(price: Any) -> str:
            pid = price.get("id") if isinstance(price, dict) else price
            ref = lookup.get(str(pid), str(pid))
            return product_of.get(ref) or product_of.get(str(pid)) or ref

        raw_subs = self._walk(
            v1.subscriptions,
            {"status": "all", "expand": ["data.discounts.source.coupon"]},
            "subscriptions",
        )
        subs = []
        for s in raw_subs:
            norm = _subscription(s, now)
            items = (s.get("items") or {}).get("data") or []
            end = norm.current_term_end
            subs.append(
                Sub(
                    id=norm.id,
                    customer_id=norm.customer_id,
                    status=norm.status,
                    lines=[
                        Line(
                            product=code(i.get("price") or {}),
                            quantity=int(i.get("quantity") or 1),
                            unit_price=int((i.get("price") or {}).get("unit_amount") or 0),
                            discount_percent=norm.discount_percent,
                        )
                        for i in items
                    ],
                    mrr=norm.mrr,
                    plan=norm.plan or None,  # as the account sync writes it
                    renewal=end.date() if end else None,
                )
            )
        invoices = self._walk(v1.invoices, {"expand": ["data.payments"], **created}, "invoices")
        out_invoices, applied_by_payment = [], {}
        paid_intents: set[str] = set()
        for inv in invoices:
            if inv.get("status") == "draft":
                continue
            out_invoices.append(self._invoice(inv, code))
            for ip in (inv.get("payments") or {}).get("data") or []:
                if ip.get("status") != "paid":
                    continue
                pi = (ip.get("payment") or {}).get("payment_intent")
                pid = str(pi.get("id") if isinstance(pi, dict) else pi or ip["id"])
                paid_intents.add(pid)
                entry = applied_by_payment.setdefault(
                    pid, {"customer": inv.get("customer"), "amount": 0, "applied": {}}
                )
                amount = int(ip.get("amount_paid") or 0)
                entry["amount"] += amount
                entry["applied"][inv["id"]] = entry["applied"].get(inv["id"], 0) + amount
        payments = [
            Payment(
                id=pid, customer_id=str(e["customer"]), amount=e["amount"], applied=e["applied"]
            )
            for pid, e in applied_by_payment.items()
        ]
        for pi in self._walk(v1.payment_intents, dict(created), "payment intents"):
            if pi.get("status") == "succeeded" and pi["id"] not in paid_intents:
                payments.append(
                    Payment(
                        id=pi["id"],
                        customer_id=str(pi.get("customer") or ""),
                        amount=int(pi.get("amount_received") or 0),
                    )
                )
        live = {s.customer_id for s in subs if s.status in LIVE}
        return BillingSide(
            customers=[
                Customer(
                    id=c["id"],
                    crm_account_id=(c.get("metadata") or {}).get("crm_account_id") or None,
                    active=c["id"] in live,
                )
                for c in customers
                if not c.get("deleted")
            ],
            subscriptions=subs,
            invoices=out_invoices,
            payments=payments,
        )

    def _invoice(self, inv: dict[str, Any], code: Any) -> Invoice:
        lines_obj = inv.get("lines") or {}
        lines = list(lines_obj.get("data") or [])
        if lines_obj.get("has_more"):  # more than the first page of lines: walk them
            service = self.billing.client.v1.invoices.line_items
            try:
                lines = [
                    o.to_dict() for o in service.list(inv["id"], {"limit": 100}).auto_paging_iter()
                ]
            except stripe.StripeError as exc:
                raise classify(exc, "invoice lines") from None
        out = []
        for ln in lines:
            pricing = (ln.get("pricing") or {}).get("price_details") or {}
            price = pricing.get("price") or ln.get("price")
            qty = int(ln.get("quantity") or 1)
            out.append(
                Line(
                    product=code(price) if price else f"adhoc:{ln.get('description')}",
                    quantity=qty,
                    unit_price=int(ln.get("amount") or 0) // max(qty, 1),
                )
            )
        parent = (inv.get("parent") or {}).get("subscription_details") or {}
        sub = parent.get("subscription") or inv.get("subscription")
        return Invoice(
            id=inv["id"],
            customer_id=str(inv.get("customer") or ""),
            subscription_id=str(sub.get("id") if isinstance(sub, dict) else sub) if sub else None,
            status=_STATUS.get(inv.get("status") or "", "open"),
            total=int(inv.get("total") or 0),
            lines=out,
        )

    def urls(self) -> dict[str, str]:
        base = "https://dashboard.stripe.com/" + ("test/" if self.billing.mode != "live" else "")
        return {
            "customer": base + "customers/{id}",
            "subscription": base + "subscriptions/{id}",
            "invoice": base + "invoices/{id}",
            "payment": base + "payments/{id}",
        }


def _ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())
