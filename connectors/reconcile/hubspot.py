"""HubSpot's side of the reconciliation.

Reads: every deal (the objects list, 100 a request, with its company and line-item
associations), the won ones' line items and their products through batch reads (100 a request),
every company with its billing properties, and the exception tickets kept so far — never one
call per record. Exceptions are **tickets** upserted in bulk by their stable ID in the unique
``revbridge_key`` property (``POST /crm/v3/objects/tickets/batch/upsert``, 100 a request: a
retry updates the same ticket), in the support pipeline (``0``; stage ``4`` once closed),
associated with their company (v4 batch associate, 100 a request), their details in ticket
properties of the ``revbridge`` group (``rx_*``) that the first write creates when the portal
lacks them. Restores are one companies batch update per 100.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from hubspot.crm.associations.v4 import (
    BatchInputPublicDefaultAssociationMultiPost,
    PublicDefaultAssociationMultiPost,
    PublicObjectId,
)
from hubspot.crm.companies import BatchInputSimplePublicObjectBatchInput as CompanyBatchUpdate
from hubspot.crm.line_items import BatchReadInputSimplePublicObjectId as LineItemBatchRead
from hubspot.crm.products import BatchReadInputSimplePublicObjectId as ProductBatchRead
from hubspot.crm.properties import PropertyCreate, PropertyGroupCreate
from hubspot.crm.tickets import BatchInputSimplePublicObjectBatchInputUpsert as TicketUpsert

from connectors.base import ConnectorError
from connectors.hubspot import (
    _LINE_PROPERTIES,
    CLOSED_WON,
    KEY_PROPERTY,
    TEXT_MAX,
    HubSpotCrm,
    _assoc_ids,
    _line,
)
from connectors.reconcile.views import CrmSide, minor
from domain.reconcile import (
    Account,
    Deal,
    ExceptionRecord,
    ExceptionStatus,
    FieldRestore,
    Line,
    StoredException,
)

BATCH = 100
PIPELINE, OPEN_STAGE, CLOSED_STAGE = "0", "1", "4"
GROUP = "revbridge"
#: the ticket properties an exception keeps (name → label); all text but the dates
TICKET_PROPERTIES = {
    "rx_kind": "Exception kind",
    "rx_severity": "Exception severity",
    "rx_status": "Exception status",
    "rx_account_id": "Exception account",
    "rx_customer_id": "Exception billing customer",
    "rx_records": "Exception records",
    "rx_fix": "Proposed fix",
    "rx_approver_role": "Approver role",
    "rx_first_seen": "First seen",
    "rx_last_seen": "Last seen",
    "rx_resolved_on": "Resolved on",
    "rx_resolution": "Resolution",
}
_DATES = {"rx_first_seen", "rx_last_seen", "rx_resolved_on"}
_PRIORITY = {"high": "HIGH", "medium": "MEDIUM", "low": "LOW"}
#: company properties RevBridge writes from billing
FIELDS = {
    "mrr": "mrr",
    "status": "billing_status",
    # the account sync's golden-record properties (connectors/sync/hubspot.py), where the portal
    # has them: HubSpot answers a requested property only if it exists (null when unset)
    "plan": "billing_plan",
    "renewal": "next_renewal",
}
TICKET_TO_COMPANY = 339
BASE = ("mrr", "status")  # compared on every portal (as before the account sync)


class HubSpotBook:
    name = "hubspot"

    def __init__(self, crm: HubSpotCrm) -> None:
        self.crm = crm
        self._ready = False

    def _walk(self, api: Any, properties: list[str], what: str, **kw: Any) -> Iterator[Any]:
        after = None
        while True:
            page = self.crm._call(
                api.get_page, limit=BATCH, after=after, properties=properties, what=what, **kw
            )
            yield from page.results or []
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                return

    # --- reads ------------------------------------------------------------------------------------

    def read_crm(self, billing: str, since: date | None) -> CrmSide:
        won = []
        for d in self._walk(
            self.crm._deals,
            ["dealstage", "hs_is_closed_won", "closedate", "billing_subscription_id"],
            "deals",
            associations=["companies", "line_items"],
        ):
            p = d.properties or {}
            if not (p.get("dealstage") == CLOSED_WON or p.get("hs_is_closed_won") == "true"):
                continue
            if since and (p.get("closedate") or "")[:10] < since.isoformat():
                continue
            won.append(d)
        line_ids = [
            i for d in won for i in _assoc_ids(d.associations or {}, ["line items", "line_items"])
        ]
        rows = self.crm._batch_read(
            self.crm._line_item_batches, LineItemBatchRead, line_ids, _LINE_PROPERTIES, "lines"
        )
        by_id = {str(r.id): r.properties or {} for r in rows}
        product_ids = list(
            dict.fromkeys(p for r in by_id.values() if (p := r.get("hs_product_id")))
        )
        products = {
            str(p.id): p.properties or {}
            for p in self.crm._batch_read(
                self.crm._product_batches,
                ProductBatchRead,
                product_ids,
                ["hs_sku", "price", "name"],
                "products",
            )
        }
        deals = []
        for d in won:
            assoc = d.associations or {}
            companies = _assoc_ids(assoc, ["companies"], primary="deal_to_company")
            lines = []
            for lid in _assoc_ids(assoc, ["line items", "line_items"]):
                if lid in by_id:
                    ol = _line(lid, by_id[lid], products)
                    lines.append(
                        Line(
                            product=ol.product_code,
                            quantity=ol.quantity,
                            unit_price=ol.unit_price,
                            discount_percent=ol.discount_percent,
                        )
                    )
            deals.append(
                Deal(
                    opportunity_id=str(d.id),
                    account_id=companies[0] if companies else "",
                    subscription_id=(d.properties or {}).get("billing_subscription_id") or None,
                    lines=lines,
                )
            )
        accounts = []
        for c in self._walk(
            self.crm._companies,
            ["billing_customer_id", "billing_platform", "lifecyclestage", *FIELDS.values()],
            "companies",
        ):
            p = c.properties or {}
            platform = p.get("billing_platform") or None
            linked = p.get("billing_customer_id") if platform in (None, billing) else None
            if not linked and p.get("lifecyclestage") != "customer":
                continue
            accounts.append(
                Account(
                    id=str(c.id),
                    is_customer=p.get("lifecyclestage") == "customer" or bool(linked),
                    billing_customer_id=linked or None,
                    mrr=None if p.get("mrr") in (None, "") else minor(p["mrr"]),
                    status=p.get("billing_status") or None,
                    plan=p.get("billing_plan") or None,
                    renewal=date.fromisoformat(str(p["next_renewal"])[:10])
                    if p.get("next_renewal")
                    else None,
                    holds=[k for k, prop in FIELDS.items() if k in BASE or prop in p],
                )
            )
        return CrmSide(deals=deals, accounts=accounts)

    def _tickets(self) -> Iterator[dict[str, Any]]:
        props = [KEY_PROPERTY, *TICKET_PROPERTIES] if self._has_properties() else [KEY_PROPERTY]
        for t in self._walk(self.crm._tickets, props, "tickets"):
            p = t.properties or {}
            if (p.get(KEY_PROPERTY) or "").startswith("rx-") and p.get("rx_first_seen"):
                yield {"id": str(t.id), **p}

    def stored_exceptions(self, closed_since: date) -> list[StoredException]:
        out = []
        for p in self._tickets():
            resolved = date.fromisoformat(p["rx_resolved_on"]) if p.get("rx_resolved_on") else None
            status = ExceptionStatus(p.get("rx_status") or "Open")
            if status is ExceptionStatus.CLOSED and (resolved is None or resolved < closed_since):
                continue
            out.append(
                StoredException(
                    id=p[KEY_PROPERTY],
                    status=status,
                    first_seen=date.fromisoformat(p["rx_first_seen"]),
                    resolved_on=resolved,
                    kind=p.get("rx_kind") or "",
                    severity=p.get("rx_severity") or "",
                )
            )
        return out

    def open_exceptions(self) -> list[dict[str, Any]]:
        """In the keys ``revbridge reconcile --open`` prints (those of Salesforce's object)."""
        rows = [
            {
                "Exception_Id__c": p[KEY_PROPERTY],
                "Kind__c": p.get("rx_kind"),
                "Severity__c": p.get("rx_severity"),
                "Status__c": p.get("rx_status"),
                "First_Seen__c": p.get("rx_first_seen"),
                "Account__c": p.get("rx_account_id"),
                "Billing_Customer_Id__c": p.get("rx_customer_id"),
                "Proposed_Fix__c": p.get("rx_fix"),
                "Approver_Role__c": p.get("rx_approver_role"),
            }
            for p in self._tickets()
            if p.get("rx_status") != ExceptionStatus.CLOSED
        ]
        return sorted(rows, key=lambda r: (r["First_Seen__c"] or "", r["Exception_Id__c"]))

    # --- writes -----------------------------------------------------------------------------------

    def _has_properties(self) -> bool:
        if self._ready:
            return True
        try:
            found = self.crm._call(self.crm._properties.get_all, "tickets", what="properties")
        except ConnectorError:
            return False
        names = {p.name for p in found.results or []}
        self._ready = set(TICKET_PROPERTIES) <= names
        return self._ready

    def _ensure_properties(self) -> None:
        """The ``rx_*`` ticket properties (and their group), created once where missing."""
        if self._has_properties():
            return
        groups = self.crm._client.crm.properties.groups_api
        have = {g.name for g in self.crm._call(groups.get_all, "tickets", what="groups").results}
        if GROUP not in have:
            self.crm._call(
                groups.create,
                "tickets",
                PropertyGroupCreate(name=GROUP, label="RevBridge"),
                what="property group",
            )
        names = {
            p.name
            for p in self.crm._call(
                self.crm._properties.get_all, "tickets", what="properties"
            ).results
        }
        for name, label in TICKET_PROPERTIES.items():
            if name in names:
                continue
            is_date = name in _DATES
            self.crm._call(
                self.crm._properties.create,
                "tickets",
                PropertyCreate(
                    name=name,
                    label=label,
                    type="date" if is_date else "string",
                    field_type="date" if is_date else "text",
                    group_name=GROUP,
                ),
                what="ticket property",
            )
        self._ready = True

    def upsert_exceptions(self, records: list[ExceptionRecord]) -> dict[str, str]:
        self._ensure_properties()
        failed: dict[str, str] = {}
        for start in range(0, len(records), BATCH):
            chunk = records[start : start + BATCH]
            body = TicketUpsert(
                inputs=[
                    {"idProperty": KEY_PROPERTY, "id": r.id, "properties": _ticket(r)}
                    for r in chunk
                ]
            )
            answer = self.crm._call(self.crm._ticket_batches.upsert, body, what="exceptions")
            for err in getattr(answer, "errors", None) or []:
                for rid in (err.context or {}).get("id", []) or []:
                    failed[rid] = err.category or "error"
            ticket_of = {
                (t.properties or {}).get(KEY_PROPERTY): str(t.id) for t in answer.results or []
            }
            pairs = [
                PublicDefaultAssociationMultiPost(
                    _from=PublicObjectId(id=ticket_of[r.id]), to=PublicObjectId(id=r.account_id)
                )
                for r in chunk
                if r.account_id and r.id in ticket_of
            ]
            if pairs:
                self.crm._call(
                    self.crm._association_batches.create_default,
                    "tickets",
                    "companies",
                    BatchInputPublicDefaultAssociationMultiPost(inputs=pairs),
                    what="exception associations",
                )
        return failed

    def restore_fields(self, fixes: list[FieldRestore]) -> dict[str, str]:
        by_company: dict[str, dict[str, str]] = {}
        for f in fixes:
            value = f"{int(f.value) / 100:.2f}" if f.field == "mrr" else f.value
            by_company.setdefault(f.account_id, {})[FIELDS[f.field]] = value
        ids = list(by_company)
        failed: dict[str, str] = {}
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            body = CompanyBatchUpdate(
                inputs=[{"id": c, "properties": by_company[c]} for c in chunk]
            )
            answer = self.crm._call(self.crm._company_batches.update, body, what="companies")
            for err in getattr(answer, "errors", None) or []:
                for cid in (err.context or {}).get("ids", []) or []:
                    failed[cid] = err.category or "error"
        return failed

    def urls(self) -> dict[str, str]:
        base = "https://app.hubspot.com/contacts/_/record"
        return {"account": base + "/0-2/{id}", "opportunity": base + "/0-3/{id}"}


def _ticket(r: ExceptionRecord) -> dict[str, str]:
    closed = r.status is ExceptionStatus.CLOSED
    props = {
        "subject": f"[Billing exception] {r.kind.value}: {r.fix}"[:250],
        "content": "\n".join(f"{k}: {v}" for k, v in r.evidence.items())[:TEXT_MAX] or r.fix,
        "hs_pipeline": PIPELINE,
        "hs_pipeline_stage": CLOSED_STAGE if closed else OPEN_STAGE,
        "hs_ticket_priority": _PRIORITY[r.severity.value],
        "rx_kind": r.kind.value,
        "rx_severity": r.severity.value,
        "rx_status": r.status.value,
        "rx_account_id": r.account_id or "",
        "rx_customer_id": r.customer_id or "",
        "rx_records": ", ".join(r.records)[:TEXT_MAX],
        "rx_fix": r.fix,
        "rx_approver_role": r.approver_role or "",
        "rx_first_seen": r.first_seen.isoformat(),
        "rx_last_seen": r.last_seen.isoformat(),
        "rx_resolved_on": r.resolved_on.isoformat() if r.resolved_on else "",
        "rx_resolution": r.resolution,
    }
    if not r.evidence and not r.records:  # a closing record: keep what the ticket says
        for name in ("content", "rx_records", "rx_fix", "rx_account_id", "rx_customer_id"):
            props.pop(name)
    return props
