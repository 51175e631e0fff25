"""Driving the sandboxes the way the outside world would, through the vendors' official clients:
seed a scenario, decline a payment, pay an invoice, look up what RevBridge wrote.

Shared by ``revbridge demo`` and the pair-matrix tests, so both exercise the same paths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import stripe
from chargebee.api_error import PaymentError
from hubspot import HubSpot
from hubspot.crm.tickets import PublicObjectSearchRequest
from simple_salesforce import format_soql

from cli.config import CliError
from domain.settings import Settings
from sandbox.scenarios import (
    DunningCustomer,
    chargebee_seed,
    hubspot_seed,
    salesforce_seed,
    stripe_seed,
)


def _seed(url: str, data: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + "/_sandbox/seed", json=data, timeout=10)
    if resp.status_code != 200:
        raise CliError(f"seeding {url} failed: HTTP {resp.status_code}: {resp.text[:200]}")
    return resp.json()


class BillingDriver(Protocol):
    name: str

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str) -> None: ...

    def decline(self, invoice_id: str) -> None:
        """Attempt to collect; the customer's card declines (the sandbox emits the webhook)."""
        ...

    def pay(self, invoice_id: str, amount: int) -> None:
        """The customer pays out of band (the sandbox emits the paid webhook)."""
        ...

    # --- quote-to-cash, churn, support (raw vendor dicts, for scenarios and assertions) -----------

    def seed_catalog(self) -> None:
        """Put ``sandbox.scenarios.CATALOG`` (the in_billing products) in billing; idempotent."""
        ...

    def create_customer(
        self, company: str, email: str, crm: str | None = None, crm_account_id: str | None = None
    ) -> str:
        """A customer made by hand (optionally already linked to a CRM account); its ID."""
        ...

    def customers(self, email: str | None = None, company: str | None = None) -> list[dict]:
        """Customers with this exact email and/or company name (not deleted)."""
        ...

    def subscriptions(self, customer_id: str) -> list[dict]:
        """All of the customer's subscriptions, cancelled ones included."""
        ...


class CrmDriver(Protocol):
    name: str

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str, billing: str) -> None: ...

    def cases(self, case_key: str) -> list[dict[str, Any]]:
        """Cases/tickets RevBridge opened under one idempotency key: {id, subject, priority}."""
        ...

    # --- quote-to-cash, churn, support (raw vendor dicts, for scenarios and assertions) -----------

    def seed_catalog(self) -> None:
        """Put ``sandbox.scenarios.CATALOG`` (all of it) in the CRM's product catalogue."""
        ...

    def create_account(
        self,
        name: str,
        tier: str = "SMB",
        billing_customer_id: str | None = None,
        billing: str | None = None,
    ) -> str:
        """An account / company; its ID."""
        ...

    def create_opportunity(
        self,
        account_id: str,
        name: str,
        lines: list[tuple[str, int, int, float]],
        *,
        term_months: int = 12,
        payment_terms: str | None = None,
        contact_email: str | None = None,
    ) -> str:
        """An open opportunity / deal with line items ``(product_code, quantity,
        unit_price_cents, discount_percent)`` and a contact; its ID. No webhook yet."""
        ...

    def win(self, opportunity_id: str) -> None:
        """Move it to closed-won: the CRM sends its callout / webhook to RevBridge."""
        ...

    def open_case(self, account_id: str | None, subject: str, description: str = "") -> str:
        """A support case / ticket (the CRM sends its created callout / webhook); its ID."""
        ...

    def account(self, account_id: str) -> dict[str, Any]:
        """The account's fields as the API returns them."""
        ...

    def opportunity(self, opportunity_id: str) -> dict[str, Any]:
        """The opportunity's / deal's fields as the API returns them."""
        ...

    def tasks(self, account_id: str) -> list[dict[str, Any]]:
        """Tasks on the account (or its opportunities): {id, subject, description}."""
        ...


@dataclass
class ChargebeeDriver:
    url: str
    connector: Any  # connectors.chargebee.ChargebeeBilling
    name: str = "chargebee"

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str) -> None:
        _seed(self.url, chargebee_seed(customers, suffix))

    def decline(self, invoice_id: str) -> None:
        try:
            self.connector.client.Invoice.collect_payment(invoice_id)
        except PaymentError:
            return
        raise CliError(f"the sandbox accepted a payment it should have declined ({invoice_id})")

    def pay(self, invoice_id: str, amount: int) -> None:
        self.connector.client.Invoice.record_payment(
            invoice_id,
            {
                "transaction": {
                    "amount": amount,
                    "payment_method": "bank_transfer",
                    "date": int(time.time()),
                }
            },
        )


@dataclass
class StripeDriver:
    url: str
    connector: Any  # connectors.stripe.StripeBilling
    name: str = "stripe"

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str) -> None:
        _seed(self.url, stripe_seed(customers, suffix))

    def decline(self, invoice_id: str) -> None:
        try:
            self.connector.client.v1.invoices.pay(invoice_id)
        except stripe.CardError:
            return
        raise CliError(f"the sandbox accepted a payment it should have declined ({invoice_id})")

    def pay(self, invoice_id: str, amount: int) -> None:
        self.connector.client.v1.invoices.pay(invoice_id, {"paid_out_of_band": True})


@dataclass
class SalesforceDriver:
    url: str
    connector: Any  # connectors.salesforce.SalesforceCrm
    name: str = "salesforce"

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str, billing: str) -> None:
        _seed(self.url, salesforce_seed(customers, suffix, billing))

    def cases(self, case_key: str) -> list[dict[str, Any]]:
        rows = self.connector.query(
            format_soql(
                "SELECT Id, CaseNumber, Subject, Priority, Description, AccountId FROM Case "
                "WHERE RevBridge_Key__c = {}",
                case_key,
            )
        )
        return [
            {
                "id": r["Id"],
                "number": r["CaseNumber"],
                "subject": r["Subject"],
                "priority": r["Priority"],
                "description": r["Description"],
                "account_id": r["AccountId"],
            }
            for r in rows
        ]


@dataclass
class HubSpotDriver:
    url: str
    access_token: str
    name: str = "hubspot"

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str, billing: str) -> None:
        _seed(self.url, hubspot_seed(customers, suffix, billing))

    def cases(self, case_key: str) -> list[dict[str, Any]]:
        client = HubSpot(
            access_token=self.access_token, host=self.url, base_url=self.url, retry=False
        )
        found = client.crm.tickets.search_api.do_search(
            public_object_search_request=PublicObjectSearchRequest(
                filter_groups=[
                    {
                        "filters": [
                            {"propertyName": "revbridge_key", "operator": "EQ", "value": case_key}
                        ]
                    }
                ],
                properties=["subject", "content", "hs_ticket_priority"],
            )
        )
        priorities = {"HIGH": "High", "MEDIUM": "Medium", "LOW": "Low"}
        out = []
        for t in found.results:
            assoc = client.crm.associations.v4.basic_api.get_page("tickets", t.id, "companies")
            out.append(
                {
                    "id": t.id,
                    "number": t.id,
                    "subject": t.properties.get("subject"),
                    "priority": priorities.get(t.properties.get("hs_ticket_priority") or ""),
                    "description": t.properties.get("content"),
                    "account_id": assoc.results[0].to_object_id if assoc.results else None,
                }
            )
        return out


def drivers(settings: Settings, billing: Any, crm: Any) -> tuple[BillingDriver, CrmDriver]:
    """Drivers for the configured pair; ``billing``/``crm`` are the built connectors."""
    if settings.billing == "chargebee":
        assert settings.chargebee and settings.chargebee.api_url
        b: BillingDriver = ChargebeeDriver(settings.chargebee.api_url, billing)
    else:
        assert settings.stripe and settings.stripe.api_url
        b = StripeDriver(settings.stripe.api_url, billing)
    if settings.crm == "salesforce":
        assert settings.salesforce
        c: CrmDriver = SalesforceDriver(settings.salesforce.token_url.split("/services/")[0], crm)
    else:
        assert settings.hubspot and settings.hubspot.api_url
        c = HubSpotDriver(
            settings.hubspot.api_url, settings.hubspot.access_token.get_secret_value()
        )
    return b, c
