"""In-memory state of one emulated Zuora tenant, and Zuora's error vocabulary.

Records are internal dicts (money in minor units, times as unix seconds); the API module renders
them in Zuora's shapes (decimal amounts, ``yyyy-mm-dd`` dates, camelCase, custom fields ``…__c``).
Keys starting with ``_`` never leave the emulator.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# --- Zuora error codes: a 6-digit resource code and a 2-digit category ---------------------------

#: categories (billing-apis.md §3c)
PERMISSION = 10
AUTHENTICATION = 11
INVALID_VALUE = 20
UNKNOWN_FIELD = 21
MISSING_FIELD = 22
MISSING_PARAMETER = 23
BUSINESS_RULE = 30
NOT_FOUND = 40
UNSUPPORTED_METHOD = 45
LOCK_CONTENTION = 50
INTERNAL = 60
TEMPORARY = 61
LIMIT_EXCEEDED = 70
MALFORMED_JSON = 90
INTEGRATION = 99

#: resource codes (6 digits, 500000–679999)
ACCOUNT = 500000
CONTACT = 500100
SUBSCRIPTION = 530000
ORDER = 540000
INVOICE = 590000
PAYMENT = 580000
CREDIT_MEMO = 520000
PRODUCT = 510000
USAGE = 570000
PAYMENT_RUN = 581000
GENERIC = 500010


class ZuoraError(Exception):
    """A business error: classic endpoints answer it as HTTP 200 ``success:false``."""

    def __init__(
        self, resource: int, category: int, message: str, http_status: int | None = None
    ) -> None:
        super().__init__(message)
        self.code = resource * 100 + category
        self.category = category
        self.message = message
        #: a status other than 200 (auth, malformed JSON on some routes); None = Zuora's 200
        self.http_status = http_status


def new_id() -> str:
    """A Zuora object ID: 32 lowercase hex characters."""
    return uuid.uuid4().hex


def day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def stamp(ts: float) -> str:
    """Zuora's timestamps: ``2026-01-01T10:00:00.000+00:00``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")


def parse_day(value: Any, what: str, resource: int) -> float:
    try:
        d = datetime.strptime(str(value)[:10], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ZuoraError(resource, INVALID_VALUE, f"'{what}' should be a date yyyy-MM-dd") from None
    return d.timestamp()


def money(cents: int) -> float:
    return round(cents / 100, 2)


def cents(value: Any, what: str, resource: int) -> int:
    try:
        return int(round(float(value) * 100))
    except (TypeError, ValueError):
        raise ZuoraError(resource, INVALID_VALUE, f"'{what}' should be a number") from None


@dataclass
class IdempotencyRecord:
    fingerprint: str
    stored_at: float
    in_flight: bool = True
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass
class Store:
    clock: Callable[[], float] = time.time
    tokens: dict[str, float] = field(default_factory=dict)  # token → expires at
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    contacts: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    product_rate_plans: dict[str, dict[str, Any]] = field(default_factory=dict)
    subscriptions: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)  # by order number
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    credit_memos: dict[str, dict[str, Any]] = field(default_factory=dict)
    usages: dict[str, dict[str, Any]] = field(default_factory=dict)
    payment_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[str, IdempotencyRecord] = field(default_factory=dict)
    rate_hits: deque[float] = field(default_factory=deque)
    counters: dict[str, int] = field(default_factory=dict)
    seq: int = 0

    def now(self) -> float:
        return self.clock()

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def number(self, prefix: str, width: int = 8) -> str:
        """Zuora's numbering: ``A00000001``, ``S-00000001``, ``INV00000001``, ``P-00000001``."""
        n = self.counters[prefix] = self.counters.get(prefix, 0) + 1
        return f"{prefix}{n:0{width}d}"

    # --- lookups by key (ID or number), as Zuora's ``{key}`` path parameters allow ----------------

    def account(self, key: str) -> dict[str, Any]:
        acct = self.accounts.get(key) or next(
            (a for a in self.accounts.values() if a["accountNumber"] == key), None
        )
        if acct is None or acct.get("_deleted"):
            raise ZuoraError(ACCOUNT, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return acct

    def subscription(self, key: str) -> dict[str, Any]:
        sub = self.subscriptions.get(key) or next(
            (s for s in self.subscriptions.values() if s["subscriptionNumber"] == key), None
        )
        if sub is None:
            raise ZuoraError(SUBSCRIPTION, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return sub

    def invoice(self, key: str) -> dict[str, Any]:
        inv = self.invoices.get(key) or next(
            (i for i in self.invoices.values() if i["invoiceNumber"] == key), None
        )
        if inv is None:
            raise ZuoraError(INVOICE, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return inv

    def payment(self, key: str) -> dict[str, Any]:
        pay = self.payments.get(key) or next(
            (p for p in self.payments.values() if p["number"] == key), None
        )
        if pay is None:
            raise ZuoraError(PAYMENT, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return pay

    def rate_plan(self, key: str) -> dict[str, Any]:
        prp = self.product_rate_plans.get(key) or next(
            (p for p in self.product_rate_plans.values() if p["productRatePlanNumber"] == key),
            None,
        )
        if prp is None:
            raise ZuoraError(PRODUCT, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return prp

    def credit_memo(self, key: str) -> dict[str, Any]:
        memo = self.credit_memos.get(key) or next(
            (m for m in self.credit_memos.values() if m["number"] == key), None
        )
        if memo is None:
            raise ZuoraError(CREDIT_MEMO, NOT_FOUND, f"Cannot find entity by key: '{key}'.")
        return memo
