"""What usage-based expansion needs from each vendor, beside the BillingPlatform / CrmSystem
contract: metered usage and plan limits in bulk, a plan change on an existing subscription, and
the CRM's expansion records (signal, opportunity, draft quote). Each vendor module WRAPS the
existing connector object (its SDK client, pacing and error mapping), so the big connector files
do not grow.

Built by :func:`usage_source` / :func:`expansion_crm` from the deployment's connectors; a vendor
without a module yet answers None and the activities say so in one line.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Protocol

__all__ = [
    "ExpansionCrm",
    "ExpansionDraft",
    "ExpansionRecords",
    "OpportunityState",
    "SignalRecord",
    "UsageSource",
    "expansion_crm",
    "usage_source",
]

from domain.expansion import (
    ExpansionDraft,
    ExpansionLink,
    ExpansionRecords,
    MeteredPlan,
    OpportunityState,
    SignalRecord,
    UsageDay,
)
from domain.models import CrmAccount
from domain.records import SubscriptionRef


class UsageSource(Protocol):
    name: str

    def metered_plans(self, customer_ids: list[str]) -> dict[str, list[MeteredPlan]]:
        """Per customer, every metered item on its live subscriptions with the plan's limit
        and the catalogue's next tier (bulk: a few calls per page of customers)."""
        ...

    def daily_usage(self, plans: list[MeteredPlan], since: date) -> list[UsageDay]:
        """Daily totals per subscription and metered item of ``plans`` from ``since``
        (inclusive), in as few calls as the platform allows."""
        ...

    def change_plan(
        self, subscription_id: str, from_price_id: str, to_price_id: str, idempotency_key: str
    ) -> SubscriptionRef:
        """Move the existing subscription from one plan price to another, prorated; already
        on ``to_price_id`` is success (``created=False``)."""
        ...


class ExpansionCrm(Protocol):
    name: str

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None: ...

    def upsert_signal(self, record: SignalRecord) -> str: ...

    def upsert_expansion(self, draft: ExpansionDraft) -> ExpansionRecords: ...

    def close_expansion(
        self, opportunity_id: str, quote_id: str | None, reason: str
    ) -> OpportunityState: ...

    def opportunity_state(self, opportunity_id: str) -> OpportunityState: ...

    def expansion_of(self, opportunity_id: str) -> ExpansionLink | None: ...


def usage_source(billing: Any) -> UsageSource | None:
    name = getattr(billing, "name", None)
    if name == "chargebee":
        from connectors.expansion.chargebee import ChargebeeUsage

        return ChargebeeUsage(billing)
    if name == "stripe":
        from connectors.expansion.stripe import StripeUsage

        return StripeUsage(billing)
    if name == "zuora":
        from connectors.expansion.zuora import ZuoraUsage

        return ZuoraUsage(billing)
    if name == "recurly":
        from connectors.expansion.recurly import RecurlyUsage

        return RecurlyUsage(billing)
    return None


def expansion_crm(crm: Any) -> ExpansionCrm | None:
    name = getattr(crm, "name", None)
    if name == "salesforce":
        from connectors.expansion.salesforce import SalesforceExpansion

        return SalesforceExpansion(crm)
    if name == "hubspot":
        from connectors.expansion.hubspot import HubSpotExpansion

        return HubSpotExpansion(crm)
    return None
