"""What the account sync (issue 19) needs from each vendor, as a small protocol, and the per-vendor
modules that wrap the existing connector objects (they never grow the big connector files).

A *view* is the golden record's fields as one system holds them, in the golden record's units:
money in minor units (int), dates as ISO ``YYYY-MM-DD``, absent fields left out (a system that
does not hold a field says nothing about it). Writes are field sets, so a retry is idempotent.
"""

from __future__ import annotations

from typing import Any, Protocol

from connectors.base import BillingPlatform, ConnectorError, CrmSystem, ErrorKind
from connectors.sync.shapes import ADDRESS_KEYS as ADDRESS_KEYS  # re-exported
from connectors.sync.shapes import BILLING_WRITABLE as BILLING_WRITABLE
from connectors.sync.shapes import address as address
from domain.linking import BillingParty, CrmParty

#: records per bulk write (Salesforce sObject Collections: 200; HubSpot batch update: 100)
BULK_MAX = 200


class SyncBilling(Protocol):
    name: str

    def sync_view(self, customer_id: str) -> dict[str, Any]:
        """The customer's golden fields as billing holds them (``billing_address`` through
        :func:`address`, ``billing_contact_name`` as one string, absent when empty)."""
        ...

    def sync_write(self, customer_id: str, fields: dict[str, Any], idempotency_key: str) -> None:
        """Set fields billing holds a copy of (:data:`BILLING_WRITABLE`): ``account_name``,
        ``billing_contact`` (the billing email), ``billing_contact_name``, ``billing_address`` (a
        dict of :data:`ADDRESS_KEYS`, see :func:`address`; None clears it). A field the vendor
        does not hold is skipped (its view leaves it out too). Every vendor call carries
        ``idempotency_key`` the vendor's way — where the fields need two calls (Chargebee: the
        customer, then its billing info), each its own key derived from it (``key + "-addr"``)
        — so a retry after a committed but timed-out call is one change in billing."""
        ...

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[BillingParty], str | None]:
        """One page of the book for linking (backfill), and the next cursor."""
        ...

    # Optional (Chargebee, Stripe, Zuora, Recurly): ``sync_view_health(customer_id, payments=True) -> (view,
    # HealthInputs)`` — the view and the health profile's inputs (domain/health.py) in as few
    # reads as the platform allows; the payment attempts only when ``payments`` (once a day).
    # A platform without it gets no health profile (the activity checks).


class SyncCrm(Protocol):
    name: str

    def sync_find(self, billing: str, customer_id: str) -> str | None:
        """The account linked to the billing customer, or None."""
        ...

    def sync_view(self, account_id: str) -> dict[str, Any]: ...

    def sync_write(self, account_id: str, fields: dict[str, Any]) -> None: ...

    def sync_bulk_write(self, records: dict[str, dict[str, Any]]) -> dict[str, str]:
        """Up to :data:`BULK_MAX` accounts in ONE call; returns the accounts that failed, with
        the vendor's error code (each account on its own: one bad record holds back nothing)."""
        ...

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[CrmParty], str | None]: ...

    def sync_link_many(self, links: dict[str, str], billing: str) -> dict[str, str]:
        """The billing link (account ID → customer ID) on up to :data:`BULK_MAX` accounts in
        ONE call (backfill; field sets); returns the accounts that failed, with the error code."""
        ...


def sync_billing(billing: BillingPlatform) -> SyncBilling:
    if billing.name == "chargebee":
        from connectors.sync.chargebee import ChargebeeSync

        return ChargebeeSync(billing)  # type: ignore[arg-type]
    if billing.name == "stripe":
        from connectors.sync.stripe import StripeSync

        return StripeSync(billing)  # type: ignore[arg-type]
    if billing.name == "zuora":
        from connectors.sync.zuora import ZuoraSync

        return ZuoraSync(billing)  # type: ignore[arg-type]
    if billing.name == "recurly":
        from connectors.sync.recurly import RecurlySync

        return RecurlySync(billing)  # type: ignore[arg-type]
    return Unsupported(billing.name)  # type: ignore[return-value]


def sync_crm(crm: CrmSystem) -> SyncCrm:
    name = getattr(crm, "name", "")
    if name == "salesforce":
        from connectors.sync.salesforce import SalesforceSync

        return SalesforceSync(crm)  # type: ignore[arg-type]
    if name == "hubspot":
        from connectors.sync.hubspot import HubSpotSync

        return HubSpotSync(crm)  # type: ignore[arg-type]
    return Unsupported(name)  # type: ignore[return-value]


class Unsupported:
    """A vendor the account sync does not speak yet: every call is a permanent, one-line error."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, method: str) -> Any:
        def refuse(*_args: Any, **_kwargs: Any) -> Any:
            raise ConnectorError(
                self.name, ErrorKind.PERMANENT, f"account sync is not built for {self.name} yet"
            )

        return refuse
