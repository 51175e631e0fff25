"""``RecurlyEmulator``: a stateful Recurly site speaking API v2021-02-25 (JSON over HTTP).

The official client has no base-URL option; point it here by swapping its connection
(billing-apis.md §4a)::

    client = recurly.Client(API_KEY)
    client._BaseClient__conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

What the client demands of a server, and this one does: ``Content-Type: application/json`` and an
``X-Request-Id`` on every answer (errors included), timestamps without fractional seconds, list
pages ``{"object": "list", "has_more", "next", "data"}`` whose ``next`` is a *path* the client
requests verbatim, ``HEAD`` on lists answering ``Recurly-Total-Records``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.framework import Emulator, WebhookTarget

from .errors import RecurlyError, bad_request, for_status, not_found, validation
from .store import Store, iso, new_id, parse_time, public, require_object

log = logging.getLogger("sandbox.recurly")

API_VERSION = "v2021-02-25"
ACCEPT = f"application/vnd.recurly.{API_VERSION}"
#: Accept values Recurly answers for (the version alone, or with a +json / +xml suffix)
_ACCEPTED = {ACCEPT, ACCEPT + "+json", ACCEPT + "; charset=utf-8", ACCEPT + "+json; charset=utf-8"}
SIGNATURE_HEADER = "recurly-signature"

#: custom fields RevBridge's install guide asks the site admin to define
DEFAULT_CUSTOM_FIELDS: tuple[tuple[str, str], ...] = (
    ("account", "crm"),
    ("account", "crm_account_id"),
    ("subscription", "crm"),
    ("subscription", "crm_opportunity_id"),
    ("subscription", "revbridge_key"),
    ("plan", "upgrade_to"),  # usage-based expansion: the next tier's plan code
)

Handler = Callable[["Call"], Any]


class Call:
    """One vendor request as a handler sees it."""

    def __init__(self, request: Request, body: Any, query: dict[str, str]) -> None:
        self.request = request
        self.path = dict(request.path_params)
        self.body = body
        self.query = query

    def json(self) -> dict[str, Any]:
        return require_object(self.body)


class RecurlyEmulator(Emulator):
    """Recurly API v2021-02-25 at ``/`` plus scenario controls under ``/_sandbox/recurly``.

    - ``api_key``: the private API key accepted (HTTP Basic username, empty password).
    - ``webhook_secrets``: the endpoint's signing secret(s); during a rotation Recurly signs
      with each and sends every signature in one ``recurly-signature`` header.
    - ``rate_limit_per_minute`` / ``rate_limit_window_s``: Recurly's documented limits are per
      minute over a sliding 5-minute window (sandbox sites: 400/min, every request counts;
      production: 1,000/min, GETs only, ``count_writes=False``). ``X-RateLimit-Limit`` is the
      window's allowance, ``-Remaining`` what is left of it, ``-Reset`` (epoch seconds) when the
      oldest counted request leaves the window; over it, 429 ``rate_limited``.
    - ``duplicate_deliveries``: deliver every notification twice (Recurly warns that
      notifications may arrive more than once and out of order).

    Idempotency, as Recurly documents it: there is no idempotency header in v2021-02-25 (one
    sent is recorded in the ledger and otherwise ignored). Natural keys protect creates: an
    account ``code``, a plan ``code`` or a coupon ``code`` that exists answers 422
    ``validation`` "has already been taken", so a client looks up (``code-<code>``) before or
    after creating. Requests are served one at a time, so ``simultaneous_request`` never occurs.
    """

    name = "recurly"
    webhook_retry_delays = (0.2, 0.5, 1.0, 2.0)

    def __init__(
        self,
        api_key: str = "recurly_test_key",
        webhook_secrets: Sequence[str] = ("recurly_webhook_secret",),
        webhook_targets: Iterable[WebhookTarget] = (),
        rate_limit_per_minute: int | None = 400,
        rate_limit_window_s: float = 300.0,
        count_writes: bool = True,
        duplicate_deliveries: bool = False,
        site_id: str = "qc326l1hl8k9",
        clock: Callable[[], float] = time.time,
        custom_fields: Iterable[tuple[str, str]] = DEFAULT_CUSTOM_FIELDS,
    ) -> None:
        self.api_key = api_key
        self.webhook_secrets = list(webhook_secrets)
        self._rate_default = (rate_limit_per_minute, rate_limit_window_s, count_writes)
        self.duplicate_deliveries = duplicate_deliveries
        self.site_id = site_id
        self.clock = clock
        self._custom_fields_default = list(custom_fields)
        super().__init__(webhook_targets)

    # --- framework hooks ---------------------------------------------------------------------

    def reset_state(self) -> None:
        self.store = Store(clock=self.clock)
        for related, name in self._custom_fields_default:
            self.store.define_custom_field(related, name)
        self.rate_limit_per_minute, self.rate_limit_window_s, self.count_writes = self._rate_default

    def error_response(self, status: int, message: str) -> Response:
        headers = {}
        if status == 429:  # an injected "slow down" says when it lifts, as Recurly's does
            reset = math.ceil(self.clock() + 60)
            headers = {
                "X-RateLimit-Limit": "0",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(reset),
            }
        return self._error(for_status(status, message), headers)

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from .seeding import seed

        out = seed(self, data)
        self.store.pending.clear()  # seeding sends no notifications
        return out

    def vendor_routes(self) -> list[BaseRoute]:
        r = self._route
        routes = [
            r("GET", "/accounts", self._list_accounts),
            r("POST", "/accounts", self._create_account, 201),
            r("GET", "/accounts/{account_id}", self._get_account),
            r("PUT", "/accounts/{account_id}", self._update_account),
            r("DELETE", "/accounts/{account_id}", self._deactivate_account),
            r("PUT", "/accounts/{account_id}/reactivate", self._reactivate_account),
            r("GET", "/accounts/{account_id}/balance", self._balance),
            r("GET", "/accounts/{account_id}/billing_info", self._get_billing_info),
            r("PUT", "/accounts/{account_id}/billing_info", self._put_billing_info),
            r("DELETE", "/accounts/{account_id}/billing_info", self._delete_billing_info, 204),
            r("GET", "/accounts/{account_id}/subscriptions", self._account_subscriptions),
            r("GET", "/accounts/{account_id}/invoices", self._account_invoices),
            r("POST", "/accounts/{account_id}/invoices", self._invoice_pending, 201),
            r("GET", "/accounts/{account_id}/transactions", self._account_transactions),
            r("GET", "/accounts/{account_id}/line_items", self._account_line_items),
            r("POST", "/accounts/{account_id}/line_items", self._create_line_item, 201),
            r("GET", "/accounts/{account_id}/notes", self._list_notes),
            r("POST", "/accounts/{account_id}/notes", self._create_note, 201),
            r("GET", "/accounts/{account_id}/notes/{note_id}", self._get_note),
            r("DELETE", "/accounts/{account_id}/notes/{note_id}", self._delete_note, 204),
            r("GET", "/accounts/{account_id}/coupon_redemptions", self._account_redemptions),
            r("GET", "/accounts/{account_id}/coupon_redemptions/active", self._active_redemptions),
            r("POST", "/accounts/{account_id}/coupon_redemptions/active", self._redeem, 201),
            r("DELETE", "/accounts/{account_id}/coupon_redemptions/active", self._unredeem),
            r("GET", "/plans", self._list_plans),
            r("POST", "/plans", self._create_plan, 201),
            r("GET", "/plans/{plan_id}", self._get_plan),
            r("GET", "/plans/{plan_id}/add_ons", self._list_add_ons),
            r("POST", "/plans/{plan_id}/add_ons", self._create_add_on, 201),
            r("GET", "/plans/{plan_id}/add_ons/{add_on_id}", self._get_add_on),
            r("GET", "/coupons", self._list_coupons),
            r("POST", "/coupons", self._create_coupon, 201),
            r("GET", "/coupons/{coupon_id}", self._get_coupon),
            r("DELETE", "/coupons/{coupon_id}", self._expire_coupon),
            r("GET", "/subscriptions", self._list_subscriptions),
            r("POST", "/subscriptions", self._create_subscription, 201),
            r("GET", "/subscriptions/{subscription_id}", self._get_subscription),
            r("PUT", "/subscriptions/{subscription_id}", self._update_subscription),
            r("DELETE", "/subscriptions/{subscription_id}", self._terminate),
            r("PUT", "/subscriptions/{subscription_id}/cancel", self._cancel),
            r("PUT", "/subscriptions/{subscription_id}/reactivate", self._reactivate),
            r("PUT", "/subscriptions/{subscription_id}/pause", self._pause),
            r("PUT", "/subscriptions/{subscription_id}/resume", self._resume),
            r("GET", "/subscriptions/{subscription_id}/change", self._get_change),
            r("POST", "/subscriptions/{subscription_id}/change", self._change, 201),
            r("DELETE", "/subscriptions/{subscription_id}/change", self._delete_change, 204),
            r("GET", "/subscriptions/{subscription_id}/invoices", self._subscription_invoices),
            r("GET", "/subscriptions/{subscription_id}/line_items", self._sub_line_items),
            r(
                "GET",
                "/subscriptions/{subscription_id}/coupon_redemptions",
                self._subscription_redemptions,
            ),
            r(
                "GET",
                "/subscriptions/{subscription_id}/add_ons/{add_on_id}/usage",
                self._list_usage,
            ),
            r(
                "POST",
                "/subscriptions/{subscription_id}/add_ons/{add_on_id}/usage",
                self._create_usage,
                201,
            ),
            r("GET", "/usage/{usage_id}", self._get_usage),
            r("GET", "/invoices", self._list_invoices),
            r("GET", "/invoices/{invoice_id}", self._get_invoice),
            r("PUT", "/invoices/{invoice_id}/collect", self._collect),
            r("PUT", "/invoices/{invoice_id}/mark_failed", self._mark_failed),
            r("PUT", "/invoices/{invoice_id}/mark_successful", self._mark_successful),
            r("PUT", "/invoices/{invoice_id}/void", self._void),
            r("PUT", "/invoices/{invoice_id}/reopen", self._reopen),
            r("POST", "/invoices/{invoice_id}/refund", self._refund, 201),
            r("GET", "/invoices/{invoice_id}/line_items", self._invoice_line_items),
            r("GET", "/invoices/{invoice_id}/transactions", self._invoice_transactions),
            r("GET", "/line_items", self._list_line_items),
            r("GET", "/line_items/{line_item_id}", self._get_line_item),
            r("GET", "/transactions", self._list_transactions),
            r("GET", "/transactions/{transaction_id}", self._get_transaction),
            r("GET", "/dunning_campaigns", self._list_campaigns),
            r("GET", "/dunning_campaigns/{campaign_id}", self._get_campaign),
            r("GET", "/custom_field_definitions", self._list_custom_field_definitions),
        ]
        control = "/_sandbox/recurly"
        return [
            Route(f"{control}/invoices/{{id}}/fail_payment", self._ctl_fail, methods=["POST"]),
            Route(f"{control}/invoices/{{id}}/pay", self._ctl_pay, methods=["POST"]),
            Route(f"{control}/accounts/{{id}}/card", self._ctl_card, methods=["POST"]),
            Route(f"{control}/rate_limit", self._ctl_rate_limit, methods=["POST"]),
            Route(f"{control}/notifications", self._ctl_notifications, methods=["GET"]),
            Route(f"{control}/notifications/redeliver", self._ctl_redeliver, methods=["POST"]),
            *routes,
            Route("/{rest:path}", self._unknown_endpoint, methods=_ALL_METHODS),
        ]

    def is_ledgered(self, path: str) -> bool:
        return not path.startswith("/_sandbox")

    # --- scenario controls (Python) ----------------------------------------------------------

    def set_card_decline(self, account_code: str, decline_code: str | None) -> None:
        """Make the account's card decline with ``decline_code`` (None: the card works). An
        account without billing info gets a card."""
        with self.lock:
            account = self.store.account("code-" + account_code)
            token = f"tok_decline_{decline_code}" if decline_code else "tok_visa"
            self.store.set_billing_info(account, {"token_id": token}, notify=False)

    async def fail_payment(self, invoice_id: str, decline_code: str | None = None) -> dict:
        """A scheduled (renewal or dunning) attempt on the invoice declines, with
        ``decline_code``, else the card's, else ``declined``: failed transaction (origin
        ``recurring``), invoice ``past_due`` under the account's campaign, notifications."""
        with self.lock:
            inv = self.store.invoice(invoice_id)
            info = self.store.accounts[inv["account"]["id"]].get("billing_info") or {}
            code = decline_code or info.get("_decline_code") or "declined"
            txn = self.store.charge(inv, origin="recurring", decline_code=code)
            out = public(txn)
        await self._flush()
        return out

    async def pay_invoice(self, invoice_id: str) -> dict:
        """A scheduled attempt on the invoice succeeds, whatever the card does."""
        with self.lock:
            inv = self.store.invoice(invoice_id)
            txn = self.store.charge(inv, origin="recurring", force_success=True)
            out = public(txn)
        await self._flush()
        return out

    # --- webhooks ------------------------------------------------------------------------------

    def sign(self, body: bytes, timestamp_ms: int | None = None) -> str:
        """``<unix ms>,<hex sig>[,<hex sig>…]``: HMAC-SHA256 of ``"{ts}.{body}"`` per secret."""
        ts = str(timestamp_ms if timestamp_ms is not None else int(time.time() * 1000))
        signed = ts.encode() + b"." + body
        sigs = [
            hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in self.webhook_secrets
        ]
        return ",".join([ts, *sigs])

    def _signer(self, body: bytes, url: str) -> dict[str, str]:
        return {SIGNATURE_HEADER: self.sign(body)}

    async def _flush(self) -> None:
        """Send the notifications the last request caused (JSON, IDs only), each signed anew
        per attempt."""
        with self.lock:
            pending, self.store.pending = self.store.pending, []
            bodies = []
            for object_type, event_type, ids in pending:
                note = {
                    "id": new_id(12),
                    "object_type": object_type,
                    "site_id": self.site_id,
                    "event_type": event_type,
                    "event_time": iso(self.store.now()),
                    **ids,
                }
                self.store.notifications.append(note)
                bodies.append((note["id"], json.dumps(note, separators=(",", ":")).encode()))
        for note_id, body in bodies:
            for _ in range(2 if self.duplicate_deliveries else 1):
                await self.emit_webhook(body, event_id=note_id, sign=self._signer)

    # --- the vendor route wrapper ----------------------------------------------------------------

    def _route(self, method: str, path: str, handler: Handler, status: int = 200) -> Route:
        methods = [method, "HEAD"] if method == "GET" else [method]

        async def endpoint(request: Request) -> Response:
            return await self._serve(request, handler, status)

        return Route(path, endpoint, methods=methods)

    async def _unknown_endpoint(self, request: Request) -> Response:
        def handler(call: Call) -> Any:
            raise not_found("endpoint", f"{request.method} {request.url.path}")

        return await self._serve(request, handler, 200)

    def _authenticate(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, _ = base64.b64decode(token, validate=True).decode("latin-1").partition(":")
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(user.encode(), self.api_key.encode())

    def _rate(self, method: str) -> tuple[dict[str, str], bool]:
        """(X-RateLimit-* headers, over the limit?)."""
        limit = self.rate_limit_per_minute
        if not limit:
            return {}, False
        window = self.rate_limit_window_s
        allowance = int(limit * window / 60)
        now = self.clock()
        hits = self.store.rate_hits
        while hits and hits[0] <= now - window:
            hits.popleft()
        counted = self.count_writes or method in ("GET", "HEAD")
        over = counted and len(hits) >= allowance
        if counted and not over:
            hits.append(now)
        reset = math.ceil((hits[0] + window) if hits else now + window)
        headers = {
            "X-RateLimit-Limit": str(allowance),
            "X-RateLimit-Remaining": str(max(allowance - len(hits), 0)),
            "X-RateLimit-Reset": str(reset),
        }
        return headers, over

    def _error(self, exc: RecurlyError, headers: Mapping[str, str] | None = None) -> Response:
        return self._json(exc.body(), exc.status, {**exc.headers, **(headers or {})})

    def _json(
        self, payload: Any, status: int, headers: Mapping[str, str] | None = None
    ) -> Response:
        resp = Response(
            json.dumps(payload, separators=(",", ":")).encode() if payload is not None else b"",
            status_code=status,
            media_type="application/json; charset=utf-8",
        )
        resp.headers["X-Request-Id"] = new_id(20)
        resp.headers["Recurly-Version"] = f"recurly.{API_VERSION}"
        for k, v in (headers or {}).items():
            resp.headers[k] = v
        return resp

    async def _serve(self, request: Request, handler: Handler, status: int) -> Response:
        raw = await request.body()
        if not self._authenticate(request):
            return self._error(
                RecurlyError(401, "unauthorized", "Invalid API key. Please check your API key.")
            )
        accept = request.headers.get("accept", "").strip().lower()
        if accept not in _ACCEPTED:
            return self._error(
                RecurlyError(
                    406,
                    "invalid_api_version",
                    f"Invalid or missing API version in the Accept header. Acceptable: {ACCEPT}",
                )
            )
        method = request.method
        failure: RecurlyError | None = None
        with self.lock:
            rate_headers, over = self._rate(method)
            if over:
                return self._error(
                    RecurlyError(
                        429,
                        "rate_limited",
                        "You have made too many API requests in the last 5 minutes.",
                    ),
                    rate_headers,
                )
            try:
                body = None
                if raw.strip():
                    ctype = request.headers.get("content-type", "")
                    if not ctype.startswith("application/json"):
                        raise RecurlyError(
                            400, "invalid_content_type", "Content-Type must be application/json"
                        )
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise bad_request("The request body is not valid JSON") from None
                query = dict(parse_qsl(request.url.query, keep_blank_values=True))
                result = handler(Call(request, body, query))
                code = status
                if isinstance(result, _Page):
                    headers = {**rate_headers, "Recurly-Total-Records": str(result.total)}
                    payload: Any = result.body
                else:
                    headers = dict(rate_headers)
                    payload = public(result) if result is not None else None
                    if payload is None:
                        code = 204
            except RecurlyError as exc:
                if exc.type != "transaction":
                    self.store.pending.clear()
                failure = exc
            except Exception as exc:  # a sandbox bug still answers a body the client understands
                log.exception("recurly sandbox: %s %s failed", method, request.url.path)
                self.store.pending.clear()
                return self._error(
                    RecurlyError(
                        500, "internal_server_error", f"Sandbox error: {type(exc).__name__}"
                    ),
                    rate_headers,
                )
        await self._flush()  # a declined charge is committed: its notifications go out
        if failure is not None:
            return self._error(failure, rate_headers)
        if method == "HEAD":
            resp = self._json(None, code, headers)
            resp.body = b""
            resp.headers["content-length"] = "0"
            return resp
        return self._json(payload, code, headers)

    # --- lists ---------------------------------------------------------------------------------

    def _page(
        self, call: Call, rows: Iterable[dict[str, Any]], filters: Mapping[str, Callable] = ()
    ) -> _Page:
        """Recurly's cursor pagination: ``limit`` (1–200, default 20), ``order`` (default desc),
        ``sort`` created_at | updated_at, ``begin_time`` / ``end_time`` on the sort field,
        ``ids``; ``next`` is the path of the next page with the same parameters and a cursor."""
        q = call.query
        try:
            limit = int(q.get("limit", 20))
        except ValueError:
            raise validation("limit", "must be an integer") from None
        if not 1 <= limit <= 200:
            raise validation("limit", "must be between 1 and 200")
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            raise validation("order", "is not included in the list")
        sort = q.get("sort", "created_at")
        if sort not in ("created_at", "updated_at"):
            raise validation("sort", "is not included in the list")
        key = "_created" if sort == "created_at" else "_updated"
        items = [r for r in rows if not r.get("_removed")]
        if q.get("ids"):
            wanted = set(q["ids"].split(","))
            items = [r for r in items if r.get("id") in wanted]
        if q.get("begin_time"):
            begin = parse_time(q["begin_time"], "begin_time")
            items = [r for r in items if r[key] >= begin]
        if q.get("end_time"):
            end = parse_time(q["end_time"], "end_time")
            items = [r for r in items if r[key] <= end]
        for name, test in dict(filters).items():
            if q.get(name) not in (None, ""):
                items = [r for r in items if test(r, q[name])]
        items.sort(key=lambda r: (r[key], r["_seq"]), reverse=order == "desc")
        total = len(items)
        cursor = q.get("cursor")
        if cursor:
            try:
                after = json.loads(base64.urlsafe_b64decode(cursor.encode()))
                position = (float(after[0]), int(after[1]))
            except (ValueError, TypeError, IndexError, binascii.Error):
                raise validation("cursor", "is invalid") from None
            if order == "desc":
                items = [r for r in items if (r[key], r["_seq"]) < position]
            else:
                items = [r for r in items if (r[key], r["_seq"]) > position]
        data = items[:limit]
        has_more = len(items) > limit
        next_path = None
        if has_more:
            last = data[-1]
            token = base64.urlsafe_b64encode(
                json.dumps([last[key], last["_seq"]]).encode()
            ).decode()
            params = {k: v for k, v in q.items() if k != "cursor"}
            params.update(cursor=token, limit=str(limit), order=order, sort=sort)
            next_path = f"{call.request.url.path}?{urlencode(params)}"
        return _Page(
            {"object": "list", "has_more": has_more, "next": next_path, "data": public(data)},
            total,
        )

    # --- handlers: accounts ----------------------------------------------------------------

    def _acct(self, call: Call) -> dict[str, Any]:
        return self.store.account(call.path["account_id"])

    def _list_accounts(self, call: Call) -> _Page:
        return self._page(
            call,
            self.store.accounts.values(),
            {
                "email": lambda a, v: (a.get("email") or "").lower() == v.lower(),
                "subscriber": lambda a, v: self._subscriber(a) == (v == "true"),
                "past_due": lambda a, v: self._past_due(a) == (v == "true"),
            },
        )

    def _subscriber(self, a: dict[str, Any]) -> bool:
        self.store.refresh_flags(a)
        return bool(a["has_live_subscription"])

    def _past_due(self, a: dict[str, Any]) -> bool:
        self.store.refresh_flags(a)
        return bool(a["has_past_due_invoice"])

    def _create_account(self, call: Call) -> Any:
        return self.store.create_account(call.json())

    def _get_account(self, call: Call) -> Any:
        a = self._acct(call)
        self.store.refresh_flags(a)
        return a

    def _update_account(self, call: Call) -> Any:
        return self.store.update_account(self._acct(call), call.json())

    def _deactivate_account(self, call: Call) -> Any:
        return self.store.deactivate_account(self._acct(call))

    def _reactivate_account(self, call: Call) -> Any:
        return self.store.reactivate_account(self._acct(call))

    def _balance(self, call: Call) -> Any:
        return self.store.balance(self._acct(call))

    def _get_billing_info(self, call: Call) -> Any:
        a = self._acct(call)
        if a.get("billing_info") is None:
            raise not_found("BillingInfo", call.path["account_id"])
        return a["billing_info"]

    def _put_billing_info(self, call: Call) -> Any:
        return self.store.set_billing_info(self._acct(call), call.json())

    def _delete_billing_info(self, call: Call) -> Any:
        a = self._acct(call)
        a["billing_info"] = None
        self.store.stamp(a)
        return None

    def _account_subscriptions(self, call: Call) -> _Page:
        a = self._acct(call)
        return self._page(call, self.store.subscriptions_of(a), {"state": _state_filter("state")})

    def _account_invoices(self, call: Call) -> _Page:
        a = self._acct(call)
        rows = [i for i in self.store.invoices.values() if i["account"]["id"] == a["id"]]
        return self._page(call, rows, _invoice_filters())

    def _invoice_pending(self, call: Call) -> Any:
        inv = self.store.invoice_pending(self._acct(call))
        return {"object": "invoice_collection", "charge_invoice": inv, "credit_invoices": []}

    def _account_transactions(self, call: Call) -> _Page:
        a = self._acct(call)
        rows = [t for t in self.store.transactions.values() if t["account"]["id"] == a["id"]]
        return self._page(call, rows, _transaction_filters())

    def _account_line_items(self, call: Call) -> _Page:
        a = self._acct(call)
        rows = [li for li in self.store.line_items.values() if li["account"]["id"] == a["id"]]
        return self._page(
            call,
            rows,
            {"state": lambda r, v: r["state"] == v, "type": lambda r, v: r["type"] == v},
        )

    def _list_line_items(self, call: Call) -> _Page:
        """``GET /line_items``: the site's line items (``list_line_items``), with the account
        list's ``state`` / ``type`` filters and the common list parameters."""
        return self._page(
            call,
            self.store.line_items.values(),
            {"state": lambda r, v: r["state"] == v, "type": lambda r, v: r["type"] == v},
        )

    def _create_line_item(self, call: Call) -> Any:
        return self.store.create_line_item(self._acct(call), call.json())

    def _list_notes(self, call: Call) -> _Page:
        a = self._acct(call)
        rows = [n for n in self.store.notes.values() if n["account_id"] == a["id"]]
        return self._page(call, rows)

    def _create_note(self, call: Call) -> Any:
        return self.store.create_note(self._acct(call), call.json())

    def _get_note(self, call: Call) -> Any:
        return self.store.note(self._acct(call), call.path["note_id"])

    def _delete_note(self, call: Call) -> Any:
        note = self.store.note(self._acct(call), call.path["note_id"])
        note["_removed"] = True
        return None

    def _account_redemptions(self, call: Call) -> _Page:
        a = self._acct(call)
        rows = [r for r in self.store.redemptions.values() if r["account"]["id"] == a["id"]]
        return self._page(call, rows, {"state": lambda r, v: r["state"] == v})

    def _active_redemptions(self, call: Call) -> _Page:
        return self._page(call, self.store.active_redemptions(self._acct(call)))

    def _redeem(self, call: Call) -> Any:
        body = call.json()
        coupon_id = body.get("coupon_id")
        if not coupon_id:
            raise validation("coupon_id", "can't be blank")
        return self.store.redeem(
            self._acct(call), self.store.coupon(str(coupon_id)), body.get("subscription_id")
        )

    def _unredeem(self, call: Call) -> Any:
        active = self.store.active_redemptions(self._acct(call))
        if not active:
            raise not_found("CouponRedemption", call.path["account_id"])
        return self.store.remove_redemption(active[0])

    # --- handlers: catalogue ---------------------------------------------------------------

    def _list_plans(self, call: Call) -> _Page:
        return self._page(call, self.store.plans.values(), {"state": _state_filter("state")})

    def _create_plan(self, call: Call) -> Any:
        return self.store.create_plan(call.json())

    def _get_plan(self, call: Call) -> Any:
        return self.store.plan(call.path["plan_id"])

    def _list_add_ons(self, call: Call) -> _Page:
        plan = self.store.plan(call.path["plan_id"])
        rows = [a for a in self.store.add_ons.values() if a["plan_id"] == plan["id"]]
        return self._page(call, rows)

    def _create_add_on(self, call: Call) -> Any:
        return self.store.create_add_on(self.store.plan(call.path["plan_id"]), call.json())

    def _get_add_on(self, call: Call) -> Any:
        return self.store.add_on(self.store.plan(call.path["plan_id"]), call.path["add_on_id"])

    def _list_coupons(self, call: Call) -> _Page:
        return self._page(call, self.store.coupons.values())

    def _create_coupon(self, call: Call) -> Any:
        return self.store.create_coupon(call.json())

    def _get_coupon(self, call: Call) -> Any:
        return self.store.coupon(call.path["coupon_id"])

    def _expire_coupon(self, call: Call) -> Any:
        return self.store.expire_coupon(self.store.coupon(call.path["coupon_id"]))

    def _list_campaigns(self, call: Call) -> _Page:
        return self._page(call, self.store.campaigns.values())

    def _get_campaign(self, call: Call) -> Any:
        c = self.store.campaigns.get(call.path["campaign_id"])
        if c is None:
            raise not_found("DunningCampaign", call.path["campaign_id"])
        return c

    def _list_custom_field_definitions(self, call: Call) -> _Page:
        return self._page(
            call,
            self.store.custom_field_definitions.values(),
            {"related_type": lambda d, v: d["related_type"] == v},
        )

    # --- handlers: subscriptions -------------------------------------------------------------

    def _sub(self, call: Call) -> dict[str, Any]:
        return self.store.subscription(call.path["subscription_id"])

    def _list_subscriptions(self, call: Call) -> _Page:
        return self._page(
            call, self.store.subscriptions.values(), {"state": _state_filter("state")}
        )

    def _create_subscription(self, call: Call) -> Any:
        return self.store.create_subscription(call.json())

    def _get_subscription(self, call: Call) -> Any:
        return self._sub(call)

    def _update_subscription(self, call: Call) -> Any:
        return self.store.update_subscription(self._sub(call), call.json())

    def _terminate(self, call: Call) -> Any:
        return self.store.terminate(self._sub(call), call.query.get("refund", "none"))

    def _cancel(self, call: Call) -> Any:
        return self.store.cancel(self._sub(call), call.json().get("timeframe", "term_end"))

    def _reactivate(self, call: Call) -> Any:
        return self.store.reactivate(self._sub(call))

    def _pause(self, call: Call) -> Any:
        cycles = call.json().get("remaining_pause_cycles")
        if isinstance(cycles, bool) or not isinstance(cycles, int):
            raise validation("remaining_pause_cycles", "can't be blank")
        return self.store.pause(self._sub(call), cycles)

    def _resume(self, call: Call) -> Any:
        return self.store.resume(self._sub(call))

    def _get_change(self, call: Call) -> Any:
        sub = self._sub(call)
        if sub["pending_change"] is None:
            raise not_found("SubscriptionChange", call.path["subscription_id"])
        return sub["pending_change"]

    def _change(self, call: Call) -> Any:
        return self.store.change_subscription(self._sub(call), call.json())

    def _delete_change(self, call: Call) -> Any:
        self.store.cancel_pending_change(self._sub(call))
        return None

    def _subscription_invoices(self, call: Call) -> _Page:
        sub = self._sub(call)
        rows = [i for i in self.store.invoices.values() if sub["id"] in i["subscription_ids"]]
        return self._page(call, rows, _invoice_filters())

    def _sub_line_items(self, call: Call) -> _Page:
        sub = self._sub(call)
        rows = [li for li in self.store.line_items.values() if li["subscription_id"] == sub["id"]]
        return self._page(call, rows)

    def _subscription_redemptions(self, call: Call) -> _Page:
        sub = self._sub(call)
        rows = [r for r in self.store.redemptions.values() if r["subscription_id"] == sub["id"]]
        return self._page(call, rows)

    def _usage_rows(self, call: Call) -> list[dict[str, Any]]:
        sub = self._sub(call)
        ident = call.path["add_on_id"]
        sa = next(
            (
                a
                for a in sub["add_ons"]
                if a["add_on"]["id"] == ident
                or (ident.startswith("code-") and a["add_on"]["code"] == ident[5:])
            ),
            None,
        )
        if sa is None:
            raise not_found("SubscriptionAddOn", ident)
        return [
            u
            for u in self.store.usage.values()
            if u["_subscription_id"] == sub["id"] and u["_add_on_id"] == sa["add_on"]["id"]
        ]

    def _list_usage(self, call: Call) -> _Page:
        rows = self._usage_rows(call)
        # usage lists sort and filter on usage_timestamp too (``sort=usage_timestamp``)
        if call.query.get("sort") == "usage_timestamp":
            call.query = {**call.query, "sort": "created_at"}
            rows = [{**u, "_created": parse_time(u["usage_timestamp"], "x")} for u in rows]
        return self._page(call, rows)

    def _create_usage(self, call: Call) -> Any:
        return self.store.record_usage(self._sub(call), call.path["add_on_id"], call.json())

    def _get_usage(self, call: Call) -> Any:
        u = self.store.usage.get(call.path["usage_id"])
        if u is None:
            raise not_found("Usage", call.path["usage_id"])
        return u

    # --- handlers: invoices and transactions ---------------------------------------------------

    def _inv(self, call: Call) -> dict[str, Any]:
        return self.store.invoice(call.path["invoice_id"])

    def _list_invoices(self, call: Call) -> _Page:
        return self._page(call, self.store.invoices.values(), _invoice_filters())

    def _get_invoice(self, call: Call) -> Any:
        return self._inv(call)

    def _collect(self, call: Call) -> Any:
        return self.store.collect(self._inv(call))

    def _mark_failed(self, call: Call) -> Any:
        return self.store.mark_failed(self._inv(call))

    def _mark_successful(self, call: Call) -> Any:
        return self.store.mark_successful(self._inv(call))

    def _void(self, call: Call) -> Any:
        return self.store.void(self._inv(call))

    def _reopen(self, call: Call) -> Any:
        return self.store.reopen(self._inv(call))

    def _refund(self, call: Call) -> Any:
        return self.store.refund(self._inv(call), call.json())

    def _invoice_line_items(self, call: Call) -> _Page:
        return self._page(call, self._inv(call)["line_items"])

    def _invoice_transactions(self, call: Call) -> _Page:
        return self._page(call, self._inv(call)["transactions"], _transaction_filters())

    def _get_line_item(self, call: Call) -> Any:
        li = self.store.line_items.get(call.path["line_item_id"])
        if li is None:
            raise not_found("LineItem", call.path["line_item_id"])
        return li

    def _list_transactions(self, call: Call) -> _Page:
        return self._page(call, self.store.transactions.values(), _transaction_filters())

    def _get_transaction(self, call: Call) -> Any:
        return self.store.transaction(call.path["transaction_id"])

    # --- control routes ------------------------------------------------------------------------

    async def _ctl_body(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise bad_request("control body must be a JSON object")
        return data

    async def _ctl_fail(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
            txn = await self.fail_payment(request.path_params["id"], body.get("decline_code"))
        except RecurlyError as exc:
            return self._error(exc)
        return JSONResponse(txn)

    async def _ctl_pay(self, request: Request) -> Response:
        try:
            txn = await self.pay_invoice(request.path_params["id"])
        except RecurlyError as exc:
            return self._error(exc)
        return JSONResponse(txn)

    async def _ctl_card(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
            self.set_card_decline(request.path_params["id"], body.get("decline_code"))
        except RecurlyError as exc:
            return self._error(exc)
        return JSONResponse({"ok": True})

    async def _ctl_rate_limit(self, request: Request) -> Response:
        try:
            body = await self._ctl_body(request)
        except RecurlyError as exc:
            return self._error(exc)
        with self.lock:
            self.rate_limit_per_minute = body.get("per_minute")
            self.rate_limit_window_s = float(body.get("window_s", self.rate_limit_window_s))
            self.count_writes = bool(body.get("count_writes", self.count_writes))
            self.store.rate_hits.clear()
        return JSONResponse(
            {"per_minute": self.rate_limit_per_minute, "window_s": self.rate_limit_window_s}
        )

    async def _ctl_notifications(self, request: Request) -> Response:
        with self.lock:
            return JSONResponse({"notifications": list(self.store.notifications)})

    async def _ctl_redeliver(self, request: Request) -> Response:
        """Deliver notifications again (the same IDs and bodies, freshly signed), as Recurly may:
        ``{"ids": [...] | null (all), "reverse": bool}`` — reversed: out of order."""
        try:
            body = await self._ctl_body(request)
        except RecurlyError as exc:
            return self._error(exc)
        with self.lock:
            notes = [
                n
                for n in self.store.notifications
                if body.get("ids") is None or n["id"] in body["ids"]
            ]
        if body.get("reverse"):
            notes.reverse()
        for n in notes:
            raw = json.dumps(n, separators=(",", ":")).encode()
            await self.emit_webhook(raw, event_id=n["id"], sign=self._signer)
        return JSONResponse({"redelivered": [n["id"] for n in notes]})


class _Page:
    def __init__(self, body: dict[str, Any], total: int) -> None:
        self.body = body
        self.total = total


def _state_filter(field: str) -> Callable[[dict[str, Any], str], bool]:
    def test(row: dict[str, Any], value: str) -> bool:
        if value == "live":
            return row[field] in ("active", "canceled", "future", "paused")
        return row[field] in value.split(",")

    return test


def _invoice_filters() -> dict[str, Callable]:
    return {
        "state": lambda i, v: i["state"] in v.split(","),
        "type": lambda i, v: (
            {"charge": "charge", "credit": "credit"}.get(v, v) == i["type"]
            or (v == "non-legacy" and i["type"] != "legacy")
        ),
    }


def _transaction_filters() -> dict[str, Callable]:
    return {
        "type": lambda t, v: v == "payment" and t["type"] == "purchase" or t["type"] == v,
        "success": lambda t, v: (t["status"] == "success") == (v == "true"),
    }


_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
