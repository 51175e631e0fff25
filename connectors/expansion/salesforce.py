"""Salesforce for usage-based expansion (crm-apis.md), wrapping :class:`SalesforceCrm`.

Every record is an upsert on its ``RevBridge_Key__c`` external ID (``PATCH
/sobjects/<Object>/RevBridge_Key__c/<key>``), so a retried call after a committed-then-timed-out
one finds the record instead of making a second:

- ``Expansion_Signal__c`` on the account: status, forecast, band, confidence, reasons, the
  recommended price, the opportunity and quote.
- ``Opportunity`` (``Type`` "Existing Customer - Upgrade") for the account owner, with one
  opportunity product for the upgrade (created once: a line exists → left alone), then a
  ``Quote`` in ``Draft`` on the standard price book and its ``QuoteLineItem``. Nothing here
  sends a quote: ``Status`` stays ``Draft`` until a person presents it.
- An opportunity a person has closed is never reopened or rewritten: an update touches an open
  one only (amount, close date, description).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from simple_salesforce import format_soql

from connectors.base import ConnectorError
from connectors.salesforce import SalesforceCrm, fit
from domain.expansion import (
    ExpansionDraft,
    ExpansionLink,
    ExpansionRecords,
    OpportunityState,
    SignalRecord,
)
from domain.models import CrmAccount

KEY = "RevBridge_Key__c"
OPEN_STAGE = "Qualification"
#: Salesforce's answer for an object or field the org does not have (Quotes off, setup not run)
_MISSING_SCHEMA = {"INVALID_TYPE", "INVALID_FIELD", "NOT_FOUND"}


def _money(minor: int) -> float:
    return round(minor / 100, 2)


class SalesforceExpansion:
    name = "salesforce"

    def __init__(self, crm: SalesforceCrm) -> None:
        self.crm = crm

    def _upsert(self, sobject: str, key: str, fields: dict[str, Any]) -> str:
        def call(sf: Any) -> Any:
            return getattr(sf, sobject).upsert(f"{KEY}/{key}", fields, raw_response=True)

        resp = self.crm._call(call, what=sobject)
        if resp.status_code in (200, 201) and resp.content:
            return str(resp.json()["id"])
        row = self.crm._call(lambda sf: getattr(sf, sobject).get_by_custom_id(KEY, key), sobject)
        return str(row["Id"])

    def _rows(self, soql: str) -> list[dict[str, Any]]:
        return self.crm.query(soql)

    # --- reads ------------------------------------------------------------------------------------

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        return self.crm.find_account(billing, customer_id)

    def opportunity_state(self, opportunity_id: str) -> OpportunityState:
        rows = self._rows(
            format_soql(
                "SELECT Id, StageName, IsClosed, IsWon FROM Opportunity WHERE Id = {}",
                opportunity_id,
            )
        )
        if not rows:
            return OpportunityState(exists=False, closed=True)
        r = rows[0]
        return OpportunityState(
            closed=bool(r.get("IsClosed")), won=bool(r.get("IsWon")), stage=r.get("StageName") or ""
        )

    def expansion_of(self, opportunity_id: str) -> ExpansionLink | None:
        """The expansion signal that opened this opportunity, if any (quote-to-cash asks it of
        every won deal: an org without the object answers None)."""
        try:
            rows = self._rows(
                format_soql(
                    "SELECT Billing_Customer_Id__c, Billing_Subscription_Id__c, Metered_Item__c, "
                    "Current_Price__c, Recommended_Price__c, Workflow_Id__c "
                    "FROM Expansion_Signal__c WHERE Opportunity__c = {} LIMIT 1",
                    opportunity_id,
                )
            )
        except ConnectorError as err:
            if err.code in _MISSING_SCHEMA:
                return None
            raise
        if not rows:
            return None
        r = rows[0]
        if not (r.get("Billing_Subscription_Id__c") and r.get("Recommended_Price__c")):
            return None
        return ExpansionLink(
            opportunity_id=opportunity_id,
            customer_id=r["Billing_Customer_Id__c"],
            subscription_id=r["Billing_Subscription_Id__c"],
            from_price_id=r.get("Current_Price__c") or "",
            to_price_id=r["Recommended_Price__c"],
            workflow_id=r.get("Workflow_Id__c") or "",
            item=r.get("Metered_Item__c") or "",
        )

    # --- writes -----------------------------------------------------------------------------------

    def upsert_signal(self, record: SignalRecord) -> str:
        fields: dict[str, Any] = {
            "Account__c": record.account_id,
            "Status__c": record.status,
            "Billing_Platform__c": record.billing,
            "Billing_Customer_Id__c": record.customer_id,
            "Billing_Subscription_Id__c": record.subscription_id,
            "Metered_Item__c": record.item,
            "Current_Price__c": record.current_price_id,
            "Recommended_Price__c": record.recommended_price_id,
            "Upgrade_MRR__c": _money(record.upgrade_mrr),
            "Days_To_Limit__c": record.days_to_limit,
            "Crossing_Date__c": _iso(record.crossing),
            "Crossing_Earliest__c": _iso(record.crossing_earliest),
            "Crossing_Latest__c": _iso(record.crossing_latest),
            "Confidence__c": round(record.confidence * 100, 2),
            "Projected_Usage__c": round(record.projected_per_period, 2),
            "Included_Units__c": record.included_per_period,
            "Reasons__c": fit("\n".join(record.reasons), 32768),
            "Close_Reason__c": fit(record.close_reason, 255) if record.close_reason else None,
            "Workflow_Id__c": record.workflow_id,
        }
        if record.opportunity_id:
            fields["Opportunity__c"] = record.opportunity_id
        if record.quote_id:
            fields["Quote__c"] = record.quote_id
        return self._upsert("Expansion_Signal__c", record.key, fields)

    def upsert_expansion(self, draft: ExpansionDraft) -> ExpansionRecords:
        existing = self._rows(
            format_soql(
                "SELECT Id, IsClosed FROM Opportunity WHERE RevBridge_Key__c = {}",
                draft.opportunity_key,
            )
        )
        if existing and existing[0].get("IsClosed"):
            return ExpansionRecords(
                opportunity_id=existing[0]["Id"], created=False, opportunity_closed=True
            )
        fields: dict[str, Any] = {
            "CloseDate": draft.close_date.isoformat(),
            "Amount": _money(draft.upgrade_mrr * 12),
            "Description": fit(draft.description, 32000),
        }
        if not existing:
            fields.update(
                AccountId=draft.account_id,
                Name=fit(draft.name, 120),
                StageName=OPEN_STAGE,
                Type="Existing Customer - Upgrade",
            )
            if draft.owner_id:
                fields["OwnerId"] = draft.owner_id
        opp_id = self._upsert("Opportunity", draft.opportunity_key, fields)
        entry = self._entry(draft.product_code) if draft.product_code else None
        book = entry["Pricebook2Id"] if entry else self._standard_book()
        if entry is not None:
            lines = self._rows(
                format_soql("SELECT Id FROM OpportunityLineItem WHERE OpportunityId = {}", opp_id)
            )
            if not lines:
                self.crm._call(
                    lambda sf: sf.OpportunityLineItem.create(
                        {
                            "OpportunityId": opp_id,
                            "PricebookEntryId": entry["Id"],
                            "Quantity": draft.quantity,
                            "UnitPrice": _money(draft.unit_amount),
                        }
                    ),
                    what="opportunity product",
                )
        quote_fields: dict[str, Any] = {
            "Description": fit(draft.description, 32000),
            "ExpirationDate": _iso(draft.quote_expires),
        }
        quote_exists = self._rows(
            format_soql("SELECT Id FROM Quote WHERE RevBridge_Key__c = {}", draft.quote_key)
        )
        if not quote_exists:
            quote_fields.update(
                Name=fit(f"{draft.name} (draft)", 255),
                OpportunityId=opp_id,
                Status="Draft",
                Pricebook2Id=book,
            )
        quote_id = self._upsert("Quote", draft.quote_key, quote_fields)
        if entry is not None:
            line: dict[str, Any] = {
                "Quantity": draft.quantity,
                "UnitPrice": _money(draft.unit_amount),
                "Discount": draft.discount_percent or None,
            }
            line_exists = self._rows(
                format_soql(
                    "SELECT Id FROM QuoteLineItem WHERE RevBridge_Key__c = {}",
                    draft.quote_key + "-1",
                )
            )
            if not line_exists:
                line.update(QuoteId=quote_id, PricebookEntryId=entry["Id"])
            self._upsert("QuoteLineItem", draft.quote_key + "-1", line)
        return ExpansionRecords(opportunity_id=opp_id, quote_id=quote_id, created=not existing)

    def close_expansion(
        self, opportunity_id: str, quote_id: str | None, reason: str
    ) -> OpportunityState:
        state = self.opportunity_state(opportunity_id)
        if state.closed:
            return state  # a person closed it (won or lost): theirs
        self.crm._call(
            lambda sf: sf.Opportunity.update(
                opportunity_id,
                {"StageName": "Closed Lost", "NextStep": fit(f"RevBridge: {reason}", 255)},
            ),
            what="opportunity",
        )
        if quote_id:
            self.crm._call(
                lambda sf: sf.Quote.update(quote_id, {"Status": "Rejected"}), what="quote"
            )
        return OpportunityState(closed=True, won=False, stage="Closed Lost")

    def _standard_book(self) -> str | None:
        rows = self._rows("SELECT Id FROM Pricebook2 WHERE IsStandard = true LIMIT 1")
        return rows[0]["Id"] if rows else None

    def _entry(self, product_code: str) -> dict[str, Any] | None:
        book = self._standard_book()
        if book is None:
            return None
        rows = self._rows(
            format_soql(
                "SELECT Id, Pricebook2Id FROM PricebookEntry "
                "WHERE Pricebook2Id = {} AND ProductCode = {} LIMIT 1",
                book,
                product_code,
            )
        )
        return rows[0] if rows else None


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None
