"""What revenue recognition (issue 20) reads from a billing platform: every billed amount with
the service period it pays for, invoices and credit notes alike, issued in a window, a page at a
time. Each vendor module wraps the deployment's existing connector (its official client, its
pacing and error mapping) and never calls one record at a time: one list call per page of
documents (plus the rare follow-up a vendor needs, said where it happens).

``revenue_lines(issued_from, issued_to, cursor, limit)`` answers the documents issued in
``[issued_from, issued_to)`` as :class:`domain.revenue.RevenueLine` (minor units; credits
negative), with an opaque cursor for the next page (None: done). The cursor walks invoices
first, then credit notes.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

from connectors.base import ConnectorError, ErrorKind
from connectors.revenue.common import RevenueDocuments

__all__ = ["RevenueDocuments", "RevenueSource", "revenue_source"]


class RevenueSource(Protocol):
    name: str

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments: ...


def revenue_source(billing: Any) -> RevenueSource:
    """The revenue reads for the deployment's billing connector (by its ``name``)."""
    name = getattr(billing, "name", "")
    if name == "chargebee":
        from connectors.revenue.chargebee import ChargebeeRevenue

        return ChargebeeRevenue(billing)
    if name == "stripe":
        from connectors.revenue.stripe import StripeRevenue

        return StripeRevenue(billing)
    if name == "recurly":
        from connectors.revenue.recurly import RecurlyRevenue

        return RecurlyRevenue(billing)
    if name == "zuora":
        from connectors.revenue.zuora import ZuoraRevenue

        return ZuoraRevenue(billing)
    return _NotBuilt(name)


class _NotBuilt:
    """A billing platform without revenue reads: refused in one line, never a silent empty
    month."""

    def __init__(self, name: str) -> None:
        self.name = name

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments:
        raise ConnectorError(
            self.name or "billing",
            ErrorKind.PERMANENT,
            f"revenue recognition does not read {self.name or 'this billing platform'} yet "
            "(Chargebee, Stripe, Recurly and Zuora only)",
            code="not_supported",
        )
