"""The Zendesk Support emulator: tickets, comments, users, organizations, search, webhooks.

Follows ``shared/docs/reference/erp-support-email-apis.md`` §2 and its emulator checklist (§2.8):

- plain HTTP under ``/api/v2/`` with ``.json`` paths; zenpy is pointed here with
  ``ZENPY_FORCE_SCHEME=http`` and ``ZENPY_FORCE_NETLOC=127.0.0.1:<port>`` (§2.1);
- auth: ``Basic base64("{email}/token:{token}")`` or ``Bearer <oauth token>``; anything else is
  ``401 {"error":"Couldn't authenticate you"}`` with ``WWW-Authenticate: Basic realm="Web
  Password"``; ``Accept`` is not enforced (zenpy sends ``*/*``);
- singular envelopes (``{"ticket":{}}``) and plural lists; a ticket create/update answers
  ``ticket`` + ``audit`` (zenpy's ``TicketAudit``);
- comments are added only through a ticket create/update (``comment`` with ``public``; omitted
  ``public`` takes the ticket's initial value);
- ``safe_update`` + ``updated_stamp``: a stale stamp is ``409`` (body shape unverified upstream:
  ``UPDATE_CONFLICT`` below is ours);
- cursor pagination when ``page[size]`` is sent (``meta.has_more/after_cursor``, absolute
  ``links.next`` on this host), offset pagination otherwise (``next_page``, ``count``); search is
  offset-only, 100 a page, 1,000 results at most (past that ``422 {"error":"invalid"}``);
- rate limits: a per-minute account budget and the per-ticket update budget (30 per 10 minutes);
  over either, ``429`` with ``Retry-After`` (integer seconds) and ``X-Rate-Limit(-Remaining)``;
- ``Idempotency-Key`` on ticket creation (``x-idempotency-lookup: miss|hit``; the same key with
  other parameters is ``400 IdempotentRequestError``); updates have no key (§2.6);
- webhooks (event-subscribed envelope: ``type, account_id, id, time, zendesk_event_version,
  subject, detail, event``) on ticket creation and on each added comment, signed
  ``X-Zendesk-Webhook-Signature = base64(HMAC-SHA256(secret, timestamp + body))`` with
  ``X-Zendesk-Webhook-Signature-Timestamp`` (ISO-8601), fresh on every attempt (§2.4).

Control routes (besides the framework's ``/_sandbox``): ``POST /_sandbox/zendesk/tickets`` (a
customer opens a ticket through the web form: created and its webhook sent),
``POST /_sandbox/zendesk/limits`` (``{"per_minute": N, "per_ticket_updates": M}``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import shlex
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Emulator, WebhookTarget, json_body

AUTH_ERROR = {"error": "Couldn't authenticate you"}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
#: Zendesk documents a 409 for a stale ``updated_stamp`` but not its body: ours, configurable
UPDATE_CONFLICT = {
    "error": "UpdateConflict",
    "description": "The ticket was updated since updated_stamp",
}
RATE_LIMITED = {"error": "TooManyRequests", "description": "Rate limit exceeded"}
SEARCH_CAP = 1000
#: the sample secret of Zendesk's "verifying" page (decodes to "this_secret_is_for_testing_only")
DOC_SIGNING_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="  # noqa: S105 - public sample
PAGE_MAX = 100
OFFSET_PAGES_MAX = 100
TICKET_UPDATE_WINDOW_S = 600.0
EVENT_VERSION = "2022-11-06"

Handler = Callable[[Request], Any]


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``base64(HMAC-SHA256(secret, timestamp + body))``, the secret's UTF-8 bytes as the key."""
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _err(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> Response:
    return JSONResponse(dict(body), status_code=status, headers=dict(headers or {}))


class ZendeskError(Exception):
    def __init__(
        self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
    ):
        super().__init__(body.get("error"))
        self.status, self.body, self.headers = status, dict(body), dict(headers or {})

    def response(self) -> Response:
        return _err(self.status, self.body, self.headers)


def _invalid(field: str, description: str) -> ZendeskError:
    return ZendeskError(
        422,
        {
            "error": "RecordInvalid",
            "description": "Record validation errors",
            "details": {field: [{"description": description}]},
        },
    )


class ZendeskEmulator(Emulator):
    """One Zendesk account (``subdomain``). ``agents`` maps an agent's email to its API token;
    ``oauth_tokens`` maps a bearer token to ``(email, scopes)``. Both users exist as agents."""

    name = "zendesk"

    def __init__(
        self,
        agents: Mapping[str, str] | None = None,
        oauth_tokens: Mapping[str, tuple[str, list[str]]] | None = None,
        webhook_targets: Iterable[WebhookTarget | str] = (),
        signing_secret: str = DOC_SIGNING_SECRET,
        subdomain: str = "acme",
        per_minute: int = 700,
        per_ticket_updates: int = 30,
    ) -> None:
        self.agent_tokens = dict(agents or {"agent@revbridge.test": "sandbox-token"})
        self.oauth_tokens = dict(oauth_tokens or {})
        self.signing_secret = signing_secret
        self.subdomain = subdomain
        self.per_minute = per_minute
        self.per_ticket_updates = per_ticket_updates
        self.account_id = 9_000_001
        super().__init__([WebhookTarget(t) if isinstance(t, str) else t for t in webhook_targets])

    # --- state -------------------------------------------------------------------------------------

    def reset_state(self) -> None:
        self.users: dict[int, dict[str, Any]] = {}
        self.organizations: dict[int, dict[str, Any]] = {}
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = {}
        self.idempotency: dict[str, tuple[str, dict[str, Any]]] = {}
        self.requests_at: deque[float] = deque()
        self.ticket_updates_at: dict[int, deque[float]] = {}
        #: every webhook event emitted since the last reset (tests, debugging)
        self.events: list[dict[str, Any]] = []
        self._ids = {
            "user": 360_000_100,
            "organization": 360_000_500,
            "ticket": 1000,
            "other": 9_100_000,
        }
        self._clock = 0.0
        for email in [*self.agent_tokens, *(e for e, _ in self.oauth_tokens.values())]:
            if not self._user_by_email(email):
                self._add_user({"name": email.split("@")[0], "email": email, "role": "admin"})

    def _id(self, kind: str) -> int:
        self._ids[kind] += 1
        return self._ids[kind]

    def _now(self) -> float:
        """Whole seconds (Zendesk's timestamps), strictly increasing, so every update changes
        ``updated_at`` (what ``safe_update`` compares)."""
        now = float(int(time.time()))
        self._clock = max(now, self._clock + 1.0)
        return self._clock

    def _user_by_email(self, email: str) -> dict[str, Any] | None:
        return next(
            (u for u in self.users.values() if (u.get("email") or "").lower() == email.lower()),
            None,
        )

    def _add_user(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        uid = int(spec.get("id") or self._id("user"))
        now = _iso(time.time())
        user = {
            "id": uid,
            "url": f"/api/v2/users/{uid}.json",
            "name": spec.get("name") or (spec.get("email") or "user").split("@")[0],
            "email": spec.get("email"),
            "role": spec.get("role", "end-user"),
            "organization_id": spec.get("organization_id"),
            "external_id": spec.get("external_id"),
            "active": True,
            "created_at": now,
            "updated_at": now,
            "tags": list(spec.get("tags", [])),
            "user_fields": dict(spec.get("user_fields", {})),
        }
        self.users[uid] = user
        return user

    def _add_org(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        oid = int(spec.get("id") or self._id("organization"))
        now = _iso(time.time())
        org = {
            "id": oid,
            "url": f"/api/v2/organizations/{oid}.json",
            "name": spec["name"],
            "external_id": spec.get("external_id"),
            "domain_names": list(spec.get("domain_names", [])),
            "organization_fields": dict(spec.get("organization_fields", {})),
            "tags": list(spec.get("tags", [])),
            "created_at": now,
            "updated_at": now,
        }
        self.organizations[oid] = org
        return org

    def _create_ticket(
        self, spec: Mapping[str, Any], author_id: int | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new ticket and its creation audit; raises :class:`ZendeskError` on a bad record."""
        requester_id = spec.get("requester_id")
        if requester_id is None and isinstance(spec.get("requester"), Mapping):
            req = spec["requester"]
            if not req.get("email"):
                raise _invalid("requester", "Requester email is required")
            requester = self._user_by_email(req["email"]) or self._add_user(
                {"name": req.get("name"), "email": req["email"]}
            )
            requester_id = requester["id"]
        if requester_id is None:
            requester_id = author_id
        if requester_id not in self.users:
            raise _invalid("requester", "Requester is invalid")
        comment = spec.get("comment") if isinstance(spec.get("comment"), Mapping) else {}
        description = comment.get("body") or spec.get("description") or ""
        if not description:
            raise _invalid("description", "Description: cannot be blank")
        tid = int(spec.get("id") or self._id("ticket"))
        now = self._now()
        org_id = spec.get("organization_id", self.users[requester_id].get("organization_id"))
        public = comment.get("public", True) is not False
        ticket = {
            "id": tid,
            "url": f"/api/v2/tickets/{tid}.json",
            "subject": spec.get("subject") or description[:60],
            "raw_subject": spec.get("subject") or description[:60],
            "description": description,
            "status": spec.get("status", "new"),
            "priority": spec.get("priority"),
            "type": spec.get("type"),
            "requester_id": requester_id,
            "submitter_id": author_id or requester_id,
            "assignee_id": None,
            "organization_id": org_id,
            "tags": list(spec.get("tags", [])),
            "custom_fields": list(spec.get("custom_fields", [])),
            "fields": list(spec.get("custom_fields", [])),
            "via": {"channel": spec.get("via_channel", "api")},
            "brand_id": 1,
            "ticket_form_id": None,
            "custom_status_id": 1,
            "created_at": _iso(now),
            "updated_at": _iso(now),
            # the doc rule: the first comment's ``public`` is the default for later ones
            "_initial_public": public,
        }
        self.tickets[tid] = ticket
        self.comments[tid] = []
        audit = self._audit(ticket, author_id or requester_id, [{"type": "Create"}])
        self._add_comment(ticket, audit, description, public, author_id or requester_id)
        return ticket, audit

    def _audit(
        self, ticket: dict[str, Any], author_id: int, events: list[dict[str, Any]]
    ) -> dict[str, Any]:
        return {
            "id": self._id("other"),
            "ticket_id": ticket["id"],
            "created_at": ticket["updated_at"],
            "author_id": author_id,
            "events": events,
        }

    def _add_comment(
        self, ticket: dict[str, Any], audit: dict[str, Any], body: str, public: bool, author_id: int
    ) -> dict[str, Any]:
        comment = {
            "id": self._id("other"),
            "type": "Comment",
            "author_id": author_id,
            "body": body,
            "html_body": f'<div class="zd-comment"><p>{body}</p></div>',
            "plain_body": body,
            "public": public,
            "attachments": [],
            "audit_id": audit["id"],
            "via": {"channel": "api"},
            "created_at": ticket["updated_at"],
        }
        self.comments[ticket["id"]].append(comment)
        audit["events"].append(
            {
                "id": comment["id"],
                "type": "Comment",
                "body": body,
                "public": public,
                "author_id": author_id,
            }
        )
        return comment

    @staticmethod
    def public(record: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in record.items() if not k.startswith("_")}

    # --- seed and control ---------------------------------------------------------------------

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Without webhooks. Format::

        {"organizations": [{"id"?, "name", "external_id"?}],
         "users": [{"id"?, "name", "email", "organization_id"?, "role"?}],
         "tickets": [{"id"?, "subject", "description", "requester_id" | "requester": {...},
                      "organization_id"?, "status"?}]}
        """
        orgs = [self._add_org(o) for o in data.get("organizations", [])]
        users = [self._add_user(u) for u in data.get("users", [])]
        tickets = []
        for t in data.get("tickets", []):
            try:
                tickets.append(self._create_ticket(t, None)[0])
            except ZendeskError as exc:
                raise ValueError(json.dumps(exc.body)) from None
        return {
            "organizations": [o["id"] for o in orgs],
            "users": [u["id"] for u in users],
            "tickets": [t["id"] for t in tickets],
        }

    async def open_ticket(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """A customer opens a ticket (web form, email): created, and ``ticket.created`` sent."""
        with self.lock:
            ticket, _ = self._create_ticket({**spec, "via_channel": "web"}, None)
        await self._emit("zen:event-type:ticket.created", ticket, {})
        return self.public(ticket)

    async def _emit(self, kind: str, ticket: Mapping[str, Any], event: Mapping[str, Any]) -> None:
        envelope = {
            "type": kind,
            "account_id": self.account_id,
            "id": str(uuid.uuid4()),
            "time": _iso(time.time()),
            "zendesk_event_version": EVENT_VERSION,
            "subject": f"zen:ticket:{ticket['id']}",
            "detail": {
                "id": str(ticket["id"]),
                "requester_id": str(ticket["requester_id"]),
                "organization_id": str(ticket["organization_id"])
                if ticket["organization_id"]
                else None,
                "status": str(ticket["status"]).upper(),
                "subject": ticket["subject"],
                "created_at": ticket["created_at"],
                "updated_at": ticket["updated_at"],
                "via": ticket["via"]["channel"],
            },
            "event": dict(event),
        }
        self.events.append(envelope)
        body = json.dumps(envelope, separators=(",", ":")).encode()
        await self.emit_webhook(
            body,
            headers={
                "User-Agent": "Zendesk Webhook",
                "X-Zendesk-Webhook-Id": "01HZSANDBOXWEBHOOK000000000",
            },
            event_id=envelope["id"],
            sign=self._sign,
        )

    def _sign(self, body: bytes, url: str) -> Mapping[str, str]:
        ts = _iso(time.time())
        return {
            "X-Zendesk-Webhook-Signature": signature(self.signing_secret, ts, body),
            "X-Zendesk-Webhook-Signature-Timestamp": ts,
        }

    def error_response(self, status: int, message: str) -> Response:
        if status == 401:
            return _err(401, AUTH_ERROR, {"WWW-Authenticate": 'Basic realm="Web Password"'})
        if status == 404:
            return _err(404, NOT_FOUND)
        if status == 429:
            return _err(429, RATE_LIMITED)
        if status >= 500:
            # API-level errors are not always JSON (reference §2.5)
            return Response(f"{status} {message}", status_code=status, media_type="text/plain")
        return _err(status, {"error": "InvalidRequest", "description": message})

    # --- the vendor surface -------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        api = "/api/v2"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/users/me.json", self._me),
            ("GET", "/users/{id:int}.json", self._user),
            ("GET", "/organizations/{id:int}.json", self._org),
            ("GET", "/tickets.json", self._tickets),
            ("POST", "/tickets.json", self._ticket_create),
            ("GET", "/tickets/{id:int}.json", self._ticket),
            ("PUT", "/tickets/{id:int}.json", self._ticket_update),
            ("GET", "/tickets/{id:int}/comments.json", self._comments),
            ("GET", "/search.json", self._search),
            ("GET", "/oauth/tokens/current.json", self._current_token),
        ]
        routes: list[BaseRoute] = [
            Route(api + path, self._guard(handler), methods=[method])
            for method, path, handler in table
        ]
        routes += [
            Route("/_sandbox/zendesk/tickets", self._control_open, methods=["POST"]),
            Route("/_sandbox/zendesk/limits", self._control_limits, methods=["POST"]),
            Route("/_sandbox/zendesk/events", self._control_events, methods=["GET"]),
        ]
        return routes

    def _guard(self, handler: Handler) -> Callable[[Request], Any]:
        """Auth, then the account's rate limit, then the handler; a :class:`ZendeskError` becomes
        its response. Every answer carries the rate-limit headers."""

        async def endpoint(request: Request) -> Response:
            try:
                request.state.user = self._authenticate(request.headers.get("authorization"))
                remaining = self._spend()
                resp = await handler(request)
            except ZendeskError as exc:
                resp = exc.response()
                remaining = max(0, self.per_minute - len(self.requests_at))
            except (TypeError, AttributeError, KeyError, ValueError) as exc:
                # a body of the right envelope but wrong shapes inside: Zendesk answers 400
                resp = _err(400, {"error": "InvalidValue", "description": type(exc).__name__})
                remaining = max(0, self.per_minute - len(self.requests_at))
            resp.headers["X-Rate-Limit"] = str(self.per_minute)
            resp.headers["X-Rate-Limit-Remaining"] = str(remaining)
            return resp

        return endpoint

    def _authenticate(self, header: str | None) -> dict[str, Any]:
        denied = ZendeskError(401, AUTH_ERROR, {"WWW-Authenticate": 'Basic realm="Web Password"'})
        if not header:
            raise denied
        scheme, _, value = header.partition(" ")
        email: str | None = None
        if scheme == "Basic":
            try:
                user, _, secret = (
                    base64.b64decode(value.strip(), validate=True).decode().partition(":")
                )
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise denied from None
            if not user.endswith("/token"):
                raise denied  # passwords are not accepted here (deprecated upstream)
            email = user[: -len("/token")]
            expected = self.agent_tokens.get(email)
            if expected is None or not hmac.compare_digest(expected.encode(), secret.encode()):
                raise denied
        elif scheme == "Bearer":
            found = self.oauth_tokens.get(value.strip())
            if found is None:
                raise ZendeskError(
                    401,
                    {
                        "error": "invalid_token",
                        "error_description": "The access token provided is expired, revoked, "
                        "malformed or invalid for other reasons.",
                    },
                )
            email = found[0]
        else:
            raise denied
        with self.lock:
            user = self._user_by_email(email)
        if user is None:
            raise denied
        return user

    def _spend(self) -> int:
        now = time.monotonic()
        with self.lock:
            while self.requests_at and now - self.requests_at[0] >= 60.0:
                self.requests_at.popleft()
            if len(self.requests_at) >= self.per_minute:
                wait = max(1, int(60.0 - (now - self.requests_at[0])) + 1)
                raise ZendeskError(429, RATE_LIMITED, {"Retry-After": str(wait)})
            self.requests_at.append(now)
            return self.per_minute - len(self.requests_at)

    def _spend_ticket_update(self, ticket_id: int) -> None:
        now = time.monotonic()
        window = self.ticket_updates_at.setdefault(ticket_id, deque())
        while window and now - window[0] >= TICKET_UPDATE_WINDOW_S:
            window.popleft()
        if len(window) >= self.per_ticket_updates:
            wait = max(1, int(TICKET_UPDATE_WINDOW_S - (now - window[0])) + 1)
            raise ZendeskError(429, RATE_LIMITED, {"Retry-After": str(wait)})
        window.append(now)

    # --- handlers ------------------------------------------------------------------------------

    async def _me(self, request: Request) -> Response:
        return JSONResponse({"user": request.state.user})

    async def _current_token(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        if not header.startswith("Bearer "):
            raise ZendeskError(404, NOT_FOUND)  # an API token is not an OAuth token
        _, scopes = self.oauth_tokens[header[7:].strip()]
        return JSONResponse(
            {"token": {"id": 1, "user_id": request.state.user["id"], "scopes": list(scopes)}}
        )

    async def _user(self, request: Request) -> Response:
        with self.lock:
            user = self.users.get(request.path_params["id"])
        if user is None:
            raise ZendeskError(404, NOT_FOUND)
        return JSONResponse({"user": user})

    async def _org(self, request: Request) -> Response:
        with self.lock:
            org = self.organizations.get(request.path_params["id"])
        if org is None:
            raise ZendeskError(404, NOT_FOUND)
        return JSONResponse({"organization": org})

    async def _ticket(self, request: Request) -> Response:
        with self.lock:
            ticket = self.tickets.get(request.path_params["id"])
        if ticket is None:
            raise ZendeskError(404, NOT_FOUND)
        return JSONResponse({"ticket": self.public(ticket)})

    async def _tickets(self, request: Request) -> Response:
        with self.lock:
            rows = [self.public(t) for t in sorted(self.tickets.values(), key=lambda t: t["id"])]
        return self._page(request, "tickets", rows)

    async def _comments(self, request: Request) -> Response:
        with self.lock:
            if request.path_params["id"] not in self.tickets:
                raise ZendeskError(404, NOT_FOUND)
            rows = list(self.comments[request.path_params["id"]])
        return self._page(request, "comments", rows)

    async def _ticket_create(self, request: Request) -> Response:
        raw = await request.body()
        payload = self._payload(raw, "ticket")
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        with self.lock:
            if key and key in self.idempotency:
                seen, body = self.idempotency[key]
                if seen != digest:
                    raise ZendeskError(
                        400,
                        {
                            "error": "IdempotentRequestError",
                            "description": "Request parameters do not match the original request",
                        },
                    )
                return JSONResponse(body, status_code=201, headers={"x-idempotency-lookup": "hit"})
            ticket, audit = self._create_ticket(payload, request.state.user["id"])
            body = {"ticket": self.public(ticket), "audit": audit}
            if key:
                self.idempotency[key] = (digest, body)
        await self._emit("zen:event-type:ticket.created", ticket, {})
        headers = {"x-idempotency-lookup": "miss"} if key else {}
        return JSONResponse(body, status_code=201, headers=headers)

    async def _ticket_update(self, request: Request) -> Response:
        payload = self._payload(await request.body(), "ticket")
        tid = request.path_params["id"]
        author = request.state.user
        with self.lock:
            ticket = self.tickets.get(tid)
            if ticket is None:
                raise ZendeskError(404, NOT_FOUND)
            if payload.get("safe_update") and payload.get("updated_stamp") != ticket["updated_at"]:
                raise ZendeskError(409, UPDATE_CONFLICT)
            if ticket["status"] == "closed":
                raise _invalid("status", "Status closed prevents ticket update")
            self._spend_ticket_update(tid)
            events: list[dict[str, Any]] = []
            for field in ("subject", "status", "priority", "type", "tags", "assignee_id"):
                if field in payload:
                    events.append(
                        {
                            "type": "Change",
                            "field_name": field,
                            "value": payload[field],
                            "previous_value": ticket.get(field),
                        }
                    )
                    ticket[field] = payload[field]
            for cf in payload.get("custom_fields") or []:
                merged = [f for f in ticket["custom_fields"] if f.get("id") != cf.get("id")]
                ticket["custom_fields"] = ticket["fields"] = [
                    *merged,
                    {"id": cf.get("id"), "value": cf.get("value")},
                ]
            ticket["updated_at"] = _iso(self._now())
            audit = self._audit(ticket, author["id"], events)
            comment = None
            spec = payload.get("comment")
            if isinstance(spec, Mapping) and (spec.get("body") or spec.get("html_body")):
                public = spec.get("public", ticket["_initial_public"]) is not False
                comment = self._add_comment(
                    ticket,
                    audit,
                    str(spec.get("body") or spec.get("html_body")),
                    public,
                    author["id"],
                )
            snapshot = self.public(ticket)
        if comment is not None:
            await self._emit(
                "zen:event-type:ticket.comment_added",
                ticket,
                {
                    "comment": {
                        "id": str(comment["id"]),
                        "body": comment["body"],
                        "is_public": comment["public"],
                        "author": {
                            "id": str(author["id"]),
                            "is_staff": True,
                            "name": author["name"],
                        },
                    }
                },
            )
        return JSONResponse({"ticket": snapshot, "audit": audit})

    @staticmethod
    def _payload(raw: bytes, envelope: str) -> dict[str, Any]:
        try:
            body = json_body(raw)
        except ValueError as exc:
            raise ZendeskError(400, {"error": "InvalidJSON", "description": str(exc)}) from None
        if not isinstance(body, dict) or not isinstance(body.get(envelope), dict):
            raise ZendeskError(
                400, {"error": "InvalidEndpoint", "description": f"Expected a {envelope} object"}
            )
        return body[envelope]

    # --- pagination ------------------------------------------------------------------------------

    def _page(self, request: Request, key: str, rows: list[dict[str, Any]]) -> Response:
        q = request.query_params
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        if "page[size]" in q:
            size = self._int(q.get("page[size]"), "page[size]")
            if not 1 <= size <= PAGE_MAX:
                raise ZendeskError(
                    400,
                    {
                        "error": "InvalidPaginationParameter",
                        "description": f"page[size] must be between 1 and {PAGE_MAX}",
                    },
                )
            start = self._cursor(q.get("page[after]"))
            chunk = rows[start : start + size]
            end = start + len(chunk)
            has_more = end < len(rows)
            after = self._encode_cursor(end) if chunk else None
            before = self._encode_cursor(start) if chunk else None
            return JSONResponse(
                {
                    key: chunk,
                    "meta": {"has_more": has_more, "after_cursor": after, "before_cursor": before},
                    "links": {
                        "next": f"{base}?page%5Bafter%5D={after}&page%5Bsize%5D={size}"
                        if has_more
                        else None,
                        "prev": None,
                    },
                }
            )
        page, per_page = self._offset(q)
        if page > OFFSET_PAGES_MAX:
            raise ZendeskError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": "Offset pagination is limited to 100 pages: use cursor pagination",
                },
            )
        return JSONResponse(self._offset_body(base, q, key, rows, page, per_page))

    def _offset(self, q: Mapping[str, str]) -> tuple[int, int]:
        page = self._int(q.get("page", "1"), "page")
        per_page = self._int(q.get("per_page", str(PAGE_MAX)), "per_page")
        if page < 1 or not 1 <= per_page <= PAGE_MAX:
            raise ZendeskError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": "page and per_page must be positive; per_page at most 100",
                },
            )
        return page, per_page

    @staticmethod
    def _offset_body(
        base: str,
        q: Mapping[str, str],
        key: str,
        rows: list[dict[str, Any]],
        page: int,
        per_page: int,
    ) -> dict[str, Any]:
        start = (page - 1) * per_page
        keep = {k: v for k, v in q.items() if k not in ("page", "per_page")}

        def link(n: int) -> str:
            from urllib.parse import urlencode

            return f"{base}?{urlencode({**keep, 'page': n, 'per_page': per_page})}"

        return {
            key: rows[start : start + per_page],
            "next_page": link(page + 1) if start + per_page < len(rows) else None,
            "previous_page": link(page - 1) if page > 1 else None,
            "count": len(rows),
        }

    @staticmethod
    def _int(value: str | None, name: str) -> int:
        try:
            return int(value or "")
        except ValueError:
            raise ZendeskError(
                400,
                {
                    "error": "InvalidPaginationParameter",
                    "description": f"{name} must be an integer",
                },
            ) from None

    @staticmethod
    def _encode_cursor(offset: int) -> str:
        return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")

    @staticmethod
    def _cursor(value: str | None) -> int:
        if not value:
            return 0
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
            if raw.startswith("o:"):
                return int(raw[2:])
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
        raise ZendeskError(
            400, {"error": "InvalidPaginationParameter", "description": "Invalid cursor"}
        )

    # --- search ------------------------------------------------------------------------------------

    async def _search(self, request: Request) -> Response:
        """``query`` in Zendesk's syntax: ``type:ticket|user|organization``, ``field:value``,
        ``field>value`` / ``field<value`` (dates, ids), quoted phrases, free words (all ANDed)."""
        q = request.query_params
        query = q.get("query", "")
        wanted = q.get("filter[type]")
        try:
            terms = shlex.split(query)
        except ValueError:
            raise ZendeskError(
                400, {"error": "invalid", "description": "Invalid search: unbalanced quotes"}
            ) from None
        conditions: list[tuple[str, str, str]] = []
        words: list[str] = []
        for term in terms:
            m = re.fullmatch(r"([a-z_]+)([:<>])(.+)", term)
            if not m:
                words.append(term.lower())
            elif m.group(1) == "type":
                wanted = m.group(3)
            else:
                conditions.append((m.group(1), m.group(2), m.group(3)))
        with self.lock:
            pools = {
                "ticket": [self.public(t) for t in self.tickets.values()],
                "user": list(self.users.values()),
                "organization": list(self.organizations.values()),
            }
            kinds = [wanted] if wanted else list(pools)
            if any(k not in pools for k in kinds):
                raise ZendeskError(
                    400, {"error": "invalid", "description": f"Unsupported type {wanted}"}
                )
            results = [
                {**r, "result_type": kind}
                for kind in kinds
                for r in sorted(pools[kind], key=lambda r: r["id"])
                if self._matches(r, conditions, words)
            ]
        page, per_page = self._offset(q)
        if page * per_page > SEARCH_CAP:
            raise ZendeskError(
                422,
                {"error": "invalid", "description": f"Search results are limited to {SEARCH_CAP}"},
            )
        base = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        body = self._offset_body(base, q, "results", results[:SEARCH_CAP], page, per_page)
        body["count"] = len(results)
        body["facets"] = None
        return JSONResponse(body)

    def _matches(
        self, record: Mapping[str, Any], conditions: list[tuple[str, str, str]], words: list[str]
    ) -> bool:
        for field, op, value in conditions:
            if field in ("created", "updated"):
                have = str(record.get(f"{field}_at") or "")[: len(value)]
                if not (
                    have > value if op == ">" else have < value if op == "<" else have == value
                ):
                    return False
                continue
            if field == "organization" and value.isdigit():
                field = "organization_id"
            if field == "requester" and "@" in value:
                user = self.users.get(record.get("requester_id") or -1) or {}
                if (user.get("email") or "").lower() != value.lower():
                    return False
                continue
            have = record.get(field)
            if isinstance(have, list):
                if value.lower() not in [str(x).lower() for x in have]:
                    return False
            elif have is None or str(have).lower() != value.lower():
                return False
        text = " ".join(
            str(record.get(k) or "") for k in ("subject", "description", "name", "email")
        ).lower()
        return all(w in text for w in words)

    # --- control ---------------------------------------------------------------------------------

    async def _control_open(self, request: Request) -> Response:
        try:
            spec = json_body(await request.body())
            return JSONResponse({"ticket": await self.open_ticket(spec)}, status_code=201)
        except ZendeskError as exc:
            return exc.response()
        except (ValueError, TypeError, KeyError) as exc:
            return JSONResponse({"error": f"bad ticket: {exc}"[:300]}, status_code=400)

    async def _control_limits(self, request: Request) -> Response:
        spec = json_body(await request.body()) or {}
        with self.lock:
            self.per_minute = int(spec.get("per_minute", self.per_minute))
            self.per_ticket_updates = int(spec.get("per_ticket_updates", self.per_ticket_updates))
            self.requests_at.clear()
            self.ticket_updates_at.clear()
        return JSONResponse(
            {"per_minute": self.per_minute, "per_ticket_updates": self.per_ticket_updates}
        )

    async def _control_events(self, request: Request) -> Response:
        return JSONResponse({"events": list(self.events)})
