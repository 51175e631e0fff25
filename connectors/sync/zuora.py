"""Zuora for the account sync: the account, its subscriptions and its due invoices in three reads
(Object Query for the account with its bill-to contact and for the invoices; the classic
subscriptions-by-account list for the rate plans, which Object Query's flat subscriptions lack),
account field sets, and the book for linking by Object Query pages (99 accounts a call).

The billing contact, its name and the billing address are the account's bill-to contact
(``workEmail``, ``firstName``/``lastName``, ``address1``…``country``).

The health profile's inputs (``sync_view_health``): the account's creation date, its payments
of the last year (Object Query), the invoices due, the main subscription's seats.

Payment health is "failing" while a posted invoice with a balance is due (its due date today or
past), as Chargebee's ``due_invoices_count`` says it: the dunning hot path is never asked twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from connectors.sync.shapes import (
    health_inputs,
    main_subscription,
    party_view,
    subscription_view,
    year_ago,
)
from connectors.zuora import CRM_SYSTEM_FIELD, ZuoraBilling
from domain.health import HealthInputs
from domain.linking import BillingParty


class ZuoraSync:
    def __init__(self, billing: ZuoraBilling) -> None:
        self.billing = billing
        self.name = billing.name

    def sync_view(self, customer_id: str) -> dict[str, Any]:
        return self._read(customer_id)[0]

    def sync_view_health(
        self, customer_id: str, payments: bool = True
    ) -> tuple[dict[str, Any], HealthInputs]:
        """The view and the health profile's inputs: the same three reads, and with
        ``payments`` the account's payments of the last 365 days (one Object Query, up to 99):
        ``Processed`` a successful attempt, ``Error`` a failed one."""
        view, acct, main, due = self._read(customer_id)
        status: list[str] = []
        if payments:
            since = year_ago().strftime("%Y-%m-%dT%H:%M:%S")
            rows = self.billing._query(
                "payments", [f"accountId.EQ:{customer_id}", f"createdDate.GE:{since}"], size=99
            ).get("data")
            status = [str(p.get("status")) for p in rows or []]
        created = str(acct.get("createdDate") or "")[:10]
        return view, health_inputs(
            created or None,
            status.count("Processed"),
            status.count("Error"),
            payments,
            due,
            main,
            str(acct.get("currency") or "USD"),
        )

    def _read(self, customer_id: str) -> tuple[dict[str, Any], dict[str, Any], Any, int]:
        """The view, the account row, the main subscription and how many invoices are due."""
        z = self.billing
        acct = z._account(customer_id)
        currency = str(acct.get("currency") or "USD").upper()
        listed = z._request(
            "GET",
            f"/v1/subscriptions/accounts/{customer_id}",
            params={"pageSize": 40},
            what=f"account {customer_id}",
        )
        subs = [z._subscription(s, currency) for s in listed.get("subscriptions") or []]
        bill_to = acct.get("billTo") or {}
        parts = {
            "line1": bill_to.get("address1"),
            "line2": bill_to.get("address2"),
            "city": bill_to.get("city"),
            "state": bill_to.get("state"),
            "postal_code": bill_to.get("postalCode") or bill_to.get("zipCode"),
            "country": bill_to.get("country"),
        }
        view = party_view(
            acct.get("name"),
            bill_to.get("workEmail"),
            bill_to.get("firstName"),
            bill_to.get("lastName"),
            parts,
        )
        live, main = main_subscription(subs, subs[-1] if subs else None)
        due: list[Any] = []
        if main is not None:
            today = datetime.now(UTC).date().isoformat()
            due = (
                z._query(
                    "invoices",
                    [
                        f"accountId.EQ:{customer_id}",
                        "status.EQ:Posted",
                        "balance.GT:0",
                        f"dueDate.LE:{today}",
                    ],
                    size=99,
                ).get("data")
                or []
            )
            subscription_view(view, live, main, failing=bool(due))
        return view, acct, main, len(due)

    def sync_write(self, customer_id: str, fields: dict[str, Any], idempotency_key: str) -> None:
        """One ``PUT /v1/accounts/{key}`` with the name and the bill-to contact: a field set
        (Zuora takes ``Idempotency-Key`` on POST and PATCH only, billing-apis.md §3e, so the key
        has no header here; setting the same values again changes nothing)."""
        body: dict[str, Any] = {}
        contact: dict[str, Any] = {}
        if "account_name" in fields:
            body["name"] = fields["account_name"]
        if "billing_contact" in fields:
            contact["workEmail"] = fields["billing_contact"] or ""
        if "billing_contact_name" in fields:
            first, _, last = str(fields["billing_contact_name"] or "").strip().partition(" ")
            # Zuora requires a contact's last name: a one-word name is the last name
            contact["firstName"], contact["lastName"] = (
                (first, last.strip()) if last else ("", first)
            )
        if "billing_address" in fields:
            addr = fields["billing_address"] or {}
            for ours, theirs in (
                ("line1", "address1"),
                ("line2", "address2"),
                ("city", "city"),
                ("state", "state"),
                ("postal_code", "zipCode"),
                ("country", "country"),
            ):
                contact[theirs] = addr.get(ours, "")
        if contact:
            body["billToContact"] = contact
        if not body:
            return
        self.billing._request(
            "PUT", f"/v1/accounts/{customer_id}", what=f"account {customer_id}", json=body
        )

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[BillingParty], str | None]:
        page = self.billing._query(
            "accounts",
            ["status.EQ:Active"],
            sort="createdDate.ASC",
            size=max(1, min(limit, 99)),
            cursor=cursor,
            expand=["billTo"],
        )
        parties = [
            BillingParty(
                id=str(a["id"]),
                company=a.get("name"),
                email=(a.get("billTo") or {}).get("workEmail") or None,
                crm_account_id=(a.get("crmId") or None) if a.get(CRM_SYSTEM_FIELD) else None,
            )
            for a in page.get("data") or []
        ]
        return parties, page.get("nextPage") or None
