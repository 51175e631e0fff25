"""Chargebee for the account sync: the customer and its main subscription in two reads (no event
log, no invoices: payment health comes from the subscription's ``due_invoices_count``, so the
dunning hot path is never asked twice), customer field sets, and the book for linking."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from connectors.chargebee import ChargebeeBilling, _key
from connectors.sync.shapes import address
from domain.health import HealthInputs
from domain.linking import BillingParty

#: a subscription that still bills (the main one is the live one with the highest MRR)
LIVE = ("active", "in_trial", "non_renewing", "paused", "future")


#: how far back the payment success rate looks
YEAR_S = 365 * 86_400


def _day(ts: int | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).date().isoformat() if ts else None


def _parts(addr: Any) -> dict[str, Any]:
    """Chargebee's ``billing_address`` in the golden address's names (``zip`` → postal_code)."""
    if addr is None:
        return {}
    get = addr.get if isinstance(addr, dict) else lambda k: getattr(addr, k, None)
    return {
        "line1": get("line1"),
        "line2": get("line2"),
        "city": get("city"),
        "state": get("state") or get("state_code"),
        "postal_code": get("zip"),
        "country": get("country"),
    }


class ChargebeeSync:
    def __init__(self, billing: ChargebeeBilling) -> None:
        self.billing = billing
        self.name = billing.name
        self._cb = billing.client

    def sync_view(self, customer_id: str) -> dict[str, Any]:
        return self._read(customer_id)[0]

    def sync_view_health(
        self, customer_id: str, payments: bool = True
    ) -> tuple[dict[str, Any], HealthInputs]:
        """The view and the health profile's inputs: the same two reads, and with ``payments``
        the customer's payment transactions of the last 365 days (one more, up to 100)."""
        view, cust, main, raw = self._read(customer_id)
        status: list[str] = []
        if payments:
            since = int(time.time()) - YEAR_S
            txns = self.billing._call(
                lambda: self._cb.Transaction.list(
                    {
                        "customer_id": {"is": customer_id},
                        "type": {"is": "payment"},
                        "date": {"after": since},
                        "limit": 100,
                    }
                ),
                what="transactions",
            )
            status = [e.transaction.status for e in txns.list]
        seats = None
        if main is not None:
            plan = next((i for i in main.subscription_items or [] if i.item_type == "plan"), None)
            seats = int(plan.quantity or 1) if plan is not None else None
        return view, HealthInputs(
            customer_since=_day(getattr(cust, "created_at", None)),
            payments_ok=status.count("success"),
            payments_failed=status.count("failure"),
            payments_read=payments,
            open_dunning=sum(int(getattr(s, "due_invoices_count", 0) or 0) for s in raw),
            seats=seats,
            currency=(getattr(main, "currency_code", None) if main is not None else None) or "USD",
        )

    def _read(self, customer_id: str) -> tuple[dict[str, Any], Any, Any, list[Any]]:
        cust = self.billing._call(
            lambda: self._cb.Customer.retrieve(customer_id), what=f"customer {customer_id}"
        ).customer
        subs = self.billing._call(
            lambda: self._cb.Subscription.list({"customer_id": {"is": customer_id}, "limit": 100}),
            what="subscriptions",
        )
        raw = [e.subscription for e in subs.list]
        view: dict[str, Any] = {}
        if getattr(cust, "company", None):
            view["account_name"] = cust.company
        if getattr(cust, "email", None):
            view["billing_contact"] = cust.email
        name = " ".join(
            n for n in (getattr(cust, "first_name", None), getattr(cust, "last_name", None)) if n
        )
        if name:
            view["billing_contact_name"] = name
        if addr := address(_parts(getattr(cust, "billing_address", None))):
            view["billing_address"] = addr
        live = [s for s in raw if s.status in LIVE]
        main = max(live, key=lambda s: (int(s.mrr or 0), s.id), default=None) or max(
            raw, key=lambda s: (int(getattr(s, "cancelled_at", 0) or 0), s.id), default=None
        )
        if main is not None:
            items = list(main.subscription_items or [])
            plan = next((i for i in items if i.item_type == "plan"), items[0] if items else None)
            view["plan"] = plan.item_price_id if plan else ""
            view["subscription_status"] = main.status
            view["next_renewal"] = _day(main.next_billing_at or main.current_term_end)
            view["mrr"] = sum(int(s.mrr or 0) for s in live)
            view["arr"] = view["mrr"] * 12
            due = sum(int(getattr(s, "due_invoices_count", 0) or 0) for s in raw)
            view["payment_health"] = "failing" if due else "ok"
        return view, cust, main, raw

    def sync_write(self, customer_id: str, fields: dict[str, Any], idempotency_key: str) -> None:
        params: dict[str, Any] = {}
        if "account_name" in fields:
            params["company"] = fields["account_name"]
        if "billing_contact" in fields:
            params["email"] = fields["billing_contact"]
        if "billing_contact_name" in fields:
            first, _, last = str(fields["billing_contact_name"] or "").strip().partition(" ")
            params["first_name"], params["last_name"] = first, last.strip()
        if params:
            self.billing._call(
                lambda: self._cb.Customer.update(
                    customer_id, params, headers=_key(idempotency_key)
                ),
                what=f"customer {customer_id}",
            )
        if "billing_address" in fields:
            # the billing address is its own call (POST /customers/{id}/update_billing_info),
            # with its own key derived from the step's
            addr = fields["billing_address"] or {}
            info = {
                "billing_address": {
                    "line1": addr.get("line1", ""),
                    "line2": addr.get("line2", ""),
                    "city": addr.get("city", ""),
                    "state": addr.get("state", ""),
                    "zip": addr.get("postal_code", ""),
                    "country": addr.get("country", ""),
                }
            }
            self.billing._call(
                lambda: self._cb.Customer.update_billing_info(
                    customer_id, info, headers=_key(idempotency_key + "-addr")
                ),
                what=f"customer {customer_id} billing info",
            )

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[BillingParty], str | None]:
        params: dict[str, Any] = {
            "limit": max(1, min(limit, 100)),
            "sort_by": {"asc": "created_at"},
        }
        if cursor:
            params["offset"] = cursor
        resp = self.billing._call(lambda: self._cb.Customer.list(params), what="customers")
        parties = []
        for entry in resp.list:
            c = self.billing._billing_customer(entry.customer)
            parties.append(
                BillingParty(
                    id=c.id,
                    company=c.company,
                    email=c.email,
                    crm_account_id=c.metadata.get("crm_account_id"),
                )
            )
        return parties, resp.next_offset or None
