"""Recurly for the account sync, through the official client: the account and its subscriptions
in two reads (payment health from the account's own ``has_past_due_invoice``, so the dunning hot
path is never asked twice; each plan's billing interval read once and kept), account field sets,
and the book for linking (``GET /accounts`` pages of 200, custom fields included)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlparse

from connectors.recurly import CF_CRM_ACCOUNT, RecurlyBilling, _fields, _key
from connectors.sync.shapes import (
    health_inputs,
    main_subscription,
    party_view,
    subscription_view,
    year_ago,
)
from domain.health import HealthInputs
from domain.linking import BillingParty


class RecurlySync:
    def __init__(self, billing: RecurlyBilling) -> None:
        self.billing = billing
        self.name = billing.name

    def sync_view(self, customer_id: str) -> dict[str, Any]:
        return self._read(customer_id)[0]

    def sync_view_health(
        self, customer_id: str, payments: bool = True
    ) -> tuple[dict[str, Any], HealthInputs]:
        """The view and the health profile's inputs: the same two reads; with ``payments`` the
        account's payment transactions of the last 365 days (one page, up to 200: ``success``
        a successful attempt, ``declined`` / ``error`` a failed one); the past-due invoices
        counted only when the account says it has one (one more read then)."""
        r = self.billing
        code = f"code-{customer_id}"
        view, account, main = self._read(customer_id)
        status: list[str] = []
        if payments:
            since = year_ago()
            status = [
                str(t.status)
                for t in r._call(
                    lambda c: c.list_account_transactions(
                        code, params={"limit": 200, "type": "payment", "begin_time": since}
                    ).take(200),
                    "transactions",
                )
                or []
            ]
        dunning = 0
        if getattr(account, "has_past_due_invoice", False):
            dunning = len(
                r._call(
                    lambda c: c.list_account_invoices(
                        code, params={"limit": 200, "state": "past_due"}
                    ).take(200),
                    "invoices",
                )
                or []
            )
        created = getattr(account, "created_at", None)
        return view, health_inputs(
            created.date().isoformat() if created else None,
            status.count("success"),
            status.count("declined") + status.count("error"),
            payments,
            dunning,
            main,
            "USD",
        )

    def _read(self, customer_id: str) -> tuple[dict[str, Any], Any, Any]:
        """The view, the account and the main subscription."""
        r = self.billing
        code = f"code-{customer_id}"
        account = r._call(lambda c: c.get_account(code), f"account {customer_id}")
        raw = list(
            r._scan(
                lambda c: c.list_account_subscriptions(code, params={"limit": 200}),
                "subscriptions",
                pages=5,
            )
        )
        subs = [r._subscription(s) for s in raw]
        held = getattr(account, "address", None)
        parts = {
            "line1": getattr(held, "street1", None),
            "line2": getattr(held, "street2", None),
            "city": getattr(held, "city", None),
            "state": getattr(held, "region", None),
            "postal_code": getattr(held, "postal_code", None),
            "country": getattr(held, "country", None),
        }
        view = party_view(
            account.company, account.email, account.first_name, account.last_name, parts
        )
        live, main = main_subscription(subs, subs[0] if subs else None)
        if main is not None:
            past_due = bool(getattr(account, "has_past_due_invoice", False))
            subscription_view(view, live, main, failing=past_due)
        return view, account, main

    def sync_write(self, customer_id: str, fields: dict[str, Any], idempotency_key: str) -> None:
        """One ``PUT /accounts/code-…`` (company, email, first/last name, the account's
        ``address``): a field set, sent with the key as the connector sends its creates
        (Recurly's v2021-02-25 API documents no idempotency header, billing-apis.md §4e: setting
        the same values again is what makes a retry harmless)."""
        body: dict[str, Any] = {}
        if "account_name" in fields:
            body["company"] = fields["account_name"]
        if "billing_contact" in fields:
            body["email"] = fields["billing_contact"]
        if "billing_contact_name" in fields:
            first, _, last = str(fields["billing_contact_name"] or "").strip().partition(" ")
            body["first_name"], body["last_name"] = first, last.strip()
        if "billing_address" in fields:
            addr = fields["billing_address"] or {}
            body["address"] = {
                "street1": addr.get("line1", ""),
                "street2": addr.get("line2", ""),
                "city": addr.get("city", ""),
                "region": addr.get("state", ""),
                "postal_code": addr.get("postal_code", ""),
                "country": addr.get("country", ""),
            }
        if not body:
            return
        self.billing._call(
            lambda c: c.update_account(f"code-{customer_id}", body, headers=_key(idempotency_key)),
            f"account {customer_id}",
        )

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[BillingParty], str | None]:
        params: dict[str, Any] = {
            "limit": max(1, min(limit, 200)),
            "order": "asc",
            "sort": "created_at",
        }
        if cursor:
            params["cursor"] = cursor
        page = self.billing._call(
            lambda c: c._make_request("GET", "/accounts", None, params=params), "accounts"
        )
        parties = [
            BillingParty(
                id=a.code,
                company=a.company,
                email=a.email or None,
                crm_account_id=_fields(a).get(CF_CRM_ACCOUNT) or None,
            )
            for a in page.data
            if a.state == "active"
        ]
        nxt = None
        if page.has_more and page.next:
            nxt = dict(parse_qsl(urlparse(page.next).query)).get("cursor")
        return parties, nxt
