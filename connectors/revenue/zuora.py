"""Zuora's revenue reads through Object Query, a page (up to 99 records) per call:
``GET /object-query/invoices`` (``invoiceDate`` in the window, ``status`` Posted,
``expand[]=invoiceitems``) then ``GET /object-query/credit-memos`` (``creditMemoDate`` in the
window, Posted, ``expand[]=creditmemoitems``), followed by Zuora's ``nextPage`` cursor. An item's
service period is ``serviceStartDate`` .. ``serviceEndDate`` — Zuora's end date is inclusive, so
the period ends the day after; its revenue is the amount without tax (``chargeAmount`` on an
invoice item, ``amountWithoutTax`` on a memo item, reversed)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from connectors.revenue.common import RevenueDocuments, credit_period, split_cursor
from domain.revenue import RevenueLine

PHASES = ("inv", "cn")
_EXPONENT = {"JPY": 0, "KRW": 0, "CLP": 0, "VND": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3,
             "JOD": 3, "TND": 3}  # fmt: skip


class ZuoraRevenue:
    def __init__(self, billing: Any) -> None:
        self._billing = billing
        self.name = billing.name

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments:
        phase, page_cursor = split_cursor(cursor, PHASES)
        field = "invoiceDate" if phase == "inv" else "creditMemoDate"
        page = self._billing._query(
            "invoices" if phase == "inv" else "credit-memos",
            [
                f"{field}.GE:{issued_from.isoformat()}",
                f"{field}.LT:{issued_to.isoformat()}",
                "status.EQ:Posted",
            ],
            size=min(max(limit, 1), 99),
            cursor=page_cursor,
            expand=["invoiceitems" if phase == "inv" else "creditmemoitems"],
        )
        docs = page.get("data") or []
        lines = [ln for d in docs for ln in _lines(d, phase)]
        nxt = page.get("nextPage")
        if nxt:
            next_cursor: str | None = f"{phase}:{nxt}"
        else:
            next_cursor = "cn:" if phase == "inv" else None
        return RevenueDocuments(lines=lines, documents=len(docs), next_cursor=next_cursor)


def _minor(value: Any, currency: str) -> int:
    return int(Decimal(str(value or 0)).scaleb(_EXPONENT.get(currency, 2)).to_integral_value())


def _lines(doc: dict[str, Any], phase: str) -> list[RevenueLine]:
    currency = str(doc.get("currency") or "USD").upper()
    items = doc.get("invoiceItems" if phase == "inv" else "creditMemoItems") or []
    out = []
    for it in items:
        raw = (
            it.get("chargeAmount")
            if phase == "inv"
            else it.get("amountWithoutTax", it.get("amount"))
        )
        amount = _minor(raw, currency)
        if amount == 0 or not it.get("serviceStartDate"):
            continue
        start = date.fromisoformat(str(it["serviceStartDate"])[:10])
        last = date.fromisoformat(str(it.get("serviceEndDate") or it["serviceStartDate"])[:10])
        end = max(last, start) + timedelta(days=1)  # Zuora's end date is inclusive
        if phase == "cn" and doc.get("creditMemoDate"):  # given back from the memo's date on
            issued = date.fromisoformat(str(doc["creditMemoDate"])[:10])
            start, end = credit_period(start, end, issued)
        product = (
            it.get("sKU")  # Object Query's spelling (ExpandedInvoiceItem)
            or it.get("sku")
            or it.get("skuName")
            or it.get("productName")
            or it.get("chargeName")
        )
        out.append(
            RevenueLine(
                source_id=f"{doc['id']}/{it['id']}",
                product=str(product or "other"),
                currency=currency,
                amount=amount if phase == "inv" else -amount,
                start=start,
                end=end,
            )
        )
    return out
