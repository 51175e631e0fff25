"""Stripe's revenue reads: ``GET /v1/invoices`` and ``GET /v1/credit_notes`` filtered by
``created`` (100 a page; Stripe's order, ``starting_after`` cursors). An invoice line carries its
``period`` and ``discount_amounts``; an invoice with more lines than the list embeds is read on
with ``GET /v1/invoices/{id}/lines``. A credit note line that credits an invoice line gives back
that line's period from the credit note's ``effective_at`` on (the unused part: a cancellation
or a downgrade); one that credits no line (a custom line, a goodwill amount) reverses on its own
day. Drafts and voided documents are skipped. The credited invoice is read once per page per
invoice (credit notes are few).

Then ``GET /v1/refunds`` filtered by ``created``: a refund made with no credit note reverses
revenue (``domain.revenue.refund_lines``: shared among its invoice's lines, each share over the
line's remaining service days, any rest on the refund's day). A refund's invoice is the one its
payment intent paid (``GET /v1/invoice_payments`` by ``payment[payment_intent]``; a refund that
names only its charge is traced through the charge's payment intent). A refund a credit note
already names (the credit note's ``refunds[].refund``, or ``refund`` on older API versions) is
skipped, since the credit note is read; so is a refund of a payment no invoice was paid by (no
billed revenue to reverse) and one that did not succeed. Per refund: one invoice-payments read,
one credit-notes read of its invoice, one invoice read (refunds are few)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from connectors.revenue.common import (
    RevenueDocuments,
    credit_period,
    day,
    period,
    split_cursor,
    ts,
)
from domain.revenue import RevenueLine, refund_lines

PHASES = ("inv", "cn", "re")
SERVICES = {"inv": ("invoices", "invoices"), "cn": ("credit_notes", "credit notes"),
            "re": ("refunds", "refunds")}  # fmt: skip


class StripeRevenue:
    def __init__(self, billing: Any) -> None:
        self._billing = billing
        self.name = billing.name

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments:
        phase, after = split_cursor(cursor, PHASES)
        v1 = self._billing.client.v1
        params: dict[str, Any] = {
            "created": {"gte": ts(issued_from), "lt": ts(issued_to)},
            "limit": min(max(limit, 1), 100),
        }
        if after:
            params["starting_after"] = after
        attr, what = SERVICES[phase]
        service = getattr(v1, attr)
        page = self._billing._call(lambda: service.list(params), what)
        docs = [d.to_dict() for d in page.data]
        if phase == "inv":
            lines = [ln for inv in docs if inv.get("status") not in ("draft", "void")
                     for ln in self._invoice_lines(inv)]  # fmt: skip
        elif phase == "cn":
            cache: dict[str, list[dict[str, Any]]] = {}
            lines = [ln for cn in docs if cn.get("status") != "void"
                     for ln in self._credit_lines(cn, cache)]  # fmt: skip
        else:
            lines = [ln for re in docs if re.get("status") == "succeeded"
                     for ln in self._refund_lines(re)]  # fmt: skip
        if page.has_more and docs:
            next_cursor: str | None = f"{phase}:{docs[-1]['id']}"
        else:
            nxt = PHASES.index(phase) + 1
            next_cursor = f"{PHASES[nxt]}:" if nxt < len(PHASES) else None
        return RevenueDocuments(lines=lines, documents=len(docs), next_cursor=next_cursor)

    def _all_lines(self, inv: dict[str, Any]) -> list[dict[str, Any]]:
        embedded = inv.get("lines") or {}
        lines = list(embedded.get("data") or [])
        more = bool(embedded.get("has_more"))
        while more and lines:
            page = self._billing._call(
                lambda: self._billing.client.v1.invoices.line_items.list(
                    inv["id"], {"limit": 100, "starting_after": lines[-1]["id"]}
                ),
                f"invoice {inv['id']} lines",
            )
            lines.extend(x.to_dict() for x in page.data)
            more = bool(page.has_more) and bool(page.data)
        return lines

    def _invoice_lines(self, inv: dict[str, Any]) -> list[RevenueLine]:
        out = []
        for li in self._all_lines(inv):
            amount = int(li.get("amount") or 0) - sum(
                int(d.get("amount") or 0) for d in li.get("discount_amounts") or []
            )
            if amount == 0:
                continue
            per = li.get("period") or {}
            start, end = period(per.get("start") or inv["created"], per.get("end"))
            out.append(
                RevenueLine(
                    source_id=f"{inv['id']}/{li['id']}",
                    product=_product(li),
                    currency=str(li.get("currency") or inv["currency"]).upper(),
                    amount=amount,
                    start=start,
                    end=end,
                )
            )
        return out

    def _credit_lines(
        self, cn: dict[str, Any], cache: dict[str, list[dict[str, Any]]]
    ) -> list[RevenueLine]:
        out = []
        effective = day(cn.get("effective_at") or cn["created"])
        for li in (cn.get("lines") or {}).get("data") or []:
            amount = int(li.get("amount") or 0) - int(li.get("discount_amount") or 0)
            if amount == 0:
                continue
            source = self._credited_line(cn, li.get("invoice_line_item"), cache)
            if source is not None:
                per = source.get("period") or {}
                start, end = period(per.get("start"), per.get("end"))
                start, end = credit_period(start, end, effective)
                product = _product(source)
            else:
                start, end = effective, effective + timedelta(days=1)
                product = "credit"
            out.append(
                RevenueLine(
                    source_id=f"{cn['id']}/{li['id']}",
                    product=product,
                    currency=str(cn["currency"]).upper(),
                    amount=-amount,
                    start=start,
                    end=end,
                )
            )
        return out

    def _credited_line(
        self, cn: dict[str, Any], line_id: str | None, cache: dict[str, list[dict[str, Any]]]
    ) -> dict[str, Any] | None:
        inv_id = cn.get("invoice")
        if not line_id or not inv_id:
            return None
        if inv_id not in cache:
            inv = self._billing._call(
                lambda: self._billing.client.v1.invoices.retrieve(inv_id), f"invoice {inv_id}"
            ).to_dict()
            cache[inv_id] = self._all_lines(inv)
        return next((x for x in cache[inv_id] if x.get("id") == line_id), None)

    def _refund_lines(self, refund: dict[str, Any]) -> list[RevenueLine]:
        """The revenue a refund with no credit note reverses; nothing for a refund a credit note
        names or of a payment no invoice was paid by."""
        v1 = self._billing.client.v1
        pi = refund.get("payment_intent")
        if not pi and refund.get("charge"):
            charge = self._billing._call(
                lambda: v1.charges.retrieve(refund["charge"]), "refund's charge"
            ).to_dict()
            pi = charge.get("payment_intent")
        if not pi:
            return []
        payments = self._billing._call(
            lambda: v1.invoice_payments.list(
                {"payment": {"type": "payment_intent", "payment_intent": pi}, "limit": 10}
            ),
            "refund's invoice payment",
        )
        inv_id = next((p.invoice for p in payments.data if p.status == "paid"), None)
        if not inv_id:
            return []
        notes = self._billing._call(
            lambda: v1.credit_notes.list({"invoice": inv_id, "limit": 100}),
            "refund's credit notes",
        )
        if any(refund["id"] in _named_refunds(cn.to_dict()) for cn in notes.data):
            return []
        inv = self._billing._call(
            lambda: v1.invoices.retrieve(inv_id), "refund's invoice"
        ).to_dict()
        return refund_lines(
            self._invoice_lines(inv), int(refund.get("amount") or 0), day(refund["created"]),
            refund["id"],
        )  # fmt: skip


def _named_refunds(cn: dict[str, Any]) -> set[str]:
    """The refunds a credit note names: ``refunds[].refund`` (``refund`` on older versions)."""
    out = {str(r.get("refund")) for r in cn.get("refunds") or [] if isinstance(r, dict)}
    if cn.get("refund"):
        out.add(str(cn["refund"]))
    return out


def _product(li: dict[str, Any]) -> str:
    pricing = (li.get("pricing") or {}).get("price_details") or {}
    price = li.get("price") or {}
    return str(pricing.get("product") or price.get("product") or "other")
