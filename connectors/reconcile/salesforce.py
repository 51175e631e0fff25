"""Salesforce's side of the reconciliation.

Reads: won opportunities with their line items in one SOQL query (a parent-to-child subquery,
``query_all`` following ``nextRecordsUrl``; a subquery Salesforce pages is followed too), the
accounts linked to billing or typed as customers, and the ``Billing_Exception__c`` records kept
so far — a few requests per 2,000 rows. Writes: exceptions upserted by their stable
``Exception_Id__c`` through sObject Collections (``PATCH /composite/sobjects/Billing_Exception__c/
Exception_Id__c``, 200 a request, ``allOrNone: false`` so one bad record never holds back the
rest), and restored fields as one Collections ``PATCH`` per 200 accounts. Both are field sets
keyed by stable IDs, so a retried request changes nothing twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from simple_salesforce import format_soql

from connectors.base import ConnectorError
from connectors.reconcile.views import CrmSide, minor
from connectors.salesforce import SalesforceCrm, fit
from domain.reconcile import (
    Account,
    Deal,
    ExceptionRecord,
    ExceptionStatus,
    FieldRestore,
    Line,
    StoredException,
)

CHUNK = 200  # sObject Collections' limit
OBJECT = "Billing_Exception__c"
#: billing-owned account fields this CRM holds, and how each is written
FIELDS = {
    "mrr": "MRR__c",
    "status": "Billing_Status__c",
    # the account sync's golden-record fields (connectors/sync/salesforce.py), where the org has
    # them: an org without them is compared on MRR and status only
    "plan": "Billing_Plan__c",
    "renewal": "Next_Renewal__c",
}
BASE_FIELDS = ("mrr", "status")


class SalesforceBook:
    name = "salesforce"

    def __init__(self, crm: SalesforceCrm) -> None:
        self.crm = crm

    # --- reads ------------------------------------------------------------------------------------

    def read_crm(self, billing: str, since: date | None) -> CrmSide:
        soql = (
            "SELECT Id, AccountId, Billing_Subscription_Id__c, "
            "(SELECT ProductCode, Product2.ProductCode, Quantity, UnitPrice, Discount "
            "FROM OpportunityLineItems) FROM Opportunity WHERE IsWon = true"
        )
        if since:
            soql += format_soql(" AND CloseDate >= {}", since)
        opps = self.crm.query(soql)
        deals = [
            Deal(
                opportunity_id=o["Id"],
                account_id=o.get("AccountId") or "",
                subscription_id=o.get("Billing_Subscription_Id__c") or None,
                lines=[_line(r) for r in self.crm._children(o, "OpportunityLineItems")],
            )
            for o in opps
        ]
        rows, holds = self._accounts()
        accounts = []
        for r in rows:
            platform = r.get("Billing_Platform__c")
            linked = r.get("Billing_Customer_Id__c") if platform in (None, billing) else None
            accounts.append(
                Account(
                    id=r["Id"],
                    is_customer=str(r.get("Type") or "").startswith("Customer") or bool(linked),
                    billing_customer_id=linked or None,
                    mrr=None if r.get("MRR__c") is None else minor(r["MRR__c"]),
                    status=r.get("Billing_Status__c"),
                    plan=r.get("Billing_Plan__c") or None,
                    renewal=_day(r.get("Next_Renewal__c")),
                    holds=holds,
                )
            )
        return CrmSide(deals=deals, accounts=accounts)

    def _accounts(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The linked and customer accounts with the billing-owned fields the org holds: all of
        them in one query, or — on an org without the account sync's plan and renewal fields
        (``INVALID_FIELD``) — MRR and status only."""
        where = " FROM Account WHERE Billing_Customer_Id__c != null OR Type LIKE 'Customer%'"
        base = (
            "SELECT Id, Type, Billing_Customer_Id__c, Billing_Platform__c, MRR__c, "
            "Billing_Status__c"
        )
        try:
            return self.crm.query(f"{base}, Billing_Plan__c, Next_Renewal__c{where}"), list(FIELDS)
        except ConnectorError as exc:
            if "INVALID_FIELD" not in f"{exc.code} {exc}":
                raise
        return self.crm.query(base + where), list(BASE_FIELDS)

    def stored_exceptions(self, closed_since: date) -> list[StoredException]:
        rows = self.crm.query(
            format_soql(
                "SELECT Exception_Id__c, Status__c, First_Seen__c, Resolved_On__c, Kind__c, "
                "Severity__c FROM Billing_Exception__c "
                "WHERE Status__c != 'Closed' OR Resolved_On__c >= {}",
                closed_since,
            )
        )
        return [
            StoredException(
                id=r["Exception_Id__c"],
                status=ExceptionStatus(r.get("Status__c") or "Open"),
                first_seen=date.fromisoformat(r["First_Seen__c"]),
                resolved_on=date.fromisoformat(r["Resolved_On__c"])
                if r.get("Resolved_On__c")
                else None,
                kind=r.get("Kind__c") or "",
                severity=r.get("Severity__c") or "",
            )
            for r in rows
            if r.get("Exception_Id__c") and r.get("First_Seen__c")
        ]

    # --- writes -----------------------------------------------------------------------------------

    def upsert_exceptions(self, records: list[ExceptionRecord]) -> dict[str, str]:
        failed: dict[str, str] = {}
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            body = {"allOrNone": False, "records": [_exception(r) for r in chunk]}
            results = self.crm._call(
                lambda sf, body=body: sf.restful(
                    f"composite/sobjects/{OBJECT}/Exception_Id__c", method="PATCH", json=body
                ),
                what="billing exceptions",
            )
            failed.update(_failures([r.id for r in chunk], results))
        return failed

    def restore_fields(self, fixes: list[FieldRestore]) -> dict[str, str]:
        by_account: dict[str, dict[str, Any]] = {}
        for f in fixes:
            value: Any = round(int(f.value) / 100, 2) if f.field == "mrr" else f.value
            by_account.setdefault(f.account_id, {})[FIELDS[f.field]] = value
        ids = list(by_account)
        failed: dict[str, str] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            body = {
                "allOrNone": False,
                "records": [
                    {"attributes": {"type": "Account"}, "id": a, **by_account[a]} for a in chunk
                ],
            }
            results = self.crm._call(
                lambda sf, body=body: sf.restful("composite/sobjects", method="PATCH", json=body),
                what="account fields",
            )
            failed.update(_failures(chunk, results))
        return failed

    def urls(self) -> dict[str, str]:
        base = self.crm.client.base_url.split("/services/")[0]
        return {"account": base + "/{id}", "opportunity": base + "/{id}"}

    def open_exceptions(self) -> list[dict[str, Any]]:
        """For ``revbridge reconcile --open``: every exception not closed, oldest first."""
        return self.crm.query(
            "SELECT Exception_Id__c, Kind__c, Severity__c, Status__c, First_Seen__c, "
            "Account__c, Billing_Customer_Id__c, Proposed_Fix__c, Approver_Role__c "
            "FROM Billing_Exception__c WHERE Status__c != 'Closed' "
            "ORDER BY First_Seen__c, Exception_Id__c"
        )


def _line(r: dict[str, Any]) -> Line:
    product = r.get("Product2") or {}
    return Line(
        product=r.get("ProductCode") or product.get("ProductCode") or "",
        quantity=round(r.get("Quantity") or 0),
        unit_price=minor(r.get("UnitPrice")),
        discount_percent=float(r.get("Discount") or 0),
    )


def _exception(r: ExceptionRecord) -> dict[str, Any]:
    fields = _exception_fields(r)
    if not r.evidence and not r.records:  # a closing record: keep what the record says
        for name in ("Account__c", "Billing_Customer_Id__c", "Records__c", "Evidence__c",
                     "Proposed_Fix__c", "Approver_Role__c"):  # fmt: skip
            fields.pop(name)
    return fields


def _exception_fields(r: ExceptionRecord) -> dict[str, Any]:
    return {
        "attributes": {"type": OBJECT},
        "Exception_Id__c": r.id,
        "Kind__c": r.kind.value,
        "Severity__c": r.severity.value,
        "Status__c": r.status.value,
        "Account__c": r.account_id,
        "Billing_Customer_Id__c": r.customer_id,
        "Records__c": fit(", ".join(r.records), 255, marker=False),
        "Evidence__c": fit(r.evidence_text, 32_000),
        "Proposed_Fix__c": fit(r.fix, 255, marker=False),
        "Approver_Role__c": r.approver_role,
        "First_Seen__c": r.first_seen.isoformat(),
        "Last_Seen__c": r.last_seen.isoformat(),
        "Resolved_On__c": r.resolved_on.isoformat() if r.resolved_on else None,
        "Age_Days__c": (r.last_seen - r.first_seen).days,
        "Resolution__c": fit(r.resolution, 255, marker=False) or None,
    }


def _failures(ids: list[str], results: Any) -> dict[str, str]:
    failed = {}
    for rid, res in zip(ids, results or [], strict=False):
        if not res.get("success"):
            errs = res.get("errors") or [{}]
            failed[rid] = str(errs[0].get("statusCode") or "error")
    return failed


def _day(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None
