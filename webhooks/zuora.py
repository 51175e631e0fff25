"""Zuora callouts: Basic auth (challenge/response or preemptive), optional HMAC, IDs only.

Zuora's callout templates build their JSON body from merge fields; RevBridge's install guide
(``sandbox/zuora/emulator.py`` ``DEFAULT_TEMPLATES``) asks for IDs:
``{"eventCategory", "eventTimestamp", "paymentId", "accountId", "invoiceId", ...}`` for Payment
Declined / Payment Processed, ``orderNumber`` / ``subscriptionNumber`` / ``orderActionTypes`` /
``revbridgeKey`` for Order Processed, ``usageId`` for the custom Usage event. Payment Declined
also carries the declined attempt (``gatewayResponseCode``, ``amount``, ``currency``,
``gatewayResponse``), which stands in for the run's read of the payments (issue 15; a template
without them costs that read, nothing else). Beyond that, nothing in a body is trusted: the
workflows re-fetch the invoice, the account and its subscription from Zuora's API before
acting, so stale, out-of-order or replayed callouts do no harm (DESIGN §2 "events are
triggers, not truth").

- **Auth**: Zuora's default Basic mode sends the first request *without* credentials and
  expects ``401`` with ``WWW-Authenticate``; it then resends with ``Authorization: Basic``.
  "Preemptive" mode sends them at once. Both arrive here; the credential is compared in
  constant time.
- **HMAC** (optional, configured in the template): the hex HMAC-SHA256 of the raw body in
  ``ZUORA_WEBHOOK_HMAC_HEADER``; any of several keys is accepted during a rotation.
- **Exactly 200**: Zuora counts any other status (even 202) as a failed delivery and retries,
  so every accepted, duplicate, ignored or echoed callout is answered 200.
- **Deduplication**: ``Zuora-Request-Id`` is new on every retry, so it is never a dedup key;
  the event ID is the category and the object ID (``PaymentDeclined:<payment id>``), which the
  runs deduplicate on.
- **Echoes**: orders RevBridge places carry the order custom field ``RevBridgeKey__c``; their
  Order Processed callouts come back with it and are dropped.
- **Account sync** (``REVBRIDGE_ACCOUNT_SYNC=1``, issue 19): the custom events AccountChanged
  and ContactChanged (``sandbox/zuora/sync_events.py``: Zuora has no standard account event)
  and Order Processed signal-with-start the customer's ``account:zuora:{account id}`` run —
  one Temporal call; an order that lowers MRR also still rescores churn (a second, its own).
  An order is deduplicated by its number; each account/contact callout is its own trigger
  (``_delivery``).
  Payment outcomes stay on the dunning path alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from temporalio.client import Client

from domain.golden import Side, SyncSignal, flush_workflow_id
from domain.models import InvoicePaid, Payment, PaymentFailed, RiskSignal
from domain.settings import Settings
from webhooks import router
from webhooks.errors import Rejected
from webhooks.parsing import (
    Echo,
    iso_timestamp,
    obj,
    optional_provider_id,
    optional_text,
    parse_json,
    provider_id,
    read_body,
    text,
)

PROVIDER = "zuora"
REALM = 'Basic realm="RevBridge Zuora callouts", charset="UTF-8"'
#: order actions that can lower what a customer pays (a churn signal to rescore)
DOWNGRADE_ACTIONS = frozenset({"RemoveProduct", "UpdateProduct", "ChangePlan"})
#: the account sync's custom events (on the Account and Contact objects)
SYNC_CATEGORIES = frozenset({"AccountChanged", "ContactChanged"})

log = logging.getLogger("revbridge.webhooks")

Counter = Callable[..., None]
ClientProvider = Callable[[], Awaitable[Client]]


def check_basic_auth(header: str | None, username: str, password: str) -> None:
    """No credentials: the challenge (401 ``auth_challenge``; Zuora resends with them). Wrong
    or malformed ones: 401. The whole credential is compared in constant time."""
    if not header:
        raise Rejected(401, "credentials required", "auth_challenge")
    if not header.startswith("Basic "):
        raise Rejected(401, "Basic credentials required", "auth_malformed")
    try:
        given = base64.b64decode(header[6:].strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(401, "malformed Basic credentials", "auth_malformed") from None
    expected = f"{username}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise Rejected(401, "invalid credentials", "auth_invalid")


def verify_hmac(raw: bytes, signature: str | None, keys: Sequence[str]) -> None:
    """The hex HMAC-SHA256 of the raw body under any configured key (a rotation keeps two)."""
    if not signature:
        raise Rejected(401, "missing callout signature", "signature_missing")
    given = signature.strip().lower().removeprefix("sha256=").encode()
    if len(given) != 64:
        raise Rejected(401, "malformed callout signature", "signature_malformed")
    ok = False
    for key in keys:
        expected = hmac.new(key.encode(), raw, hashlib.sha256).hexdigest().encode()
        ok |= hmac.compare_digest(given, expected)  # every key is tried: no timing on which
    if not ok:
        raise Rejected(401, "invalid callout signature", "signature_invalid")


def _occurred(payload: dict[str, Any]) -> datetime:
    value = payload.get("eventTimestamp")
    if value in (None, ""):
        return datetime.now(UTC)
    return iso_timestamp(value, "eventTimestamp")


@dataclass(frozen=True)
class SyncAndRisk:
    """An order that lowers MRR with the account sync on: the sync re-reads the account, and
    churn rescores (each its own signal-with-start)."""

    sync: SyncSignal
    risk: RiskSignal


def _sync(body: dict[str, Any], category: str, ref: str, at: datetime) -> SyncSignal:
    """A trigger for the account's sync (the run re-reads the account: the callout is not the
    truth) under the event ID ``{category}:{ref}``."""
    return SyncSignal(
        billing=PROVIDER,
        customer_id=provider_id(body.get("accountId"), "accountId"),
        side=Side.BILLING,
        event_id=f"{category}:{ref}",
        occurred_at=at,
        kind=category,
    )


def _delivery(delivery_id: str | None) -> str:
    """What tells one AccountChanged / ContactChanged callout from another. Their bodies are
    IDs and a timestamp, alike for two edits in the same instant, and Zuora sends no event ID;
    ``Zuora-Request-Id`` is new on every delivery. So each delivery is its own trigger: a
    redelivered copy costs one more re-read, which changes nothing, while two real edits are
    never taken for one (a merged edit would be a lost re-read)."""
    if delivery_id and len(delivery_id) <= 64 and all(c.isalnum() or c == "-" for c in delivery_id):
        return delivery_id
    return uuid.uuid4().hex


#: currencies Zuora amounts carry without a minor unit (as ``connectors.zuora``)
_ZERO_DECIMAL = frozenset({"JPY", "KRW", "CLP", "VND", "ISK", "HUF", "TWD", "UGX"})
_AMOUNT = re.compile(r"[0-9]{1,12}(\.[0-9]{1,4})?")
_CURRENCY = re.compile(r"[A-Za-z]{3}")


def _declined(
    body: dict[str, Any], payment_id: str, invoice_id: str, code: str | None
) -> Payment | None:
    """The declined attempt as the template carries it (``amount``, ``currency``,
    ``gatewayResponse``: issue 15), as the run's payments read would list it, so that read is
    skipped. None — the run reads the payments itself — when the template predates these
    fields or a value will not parse: an odd field drops the attempt, never the event."""
    amount, currency = body.get("amount"), body.get("currency")
    if not isinstance(amount, str | int | float) or isinstance(amount, bool):
        return None
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        return None
    if not _AMOUNT.fullmatch(str(amount).strip()):
        return None
    currency = currency.upper()
    scale = 1 if currency in _ZERO_DECIMAL else 100
    message = body.get("gatewayResponse")
    if message is not None and not isinstance(message, str):
        return None
    return Payment(
        id=payment_id,
        invoice_id=invoice_id,
        succeeded=False,
        amount=int((Decimal(str(amount).strip()) * scale).to_integral_value()),
        currency=currency,
        decline_code=code,
        decline_message=message.strip()[:500] or None if message else None,
    )


def normalize(
    payload: Any, sync: bool = False, delivery_id: str | None = None
) -> PaymentFailed | InvoicePaid | RiskSignal | SyncSignal | SyncAndRisk | Echo | None:
    """The canonical event, an echo of our own write, or None (acknowledged, nothing to do).
    ``sync``: the deployment runs the account sync (REVBRIDGE_ACCOUNT_SYNC); ``delivery_id``:
    the callout's ``Zuora-Request-Id`` (:func:`_delivery`)."""
    body = obj(payload, "callout")
    category = text(body.get("eventCategory"), "eventCategory", 60)
    occurred_at = _occurred(body)
    if category in SYNC_CATEGORIES:
        if not sync:
            return None
        provider_id(body.get("contactId" if category == "ContactChanged" else "accountId"), "id")
        return _sync(body, category, _delivery(delivery_id), occurred_at)
    if category == "PaymentDeclined":
        payment = provider_id(body.get("paymentId"), "paymentId")
        invoice_id = provider_id(body.get("invoiceId"), "invoiceId")
        # a code, not customer text
        code = optional_text(body.get("gatewayResponseCode"), "gatewayResponseCode", 60)
        return PaymentFailed(
            billing=PROVIDER,
            event_id=f"PaymentDeclined:{payment}",
            invoice_id=invoice_id,
            customer_id=provider_id(body.get("accountId"), "accountId"),
            decline_code=code,
            occurred_at=occurred_at,
            payment=_declined(body, payment, invoice_id, code),
        )
    if category == "PaymentProcessed":
        payment = provider_id(body.get("paymentId"), "paymentId")
        invoice = optional_provider_id(body.get("invoiceId"), "invoiceId")
        if invoice is None:
            return None  # a payment not tied to an invoice: nothing of ours waits on it
        return InvoicePaid(
            billing=PROVIDER,
            event_id=f"PaymentProcessed:{payment}",
            invoice_id=invoice,
            customer_id=provider_id(body.get("accountId"), "accountId"),
            occurred_at=occurred_at,
        )
    if category == "OrderProcessed":
        order = provider_id(body.get("orderNumber"), "orderNumber")
        if optional_text(body.get("revbridgeKey"), "revbridgeKey", 255):
            return Echo(f"order {order} was placed by RevBridge")
        kinds = {
            k.strip()
            for k in str(
                optional_text(body.get("orderActionTypes"), "orderActionTypes") or ""
            ).split(",")
        }
        changed = _sync(body, category, order, occurred_at) if sync else None
        if not kinds & DOWNGRADE_ACTIONS:
            return changed
        risk = RiskSignal(
            billing=PROVIDER,
            event_id=f"OrderProcessed:{order}",
            customer_id=provider_id(body.get("accountId"), "accountId"),
            kind="downgrade",
            occurred_at=occurred_at,
        )
        return risk if changed is None else SyncAndRisk(changed, risk)
    # InvoicePosted, UsageRecorded (custom event), anything else: acknowledged, nothing routed
    return None


def _answer(body: dict[str, Any]) -> Response:
    """Zuora treats anything but 200 as a failed delivery."""
    return JSONResponse(body, status_code=200)


async def receive(
    request: Request, settings: Settings, get_client: ClientProvider, count: Counter
) -> Response:
    """``POST /webhooks/zuora``: auth (+ HMAC), parse, normalize, route; exactly 200 when
    accepted."""
    cfg = settings.webhooks
    try:
        if settings.billing != PROVIDER:
            raise Rejected(
                404,
                f"zuora is not this deployment's billing platform ({settings.billing})",
                "not_ours",
            )
        if not (cfg.zuora_username and cfg.zuora_password):
            raise Rejected(503, "zuora callout credentials are not configured", "not_configured")
        raw = await read_body(request)
        check_basic_auth(
            request.headers.get("authorization"),
            cfg.zuora_username,
            cfg.zuora_password.get_secret_value(),
        )
        if cfg.zuora_hmac_keys:
            verify_hmac(
                raw,
                request.headers.get(cfg.zuora_hmac_header),
                [k.get_secret_value() for k in cfg.zuora_hmac_keys],
            )
        event = normalize(
            parse_json(raw),
            sync=cfg.account_sync,
            delivery_id=request.headers.get("zuora-request-id"),
        )
        if event is None:
            count(PROVIDER, "ignored", "event_not_routed")
            return _answer({"status": "ignored", "reason": "event type not routed"})
        if isinstance(event, Echo):
            count(PROVIDER, "echo")
            return _answer({"status": "echo", "reason": event.reason})
        # the whole event is validated and planned before the first Temporal call
        flusher = flush_workflow_id(settings.billing, settings.crm)
        if isinstance(event, SyncAndRisk):
            plan = router.Plan(
                router.plan_sync(event.sync, flusher).first,
                follow_up=router.plan_risk(event.risk).first,  # type: ignore[arg-type]
            )
        elif isinstance(event, SyncSignal):
            plan = router.plan_sync(event, flusher)
        elif isinstance(event, RiskSignal):
            plan = router.plan_risk(event)
        else:
            plan = router.plan(event, settings.task_queue)
        _, body = await router.execute(await get_client(), plan, settings.task_queue)
        count(PROVIDER, body["status"], workflow_id=body.get("workflow_id"))
        return _answer(body)
    except Rejected as exc:
        if exc.code == "auth_challenge":
            count(PROVIDER, "challenge")
        else:
            count(PROVIDER, "rejected", exc.code)
            log.info("webhook rejected provider=zuora status=%s reason=%s", exc.status, exc.code)
        headers = {"WWW-Authenticate": REALM} if exc.status == 401 else {}
        if exc.status == 503:
            headers["Retry-After"] = "10"  # as every 503 of the service (webhooks/app.py)
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=headers)
