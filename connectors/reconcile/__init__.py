"""What the daily reconciliation needs from each vendor (issue 20): the whole book read in bulk
(list pages, ``[in]`` filters, SOQL with relationship subqueries, HubSpot batch reads — never
one call per record), normalized into ``domain.reconcile``'s views; and, from the CRM, the
exceptions it keeps (``Billing_Exception__c``), upserted by stable ID, and the billing-owned
fields restored in bulk.

Each per-vendor module WRAPS the deployment's existing connector (its authenticated client,
``_call`` error mapping and pacing), so errors, limits and the request ledgers are the same.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from connectors.base import ConnectorError, ErrorKind
from connectors.reconcile.views import BillingSide, CrmSide
from domain.reconcile import ExceptionRecord, FieldRestore, StoredException

__all__ = ["BillingReader", "BillingSide", "CrmReader", "CrmSide", "billing_reader", "crm_reader"]


class BillingReader(Protocol):
    name: str

    def read_billing(self, since: date | None, product_of: dict[str, str]) -> BillingSide:
        """Customers, subscriptions with their lines, invoices with lines (dated on or after
        ``since`` when given) and successful payments with what they were applied to.
        ``product_of``: billing price → CRM product code (policies/products.yaml inverted)."""
        ...

    def urls(self) -> dict[str, str]:
        """Dashboard URL templates by record type (``{id}`` placeholder) for the report."""
        ...


class CrmReader(Protocol):
    name: str

    def read_crm(self, billing: str, since: date | None) -> CrmSide:
        """Won deals with their line items (closed on or after ``since``), and every account
        that is linked to billing or marked a customer."""
        ...

    def stored_exceptions(self, closed_since: date) -> list[StoredException]:
        """Open exceptions, and those closed on or after ``closed_since``."""
        ...

    def upsert_exceptions(self, records: list[ExceptionRecord]) -> dict[str, str]:
        """Upsert by stable ID in bulk; returns the IDs that failed with the CRM's error."""
        ...

    def restore_fields(self, fixes: list[FieldRestore]) -> dict[str, str]:
        """Write the billing-owned fields back in bulk; returns failed account IDs → error."""
        ...

    def urls(self) -> dict[str, str]: ...

    def open_exceptions(self) -> list[dict[str, Any]]:
        """Every exception not closed, oldest first, as the CRM holds them (for the CLI)."""
        ...


def billing_reader(billing: Any) -> BillingReader:
    """The reconciliation reader wrapping the deployment's billing connector."""
    name = getattr(billing, "name", "")
    if name == "chargebee":
        from connectors.reconcile.chargebee import ChargebeeBook

        return ChargebeeBook(billing)
    if name == "stripe":
        from connectors.reconcile.stripe import StripeBook

        return StripeBook(billing)
    if name == "recurly":
        from connectors.reconcile.recurly import RecurlyBook

        return RecurlyBook(billing)
    if name == "zuora":
        from connectors.reconcile.zuora import ZuoraBook

        return ZuoraBook(billing)
    raise ConnectorError(
        name or "billing",
        ErrorKind.PERMANENT,
        f"reconciliation does not read {name or 'this billing platform'} yet "
        "(Chargebee, Stripe, Recurly and Zuora do)",
        code="reconcile_unsupported",
    )


def crm_reader(crm: Any) -> CrmReader:
    """The reconciliation reader/writer wrapping the deployment's CRM connector."""
    crm = crm.__dict__.get("_crm", crm)  # a CRM routed beside a support desk: the CRM itself
    name = getattr(crm, "name", "")
    if name == "salesforce":
        from connectors.reconcile.salesforce import SalesforceBook

        return SalesforceBook(crm)
    if name == "hubspot":
        from connectors.reconcile.hubspot import HubSpotBook

        return HubSpotBook(crm)
    raise ConnectorError(
        name or "crm",
        ErrorKind.PERMANENT,
        f"reconciliation does not write exceptions to {name or 'this CRM'} yet",
        code="reconcile_unsupported",
    )
