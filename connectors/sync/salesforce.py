"""Salesforce for the account sync: the Account's golden fields in one SOQL read, a field set per
account, ONE sObject Collections PATCH (``composite/sobjects``, up to 200 records,
``allOrNone: false``) for a batch of minor changes, and the book for linking (keyset pages by
Id, so an interrupted backfill resumes where it stopped)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from simple_salesforce import format_soql

from connectors.base import ConnectorError, ErrorKind
from connectors.salesforce import SalesforceCrm
from connectors.sync.shapes import address
from domain.linking import CrmParty

#: golden field → Account field
FIELDS = {
    "account_name": "Name",
    "account_owner": "OwnerId",
    "segment": "Customer_Tier__c",
    "plan": "Billing_Plan__c",
    "mrr": "MRR__c",
    "subscription_status": "Billing_Status__c",
    "next_renewal": "Next_Renewal__c",
    "payment_health": "Payment_Health__c",
    "billing_contact": "Billing_Contact_Email__c",
    "billing_contact_name": "Billing_Contact_Name__c",
    # the churn use case writes it; the sync reads it for the health profile
    "churn_level": "Churn_Level__c",
}
#: the health profile (domain/health.py) → Account fields; written, never read back (the run
#: remembers what it wrote and writes again only when a figure changed)
HEALTH = {
    "health_summary": "Health_Summary__c",
    "subscription_health": "Subscription_Health__c",
    "tenure_months": "Tenure_Months__c",
    "payment_success_rate": "Payment_Success_Rate__c",
    "open_dunning": "Open_Dunning__c",
    "usage_trend": "Usage_Trend__c",
}
#: the golden billing address → the Account's standard Billing address parts (the compound
#: ``BillingAddress`` is read-only: its parts are written one by one; the street holds line 1
#: and line 2 on two lines, as the Salesforce UI's street box does)
ADDRESS = {
    "city": "BillingCity",
    "state": "BillingState",
    "postal_code": "BillingPostalCode",
    "country": "BillingCountry",
}
STREET = "BillingStreet"
_MONEY = {"mrr"}
_SELECT = ", ".join(["Id", *FIELDS.values(), STREET, *ADDRESS.values()])


def _to_golden(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _MONEY:
        return int(round(float(value) * 100))
    return value


def _address_from_sf(row: dict[str, Any]) -> dict[str, str] | None:
    line1, _, line2 = str(row.get(STREET) or "").partition("\n")
    parts = {"line1": line1, "line2": line2, **{k: row.get(sf) for k, sf in ADDRESS.items()}}
    return address(parts)


def _address_to_sf(value: Any) -> dict[str, Any]:
    addr = value or {}
    street = "\n".join(p for p in (addr.get("line1"), addr.get("line2")) if p)
    return {STREET: street or None, **{sf: addr.get(k) or None for k, sf in ADDRESS.items()}}


def _to_sf(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _MONEY:
        return round(int(value) / 100, 2)
    if isinstance(value, datetime | date):
        return value.isoformat()[:10]
    return value


class SalesforceSync:
    def __init__(self, crm: SalesforceCrm) -> None:
        self.crm = crm
        self.name = crm.name

    def sync_find(self, billing: str, customer_id: str) -> str | None:
        account = self.crm.find_account(billing, customer_id)
        return account.id if account else None

    def sync_view(self, account_id: str) -> dict[str, Any]:
        row = self.crm._one(
            format_soql("SELECT {:literal} FROM Account WHERE Id = {}", _SELECT, account_id),
            "account",
        )
        view = {
            name: _to_golden(name, row.get(sf))
            for name, sf in FIELDS.items()
            if row.get(sf) is not None
        }
        if addr := _address_from_sf(row):
            view["billing_address"] = addr
        return view

    @staticmethod
    def _record(account_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        body = {FIELDS[k]: _to_sf(k, v) for k, v in fields.items() if k in FIELDS}
        body.update({HEALTH[k]: v for k, v in fields.items() if k in HEALTH})
        if "billing_address" in fields:
            body.update(_address_to_sf(fields["billing_address"]))
        return {"attributes": {"type": "Account"}, "id": account_id, **body}

    def sync_write(self, account_id: str, fields: dict[str, Any]) -> None:
        body = self._record(account_id, fields)
        body.pop("attributes"), body.pop("id")
        if body:
            self.crm._call_record(
                lambda sf: sf.Account.update(account_id, body), f"account {account_id}"
            )

    def sync_bulk_write(self, records: dict[str, dict[str, Any]]) -> dict[str, str]:
        if not records:
            return {}
        if len(records) > 200:
            raise ConnectorError(self.name, ErrorKind.PERMANENT, "at most 200 records per call")
        return self._collection(
            {i: self._record(i, f) for i, f in records.items()}, "account sync batch"
        )

    def _collection(self, records: dict[str, dict[str, Any]], what: str) -> dict[str, str]:
        """ONE sObject Collections PATCH, each record on its own (``allOrNone: false``)."""
        ids = list(records)
        body = {
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "id": i, **records[i]}
                if "attributes" not in records[i]
                else records[i]
                for i in ids
            ],
        }
        results = self.crm._call(
            lambda sf: sf.restful("composite/sobjects", method="PATCH", json=body), what=what
        )
        failed: dict[str, str] = {}
        for account_id, result in zip(ids, results or [], strict=False):
            if not result.get("success"):
                errors = result.get("errors") or [{}]
                failed[account_id] = str(errors[0].get("statusCode") or "UNKNOWN")
        return failed

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[CrmParty], str | None]:
        """One page (Salesforce's own: up to 2,000 rows); ``cursor`` is its ``nextRecordsUrl``."""
        if cursor:
            answer = self.crm._call(
                lambda sf: sf.query_more(cursor, identifier_is_url=True), what="accounts"
            )
        else:
            soql = (
                "SELECT Id, Name, Website, Billing_Customer_Id__c, "
                "(SELECT Email FROM Contacts) FROM Account ORDER BY Id"
            )
            answer = self.crm._call(lambda sf: sf.query(soql), what="accounts")
        parties = []
        for r in answer["records"]:
            contacts = (r.get("Contacts") or {}).get("records") or []
            website = (r.get("Website") or "").lower()
            domain = website.split("//")[-1].split("/")[0] or None
            parties.append(
                CrmParty(
                    id=r["Id"],
                    name=r.get("Name"),
                    domain=domain,
                    emails=[c["Email"] for c in contacts if c.get("Email")],
                    billing_customer_id=r.get("Billing_Customer_Id__c"),
                )
            )
        return parties, answer.get("nextRecordsUrl") or None

    def sync_link_many(self, links: dict[str, str], billing: str) -> dict[str, str]:
        records = {
            account_id: {"Billing_Customer_Id__c": customer_id, "Billing_Platform__c": billing}
            for account_id, customer_id in links.items()
        }
        return self._collection(records, "billing links")
