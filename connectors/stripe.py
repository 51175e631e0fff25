"""Stripe Billing through the official ``stripe`` client (16.x, ``StripeClient``).

Shape and error discipline as :mod:`connectors.chargebee`. Stripe specifics (billing-apis.md §1):

- One ``StripeClient`` per connector, ``max_network_retries=0`` (Temporal owns retries), on the
  process's one shared HTTP client (``RequestsClient`` over a paced keep-alive session).
- Every POST carries *our* stable idempotency key: stripe-python would otherwise add a random one
  per call, so a Temporal retry would be a brand-new request to Stripe. Reads pass none.
- Stripe has no notes: an audit note is a **metadata** entry on the invoice or customer, keyed by a
  hash of the idempotency key, so the same key overwrites the same entry (idempotent by
  construction, even after Stripe has pruned the key, i.e. after 24 h).
- Current API versions: an invoice's subscription is ``parent.subscription_details.subscription``
  and its payments are ``invoice_payment`` objects (``payments``, only when expanded); a payment
  attempt's decline lives on the payment intent's ``last_payment_error``.
- Quote-to-cash: the CRM link is customer **metadata** ``crm`` + ``crm_account_id``; found again
  with the Search API, which is *eventually consistent* (a customer is searchable up to about a
  minute after it is written), plus the customer events of the last ten minutes (a strongly
  consistent list), so a customer created or linked moments ago is found without waiting.
- Limits: a test-mode account answers 429 past 25 requests/s (search: 20/s); every request is
  paced through one keep-alive session per process (connectors/limits.py), and written fields
  are cut to Stripe's documented lengths (coupon name 40, metadata value 500). DELETEs carry
  no key: Stripe ignores keys on DELETE (they are idempotent by definition; a repeat is a 404,
  which these methods treat as done).
- Churn and support: Stripe lists newest first and pages with ``starting_after=<last id>``;
  plan/quantity decreases come from ``customer.subscription.updated`` events (their
  ``previous_attributes``), which Stripe keeps for 30 days only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any, TypeVar

import stripe

from connectors import limits
from connectors.base import ConnectorError, ErrorKind, NotFound
from connectors.timeouts import call_timeout
from domain.messages import locale_language
from domain.models import (
    BillingCustomer,
    Invoice,
    InvoiceContext,
    InvoicePaid,
    InvoiceStatus,
    NoteTarget,
    Payment,
    PaymentAttempt,
    PaymentFailed,
)
from domain.preflight import Check, CheckStatus
from domain.records import (
    CustomerDraft,
    CustomerPage,
    CustomerSnapshot,
    Price,
    Subscription,
    SubscriptionDraft,
    SubscriptionRef,
)
from domain.settings import StripeSettings

T = TypeVar("T")

_STATUS = {
    "paid": InvoiceStatus.PAID,
    "open": InvoiceStatus.OPEN,
    "void": InvoiceStatus.VOID,
    "draft": InvoiceStatus.OTHER,
    "uncollectible": InvoiceStatus.OTHER,
}
#: one call for the whole context: customer, subscription (for MRR) and payment attempts
#: (each ``invoice_payment`` with its payment intent). Stripe allows four expansion levels.
_INVOICE_EXPAND = [
    "customer",
    "parent.subscription_details.subscription",
    "payments.data.payment.payment_intent",
]
#: recurring interval → months per interval (MRR is the monthly-normalised recurring amount)
_MONTHS_PER_INTERVAL = {
    "month": Fraction(1),
    "year": Fraction(12),
    "week": Fraction(12, 52),
    "day": Fraction(12, 365),
}
#: subscriptions that no longer (or not yet) bring revenue
_NO_REVENUE = {"canceled", "incomplete", "incomplete_expired"}
#: subscriptions that are over: cancelling one again is success, and they are never "the" one
_ENDED = {"canceled", "incomplete_expired"}
#: what a CRM-linked object carries in its metadata
CRM_KEY, CRM_ACCOUNT_KEY, CRM_OPPORTUNITY_KEY = "crm", "crm_account_id", "crm_opportunity_id"
DAY_S = 86_400
#: how long the churn sweep reuses one walk of the downgrade window's events (one sweep)
SWEEP_EVENTS_TTL_S = 900
METADATA_PREFIX = "rb_"
METADATA_VALUE_MAX = 500  # Stripe's limit per metadata value (and 40 characters per key)
METADATA_KEYS_MAX = 50  # Stripe's limit of metadata keys per object
_NOTE_HEADROOM = 5  # notes dropped beyond the one that must go, when an object is full
DEFAULT_RETRY_AFTER_S = 2.0


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _upper(currency: Any) -> str:
    return str(currency or "usd").upper()


def note_key(idempotency_key: str) -> str:
    """The metadata key a note is stored under: stable per idempotency key, 15 characters."""
    return METADATA_PREFIX + hashlib.sha256(idempotency_key.encode()).hexdigest()[:12]


def monthly_recurring(subscription: Mapping[str, Any]) -> int:
    """MRR in minor units: each licensed item's ``unit_amount × quantity`` normalised to a month.

    Metered and tiered prices (no ``unit_amount``/quantity) and ended subscriptions count 0.
    """
    if subscription.get("status") in _NO_REVENUE:
        return 0
    return round(_items_monthly(subscription.get("items")))


def _items_monthly(items: Any) -> Fraction:
    """The monthly-normalised amount of a subscription's ``items`` list (no status check)."""
    return sum(
        (_item_monthly(item) for item in ((items or {}).get("data") or [])), start=Fraction(0)
    )


def _item_monthly(item: Mapping[str, Any]) -> Fraction:
    price = item.get("price") or {}
    recurring = price.get("recurring") or {}
    months = _MONTHS_PER_INTERVAL.get(recurring.get("interval") or "")
    unit = price.get("unit_amount")
    if months is None or unit is None or recurring.get("usage_type") == "metered":
        return Fraction(0)
    count = int(recurring.get("interval_count") or 1)
    quantity = int(item.get("quantity") if item.get("quantity") is not None else 1)
    return Fraction(int(unit) * quantity) / (months * count)


#: Stripe's documented rates (billing-apis.md §1f) at policies/limits.yaml's 0.8 share: the
#: pacing a connector uses until the worker configures its own
_DEFAULT_RATES = {
    "test": {"stripe": 20.0, "stripe.search": 16.0},
    "live": {"stripe": 80.0, "stripe.search": 16.0},
}
#: how long a write may take to show in Stripe's search (docs: "less than a minute" normally);
#: the reads that must not miss a recent write list the customers created in this window too
SEARCH_LAG_WINDOW_S = 600
#: at most this many customer events are read for that window (10 pages; one in a quiet account)
RECENT_EVENTS_MAX = 1000
#: documented field limits RevBridge writes to
COUPON_NAME_MAX = 40
DESCRIPTION_MAX = 350  # customer balance transaction description
CANCELLATION_COMMENT_MAX = 500  # kept as before (Stripe documents no lower limit)
#: the events RevBridge's webhook endpoint must receive (webhooks/stripe.py)
WEBHOOK_EVENTS = ("invoice.payment_failed", "invoice.paid")
#: the HTTP client every StripeBilling of this process shares, per timeout (keep-alive: one TCP
#: connection per calling thread instead of one per request, and the CA bundle loaded once)
_http_clients: dict[float, stripe.RequestsClient] = {}
_http_lock = threading.Lock()
_POOL_SIZE = 32  # connections kept open: at least the worker's activity threads


def shared_http_client(timeout_s: float) -> stripe.RequestsClient:
    """The process's one keep-alive HTTP client for the ``stripe`` SDK (a paced
    ``requests.Session``: connectors/limits.py); the session is thread-safe and shared."""
    with _http_lock:
        client = _http_clients.get(timeout_s)
        if client is None:
            session = limits.paced_session("stripe", pool_maxsize=_POOL_SIZE)
            client = _http_clients[timeout_s] = stripe.RequestsClient(
                timeout=timeout_s, session=session
            )
        return client


def key_mode(api_key: str) -> str | None:
    """``test`` or ``live`` from a secret (``sk_``) or restricted (``rk_``) key; None otherwise."""
    for mode in ("test", "live"):
        if api_key.startswith((f"sk_{mode}_", f"rk_{mode}_")):
            return mode
    return None


class StripeBilling:
    name = "stripe"

    def __init__(self, settings: StripeSettings, timeout_s: float = 20.0) -> None:
        # below the activity's start-to-close (connectors/timeouts.py)
        timeout_s = self.call_timeout_s = call_timeout(timeout_s)
        base_addresses: dict[str, str] = {}
        if settings.api_url:
            base_addresses["api"] = settings.api_url.rstrip("/")
        api_key = settings.api_key.get_secret_value()
        self.mode = key_mode(api_key)
        # paced below the account's limit even outside a worker (which sets its own share)
        limits.ensure_pacing(_DEFAULT_RATES[self.mode or "test"])
        self._client = stripe.StripeClient(
            api_key,
            base_addresses=base_addresses,  # type: ignore[arg-type]
            # Temporal owns retries: the client's own would reuse its key but hide the failure.
            max_network_retries=0,
            # one keep-alive client per process, every request paced and its headers read
            http_client=shared_http_client(timeout_s),
        )

    # --- BillingPlatform ---------------------------------------------------------------------------

    def get_invoice_context(self, invoice_id: str, payments: int = 5) -> InvoiceContext:
        inv = self._call(
            lambda: self._client.v1.invoices.retrieve(invoice_id, {"expand": _INVOICE_EXPAND}),
            what=f"invoice {invoice_id}",
        ).to_dict()
        currency = _upper(inv.get("currency"))
        customer = inv.get("customer")
        cust: dict[str, Any] = customer if isinstance(customer, dict) else {"id": customer}
        sub = _subscription_of(inv)
        sub_id = sub.get("id") if isinstance(sub, dict) else sub
        mrr = monthly_recurring(sub) if isinstance(sub, dict) else 0
        attempts = [
            p
            for ip in ((inv.get("payments") or {}).get("data") or [])
            if (p := _payment(ip, inv["id"], currency)) is not None
        ]
        # newest first; Stripe lists invoice payments oldest first, ties keep the later one first
        recent = sorted(reversed(attempts), key=lambda p: p.at or _EPOCH, reverse=True)
        return InvoiceContext(
            invoice=Invoice(
                id=inv["id"],
                customer_id=str(cust["id"]),
                subscription_id=sub_id,
                status=_STATUS.get(inv.get("status") or "", InvoiceStatus.OTHER),
                total=int(inv.get("total") or 0),
                amount_due=int(inv.get("amount_due") or 0),
                currency=currency,
                issued_at=_ts(inv.get("created")),
            ),
            customer=_customer(cust, mrr=mrr, currency=currency),
            recent_payments=recent[:payments],
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        key = note_key(idempotency_key)
        value = text if len(text) <= METADATA_VALUE_MAX else text[: METADATA_VALUE_MAX - 1] + "…"
        params = {"metadata": {key: value}}
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        service = self._service(target)
        what = f"{target.value} {target_id}"
        try:
            service.update(target_id, params, options)
        except stripe.InvalidRequestError as exc:
            if "50 metadata keys" not in str(exc.user_message or ""):
                raise classify(exc, what) from None
            self._add_note_making_room(service, target_id, key, value, idempotency_key, what)
        except stripe.StripeError as exc:
            raise classify(exc, what) from None
        return f"{target_id}#metadata.{key}"

    def _add_note_making_room(
        self, service: Any, target_id: str, key: str, value: str, idempotency_key: str, what: str
    ) -> None:
        """Stripe keeps at most 50 metadata keys per object: when the object is full, the
        RevBridge notes whose keys sort first are dropped in the same update (keys are hashes,
        so which ones is arbitrary; the CRM's audit log keeps every entry), with room for
        :data:`_NOTE_HEADROOM` more. Never touches metadata RevBridge did not write."""
        current: dict[str, str] = (
            self._call(lambda: service.retrieve(target_id), what).to_dict().get("metadata") or {}
        )
        if key in current:
            return  # an earlier attempt wrote it
        ours = sorted(k for k in current if k.startswith(METADATA_PREFIX))
        excess = len(current) + 1 - METADATA_KEYS_MAX
        drop = ours[: max(0, excess + _NOTE_HEADROOM)] if excess > 0 else []
        params = {"metadata": {**dict.fromkeys(drop, ""), key: value}}
        # another key: the first request was refused before Stripe ran it, but not re-sent as is
        options: stripe.RequestOptions = {"idempotency_key": f"{idempotency_key}-room"}
        self._call(lambda: service.update(target_id, params, options), what)  # type: ignore[arg-type]

    def retry_payment(self, invoice_id: str, idempotency_key: str) -> PaymentAttempt:
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        try:
            self._client.v1.invoices.pay(invoice_id, {}, options)
        except stripe.CardError as exc:  # a decline is an outcome of the retry, not a failure
            err = exc.error
            return PaymentAttempt(
                succeeded=False,
                decline_code=(err.decline_code or err.code) if err else None,
                message=(err.message or "")[:200] if err else None,
            )
        except stripe.StripeError as exc:
            raise classify(exc, f"invoice {invoice_id}") from None
        return PaymentAttempt(succeeded=True)

    def apply_credit(
        self, customer_id: str, amount: int, currency: str, reason: str, idempotency_key: str
    ) -> str:
        # A negative balance transaction is a credit the next invoices draw down.
        params = {
            "amount": -amount,
            "currency": currency.lower(),
            "description": _cut(reason, DESCRIPTION_MAX),
        }
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        txn = self._call(
            lambda: self._client.v1.customers.balance_transactions.create(
                customer_id,
                params,  # type: ignore[arg-type]
                options,
            ),
            what=f"customer {customer_id}",
        )
        return txn.id

    # --- quote-to-cash -----------------------------------------------------------------------------

    def find_customer_by_crm(self, crm: str, account_id: str) -> BillingCustomer | None:
        """The customer whose metadata links it to this CRM account.

        Stripe's Search API is eventually consistent (a write is searchable "in less than a
        minute", longer during incidents), so search alone would miss a customer created or
        linked moments ago — and quote-to-cash would create a second one for the next deal of
        the same account. The window is closed with a strongly consistent read: the customer
        events of the last :data:`SEARCH_LAG_WINDOW_S` seconds (created, updated, deleted) are
        listed and their newest snapshots matched on metadata too. No wait is needed."""
        query = (
            f"metadata['{CRM_ACCOUNT_KEY}']:{_quote(account_id)}"
            f" AND metadata['{CRM_KEY}']:{_quote(crm)}"
        )
        found = self._call(
            lambda: self._client.v1.customers.search({"query": query, "limit": 10}),
            what="customer search",
        )
        hits = {c.id: c.to_dict() for c in found.data}
        for c in self._recent_customers():
            meta = c.get("metadata") or {}
            if meta.get(CRM_KEY) == crm and meta.get(CRM_ACCOUNT_KEY) == account_id:
                hits.setdefault(c["id"], c)
        # Oldest first: should a duplicate ever exist, the original stays the linked one.
        ordered = sorted(hits.values(), key=lambda c: c.get("created") or 0)
        return _customer(ordered[0]) if ordered else None

    def find_customers(self, email: str | None, company: str | None) -> list[BillingCustomer]:
        """Exact email through the (strongly consistent) list filter, then company names
        through search (``name~"…"``, case-insensitive substring; eventually consistent) and
        among the customers created too recently to be searchable.

        Stripe's ``email=`` filter is case-SENSITIVE: the address is tried as given and in
        lower case (how most systems store it), so ``Jane@Acme.com`` in the CRM finds
        ``jane@acme.com`` in Stripe."""
        found: dict[str, dict[str, Any]] = {}
        if email:
            for variant in dict.fromkeys([email.strip(), email.strip().lower()]):
                page = self._call(
                    lambda v=variant: self._client.v1.customers.list({"email": v, "limit": 10}),
                    what="customers",
                )
                for c in page.data:
                    found.setdefault(c.id, c.to_dict())
        name = (company or "").strip()
        if name and len(found) < 10:
            # A one- or two-letter substring would match half the book: match those exactly.
            op = "~" if len(name) >= 3 else ":"
            page = self._call(
                lambda: self._client.v1.customers.search(
                    {"query": f"name{op}{_quote(name)}", "limit": 10}
                ),
                what="customer search",
            )
            for c in page.data:
                found.setdefault(c.id, c.to_dict())
            wanted = name.casefold()
            for c in self._recent_customers():
                have = str(c.get("name") or "").casefold()
                if have and (wanted in have if op == "~" else wanted == have):
                    found.setdefault(c["id"], c)
        return [_customer(c) for c in list(found.values())[:10]]

    def _recent_customers(self) -> list[dict[str, Any]]:
        """The customers created, changed or deleted within the search lag window, as their
        newest event shows them (``GET /v1/events`` is strongly consistent; pages of 100,
        newest first, at most :data:`RECENT_EVENTS_MAX` events): what a search may not reflect
        yet, new links set on old customers included. Deleted ones are left out."""
        params = {
            "types": ["customer.created", "customer.updated", "customer.deleted"],
            "created": {"gte": int(time.time()) - SEARCH_LAG_WINDOW_S},
            "limit": 100,
        }
        newest: dict[str, dict[str, Any] | None] = {}
        try:
            pages = self._client.v1.events.list(params).auto_paging_iter()  # type: ignore[arg-type]
            for n, event in enumerate(pages):
                if n >= RECENT_EVENTS_MAX:
                    break  # a busy account: the newest ones are what search may miss
                evt = event.to_dict()
                obj = (evt.get("data") or {}).get("object") or {}
                if obj.get("id") and obj["id"] not in newest:
                    newest[obj["id"]] = None if evt.get("type") == "customer.deleted" else obj
        except stripe.StripeError as exc:
            raise classify(exc, "events") from None
        return [c for c in newest.values() if c is not None]

    def create_customer(self, draft: CustomerDraft) -> BillingCustomer:
        """POST /v1/customers with the CRM link in metadata; ``draft.key`` is the
        Idempotency-Key (a retry replays the first answer; other parameters under the same key
        are Stripe's ``idempotency_error``, PERMANENT). Stripe customers have no payment terms
        or currency of their own: those go on the subscription."""
        params: dict[str, Any] = {
            "name": draft.company,
            "metadata": {CRM_KEY: draft.crm, CRM_ACCOUNT_KEY: draft.crm_account_id},
        }
        if draft.email:
            params["email"] = draft.email
        options: stripe.RequestOptions = {"idempotency_key": draft.key}
        cus = self._call(
            lambda: self._client.v1.customers.create(params, options),  # type: ignore[arg-type]
            what="customer",
        )
        return _customer(cus.to_dict())

    def set_crm_link(
        self, customer_id: str, crm: str, account_id: str | None, idempotency_key: str
    ) -> None:
        # An empty string unsets a metadata key in Stripe.
        link = (
            {CRM_KEY: crm, CRM_ACCOUNT_KEY: account_id}
            if account_id
            else {
                CRM_KEY: "",
                CRM_ACCOUNT_KEY: "",
            }
        )
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        self._call(
            lambda: self._client.v1.customers.update(customer_id, {"metadata": link}, options),
            what=f"customer {customer_id}",
        )

    def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        """DELETE /v1/customers/{id} (Stripe also cancels its subscriptions). No key is sent:
        DELETE is idempotent by definition at Stripe, and a repeat answers 404 = done."""
        try:
            self._client.v1.customers.delete(customer_id)
        except stripe.StripeError as exc:
            err = classify(exc, f"customer {customer_id}")
            if not isinstance(err, NotFound):
                raise err from None

    def get_price(self, price_id: str) -> Price:
        """A price by ID or by lookup key (``GET /v1/prices?lookup_keys[]=…&active=true``).
        IDs that look like Stripe's (``price_…``) are tried as IDs first, anything else as a
        lookup key first; NotFound when neither exists."""
        lookups: list[Callable[[], dict[str, Any] | None]] = [
            lambda: self._price_by_id(price_id),
            lambda: self._price_by_lookup_key(price_id),
        ]
        if not price_id.startswith("price_"):
            lookups.reverse()
        for lookup in lookups:
            found = lookup()
            if found is not None:
                return _price(found)
        raise NotFound("stripe", f"price {price_id}")

    def create_subscription(self, draft: SubscriptionDraft) -> SubscriptionRef:
        """POST /v1/subscriptions under ``draft.key``.

        - lines → ``items[i][price]`` + ``[quantity]``; a price override → ``items[i][price_data]``
          (same product, currency and interval as the catalogue price);
        - the deal discount → a ``percent_off``/``forever`` coupon (its own key, derived from
          ``draft.key``) in ``discounts[0][coupon]``;
        - net terms → ``collection_method=send_invoice`` + ``days_until_due``;
        - metadata ``crm``, ``crm_opportunity_id``, ``term_months`` (Stripe subscriptions renew
          until cancelled; the term is recorded, not enforced);
        - a future ``start_date`` within one billing interval → ``billing_cycle_anchor`` at its
          midnight UTC with ``proration_behavior=none`` (active now, the time until the start is
          free, first full invoice on the start date). Further out, Stripe rejects such an
          anchor: the subscription gets ``trial_end`` at the start date instead (status
          ``trialing`` until then). Subscription schedules would model it exactly; not used.

        Stripe prunes idempotency keys after 24 h, so the customer's subscriptions are listed
        first (a strongly consistent read): a live one for the same opportunity is returned
        with ``created=False``. A replayed answer (``Idempotent-Replayed: true``) is too.
        """
        existing = self._subscription_for(draft)
        if existing is not None:
            return _ref(existing, draft.discount_percent, created=False)
        prices = [self.get_price(line.price_id) for line in draft.lines]
        items: list[dict[str, Any]] = []
        for line, price in zip(draft.lines, prices, strict=True):
            item: dict[str, Any] = {"quantity": line.quantity}
            if line.unit_amount is None or line.unit_amount == price.unit_amount:
                item["price"] = price.id
            else:
                item["price_data"] = {
                    "currency": price.currency.lower(),
                    "product": price.product,
                    "unit_amount": line.unit_amount,
                    "recurring": {"interval": price.period, "interval_count": price.period_count},
                }
            items.append(item)
        params: dict[str, Any] = {
            "customer": draft.customer_id,
            "items": items,
            "metadata": {
                CRM_KEY: draft.crm,
                CRM_OPPORTUNITY_KEY: draft.crm_opportunity_id,
                "term_months": str(draft.term_months),
            },
        }
        if draft.discount_percent > 0:
            coupon = self._create_coupon(
                {
                    "percent_off": draft.discount_percent,
                    "duration": "forever",
                    "name": f"Deal discount {draft.discount_percent:g}%",
                    "metadata": {CRM_KEY: draft.crm, CRM_OPPORTUNITY_KEY: draft.crm_opportunity_id},
                },
                f"{draft.key}-coupon",
            )
            params["discounts"] = [{"coupon": coupon}]
        if draft.net_term_days is not None:
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = draft.net_term_days
        params.update(_start_params(draft.start_date, prices[0], time.time()))
        options: stripe.RequestOptions = {"idempotency_key": draft.key}
        sub = self._call(
            lambda: self._client.v1.subscriptions.create(params, options),  # type: ignore[arg-type]
            what=f"subscription for customer {draft.customer_id}",
        )
        return _ref(sub.to_dict(), draft.discount_percent, created=not _replayed(sub))

    def cancel_subscription(self, subscription_id: str, idempotency_key: str, reason: str) -> str:
        """DELETE /v1/subscriptions/{id} with ``prorate=false&invoice_now=false``. Stripe
        answers 404 for one already cancelled: a retrieve tells that apart from a missing one.
        No key is sent (Stripe ignores keys on DELETE)."""
        params = {
            "prorate": False,
            "invoice_now": False,
            "cancellation_details": {"comment": _cut(reason, CANCELLATION_COMMENT_MAX)},
        }
        what = f"subscription {subscription_id}"
        try:
            sub = self._client.v1.subscriptions.cancel(subscription_id, params)  # type: ignore[arg-type]
            return str(sub.status)
        except stripe.StripeError as exc:
            err = classify(exc, what)
            if not isinstance(err, NotFound):
                raise err from None
        current = self._call(lambda: self._client.v1.subscriptions.retrieve(subscription_id), what)
        if current.status in _ENDED:
            return str(current.status)
        raise NotFound("stripe", what)

    # --- churn and support context -----------------------------------------------------------------

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

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        """The audit notes on a customer or invoice (RevBridge's metadata entries, in key order)."""
        service = self._service(target)
        obj = self._call(
            lambda: service.retrieve(target_id), what=f"{target.value} {target_id}"
        ).to_dict()
        metadata: dict[str, str] = obj.get("metadata") or {}
        return [metadata[k] for k in sorted(metadata) if k.startswith(METADATA_PREFIX)]

    # --- preflight (revbridge doctor) ---------------------------------------------------------------

    def preflight(self) -> list[Check]:
        """The key (valid; test or live mode) and the webhook endpoint (enabled, posting to
        ``/webhooks/stripe``, subscribed to the events RevBridge acts on). Two reads."""
        checks = [self._check_mode()]
        try:
            self._client.v1.customers.list({"limit": 1})
        except stripe.StripeError as exc:
            checks.append(_key_failure(exc))
            checks.append(
                Check(
                    system="stripe",
                    name="webhook-endpoint",
                    status=CheckStatus.SKIP,
                    detail="not checked: the key does not work",
                )
            )
            return checks
        checks.append(
            Check(system="stripe", name="credentials", status=CheckStatus.OK, detail="valid")
        )
        checks.append(self._check_webhook_endpoint())
        return checks

    def _check_mode(self) -> Check:
        if self.mode is None:
            return Check(
                system="stripe",
                name="key-mode",
                status=CheckStatus.WARN,
                detail="the key is neither a secret (sk_) nor a restricted (rk_) key",
                fix="set STRIPE_API_KEY to the account's sk_live_… / rk_live_… (or _test_) key",
            )
        detail = f"{self.mode} mode"
        if self.mode == "live":
            detail += ": set stripe's per_second to 100 in policies/limits.yaml"
        return Check(system="stripe", name="key-mode", status=CheckStatus.OK, detail=detail)

    def _check_webhook_endpoint(self) -> Check:
        name = "webhook-endpoint"
        try:
            page = self._client.v1.webhook_endpoints.list({"limit": 100})
        except stripe.StripeError as exc:
            return Check(
                system="stripe",
                name=name,
                status=CheckStatus.WARN,
                detail=f"could not list webhook endpoints ({classify(exc, 'webhook endpoints')})",
                fix="grant the key read access to Webhook Endpoints, or check them in the Dashboard",
            )
        ours = [
            e.to_dict()
            for e in page.data
            if "/webhooks/stripe" in str(e.url or "") and e.status == "enabled"
        ]
        fix_events = ", ".join(WEBHOOK_EVENTS)
        if not ours:
            return Check(
                system="stripe",
                name=name,
                status=CheckStatus.FAIL,
                detail="no enabled webhook endpoint posts to …/webhooks/stripe",
                fix=(
                    "Dashboard → Developers → Webhooks: add https://<your host>/webhooks/stripe "
                    f"for {fix_events}; put its signing secret in STRIPE_WEBHOOK_SECRETS"
                ),
            )
        for endpoint in ours:
            enabled = set(endpoint.get("enabled_events") or [])
            if "*" in enabled or enabled.issuperset(WEBHOOK_EVENTS):
                return Check(
                    system="stripe",
                    name=name,
                    status=CheckStatus.OK,
                    detail=f"{endpoint['id']} receives {fix_events}",
                )
        endpoint = ours[0]
        missing = [e for e in WEBHOOK_EVENTS if e not in set(endpoint.get("enabled_events") or [])]
        return Check(
            system="stripe",
            name=name,
            status=CheckStatus.FAIL,
            detail=f"{endpoint['id']} does not send {', '.join(missing)}",
            fix=f"add {', '.join(missing)} to the endpoint's events in the Dashboard",
        )

    @property
    def client(self) -> stripe.StripeClient:
        """The configured official client (the demo and tests drive the sandbox with it)."""
        return self._client

    # --- helpers ------------------------------------------------------------------------------------

    def _service(self, target: NoteTarget) -> Any:
        if target is NoteTarget.INVOICE:
            return self._client.v1.invoices
        return self._client.v1.customers

    def _call(self, fn: Callable[[], T], what: str) -> T:
        try:
            return fn()
        except stripe.StripeError as exc:
            raise classify(exc, what) from None

    def _price_by_id(self, price_id: str) -> dict[str, Any] | None:
        try:
            return self._call(
                lambda: self._client.v1.prices.retrieve(price_id), what=f"price {price_id}"
            ).to_dict()
        except NotFound:
            return None

    def _price_by_lookup_key(self, key: str) -> dict[str, Any] | None:
        page = self._call(
            lambda: self._client.v1.prices.list({"lookup_keys": [key], "active": True, "limit": 1}),
            what=f"price {key}",
        )
        return page.data[0].to_dict() if page.data else None

    def _subscription_for(self, draft: SubscriptionDraft) -> dict[str, Any] | None:
        """A live subscription of the customer already made for this opportunity."""
        subs = self._list(
            self._client.v1.subscriptions,
            {"customer": draft.customer_id, "status": "all", "limit": 100},
            f"customer {draft.customer_id}",
        )
        for sub in subs:
            meta = sub.get("metadata") or {}
            if (
                sub.get("status") not in _ENDED
                and meta.get(CRM_KEY) == draft.crm
                and meta.get(CRM_OPPORTUNITY_KEY) == draft.crm_opportunity_id
            ):
                return sub
        return None

    def _create_coupon(self, params: dict[str, Any], idempotency_key: str) -> str:
        params = {**params, "name": _cut(str(params.get("name") or ""), COUPON_NAME_MAX) or None}
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        coupon = self._call(
            lambda: self._client.v1.coupons.create(params, options),  # type: ignore[arg-type]
            what="coupon",
        )
        return str(coupon.id)

    # --- the dunning catch-up -------------------------------------------------------------------

    def paid_invoices(self, since: datetime, limit: int = 200) -> list[InvoicePaid]:
        """``invoice.paid`` / ``invoice.voided`` events since ``since`` (a credit note that
        settles an invoice pays it), oldest first, one per invoice, with the event's ID."""
        events = self._events_since(["invoice.paid", "invoice.voided"], since, limit)
        found: dict[str, InvoicePaid] = {}
        for evt in events:
            inv = (evt.get("data") or {}).get("object") or {}
            if inv.get("id") and inv.get("customer") and inv["id"] not in found:
                found[inv["id"]] = InvoicePaid(
                    billing=self.name,
                    event_id=str(evt["id"]),
                    invoice_id=str(inv["id"]),
                    customer_id=str(inv["customer"]),
                    occurred_at=_ts(evt.get("created")) or datetime.now(UTC),
                )
        return list(found.values())

    def failed_payments(self, since: datetime, limit: int = 200) -> list[PaymentFailed]:
        """``invoice.payment_failed`` events since ``since``, oldest first, as the webhook reads
        them (the same event ID: a run that had the webhook counts the failure once)."""
        found: list[PaymentFailed] = []
        for evt in self._events_since(["invoice.payment_failed"], since, limit):
            inv = (evt.get("data") or {}).get("object") or {}
            if not inv.get("id") or not inv.get("customer"):
                continue
            sub = _subscription_of(inv)
            found.append(
                PaymentFailed(
                    billing=self.name,
                    event_id=str(evt["id"]),
                    invoice_id=str(inv["id"]),
                    customer_id=str(inv["customer"]),
                    subscription_id=(sub.get("id") if isinstance(sub, dict) else sub) or None,
                    amount_due=int(inv.get("amount_due") or 0),
                    currency=_upper(inv.get("currency")),
                    occurred_at=_ts(evt.get("created")) or datetime.now(UTC),
                )
            )
        return found

    def _events_since(self, types: list[str], since: datetime, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` events of ``types`` created at or after ``since``, oldest first
        (Stripe lists newest first and keeps events for 30 days)."""
        params: dict[str, Any] = {
            "types": types,
            "created": {"gte": int(since.timestamp())},
            "limit": min(limit, 100),
        }
        events: list[dict[str, Any]] = []
        try:
            for evt in self._client.v1.events.list(params).auto_paging_iter():  # type: ignore[arg-type]
                events.append(evt.to_dict())
                if len(events) >= limit:
                    break
        except stripe.StripeError as exc:
            raise classify(exc, "events") from None
        return list(reversed(events))

    def _list(self, service: Any, params: dict[str, Any], what: str) -> list[dict[str, Any]]:
        """One list page as plain dicts (Stripe's order: newest first)."""
        page = self._call(lambda: service.list(params), what)
        return [obj.to_dict() for obj in page.data]

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

    # --- the churn sweep's page read ----------------------------------------------------------

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


_EPOCH = datetime.fromtimestamp(0, UTC)


def _cut(text: str, limit: int) -> str:
    """``text`` within a documented length limit (an ellipsis marks a cut)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _quote(value: str) -> str:
    """A search-query string literal (Stripe escapes quotes inside with a backslash)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _customer(
    cust: Mapping[str, Any], *, mrr: int = 0, currency: str | None = None
) -> BillingCustomer:
    return BillingCustomer(
        id=str(cust["id"]),
        company=cust.get("name") or cust.get("business_name") or None,
        email=cust.get("email") or None,
        created_at=_ts(cust.get("created")),
        metadata={
            str(k): str(v)
            for k, v in (cust.get("metadata") or {}).items()
            if not str(k).startswith(METADATA_PREFIX)
        },
        mrr=mrr,
        currency=currency or _upper(cust.get("currency")),
        language=locale_language(next(iter(cust.get("preferred_locales") or []), None)),
    )


def _invoice(inv: Mapping[str, Any]) -> Invoice:
    customer = inv.get("customer")
    sub = _subscription_of(inv)
    return Invoice(
        id=str(inv["id"]),
        customer_id=str(customer.get("id") if isinstance(customer, dict) else customer),
        subscription_id=sub.get("id") if isinstance(sub, dict) else sub,
        status=_STATUS.get(inv.get("status") or "", InvoiceStatus.OTHER),
        total=int(inv.get("total") or 0),
        amount_due=int(inv.get("amount_due") or 0),
        currency=_upper(inv.get("currency")),
        issued_at=_ts(inv.get("created")),
    )


def _price(price: Mapping[str, Any]) -> Price:
    recurring = price.get("recurring") or {}
    product = price.get("product")
    return Price(
        id=str(price["id"]),
        product=str(product.get("id") if isinstance(product, dict) else product or ""),
        unit_amount=int(price.get("unit_amount") or 0),
        currency=_upper(price.get("currency")),
        period=recurring.get("interval") or "one_time",
        period_count=int(recurring.get("interval_count") or 1),
    )


def _start_params(start: date | None, price: Price, now: float) -> dict[str, Any]:
    """How a future start date is expressed (see ``create_subscription``)."""
    if start is None:
        return {}
    at = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    if at <= now:
        return {}
    months = _MONTHS_PER_INTERVAL.get(price.period)
    # The next natural billing date, conservatively (a month is at least 28 days).
    horizon = now + float(months or 0) * price.period_count * 28 * DAY_S
    if at <= horizon:
        return {"billing_cycle_anchor": at, "proration_behavior": "none"}
    return {"trial_end": at}


def _replayed(obj: Any) -> bool:
    """Whether Stripe answered from its idempotency store (``Idempotent-Replayed: true``)."""
    response = getattr(obj, "last_response", None)
    headers = response.headers if response is not None else {}
    return any(
        k.lower() == "idempotent-replayed" and str(v).lower() == "true" for k, v in headers.items()
    )


def _ref(sub: Mapping[str, Any], percent: float, *, created: bool) -> SubscriptionRef:
    """The deal's MRR (items × price after the deal discount): also while ``incomplete``
    (awaiting its first payment), since that is what was sold; 0 once it ended."""
    factor = Fraction(1) - Fraction(str(percent)) / 100
    mrr = 0 if sub.get("status") in _ENDED else round(_items_monthly(sub.get("items")) * factor)
    return SubscriptionRef(
        id=str(sub["id"]),
        customer_id=str(sub["customer"]),
        status=str(sub.get("status")),
        mrr=max(0, mrr),
        currency=_upper(sub.get("currency")),
        created=created,
    )


def _coupon_id(discount: Mapping[str, Any]) -> str | None:
    coupon = (discount.get("source") or {}).get("coupon") or discount.get("coupon")
    return str(coupon.get("id") if isinstance(coupon, dict) else coupon) if coupon else None


def _ended(discount: Mapping[str, Any], now: float) -> bool:
    end = discount.get("end")
    return end is not None and int(end) <= now


def _subscription(sub: Mapping[str, Any], now: float) -> Subscription:
    """A subscription with its MRR after its active discounts (expanded coupons only)."""
    items = (sub.get("items") or {}).get("data") or []
    main = max(items, key=_item_monthly, default={})  # the item that earns the most
    monthly = Fraction(0) if sub.get("status") in _NO_REVENUE else _items_monthly(sub.get("items"))
    factor, amount_off = Fraction(1), Fraction(0)
    first = ((items[0].get("price") or {}).get("recurring") or {}) if items else {}
    months = _MONTHS_PER_INTERVAL.get(first.get("interval") or "", Fraction(1)) * int(
        first.get("interval_count") or 1
    )
    for discount in sub.get("discounts") or []:
        coupon = (
            (discount.get("source") or {}).get("coupon") if isinstance(discount, dict) else None
        )
        if not isinstance(coupon, dict) or _ended(discount, now):
            continue  # not expanded, or over
        if coupon.get("percent_off"):
            factor *= 1 - Fraction(str(coupon["percent_off"])) / 100
        elif coupon.get("amount_off"):
            amount_off += Fraction(int(coupon["amount_off"])) / months  # per invoice → per month
    quantity = main.get("quantity")
    return Subscription(
        id=str(sub["id"]),
        customer_id=str(sub["customer"]),
        status=str(sub.get("status")),
        plan=str((main.get("price") or {}).get("id") or ""),
        quantity=int(quantity) if quantity is not None else 1,
        mrr=max(0, round(monthly * factor - amount_off)),
        currency=_upper(sub.get("currency")),
        started_at=_ts(sub.get("start_date")),
        # current API versions keep the period on the items
        current_term_end=_ts(main.get("current_period_end") or sub.get("current_period_end")),
        cancel_at=_ts(sub.get("cancel_at")),
        discount_percent=float(round((1 - factor) * 100, 4)),
    )


def _intent_payment(pi: Mapping[str, Any], invoice_id: str | None) -> Payment | None:
    """A payment intent as a payment attempt; None for one never attempted yet."""
    error = pi.get("last_payment_error") or None
    succeeded = pi.get("status") == "succeeded"
    if not succeeded and error is None:
        return None
    return Payment(
        id=str(pi["id"]),
        invoice_id=invoice_id,
        succeeded=succeeded,
        amount=int((pi.get("amount_received") if succeeded else pi.get("amount")) or 0),
        currency=_upper(pi.get("currency")),
        decline_code=None if succeeded else (error.get("decline_code") or error.get("code")),
        decline_message=None if succeeded else error.get("message"),
        at=_ts(pi.get("created")),
    )


def _is_downgrade(obj: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """A lower monthly amount (fewer seats or a cheaper price) after the update than before.
    ``previous_attributes.items`` holds the whole old item list; older API versions also had
    top-level ``quantity`` / ``plan``."""
    if isinstance(previous.get("items"), dict):
        return _items_monthly(obj.get("items")) < _items_monthly(previous["items"])
    old_qty, new_qty = previous.get("quantity"), obj.get("quantity")
    if old_qty is not None and new_qty is not None and int(new_qty) < int(old_qty):
        return True
    old_plan, new_plan = previous.get("plan"), obj.get("plan")
    if isinstance(old_plan, dict) and isinstance(new_plan, dict):
        return int(new_plan.get("amount") or 0) < int(old_plan.get("amount") or 0)
    return False


def _subscription_of(inv: Mapping[str, Any]) -> Any:
    parent = inv.get("parent") or {}
    details = parent.get("subscription_details") or {}
    return details.get("subscription")


def _payment(ip: Mapping[str, Any], invoice_id: str, currency: str) -> Payment | None:
    """One ``invoice_payment`` as a payment attempt; None for one never attempted yet."""
    pi = (ip.get("payment") or {}).get("payment_intent")
    status = ip.get("status")
    if isinstance(pi, dict):
        error = pi.get("last_payment_error") or None
        succeeded = pi.get("status") == "succeeded"
        if not succeeded and error is None:
            return None  # created (or processing) but no attempt has failed
        amount = pi.get("amount_received") if succeeded else pi.get("amount")
        paid_at = (ip.get("status_transitions") or {}).get("paid_at")
        return Payment(
            id=str(pi["id"]),
            invoice_id=invoice_id,
            succeeded=succeeded,
            amount=int(amount or ip.get("amount_requested") or 0),
            currency=_upper(pi.get("currency") or currency),
            decline_code=(error or {}).get("decline_code") or (error or {}).get("code"),
            decline_message=(error or {}).get("message"),
            at=_ts(paid_at if succeeded and paid_at else ip.get("created")),
        )
    if status == "paid":  # paid another way (e.g. out of band, a charge)
        return Payment(
            id=str(ip["id"]),
            invoice_id=invoice_id,
            succeeded=True,
            amount=int(ip.get("amount_paid") or 0),
            currency=_upper(ip.get("currency") or currency),
            at=_ts((ip.get("status_transitions") or {}).get("paid_at") or ip.get("created")),
        )
    return None


def _error_code(exc: stripe.StripeError) -> str | None:
    if exc.code:
        return exc.code
    body = exc.json_body if isinstance(exc.json_body, dict) else {}
    err = body.get("error")
    return err.get("code") if isinstance(err, dict) else None


def _header(exc: stripe.StripeError, name: str) -> str | None:
    for key, value in (exc.headers or {}).items():
        if key.lower() == name:
            return value
    return None


def _retry_after(exc: stripe.StripeError) -> float:
    try:
        value = float(_header(exc, "retry-after") or "")
    except ValueError:
        return DEFAULT_RETRY_AFTER_S
    return value if value >= 0 else DEFAULT_RETRY_AFTER_S


def _key_failure(exc: stripe.StripeError) -> Check:
    if isinstance(exc, stripe.AuthenticationError):
        detail, fix = (
            "Stripe refused the key",
            "set STRIPE_API_KEY to a valid secret or restricted key",
        )
    elif isinstance(exc, stripe.PermissionError):
        detail = "the restricted key may not read customers"
        fix = "grant the key write access to Customers, Invoices, Subscriptions, Coupons and read to Events"
    else:
        detail = f"Stripe could not be reached ({classify(exc, 'customers')})"
        fix = "check the network path to api.stripe.com (or STRIPE_API_URL)"
    return Check(
        system="stripe", name="credentials", status=CheckStatus.FAIL, detail=detail, fix=fix
    )


def classify(exc: stripe.StripeError, what: str) -> ConnectorError:
    """A Stripe client error in RevBridge's vocabulary (retryable, rate limited or permanent)."""
    status = exc.http_status
    code = _error_code(exc)
    lines = (exc.user_message or "").strip().splitlines()
    message = lines[0] if lines else type(exc).__name__
    if isinstance(exc, stripe.APIConnectionError):  # refused, reset, timed out: outcome unknown
        return ConnectorError(
            "stripe", ErrorKind.RETRYABLE, f"network: {message}", status=status, code=code
        )
    if isinstance(exc, stripe.RateLimitError) or status == 429:
        return ConnectorError(
            "stripe",
            ErrorKind.RATE_LIMITED,
            "rate limited",
            status=status,
            code=code or "rate_limit",
            retry_after=_retry_after(exc),
        )
    if status == 409 or code == "idempotency_key_in_use":
        # The same key is still being processed: try again once the first request finished.
        return ConnectorError(
            "stripe", ErrorKind.RETRYABLE, f"{code}: {message}", status=status, code=code
        )
    if isinstance(exc, stripe.IdempotencyError):
        # Same key, other parameters or endpoint: every retry would get the same answer.
        return ConnectorError(
            "stripe",
            ErrorKind.PERMANENT,
            f"idempotency_error: {message}",
            status=status,
            code="idempotency_error",
        )
    if status == 404 and code == "resource_missing":
        return NotFound("stripe", what, status)
    if status is None or status >= 500 or status == 408:
        return ConnectorError(
            "stripe", ErrorKind.RETRYABLE, f"server error: {message}", status=status, code=code
        )
    return ConnectorError(
        "stripe", ErrorKind.PERMANENT, f"{code or status}: {message}", status=status, code=code
    )


@dataclass
class _SweepBook:
    """One sweep's walk of the account's lists, grouped by customer ID (Stripe's order)."""

    at: float
    subscriptions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    invoices: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    intents: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
