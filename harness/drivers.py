"""Driving the sandboxes the way the outside world would, through the vendors' official clients:
seed a scenario, decline a payment, pay an invoice, look up what RevBridge wrote.

Shared by ``revbridge demo`` and the pair-matrix tests, so both exercise the same paths.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import stripe
from chargebee.api_error import PaymentError
from hubspot import HubSpot
from hubspot.crm.objects import BatchInputSimplePublicObjectBatchInputForCreate as HsBatchCreate
from hubspot.crm.objects import BatchReadInputSimplePublicObjectId as HsBatchRead
from hubspot.crm.objects import PublicObjectSearchRequest as HsSearch
from hubspot.crm.objects import SimplePublicObjectInputForCreate as HsCreate
from hubspot.crm.objects.exceptions import ApiException as HsApiException
from hubspot.crm.objects.exceptions import NotFoundException as HsNotFound
from hubspot.crm.tickets.exceptions import NotFoundException as HsTicketNotFound
from simple_salesforce import format_soql

from domain.settings import Settings
from harness.errors import HarnessError
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
        raise HarnessError(f"seeding {url} failed: HTTP {resp.status_code}: {resp.text[:200]}")
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
        """Tasks on the account (or its opportunities): {id, subject, description, owner_id}."""
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
        raise HarnessError(f"the sandbox accepted a payment it should have declined ({invoice_id})")

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

    def seed_catalog(self) -> None:
        # chargebee_seed with no customers is the item prices alone (the catalogue among them);
        # seeding an item price again replaces it, so this is idempotent.
        _seed(self.url, {"item_prices": chargebee_seed((), "catalog")["item_prices"]})

    def create_customer(
        self, company: str, email: str, crm: str | None = None, crm_account_id: str | None = None
    ) -> str:
        from connectors.chargebee import crm_link_params  # the link exactly as RevBridge writes it

        params: dict[str, Any] = {"company": company, "email": email}
        if crm and crm_account_id:
            params.update(crm_link_params({}, crm, crm_account_id))
        return self.connector.client.Customer.create(params).customer.id

    def customers(self, email: str | None = None, company: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"limit": 100}
        if email is not None:
            params["email"] = {"is": email}
        if company is not None:
            params["company"] = {"is": company}
        return [e.customer.raw_data for e in self.connector.client.Customer.list(params).list]

    def subscriptions(self, customer_id: str) -> list[dict]:
        resp = self.connector.client.Subscription.list(
            {"customer_id": {"is": customer_id}, "limit": 100}
        )
        return [e.subscription.raw_data for e in resp.list]


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
        raise HarnessError(f"the sandbox accepted a payment it should have declined ({invoice_id})")

    def pay(self, invoice_id: str, amount: int) -> None:
        self.connector.client.v1.invoices.pay(invoice_id, {"paid_out_of_band": True})

    # --- quote-to-cash, churn, support (through stripe-python, as a Stripe admin would) ---------

    def seed_catalog(self) -> None:
        """Each in-billing CATALOG entry as a product (``prod_rb_<code>``) and a monthly USD
        price carrying its lookup key. Lookup keys are unique per account, so only the keys no
        price holds yet are created."""
        from sandbox.scenarios import CATALOG  # local: the module's import line is shared

        client: stripe.StripeClient = self.connector.client
        wanted = {p.stripe_lookup_key: p for p in CATALOG if p.in_billing}
        held = client.v1.prices.list({"lookup_keys": list(wanted), "limit": 100})
        for key in set(wanted) - {p.lookup_key for p in held.data}:
            entry = wanted[key]
            product = "prod_rb_" + entry.code.removeprefix("RB-").lower()
            try:
                client.v1.products.retrieve(product)
            except stripe.InvalidRequestError:
                client.v1.products.create(
                    {"id": product, "name": entry.name},
                    {"idempotency_key": f"revbridge-seed-{product}"},
                )
            client.v1.prices.create(
                {
                    "product": product,
                    "lookup_key": key,
                    "unit_amount": entry.unit_price,
                    "currency": "usd",
                    "recurring": {"interval": "month"},
                },
                {"idempotency_key": f"revbridge-seed-{key}"},
            )

    def create_customer(
        self, company: str, email: str, crm: str | None = None, crm_account_id: str | None = None
    ) -> str:
        metadata = {"crm": crm, "crm_account_id": crm_account_id} if crm_account_id else {}
        params: Any = {"name": company, "email": email, "metadata": metadata}
        return self.connector.client.v1.customers.create(params).id

    def customers(self, email: str | None = None, company: str | None = None) -> list[dict]:
        # The list endpoint (not search): strongly consistent, deleted customers never listed.
        params: Any = {"limit": 100, **({"email": email} if email else {})}
        found = self.connector.client.v1.customers.list(params).auto_paging_iter()
        return [c.to_dict() for c in found if company is None or c.name == company]

    def subscriptions(self, customer_id: str) -> list[dict]:
        params: Any = {"customer": customer_id, "status": "all", "limit": 100}
        found = self.connector.client.v1.subscriptions.list(params).auto_paging_iter()
        return [s.to_dict() for s in found]


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

    # --- quote-to-cash, churn, support (through simple-salesforce, as a sales rep's org would) ----

    def _standard_pricebook(self) -> str:
        rows = self.connector.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")
        if not rows:
            raise HarnessError("the Salesforce org has no standard price book")
        return rows[0]["Id"]

    def seed_catalog(self) -> None:
        """Products by ProductCode plus their standard price; only what is missing is added."""
        from sandbox.scenarios import CATALOG

        sf = self.connector.client
        book = self._standard_pricebook()
        codes = [p.code for p in CATALOG]
        products = {
            r["ProductCode"]: r["Id"]
            for r in self.connector.query(
                format_soql("SELECT Id, ProductCode FROM Product2 WHERE ProductCode IN {}", codes)
            )
        }
        for p in CATALOG:
            if p.code not in products:
                fields = {"Name": p.name, "ProductCode": p.code, "IsActive": True}
                products[p.code] = sf.Product2.create(fields)["id"]
        priced = {
            r["Product2Id"]
            for r in self.connector.query(
                format_soql("SELECT Product2Id FROM PricebookEntry WHERE Pricebook2Id = {}", book)
            )
        }
        for p in CATALOG:
            if products[p.code] not in priced:
                sf.PricebookEntry.create(
                    {
                        "Pricebook2Id": book,
                        "Product2Id": products[p.code],
                        "UnitPrice": p.unit_price / 100,
                        "IsActive": True,
                    }
                )

    def create_account(
        self,
        name: str,
        tier: str = "SMB",
        billing_customer_id: str | None = None,
        billing: str | None = None,
    ) -> str:
        fields: dict[str, Any] = {"Name": name, "Customer_Tier__c": tier}
        if billing_customer_id:
            fields["Billing_Customer_Id__c"] = billing_customer_id
            fields["Billing_Platform__c"] = billing
        return self.connector.client.Account.create(fields)["id"]

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
        """The opportunity on the standard price book, its products in one all-or-none
        collection insert, and (with ``contact_email``) a primary contact role."""
        from datetime import date

        sf = self.connector.client
        book = self._standard_pricebook()
        opp: dict[str, Any] = {
            "AccountId": account_id,
            "Name": name,
            "StageName": "Negotiation/Review",
            "CloseDate": date.today().isoformat(),
            "Pricebook2Id": book,
            "Type": "New Customer",
            "Term_Months__c": term_months,
        }
        if payment_terms:
            opp["Payment_Terms__c"] = payment_terms
        opp_id = sf.Opportunity.create(opp)["id"]
        codes = sorted({line[0] for line in lines})
        entries = {
            r["ProductCode"]: r["Id"]
            for r in self.connector.query(
                format_soql(
                    "SELECT Id, ProductCode FROM PricebookEntry "
                    "WHERE Pricebook2Id = {} AND ProductCode IN {}",
                    book,
                    codes,
                )
            )
        }
        if missing := [c for c in codes if c not in entries]:
            raise HarnessError(
                f"products not in the Salesforce price book: {missing} (seed_catalog?)"
            )
        if lines:
            records = [
                {
                    "attributes": {"type": "OpportunityLineItem"},
                    "OpportunityId": opp_id,
                    "PricebookEntryId": entries[code],
                    "Quantity": quantity,
                    "UnitPrice": unit_price / 100,
                    "Discount": discount or None,
                }
                for code, quantity, unit_price, discount in lines
            ]
            results = sf.restful(
                "composite/sobjects",
                method="POST",
                json={"allOrNone": True, "records": records},
            )
            if not all(r.get("success") for r in results):
                raise HarnessError(f"line items refused: {[r.get('errors') for r in results]}")
        if contact_email:
            local = contact_email.split("@")[0].replace("_", ".").split(".")
            contact_id = sf.Contact.create(
                {
                    "AccountId": account_id,
                    "FirstName": local[0].title() if len(local) > 1 else None,
                    "LastName": local[-1].title() or "Contact",
                    "Email": contact_email,
                }
            )["id"]
            sf.OpportunityContactRole.create(
                {
                    "OpportunityId": opp_id,
                    "ContactId": contact_id,
                    "Role": "Decision Maker",
                    "IsPrimary": True,
                }
            )
        return opp_id

    def win(self, opportunity_id: str) -> None:
        """The rep moves the stage; the org's record-triggered Flow calls RevBridge out."""
        self.connector.client.Opportunity.update(opportunity_id, {"StageName": "Closed Won"})

    def open_case(self, account_id: str | None, subject: str, description: str = "") -> str:
        fields: dict[str, Any] = {"Subject": subject, "Description": description, "Origin": "Web"}
        if account_id:
            fields["AccountId"] = account_id
        return self.connector.client.Case.create(fields)["id"]

    def account(self, account_id: str) -> dict[str, Any]:
        row = dict(self.connector.client.Account.get(account_id))
        row.pop("attributes", None)
        return row

    def opportunity(self, opportunity_id: str) -> dict[str, Any]:
        row = dict(self.connector.client.Opportunity.get(opportunity_id))
        row.pop("attributes", None)
        return row

    def tasks(self, account_id: str) -> list[dict[str, Any]]:
        # Two queries: SOQL does not allow a semi-join under OR.
        opps = self.connector.query(
            format_soql("SELECT Id FROM Opportunity WHERE AccountId = {}", account_id)
        )
        what_ids = [account_id, *(r["Id"] for r in opps)]
        rows = self.connector.query(
            format_soql(
                "SELECT Id, Subject, Description, OwnerId FROM Task WHERE WhatId IN {} "
                "ORDER BY CreatedDate, Id",
                what_ids,
            )
        )
        return [
            {
                "id": r["Id"],
                "subject": r["Subject"],
                "description": r["Description"],
                "owner_id": r["OwnerId"],
            }
            for r in rows
        ]


@dataclass
class HubSpotDriver:
    url: str
    access_token: str
    name: str = "hubspot"
    #: products this driver created, by SKU: search shows them only once its index caught up
    created_products: dict[str, Any] = field(default_factory=dict)

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str, billing: str) -> None:
        _seed(self.url, hubspot_seed(customers, suffix, billing))

    def cases(self, case_key: str) -> list[dict[str, Any]]:
        client = HubSpot(
            access_token=self.access_token, host=self.url, base_url=self.url, retry=False
        )
        # a read by the unique key, not search: the search index lags writes by seconds
        try:
            found = [
                client.crm.tickets.basic_api.get_by_id(
                    case_key,
                    id_property="revbridge_key",
                    properties=["subject", "content", "hs_ticket_priority"],
                )
            ]
        except HsTicketNotFound:
            found = []
        priorities = {"HIGH": "High", "MEDIUM": "Medium", "LOW": "Low"}
        out = []
        for t in found:
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

    # --- quote-to-cash, churn, support ------------------------------------------------------------

    @property
    def client(self) -> HubSpot:
        return HubSpot(
            access_token=self.access_token, host=self.url, base_url=self.url, retry=False
        )

    def _control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A sandbox control call: what a person does in HubSpot's UI (changeSource CRM_UI)."""
        resp = httpx.post(f"{self.url}/_sandbox/hubspot{path}", json=body or {}, timeout=30)
        if resp.status_code >= 300:
            raise HarnessError(
                f"hubspot sandbox {path}: HTTP {resp.status_code}: {resp.text[:200]}"
            )
        return resp.json()

    def _send_webhooks(self) -> None:
        """Deliver the buffered events now (HubSpot batches them for a moment) and wait."""
        self._control("/webhooks/flush")

    def _products(self, client: HubSpot, codes: list[str]) -> dict[str, Any]:
        """Products by SKU (``hs_sku``). ``IN`` values go lowercase, as HubSpot asks for strings."""
        if not codes:
            return {}
        wanted = {c.lower() for c in codes}
        found = _hs_search_paced(
            client.crm.objects.search_api.do_search,
            "products",
            HsSearch(
                filter_groups=[
                    {
                        "filters": [
                            {
                                "propertyName": "hs_sku",
                                "operator": "IN",
                                "values": sorted({c.lower() for c in codes}),
                            }
                        ]
                    }
                ],
                properties=["hs_sku", "price", "name"],
                limit=100,
            ),
        )
        indexed = {p.properties["hs_sku"]: p for p in found.results if p.properties.get("hs_sku")}
        created = {c: p for c, p in self.created_products.items() if c.lower() in wanted}
        return {**created, **indexed}

    def seed_catalog(self) -> None:
        from sandbox.scenarios import CATALOG

        client = self.client
        have = self._products(client, [p.code for p in CATALOG])
        missing = [p for p in CATALOG if p.code not in have]
        if missing:
            made = client.crm.objects.batch_api.create(
                "products",
                HsBatchCreate(
                    inputs=[
                        {
                            "properties": {
                                "name": p.name,
                                "hs_sku": p.code,
                                "price": f"{p.unit_price / 100:.2f}",
                                "recurringbillingfrequency": "monthly",
                                "hs_recurring_billing_period": "P12M",
                            }
                        }
                        for p in missing
                    ]
                ),
            )
            # products have no unique key, and search shows new ones only after its index
            # caught up (seconds): later look-ups by SKU use what this driver created meanwhile
            for product in made.results:
                self.created_products[product.properties["hs_sku"]] = product

    def create_account(
        self,
        name: str,
        tier: str = "SMB",
        billing_customer_id: str | None = None,
        billing: str | None = None,
    ) -> str:
        properties = {"name": name, "customer_tier": tier}
        if billing_customer_id:
            properties["billing_customer_id"] = billing_customer_id
            properties["billing_platform"] = billing or ""
        company = self.client.crm.objects.basic_api.create(
            "companies", HsCreate(properties=properties)
        )
        return str(company.id)

    def _contact(self, client: HubSpot, email: str, account_id: str) -> str:
        try:
            found = client.crm.objects.basic_api.get_by_id("contacts", email, id_property="email")
            return str(found.id)
        except HsNotFound:
            pass
        local = email.split("@", 1)[0]
        contact = client.crm.objects.basic_api.create(
            "contacts",
            HsCreate(
                properties={"email": email, "firstname": local.title(), "lastname": "Buyer"},
                associations=[_hs_assoc(account_id, 279, 1)],
            ),
        )
        return str(contact.id)

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
        client = self.client
        products = self._products(client, [code for code, *_ in lines])
        associations = [_hs_assoc(account_id, 341, 5)]  # deal → company, primary
        if contact_email:
            associations.append(_hs_assoc(self._contact(client, contact_email, account_id), 3))
        amount = sum(q * price * (1 - pct / 100) for _, q, price, pct in lines)
        today = time.strftime("%Y-%m-%dT00:00:00Z", time.gmtime())
        properties = {
            "dealname": name,
            "pipeline": "default",
            "dealstage": "contractsent",
            "amount": f"{amount / 100:.2f}",
            "deal_currency_code": "USD",
            "closedate": today,
            "term_months": str(term_months),
        }
        if payment_terms:
            properties["payment_terms"] = payment_terms
        deal = client.crm.objects.basic_api.create(
            "deals", HsCreate(properties=properties, associations=associations)
        )
        inputs = []
        for code, quantity, unit_price, discount in lines:
            line = {
                "quantity": str(quantity),
                "price": f"{unit_price / 100:.2f}",
                "hs_discount_percentage": str(discount),
            }
            product = products.get(code)
            if product is not None:  # name, SKU and billing terms come from the product
                line["hs_product_id"] = str(product.id)
            else:  # a custom line, not from the product library
                line.update({"name": code, "hs_sku": code, "recurringbillingfrequency": "monthly"})
            inputs.append({"properties": line, "associations": [_hs_assoc(str(deal.id), 20)]})
        if inputs:
            client.crm.objects.batch_api.create("line_items", HsBatchCreate(inputs=inputs))
        return str(deal.id)

    def win(self, opportunity_id: str) -> None:
        """A rep drags the deal to Closed Won: ``deal.propertyChange`` (dealstage → closedwon,
        changeSource CRM_UI), signed v3, to the configured targets."""
        self._control(
            f"/objects/deals/{opportunity_id}/ui_update", {"properties": {"dealstage": "closedwon"}}
        )
        self._send_webhooks()

    def open_case(self, account_id: str | None, subject: str, description: str = "") -> str:
        """A support rep opens a ticket on the company: ``ticket.creation`` (CRM_UI)."""
        body: dict[str, Any] = {
            "properties": {
                "subject": subject,
                "content": description,
                "hs_pipeline": "0",
                "hs_pipeline_stage": "1",
                "hs_ticket_priority": "MEDIUM",
            }
        }
        if account_id:
            body["associations"] = [_hs_assoc(account_id, 339, 26)]  # ticket → company, primary
        ticket = self._control("/objects/tickets", body)
        self._send_webhooks()
        return str(ticket["id"])

    def account(self, account_id: str) -> dict[str, Any]:
        company = self.client.crm.objects.basic_api.get_by_id(
            "companies", account_id, properties=list(_HS_ACCOUNT_FIELDS)
        )
        return {"id": str(company.id), **company.properties}

    def opportunity(self, opportunity_id: str) -> dict[str, Any]:
        deal = self.client.crm.objects.basic_api.get_by_id(
            "deals", opportunity_id, properties=list(_HS_DEAL_FIELDS)
        )
        return {"id": str(deal.id), **deal.properties}

    def tasks(self, account_id: str) -> list[dict[str, Any]]:
        from connectors.hubspot import note_text

        client = self.client
        v4 = client.crm.associations.v4.basic_api
        owners = [("companies", account_id)] + [
            ("deals", str(r.to_object_id))
            for r in v4.get_page("companies", account_id, "deals").results
        ]
        ids = sorted(
            {str(r.to_object_id) for t, i in owners for r in v4.get_page(t, i, "tasks").results},
            key=int,
        )
        if not ids:
            return []
        found = client.crm.objects.batch_api.read(
            "tasks",
            HsBatchRead(
                inputs=[{"id": i} for i in ids],
                properties=["hs_task_subject", "hs_task_body", "hubspot_owner_id"],
            ),
        )
        return sorted(
            (
                {
                    "id": str(t.id),
                    "subject": t.properties.get("hs_task_subject") or "",
                    "description": note_text(t.properties.get("hs_task_body")),
                    "owner_id": t.properties.get("hubspot_owner_id") or None,
                }
                for t in found.results
            ),
            key=lambda t: int(t["id"]),
        )


#: what ``HubSpotDriver.account`` / ``.opportunity`` read back
_HS_ACCOUNT_FIELDS = (
    "name",
    "customer_tier",
    "hubspot_owner_id",
    "billing_customer_id",
    "billing_platform",
    "billing_subscription_id",
    "billing_status",
    "mrr",
    "churn_risk",
    "churn_level",
    "churn_reasons",
    "churn_narrative",
    "churn_scored_at",
)
_HS_DEAL_FIELDS = (
    "dealname",
    "dealstage",
    "amount",
    "closedate",
    "hs_is_closed_won",
    "term_months",
    "payment_terms",
    "start_date",
    "billing_subscription_id",
    "billing_status",
    "mrr",
)


def _hs_search_paced(search: Any, *args: Any) -> Any:
    """A CRM search that waits out HubSpot's per-second search limit (429 ``SECONDLY``, a few
    requests per second per portal) instead of failing the scenario."""
    for _ in range(20):
        try:
            return search(*args)
        except HsApiException as exc:
            if exc.status != 429:
                raise
            time.sleep(float((exc.headers or {}).get("Retry-After") or 1))
    return search(*args)


def _hs_assoc(to_id: str, *type_ids: int) -> dict[str, Any]:
    """A v3 create body's association: HubSpot-defined type IDs (a primary one included)."""
    return {
        "to": {"id": to_id},
        "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": t} for t in type_ids
        ],
    }


def drivers(settings: Settings, billing: Any, crm: Any) -> tuple[BillingDriver, CrmDriver]:
    """Drivers for the configured pair; ``billing``/``crm`` are the built connectors."""
    if settings.billing == "chargebee":
        assert settings.chargebee and settings.chargebee.api_url
        b: BillingDriver = ChargebeeDriver(settings.chargebee.api_url, billing)
    elif settings.billing == "recurly":
        assert settings.recurly and settings.recurly.api_url
        b = RecurlyDriver(settings.recurly.api_url, billing)
    elif settings.billing == "zuora":
        assert settings.zuora
        b = ZuoraDriver(settings.zuora.api_url, billing)
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


@dataclass
class RecurlyDriver:
    """Recurly through the official ``recurly`` client (the connector's own), plus the sandbox's
    control routes for what only Recurly itself does (its scheduled renewal attempts)."""

    url: str
    connector: Any  # connectors.recurly.RecurlyBilling
    name: str = "recurly"

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str) -> None:
        from sandbox.recurly.seeding import dunning_seed

        _seed(self.url, dunning_seed(customers, suffix))

    def decline(self, invoice_id: str) -> None:
        """Recurly's own scheduled attempt on the invoice declines with the card's code (the
        sandbox sends payment/failed and charge_invoice/past_due). Not a ``collect``: that is
        how RevBridge retries, and its notifications are dropped as echoes."""
        resp = httpx.post(
            f"{self.url}/_sandbox/recurly/invoices/{invoice_id}/fail_payment", json={}, timeout=10
        )
        if resp.status_code != 200:
            raise HarnessError(f"declining {invoice_id} failed: HTTP {resp.status_code}")
        if resp.json().get("status") != "declined":
            raise HarnessError(
                f"the sandbox accepted a payment it should have declined ({invoice_id})"
            )

    def pay(self, invoice_id: str, amount: int) -> None:
        """Paid outside Recurly (a wire): ``PUT /invoices/{id}/mark_successful``."""
        self.connector.client.mark_invoice_successful(invoice_id)

    def seed_catalog(self) -> None:
        from sandbox.recurly.seeding import catalog_plans

        _seed(self.url, {"plans": catalog_plans()})

    def create_customer(
        self, company: str, email: str, crm: str | None = None, crm_account_id: str | None = None
    ) -> str:
        import uuid

        body: dict[str, Any] = {
            "code": f"hand-{uuid.uuid4().hex[:12]}",
            "company": company,
            "email": email,
            "billing_info": {"token_id": "tok_visa"},
        }
        if crm and crm_account_id:
            body["custom_fields"] = [
                {"name": "crm", "value": crm},
                {"name": "crm_account_id", "value": crm_account_id},
            ]
        return self.connector.client.create_account(body).code

    def customers(self, email: str | None = None, company: str | None = None) -> list[dict]:
        params: dict[str, Any] = {"limit": 200}
        if email is not None:
            params["email"] = email
        found = self.connector.client.list_accounts(params=params).items()
        return [
            _recurly_account(a)
            for a in found
            if a.state == "active" and (company is None or a.company == company)
        ]

    def subscriptions(self, customer_id: str) -> list[dict]:
        found = self.connector.client.list_account_subscriptions(
            f"code-{customer_id}", params={"limit": 200}
        ).items()
        return [
            {
                "id": s.id,
                "state": s.state,
                "plan": s.plan.code,
                "quantity": s.quantity,
                "add_ons": {a.add_on.code: a.quantity for a in s.add_ons or []},
                "total": s.total,
                "custom_fields": {f.name: f.value for f in s.custom_fields or []},
                "coupons": [r.coupon.code for r in s.coupon_redemptions or []],
            }
            for s in found
        ]


def _recurly_account(a: Any) -> dict[str, Any]:
    return {
        "id": a.code,
        "company": a.company,
        "email": a.email,
        "state": a.state,
        "custom_fields": {f.name: f.value for f in a.custom_fields or []},
    }


@dataclass
class ZuoraDriver:
    """Zuora through the connector's own authenticated ``httpx`` client (there is no official
    Python client in use: billing-apis.md §3), as a Zuora admin or the customer would act."""

    url: str
    connector: Any  # connectors.zuora.ZuoraBilling
    name: str = "zuora"

    def seed(self, customers: tuple[DunningCustomer, ...], suffix: str) -> None:
        from sandbox.zuora.scenarios import zuora_seed

        _seed(self.url, zuora_seed(customers, suffix))

    def decline(self, invoice_id: str) -> None:
        """Collect now (invoice-collect); the card declines: ``success:false`` with a
        category-99 gateway reason, and the tenant sends its Payment Declined callout."""
        from connectors.base import ConnectorError

        invoice = self.connector.request("GET", f"/v1/invoices/{invoice_id}")
        try:
            self.connector.request(
                "POST",
                "/v1/operations/invoice-collect",
                json={"accountKey": invoice["accountId"], "invoiceId": invoice_id},
            )
        except ConnectorError as err:
            if (err.code or "").endswith("99"):
                return
            raise
        raise HarnessError(f"the sandbox accepted a payment it should have declined ({invoice_id})")

    def pay(self, invoice_id: str, amount: int) -> None:
        """The customer puts a working card on file and pays the invoice in the portal: an
        electronic payment (Zuora sends Payment Processed only for electronic payments)."""
        invoice = self.connector.request("GET", f"/v1/invoices/{invoice_id}")
        account = invoice["accountId"]
        httpx.post(
            f"{self.url}/_sandbox/zuora/accounts/{account}/card",
            json={"decline_code": None},
            timeout=10,
        ).raise_for_status()
        self.connector.request(
            "POST",
            "/v1/payments",
            json={
                "type": "Electronic",
                "accountId": account,
                "amount": amount / 100,
                "currency": invoice["currency"],
                "invoices": [{"invoiceId": invoice_id, "amount": amount / 100}],
            },
        )

    def seed_catalog(self) -> None:
        from sandbox.zuora.scenarios import catalog

        _seed(self.url, {"products": catalog()})

    def create_customer(
        self, company: str, email: str, crm: str | None = None, crm_account_id: str | None = None
    ) -> str:
        from connectors.zuora import CRM_SYSTEM_FIELD  # the link exactly as RevBridge writes it

        body: dict[str, Any] = {
            "name": company,
            "currency": "USD",
            "billToContact": {"firstName": "Billing", "lastName": "Contact", "workEmail": email},
        }
        if crm and crm_account_id:
            body.update({"crmId": crm_account_id, CRM_SYSTEM_FIELD: crm})
        return self.connector.request("POST", "/v1/accounts", json=body)["accountId"]

    def customers(self, email: str | None = None, company: str | None = None) -> list[dict]:
        filters = ["status.EQ:Active"]
        if company is not None:
            filters.append(f"name.EQ:{company}")
        params = [("filter[]", f) for f in filters] + [("expand[]", "billTo"), ("pageSize", "99")]
        rows = self.connector.request("GET", "/object-query/accounts", params=params)["data"]
        if email is not None:
            rows = [r for r in rows if (r.get("billTo") or {}).get("workEmail") == email]
        return rows

    def subscriptions(self, customer_id: str) -> list[dict]:
        """Zuora's subscription objects, with ``id`` the subscription *number* (what RevBridge
        calls a Zuora subscription: its ID changes with every version; ``zuora_id`` keeps it)
        and ``status`` in the domain's words, as the other drivers report them."""
        from connectors.zuora import subscription_status

        found = self.connector.request(
            "GET", f"/v1/subscriptions/accounts/{customer_id}", params={"pageSize": 40}
        )
        return [
            {
                **s,
                "id": s["subscriptionNumber"],
                "zuora_id": s["id"],
                "status": subscription_status(s),
            }
            for s in found.get("subscriptions") or []
        ]

    def downgrade(self, subscription_number: str, quantity: int) -> None:
        """The customer drops seats: an UpdateProduct order on the subscription's first plan
        (its MRR metric is what churn reads as a downgrade)."""
        sub = self.connector.request("GET", f"/v1/subscriptions/{subscription_number}")
        plan = sub["ratePlans"][0]
        self.connector.request(
            "POST",
            "/v1/orders",
            json={
                "orderDate": time.strftime("%Y-%m-%d", time.gmtime()),
                "existingAccountNumber": sub["accountNumber"],
                "subscriptions": [
                    {
                        "subscriptionNumber": subscription_number,
                        "orderActions": [
                            {
                                "type": "UpdateProduct",
                                "updateProduct": {
                                    "ratePlanId": plan["id"],
                                    "chargeUpdates": [
                                        {
                                            "chargeNumber": plan["ratePlanCharges"][0]["number"],
                                            "pricing": {"recurringPerUnit": {"quantity": quantity}},
                                        }
                                    ],
                                },
                            }
                        ],
                    }
                ],
            },
        )
