"""Quote-to-cash on HubSpot: a deal with its company, contacts, line items and their products (a
v3 read names its line items ``"line items"``, with a space), the won deals modified since a
time (CRM search), and the billing link written back on the company and the deal."""

from __future__ import annotations

from datetime import datetime

from hubspot.crm.companies import SimplePublicObjectInput as CompanyUpdate
from hubspot.crm.contacts import BatchReadInputSimplePublicObjectId as ContactBatchRead
from hubspot.crm.deals import Filter as DealFilter
from hubspot.crm.deals import FilterGroup as DealFilterGroup
from hubspot.crm.deals import PublicObjectSearchRequest as DealSearchRequest
from hubspot.crm.deals import SimplePublicObjectInput as DealUpdate
from hubspot.crm.line_items import BatchReadInputSimplePublicObjectId as LineItemBatchRead
from hubspot.crm.products import BatchReadInputSimplePublicObjectId as ProductBatchRead

from connectors.hubspot.accounts import Accounts
from connectors.hubspot.values import (
    _DEAL_PROPERTIES,
    _LINE_PROPERTIES,
    _SEARCH_MAX_PAGE,
    _SEARCH_MAX_RESULTS,
    CLOSED_WON,
    TEXT_MAX,
    _assoc_ids,
    _cents,
    _date,
    _epoch_ms,
    _line,
    _money,
    _number,
    _term_months,
)
from domain.records import (
    BillingLink,
    Contact,
    Opportunity,
)


class Deals(Accounts):
    """Quote-to-cash: a won deal read whole, the won deals since a time, the billing link
    written back."""

    def get_opportunity(self, opportunity_id: str) -> Opportunity:
        deal = self._call(
            self._deals.get_by_id,
            opportunity_id,
            properties=_DEAL_PROPERTIES,
            associations=["companies", "contacts", "line_items"],
            what="deal",
        )
        props = deal.properties or {}
        assoc = deal.associations or {}
        company_ids = _assoc_ids(assoc, ["companies"], primary="deal_to_company")
        account = self.get_account(company_ids[0]) if company_ids else None
        contact_ids = _assoc_ids(assoc, ["contacts"])
        contacts = [
            Contact(
                id=str(c.id),
                name=" ".join(
                    filter(None, [(c.properties or {}).get(k) for k in ("firstname", "lastname")])
                ),
                email=(c.properties or {}).get("email") or None,
            )
            for c in sorted(
                self._batch_read(
                    self._contact_batches,
                    ContactBatchRead,
                    contact_ids,
                    ["firstname", "lastname", "email"],
                    "contacts",
                ),
                key=lambda c: contact_ids.index(str(c.id)),
            )
        ]
        line_ids = _assoc_ids(assoc, ["line items", "line_items"])
        line_rows = sorted(
            self._batch_read(
                self._line_item_batches, LineItemBatchRead, line_ids, _LINE_PROPERTIES, "line items"
            ),
            key=lambda r: line_ids.index(str(r.id)),
        )
        product_ids = list(
            dict.fromkeys(p for r in line_rows if (p := (r.properties or {}).get("hs_product_id")))
        )
        products = {
            str(p.id): p.properties or {}
            for p in self._batch_read(
                self._product_batches,
                ProductBatchRead,
                product_ids,
                ["hs_sku", "price", "name"],
                "products",
            )
        }
        lines = [_line(r.id, r.properties or {}, products) for r in line_rows]
        line_props = [r.properties or {} for r in line_rows]
        stage = props.get("dealstage") or ""
        close_date = _date(props.get("closedate"))
        term = int(_number(props.get("term_months"))) or next(
            (t for p in line_props if (t := _term_months(p.get("hs_recurring_billing_period")))),
            12,
        )
        frequency = next(
            (f for p in line_props if (f := p.get("recurringbillingfrequency"))), "monthly"
        )
        return Opportunity(
            id=str(deal.id),
            name=props.get("dealname") or "",
            stage=stage,
            won=stage == CLOSED_WON or props.get("hs_is_closed_won") == "true",
            account=account,
            contacts=contacts,
            lines=lines,
            amount=_cents(props.get("amount")) or 0,
            currency=props.get("deal_currency_code") or "USD",
            close_date=close_date,
            start_date=_date(props.get("start_date")),
            term_months=term,
            billing_period="year" if frequency == "annually" else "month",
            payment_terms=props.get("payment_terms") or None,
            billing_subscription_id=props.get("billing_subscription_id") or None,
        )

    def won_opportunities(self, since: datetime, limit: int = 200) -> list[str]:
        """CRM search: ``dealstage EQ closedwon AND hs_lastmodifieddate GTE since``, oldest
        modification first. The search index lags writes by seconds, so a catch-up run should
        look back a little further than its last run."""
        out: list[str] = []
        after: str | None = None
        while len(out) < limit:
            offset = int(after or 0)
            size = min(_SEARCH_MAX_PAGE, limit - len(out), _SEARCH_MAX_RESULTS - offset)
            if size <= 0:
                break
            request = DealSearchRequest(
                filter_groups=[
                    DealFilterGroup(
                        filters=[
                            DealFilter(property_name="dealstage", operator="EQ", value=CLOSED_WON),
                            DealFilter(
                                property_name="hs_lastmodifieddate",
                                operator="GTE",
                                value=_epoch_ms(since),
                            ),
                        ]
                    )
                ],
                sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
                properties=["dealstage", "hs_lastmodifieddate"],
                limit=size,
                after=after,
            )
            page = self._call(self._deals_search.do_search, request, what="deal search")
            out += [str(d.id) for d in page.results or []]
            after = page.paging.next.after if page.paging and page.paging.next else None
            if not after:
                break
        return out[:limit]

    def write_billing_link(self, link: BillingLink) -> None:
        """Two PATCHes (company, then deal); an empty string clears a property in HubSpot."""
        linked = link.customer_id is not None
        mrr = _money(link.mrr) if link.subscription_id else ""
        company = {
            "billing_customer_id": link.customer_id or "",
            "billing_platform": link.billing if linked else "",
            "billing_subscription_id": link.subscription_id or "",
            "billing_status": link.status[:TEXT_MAX],
            "mrr": mrr,
        }
        self._call(
            self._companies.update,
            link.account_id,
            CompanyUpdate(properties=company),
            what="company",
        )
        deal = {
            "billing_subscription_id": link.subscription_id or "",
            "billing_status": link.status[:TEXT_MAX],
            "mrr": mrr,
        }
        self._call(
            self._deals.update, link.opportunity_id, DealUpdate(properties=deal), what="deal"
        )
