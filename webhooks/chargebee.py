"""Chargebee webhooks: Basic auth (Chargebee signs nothing), then normalization to canonical events.

Chargebee's event JSON: ``{id, occurred_at, api_version, event_type, content: {invoice,
transaction, customer, subscription}}`` (billing-apis.md §2d).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, datetime
from typing import Any

from domain.models import InvoicePaid, PaymentFailed
from webhooks.errors import Rejected

PROVIDER = "chargebee"


def check_basic_auth(header: str | None, username: str, password: str) -> None:
    """Constant-time comparison of the whole credential; a wrong or missing one is a 401."""
    if not header or not header.startswith("Basic "):
        raise Rejected(401, "missing Basic credentials", "auth_missing")
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(401, "malformed Basic credentials", "auth_malformed") from None
    expected = f"{username}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise Rejected(401, "invalid credentials", "auth_invalid")


def _require(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or obj.get(key) in (None, ""):
        raise Rejected(422, f"{where}.{key} is missing", "missing_field")
    return obj[key]


def normalize(payload: Any) -> PaymentFailed | InvoicePaid | None:
    """The canonical event, or None for event types RevBridge does not route (acknowledged)."""
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object", "not_an_object")
    event_id = str(_require(payload, "id", "event"))
    event_type = str(_require(payload, "event_type", "event"))
    if str(payload.get("api_version", "v2")).lower() != "v2":
        raise Rejected(
            422, f"unsupported api_version {payload.get('api_version')!r}", "api_version"
        )
    content = payload.get("content")
    if not isinstance(content, dict):
        raise Rejected(422, "event.content is missing", "missing_field")
    occurred = payload.get("occurred_at")
    try:
        occurred_at = datetime.fromtimestamp(int(occurred), UTC) if occurred else datetime.now(UTC)
    except (TypeError, ValueError, OverflowError):
        raise Rejected(422, "event.occurred_at is not a unix timestamp", "bad_field") from None

    if event_type == "payment_failed":
        invoice = content.get("invoice")
        transaction = content.get("transaction") or {}
        if not isinstance(invoice, dict):
            raise Rejected(422, "payment_failed without content.invoice", "missing_field")
        try:
            return PaymentFailed(
                billing=PROVIDER,
                event_id=event_id,
                invoice_id=str(_require(invoice, "id", "invoice")),
                customer_id=str(_require(invoice, "customer_id", "invoice")),
                subscription_id=invoice.get("subscription_id"),
                amount_due=int(invoice.get("amount_due") or 0),
                currency=str(invoice.get("currency_code") or "USD"),
                decline_code=transaction.get("error_code")
                if isinstance(transaction, dict)
                else None,
                occurred_at=occurred_at,
            )
        except (TypeError, ValueError) as exc:
            raise Rejected(
                422, f"invalid payment_failed: {type(exc).__name__}", "bad_field"
            ) from None
    if event_type == "payment_succeeded":
        invoice = content.get("invoice")
        if not isinstance(invoice, dict):
            return None  # a payment not tied to an invoice: nothing of ours waits on it
        return InvoicePaid(
            billing=PROVIDER,
            event_id=event_id,
            invoice_id=str(_require(invoice, "id", "invoice")),
            customer_id=str(_require(invoice, "customer_id", "invoice")),
            occurred_at=occurred_at,
        )
    return None
