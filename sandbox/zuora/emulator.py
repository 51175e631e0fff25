"""``ZuoraEmulator``: a stateful Zuora tenant (REST v1, Orders, Object Query, callouts).

Point an ``httpx.Client(base_url=...)`` at it, as production code does with
``https://rest.zuora.com``. Every vendor route needs a bearer token from ``POST /oauth/token``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import math
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from sandbox.framework import Delivery, Emulator, WebhookTarget

from . import describe
from .api import Api, Req
from .query_expand import product_rate_plans
from .state import (
    GENERIC,
    LIMIT_EXCEEDED,
    MALFORMED_JSON,
    IdempotencyRecord,
    Store,
    ZuoraError,
    new_id,
    stamp,
)
from .sync_events import SYNC_TEMPLATES

log = logging.getLogger("sandbox.zuora")

#: the callout templates RevBridge's install guide asks for: IDs, built from merge fields (Payment
#: Declined also carries the declined attempt: amount, currency, the gateway's response)
DEFAULT_TEMPLATES: dict[str, dict[str, str]] = {
    "PaymentDeclined": {
        "eventCategory": "PaymentDeclined",
        "eventTimestamp": "<Event.Timestamp>",
        "paymentId": "<Payment.Id>",
        "paymentNumber": "<Payment.PaymentNumber>",
        "accountId": "<Account.Id>",
        "accountNumber": "<Account.AccountNumber>",
        "invoiceId": "<Invoice.Id>",
        "gatewayResponseCode": "<Payment.GatewayResponseCode>",
        # the declined attempt itself, so the run need not read the payments (issue 15)
        "amount": "<Payment.Amount>",
        "currency": "<Account.Currency>",
        "gatewayResponse": "<Payment.GatewayResponse>",
    },
    "PaymentProcessed": {
        "eventCategory": "PaymentProcessed",
        "eventTimestamp": "<Event.Timestamp>",
        "paymentId": "<Payment.Id>",
        "paymentNumber": "<Payment.PaymentNumber>",
        "accountId": "<Account.Id>",
        "accountNumber": "<Account.AccountNumber>",
        "invoiceId": "<Invoice.Id>",
    },
    "InvoicePosted": {
        "eventCategory": "InvoicePosted",
        "eventTimestamp": "<Event.Timestamp>",
        "invoiceId": "<Invoice.Id>",
        "accountId": "<Account.Id>",
    },
    "OrderProcessed": {
        "eventCategory": "OrderProcessed",
        "eventTimestamp": "<Event.Timestamp>",
        "orderNumber": "<Order.OrderNumber>",
        "accountId": "<Account.Id>",
        "subscriptionNumber": "<Subscription.Name>",
        "orderActionTypes": "<OrderAction.Types>",
        "revbridgeKey": "<Order.RevBridgeKey__c>",
    },
    "UsageRecorded": {
        "eventCategory": "UsageRecorded",
        "eventTimestamp": "<Event.Timestamp>",
        "usageId": "<Usage.Id>",
        "accountId": "<Account.Id>",
    },
    **SYNC_TEMPLATES,  # the account sync's custom events (sync_events.py)
}

_ALL = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def render_template(template: Any, ctx: Mapping[str, str]) -> Any:
    """Replace ``<Object.Field>`` merge fields in every string of a callout template."""
    if isinstance(template, dict):
        return {k: render_template(v, ctx) for k, v in template.items()}
    if isinstance(template, list):
        return [render_template(v, ctx) for v in template]
    if isinstance(template, str):
        out = template
        for name, value in ctx.items():
            out = out.replace(f"<{name}>", value)
        return out
    return template


class ZuoraEmulator(Emulator):
    """Zuora REST v1 plus scenario controls under ``/_sandbox/zuora``.

    - ``client_id`` / ``client_secret``: the OAuth client (``POST /oauth/token``).
    - ``token_ttl_s``: token lifetime (Zuora: 1 hour); an expired token answers 401.
    - ``rate_limit_per_minute``: off by default; beyond it, 429 with ``ratelimit-*`` headers.
    - ``concurrency_limit``: in-flight requests per tenant (Zuora's default 40); beyond it, 429
      with ``Concurrency-Limit-*`` headers. ``reserved_concurrency`` stands for other clients of
      the tenant holding slots (set through ``POST /_sandbox/zuora/limits``).
    - ``idempotency_window_s``: Zuora keeps ``Idempotency-Key`` records for 24 hours.
    - callouts: ``callout_auth`` ``challenge`` (Zuora's default: first request without
      credentials, resent after a 401 with ``WWW-Authenticate``) | ``preemptive`` | ``none``;
      ``callout_hmac_key``: sign the body (HMAC-SHA256, hex) into ``callout_hmac_header``;
      ``callout_attempts`` (default 3, max 5); a delivery counts only when answered exactly 200.
    """

    name = "zuora"
    webhook_retry_delays = (0.1, 0.2, 0.4, 0.8)

    def __init__(
        self,
        client_id: str = "test_zuora_client",
        client_secret: str = "test_zuora_secret",  # noqa: S107  (the sandbox's own test client)
        webhook_targets: Iterable[WebhookTarget] = (),
        token_ttl_s: float = 3600,
        rate_limit_per_minute: int | None = None,
        concurrency_limit: int = 40,
        idempotency_window_s: float = 86_400,
        default_card: bool = True,
        clock: Callable[[], float] = time.time,
        callout_auth: str = "challenge",
        callout_hmac_key: str | None = None,
        callout_hmac_header: str = "X-Zuora-Signature",
        callout_attempts: int = 3,
        retry_days: tuple[float, ...] = (1, 3, 5),
        collections_user: str = "collections@revbridge.local",
        collections_token: str = "test_cpr_token",  # noqa: S107  (the sandbox's own)
    ) -> None:
        #: Zuora Collect's retry cycle: days between the attempts after a declined payment run
        self.retry_days = tuple(retry_days)
        self.collections_auth = (collections_user, collections_token)
        self.client_id = client_id
        self.client_secret = client_secret
        self.token_ttl_s = token_ttl_s
        self._limits_default = (rate_limit_per_minute, concurrency_limit)
        self.idempotency_window_s = idempotency_window_s
        self.default_card = default_card
        self.clock = clock
        self._callout_default = (
            callout_auth,
            callout_hmac_key,
            callout_hmac_header,
            callout_attempts,
        )
        self.api = Api(self)
        self.in_flight = 0
        super().__init__(webhook_targets)

    # --- framework hooks ---------------------------------------------------------------------

    def reset_state(self) -> None:
        self.store = Store(clock=self.clock)
        self.rate_limit_per_minute, self.concurrency_limit = self._limits_default
        self.reserved_concurrency = 0
        self.slow: list[tuple[str, float]] = []  # (path prefix, seconds) before a handler commits
        (
            self.callout_auth,
            self.callout_hmac_key,
            self.callout_hmac_header,
            self.callout_attempts,
        ) = self._callout_default
        self.templates = {k: dict(v) for k, v in DEFAULT_TEMPLATES.items()}
        self.hold_callouts = False
        self.held: list[tuple[bytes, str]] = []
        self.callout_log: list[dict[str, Any]] = []

    def error_response(self, status: int, message: str) -> Response:
        if status == 429:
            return JSONResponse({"message": "API rate limit exceeded"}, status_code=429)
        if status == 401:
            return JSONResponse({"message": "Authentication error"}, status_code=401)
        return JSONResponse(
            {
                "success": False,
                "processId": _process_id(),
                "reasons": [{"code": 50000060, "message": message}],
            },
            status_code=status,
        )

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        from .seeding import seed

        return seed(self, data)

    def vendor_routes(self) -> list[BaseRoute]:
        a = self.api
        c, crud, q = "classic", "crud", "query"
        routes = [
            Route("/oauth/token", self._token, methods=["POST"]),
            self._route("POST", "/v1/accounts", a.create_account, c),
            self._route("GET", "/v1/accounts/{key}", a.get_account, c),
            self._route("PUT", "/v1/accounts/{key}", a.update_account, c),
            self._route("DELETE", "/v1/accounts/{key}", a.delete_account, c),
            self._route("GET", "/v1/accounts/{key}/summary", a.account_summary, c),
            self._route("POST", "/v1/contacts", a.create_contact, c),
            self._route("GET", "/v1/contacts/{id}", a.get_contact, c),
            self._route("PUT", "/v1/contacts/{id}", a.update_contact, c),
            self._route("GET", "/v1/catalog/products", a.list_products, c),
            self._route("GET", "/v1/product-rate-plans/{id}", a.get_product_rate_plan, c),
            self._route("POST", "/v1/subscriptions", a.create_subscription, c),
            self._route("GET", "/v1/subscriptions/accounts/{key}", a.subscriptions_by_account, c),
            self._route("GET", "/v1/subscriptions/{key}", a.get_subscription, c),
            self._route("PUT", "/v1/subscriptions/{key}", a.update_subscription, c),
            self._route("PUT", "/v1/subscriptions/{key}/cancel", a.cancel_subscription, c),
            self._route("PUT", "/v1/subscriptions/{key}/suspend", a.suspend_subscription, c),
            self._route("PUT", "/v1/subscriptions/{key}/resume", a.resume_subscription, c),
            self._route("POST", "/v1/orders", a.create_order, c),
            self._route("GET", "/v1/orders", a.list_orders, c),
            self._route("GET", "/v1/orders/subscription/{number}", a.orders_by_subscription, c),
            self._route("GET", "/v1/orders/{number}", a.get_order, c),
            self._route("GET", "/v1/invoices/{key}", a.get_invoice, c),
            self._route("PUT", "/v1/invoices/{key}", a.update_invoice, c),
            self._route("GET", "/v1/invoices/{key}/items", a.invoice_items, c),
            self._route("PUT", "/v1/invoices/{key}/write-off", a.write_off_invoice, c),
            self._route("PUT", "/v1/invoices/{key}/post", a.post_invoice, c),
            self._route("PUT", "/v1/invoices/{key}/cancel", a.cancel_invoice, c),
            self._route("POST", "/v1/payments", a.create_payment, c),
            self._route("GET", "/v1/payments", a.list_payments, c),
            self._route("GET", "/v1/payments/{key}", a.get_payment, c),
            self._route("POST", "/v1/operations/invoice-collect", a.invoice_collect, c),
            self._route("POST", "/v1/payment-runs", a.create_payment_run, c),
            self._route("GET", "/v1/payment-runs/{key}", a.get_payment_run, c),
            self._route("GET", "/v1/payment-runs/{key}/summary", a.payment_run_summary, c),
            self._route("POST", "/v1/credit-memos", a.create_memo_from_charge, c),
            self._route("POST", "/v1/credit-memos/invoice/{key}", a.create_memo_from_invoice, c),
            self._route("GET", "/v1/credit-memos/{key}", a.get_credit_memo, c),
            self._route("PUT", "/v1/credit-memos/{key}/apply", a.apply_credit_memo, c),
            self._route("POST", "/v1/object/usage", a.create_usage, crud),
            self._route("GET", "/v1/usage/accounts/{key}", a.usage_by_account, c),
            *(
                self._route("GET", f"/object-query/{kind}", a.object_query(kind), q)
                for kind in (
                    "accounts",
                    "contacts",
                    "subscriptions",
                    "invoices",
                    "payments",
                    "usages",
                    "credit-memos",
                )
            ),
        ]
        ctl = "/_sandbox/zuora"
        return [
            *routes,
            describe.route(self),  # GET /v1/describe/{object} (XML; describe.py)
            self._route(  # the catalogue's plans (the reconciliation's invoice items)
                "GET", "/object-query/product-rate-plans", product_rate_plans(a), q
            ),
            Route("/v1/{rest:path}", self._unknown, methods=_ALL),
            # Zuora Collect (Configurable Payment Retry): a separate host in production, with
            # Basic auth (login email + CPR API token); here under /api/v1 of the same server
            Route(
                "/api/v1/payments/active_invoice_cycle_information/{invoice}",
                self._cpr_cycle,
                methods=["GET"],
            ),
            Route(
                "/api/v1/payments/remove_invoice_from_retry_cycle/{invoice}",
                self._cpr_remove,
                methods=["PUT"],
            ),
            Route(f"{ctl}/limits", self._ctl_limits, methods=["POST"]),
            Route(f"{ctl}/tokens/expire", self._ctl_expire, methods=["POST"]),
            Route(f"{ctl}/slow", self._ctl_slow, methods=["POST"]),
            Route(f"{ctl}/accounts/{{key}}/card", self._ctl_card, methods=["POST"]),
            Route(f"{ctl}/invoices/{{key}}/decline", self._ctl_decline, methods=["POST"]),
            Route(f"{ctl}/callouts/settings", self._ctl_callout_settings, methods=["POST"]),
            Route(f"{ctl}/callouts/hold", self._ctl_hold, methods=["POST"]),
            Route(f"{ctl}/callouts/release", self._ctl_release, methods=["POST"]),
            Route(f"{ctl}/callouts/send", self._ctl_send, methods=["POST"]),
            Route(f"{ctl}/callouts", self._ctl_callouts, methods=["GET"]),
        ]

    # --- request plumbing ------------------------------------------------------------------------

    def _route(
        self, method: str, path: str, handler: Callable[[Req], dict[str, Any]], family: str
    ) -> Route:
        async def endpoint(request: Request) -> Response:
            return await self._serve(request, handler, family)

        return Route(path, endpoint, methods=[method])

    def _headers(self, request_id: str, track_id: str | None) -> dict[str, str]:
        s = self.store
        now = s.now()
        limit = self.rate_limit_per_minute
        hdrs = {"Zuora-Request-Id": request_id}
        if track_id:
            hdrs["Zuora-Track-Id"] = track_id[:64]
        if limit:
            while s.rate_hits and s.rate_hits[0] <= now - 60:
                s.rate_hits.popleft()
            remaining = max(limit - len(s.rate_hits), 0)
            reset = math.ceil(s.rate_hits[0] + 60 - now) if s.rate_hits else 60
            hdrs.update(
                {
                    "ratelimit-limit": f"{limit}, {limit};w=60",
                    "ratelimit-remaining": str(remaining),
                    "ratelimit-reset": str(max(reset, 1)),
                }
            )
        else:
            hdrs.update(
                {
                    "ratelimit-limit": "2250000, 50000;w=60, 2250000;w=3600, 27000000;w=86400",
                    "ratelimit-remaining": "49999",
                    "ratelimit-reset": "60",
                }
            )
        return hdrs

    def _error(self, family: str, exc: ZuoraError) -> tuple[int, dict[str, Any]]:
        if family == "crud":
            code = {20: "INVALID_VALUE", 22: "MISSING_REQUIRED_VALUE", 40: "INVALID_ID"}.get(
                exc.category, "API_DISABLED" if exc.category == 10 else "UNKNOWN_ERROR"
            )
            return exc.http_status or (404 if exc.category == 40 else 400), {
                "Success": False,
                "Errors": [{"Code": code, "Message": exc.message}],
            }
        if family == "query":
            return exc.http_status or (404 if exc.category == 40 else 400), {
                "code": exc.code,
                "message": exc.message,
            }
        return exc.http_status or 200, {
            "success": False,
            "processId": _process_id(),
            "reasons": [{"code": exc.code, "message": exc.message}],
        }

    async def _serve(
        self, request: Request, handler: Callable[[Req], dict[str, Any]], family: str
    ) -> Response:
        request_id = str(uuid.uuid4())
        track_id = request.headers.get("zuora-track-id")
        s = self.store
        # auth: a bearer token from /oauth/token that has not expired
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.lock:
            expires = s.tokens.get(token)
            valid = expires is not None and expires > s.now()
            headers = self._headers(request_id, track_id)
        if not valid:
            return JSONResponse(
                {"message": "Authentication error"}, status_code=401, headers=headers
            )
        # rate limit (failed requests count too) and concurrency
        with self.lock:
            now = s.now()
            limit = self.rate_limit_per_minute
            if limit:
                while s.rate_hits and s.rate_hits[0] <= now - 60:
                    s.rate_hits.popleft()
                if len(s.rate_hits) >= limit:
                    wait = max(math.ceil(s.rate_hits[0] + 60 - now), 1)
                    headers = self._headers(request_id, track_id)
                    headers["ratelimit-remaining"] = "0"
                    headers["Retry-After"] = str(wait)
                    return JSONResponse(
                        {"message": "API rate limit exceeded"}, status_code=429, headers=headers
                    )
                s.rate_hits.append(now)
            if self.in_flight + self.reserved_concurrency >= self.concurrency_limit:
                headers = self._headers(request_id, track_id)
                headers.update(
                    {
                        "Concurrency-Limit-Type": "Default",
                        "Concurrency-Limit-Limit": str(self.concurrency_limit),
                        "Concurrency-Limit-Remaining": "0",
                        "Retry-After": "1",
                    }
                )
                body = {
                    "success": False,
                    "processId": _process_id(),
                    "reasons": [
                        {
                            "code": GENERIC * 100 + LIMIT_EXCEEDED,
                            "message": "The request exceeded the concurrency limit; resubmit it.",
                        }
                    ],
                }
                return JSONResponse(body, status_code=429, headers=headers)
            self.in_flight += 1
        try:
            return await self._serve_counted(request, handler, family, request_id, track_id)
        finally:
            with self.lock:
                self.in_flight -= 1

    async def _serve_counted(
        self,
        request: Request,
        handler: Callable[[Req], dict[str, Any]],
        family: str,
        request_id: str,
        track_id: str | None,
    ) -> Response:
        raw = await request.body()
        s = self.store
        key = request.headers.get("idempotency-key")
        record: IdempotencyRecord | None = None
        if key and request.method in ("POST", "PATCH"):
            if len(key) > 255:
                return self._respond(
                    family,
                    ZuoraError(GENERIC, 20, "Idempotency-Key is longer than 255 characters"),
                    request_id,
                    track_id,
                )
            fingerprint = hashlib.sha256(
                request.method.encode() + request.url.path.encode() + b"\n" + raw
            ).hexdigest()
            with self.lock:
                now = s.now()
                for k in [
                    k
                    for k, v in s.idempotency.items()
                    if v.stored_at <= now - self.idempotency_window_s
                ]:
                    del s.idempotency[k]
                existing = s.idempotency.get(key)
                if existing is not None:
                    if existing.fingerprint != fingerprint:
                        return JSONResponse(
                            {
                                "success": False,
                                "processId": _process_id(),
                                "reasons": [
                                    {
                                        "code": GENERIC * 100 + 20,
                                        "message": "The Idempotency-Key was used with a different request.",
                                    }
                                ],
                            },
                            status_code=422,
                            headers=self._headers(request_id, track_id),
                        )
                    if existing.in_flight:
                        return JSONResponse(
                            {
                                "success": False,
                                "processId": _process_id(),
                                "reasons": [
                                    {
                                        "code": GENERIC * 100 + 50,
                                        "message": "A request with this Idempotency-Key is in progress.",
                                    }
                                ],
                            },
                            status_code=409,
                            headers=self._headers(request_id, track_id),
                        )
                    # replayed: the stored status, headers and body, under a new request ID
                    hdrs = {**existing.headers, "Zuora-Request-Id": request_id}
                    return Response(
                        existing.body,
                        status_code=existing.status,
                        headers=hdrs,
                        media_type="application/json",
                    )
                record = s.idempotency[key] = IdempotencyRecord(
                    fingerprint=fingerprint, stored_at=now
                )
        delay = next((d for prefix, d in self.slow if request.url.path.startswith(prefix)), 0.0)
        if delay:
            await asyncio.sleep(delay)
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError):
            body = ZuoraError(GENERIC, MALFORMED_JSON, "Malformed JSON in the request body")
        req = Req(
            params=dict(request.path_params),
            query=parse_qsl(request.url.query, keep_blank_values=True),
            body=body,
            base_url=str(request.base_url).rstrip("/"),
            path=request.url.path,
        )
        with self.lock:
            try:
                if isinstance(body, ZuoraError):
                    raise body
                status, payload = 200, handler(req)
                if family == "classic":
                    payload.setdefault("success", True)
            except ZuoraError as exc:
                status, payload = self._error(family, exc)
            except Exception:
                if record is not None and key:
                    s.idempotency.pop(key, None)  # an emulator bug must not pin the key
                raise
            headers = self._headers(request_id, track_id)
            encoded = json.dumps(payload, separators=(",", ":")).encode()
            if record is not None:
                record.in_flight = False
                record.status, record.headers, record.body = status, headers, encoded
        if req.callouts:
            await self._send_callouts(req.callouts)
        return Response(encoded, status_code=status, headers=headers, media_type="application/json")

    def _respond(
        self, family: str, exc: ZuoraError, request_id: str, track_id: str | None
    ) -> Response:
        status, payload = self._error(family, exc)
        return JSONResponse(
            payload, status_code=status, headers=self._headers(request_id, track_id)
        )

    async def _unknown(self, request: Request) -> Response:
        return JSONResponse(
            {
                "success": False,
                "processId": _process_id(),
                "reasons": [
                    {
                        "code": GENERIC * 100 + 45,
                        "message": f"No such endpoint: {request.method} {request.url.path}",
                    }
                ],
            },
            status_code=404,
        )

    async def _token(self, request: Request) -> Response:
        """``POST /oauth/token``: form ``client_id``, ``client_secret``, ``grant_type``."""
        form = dict(parse_qsl((await request.body()).decode("latin-1")))
        if form.get("grant_type") != "client_credentials":
            return JSONResponse(
                {"code": 40000020, "message": "unsupported grant_type"}, status_code=400
            )
        if not (
            hmac.compare_digest(form.get("client_id", ""), self.client_id)
            and hmac.compare_digest(form.get("client_secret", ""), self.client_secret)
        ):
            return JSONResponse({"message": "Invalid client credentials"}, status_code=401)
        token = secrets.token_hex(16)
        with self.lock:
            self.store.tokens[token] = self.store.now() + self.token_ttl_s
        return JSONResponse(
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": int(self.token_ttl_s) - 1,
                "scope": "entity.1a2b7a37-3e7d-4cb3-b0e2-883de9e766cc platform.write service.usage.delete",
                "jti": new_id(),
            }
        )

    # --- Zuora Collect: Configurable Payment Retry ---------------------------------------------

    def _cpr_authorized(self, request: Request) -> bool:
        expected = "Basic " + base64.b64encode(":".join(self.collections_auth).encode()).decode()
        return hmac.compare_digest(request.headers.get("authorization", ""), expected)

    async def _cpr_cycle(self, request: Request) -> Response:
        if not self._cpr_authorized(request):
            return JSONResponse({"success": False, "message": "Unauthorized"}, status_code=401)
        with self.lock:
            inv = self.store.invoices.get(request.path_params["invoice"])
            cycle = inv.get("_cycle") if inv else None
            if inv is None or cycle is None:
                return JSONResponse({"cycles": []})
            acct = self.store.accounts[inv["accountId"]]
            return JSONResponse(
                {
                    "cycles": [
                        {
                            "account_id": acct["id"],
                            "invoice_id": inv["id"],
                            "payment_method_id": acct.get("defaultPaymentMethodId"),
                            "currency": inv["currency"],
                            "status": cycle["status"],
                            "current_attempt_number": len(cycle["attempts"]),
                            "next_attempt": stamp(cycle["next"]) if cycle.get("next") else None,
                            "customer_group": "All Remaining Customers",
                            "attempts": cycle["attempts"],
                        }
                    ]
                }
            )

    async def _cpr_remove(self, request: Request) -> Response:
        if not self._cpr_authorized(request):
            return JSONResponse({"success": False, "message": "Unauthorized"}, status_code=401)
        with self.lock:
            inv = self.store.invoices.get(request.path_params["invoice"])
            if inv is None or not inv.get("_cycle"):
                return JSONResponse({"success": False, "message": "No active retry cycle"})
            inv["_cycle"].update(status="Stopped", next=None)
        return JSONResponse({"success": True, "message": "Invoice removed from the retry cycle"})

    # --- callouts ---------------------------------------------------------------------------------

    async def _send_callouts(self, callouts: list[tuple[str, dict[str, str]]]) -> None:
        for event, ctx in callouts:
            template = self.templates.get(event)
            if template is None:
                continue
            full = {"Event.Timestamp": stamp(self.store.now()), "Event.EventCategory": event, **ctx}
            body = json.dumps(render_template(template, full), separators=(",", ":")).encode()
            event_id = f"{event}:{ctx.get('Payment.Id') or ctx.get('Invoice.Id') or ctx.get('Order.OrderNumber') or ctx.get('Usage.Id') or ctx.get('Contact.Id') or ctx.get('Account.Id')}"
            self.callout_log.append({"event": event, "body": json.loads(body)})
            if self.hold_callouts:
                self.held.append((body, event_id))
            else:
                await self.emit_webhook(body, event_id=event_id)

    def _sign(self, body: bytes) -> dict[str, str]:
        if not self.callout_hmac_key:
            return {}
        mac = hmac.new(self.callout_hmac_key.encode(), body, hashlib.sha256).hexdigest()
        return {self.callout_hmac_header: mac}

    async def _deliver(  # type: ignore[override]
        self,
        target: WebhookTarget,
        delivery: Delivery,
        body: bytes,
        headers: dict[str, str],
        sign: Any,
    ) -> None:
        """Zuora's delivery: a new ``Zuora-Request-Id`` per attempt; Basic auth by
        challenge/response unless preemptive; success only on HTTP 200 exactly; up to
        ``callout_attempts`` attempts (max 5)."""
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=10.0)
        attempts = max(1, min(int(self.callout_attempts), 5))
        delays = (0.0, *self.webhook_retry_delays)[:attempts]
        basic = None
        if target.basic_auth:
            user, password = target.basic_auth
            basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        for delay in delays:
            if delay:
                await asyncio.sleep(delay)
            delivery.attempts += 1
            hdrs = {
                "Content-Type": "application/json",
                **target.headers,
                **headers,
                **self._sign(body),
                "Zuora-Request-Id": str(uuid.uuid4()),
                "X-Amzn-Trace-Id": f"Root=1-{secrets.token_hex(4)}-{secrets.token_hex(12)}",
            }
            try:
                if basic and self.callout_auth == "preemptive":
                    hdrs["Authorization"] = basic
                resp = await self._http.post(target.url, content=body, headers=hdrs)
                if (
                    resp.status_code == 401
                    and basic
                    and self.callout_auth == "challenge"
                    and "www-authenticate" in resp.headers
                ):
                    hdrs["Authorization"] = basic
                    resp = await self._http.post(target.url, content=body, headers=hdrs)
                delivery.status = resp.status_code
                delivery.delivered = resp.status_code == 200
                delivery.error = None if delivery.delivered else resp.text[:200]
                if delivery.delivered:
                    return
            except httpx.HTTPError as exc:
                delivery.error = f"{type(exc).__name__}: {exc}"[:200]

    # --- scenario controls (Python) ---------------------------------------------------------------

    def set_card_decline(self, account_key: str, decline_code: str | None) -> None:
        with self.lock:
            acct = self.store.account(account_key)
            pm = self.store.payment_methods.get(acct.get("defaultPaymentMethodId") or "")
            if pm is None:
                pm = {
                    "id": new_id(),
                    "accountId": acct["id"],
                    "type": "CreditCard",
                    "cardNumber": "************4242",
                    "numConsecutiveFailures": 0,
                }
                self.store.payment_methods[pm["id"]] = pm
                acct["defaultPaymentMethodId"] = pm["id"]
            pm["_decline"] = decline_code or None

    async def decline(self, invoice_key: str, decline_code: str | None = None) -> dict[str, Any]:
        """A scheduled collection (Zuora's payment run) of the invoice is declined: a payment in
        ``Error`` and the Payment Declined callout. Run it in the emulator's loop."""
        req = Req(params={}, query=[], body=None, base_url="", path="", source="PaymentRun")
        with self.lock:
            inv = self.store.invoice(invoice_key)
            pay = self.api.charge(req, inv, decline=decline_code or "card_declined")
            self.api.start_retry_cycle(inv, pay)
            out = {"paymentId": pay["id"], "status": pay["status"]}
        await self._send_callouts(req.callouts)
        return out

    # --- control routes ------------------------------------------------------------------------------

    async def _json(self, request: Request) -> dict[str, Any]:
        try:
            data = json.loads((await request.body()) or b"{}")
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ValueError("control body must be a JSON object")
        return data

    async def _ctl_limits(self, request: Request) -> Response:
        data = await self._json(request)
        with self.lock:
            if "rate_per_minute" in data:
                self.rate_limit_per_minute = data["rate_per_minute"]
                self.store.rate_hits.clear()
            if "concurrency" in data:
                self.concurrency_limit = int(data["concurrency"])
            if "reserved" in data:
                self.reserved_concurrency = int(data["reserved"])
        return JSONResponse(
            {
                "rate_per_minute": self.rate_limit_per_minute,
                "concurrency": self.concurrency_limit,
                "reserved": self.reserved_concurrency,
            }
        )

    async def _ctl_expire(self, request: Request) -> Response:
        with self.lock:
            n = len(self.store.tokens)
            for t in self.store.tokens:
                self.store.tokens[t] = 0
        return JSONResponse({"expired": n})

    async def _ctl_slow(self, request: Request) -> Response:
        data = await self._json(request)
        with self.lock:
            self.slow = [(data["path"], float(data["delay_s"]))] if data.get("path") else []
        return JSONResponse({"slow": self.slow})

    async def _ctl_card(self, request: Request) -> Response:
        data = await self._json(request)
        try:
            self.set_card_decline(request.path_params["key"], data.get("decline_code"))
        except ZuoraError as exc:
            return JSONResponse({"error": exc.message}, status_code=404)
        return JSONResponse({"ok": True})

    async def _ctl_decline(self, request: Request) -> Response:
        data = await self._json(request)
        try:
            return JSONResponse(
                await self.decline(request.path_params["key"], data.get("decline_code"))
            )
        except ZuoraError as exc:
            return JSONResponse({"error": exc.message}, status_code=404)

    async def _ctl_callout_settings(self, request: Request) -> Response:
        data = await self._json(request)
        with self.lock:
            if "auth" in data:
                self.callout_auth = data["auth"]
            if "hmac_key" in data:
                self.callout_hmac_key = data["hmac_key"]
            if "hmac_header" in data:
                self.callout_hmac_header = data["hmac_header"]
            if "attempts" in data:
                self.callout_attempts = int(data["attempts"])
            for event, template in (data.get("templates") or {}).items():
                self.templates[event] = template
        return JSONResponse({"auth": self.callout_auth, "attempts": self.callout_attempts})

    async def _ctl_hold(self, request: Request) -> Response:
        self.hold_callouts = True
        return JSONResponse({"holding": True})

    async def _ctl_release(self, request: Request) -> Response:
        """Send held callouts, in ``order``: ``fifo`` | ``reverse`` | ``shuffle`` (Zuora does
        not guarantee delivery order)."""
        data = await self._json(request)
        held, self.held, self.hold_callouts = list(self.held), [], False
        order = data.get("order", "fifo")
        if order == "reverse":
            held.reverse()
        elif order == "shuffle":
            random.shuffle(held)
        await self.wait_for_deliveries()  # what is already on its way arrives first
        deliveries = []
        for body, event_id in held:  # one after the other: the order asked for is the order sent
            for target in list(self.webhook_targets):
                delivery = Delivery(seq=self.next_seq(), url=target.url, event_id=event_id)
                self.deliveries.append(delivery)
                deliveries.append(delivery)
                await self._deliver(target, delivery, body, {}, None)
        return JSONResponse({"deliveries": [d.__dict__ for d in deliveries]})

    async def _ctl_send(self, request: Request) -> Response:
        """Send one raw callout body now (a resend from the callout history) and wait."""
        body = await request.body()
        deliveries = await self.emit_webhook(body, event_id=None)
        await self.wait_for_deliveries()
        return JSONResponse({"deliveries": [d.__dict__ for d in deliveries]})

    async def _ctl_callouts(self, request: Request) -> Response:
        return JSONResponse({"callouts": self.callout_log})


def _process_id() -> str:
    return secrets.token_hex(8).upper()
