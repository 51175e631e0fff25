"""HubSpot webhooks (v3 signatures, batched events) → canonical CRM events.

Reference: ``crm-llm-apis.md`` §2.7.

**Signature v3.** ``base64(HMAC-SHA256(client_secret, METHOD + URI + raw_body + timestamp))`` where
``timestamp`` is the ``X-HubSpot-Request-Timestamp`` header (epoch milliseconds) and ``URI`` is the
full URL HubSpot posted to (scheme, host, path, query) with these percent-escapes decoded first:
``%3A : %2F / %3F ? %40 @ %21 ! %24 $ %27 ' %28 ( %29 ) %2A * %2C , %3B ;`` — and no others
(``%20``, ``%25``... stay as they are). HubSpot's own ``Signature`` helper skips that decoding, so
it fails on any URL carrying one of those escapes. Behind a proxy the URL we see differs from the
one HubSpot signed, so the service passes the configured public URL.

Every verification failure is **401** with a one-line reason: missing or garbled headers, a
timestamp more than 5 minutes old or more than 5 minutes in the future, a wrong signature. HubSpot
does not retry 401, which is what we want for a request we cannot authenticate (a stale request is
a replay or a clock problem; retrying the same bytes will not help).

**Batches.** HubSpot POSTs a JSON array of up to 100 events. Each event is judged alone
(:func:`normalize`): one malformed event is dead-lettered (422) and the rest go on; duplicates are
harmless downstream (deterministic workflow IDs).

**Echo suppression.** Our own API writes come back as events. HubSpot marks them with
``changeSource`` ``API``/``INTEGRATION`` and ``sourceId`` = the writing app's ID (the sandbox does
the same: ``changeSource: "API"``, ``sourceId: "<appId>"``; UI changes carry ``CRM_UI`` and
``userId:<id>``). Such an event from our own app is :data:`ECHO` and is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from domain.models import CaseOpened, CrmAccountChanged, DealWon
from webhooks import parsing
from webhooks.errors import Rejected

CRM = "hubspot"
TOLERANCE_MS = 300_000


class _Echo:
    """Sentinel: the event is our own write coming back."""

    def __repr__(self) -> str:
        return "ECHO"


ECHO = _Echo()

#: percent-escapes HubSpot decodes in the URI before signing (and only these)
_URI_DECODE = {
    "3A": ":",
    "2F": "/",
    "3F": "?",
    "40": "@",
    "21": "!",
    "24": "$",
    "27": "'",
    "28": "(",
    "29": ")",
    "2A": "*",
    "2C": ",",
    "3B": ";",
}
_ESCAPE = re.compile("%(" + "|".join(_URI_DECODE) + ")", re.IGNORECASE)
_TIMESTAMP = re.compile(r"[0-9]{1,16}")
#: changeSource values meaning "written through the API by an app"
_API_SOURCES = {"API", "INTEGRATION", "INTEGRATIONS", "APP"}


def signing_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the listed escapes decoded in one pass, nothing else touched."""
    return _ESCAPE.sub(lambda m: _URI_DECODE[m.group(1).upper()], uri)


def signature_v3(secret: str, method: str, uri: str, body: bytes, timestamp: str) -> str:
    def utf8(text: str) -> bytes:
        return text.encode("utf-8", errors="replace")

    message = utf8(method.upper()) + utf8(signing_uri(uri)) + body + utf8(timestamp)
    return base64.b64encode(hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def verify(
    *,
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    secret: str,
    now_ms: int,
    tolerance_ms: int = TOLERANCE_MS,
) -> None:
    """Raise :class:`Rejected` unless the request carries a valid, fresh v3 signature."""
    if not secret:
        raise Rejected(503, "hubspot client secret is not configured", "not_configured")
    if not signature or not signature.strip():
        raise Rejected(401, "missing X-HubSpot-Signature-v3 header", "missing_signature")
    if not timestamp or not timestamp.strip():
        raise Rejected(401, "missing X-HubSpot-Request-Timestamp header", "missing_timestamp")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Rejected(
            401, "X-HubSpot-Request-Timestamp is not epoch milliseconds", "bad_timestamp"
        )
    age = now_ms - int(timestamp)
    if age > tolerance_ms:
        raise Rejected(401, "request timestamp is older than 5 minutes", "stale_timestamp")
    if -age > tolerance_ms:
        raise Rejected(401, "request timestamp is in the future", "future_timestamp")
    expected = signature_v3(secret, method, uri, body, timestamp)
    given = signature.strip().encode("utf-8", errors="replace")
    if not hmac.compare_digest(expected.encode(), given):
        raise Rejected(401, "signature mismatch", "bad_signature")


#: HubSpot sends at most 100 events per request (crm-llm-apis.md §2.7); a bigger batch is not
#: HubSpot's, and would hold the request for as many Temporal calls
MAX_BATCH = 100


def parse_batch(payload: Any) -> list[Any]:
    """The events of one delivery; HubSpot always sends a JSON array (up to 100 events)."""
    if not isinstance(payload, list):
        raise Rejected(400, "a HubSpot webhook body must be a JSON array of events", "not_a_batch")
    if len(payload) > MAX_BATCH:
        raise Rejected(400, f"a HubSpot batch has at most {MAX_BATCH} events", "batch_too_large")
    return payload


def _numeric_id(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if isinstance(value, bool) or value is None:
        raise Rejected(422, f"event is missing {key}", "malformed_event")
    if isinstance(value, int) and 0 <= value < 10**30:
        return str(value)
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 30:
        return value
    raise Rejected(422, f"event {key} is not a numeric ID", "malformed_event")


def _occurred_at(event: dict[str, Any]) -> datetime:
    value = event.get("occurredAt")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Rejected(422, "event is missing occurredAt (epoch milliseconds)", "malformed_event")
    try:
        return parsing.epoch_ms(value, "event occurredAt")
    except Rejected:
        raise Rejected(422, "event occurredAt is out of range", "malformed_event") from None


def is_echo(event: dict[str, Any], own_app_id: str | None) -> bool:
    if not own_app_id:
        return False
    source = str(event.get("changeSource") or "").upper()
    return source in _API_SOURCES and str(event.get("sourceId") or "") == str(own_app_id)


def normalize(
    event: Any, own_app_id: str | None
) -> CaseOpened | DealWon | CrmAccountChanged | _Echo | None:
    """One event of a batch → a canonical event, :data:`ECHO`, or ``None`` (not routed).

    Raises ``Rejected(422)`` for a malformed event: not an object, or without ``eventId``,
    ``subscriptionType`` or ``objectId`` (association-change events carry ``fromObjectId`` and
    ``toObjectId`` instead of ``objectId``).
    """
    if not isinstance(event, dict):
        raise Rejected(422, "event is not a JSON object", "malformed_event")
    event_id = _numeric_id(event, "eventId")
    sub_type = event.get("subscriptionType")
    if not isinstance(sub_type, str) or not sub_type:
        raise Rejected(422, "event is missing subscriptionType", "malformed_event")
    if sub_type.endswith(".associationChange"):
        _numeric_id(event, "fromObjectId")
        _numeric_id(event, "toObjectId")
        object_id = None
    else:
        object_id = _numeric_id(event, "objectId")
    if is_echo(event, own_app_id):
        return ECHO
    if sub_type == "ticket.creation" and object_id:
        return CaseOpened(
            crm=CRM, event_id=event_id, case_id=object_id, occurred_at=_occurred_at(event)
        )
    if sub_type == "deal.propertyChange" and object_id:
        if event.get("propertyName") == "dealstage" and event.get("propertyValue") == "closedwon":
            return DealWon(
                crm=CRM,
                event_id=event_id,
                opportunity_id=object_id,
                occurred_at=_occurred_at(event),
            )
        return None
    if sub_type == "company.propertyChange" and object_id:
        name = event.get("propertyName")
        if not isinstance(name, str) or not name:
            raise Rejected(422, "propertyChange event is missing propertyName", "malformed_event")
        return CrmAccountChanged(
            crm=CRM,
            event_id=event_id,
            account_id=object_id,
            fields=[name],
            occurred_at=_occurred_at(event),
        )
    return None
