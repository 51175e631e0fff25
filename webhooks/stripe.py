"""Stripe webhooks: ``Stripe-Signature`` verification over the raw bytes, echo detection and
normalization to canonical events (billing-apis.md §1d).

The header is parsed here rather than by stripe-python because RevBridge is stricter: it verifies
against several endpoint secrets at once (rotation), and it rejects timestamps from the future as
well as stale ones (stripe-python accepts any future timestamp, which lets a captured request be
replayed for as long as the attacker chose).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any

from domain.golden import Side, SyncSignal
from domain.models import InvoicePaid, PaymentFailed
from webhooks import parsing as p
from webhooks.errors import Rejected

PROVIDER = "stripe"
DEFAULT_TOLERANCE_S = 300
#: RevBridge's idempotency keys (``domain.ids.idempotency_key``); Stripe echoes them in events
OWN_KEY_PREFIX = "rb-"

_TIMESTAMP = re.compile(r"[0-9]{1,12}")  # unix seconds; bounded so int() stays cheap
_HEX_SIGNATURE = re.compile(r"[0-9a-fA-F]{64}")  # a SHA-256 hexdigest
_MAX_HEADER = 8192
_PAID_TYPES = {"invoice.paid", "invoice.payment_succeeded"}
_SAFE_ID = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def _parse_header(header: str) -> tuple[int, list[str]]:
    """``t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`` → (t, v1 signatures). Unknown schemes (v0)
    are ignored, as Stripe's own client does; only ``Rejected`` ever leaves this function."""
    if len(header) > _MAX_HEADER:
        raise Rejected(400, "Stripe-Signature header is too long", "signature_malformed")
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value.strip())
        elif key == "v1":
            signatures.append(value.strip())
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise Rejected(400, "Stripe-Signature header has no valid timestamp", "signature_malformed")
    if not signatures:
        raise Rejected(400, "Stripe-Signature header has no v1 signature", "signature_malformed")
    return int(timestamps[0]), signatures


def verify(
    raw: bytes,
    header: str | None,
    secrets: Sequence[str],
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Accept the request if any configured endpoint secret signed ``f"{t}.".encode() + raw``
    (any ``v1`` entry matches, compared in constant time) and ``t`` is within ``tolerance_s`` of
    ``now`` in either direction; otherwise raise :class:`Rejected`.

    Status codes, chosen deliberately (Stripe retries any non-2xx either way):

    - ``400 signature_missing`` / ``400 signature_malformed``: the request is not a Stripe
      delivery at all (no or unparseable header) — a client error, not an authentication attempt.
    - ``401 signature_invalid``: a well-formed header whose signature matches none of our secrets
      — authentication failed (wrong secret, tampered body, re-serialized JSON, forged request).
    - ``400 timestamp_stale`` / ``400 timestamp_future``: authentic, but outside the replay window
      (a replay, or a clock badly out of sync); Stripe signs each retry anew, so a genuine
      redelivery carries a fresh timestamp and passes.

    The signature is checked before the timestamp (as stripe-python does), so only an authentic
    request learns that its timestamp was the problem. Several secrets are accepted during a
    rotation: add the new one, switch Stripe over, then remove the old one.
    """
    if header is None or not header.strip():
        raise Rejected(400, "missing Stripe-Signature header", "signature_missing")
    timestamp, signatures = _parse_header(header)
    keys = [s for s in secrets if s]
    if not keys:
        raise Rejected(503, "stripe webhook secrets are not configured", "not_configured")
    signed = f"{timestamp}.".encode() + raw
    candidates = [s.lower().encode() for s in signatures if _HEX_SIGNATURE.fullmatch(s)]
    matched = False
    for key in keys:
        expected = hmac.new(key.encode("utf-8"), signed, hashlib.sha256).hexdigest().encode()
        for candidate in candidates:
            # no early exit: the work done does not depend on which entry matched
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise Rejected(401, "no Stripe-Signature v1 entry matches", "signature_invalid")
    if timestamp < now - tolerance_s:
        raise Rejected(400, "Stripe-Signature timestamp is too old", "timestamp_stale")
    if timestamp > now + tolerance_s:
        raise Rejected(400, "Stripe-Signature timestamp is in the future", "timestamp_future")


def is_echo(payload: Any) -> bool:
    """The event was caused by one of our own API requests: Stripe records the request's
    idempotency key on the event (``request.idempotency_key``), and every key RevBridge sends
    starts with ``rb-``. Caused by our request is not the same as ours to drop: see
    :func:`normalize`."""
    if not isinstance(payload, dict):
        return False
    request = payload.get("request")
    if not isinstance(request, dict):
        return False
    key = request.get("idempotency_key")
    return isinstance(key, str) and key.startswith(OWN_KEY_PREFIX)


def _provider_id(obj: Any, key: str, where: str) -> str:
    if not isinstance(obj, dict) or obj.get(key) in (None, ""):
        raise Rejected(422, f"{where}.{key} is missing", "missing_field")
    value = obj[key]
    if isinstance(value, dict):  # an expanded object
        value = value.get("id")
    if not isinstance(value, str) or not _SAFE_ID.fullmatch(value):
        raise Rejected(422, f"{where}.{key} is not a Stripe ID", "bad_id")
    return value


#: customer and subscription changes the account sync re-reads (issue 19)
SYNC_EVENTS = frozenset(
    {
        "customer.created",
        "customer.updated",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)


def sync_signal(payload: dict[str, Any], event_id: str, event_type: str) -> SyncSignal:
    """A customer or subscription change as a trigger for the customer's account sync."""
    created = payload.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise Rejected(422, "event.created is not a unix timestamp", "bad_field")
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    key = (
        "id"
        if event_type.startswith("customer.") and "subscription" not in event_type
        else "customer"
    )
    return SyncSignal(
        billing=PROVIDER,
        customer_id=_provider_id(obj, key, "event.data.object"),
        side=Side.BILLING,
        event_id=event_id,
        occurred_at=p.unix_seconds(created, "event.created"),
        kind=event_type,
    )


def normalize(
    payload: Any, sync: bool = False
) -> PaymentFailed | InvoicePaid | SyncSignal | p.Echo | None:
    """The canonical event; an :class:`~webhooks.parsing.Echo` for another event our own request
    caused; None for event types RevBridge does not route (acknowledged).

    A payment's outcome is never an echo, whoever sent the request that led to it: the card was
    declined (or paid) on the customer's side. The first invoice of a subscription quote-to-cash
    created fails with ``request.idempotency_key`` = our key — that failure must start dunning;
    a retry of ours that fails or succeeds reaches the run that made it (deduplicated by event
    ID), which is how it learns the outcome."""
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object", "not_an_object")
    event_id = _provider_id(payload, "id", "event")
    event_type = payload.get("type")
    if not isinstance(event_type, str) or not event_type:
        raise Rejected(422, "event.type is missing", "missing_field")
    if event_type != "invoice.payment_failed" and event_type not in _PAID_TYPES:
        if is_echo(payload):
            return p.Echo("our own write")
        if sync and event_type in SYNC_EVENTS:
            # ``sync``: the deployment runs the account sync (REVBRIDGE_ACCOUNT_SYNC)
            return sync_signal(payload, event_id, event_type)
        return None
    created = payload.get("created")
    if isinstance(created, bool) or not isinstance(created, int):
        raise Rejected(422, "event.created is not a unix timestamp", "bad_field")
    occurred_at = p.unix_seconds(created, "event.created")
    data = payload.get("data")
    invoice = data.get("object") if isinstance(data, dict) else None
    if not isinstance(invoice, dict):
        raise Rejected(422, "event.data.object is missing", "missing_field")
    if invoice.get("object", "invoice") != "invoice":
        raise Rejected(422, "event.data.object is not an invoice", "bad_field")
    invoice_id = _provider_id(invoice, "id", "invoice")
    customer_id = _provider_id(invoice, "customer", "invoice")

    if event_type in _PAID_TYPES:
        return InvoicePaid(
            billing=PROVIDER,
            event_id=event_id,
            invoice_id=invoice_id,
            customer_id=customer_id,
            occurred_at=occurred_at,
        )
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, dict) else None
    subscription_id = (
        _provider_id(details, "subscription", "invoice.parent.subscription_details")
        if isinstance(details, dict) and details.get("subscription")
        else None
    )
    amount_due = p.amount(invoice.get("amount_due", 0), "invoice.amount_due")
    currency = p.currency(invoice.get("currency"), "invoice.currency")
    return PaymentFailed(
        billing=PROVIDER,
        event_id=event_id,
        invoice_id=invoice_id,
        customer_id=customer_id,
        subscription_id=subscription_id,
        amount_due=amount_due,
        currency=currency,
        # the invoice snapshot carries no decline; the workflow re-fetches the payment attempts
        decline_code=None,
        occurred_at=occurred_at,
    )
