"""HubSpot for usage-based expansion (crm-llm-apis.md §2), wrapping :class:`HubSpotCrm`.

The expansion signal is a **deal property group** (``revbridge``: ``expansion_*`` properties on
the expansion deal), not a custom object: custom objects need an Enterprise portal, deal
properties work on every tier, the deal is where the account executive works, and quote-to-cash
reads the whole link (customer, subscription, current and recommended price, the workflow) from
the won deal in the one read it makes anyway. The cost: a signal exists only with its deal; in
``assist`` mode (no deal yet) the owner's task carries the forecast and :meth:`upsert_signal`
writes nothing (docs/expansion.md).

Records (every write keyed, so a retry after a committed-then-timed-out call finds the record):

- the **deal**: ``POST /crm/v3/objects/deals/batch/upsert`` with ``idProperty=revbridge_key``
  (unique), ``dealtype`` existingbusiness, in :data:`PIPELINE` at :data:`OPEN_STAGE`, owned by the
  company's owner, associated with the company (v4 default association);
- the **draft quote** (``hs_status`` DRAFT), created WITH its association to the deal in one
  request, and two **line items** priced from the billing catalogue (the CRM product from
  policies/products.yaml by ``hs_sku``) — one on the deal, one on the quote (a line item belongs
  to one parent) — created with their associations in one batch create. Quotes and line items
  cannot have unique-value properties in HubSpot, so their ``revbridge_key`` is a plain property:
  a retry (the deal already existed) looks for them among the deal's and the quote's associated
  records (v4, consistent at once; a batch read of their keys) and updates what it finds, so a
  create whose answer was lost is found, never made twice. Nothing here publishes or sends a
  quote.
- A deal a person has closed is never reopened or rewritten; closing one RevBridge opened sets
  ``closedlost`` with ``closed_lost_reason`` and the quote ``REJECTED``.
"""

from __future__ import annotations

import os
from datetime import date
from typing import Any

from hubspot.crm.associations.v4 import BatchInputPublicDefaultAssociationMultiPost
from hubspot.crm.deals import BatchInputSimplePublicObjectBatchInputUpsert as DealUpserts
from hubspot.crm.deals import SimplePublicObjectInput as DealUpdate
from hubspot.crm.line_items import BatchInputSimplePublicObjectBatchInput as LineUpdates
from hubspot.crm.line_items import (
    BatchInputSimplePublicObjectBatchInputForCreate as LineCreates,
)
from hubspot.crm.line_items import BatchReadInputSimplePublicObjectId as LineRead
from hubspot.crm.products import Filter as ProductFilter
from hubspot.crm.products import FilterGroup as ProductFilterGroup
from hubspot.crm.products import PublicObjectSearchRequest as ProductSearch
from hubspot.crm.quotes import BatchReadInputSimplePublicObjectId as QuoteRead
from hubspot.crm.quotes import SimplePublicObjectInput as QuoteUpdate
from hubspot.crm.quotes import SimplePublicObjectInputForCreate as QuoteCreate
from hubspot.crm.quotes.exceptions import ApiException as QuotesApiException

from connectors.base import NotFound
from connectors.hubspot import KEY_PROPERTY, TEXT_MAX, HubSpotCrm, _classify
from domain.expansion import (
    ExpansionDraft,
    ExpansionLink,
    ExpansionRecords,
    OpportunityState,
    SignalRecord,
)
from domain.models import CrmAccount

#: the deals pipeline and open stage of an expansion deal (a portal with its own expansion
#: pipeline names them: REVBRIDGE_HUBSPOT_EXPANSION_PIPELINE / _STAGE)
PIPELINE = "default"
OPEN_STAGE = "qualifiedtobuy"
CLOSED_LOST = "closedlost"
#: HubSpot-defined association types (reference §2.4; quotes: HubSpot's v4 type table)
DEAL_TO_COMPANY = 341
QUOTE_TO_DEAL = 64
LINE_TO_QUOTE = 68
LINE_TO_DEAL = 20

#: the signal's deal properties (``revbridge`` group; ``revbridge setup crm`` creates them):
#: (name, type) — and the record keys of the quote and its line item
SIGNAL_PROPERTIES: tuple[tuple[str, str], ...] = (
    ("expansion_status", "string"),
    ("expansion_signal_key", "string"),
    ("expansion_billing_platform", "string"),
    ("expansion_customer_id", "string"),
    ("expansion_subscription_id", "string"),
    ("expansion_item", "string"),
    ("expansion_current_price", "string"),
    ("expansion_recommended_price", "string"),
    ("expansion_upgrade_mrr", "number"),
    ("expansion_days_to_limit", "number"),
    ("expansion_crossing_date", "date"),
    ("expansion_crossing_earliest", "date"),
    ("expansion_crossing_latest", "date"),
    ("expansion_confidence", "number"),
    ("expansion_projected_usage", "number"),
    ("expansion_included_units", "number"),
    ("expansion_reasons", "string"),
    ("expansion_close_reason", "string"),
    ("expansion_workflow_id", "string"),
)
#: what setup creates for expansion: (object type, name, type, unique)
SETUP_PROPERTIES: tuple[tuple[str, str, str, bool], ...] = (
    ("deals", KEY_PROPERTY, "string", True),
    *(("deals", name, kind, False) for name, kind in SIGNAL_PROPERTIES),
    # quotes and line items cannot have unique-value properties (HubSpot offers them for
    # contacts, companies, deals, tickets and custom objects): a plain key, found through the
    # parent's associations
    ("quotes", KEY_PROPERTY, "string", False),
    ("line_items", KEY_PROPERTY, "string", False),
)
_LINK = [name for name, _ in SIGNAL_PROPERTIES]


def _money(minor: int) -> str:
    return f"{minor / 100:.2f}"


def _iso(d: date | None) -> str:
    return d.isoformat() if d else ""


class HubSpotExpansion:
    name = "hubspot"

    def __init__(self, crm: HubSpotCrm) -> None:
        self.crm = crm
        api = crm._client.crm
        self._deals = api.deals.basic_api
        self._deal_batches = api.deals.batch_api
        self._quotes = api.quotes.basic_api
        self._quote_batches = api.quotes.batch_api
        self._line_batches = api.line_items.batch_api
        self._products_search = api.products.search_api
        self._links = api.associations.v4.batch_api
        self.pipeline = os.environ.get("REVBRIDGE_HUBSPOT_EXPANSION_PIPELINE") or PIPELINE
        self.open_stage = os.environ.get("REVBRIDGE_HUBSPOT_EXPANSION_STAGE") or OPEN_STAGE

    def _call(self, fn: Any, *args: Any, what: str, **kwargs: Any) -> Any:
        """The connector's call (pacing, error mapping); quotes have their own exception class."""
        try:
            return self.crm._call(fn, *args, what=what, **kwargs)
        except QuotesApiException as exc:
            raise _classify(exc, what) from None

    def _deal(self, deal_id: str, properties: list[str], by_key: bool = False) -> Any | None:
        extra = {"id_property": KEY_PROPERTY} if by_key else {}
        try:
            return self._call(
                self._deals.get_by_id, deal_id, properties=properties, what="deal", **extra
            )
        except NotFound:
            return None

    # --- reads ------------------------------------------------------------------------------------

    def find_account(self, billing: str, customer_id: str) -> CrmAccount | None:
        return self.crm.find_account(billing, customer_id)

    def opportunity_state(self, opportunity_id: str) -> OpportunityState:
        deal = self._deal(opportunity_id, ["dealstage", "hs_is_closed", "hs_is_closed_won"])
        if deal is None:
            return OpportunityState(exists=False, closed=True)
        return _state(deal.properties or {})

    def expansion_of(self, opportunity_id: str) -> ExpansionLink | None:
        """The expansion a won deal carries, if any (quote-to-cash asks it of every won deal: a
        portal without the properties answers them as null, so None)."""
        deal = self._deal(opportunity_id, _LINK)
        p = (deal.properties or {}) if deal is not None else {}
        if not (p.get("expansion_subscription_id") and p.get("expansion_recommended_price")):
            return None
        return ExpansionLink(
            opportunity_id=opportunity_id,
            customer_id=p.get("expansion_customer_id") or "",
            subscription_id=p["expansion_subscription_id"],
            from_price_id=p.get("expansion_current_price") or "",
            to_price_id=p["expansion_recommended_price"],
            workflow_id=p.get("expansion_workflow_id") or "",
            item=p.get("expansion_item") or "",
        )

    # --- writes -----------------------------------------------------------------------------------

    def upsert_signal(self, record: SignalRecord) -> str:
        """The signal's properties on its deal (one PATCH; the same values twice change
        nothing). Without a deal (assist mode) HubSpot holds no signal: ``""``."""
        if not record.opportunity_id:
            return ""
        props = {
            "expansion_status": record.status,
            "expansion_signal_key": record.key,
            "expansion_billing_platform": record.billing,
            "expansion_customer_id": record.customer_id,
            "expansion_subscription_id": record.subscription_id,
            "expansion_item": record.item,
            "expansion_current_price": record.current_price_id,
            "expansion_recommended_price": record.recommended_price_id or "",
            "expansion_upgrade_mrr": _money(record.upgrade_mrr),
            "expansion_days_to_limit": ""
            if record.days_to_limit is None
            else str(record.days_to_limit),
            "expansion_crossing_date": _iso(record.crossing),
            "expansion_crossing_earliest": _iso(record.crossing_earliest),
            "expansion_crossing_latest": _iso(record.crossing_latest),
            "expansion_confidence": f"{record.confidence * 100:.2f}",
            "expansion_projected_usage": f"{record.projected_per_period:.2f}",
            "expansion_included_units": f"{record.included_per_period:g}",
            "expansion_reasons": "\n".join(record.reasons)[:TEXT_MAX],
            "expansion_close_reason": (record.close_reason or "")[:TEXT_MAX],
            "expansion_workflow_id": record.workflow_id,
        }
        self._call(
            self._deals.update,
            record.opportunity_id,
            DealUpdate(properties=props),
            what="expansion deal",
        )
        return record.opportunity_id

    def upsert_expansion(self, draft: ExpansionDraft) -> ExpansionRecords:
        existing = self._deal(draft.opportunity_key, ["hs_is_closed", "dealstage"], by_key=True)
        if existing is not None and _state(existing.properties or {}).closed:
            return ExpansionRecords(
                opportunity_id=str(existing.id), created=False, opportunity_closed=True
            )
        deal: dict[str, str] = {
            "closedate": draft.close_date.isoformat(),
            "amount": _money(draft.upgrade_mrr * 12),
            "description": draft.description[:TEXT_MAX],
        }
        if existing is None:
            deal.update(
                dealname=draft.name[:250],
                pipeline=self.pipeline,
                dealstage=self.open_stage,
                dealtype="existingbusiness",
                deal_currency_code=draft.currency,
            )
            if draft.owner_id:
                deal["hubspot_owner_id"] = draft.owner_id
        deal_id, deal_new = self._upsert(
            self._deal_batches, DealUpserts, draft.opportunity_key, deal, "deal"
        )
        if deal_new:
            self._associate("deals", "companies", [(deal_id, draft.account_id)])
        # a deal new in this call has no quote or line items yet: nothing to look for
        quote_id = self._quote(draft, deal_id, look=not deal_new)
        self._lines(draft, deal_id, quote_id, look=not deal_new)
        return ExpansionRecords(opportunity_id=deal_id, quote_id=quote_id, created=deal_new)

    def _quote(self, draft: ExpansionDraft, deal_id: str, look: bool) -> str:
        """The deal's draft quote for ``draft.quote_key``: found among the deal's quotes (v4
        associations, consistent at once) and updated, or created WITH its association to the
        deal in one request — so a create whose answer was lost is found by the retry."""
        props = {
            "hs_title": f"{draft.name} (draft)"[:250],
            "hs_expiration_date": _iso(draft.quote_expires or draft.close_date),
            "hs_currency": draft.currency,
        }
        if look:
            ids = self.crm._associated_ids("deals", deal_id, "quotes")
            found = self._keyed(self._quote_batches, QuoteRead, ids, "quotes")
            if draft.quote_key in found:
                quote_id = found[draft.quote_key]
                self._call(
                    self._quotes.update, quote_id, QuoteUpdate(properties=props), what="quote"
                )
                return quote_id
        made = self._call(
            self._quotes.create,
            QuoteCreate(
                properties={**props, "hs_status": "DRAFT", KEY_PROPERTY: draft.quote_key},
                associations=[_to(deal_id, QUOTE_TO_DEAL)],
            ),
            what="quote",
        )
        return str(made.id)

    def _lines(self, draft: ExpansionDraft, deal_id: str, quote_id: str, look: bool) -> None:
        """The upgrade as a line item on the deal (its product, as Salesforce's opportunity
        product) and one on the quote — a line item belongs to one parent (HubSpot's line items
        guide) — each created with its association in one batch create, or found among its
        parent's line items and updated in one batch update."""
        line: dict[str, str] = {
            "name": draft.name[:250],
            "quantity": str(draft.quantity),
            "price": _money(draft.unit_amount),
            "recurringbillingfrequency": "monthly",
            "hs_discount_percentage": f"{draft.discount_percent:g}"
            if draft.discount_percent
            else "",
        }
        product = self._product(draft.product_code) if draft.product_code else None
        if product is not None:
            line["hs_product_id"] = product
        if draft.product_code:
            line["hs_sku"] = draft.product_code
        parents = {
            draft.opportunity_key + "-1": ("deals", deal_id, LINE_TO_DEAL),
            draft.quote_key + "-1": ("quotes", quote_id, LINE_TO_QUOTE),
        }
        found: dict[str, str] = {}
        if look:
            ids = [
                i
                for otype, oid, _ in parents.values()
                for i in self.crm._associated_ids(otype, oid, "line_items")
            ]
            found = self._keyed(self._line_batches, LineRead, ids, "line items")
        updates = [{"id": found[k], "properties": line} for k in parents if k in found]
        creates = [
            {"properties": {**line, KEY_PROPERTY: k}, "associations": [_to(oid, type_id)]}
            for k, (_, oid, type_id) in parents.items()
            if k not in found
        ]
        if updates:
            self._call(self._line_batches.update, LineUpdates(inputs=updates), what="line items")
        if creates:
            self._call(self._line_batches.create, LineCreates(inputs=creates), what="line items")

    def close_expansion(
        self, opportunity_id: str, quote_id: str | None, reason: str
    ) -> OpportunityState:
        state = self.opportunity_state(opportunity_id)
        if state.closed:
            return state  # a person closed it (won or lost): theirs
        self._call(
            self._deals.update,
            opportunity_id,
            DealUpdate(
                properties={
                    "dealstage": CLOSED_LOST,
                    "closed_lost_reason": f"RevBridge: {reason}"[:TEXT_MAX],
                }
            ),
            what="expansion deal",
        )
        if quote_id:
            self._call(
                self._quotes.update,
                quote_id,
                QuoteUpdate(properties={"hs_status": "REJECTED"}),
                what="quote",
            )
        return OpportunityState(closed=True, won=False, stage=CLOSED_LOST)

    # --- helpers ----------------------------------------------------------------------------------

    def _upsert(
        self, api: Any, model: type, key: str, props: dict[str, str], what: str
    ) -> tuple[str, bool]:
        """One record by its unique ``revbridge_key`` (``batch/upsert``, idProperty): ``(id,
        created)``, created or updated, never twice."""
        body = model(inputs=[{"id": key, "idProperty": KEY_PROPERTY, "properties": props}])
        done = self._call(api.upsert, body, what=what)
        first = done.results[0]
        return str(first.id), bool(getattr(first, "new", False))

    def _keyed(self, api: Any, model: type, ids: list[str], what: str) -> dict[str, str]:
        """``{revbridge_key: id}`` of the records ``ids`` (one batch read per 100)."""
        rows = self.crm._batch_read(api, model, list(dict.fromkeys(ids)), [KEY_PROPERTY], what)
        return {key: str(r.id) for r in rows if (key := (r.properties or {}).get(KEY_PROPERTY))}

    def _associate(self, from_type: str, to_type: str, pairs: list[tuple[str, str]]) -> None:
        body = BatchInputPublicDefaultAssociationMultiPost(
            inputs=[{"from": {"id": a}, "to": {"id": b}} for a, b in pairs]
        )
        self._call(
            self._links.create_default, from_type, to_type, body, what=f"{from_type} association"
        )

    def _product(self, sku: str) -> str | None:
        """The HubSpot product sold under ``sku`` (the CRM product code of policies/products.yaml)."""
        request = ProductSearch(
            filter_groups=[
                ProductFilterGroup(
                    filters=[ProductFilter(property_name="hs_sku", operator="EQ", value=sku)]
                )
            ],
            properties=["hs_sku", "price"],
            limit=1,
        )
        page = self._call(self._products_search.do_search, request, what="product search")
        return str(page.results[0].id) if page.results else None


def _to(object_id: str, type_id: int) -> dict[str, Any]:
    """A v3 create's association to ``object_id`` (HubSpot-defined type)."""
    return {
        "to": {"id": object_id},
        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
    }


def _state(p: dict[str, Any]) -> OpportunityState:
    stage = p.get("dealstage") or ""
    won = p.get("hs_is_closed_won") == "true" or stage == "closedwon"
    closed = won or p.get("hs_is_closed") == "true" or stage in ("closedwon", CLOSED_LOST)
    return OpportunityState(closed=closed, won=won, stage=stage)
