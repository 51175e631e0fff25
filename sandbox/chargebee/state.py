"""In-memory state of one emulated Chargebee site.

Resources are stored as dicts shaped like the API's; keys starting with ``_`` are private
(sequence numbers, the scenario's card behaviour) and never leave the emulator.
"""

from __future__ import annotations

import calendar
import copy
import secrets
import string
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

_ALNUM = string.ascii_letters + string.digits


def random_id(prefix: str = "") -> str:
    """Chargebee-looking id: ``16BPgETyVrQbiGhA`` (optionally with a prefix such as ``ev_``)."""
    return prefix + "16" + "".join(secrets.choice(_ALNUM) for _ in range(14))


@dataclass
class IdempotencyRecord:
    fingerprint: tuple[str, str, tuple[tuple[str, str], ...]]
    status: int
    body: bytes
    stored_at: float


@dataclass
class Store:
    clock: Callable[[], float] = time.time
    item_prices: dict[str, dict[str, Any]] = field(default_factory=dict)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)  # by customer id
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: credit notes (seeded; read through ``GET /credit_notes``: credit_notes.py)
    credit_notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    transactions: dict[str, dict[str, Any]] = field(default_factory=dict)
    comments: dict[str, dict[str, Any]] = field(default_factory=dict)
    coupons: dict[str, dict[str, Any]] = field(default_factory=dict)
    promotional_credits: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    usage_events: list[dict[str, Any]] = field(default_factory=list)
    usages: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the site's custom field configuration, by api_name (``cf_...``)
    custom_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: site settings: ``net_terms`` (list of days, or None: any), ``contract_terms`` (bool)
    site: dict[str, Any] = field(
        default_factory=lambda: {"net_terms": None, "contract_terms": True}
    )
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    rate_hits: deque[float] = field(default_factory=deque)
    seq: int = 0
    invoice_no: int = 0
    #: invoices by subscription, kept up to date lazily (invoices are only ever added): a
    #: subscription's render reads its dues without scanning every invoice of the site
    _invoices_by_sub: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)
    _invoices_indexed: int = field(default=0, repr=False)
    #: table name → (rows by customer_id, rows indexed): ``customer_id[in]`` lists read these
    _by_customer: dict[str, tuple[dict[str, list[dict[str, Any]]], int]] = field(
        default_factory=dict, repr=False
    )
    #: events removed from ``events`` (anything else only adds): events_by_time starts again
    events_dropped: int = 0
    _event_order: tuple[list[tuple[int, int, str]], int, int] = field(
        default_factory=lambda: ([], 0, 0), repr=False
    )
    #: the customers sorted by (created_at, _seq, id), customers indexed: customers_by_created
    _customer_order: tuple[list[tuple[int, int, str]], int] = field(
        default_factory=lambda: ([], 0), repr=False
    )

    def customers_by_created(self) -> list[tuple[int, int, str]]:
        """Every customer as ``(created_at, _seq, id)``, sorted: kept up to date lazily
        (customers are only ever added; a deleted one keeps its row), so listing the site's
        customers page by page reads one page, not every customer, per request."""
        index, done = self._customer_order
        if done > len(self.customers):  # replaced wholesale: index again
            index, done = [], 0
        if done < len(self.customers):
            new = islice(self.customers.values(), done, None)
            index.extend((int(c.get("created_at") or 0), int(c["_seq"]), c["id"]) for c in new)
            index.sort()  # a sorted run and a short tail: linear
            done = len(self.customers)
        self._customer_order = (index, done)
        return index

    def events_by_time(self) -> list[tuple[int, int, str]]:
        """Every event as ``(occurred_at, _seq, id)``, sorted, kept up to date lazily like
        ``customers_by_created``; rebuilt after ``events_dropped`` moved (the seed drops the
        events its coupons made), so a walk of the event log reads a page per request."""
        index, done, dropped = self._event_order
        if done > len(self.events) or dropped != self.events_dropped:
            index, done = [], 0
        if done < len(self.events):
            new = islice(self.events.values(), done, None)
            index.extend((int(e["occurred_at"]), int(e["_seq"]), e["id"]) for e in new)
            index.sort()  # a sorted run and a short tail: linear
            done = len(self.events)
        self._event_order = (index, done, self.events_dropped)
        return index

    def rows_of_customers(self, table: str, customer_ids: list[str]) -> list[dict[str, Any]]:
        """The rows of ``subscriptions`` / ``invoices`` / ``transactions`` (only ever added to)
        that belong to these customers, from an index kept up to date lazily: a list filtered by
        ``customer_id[in]`` reads its customers' rows, not every row of the site."""
        rows: dict[str, dict[str, Any]] = getattr(self, table)
        index, done = self._by_customer.get(table, ({}, 0))
        if done > len(rows):
            index, done = {}, 0
        if done < len(rows):
            for row in islice(rows.values(), done, None):
                if row.get("customer_id"):
                    index.setdefault(row["customer_id"], []).append(row)
            done = len(rows)
        self._by_customer[table] = (index, done)
        return [r for c in dict.fromkeys(customer_ids) for r in index.get(c, [])]

    def invoices_of_subscription(self, subscription_id: str) -> list[dict[str, Any]]:
        if self._invoices_indexed > len(self.invoices):  # replaced wholesale: index again
            self._invoices_by_sub, self._invoices_indexed = {}, 0
        if self._invoices_indexed < len(self.invoices):
            for inv in islice(self.invoices.values(), self._invoices_indexed, None):
                if inv.get("subscription_id"):
                    self._invoices_by_sub.setdefault(inv["subscription_id"], []).append(inv)
            self._invoices_indexed = len(self.invoices)
        return self._invoices_by_sub.get(subscription_id, [])

    def now(self) -> int:
        return int(self.clock())

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def next_invoice_id(self) -> str:
        while True:
            self.invoice_no += 1
            candidate = str(self.invoice_no)
            if candidate not in self.invoices:
                return candidate

    def stamp(self, obj: dict[str, Any], created: bool = False) -> dict[str, Any]:
        """Set ``updated_at`` and a strictly increasing ``resource_version`` (ms)."""
        now = self.now()
        if created:
            obj.setdefault("created_at", now)
            obj["_seq"] = self.next_seq()
        obj["updated_at"] = now
        obj["resource_version"] = max(obj.get("resource_version", 0) + 1, self.now_ms())
        return obj


def public(obj: Any) -> Any:
    """A deep copy without private keys and without ``None`` values (Chargebee omits them)."""
    if isinstance(obj, dict):
        return {k: public(v) for k, v in obj.items() if not k.startswith("_") and v is not None}
    if isinstance(obj, list):
        return [public(v) for v in obj]
    return copy.copy(obj)


def add_period(ts: int, period: int, unit: str) -> int:
    if unit == "day":
        return ts + 86400 * period
    if unit == "week":
        return ts + 7 * 86400 * period
    months = period * (12 if unit == "year" else 1)
    d = datetime.fromtimestamp(ts, UTC)
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())
