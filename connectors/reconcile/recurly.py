"""Recurly's side of the reconciliation: the site's accounts, subscriptions (plan and add-ons),
invoices (their line items come with each) and payment transactions, each list walked once,
200 a request (the connector's locked, paced page reads) — never one call per account.

Products come back as Recurly references (``plan`` or ``plan:add_on``, policies/products.yaml);
a payment transaction is applied to the one invoice it names.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from connectors.reconcile.views import BillingSide
from connectors.recurly import CF_CRM_ACCOUNT, RecurlyBilling, _fields, to_minor
from domain.reconcile import LIVE, Customer, Invoice, Line, Payment, Sub

#: a safety bound on one list walk (200 rows a page): 10 million rows
MAX_PAGES = 50_000
_STATE = {"paid": "paid", "voided": "void"}


class RecurlyBook:
    name = "recurly"

    def __init__(self, billing: RecurlyBilling) -> None:
        self.billing = billing

    def _all(self, list_fn: Any, what: str) -> list[Any]:
        return list(self.billing._scan(list_fn, what, pages=MAX_PAGES))

    def read_billing(self, since: date | None, product_of: dict[str, str]) -> BillingSide:
        dated: dict[str, Any] = {"limit": 200}
        if since:
            dated["begin_time"] = datetime(since.year, since.month, since.day, tzinfo=UTC)
        accounts = self._all(lambda c: c.list_accounts(params={"limit": 200}), "accounts")
        raw_subs = self._all(lambda c: c.list_subscriptions(params={"limit": 200}), "subscriptions")
        invoices = self._all(lambda c: c.list_invoices(params=dict(dated)), "invoices")
        txns = self._all(
            lambda c: c.list_transactions(params={**dated, "type": "payment", "success": "true"}),
            "transactions",
        )

        def code(ref: str) -> str:
            return product_of.get(ref, ref)

        subs = []
        for s in raw_subs:
            norm = self.billing._subscription(s)
            currency = s.currency or "USD"
            lines = [
                Line(
                    product=code(s.plan.code),
                    quantity=int(s.quantity or 1),
                    unit_price=to_minor(s.unit_amount, currency),
                    discount_percent=norm.discount_percent,
                )
            ]
            for a in s.add_ons or []:
                lines.append(
                    Line(
                        product=code(f"{s.plan.code}:{a.add_on.code}"),
                        quantity=int(a.quantity or 1),
                        unit_price=to_minor(a.unit_amount, currency),
                        discount_percent=norm.discount_percent,
                    )
                )
            end = norm.current_term_end
            subs.append(
                Sub(
                    id=s.id,
                    customer_id=s.account.code,
                    status=norm.status,
                    lines=lines,
                    mrr=norm.mrr,
                    plan=s.plan.code,  # as the account sync writes it
                    renewal=end.date() if end else None,
                )
            )
        out_invoices = []
        for inv in invoices:
            currency = inv.currency or "USD"
            lines = []
            for li in inv.line_items or []:
                if li.type != "charge":
                    continue
                ref = li.plan_code or ""
                if li.add_on_code:
                    ref = f"{ref}:{li.add_on_code}"
                lines.append(
                    Line(
                        product=code(ref) if ref else f"adhoc:{li.description}",
                        quantity=int(li.quantity or 1),
                        unit_price=to_minor(li.unit_amount, currency),
                    )
                )
            sub_ids = list(inv.subscription_ids or [])
            out_invoices.append(
                Invoice(
                    id=inv.id,
                    customer_id=inv.account.code,
                    subscription_id=sub_ids[0] if sub_ids else None,
                    status=_STATE.get(inv.state, "open"),
                    total=to_minor(inv.total, currency),
                    lines=lines,
                )
            )
        payments = [
            Payment(
                id=t.id,
                customer_id=t.account.code,
                amount=to_minor(t.amount, t.currency),
                applied={t.invoice.id: to_minor(t.amount, t.currency)}
                if getattr(t, "invoice", None)
                else {},
            )
            for t in txns
            if t.status == "success"
        ]
        live = {s.customer_id for s in subs if s.status in LIVE}
        return BillingSide(
            customers=[
                Customer(
                    id=a.code,
                    crm_account_id=_fields(a).get(CF_CRM_ACCOUNT) or None,
                    active=a.code in live and a.state == "active",
                )
                for a in accounts
            ],
            subscriptions=subs,
            invoices=out_invoices,
            payments=payments,
        )

    def urls(self) -> dict[str, str]:
        base = "https://app.recurly.com"
        return {
            "customer": base + "/accounts/{id}",
            "subscription": base + "/subscriptions/{id}",
            "invoice": base + "/invoices/{id}",
            "payment": base + "/transactions/{id}",
        }
