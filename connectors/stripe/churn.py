"""Churn and support context on Stripe: lists newest first, paged with ``starting_after``;
plan/quantity decreases from ``customer.subscription.updated`` events (their
``previous_attributes``, kept 30 days); the churn sweep walks the account's lists once per
sweep (:data:`SWEEP_EVENTS_TTL_S`) and reads a page of customers from that walk."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import stripe

from connectors.base import NotFound
from connectors.stripe.client import classify
from connectors.stripe.customers import Customers
from connectors.stripe.values import (
    _NO_REVENUE,
    DAY_S,
    _coupon_id,
    _customer,
    _ended,
    _intent_payment,
    _invoice,
    _is_downgrade,
    _subscription,
    _upper,
)
from domain.records import (
    CustomerPage,
    CustomerSnapshot,
)

#: how long the churn sweep reuses one walk of the downgrade window's events (one sweep)
SWEEP_EVENTS_TTL_S = 900


class Churn(Customers):
    """Churn and support context: customer pages, one customer's snapshot (subscriptions,
    invoices, payments, downgrades, usage), the sweep's page read, retention discounts."""

    def list_customers(self, cursor: str | None = None, limit: int = 100) -> CustomerPage:
        """One page in Stripe's own order, **newest first** (the protocol says oldest first;
        Stripe has no ascending list, and a sweep only needs to see everyone once). The
        cursor is the page's last ID (``starting_after``). MRR is not filled in here."""
        params: dict[str, Any] = {"limit": max(1, min(limit, 100))}
        if cursor:
            params["starting_after"] = cursor
        page = self._call(lambda: self._client.v1.customers.list(params), what="customers")
        data = [c.to_dict() for c in page.data]
        if not cursor:  # a new pass over the book: the sweep's walks are read again
            self._sweep_cache = self._sweep_downgrades = None
        self._listed_customers = {str(c["id"]): c for c in data}  # the sweep's page read
        return CustomerPage(
            customers=[_customer(c) for c in data],
            next_cursor=data[-1]["id"] if page.has_more and data else None,
        )

    def customer_snapshot(self, customer_id: str, invoices: int = 5) -> CustomerSnapshot:
        """Subscriptions (all statuses, discounts expanded), the latest invoices and payment
        intents, credit (a negative ``balance`` is credit), downgrades in the last 90 days from
        the event log (Stripe keeps events 30 days: older ones are not seen) and metered usage
        from the billing meters on the customer's subscriptions (None without meters)."""
        what = f"customer {customer_id}"
        cus = self._call(lambda: self._client.v1.customers.retrieve(customer_id), what).to_dict()
        if cus.get("deleted"):
            raise NotFound("stripe", what)
        now = time.time()
        sub_dicts = self._list(
            self._client.v1.subscriptions,
            {
                "customer": customer_id,
                "status": "all",
                "limit": 100,
                "expand": ["data.discounts.source.coupon"],
            },
            what,
        )
        subs = [_subscription(s, now) for s in sub_dicts]
        count = max(1, min(invoices, 100))
        inv_dicts = self._list(
            self._client.v1.invoices,
            {"customer": customer_id, "limit": count, "expand": ["data.payments"]},
            what,
        )
        paid_for = {  # payment intent → the invoice it paid (invoice_payment objects)
            str((ip.get("payment") or {}).get("payment_intent")): str(inv["id"])
            for inv in inv_dicts
            for ip in ((inv.get("payments") or {}).get("data") or [])
        }
        pi_dicts = self._list(
            self._client.v1.payment_intents,
            {"customer": customer_id, "limit": min(100, 2 * count)},
            what,
        )
        payments = [
            p for pi in pi_dicts if (p := _intent_payment(pi, paid_for.get(pi["id"]))) is not None
        ]
        live = [s for s in subs if s.status not in _NO_REVENUE]
        currency = live[0].currency if live else _upper(cus.get("currency"))
        balance = int(cus.get("balance") or 0)
        usage, usage_prev = self._usage(customer_id, sub_dicts, now)
        return CustomerSnapshot(
            customer=_customer(cus, mrr=sum(s.mrr for s in live), currency=currency),
            subscriptions=subs,
            invoices=[_invoice(inv) for inv in inv_dicts][:count],
            payments=payments,
            credit_balance=-balance if balance < 0 else 0,
            downgrades_90d=self._downgrades(customer_id, now),
            usage_30d=usage,
            usage_prev_30d=usage_prev,
        )

    def apply_discount(
        self, subscription_id: str, percent: float, months: int, idempotency_key: str
    ) -> str:
        """A ``repeating`` coupon (``duration_in_months=months``, key derived from ours), then
        POST /v1/subscriptions/{id} ``discounts`` = the discounts it already has + the coupon
        (``discounts`` replaces the list). A retry that finds the coupon already applied
        returns that discount without writing again. Returns the discount ID (``di_…``)."""
        coupon = self._create_coupon(
            {
                "percent_off": percent,
                "duration": "repeating",
                "duration_in_months": months,
                "name": f"Retention {percent:g}% x {months} mo",
            },
            f"{idempotency_key}-coupon",
        )
        what = f"subscription {subscription_id}"
        sub = self._call(
            lambda: self._client.v1.subscriptions.retrieve(
                subscription_id, {"expand": ["discounts"]}
            ),
            what,
        ).to_dict()
        now = time.time()
        current = [d for d in sub.get("discounts") or [] if isinstance(d, dict)]
        applied = next((d for d in current if _coupon_id(d) == coupon), None)
        if applied is not None:
            return str(applied["id"])
        keep = [{"discount": d["id"]} for d in current if not _ended(d, now)]
        params = {"discounts": [*keep, {"coupon": coupon}], "expand": ["discounts"]}
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        updated = self._call(
            lambda: self._client.v1.subscriptions.update(subscription_id, params, options),  # type: ignore[arg-type]
            what,
        ).to_dict()
        for d in updated.get("discounts") or []:
            if isinstance(d, dict) and _coupon_id(d) == coupon:
                return str(d["id"])
        return coupon

    def _downgrades(self, customer_id: str, now: float) -> int:
        """``customer.subscription.updated`` events of the last 90 days whose
        ``previous_attributes`` show a higher monthly amount (quantity or price) than after.
        The events list cannot filter by customer: the account's updates are paged through."""
        params = {
            "type": "customer.subscription.updated",
            "created": {"gte": int(now) - 90 * DAY_S},
            "limit": 100,
        }
        count = 0
        try:
            for evt in self._client.v1.events.list(params).auto_paging_iter():  # type: ignore[arg-type]
                data = evt.to_dict().get("data") or {}
                obj = data.get("object") or {}
                if obj.get("customer") == customer_id and _is_downgrade(
                    obj, data.get("previous_attributes") or {}
                ):
                    count += 1
        except stripe.StripeError as exc:
            raise classify(exc, "events") from None
        return count

    def _usage(
        self, customer_id: str, subs: Iterable[Mapping[str, Any]], now: float
    ) -> tuple[float | None, float | None]:
        """Usage on the billing meters behind the customer's live metered prices: the last 30
        days and the 30 before (summary windows start and end on minute boundaries)."""
        meters = sorted(
            {
                str(meter)
                for sub in subs
                if sub.get("status") not in _NO_REVENUE
                for item in ((sub.get("items") or {}).get("data") or [])
                if (meter := ((item.get("price") or {}).get("recurring") or {}).get("meter"))
            }
        )
        if not meters:
            return None, None
        end = int(now) // 60 * 60
        mid, start = end - 30 * DAY_S, end - 60 * DAY_S
        recent = sum(self._meter_total(m, customer_id, mid, end) for m in meters)
        before = sum(self._meter_total(m, customer_id, start, mid) for m in meters)
        return recent, before

    def _meter_total(self, meter_id: str, customer_id: str, start: int, end: int) -> float:
        params = {"customer": customer_id, "start_time": start, "end_time": end, "limit": 100}
        page = self._call(
            lambda: self._client.v1.billing.meters.event_summaries.list(meter_id, params),  # type: ignore[arg-type]
            what=f"meter {meter_id}",
        )
        return float(sum(float(s.aggregated_value or 0) for s in page.data))

    def customer_snapshots(
        self, customer_ids: list[str], invoices: int = 5
    ) -> dict[str, CustomerSnapshot]:
        """``customer_snapshot`` for each customer of a sweep page; a customer deleted since the
        page was listed is absent. Stripe's lists filter by one customer at a time (and its
        search ORs at most 10 clauses), so the sweep reads the account's lists instead: one walk
        per sweep of all subscriptions, invoices (with their payments) and payment intents,
        grouped by customer (``_SweepBook``), next to the event log's one walk. The customers
        themselves come from the page ``list_customers`` just returned; one it did not hold is
        retrieved. A walk is kept until the sweep lists its first page again (a new pass over
        the book) or ``SWEEP_EVENTS_TTL_S`` passes."""
        now = time.time()
        downgrades = self._downgrades_by_customer(now)
        book = self._sweep_book(now)
        listed: dict[str, dict[str, Any]] = getattr(self, "_listed_customers", {})
        count = max(1, min(invoices, 100))
        out: dict[str, CustomerSnapshot] = {}
        for customer_id in dict.fromkeys(customer_ids):
            cus = listed.get(customer_id)
            if cus is None:
                what = f"customer {customer_id}"
                try:
                    cus = self._call(
                        lambda cid=customer_id: self._client.v1.customers.retrieve(cid), what
                    ).to_dict()
                except NotFound:
                    continue
            if cus.get("deleted"):
                continue
            sub_dicts = book.subscriptions.get(customer_id, [])
            inv_dicts = book.invoices.get(customer_id, [])[:count]
            paid_for = {
                str((ip.get("payment") or {}).get("payment_intent")): str(inv["id"])
                for inv in inv_dicts
                for ip in ((inv.get("payments") or {}).get("data") or [])
            }
            pi_dicts = book.intents.get(customer_id, [])[: min(100, 2 * count)]
            subs = [_subscription(sd, now) for sd in sub_dicts]
            payments = [
                p
                for pi in pi_dicts
                if (p := _intent_payment(pi, paid_for.get(pi["id"]))) is not None
            ]
            live = [sub for sub in subs if sub.status not in _NO_REVENUE]
            currency = live[0].currency if live else _upper(cus.get("currency"))
            balance = int(cus.get("balance") or 0)
            usage, usage_prev = self._usage(customer_id, sub_dicts, now)
            out[customer_id] = CustomerSnapshot(
                customer=_customer(cus, mrr=sum(sub.mrr for sub in live), currency=currency),
                subscriptions=subs,
                invoices=[_invoice(inv) for inv in inv_dicts],
                payments=payments,
                credit_balance=-balance if balance < 0 else 0,
                downgrades_90d=downgrades.get(customer_id, 0),
                usage_30d=usage,
                usage_prev_30d=usage_prev,
            )
        return out

    def _sweep_book(self, now: float) -> _SweepBook:
        """The account's subscriptions (all statuses, discounts expanded), invoices (payments
        expanded) and payment intents, each walked once per sweep in Stripe's order (newest
        first) and grouped by customer, at most 100 a customer (what one customer's list page
        would hold)."""
        cached: _SweepBook | None = getattr(self, "_sweep_cache", None)
        if cached is not None and now - cached.at < SWEEP_EVENTS_TTL_S:
            return cached
        book = _SweepBook(at=now)
        walks: list[tuple[Any, dict[str, Any], dict[str, list[dict[str, Any]]], str]] = [
            (
                self._client.v1.subscriptions,
                {"status": "all", "limit": 100, "expand": ["data.discounts.source.coupon"]},
                book.subscriptions,
                "subscriptions",
            ),
            (
                self._client.v1.invoices,
                {"limit": 100, "expand": ["data.payments"]},
                book.invoices,
                "invoices",
            ),
            (self._client.v1.payment_intents, {"limit": 100}, book.intents, "payment intents"),
        ]
        for service, params, into, what in walks:
            try:
                for obj in service.list(params).auto_paging_iter():
                    row = obj.to_dict()
                    rows = into.setdefault(str(row.get("customer") or ""), [])
                    if len(rows) < 100:
                        rows.append(row)
            except stripe.StripeError as exc:
                raise classify(exc, what) from None
        self._sweep_cache = book
        return book

    def _downgrades_by_customer(self, now: float) -> dict[str, int]:
        """``_downgrades`` for every customer at once: one walk of the window's
        ``customer.subscription.updated`` events, kept for ``SWEEP_EVENTS_TTL_S`` (one sweep)."""
        cached = getattr(self, "_sweep_downgrades", None)
        if cached is not None and now - cached[0] < SWEEP_EVENTS_TTL_S:
            return cached[1]
        params = {
            "type": "customer.subscription.updated",
            "created": {"gte": int(now) - 90 * DAY_S},
            "limit": 100,
        }
        counts: dict[str, int] = {}
        try:
            for evt in self._client.v1.events.list(params).auto_paging_iter():  # type: ignore[arg-type]
                data = evt.to_dict().get("data") or {}
                obj = data.get("object") or {}
                customer = obj.get("customer")
                if customer and _is_downgrade(obj, data.get("previous_attributes") or {}):
                    counts[str(customer)] = counts.get(str(customer), 0) + 1
        except stripe.StripeError as exc:
            raise classify(exc, "events") from None
        self._sweep_downgrades = (now, counts)
        return counts


@dataclass
class _SweepBook:
    """One sweep's walk of the account's lists, grouped by customer ID (Stripe's order)."""

    at: float
    subscriptions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invoices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    intents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
