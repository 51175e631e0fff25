"""Stripe Billing through the official ``stripe`` client (16.x, ``StripeClient``).

Shape and error discipline as :mod:`connectors.chargebee`. Stripe specifics (billing-apis.md §1):

- One ``StripeClient`` per connector, ``max_network_retries=0`` (Temporal owns retries) and an
  HTTP client (``RequestsClient``: a session per thread) with our timeout.
- Every POST carries *our* stable idempotency key: stripe-python would otherwise add a random one
  per call, so a Temporal retry would be a brand-new request to Stripe. Reads pass none.
- Stripe has no notes: an audit note is a **metadata** entry on the invoice or customer, keyed by a
  hash of the idempotency key, so the same key overwrites the same entry (idempotent by
  construction, even after Stripe has pruned the key, i.e. after 24 h).
- Current API versions: an invoice's subscription is ``parent.subscription_details.subscription``
  and its payments are ``invoice_payment`` objects (``payments``, only when expanded); a payment
  attempt's decline lives on the payment intent's ``last_payment_error``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, TypeVar

import stripe

from connectors.base import ConnectorError, ErrorKind, NotFound
from domain.models import (
    BillingCustomer,
    Invoice,
    InvoiceContext,
    InvoiceStatus,
    NoteTarget,
    Payment,
    PaymentAttempt,
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
METADATA_PREFIX = "rb_"
METADATA_VALUE_MAX = 500  # Stripe's limit per metadata value (and 40 characters per key)
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
    total = Fraction(0)
    for item in (subscription.get("items") or {}).get("data") or []:
        price = item.get("price") or {}
        recurring = price.get("recurring") or {}
        months = _MONTHS_PER_INTERVAL.get(recurring.get("interval") or "")
        unit = price.get("unit_amount")
        if months is None or unit is None or recurring.get("usage_type") == "metered":
            continue
        count = int(recurring.get("interval_count") or 1)
        quantity = int(item.get("quantity") if item.get("quantity") is not None else 1)
        total += Fraction(int(unit) * quantity) / (months * count)
    return round(total)


class StripeBilling:
    name = "stripe"

    def __init__(self, settings: StripeSettings, timeout_s: float = 20.0) -> None:
        base_addresses: dict[str, str] = {}
        if settings.api_url:
            base_addresses["api"] = settings.api_url.rstrip("/")
        self._client = stripe.StripeClient(
            settings.api_key.get_secret_value(),
            base_addresses=base_addresses,  # type: ignore[arg-type]
            # Temporal owns retries: the client's own would reuse its key but hide the failure.
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=timeout_s),
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
            customer=BillingCustomer(
                id=str(cust["id"]),
                company=cust.get("name") or cust.get("business_name") or None,
                created_at=_ts(cust.get("created")),
                metadata={
                    str(k): str(v)
                    for k, v in (cust.get("metadata") or {}).items()
                    if not str(k).startswith(METADATA_PREFIX)
                },
                mrr=mrr,
                currency=currency,
            ),
            recent_payments=recent[:payments],
        )

    def add_note(self, target: NoteTarget, target_id: str, text: str, idempotency_key: str) -> str:
        key = note_key(idempotency_key)
        value = text if len(text) <= METADATA_VALUE_MAX else text[: METADATA_VALUE_MAX - 1] + "…"
        params = {"metadata": {key: value}}
        options: stripe.RequestOptions = {"idempotency_key": idempotency_key}
        service = self._service(target)
        self._call(
            lambda: service.update(target_id, params, options),  # type: ignore[arg-type]
            what=f"{target.value} {target_id}",
        )
        return f"{target_id}#metadata.{key}"

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
        params = {"amount": -amount, "currency": currency.lower(), "description": reason[:350]}
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

    def list_notes(self, target: NoteTarget, target_id: str) -> list[str]:
        """The audit notes on a customer or invoice (RevBridge's metadata entries, in key order)."""
        service = self._service(target)
        obj = self._call(
            lambda: service.retrieve(target_id), what=f"{target.value} {target_id}"
        ).to_dict()
        metadata: dict[str, str] = obj.get("metadata") or {}
        return [metadata[k] for k in sorted(metadata) if k.startswith(METADATA_PREFIX)]

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


_EPOCH = datetime.fromtimestamp(0, UTC)


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
