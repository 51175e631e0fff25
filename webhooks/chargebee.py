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

from domain.golden import Side, SyncSignal
from domain.models import InvoicePaid, Payment, PaymentFailed
from webhooks import parsing as p
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


def is_echo(payload: dict[str, Any], api_user: str | None) -> bool:
    """Chargebee says who caused each event: ``source`` (``api``, ``admin_console``,
    ``scheduled_job``, ``hosted_page``, ``portal``, ...) and, when a user did, ``user``
    (billing-apis.md §2d). An event from the API by our integration's user is our own write."""
    return bool(api_user) and payload.get("source") == "api" and payload.get("user") == api_user


#: customer and subscription changes the account sync re-reads (issue 19); payment outcomes stay
#: on the dunning path alone (one Temporal call per webhook)
SYNC_EVENTS = frozenset(
    {
        "customer_created",
        "customer_changed",
        "subscription_created",
        "subscription_changed",
        "subscription_cancelled",
        "subscription_cancellation_scheduled",
        "subscription_reactivated",
        "subscription_renewed",
        "subscription_paused",
        "subscription_resumed",
    }
)


def sync_signal(
    event_type: str, event_id: str, content: dict[str, Any], at: datetime
) -> SyncSignal:
    """A customer or subscription change as a trigger for the customer's account sync."""
    if event_type.startswith("customer_"):
        customer = p.obj(content.get("customer"), "content.customer")
        customer_id = p.provider_id(customer.get("id"), "customer.id")
    else:
        sub = p.obj(content.get("subscription"), "content.subscription")
        customer_id = p.provider_id(sub.get("customer_id"), "subscription.customer_id")
    return SyncSignal(
        billing=PROVIDER,
        customer_id=customer_id,
        side=Side.BILLING,
        event_id=event_id,
        occurred_at=at,
        kind=event_type,
    )


def failed_attempt(transaction: dict[str, Any] | None, invoice_id: str) -> Payment | None:
    """The declined transaction the event carries, as the run's first read would have read it
    (its ``Transaction.list``, skipped when this is given: issue 15). None unless it is a failed
    payment with an ID: the run then reads the customer's transactions."""
    if not transaction or transaction.get("status") != "failure":
        return None
    if transaction.get("type", "payment") != "payment" or not transaction.get("id"):
        return None
    date = transaction.get("date")
    try:
        return Payment(
            id=p.provider_id(transaction.get("id"), "transaction.id"),
            invoice_id=invoice_id,
            succeeded=False,
            amount=p.amount(transaction.get("amount"), "transaction.amount", default=0),
            currency=p.currency(
                transaction.get("currency_code"), "transaction.currency_code", "USD"
            ),
            decline_code=p.optional_text(transaction.get("error_code"), "transaction.error_code"),
            decline_message=p.optional_text(
                transaction.get("error_text"), "transaction.error_text"
            ),
            at=None if date is None else p.unix_seconds(date, "transaction.date"),
        )
    except Rejected:
        return None  # an odd field: the event still counts, the run reads the attempts


def normalize(
    payload: Any, api_user: str | None = None, sync: bool = False
) -> PaymentFailed | InvoicePaid | SyncSignal | p.Echo | None:
    """The canonical event, an :class:`~webhooks.parsing.Echo` of our own write, or None for
    event types RevBridge does not route (acknowledged). Every field is validated here
    (``webhooks.parsing``), so a routed event is safe to start.

    A payment's outcome is never an echo, even when our API call led to it: a subscription
    quote-to-cash created whose first charge fails (``source: api``) must start dunning, and the
    outcome of a dunning retry reaches the run that made it (deduplicated by event ID)."""
    if not isinstance(payload, dict):
        raise Rejected(400, "body must be a JSON object", "not_an_object")
    event_id = p.provider_id(payload.get("id"), "event.id")
    event_type = p.text(payload.get("event_type"), "event.event_type")
    api_version = payload.get("api_version", "v2")
    if not isinstance(api_version, str) or api_version.lower() != "v2":
        raise Rejected(422, f"unsupported api_version {str(api_version)[:20]!r}", "api_version")
    content = p.obj(payload.get("content"), "event.content")
    occurred = payload.get("occurred_at")
    occurred_at = (
        datetime.now(UTC) if occurred is None else p.unix_seconds(occurred, "event.occurred_at")
    )

    if event_type == "payment_failed":
        invoice = content.get("invoice")
        if not isinstance(invoice, dict):
            raise Rejected(422, "payment_failed without content.invoice", "missing_field")
        transaction = content.get("transaction")
        if transaction is not None and not isinstance(transaction, dict):
            raise Rejected(422, "content.transaction is not an object", "bad_field")
        invoice_id = p.provider_id(invoice.get("id"), "invoice.id")
        return PaymentFailed(
            billing=PROVIDER,
            event_id=event_id,
            invoice_id=invoice_id,
            customer_id=p.provider_id(invoice.get("customer_id"), "invoice.customer_id"),
            subscription_id=p.optional_provider_id(
                invoice.get("subscription_id"), "invoice.subscription_id"
            ),
            amount_due=p.amount(invoice.get("amount_due"), "invoice.amount_due", default=0),
            currency=p.currency(invoice.get("currency_code"), "invoice.currency_code", "USD"),
            decline_code=p.optional_text(
                (transaction or {}).get("error_code"), "transaction.error_code"
            ),
            occurred_at=occurred_at,
            payment=failed_attempt(transaction, invoice_id),
        )
    if event_type == "payment_succeeded":
        invoice = content.get("invoice")
        if invoice is None:
            return None  # a payment not tied to an invoice: nothing of ours waits on it
        invoice = p.obj(invoice, "content.invoice")
        return InvoicePaid(
            billing=PROVIDER,
            event_id=event_id,
            invoice_id=p.provider_id(invoice.get("id"), "invoice.id"),
            customer_id=p.provider_id(invoice.get("customer_id"), "invoice.customer_id"),
            occurred_at=occurred_at,
        )
    if is_echo(payload, api_user):
        return p.Echo("our own write")
    if sync and event_type in SYNC_EVENTS:
        # ``sync``: the deployment runs the account sync (REVBRIDGE_ACCOUNT_SYNC)
        return sync_signal(event_type, event_id, content, occurred_at)
    return None
