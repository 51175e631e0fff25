"""The Salesforce Marketing Cloud emulator: the tenant's auth host and the Transactional
Messaging (TM) email API, on one server.

Follows ``shared/docs/reference/erp-support-email-apis.md`` §3 and its emulator checklist (§3.7):

- ``POST /v2/token``: OAuth 2.0 client credentials, JSON body only (``grant_type``,
  ``client_id``, ``client_secret``, optional ``scope`` and ``account_id``). ``200`` answers
  ``access_token`` (opaque, 20-minute lifetime), ``token_type: Bearer``, ``expires_in: 1079``,
  ``scope``, and ``rest_instance_url`` / ``soap_instance_url`` pointing at this server (scheme and
  trailing ``/``; ``instance_url_without_scheme`` gives the doc's scheme-less form). Bad
  credentials: ``401 {"error":"invalid_client",...}``. Token requests are counted
  (``GET /_sandbox/marketing_cloud/tokens``) so tests can assert caching.
- REST calls need ``Authorization: Bearer``; a missing, unknown or expired token is ``401
  {"documentation","errorcode":0,"message":"Not Authorized"}``; a token without the route's scope
  (``email_send`` to send, ``email_read`` to read, ``email_write`` for definitions) is ``403``
  (20002). The clock is injectable (``POST /_sandbox/marketing_cloud/clock {"advance_s"}``).
- Send definitions ``/messaging/v1/email/definitions[/{definitionKey}]``: create (201, the
  required fields checked, ``content.customerKey`` must be a seeded asset; 409/30004 when the key
  exists; a non-transactional classification is 109123), list, get (404/30003), patch, delete
  (``Success`` and a fresh ``deletedDefinitionKey``; the key is free again), ``/queue``.
- ``POST /messaging/v1/email/messages/{messageKey}`` (the key percent-decoded, 100 characters at
  most): ``202 {"requestId","errorcode":0,"responses":[{"messageKey"}]}``; validation errors are
  ``400`` with the ``MCMS_UTM_*`` code (109105 contactKey, 109106 to, 109107 definitionKey,
  109108 messageKey, 109111 unknown definition, 109121 invalid to). **A message key used within
  the window (2 days) is not a second send**: the answer carries item-level 109110
  ``MCMS_UTM_Validation_DuplicateMessageKey`` (HTTP 202 with top-level 109001 by default; the
  status of a singleton duplicate is unverified upstream, so ``duplicate_status`` can make it
  400). ``POST /messaging/v1/email/messages/`` sends a batch (2,000 recipients, 500 with
  attributes; missing keys generated; a 202 may carry per-item failures).
- ``GET /messaging/v1/email/messages/{messageKey}``: the newest message for the key: starts
  ``TransactionalSendEvents.EmailQueued`` (a minimal body), then after ``queue_s`` becomes
  ``EmailSent`` (``compositeId``, ``info``) or ``EmailNotSent`` (``info.statusCode`` /
  ``statusMessage``: a Held contact is 2, an Unsubscribed one under ``honor_unsubscribes`` 1,
  ``not_sent`` seeds any code). An inactive definition keeps its messages queued. Timestamps are
  CST without DST, as Marketing Cloud's are. An unknown key is 404/30003 (unverified upstream).
- Limits: a per-minute budget for the API and a tighter one for the status route; over either,
  ``429`` + ``Retry-After: 5`` + ``{"message":"Rate limit exceeded","errorcode":50100,
  "retryAfter":5}``; ``blocked`` answers ``429`` 50200 without Retry-After. Error bodies are the
  ``{"message","errorcode","documentation"}`` envelope.

Deliveries are visible as the mailbox's are: ``GET /_sandbox/marketing_cloud/messages`` lists each
accepted message (key, definition, to, the rendered subject and body, its status), oldest first;
``DELETE`` empties it. Options: ``POST /_sandbox/marketing_cloud/options`` (``duplicate_status``,
``rate_limit_per_minute``, ``status_limit_per_minute``, ``blocked``, ``queue_s``,
``honor_unsubscribes``). Seed: ``POST /_sandbox/seed`` ``{"assets": [{"customerKey", "subject",
"body"}], "definitions": [<create body>], "contacts": {"<email>": "Held"|...}, "not_sent":
{"<email>": statusCode}}``.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Emulator, json_body

DOCS = "https://developer.salesforce.com/docs/atlas.en-us.mc-apis.meta/mc-apis/error-handling.htm"
TOKEN_PATH = "/v2/token"
DEFINITIONS = "/messaging/v1/email/definitions"
MESSAGES = "/messaging/v1/email/messages"
SENT = "TransactionalSendEvents.EmailSent"
NOT_SENT = "TransactionalSendEvents.EmailNotSent"
QUEUED = "TransactionalSendEvents.EmailQueued"
DEFAULT_SCOPES = ("email_send", "email_read", "email_write")
#: the reviewed template RevBridge's definitions point at: subject and body are its attributes
DEFAULT_ASSET = {
    "customerKey": "revbridge-reminder",
    "subject": "%%Subject%%",
    "body": "%%Body%%",
}
DEFAULT_DEFINITION = {
    "definitionKey": "revbridge-dunning",
    "name": "RevBridge dunning reminder",
    "status": "Active",
    "content": {"customerKey": "revbridge-reminder"},
    "subscriptions": {"list": "All Subscribers"},
}
#: subscriber status codes of a NotSent event (transactional-send-subscriber.html)
STATUS_MESSAGES = {
    1: "Unsubscribed",
    2: "Held",
    5: "InvalidEmailAddress",
    10: "MissingRequiredAttributes",
    16: "InvalidAttributeValue",
    31: "ListLevelOptOut",
    33: "AccountLevelOptOut",
    118: "GlobalUnsub",
    126: "MessageVolumeLimitExceeded",
    127: "EmptySubject",
}
_CST = timezone(timedelta(hours=-6))  # Marketing Cloud's timestamps: CST, no DST
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_ATTR = re.compile(r"%%([A-Za-z0-9_]+)%%")
_VALIDATION = {
    109101: "MCMS_UTM_Validation_TooManySubscribers",
    109102: "MCMS_UTM_Validation_NoSubscribers",
    109104: "MCMS_UTM_Validation_MissingRequiredField_messageKey",
    109105: "MCMS_UTM_Validation_MissingRequiredField_subscriberKey",
    109106: "MCMS_UTM_Validation_MissingRequiredField_to",
    109107: "MCMS_UTM_Validation_MissingRequiredField_definitionKey",
    109108: "MCMS_UTM_Validation_InvalidMessageKey",
    109110: "MCMS_UTM_Validation_DuplicateMessageKey",
    109111: "MCMS_UTM_Validation_InvalidDefinitionKey",
    109121: "MCMS_UTM_Validation_InvalidTo",
    109123: "MCMS_UTM_Validation_InvalidClassificationType",
}


class McError(Exception):
    """An error answer in Marketing Cloud's envelope."""

    def __init__(
        self, status: int, errorcode: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.errorcode, self.message = status, errorcode, message
        self.headers = headers or {}

    def response(self) -> Response:
        body: dict[str, Any] = {
            "message": self.message,
            "errorcode": self.errorcode,
            "documentation": DOCS,
        }
        if self.status == 429 and "Retry-After" in self.headers:
            body["retryAfter"] = int(self.headers["Retry-After"])
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _tm(code: int, detail: str) -> str:
    return f"{_VALIDATION.get(code, 'MCMS_UTM_Validation')}: {detail}"


class MarketingCloudEmulator(Emulator):
    name = "marketing_cloud"

    def __init__(
        self,
        client_id: str = "revbridge-mc-local",
        client_secret: str = "mc-local-secret",  # noqa: S107 - the sandbox's own
        *,
        account_id: str = "100012345",
        scopes: tuple[str, ...] = DEFAULT_SCOPES,
        seed_defaults: bool = True,
        instance_url_without_scheme: bool = False,
    ) -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.account_id = account_id
        self.scopes = tuple(scopes)
        self.seed_defaults = seed_defaults
        self.instance_url_without_scheme = instance_url_without_scheme
        super().__init__()

    # --- state ----------------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.clock_offset = 0.0
        self.tokens: dict[str, tuple[float, tuple[str, ...]]] = {}
        self.token_requests = 0
        self.assets: dict[str, dict[str, Any]] = {}
        self.definitions: dict[str, dict[str, Any]] = {}
        #: every accepted message, oldest first (a duplicate key is never a second row)
        self.messages: list[dict[str, Any]] = []
        self.contacts: dict[str, str] = {}
        self.not_sent: dict[str, int] = {}
        # options (POST /_sandbox/marketing_cloud/options)
        self.token_ttl_s = 1200.0
        self.expires_in = 1079
        self.key_window_s = 2 * 86400.0
        self.duplicate_status = 202
        self.queue_s = 0.0
        self.honor_unsubscribes = False
        self.rate_limit_per_minute = 2500
        self.status_limit_per_minute = 600
        self.blocked = False
        self._calls: deque[float] = deque()
        self._status_calls: deque[float] = deque()
        if getattr(self, "seed_defaults", False):
            self.assets[DEFAULT_ASSET["customerKey"]] = dict(DEFAULT_ASSET)
            self._create_definition(dict(DEFAULT_DEFINITION))

    def now(self) -> float:
        return time.time() + self.clock_offset

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        for asset in data.get("assets", []):
            self.assets[str(asset["customerKey"])] = dict(asset)
        made = [self._create_definition(dict(d)) for d in data.get("definitions", [])]
        for email, status in dict(data.get("contacts", {})).items():
            self.contacts[str(email).lower()] = str(status)
        for email, code in dict(data.get("not_sent", {})).items():
            self.not_sent[str(email).lower()] = int(code)
        return {"assets": len(self.assets), "definitions": [d["definitionKey"] for d in made]}

    def inbox(self, to: str | None = None) -> list[dict[str, Any]]:
        """Accepted messages (their status brought up to date), oldest first."""
        with self.lock:
            for msg in self.messages:
                self._advance(msg)
            rows = [{k: v for k, v in m.items() if not k.startswith("_")} for m in self.messages]
        return [m for m in rows if to is None or m["to"].lower() == to.lower()]

    # --- errors ----------------------------------------------------------------------------------

    def error_response(self, status: int, message: str) -> Response:
        code = {401: 0, 403: 20002, 404: 30003, 409: 30004, 429: 50100, 503: 50300}.get(
            status, 10000 if status < 500 else 0
        )
        return McError(status, code, message).response()

    # --- routes ----------------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        d = f"{DEFINITIONS}/{{key}}"
        return [
            Route(TOKEN_PATH, self._token, methods=["POST"]),
            Route(DEFINITIONS, self._api(self._definitions, "email_write"), methods=["POST"]),
            Route(DEFINITIONS, self._api(self._list_definitions, "email_read"), methods=["GET"]),
            Route(f"{d}/queue", self._api(self._queue, "email_read"), methods=["GET"]),
            Route(f"{d}/queue", self._api(self._purge, "email_write"), methods=["DELETE"]),
            Route(d, self._api(self._get_definition, "email_read"), methods=["GET"]),
            Route(d, self._api(self._patch_definition, "email_write"), methods=["PATCH"]),
            Route(d, self._api(self._delete_definition, "email_write"), methods=["DELETE"]),
            Route(f"{MESSAGES}/", self._api(self._send_batch, "email_send"), methods=["POST"]),
            Route(
                f"{MESSAGES}/{{key:path}}",
                self._api(self._send_one, "email_send"),
                methods=["POST"],
            ),
            Route(
                f"{MESSAGES}/{{key:path}}",
                self._api(self._status, "email_read", status_route=True),
                methods=["GET"],
            ),
            Route("/_sandbox/marketing_cloud/messages", self._messages, methods=["GET", "DELETE"]),
            Route("/_sandbox/marketing_cloud/options", self._options, methods=["GET", "POST"]),
            Route("/_sandbox/marketing_cloud/clock", self._clock, methods=["POST"]),
            Route("/_sandbox/marketing_cloud/tokens", self._token_count, methods=["GET"]),
        ]

    def _api(
        self,
        handler: Callable[[Request], Awaitable[Response]],
        scope: str,
        status_route: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                self._authorize(request, scope)
                self._throttle(status_route)
                return await handler(request)
            except McError as exc:
                return exc.response()

        return run

    def _authorize(self, request: Request, scope: str) -> None:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        if not token and ("access_token" in request.query_params):
            raise McError(401, 40004, "Access token must be sent in the Authorization header")
        with self.lock:
            found = self.tokens.get(token) if token else None
        if found is None or found[0] <= self.now():
            raise McError(401, 0, "Not Authorized")
        if scope not in found[1]:
            raise McError(403, 20002, "Insufficient privileges to complete this action.")

    def _throttle(self, status_route: bool) -> None:
        if self.blocked:
            raise McError(429, 50200, "Your requests are temporarily blocked.")
        now = self.now()
        with self.lock:
            budgets = [(self._calls, self.rate_limit_per_minute)]
            if status_route:
                budgets.append((self._status_calls, self.status_limit_per_minute))
            for calls, limit in budgets:
                while calls and calls[0] <= now - 60:
                    calls.popleft()
                if limit and len(calls) >= limit:
                    raise McError(429, 50100, "Rate limit exceeded", {"Retry-After": "5"})
            for calls, _ in budgets:
                calls.append(now)

    # --- auth ------------------------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        def invalid(status: int, error: str, description: str) -> Response:
            return JSONResponse(
                {
                    "error": error,
                    "error_description": description,
                    "error_uri": "https://developer.salesforce.com/docs",
                },
                status_code=status,
            )

        with self.lock:
            self.token_requests += 1
        if "json" not in request.headers.get("content-type", ""):
            return invalid(400, "invalid_request", "The request body must be JSON.")
        try:
            body = json_body(await request.body())
        except ValueError:
            return invalid(400, "invalid_request", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return invalid(400, "invalid_request", "The request body must be a JSON object.")
        if body.get("grant_type") != "client_credentials":
            return invalid(
                400,
                "unsupported_grant_type",
                'Use "client_credentials" as the value of the grant_type parameter.',
            )
        cid, secret = str(body.get("client_id") or ""), str(body.get("client_secret") or "")
        ok = hmac.compare_digest(cid.encode(), self.client_id.encode()) & hmac.compare_digest(
            secret.encode(), self.client_secret.encode()
        )
        account = body.get("account_id")
        if not ok or (account not in (None, "") and str(account) != self.account_id):
            return invalid(
                401,
                "invalid_client",
                "Client authentication failed. Make sure that the client ID and client secret "
                "are correct.",
            )
        requested = body.get("scope")
        if requested is None:
            granted = self.scopes
        else:
            asked = str(requested).split()
            unknown = [s for s in asked if s not in self.scopes]
            if unknown:
                return invalid(400, "invalid_scope", f"Scope {unknown[0]} is not allowed.")
            granted = tuple(asked)
        token = secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[token] = (self.now() + self.token_ttl_s, granted)
        base = str(request.base_url)
        base = base if base.endswith("/") else base + "/"
        if self.instance_url_without_scheme:
            base = base.split("://", 1)[1].rstrip("/")
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": self.expires_in,
                "scope": " ".join(granted),
                "soap_instance_url": base,
                "rest_instance_url": base,
            }
        )

    # --- definitions ----------------------------------------------------------------------------

    def _create_definition(self, body: dict[str, Any]) -> dict[str, Any]:
        key = body.get("definitionKey")
        if not isinstance(key, str) or not key.strip():
            raise McError(400, 10001, "definitionKey is required")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise McError(400, 10001, "name is required")
        content = body.get("content")
        asset = content.get("customerKey") if isinstance(content, dict) else None
        if not isinstance(asset, str) or not asset:
            raise McError(400, 10001, "content.customerKey is required")
        subs = body.get("subscriptions")
        if not isinstance(subs, dict) or not subs.get("list"):
            raise McError(400, 10001, "subscriptions.list is required")
        if asset not in self.assets:
            raise McError(400, 10003, f"content.customerKey {asset} does not exist")
        classification = str(body.get("classification") or "Default Transactional")
        if "transactional" not in classification.lower():
            raise McError(400, 109123, _tm(109123, "classification must be transactional"))
        if key in self.definitions:
            raise McError(409, 30004, f"Definition {key} already exists")
        if any(d["name"] == name for d in self.definitions.values()):
            raise McError(409, 30004, f"A definition named {name} already exists")
        status = str(body.get("status") or "Active").capitalize()
        if status not in ("Active", "Inactive", "Deleted"):
            raise McError(400, 10002, f"status {status} is not valid")
        stamp = _cst(self.now())
        made = {
            **body,
            "definitionKey": key,
            "name": name,
            "status": status,
            "classification": classification,
            "definitionId": str(uuid.uuid4()),
            "createdDate": stamp,
            "modifiedDate": stamp,
        }
        self.definitions[key] = made
        return made

    async def _definitions(self, request: Request) -> Response:
        body = _object(await request.body())
        with self.lock:
            made = self._create_definition(body)
        return JSONResponse({"requestId": str(uuid.uuid4()), **made}, status_code=201)

    async def _list_definitions(self, request: Request) -> Response:
        with self.lock:
            rows = list(self.definitions.values())
        return JSONResponse(
            {
                "requestId": str(uuid.uuid4()),
                "definitions": rows,
                "count": len(rows),
                "page": 1,
                "pageSize": max(len(rows), 50),
            }
        )

    def _definition(self, request: Request) -> dict[str, Any]:
        key = unquote(request.path_params["key"])
        found = self.definitions.get(key)
        if found is None:
            raise McError(404, 30003, f"Definition {key} not found")
        return found

    async def _get_definition(self, request: Request) -> Response:
        with self.lock:
            found = dict(self._definition(request))
        return JSONResponse({"requestId": str(uuid.uuid4()), **found})

    async def _patch_definition(self, request: Request) -> Response:
        body = _object(await request.body())
        with self.lock:
            found = self._definition(request)
            for field in ("name", "description", "content", "subscriptions", "options"):
                if field in body:
                    found[field] = body[field]
            if "status" in body:
                found["status"] = str(body["status"]).capitalize()
            found["modifiedDate"] = _cst(self.now())
            out = dict(found)
        return JSONResponse({"requestId": str(uuid.uuid4()), **out})

    async def _delete_definition(self, request: Request) -> Response:
        with self.lock:
            found = self._definition(request)
            del self.definitions[found["definitionKey"]]
        return JSONResponse(
            {
                "requestId": str(uuid.uuid4()),
                "message": "Success",
                "deletedDefinitionKey": str(uuid.uuid4()),
            }
        )

    def _queued(self, key: str) -> list[dict[str, Any]]:
        for msg in self.messages:
            self._advance(msg)
        return [m for m in self.messages if m["definition_key"] == key and m["status"] == QUEUED]

    async def _queue(self, request: Request) -> Response:
        with self.lock:
            found = self._definition(request)
            queued = self._queued(found["definitionKey"])
            age = max((self.now() - m["_accepted_at"] for m in queued), default=0)
        return JSONResponse(
            {"requestId": str(uuid.uuid4()), "count": len(queued), "ageSeconds": int(age)}
        )

    async def _purge(self, request: Request) -> Response:
        with self.lock:
            found = self._definition(request)
            if found["status"] == "Active":
                raise McError(409, 30002, "The queue of an active definition cannot be purged")
            queued = self._queued(found["definitionKey"])
            self.messages = [m for m in self.messages if m not in queued]
        return JSONResponse({"requestId": str(uuid.uuid4()), "message": "Success"})

    # --- sending ---------------------------------------------------------------------------------

    def _validate(self, key: str, definition_key: Any, recipient: Any) -> tuple[int, str] | None:
        """The first validation error of one recipient (code, message), or None."""
        if not key:
            return 109104, _tm(109104, "messageKey is required")
        if len(key) > 100:
            return 109108, _tm(109108, "messageKey is longer than 100 characters")
        if not isinstance(definition_key, str) or not definition_key:
            return 109107, _tm(109107, "definitionKey is required")
        found = self.definitions.get(definition_key)
        if found is None or found["status"] == "Deleted":
            return 109111, _tm(109111, f"definitionKey {definition_key} is not valid")
        if not isinstance(recipient, dict):
            return 109102, _tm(109102, "recipient is required")
        if not recipient.get("contactKey"):
            return 109105, _tm(109105, "Invalid subscriber")
        to = recipient.get("to")
        if not to:
            return 109106, _tm(109106, "Invalid subscriber")
        if not isinstance(to, str) or not _EMAIL.fullmatch(to):
            return 109121, _tm(109121, "Invalid email address")
        return None

    def _recent(self, key: str) -> dict[str, Any] | None:
        cutoff = self.now() - self.key_window_s
        for msg in reversed(self.messages):
            if msg["message_key"] == key:
                return msg if msg["_accepted_at"] > cutoff else None
        return None

    def _accept(
        self, key: str, definition_key: str, recipient: dict[str, Any], attrs: dict[str, Any]
    ) -> None:
        definition = self.definitions[definition_key]
        asset = self.assets.get(definition["content"]["customerKey"], {})
        values = {**attrs, **(recipient.get("attributes") or {})}
        self.messages.append(
            {
                "message_key": key,
                "definition_key": definition_key,
                "contact_key": str(recipient["contactKey"]),
                "to": str(recipient["to"]),
                "subject": _render(str(asset.get("subject", "")), values),
                "body": _render(str(asset.get("body", "")), values),
                "attributes": values,
                "status": QUEUED,
                "status_code": None,
                "delivery": 1 + sum(m["message_key"] == key for m in self.messages),
                "composite_id": f"{uuid.uuid4().hex[:8]}.{self.next_seq()}",
                "accepted_at": _cst(self.now()),
                "_accepted_at": self.now(),
            }
        )

    def _advance(self, msg: dict[str, Any]) -> None:
        """Queued → Sent or NotSent once ``queue_s`` passed (an inactive definition holds it)."""
        if msg["status"] != QUEUED or self.now() - msg["_accepted_at"] < self.queue_s:
            return
        definition = self.definitions.get(msg["definition_key"])
        if definition is not None and definition["status"] == "Inactive":
            return
        to = msg["to"].lower()
        contact = self.contacts.get(to, "Active")
        code = self.not_sent.get(to)
        if code is None and contact == "Held":
            code = 2
        if code is None and contact == "Unsubscribed" and self.honor_unsubscribes:
            code = 1
        msg["status"] = SENT if code is None else NOT_SENT
        msg["status_code"] = code
        msg["_done_at"] = self.now()

    def _duplicate(self, key: str) -> dict[str, Any]:
        return {
            "messageKey": key,
            "errorcode": 109110,
            "message": _tm(109110, "messageKey reused within the past 2 days"),
        }

    async def _send_one(self, request: Request) -> Response:
        key = _raw_key(request)
        body = _object(await request.body())
        if "recipient" in body and "recipients" in body:
            raise McError(400, 10001, "recipient and recipients are mutually exclusive")
        request_id = str(uuid.uuid4())
        with self.lock:
            error = self._validate(key, body.get("definitionKey"), body.get("recipient"))
            if error:
                code, message = error
                return JSONResponse(
                    {"requestId": request_id, "errorcode": code, "message": message},
                    status_code=400,
                )
            if self._recent(key) is not None:  # not a second send
                item = self._duplicate(key)
                if self.duplicate_status == 400:
                    return JSONResponse(
                        {"requestId": request_id, **item, "responses": [item]}, status_code=400
                    )
                return JSONResponse(
                    {
                        "requestId": request_id,
                        "errorcode": 109001,
                        "message": "MCMS_UTM_ResponsesHasErrors: 1 subscribers failed to queue "
                        "out of 1",
                        "responses": [item],
                    },
                    status_code=202,
                )
            self._accept(key, body["definitionKey"], body["recipient"], {})
        return JSONResponse(
            {"requestId": request_id, "errorcode": 0, "responses": [{"messageKey": key}]},
            status_code=202,
        )

    async def _send_batch(self, request: Request) -> Response:
        body = _object(await request.body())
        recipients = body.get("recipients")
        if "recipient" in body and "recipients" in body:
            raise McError(400, 10001, "recipient and recipients are mutually exclusive")
        request_id = str(uuid.uuid4())
        if not isinstance(recipients, list) or not recipients:
            raise McError(400, 109102, _tm(109102, "recipients is required"))
        attrs = body.get("attributes") if isinstance(body.get("attributes"), dict) else {}
        with_attrs = bool(attrs) or any(
            isinstance(r, dict) and r.get("attributes") for r in recipients
        )
        if len(recipients) > (500 if with_attrs else 2000):
            raise McError(400, 109101, _tm(109101, "too many recipients"))
        responses: list[dict[str, Any]] = []
        seen: set[str] = set()
        with self.lock:
            for r in recipients:
                key = str(r.get("messageKey") or "") if isinstance(r, dict) else ""
                key = key or base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()[:22]
                error = self._validate(key, body.get("definitionKey"), r)
                if error:
                    responses.append(
                        {"messageKey": key, "errorcode": error[0], "message": error[1]}
                    )
                elif key in seen or self._recent(key) is not None:
                    responses.append(self._duplicate(key))
                else:
                    seen.add(key)
                    self._accept(key, body["definitionKey"], r, attrs)
                    responses.append({"messageKey": key})
        failed = sum("errorcode" in r for r in responses)
        out: dict[str, Any] = {"requestId": request_id, "errorcode": 0, "responses": responses}
        if failed:
            out["errorcode"] = 109001
            out["message"] = (
                f"MCMS_UTM_ResponsesHasErrors: {failed} subscribers failed to queue out of "
                f"{len(responses)}"
            )
        return JSONResponse(out, status_code=202)

    async def _status(self, request: Request) -> Response:
        key = _raw_key(request)
        with self.lock:
            msg = None
            for m in reversed(self.messages):
                if m["message_key"] == key:
                    msg = m
                    break
            if msg is None or self.now() - msg["_accepted_at"] > 3 * 86400:
                raise McError(404, 30003, f"No message found for messageKey {key}")
            self._advance(msg)
            msg = dict(msg)
        out: dict[str, Any] = {
            "requestId": str(uuid.uuid4()),
            "eventCategoryType": msg["status"],
            "timestamp": _cst(msg.get("_done_at", msg["_accepted_at"])),
        }
        if msg["status"] != QUEUED:
            info: dict[str, Any] = {
                "messageKey": key,
                "contactKey": msg["contact_key"],
                "to": msg["to"],
            }
            if msg["status"] == NOT_SENT:
                info["statusCode"] = msg["status_code"]
                info["statusMessage"] = STATUS_MESSAGES.get(msg["status_code"], "NotSent")
            out["compositeId"] = msg["composite_id"]
            out["info"] = info
        return JSONResponse(out)

    # --- control plane ---------------------------------------------------------------------------

    async def _messages(self, request: Request) -> Response:
        if request.method == "DELETE":
            with self.lock:
                self.messages.clear()
            return JSONResponse({"deleted": True})
        return JSONResponse({"messages": self.inbox(request.query_params.get("to"))})

    _OPTIONS = {
        "duplicate_status": int,
        "rate_limit_per_minute": int,
        "status_limit_per_minute": int,
        "blocked": bool,
        "queue_s": float,
        "honor_unsubscribes": bool,
        "token_ttl_s": float,
        "key_window_s": float,
    }

    async def _options(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                body = _object(await request.body())
                with self.lock:
                    for name, value in body.items():
                        if name not in self._OPTIONS:
                            raise ValueError(f"unknown option {name}")
                        setattr(self, name, self._OPTIONS[name](value))
            except (McError, ValueError, TypeError) as exc:
                return JSONResponse({"error": f"bad options: {exc}"}, status_code=400)
        with self.lock:
            return JSONResponse({name: getattr(self, name) for name in self._OPTIONS})

    async def _clock(self, request: Request) -> Response:
        try:
            body = _object(await request.body())
            advance = float(body.get("advance_s", 0))
        except (McError, ValueError, TypeError):
            return JSONResponse({"error": 'expected {"advance_s": seconds}'}, status_code=400)
        with self.lock:
            self.clock_offset += advance
        return JSONResponse({"offset_s": self.clock_offset})

    async def _token_count(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"requests": self.token_requests, "live": len(self.tokens)})


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = json_body(raw)
    except ValueError as exc:
        raise McError(400, 10000, str(exc)) from None
    if not isinstance(body, dict):
        raise McError(400, 10000, "The request body must be a JSON object")
    return body


def _raw_key(request: Request) -> str:
    """The message key as sent: one percent-encoded path segment (Starlette decodes ``%2F``)."""
    raw = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    raw = raw.split("?", 1)[0]
    return unquote(raw[raw.index(MESSAGES) + len(MESSAGES) + 1 :])


def _render(template: str, values: Mapping[str, Any]) -> str:
    """``%%Name%%`` personalization strings (case-insensitive; a missing one renders empty)."""
    lower = {str(k).lower(): v for k, v in values.items()}
    return _ATTR.sub(lambda m: str(lower.get(m.group(1).lower(), "")), template)


def _cst(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).astimezone(_CST).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4]
