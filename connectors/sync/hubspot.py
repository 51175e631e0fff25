"""HubSpot for the account sync (billing → CRM): the company's golden fields in one read, a
property set per company, ``/crm/v3/objects/companies/batch/update`` for a batch of minor changes
(HubSpot takes 100 inputs per call: two calls per 200 accounts), and the book for linking
(companies by list pages, their contacts' emails by batch reads).

HubSpot's ``company.propertyChange`` / ``contact.propertyChange`` webhooks reach the sync through
the webhook service's lookup (``webhooks/hubspot.py`` ``HubSpotLookup``: the company's billing
link, one batch read per delivery)."""

from __future__ import annotations

from typing import Any

from hubspot.crm.companies import BatchInputSimplePublicObjectBatchInput as CompanyBatchUpdate
from hubspot.crm.companies import SimplePublicObjectBatchInput as CompanyBatchInput
from hubspot.crm.companies import SimplePublicObjectInput as CompanyUpdate
from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId as ContactBatchRead

from connectors.hubspot import HubSpotCrm, _assoc_ids
from connectors.sync.shapes import address
from domain.linking import CrmParty

#: golden field → company property
FIELDS = {
    "account_name": "name",
    "account_owner": "hubspot_owner_id",
    "segment": "customer_tier",
    "plan": "billing_plan",
    "mrr": "mrr",
    "subscription_status": "billing_status",
    "next_renewal": "next_renewal",
    "payment_health": "payment_health",
    "billing_contact": "billing_contact_email",
    "billing_contact_name": "billing_contact_name",
    # the churn use case writes it; the sync reads it for the health profile
    "churn_level": "churn_level",
}
#: the health profile (domain/health.py) → company properties; written, never read back
HEALTH = {
    "health_summary": "health_summary",
    "subscription_health": "subscription_health",
    "tenure_months": "tenure_months",
    "payment_success_rate": "payment_success_rate",
    "open_dunning": "open_dunning",
    "usage_trend": "usage_trend",
}
#: their property types (``revbridge setup crm``; the rest are strings)
HEALTH_TYPES = {
    "tenure_months": "number",
    "payment_success_rate": "number",
    "open_dunning": "number",
}
#: the golden billing address → HubSpot's own company address properties
ADDRESS = {
    "line1": "address",
    "line2": "address2",
    "city": "city",
    "state": "state",
    "postal_code": "zip",
    "country": "country",
}
_MONEY = {"mrr"}
BATCH = 100


def _to_golden(name: str, value: Any) -> Any:
    if value in (None, ""):
        return None
    if name in _MONEY:
        return int(round(float(value) * 100))
    return value


def _to_hubspot(name: str, value: Any) -> str:
    if value is None:
        return ""
    if name in _MONEY:
        return str(round(int(value) / 100, 2))
    return str(value)


class HubSpotSync:
    def __init__(self, crm: HubSpotCrm) -> None:
        self.crm = crm
        self.name = crm.name

    def sync_find(self, billing: str, customer_id: str) -> str | None:
        company = self.crm._company_by_customer(billing, customer_id)
        return str(company.id) if company is not None else None

    def sync_view(self, account_id: str) -> dict[str, Any]:
        company = self.crm._call(
            self.crm._companies.get_by_id,
            account_id,
            properties=[*FIELDS.values(), *ADDRESS.values()],
            what="company",
        )
        props = company.properties or {}
        view = {
            name: value
            for name, prop in FIELDS.items()
            if (value := _to_golden(name, props.get(prop))) is not None
        }
        if addr := address({k: props.get(p) for k, p in ADDRESS.items()}):
            view["billing_address"] = addr
        return view

    def _props(self, fields: dict[str, Any]) -> dict[str, str]:
        props = {FIELDS[k]: _to_hubspot(k, v) for k, v in fields.items() if k in FIELDS}
        props.update({HEALTH[k]: _to_hubspot(k, v) for k, v in fields.items() if k in HEALTH})
        if "billing_address" in fields:
            addr = fields["billing_address"] or {}
            props.update({p: str(addr.get(k) or "") for k, p in ADDRESS.items()})
        return props

    def sync_write(self, account_id: str, fields: dict[str, Any]) -> None:
        if props := self._props(fields):
            self.crm._call(
                self.crm._companies.update,
                account_id,
                CompanyUpdate(properties=props),
                what="company",
            )

    def sync_bulk_write(self, records: dict[str, dict[str, Any]]) -> dict[str, str]:
        return self._batch({i: self._props(f) for i, f in records.items()}, "account sync batch")

    def _batch(self, records: dict[str, dict[str, str]], what: str) -> dict[str, str]:
        failed: dict[str, str] = {}
        ids = list(records)
        for start in range(0, len(ids), BATCH):
            chunk = ids[start : start + BATCH]
            body = CompanyBatchUpdate(
                inputs=[
                    CompanyBatchInput(id=i, object_write_trace_id=i, properties=records[i])
                    for i in chunk
                ]
            )
            result = self.crm._call(self.crm._company_batches.update, body, what=what)
            for error in getattr(result, "errors", None) or []:
                context = error.context or {}
                for account in [*context.get("objectWriteTraceId", []), *context.get("ids", [])]:
                    failed[str(account)] = str(error.category or "UNKNOWN")
        return failed

    def sync_parties(self, cursor: str | None, limit: int) -> tuple[list[CrmParty], str | None]:
        """One page of companies (HubSpot's own: up to 100) with their contacts' emails: the
        page names its contacts (``associations``), one batch read per 100 of them gives the
        emails — no call per company."""
        page = self.crm._call(
            self.crm._companies.get_page,
            limit=max(1, min(limit, 100)),
            after=cursor,
            properties=["name", "domain", "billing_customer_id"],
            associations=["contacts"],
            what="companies",
        )
        results = page.results or []
        contacts = {c.id: _assoc_ids(c.associations, ["contacts"]) for c in results}
        wanted = list(dict.fromkeys(i for ids in contacts.values() for i in ids))
        emails = {
            str(c.id): e
            for c in self.crm._batch_read(
                self.crm._contact_batches, ContactBatchRead, wanted, ["email"], "contacts"
            )
            if (e := (c.properties or {}).get("email"))
        }
        parties = [
            CrmParty(
                id=str(c.id),
                name=(c.properties or {}).get("name"),
                domain=(c.properties or {}).get("domain"),
                emails=[emails[i] for i in contacts[c.id] if i in emails],
                billing_customer_id=(c.properties or {}).get("billing_customer_id") or None,
            )
            for c in results
        ]
        nxt = page.paging.next.after if page.paging and page.paging.next else None
        return parties, nxt

    def sync_link_many(self, links: dict[str, str], billing: str) -> dict[str, str]:
        return self._batch(
            {a: {"billing_customer_id": c, "billing_platform": billing} for a, c in links.items()},
            "billing links",
        )
