"""Chargebee's side of the reconciliation: four list endpoints walked page by page (100 rows a
request, ``next_offset``) — customers, subscriptions, invoices (their line items come with each
invoice) and payment transactions (each with the invoices it was applied to) — so a book of N
customers costs about 4·N/100 requests, never one per record."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any

from connectors.chargebee import ChargebeeBilling
from connectors.reconcile.views import BillingSide
from domain.reconcile import LIVE, Customer, Invoice, Line, Payment, Sub

PAGE = 100
#: a safety bound on one list walk (10 million rows): a cursor that never ends is a bug, not a book
MAX_PAGES = 100_000
_PAID = {"paid": "paid", "voided": "void"}


class ChargebeeBook:
    name = "chargebee"

    def __init__(self, billing: ChargebeeBilling) -> None:
        self.billing = billing

    def _all(self, resource: Any, params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        key = what.rstrip("s")
        return [
            getattr(e, key).raw_data
            for e in self.billing._pages(
                lambda offset: resource.list(
                    {**params, "limit": PAGE, **({"offset": offset} if offset else {})}
                ),
                what,
                max_pages=MAX_PAGES,
            )
        ]

    def read_billing(self, since: date | None, product_of: dict[str, str]) -> BillingSide:
        cb = self.billing.client
        dated = {"date": {"after": _ts(since) - 1}} if since else {}
        customers = self._all(cb.Customer, {}, "customers")
        subs = self._all(cb.Subscription, {}, "subscriptions")
        invoices = self._all(cb.Invoice, dict(dated), "invoices")
        txns = self._all(
            cb.Transaction, {"type": {"is": "payment"}, "status": {"is": "success"}, **dated},
            "transactions",
        )  # fmt: skip
        out_subs = [_sub(s, product_of) for s in subs]
        live = {s.customer_id for s in out_subs if s.status in LIVE}
        return BillingSide(
            customers=[
                Customer(
                    id=c["id"],
                    crm_account_id=_meta(c).get("crm_account_id") or None,
                    active=c["id"] in live and not c.get("deleted"),
                )
                for c in customers
            ],
            subscriptions=out_subs,
            invoices=[_invoice(i, product_of) for i in invoices],
            payments=[
                Payment(
                    id=t["id"],
                    customer_id=t["customer_id"],
                    amount=int(t.get("amount") or 0),
                    applied={
                        li["invoice_id"]: int(li.get("applied_amount") or 0)
                        for li in t.get("linked_invoices") or []
                        if int(li.get("applied_amount") or 0)
                    },
                )
                for t in txns
                if not t.get("deleted")
            ],
        )

    def urls(self) -> dict[str, str]:
        site = f"https://{getattr(self.billing.client.env, 'site', None) or 'site'}.chargebee.com/d"
        return {
            "customer": site + "/customers/{id}",
            "subscription": site + "/subscriptions/{id}",
            "invoice": site + "/invoices/{id}",
            "payment": site + "/transactions/{id}",
        }


def _ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _meta(c: dict[str, Any]) -> dict[str, Any]:
    meta = c.get("meta_data") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            return {}
    return meta if isinstance(meta, dict) else {}


def _sub(s: dict[str, Any], product_of: dict[str, str]) -> Sub:
    discount = 0.0
    keep = 1.0
    for d in s.get("discounts") or []:
        if d.get("type") == "percentage":
            keep *= 1 - float(d.get("percentage") or 0) / 100
    discount = round((1 - keep) * 100, 4)
    items = s.get("subscription_items") or []
    plan = next((i for i in items if i.get("item_type") == "plan"), items[0] if items else None)
    # the plan and renewal as the account sync writes them (connectors/sync/chargebee.py)
    end = s.get("next_billing_at") or s.get("current_term_end")
    return Sub(
        id=s["id"],
        customer_id=s["customer_id"],
        status=s.get("status") or "",
        lines=[
            Line(
                product=product_of.get(i["item_price_id"], i["item_price_id"]),
                quantity=int(i.get("quantity") or 1),
                unit_price=int(i.get("unit_price") or 0),
                discount_percent=discount,
            )
            for i in items
        ],
        mrr=int(s.get("mrr") or 0),
        plan=plan["item_price_id"] if plan else None,
        renewal=datetime.fromtimestamp(end, UTC).date() if end else None,
    )


def _invoice(i: dict[str, Any], product_of: dict[str, str]) -> Invoice:
    lines = []
    for li in i.get("line_items") or []:
        ref = li.get("entity_id")
        lines.append(
            Line(
                # an ad hoc charge has no item price: its description names it
                product=product_of.get(ref, ref) if ref else f"adhoc:{li.get('description')}",
                quantity=int(li.get("quantity") or 1),
                unit_price=int(li.get("unit_amount") or li.get("amount") or 0),
            )
        )
    return Invoice(
        id=i["id"],
        customer_id=i["customer_id"],
        subscription_id=i.get("subscription_id"),
        status=_PAID.get(i.get("status") or "", "open"),
        total=int(i.get("total") or 0),
        lines=lines,
    )
