"""Recurly's revenue reads: the site's invoiced line items in one list, ``GET /line_items``
(``sort=created_at``, ``order=asc``, ``begin_time``/``end_time``, ``state=invoiced``, 200 a
page), charges and credits alike (a credit line — a prorated refund of unused time, a credit
adjustment — is negative and carries the period it gives back). Each line's ``start_date`` /
``end_date`` is its service period (no end: a one-off, recognized on its day); its revenue is
``subtotal - discount`` (tax is not revenue). The cursor is Recurly's own ``next`` link, followed
with the client's request method as its Pager does (one request per page)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.revenue.common import RevenueDocuments, credit_period
from domain.revenue import RevenueLine

#: ISO 4217 minor units where they are not hundredths
_EXPONENT = {"JPY": 0, "KRW": 0, "CLP": 0, "VND": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
             "JOD": 3, "TND": 3}  # fmt: skip


class RecurlyRevenue:
    def __init__(self, billing: Any) -> None:
        self._billing = billing
        self.name = billing.name

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments:
        options: dict[str, Any] = {}
        path = cursor or "/line_items"
        if not cursor:
            options["params"] = {
                "limit": min(max(limit, 1), 200),
                "sort": "created_at",
                "order": "asc",
                "begin_time": _iso(issued_from),
                "end_time": _iso(issued_to),
                "state": "invoiced",
            }
        page = self._billing._call(
            lambda rc: rc._make_request("GET", path, None, **options), "line items"
        )
        items = [_dict(x) for x in page.data]
        # end_time is inclusive: a line created exactly at the next month's first second is not ours
        end = datetime(issued_to.year, issued_to.month, issued_to.day, tzinfo=UTC)
        items = [x for x in items if _when(x.get("created_at")) < end]
        lines = [line for x in items if (line := _line(x)) is not None]
        invoices = {x.get("invoice_id") for x in items}
        return RevenueDocuments(
            lines=lines,
            documents=len(invoices),
            next_cursor=page.next if page.has_more and page.next else None,
        )


def _dict(resource: Any) -> dict[str, Any]:
    return {k: getattr(resource, k, None) for k in (
        "id", "type", "currency", "subtotal", "discount", "start_date", "end_date",
        "product_code", "plan_code", "add_on_code", "item_code", "invoice_id", "created_at")}  # fmt: skip


def _iso(d: date) -> str:
    return f"{d.isoformat()}T00:00:00Z"


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def _minor(value: Any, currency: str) -> int:
    return int(Decimal(str(value or 0)).scaleb(_EXPONENT.get(currency, 2)).to_integral_value())


def _line(x: dict[str, Any]) -> RevenueLine | None:
    currency = str(x.get("currency") or "USD").upper()
    amount = _minor(x.get("subtotal"), currency) - _minor(x.get("discount"), currency)
    if amount == 0 or x.get("start_date") is None:
        return None
    start = _when(x["start_date"]).date()
    end = _when(x["end_date"]).date() if x.get("end_date") else start
    if end <= start:
        end = start + timedelta(days=1)
    if amount < 0 and x.get("created_at"):  # a credit gives back from the day it is made on
        start, end = credit_period(start, end, _when(x["created_at"]).date())
    product = (x.get("product_code") or x.get("add_on_code") or x.get("plan_code")
               or x.get("item_code") or "other")  # fmt: skip
    return RevenueLine(
        source_id=f"{x.get('invoice_id') or '-'}/{x['id']}",
        product=str(product),
        currency=currency,
        amount=amount,
        start=start,
        end=end,
    )
