"""The churn sweep's page read on Chargebee: ≤ 5 vendor calls for a page of 100 customers with
the CRM's one read (issue 15), moved out of ``connectors/chargebee.py``.

For a page the sweep listed (``ChargebeeBilling.list_customers`` keeps the page's customer
objects, so they are not read again by ID):

- ``GET /subscriptions?customer_id[in]=…`` — the subscriptions (MRR, term, cancellation);
- ``GET /transactions?customer_id[in]=…&type[is]=payment&status[is]=failure`` — the failed
  payments only; each carries ``linked_invoices[]`` with the invoice's ``invoice_status``, which is
  all the score needs of an invoice (unpaid after a failure, or recovered), so no invoice list;
- ``GET /usages?subscription_id[in]=…`` — metered usage of the 60 days;
- the subscription event log walked once per sweep (``SWEEP_EVENTS_TTL_S``): the downgrades, and
  the MRR baseline (the subscription's recurring item value at the start of the 90-day window)
  instead of the oldest recent invoice, so the invoice history is not read at all.

What the sweep reads before this (bench/RESULTS.md "Churn sweep"): the customers again by
``id[in]``, every invoice (2 pages of 100 a page of customers) and every payment transaction
(3 pages): 10 calls a page, 2.00 per 20 customers.
"""

from __future__ import annotations

import time
from typing import Any

from domain.churn import SweepSnapshot, list_mrr, live
from domain.models import Invoice, InvoiceStatus, Payment
from domain.records import Subscription

#: failed payments kept per customer (the per-customer snapshot reads the 10 newest payments)
FAILED_PER_CUSTOMER = 10


class ChargebeeSweepReader:
    """The sweep's bulk reads for one ``ChargebeeBilling`` (its client, pacing and errors)."""

    def __init__(self, billing: Any, kit: Any) -> None:
        self.cb = billing
        #: the connector module's helpers and bounds (``_paged``, ``_ts``, ``_STATUS``,
        #: ``_items_monthly``, ``BULK_IN_MAX``, ``SWEEP_EVENTS_TTL_S``, ``DOWNGRADE_WINDOW_S``),
        #: handed in by ``ChargebeeBilling`` so this module does not import it back
        self.kit = kit
        #: (read at, [(subscription, event type, monthly item value)]) of the window, oldest first
        self._window: tuple[int, list[tuple[str, str, float]]] | None = None
        #: (read at, [(subscription, monthly item value)]) just before the window, newest first
        self._before: tuple[int, list[tuple[str, float]]] | None = None

    def snapshots(self, customer_ids: list[str]) -> dict[str, SweepSnapshot]:
        c = self.kit
        ids = list(dict.fromkeys(customer_ids))
        out: dict[str, SweepSnapshot] = {}
        for start in range(0, len(ids), c.BULK_IN_MAX):
            out.update(self._chunk(ids[start : start + c.BULK_IN_MAX]))
        return out

    # --- one chunk of at most 100 customers -----------------------------------------------------

    def _chunk(self, ids: list[str]) -> dict[str, SweepSnapshot]:
        c = self.kit
        b = self.cb
        listed = b._listed_customers
        custs = {cid: listed[cid] for cid in ids if cid in listed}
        missing = [cid for cid in ids if cid not in custs]
        if missing:  # not on the page the sweep listed: read by ID
            custs.update(
                {
                    e.customer.id: e.customer
                    for e in b._pages(
                        lambda offset: b._cb.Customer.list(
                            c._paged({"id": {"in": missing}, "limit": 100}, offset)
                        ),
                        "customers",
                        max_pages=2,
                    )
                }
            )
        ids = [cid for cid in ids if cid in custs]
        if not ids:
            return {}
        raw_subs = list(
            b._pages(
                lambda offset: b._cb.Subscription.list(
                    c._paged({"customer_id": {"in": ids}, "limit": 100}, offset)
                ),
                "subscriptions",
                max_pages=5 * len(ids) // 100 + 5,
            )
        )
        coupons = self._coupons(raw_subs)
        subs_of: dict[str, list[Subscription]] = {}
        for e in raw_subs:
            sub = b._subscription(e.subscription, coupons)
            subs_of.setdefault(sub.customer_id, []).append(sub)
        pays_of: dict[str, list[Payment]] = {}
        invs_of: dict[str, dict[str, Invoice]] = {}
        for e in b._pages(
            lambda offset: b._cb.Transaction.list(
                c._paged(
                    {
                        "customer_id": {"in": ids},
                        "type": {"is": "payment"},
                        "status": {"is": "failure"},
                        "sort_by": {"desc": "date"},
                        "limit": 100,
                    },
                    offset,
                )
            ),
            "transactions",
            max_pages=FAILED_PER_CUSTOMER * len(ids) // 100 + 1,
        ):
            txn = e.transaction
            mine = pays_of.setdefault(txn.customer_id, [])
            if len(mine) >= FAILED_PER_CUSTOMER:
                continue
            mine.append(b._payment(txn, ""))
            for link in txn.linked_invoices or []:
                invs_of.setdefault(txn.customer_id, {})[link.invoice_id] = _linked_invoice(
                    c, txn, link
                )
        now = int(time.time())
        all_subs = [s.id for subs in subs_of.values() for s in subs]
        usage = b._usage_by_sub(all_subs, now)
        downgrades, baselines = self._history(set(all_subs), now)
        out: dict[str, SweepSnapshot] = {}
        for cid in ids:
            cust = custs[cid]
            subs = subs_of.get(cid, [])
            used = [usage[s.id] for s in subs if s.id in usage]
            currency = (subs[0].currency if subs else None) or getattr(
                cust, "preferred_currency_code", None
            )
            out[cid] = SweepSnapshot(
                customer=b._billing_customer(cust, mrr=sum(s.mrr for s in subs), currency=currency),
                subscriptions=subs,
                invoices=list(invs_of.get(cid, {}).values()),
                payments=pays_of.get(cid, []),
                credit_balance=int(getattr(cust, "promotional_credits", 0) or 0)
                + int(getattr(cust, "refundable_credits", 0) or 0),
                downgrades_90d=sum(downgrades.get(s.id, 0) for s in subs),
                usage_30d=sum(u[0] for u in used) if used else None,
                usage_prev_30d=sum(u[1] for u in used) if used else None,
                baseline_mrr=baseline_of(subs, baselines),
            )
        return out

    def _coupons(self, raw_subs: list[Any]) -> dict[str, Any]:
        """The coupons the page's subscriptions carry, in one ``id[in]`` list per 100 (each
        retention offer is a coupon of its own: read one by one, a book with offers applied
        would cost a request per customer who has one)."""
        c = self.kit
        b = self.cb
        ids = sorted(
            {
                applied.coupon_id
                for e in raw_subs
                for applied in e.subscription.coupons or []
                if applied.coupon_id
            }
        )
        out: dict[str, Any] = {}
        for start in range(0, len(ids), c.BULK_IN_MAX):
            chunk = ids[start : start + c.BULK_IN_MAX]
            for e in b._pages(
                lambda offset, ch=chunk: b._cb.Coupon.list(
                    c._paged({"id": {"in": ch}, "limit": 100}, offset)
                ),
                "coupons",
                max_pages=2,
            ):
                out[e.coupon.id] = e.coupon
        return out

    # --- the event log, once per sweep -----------------------------------------------------------

    def _history(self, sub_ids: set[str], now: int) -> tuple[dict[str, int], dict[str, float]]:
        """Per subscription: the downgrades of the 90-day window (a change whose recurring item
        value went down against the subscription's previous event), and the baseline — its
        value before the window (the last event before it), else its first event's value in
        the window. Absent: no event of that subscription in the window or just before it."""
        if not sub_ids:
            return {}, {}
        window = [ev for ev in self._window_events(now) if ev[0] in sub_ids]
        last: dict[str, float] = {}
        firsts = _firsts(window)
        need = {sid for sid, kind, _ in firsts if kind == "subscription_changed"}
        if need:
            for sid, value in self._before_window(now):  # newest first: the first one seen wins
                if sid in need:
                    last[sid] = value
                    need.discard(sid)
        baselines = dict(last)
        for sid, _, value in firsts:
            baselines.setdefault(sid, value)
        counts: dict[str, int] = {}
        for sid, kind, value in window:
            before = last.get(sid)
            if kind == "subscription_changed" and before is not None and value < before:
                counts[sid] = counts.get(sid, 0) + 1
            last[sid] = value
        return counts, baselines

    def _window_events(self, now: int) -> list[tuple[str, str, float]]:
        c = self.kit
        if self._window is not None and now - self._window[0] < c.SWEEP_EVENTS_TTL_S:
            return self._window[1]
        window: list[tuple[str, str, float]] = []
        for entry in self.cb._events({"occurred_at": {"after": now - c.DOWNGRADE_WINDOW_S}}, "asc"):
            ev = entry.event
            sub = (ev.content or {}).get("subscription") or {}
            if sub.get("id"):
                window.append((sub["id"], ev.event_type, c._items_monthly(sub)))
        self._window = (now, window)
        return window

    def _before_window(self, now: int) -> list[tuple[str, float]]:
        c = self.kit
        if self._before is not None and now - self._before[0] < c.SWEEP_EVENTS_TTL_S:
            return self._before[1]
        since = now - c.DOWNGRADE_WINDOW_S
        before: list[tuple[str, float]] = []
        for entry in self.cb._events({"occurred_at": {"before": since}}, "desc"):
            sub = (entry.event.content or {}).get("subscription") or {}
            if sub.get("id"):
                before.append((sub["id"], c._items_monthly(sub)))
        self._before = (now, before)
        return before


def baseline_of(subs: list[Subscription], baselines: dict[str, float]) -> int | None:
    """What the customer paid at the start of the window, at list price: each live
    subscription's value then (its current list MRR when the log shows no event of it in or
    just before the window: it has not changed); None without a live subscription (the
    domain's own rule: the customer's MRR)."""
    alive = live(subs)
    if not alive:
        return None
    return sum(round(baselines[s.id]) if s.id in baselines else list_mrr(s) for s in alive)


def _linked_invoice(c: Any, txn: Any, link: Any) -> Invoice:
    """The invoice a failed payment was for, as its ``linked_invoices`` entry describes it now:
    Chargebee's ``payment_due`` / ``not_paid`` mean an amount is still due (the entry carries
    the total, not the amount due: the total stands for it)."""
    status = c._STATUS.get(link.invoice_status, InvoiceStatus.OTHER)
    return Invoice(
        id=link.invoice_id,
        customer_id=txn.customer_id,
        subscription_id=getattr(txn, "subscription_id", None),
        status=status,
        total=int(link.invoice_total or 0),
        amount_due=int(link.invoice_total or 0) if status is InvoiceStatus.OPEN else 0,
        currency=txn.currency_code,
        issued_at=c._ts(link.invoice_date),
    )


def _firsts(events: list[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    seen: set[str] = set()
    out = []
    for ev in events:
        if ev[0] not in seen:
            seen.add(ev[0])
            out.append(ev)
    return out
