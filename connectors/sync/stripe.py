"""Stripe for the account sync: the customer and its subscriptions in two reads (payment health
from the live subscriptions' ``past_due`` / ``unpaid`` status, so the dunning hot path is never
asked twice), customer field sets sent with the workflow's idempotency key, and the book for
linking (``starting_after`` pages)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from connectors.stripe import _NO_REVENUE, StripeBilling, _subscription
from connectors.sync.shapes import ADDRESS_KEYS, address
from domain.health import HealthInputs
from domain.linking import BillingParty

FAILING = ("past_due", "unpaid")
#: the billing contact's name, in the customer's metadata (its ``name`` is the account name)
CONTACT_NAME = "billing_contact_name"


class StripeSync:
    def __init__(self, billing: StripeBilling) -> None:
        self.billing = billing
        self.name = billing.name
        self._client = billing.client

    def sync_view(self, customer_id: str) -> dict[str, Any]:
        return self._read(customer_id)[0]

    def sync_view_health(
        self, customer_id: str, payments: bool = True
    ) -> tuple[dict[str, Any], HealthInputs]:
        """The view and the health profile's inputs: the same two reads, and the customer's
        payment intents of the last 365 days when ``payments`` (one more, up to 100): a
        succeeded one is a successful attempt, one carrying a ``last_payment_error`` a failed
        one."""
        view, cus, raw = self._read(customer_id)
        intents: list[Any] = []
        if payments:
            since = int(time.time()) - 365 * 86_400
            intents = self.billing._call(
                lambda: self._client.v1.payment_intents.list(
                    {"customer": customer_id, "created": {"gte": since}, "limit": 100}
                ),
                f"customer {customer_id}",
            ).data
        ok = sum(1 for p in intents if p.get("status") == "succeeded")
        failed = sum(1 for p in intents if p.get("last_payment_error"))
        live = [s for s in raw if s.get("status") not in _NO_REVENUE]
        main = max(live, key=lambda s: _subscription(s, time.time()).mrr, default=None)
        items = ((main or {}).get("items") or {}).get("data") or []
        seats = max((int(i.get("quantity") or 1) for i in items), default=None)
        created = cus.get("created")
        return view, HealthInputs(
            customer_since=(
                datetime.fromtimestamp(int(created), UTC).date().isoformat() if created else None
            ),
            payments_ok=ok,
            payments_failed=failed,
            payments_read=payments,
            open_dunning=sum(1 for s in live if s.get("status") in FAILING),
            seats=seats,
            currency=str((main or {}).get("currency") or "usd").upper(),
        )

    def _read(self, customer_id: str) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        what = f"customer {customer_id}"
        cus = self.billing._call(
            lambda: self._client.v1.customers.retrieve(customer_id), what
        ).to_dict()
        raw = self.billing._list(
            self._client.v1.subscriptions,
            {"customer": customer_id, "status": "all", "limit": 100},
            what,
        )
        view: dict[str, Any] = {}
        if cus.get("name"):
            view["account_name"] = cus["name"]
        if cus.get("email"):
            view["billing_contact"] = cus["email"]
        if addr := address(cus.get("address") or {}):
            view["billing_address"] = addr
        if name := (cus.get("metadata") or {}).get(CONTACT_NAME):
            view["billing_contact_name"] = name
        subs = [_subscription(s, time.time()) for s in raw]
        live = [s for s in subs if s.status not in _NO_REVENUE]
        main = max(live, key=lambda s: (s.mrr, s.id), default=None) or (subs[0] if subs else None)
        if main is not None:
            view["plan"] = main.plan
            view["subscription_status"] = main.status
            view["next_renewal"] = (
                main.current_term_end.date().isoformat() if main.current_term_end else None
            )
            view["mrr"] = sum(s.mrr for s in live)
            view["arr"] = view["mrr"] * 12
            view["payment_health"] = "failing" if any(s.status in FAILING for s in live) else "ok"
        return view, cus, raw

    def sync_write(self, customer_id: str, fields: dict[str, Any], idempotency_key: str) -> None:
        params: dict[str, Any] = {}
        if "account_name" in fields:
            params["name"] = fields["account_name"]
        if "billing_contact" in fields:
            params["email"] = fields["billing_contact"]
        if "billing_address" in fields:
            # Stripe's customer address has the golden address's keys; "" unsets a part
            addr = fields["billing_address"] or {}
            params["address"] = {k: addr.get(k, "") for k in ADDRESS_KEYS}
        if "billing_contact_name" in fields:
            # Stripe's customer ``name`` is the account name: the contact's is metadata
            params["metadata"] = {CONTACT_NAME: fields["billing_contact_name"] or ""}
        if not params:
            return
        options: dict[str, Any] = {"idempotency_key": idempotency_key}
        self.billing._call(
            lambda: self._client.v1.customers.update(customer_id, params, options),  # type: ignore[arg-type]
            f"customer {customer_id}",
        )

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[BillingParty], str | None]:
        params: dict[str, Any] = {"limit": max(1, min(limit, 100))}
        if cursor:
            params["starting_after"] = cursor
        rows = self.billing._list(self._client.v1.customers, params, "customers")
        parties = [
            BillingParty(
                id=str(c["id"]),
                company=c.get("name"),
                email=c.get("email"),
                crm_account_id=(c.get("metadata") or {}).get("crm_account_id"),
            )
            for c in rows
        ]
        more = len(rows) >= params["limit"]
        return parties, (str(rows[-1]["id"]) if rows and more else None)
