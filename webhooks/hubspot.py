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

import asyncio
import base64
import hashlib
import hmac
import re
from datetime import datetime
from typing import Any

from domain.golden import Side, SyncSignal
from domain.models import CaseOpened, CrmAccountChanged, DealWon, Frozen
from domain.settings import HubSpotSettings
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


class ContactChanged(Frozen):
    """A HubSpot contact changed (``contact.propertyChange``): for the account sync of the
    billing customer linked to the contact's company (found by :class:`HubSpotLookup`)."""

    event_id: str
    contact_id: str
    fields: list[str] = []
    occurred_at: datetime


def normalize(
    event: Any, own_app_id: str | None
) -> CaseOpened | DealWon | CrmAccountChanged | ContactChanged | _Echo | None:
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
    if sub_type == "contact.propertyChange" and object_id:
        name = event.get("propertyName")
        if not isinstance(name, str) or not name:
            raise Rejected(422, "propertyChange event is missing propertyName", "malformed_event")
        return ContactChanged(
            event_id=event_id, contact_id=object_id, fields=[name], occurred_at=_occurred_at(event)
        )
    return None


# --- the account sync's lookup: which billing customer a company or contact belongs to ---------

#: the company's billing link (written by quote-to-cash and the sync's backfill)
LINK_PROPERTIES = ["billing_customer_id", "billing_platform"]
#: how long one lookup may hold the delivery (HubSpot waits 5 s for an answer)
LOOKUP_TIMEOUT_S = 3.0
#: HubSpot's batch APIs take 100 inputs a call (a delivery holds at most 100 events)
_BATCH = 100


class HubSpotLookup:
    """The billing customer behind the companies and contacts a delivery names, for the account
    sync (issue 19). An event names the HubSpot record, the sync's workflow is keyed by the
    billing customer: the company's billing link (``billing_customer_id`` +
    ``billing_platform``) is read for every company of a delivery in ONE ``batch/read``; a
    contact's company comes first from ONE v4 associations batch read. Official client, calls
    in a thread (the event loop keeps answering), failures a one-line 503 (HubSpot redelivers).
    """

    def __init__(self, settings: HubSpotSettings, timeout_s: float = LOOKUP_TIMEOUT_S) -> None:
        import hubspot

        overrides = (
            {"host": settings.api_url, "base_url": settings.api_url} if settings.api_url else {}
        )
        self._client = hubspot.HubSpot(
            access_token=settings.access_token.get_secret_value(), retry=False, **overrides
        )
        self._companies = self._client.crm.companies.batch_api
        self._associations = self._client.crm.associations.v4.batch_api
        self._timeout_s = timeout_s
        #: vendor calls made (tests read it: one per kind of lookup per delivery)
        self.calls = 0

    async def resolve(
        self, events: list[CrmAccountChanged | ContactChanged], billing: str
    ) -> list[SyncSignal | None]:
        """Each event's sync signal, in order; None where the record is not linked to a
        customer of this deployment's billing platform (nothing to sync)."""
        return await asyncio.to_thread(self._resolve, events, billing)

    def _call(self, fn: Any, *args: Any) -> Any:
        self.calls += 1
        try:
            return fn(*args, _request_timeout=self._timeout_s)
        except Exception as exc:  # the SDK's ApiException, urllib3's, timeouts: all "later"
            raise Rejected(
                503, f"hubspot lookup failed ({type(exc).__name__}), retry later", "lookup_failed"
            ) from None

    def _company_of(self, contact_ids: list[str]) -> dict[str, str]:
        from hubspot.crm.associations.v4 import (
            BatchInputPublicFetchAssociationsBatchRequest,
            PublicFetchAssociationsBatchRequest,
        )

        out: dict[str, str] = {}
        for i in range(0, len(contact_ids), _BATCH):
            request = BatchInputPublicFetchAssociationsBatchRequest(
                inputs=[
                    PublicFetchAssociationsBatchRequest(id=x) for x in contact_ids[i : i + _BATCH]
                ]
            )
            page = self._call(self._associations.get_page, "contacts", "companies", request)
            for row in page.results or []:
                if row.to:  # a contact of several companies: the first (HubSpot's primary)
                    out[str(row._from.id)] = str(row.to[0].to_object_id)
        return out

    def _links(self, company_ids: list[str]) -> dict[str, dict[str, str]]:
        from hubspot.crm.companies import BatchReadInputSimplePublicObjectId

        out: dict[str, dict[str, str]] = {}
        for i in range(0, len(company_ids), _BATCH):
            body = BatchReadInputSimplePublicObjectId(
                inputs=[{"id": x} for x in company_ids[i : i + _BATCH]],
                properties=LINK_PROPERTIES,
            )
            page = self._call(self._companies.read, body)
            for row in page.results or []:
                out[str(row.id)] = row.properties or {}
        return out

    def _resolve(
        self, events: list[CrmAccountChanged | ContactChanged], billing: str
    ) -> list[SyncSignal | None]:
        contacts = sorted({e.contact_id for e in events if isinstance(e, ContactChanged)})
        company_of = self._company_of(contacts) if contacts else {}
        companies = {
            e.account_id if isinstance(e, CrmAccountChanged) else company_of.get(e.contact_id)
            for e in events
        }
        links = self._links(sorted(c for c in companies if c)) if any(companies) else {}
        out: list[SyncSignal | None] = []
        for e in events:
            company = (
                e.account_id if isinstance(e, CrmAccountChanged) else company_of.get(e.contact_id)
            )
            link = links.get(company or "", {})
            customer = link.get("billing_customer_id")
            if not company or not customer or link.get("billing_platform") != billing:
                out.append(None)
                continue
            kind = "company_changed" if isinstance(e, CrmAccountChanged) else "contact_changed"
            if not parsing.PROVIDER_ID.fullmatch(customer):
                out.append(None)  # not an ID a workflow can carry: not one of our links
                continue
            out.append(
                SyncSignal(
                    billing=billing,
                    customer_id=customer,
                    side=Side.CRM,
                    event_id=f"hubspot:{e.event_id}",
                    occurred_at=e.occurred_at,
                    kind=kind,
                    crm_account_id=company,
                )
            )
        return out
