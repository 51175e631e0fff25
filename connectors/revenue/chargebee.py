"""Chargebee's revenue reads: ``GET /invoices`` and ``GET /credit_notes`` filtered by
``date[between]`` (100 a page, oldest first), each line with its ``date_from``/``date_to``
service period, less its ``discount_amount``. Voided documents are skipped."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from connectors.revenue.common import RevenueDocuments, credit_period, day, period, split_cursor, ts
from domain.revenue import RevenueLine

PHASES = ("inv", "cn")
INVOICE_STATUSES = ["paid", "posted", "payment_due", "not_paid"]
CREDIT_NOTE_STATUSES = ["adjusted", "refunded", "refund_due"]


class ChargebeeRevenue:
    def __init__(self, billing: Any) -> None:
        self._billing = billing
        self.name = billing.name

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments:
        phase, offset = split_cursor(cursor, PHASES)
        cb = self._billing.client
        params: dict[str, Any] = {
            "date": {"between": [ts(issued_from), ts(issued_to - timedelta(days=1)) + 86_399]},
            "sort_by": {"asc": "date"},
            "limit": min(max(limit, 1), 100),
        }
        if offset:
            params["offset"] = offset
        if phase == "inv":
            params["status"] = {"in": INVOICE_STATUSES}
            resp = self._billing._call(lambda: cb.Invoice.list(params), what="invoices")
            docs = [e.invoice for e in resp.list]
            sign = 1
        else:
            params["status"] = {"in": CREDIT_NOTE_STATUSES}
            resp = self._billing._call(lambda: cb.CreditNote.list(params), what="credit notes")
            docs = [e.credit_note for e in resp.list]
            sign = -1
        lines = [line for doc in docs for line in _lines(doc, sign)]
        nxt = resp.next_offset
        if nxt:
            next_cursor: str | None = f"{phase}:{nxt}"
        else:
            next_cursor = "cn:" if phase == "inv" else None
        return RevenueDocuments(lines=lines, documents=len(docs), next_cursor=next_cursor)


def _lines(doc: Any, sign: int) -> list[RevenueLine]:
    out = []
    currency = str(getattr(doc, "currency_code", None) or "USD").upper()
    for li in getattr(doc, "line_items", None) or []:
        amount = int(getattr(li, "amount", 0) or 0) - int(getattr(li, "discount_amount", 0) or 0)
        if amount == 0:
            continue
        start, end = period(li.date_from, getattr(li, "date_to", None))
        if sign < 0:  # a credit note gives back from its own date on
            start, end = credit_period(start, end, day(doc.date))
        out.append(
            RevenueLine(
                source_id=f"{doc.id}/{li.id}",
                product=str(getattr(li, "entity_id", None) or getattr(li, "entity_type", "other")),
                currency=currency,
                amount=sign * amount,
                start=start,
                end=end,
            )
        )
    return out
