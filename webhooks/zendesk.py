"""Zendesk webhooks (reference erp-support-email-apis.md §2.4): a new ticket starts support context.

- **Signature**: ``X-Zendesk-Webhook-Signature`` = ``base64(HMAC-SHA256(secret, timestamp +
  body))`` with ``X-Zendesk-Webhook-Signature-Timestamp`` (ISO-8601), the secret's UTF-8 bytes
  as the key (the current doc text; the older page's body + timestamp vector is not accepted).
  Every configured secret is tried (rotation); a timestamp more than :data:`TOLERANCE_S` away
  from now is refused, so a captured delivery cannot be replayed later. Bad, missing or old:
  ``401`` with a one-line reason.
- **Bodies**, both accepted:

  - the event-subscribed envelope ``{"type": "zen:event-type:ticket.created", "id", "time",
    "subject", "detail": {"id": "<ticket id>", ...}, "event": {...}}``;
  - a trigger-connected webhook whose JSON body is ours (the trigger's template; condition the
    trigger on "Ticket is Created", or every update would post it):
    ``{"event": "ticket_created", "ticket_id": "{{ticket.id}}"}``, and for echo suppression on
    an update trigger ``{"event": "ticket_updated", "ticket_id": "{{ticket.id}}",
    "comment_body": "{{ticket.latest_comment}}", "updater_id": "{{current_user.id}}"}``
    (placeholder names from Zendesk's placeholder reference, not checked against a live account).

  Only the ticket ID is trusted: the run reads the ticket, its requester and organization back
  from Zendesk (events are triggers, not truth).
- **Echoes**: our internal note comes back as ``ticket.comment_added`` (or a trigger's
  ``ticket_updated`` with the latest comment): a comment carrying RevBridge's marker
  (``[revbridge:<key>]``, ``connectors/zendesk.py``) or written by the integration user
  (``ZENDESK_INTEGRATION_USER_ID``) is dropped (200 ``echo``). Other ticket events: ignored.
- **Deduplication**: one support-context run per ticket, ever (``case:zendesk:<ticket id>``):
  a redelivery (Zendesk retries, and one action may invoke a webhook more than once) joins the
  run that exists (200 ``duplicate``). Zendesk times out after about 10 s: nothing here waits
  for more than the start call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from temporalio.client import Client

from domain.models import CaseOpened
from domain.settings import Settings
from webhooks import router
from webhooks.errors import Rejected
from webhooks.parsing import Echo, iso_timestamp, parse_json, read_body

PROVIDER = "zendesk"
SIGNATURE = "x-zendesk-webhook-signature"
TIMESTAMP = "x-zendesk-webhook-signature-timestamp"
#: seconds a signature timestamp may be away from now (either way: clocks drift)
TOLERANCE_S = 300
#: RevBridge's note marker (the shape connectors/zendesk.py writes)
MARKER = re.compile(r"\[revbridge:[A-Za-z0-9_.\-]{6,128}\]")
_TICKET_ID = re.compile(r"[0-9]{1,19}")
_CREATED = ("zen:event-type:ticket.created", "ticket_created")
_COMMENTED = ("zen:event-type:ticket.comment_added", "ticket_updated", "comment_added")

log = logging.getLogger("revbridge.webhooks")

Counter = Callable[..., None]
ClientProvider = Callable[[], Awaitable[Client]]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def verify(
    body: bytes, signature: str | None, timestamp: str | None, secrets: list[str], now: float
) -> None:
    """Raise :class:`Rejected` (401) unless one secret signed ``timestamp + body`` recently."""
    if not signature or not signature.strip():
        raise Rejected(401, "missing X-Zendesk-Webhook-Signature header", "missing_signature")
    if not timestamp or not timestamp.strip():
        raise Rejected(
            401, "missing X-Zendesk-Webhook-Signature-Timestamp header", "missing_timestamp"
        )
    timestamp = timestamp.strip()
    try:
        at = (
            datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
            if len(timestamp) <= 40
            else None
        )
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        raise Rejected(401, "signature timestamp is not an ISO-8601 UTC time", "bad_timestamp")
    if abs(now - at.timestamp()) > TOLERANCE_S:
        raise Rejected(401, "signature timestamp is too old (or in the future)", "stale_timestamp")
    try:
        given = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(401, "signature is not base64", "bad_signature") from None
    matched = [
        hmac.compare_digest(given, base64.b64decode(sign(s, timestamp, body))) for s in secrets
    ]
    if not any(matched):
        raise Rejected(401, "signature does not match", "bad_signature")


def is_echo_body(body: Any) -> bool:
    """Whether a comment's text carries RevBridge's note marker."""
    return isinstance(body, str) and MARKER.search(body[:100_000]) is not None


def _ticket_id(value: Any, where: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _TICKET_ID.fullmatch(value.strip()):
        raise Rejected(422, f"{where} is not a Zendesk ticket ID", "bad_id")
    return value.strip()


def normalize(payload: Any, integration_user_id: str | None = None) -> CaseOpened | Echo | None:
    """A webhook body → a new ticket (:class:`CaseOpened`), our own note coming back
    (:class:`Echo`), or None (an event support context does not route)."""
    if not isinstance(payload, dict):
        raise Rejected(400, "body is not a JSON object", "malformed_event")
    kind = payload.get("type", payload.get("event"))
    if not isinstance(kind, str):
        raise Rejected(400, "type (or event) is missing", "malformed_event")
    envelope = "type" in payload
    detail = payload.get("detail") if envelope else payload
    if not isinstance(detail, dict):
        raise Rejected(400, "detail is not an object", "malformed_event")
    if kind in _COMMENTED:
        event = payload.get("event")
        comment = event.get("comment") if envelope and isinstance(event, dict) else payload
        if not isinstance(comment, dict):
            return None
        body = comment.get("body", comment.get("comment_body"))
        author = comment.get("author")
        author_id = author.get("id") if isinstance(author, dict) else comment.get("updater_id")
        if is_echo_body(body):
            return Echo("RevBridge's own internal note")
        if integration_user_id and str(author_id) == integration_user_id:
            return Echo("a comment by the RevBridge integration user")
        return None
    if kind not in _CREATED:
        return None
    ticket_id = _ticket_id(detail.get("id") if envelope else detail.get("ticket_id"), "ticket id")
    if envelope:
        event_id = payload.get("id")
        if not isinstance(event_id, str) or not 1 <= len(event_id) <= 128:
            raise Rejected(400, "id is missing", "malformed_event")
        at = iso_timestamp(payload.get("time"), "time")
    else:
        event_id, at = f"ticket_created:{ticket_id}", datetime.now(UTC)
    return CaseOpened(crm=PROVIDER, event_id=event_id, case_id=ticket_id, occurred_at=at)


def _answer(body: dict[str, str], status: int = 200) -> Response:
    return JSONResponse(body, status_code=status)


async def receive(
    request: Request, settings: Settings, get_client: ClientProvider, count: Counter
) -> Response:
    """``POST /webhooks/zendesk``: verify, parse, normalize, start the ticket's support context."""
    cfg = settings.webhooks
    try:
        if settings.desk != PROVIDER:
            raise Rejected(
                404,
                f"zendesk is not this deployment's support desk ({settings.desk or 'none'})",
                "not_ours",
            )
        if not cfg.zendesk_secrets:
            raise Rejected(
                503, "zendesk webhook signing secret is not configured", "not_configured"
            )
        raw = await read_body(request)
        verify(
            raw,
            request.headers.get(SIGNATURE),
            request.headers.get(TIMESTAMP),
            [s.get_secret_value() for s in cfg.zendesk_secrets],
            now=time.time(),
        )
        event = normalize(parse_json(raw), cfg.zendesk_integration_user_id)
        if event is None:
            count(PROVIDER, "ignored", "event_not_routed")
            return _answer({"status": "ignored", "reason": "event type not routed"})
        if isinstance(event, Echo):
            count(PROVIDER, "echo")
            return _answer({"status": "echo", "reason": event.reason})
        plan = router.plan_crm(event, settings.billing)
        status, body = await router.execute(await get_client(), plan, settings.task_queue)
        count(PROVIDER, body["status"], workflow_id=body.get("workflow_id"))
        return _answer(body, status)
    except Rejected as exc:
        count(PROVIDER, "rejected", exc.code)
        log.info("webhook rejected provider=zendesk status=%s reason=%s", exc.status, exc.code)
        headers = {"Retry-After": "10"} if exc.status == 503 else None
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=headers)
