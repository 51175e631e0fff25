"""``StripeEmulator``: auth, the request pipeline (params, idempotency, expand, errors, Request-Id),
webhook delivery and the ``/_sandbox/stripe`` control routes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..framework import Emulator, WebhookTarget
from .errors import StripeError, fault_error
from .forms import as_list, decode, parse_pairs
from .routes import compile_routes
from .signing import signature_header
from .state import StripeState

log = logging.getLogger("sandbox.stripe")

#: Stripe's rate limiter in test mode (billing-apis.md §1f): 25 requests/s, search 20/s
SANDBOX_RATE_PER_S = 25.0
SEARCH_RATE_PER_S = 20.0
#: how long a write takes to show in search results. Stripe: "data is searchable in less than a
#: minute" (longer during incidents); a second here keeps the suite quick yet makes any
#: read-after-write through search visible as the bug it is.
DEFAULT_SEARCH_LAG_S = 1.0

#: what stripe-python 16.1 pins (``stripe.api_version``); events carry it as their api_version
DEFAULT_API_VERSION = "2026-10-28.endive"


@dataclass
class _IdemRecord:
    method: str
    path: str
    params: Any
    created: float
    request_id: str
    in_flight: bool = True
    status: int = 0
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class StripeEmulator(Emulator):
    """A stateful Stripe Billing API for the official ``stripe`` client (see package docs)."""

    name = "stripe"

    def __init__(
        self,
        api_key: str = "sk_test_revbridge_local",
        webhook_secret: str | None = "whsec_revbridge_local",  # noqa: S107 - sandbox default
        webhook_targets: Iterable[WebhookTarget | str] = (),
        *,
        api_version: str = DEFAULT_API_VERSION,
        idempotency_ttl_s: float = 24 * 3600,
        retry_schedule_days: tuple[int, ...] = (3, 5, 7),
        final_dunning_action: str = "cancel",
        realistic: bool = True,
        rate_limit_per_s: float | None = SANDBOX_RATE_PER_S,
        search_rate_per_s: float | None = SEARCH_RATE_PER_S,
        search_lag_s: float = DEFAULT_SEARCH_LAG_S,
    ) -> None:
        self.api_key = api_key
        self.webhook_secrets: list[str] = [webhook_secret] if webhook_secret else []
        self.api_version = api_version
        self.idempotency_ttl_s = idempotency_ttl_s
        self.retry_schedule_days = tuple(retry_schedule_days)
        self.final_dunning_action = final_dunning_action
        # A real test-mode account's limits and lag (billing-apis.md §1f, Search docs); off with
        # ``realistic=False`` for a focused unit test.
        self.rate_limit_per_s = rate_limit_per_s if realistic else None
        self.search_rate_per_s = search_rate_per_s if realistic else None
        self.search_lag_s = search_lag_s if realistic else 0.0
        self._windows: dict[str, deque[float]] = {"global": deque(), "search": deque()}
        #: the events each webhook endpoint is enabled for (``["*"]``: all), as the Dashboard
        #: shows them at ``GET /v1/webhook_endpoints`` (one endpoint per webhook target)
        self.webhook_enabled_events: list[str] = ["*"]
        #: how many requests were answered 429 (tests and bench read it)
        self.rate_limited = 0
        #: seconds every vendor request waits after reserving its idempotency key (race tests)
        self.latency_s = 0.0
        self.clock_offset = 0.0
        self._routes = compile_routes()
        targets = [WebhookTarget(url=t) if isinstance(t, str) else t for t in webhook_targets]
        super().__init__(targets)

    # --- state ------------------------------------------------------------------------------------

    def now(self) -> float:
        return time.time() + self.clock_offset

    def reset_state(self) -> None:
        self.clock_offset = 0.0
        self.state = StripeState(self.now, self.api_version)
        self.state.retry_schedule_days = self.retry_schedule_days
        self.state.final_dunning_action = self.final_dunning_action
        self.state.webhook_count = lambda: len(self.webhook_targets)
        self.state.search_lag_s = getattr(self, "search_lag_s", 0.0)
        self.state.webhook_endpoints = self._webhook_endpoints
        self.idempotency: dict[str, _IdemRecord] = {}

    def seed(self, data: Mapping[str, Any]) -> dict[str, Any]:
        return self.state.seed(data)

    async def _seed(self, request: Request) -> Response:
        try:
            data = await request.json()
        except ValueError:
            return JSONResponse({"error": "seed body must be JSON"}, status_code=400)
        with self.lock:
            try:
                return JSONResponse(self.seed(data))
            except StripeError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            except (ValueError, KeyError, TypeError) as exc:
                return JSONResponse(
                    {"error": f"bad seed: {type(exc).__name__}: {exc}"[:300]}, status_code=400
                )

    # --- helpers for tests and the demo (no events, safe from any thread) --------------------------

    def set_card_decline(self, customer_id: str, decline_code: str | None) -> None:
        """Make the customer's card decline every charge with ``decline_code`` (None: succeed)."""
        with self.lock:
            self.state.set_decline(customer_id, decline_code)

    def add_webhook_secret(self, secret: str) -> None:
        """Sign with one more endpoint secret (rotation: both ``v1=`` entries are sent)."""
        with self.lock:
            if secret not in self.webhook_secrets:
                self.webhook_secrets.append(secret)

    def remove_webhook_secret(self, secret: str) -> None:
        with self.lock:
            if secret in self.webhook_secrets:
                self.webhook_secrets.remove(secret)

    def advance_clock(self, seconds: float) -> float:
        """Move the emulator's clock (created stamps, idempotency expiry, dedup windows)."""
        with self.lock:
            self.clock_offset += seconds
            return self.now()

    def events(self, type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            evts = list(reversed(self.state.all("event")))
            return [e for e in evts if type is None or e["type"] == type]

    def meter_events(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.state.meter_events)

    # --- errors -----------------------------------------------------------------------------------

    def error_response(self, status: int, message: str) -> Response:
        err = fault_error(status, message)
        return JSONResponse(
            err.body(),
            status_code=status,
            headers={"Request-Id": self._request_id(), **err.headers},
        )

    def _request_id(self) -> str:
        return self.state.new_id("req", 14)

    # --- webhooks ---------------------------------------------------------------------------------

    def sign(self, body: bytes, url: str) -> dict[str, str]:
        """``Stripe-Signature`` for one delivery attempt (fresh timestamp each time)."""
        return {"Stripe-Signature": signature_header(body, list(self.webhook_secrets))}

    async def deliver_events(self, events: list[dict[str, Any]]) -> None:
        for evt in events:
            if not self.webhook_targets:
                continue
            body = json.dumps(evt).encode()
            await self.emit_webhook(
                body,
                headers={"User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)"},
                event_id=evt["id"],
                sign=self.sign,
            )

    def _webhook_endpoints(self) -> list[dict[str, Any]]:
        """The account's webhook endpoints: one per webhook target (newest first)."""
        out = []
        for n, target in enumerate(self.webhook_targets):
            out.append(
                {
                    "id": f"we_{n + 1:024d}",
                    "object": "webhook_endpoint",
                    "api_version": None,
                    "application": None,
                    "created": 0,
                    "description": None,
                    "enabled_events": list(self.webhook_enabled_events),
                    "livemode": False,
                    "metadata": {},
                    "status": "enabled",
                    "url": target.url,
                }
            )
        return list(reversed(out))

    # --- rate limits ------------------------------------------------------------------------------

    def set_search_lag(self, seconds: float) -> None:
        """How long a write takes to reach ``/search`` results from now on."""
        with self.lock:
            self.search_lag_s = self.state.search_lag_s = max(0.0, float(seconds))

    def _rate_limit(self, path: str) -> StripeError | None:
        """Stripe's rate limiter: at most ``rate_limit_per_s`` requests in any second (25 in
        test mode), search at most ``search_rate_per_s`` (20) on top; past it a 429 with
        ``code=rate_limit`` and ``Stripe-Rate-Limited-Reason``. Refused requests do not count."""
        limits = [("global", self.rate_limit_per_s, "global-rate")]
        if path.endswith("/search"):
            limits.append(("search", self.search_rate_per_s, "endpoint-rate"))
        now = time.monotonic()
        with self.lock:
            for name, rate, reason in limits:
                if not rate:
                    continue
                window = self._windows[name]
                while window and window[0] <= now - 1.0:
                    window.popleft()
                if len(window) >= rate:
                    self.rate_limited += 1
                    return StripeError(
                        429,
                        "Request rate limit exceeded. You can learn more about rate limits here "
                        "https://stripe.com/docs/rate-limits.",
                        code="rate_limit",
                        headers={"Stripe-Rate-Limited-Reason": reason},
                    )
            for name, rate, _ in limits:
                if rate:
                    self._windows[name].append(now)
        return None

    # --- the API ----------------------------------------------------------------------------------

    def vendor_routes(self) -> list[BaseRoute]:
        ctl = "/_sandbox/stripe"
        return [
            Route(ctl + "/invoices/{id}/pay", self._ctl_pay, methods=["POST"]),
            Route(ctl + "/invoices/{id}/fail_payment", self._ctl_fail, methods=["POST"]),
            Route(ctl + "/subscriptions/{id}/renew", self._ctl_renew, methods=["POST"]),
            Route(ctl + "/customers/{id}/card", self._ctl_card, methods=["POST"]),
            Route(ctl + "/events/{id}/resend", self._ctl_resend, methods=["POST"]),
            Route(ctl + "/clock", self._ctl_clock, methods=["GET", "POST"]),
            Route(ctl + "/webhook_secrets", self._ctl_secrets, methods=["GET", "POST", "DELETE"]),
            Route(ctl + "/meter_events", self._ctl_meter_events, methods=["GET"]),
            Route(ctl + "/realism", self._ctl_realism, methods=["GET", "POST"]),
            Route("/v1/{rest:path}", self._api, methods=["GET", "POST", "DELETE"]),
        ]

    def _respond(self, status: int, body: bytes, headers: Mapping[str, str]) -> Response:
        return Response(body, status_code=status, media_type="application/json", headers=headers)

    def _auth_error(self, auth: str) -> StripeError | None:
        key = None
        if auth.lower().startswith("bearer "):
            key = auth[7:].strip()
        elif auth.lower().startswith("basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except (ValueError, UnicodeDecodeError):
                key = None
        if not key:
            return StripeError(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details.",
            )
        if key != self.api_key:
            shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else key
            return StripeError(401, f"Invalid API Key provided: {shown}")
        return None

    async def _api(self, request: Request) -> Response:
        req_id = self._request_id()
        headers = {
            "Request-Id": req_id,
            "Stripe-Version": request.headers.get("stripe-version") or self.api_version,
        }
        method, path = request.method, request.url.path

        def fail(err: StripeError) -> Response:
            return self._respond(
                err.status, json.dumps(err.body()).encode(), {**headers, **err.headers}
            )

        auth_err = self._auth_error(request.headers.get("authorization", ""))
        if auth_err:
            return fail(auth_err)
        match = None
        for m, pattern, handler in self._routes:
            if m == method and (found := pattern.match(path)):
                match = (handler, found.groupdict())
                break
        if match is None:
            return fail(
                StripeError(
                    404,
                    f"Unrecognized request URL ({method}: {path}). Please see "
                    "https://stripe.com/docs or we can help at https://support.stripe.com/.",
                )
            )
        handler, path_params = match
        limited = self._rate_limit(path)
        if limited is not None:
            return fail(limited)
        try:
            if method == "POST":
                raw = (await request.body()).decode("utf-8")
                if "json" in request.headers.get("content-type", "") and raw.strip():
                    params = json.loads(raw)
                else:
                    params = decode(parse_pairs(raw))
            else:
                params = decode(parse_pairs(request.url.query))
        except StripeError as exc:
            return fail(exc)
        except ValueError as exc:
            return fail(StripeError(400, f"Invalid request body: {exc}"))

        idem_key = request.headers.get("idempotency-key") if method == "POST" else None
        record = None
        if idem_key:
            if len(idem_key) > 255:
                return fail(
                    StripeError(
                        400,
                        "Idempotency-Key must be at most 255 characters long.",
                        param="Idempotency-Key",
                    )
                )
            with self.lock:
                now = self.now()
                record = self.idempotency.get(idem_key)
                if (
                    record
                    and not record.in_flight
                    and now - record.created > self.idempotency_ttl_s
                ):
                    del self.idempotency[idem_key]
                    record = None
                if record:
                    if record.in_flight:
                        return fail(
                            StripeError(
                                409,
                                "There is currently another in-progress request using this "
                                f"Stripe idempotent key (that probably means you submitted twice, "
                                f"and the other request is still going through): {idem_key}. "
                                "Please try again later.",
                                type="idempotency_error",
                                code="idempotency_key_in_use",
                            )
                        )
                    if (record.method, record.path) != (method, path):
                        return fail(
                            StripeError(
                                400,
                                "Keys for idempotent requests can only be used for the same "
                                f"endpoint they were first used for ('{record.method} "
                                f"{record.path}' vs '{method} {path}'). Try using a key other "
                                f"than '{idem_key}' if you meant to execute a different request.",
                                type="idempotency_error",
                            )
                        )
                    if record.params != params:
                        return fail(
                            StripeError(
                                400,
                                "Keys for idempotent requests can only be used with the same "
                                "parameters they were first used with. Try using a key other "
                                f"than '{idem_key}' if you meant to execute a different request.",
                                type="idempotency_error",
                            )
                        )
                    return self._respond(
                        record.status,
                        record.body,
                        {
                            **headers,
                            **record.headers,
                            "Idempotency-Key": idem_key,
                            "Idempotent-Replayed": "true",
                            "Original-Request": record.request_id,
                        },
                    )
                record = _IdemRecord(method, path, params, now, req_id)
                self.idempotency[idem_key] = record
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

        extra: dict[str, str] = {}
        with self.lock:
            state = self.state
            state.request_ctx = {"id": req_id, "idempotency_key": idem_key}
            cacheable = True
            try:
                result = handler(state, params, **path_params)
                body = state.render(result) if "_seq" in result else result
                expand = as_list(params, "expand") if isinstance(params, dict) else []
                if expand:
                    body = state.expand(body, expand)
                status = 200
            except StripeError as exc:
                status, body, extra, cacheable = exc.status, exc.body(), exc.headers, exc.cacheable
            except Exception as exc:  # a sandbox bug: answer like Stripe's 500, keep the trace
                log.exception("stripe emulator: %s %s failed", method, path)
                status = 500
                body = StripeError(
                    500,
                    f"An unknown error occurred while processing your request "
                    f"({type(exc).__name__}: {exc}).",
                    type="api_error",
                ).body()
            finally:
                state.request_ctx = {"id": None, "idempotency_key": None}
            events, state.outbox = state.outbox, []
            raw_body = json.dumps(body).encode()
            if idem_key and record is not None:
                if cacheable:
                    record.in_flight = False
                    record.status, record.body, record.headers = status, raw_body, dict(extra)
                else:
                    self.idempotency.pop(idem_key, None)
        await self.deliver_events(events)
        if idem_key:
            extra = {**extra, "Idempotency-Key": idem_key}
        return self._respond(status, raw_body, {**headers, **extra})

    # --- control plane ----------------------------------------------------------------------------

    async def _control(self, fn: Any) -> Response:
        """Run ``fn(state)`` under the lock as Stripe's own machinery (no request, no key)."""
        with self.lock:
            try:
                result = fn(self.state)
                status = 200
            except StripeError as exc:
                result, status = exc.body(), exc.status
            events, self.state.outbox = self.state.outbox, []
        await self.deliver_events(events)
        return JSONResponse(result, status_code=status)

    async def _json(self, request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        data = json.loads(raw)
        return data if isinstance(data, dict) else {}

    async def _ctl_pay(self, request: Request) -> Response:
        inv_id = request.path_params["id"]

        def run(s: StripeState) -> Any:
            inv = s.get(inv_id, "invoice")
            if inv["status"] == "draft":
                s.finalize(inv)
            if inv["status"] in ("open", "uncollectible"):
                ok, err = s.attempt_payment(inv, automatic=True)
                return {
                    "invoice": s.render(inv),
                    "paid": ok,
                    "error": err.body()["error"] if err else None,
                }
            raise StripeError(400, f"Invoice {inv_id} is {inv['status']}; nothing to collect.")

        return await self._control(run)

    async def _ctl_fail(self, request: Request) -> Response:
        inv_id = request.path_params["id"]
        code = (await self._json(request)).get("decline_code") or "generic_decline"

        def run(s: StripeState) -> Any:
            inv = s.get(inv_id, "invoice")
            if inv["status"] == "draft":
                s.finalize(inv)
            if inv["status"] not in ("open", "uncollectible"):
                raise StripeError(400, f"Invoice {inv_id} is {inv['status']}; nothing to fail.")
            _, err = s.attempt_payment(inv, decline=code, automatic=True)
            return {
                "invoice": s.render(inv),
                "paid": False,
                "error": err.body()["error"] if err else None,
            }

        return await self._control(run)

    async def _ctl_renew(self, request: Request) -> Response:
        sub_id = request.path_params["id"]
        body = await self._json(request)

        def run(s: StripeState) -> Any:
            sub = s.get(sub_id, "subscription")
            if body.get("advance_clock"):
                ahead = sub["_period"][1] - s.now()
                if ahead > 0:
                    self.clock_offset += ahead
            sub, inv = s.renew_subscription(sub_id)
            return {"subscription": s.render(sub), "invoice": s.render(inv) if inv else None}

        return await self._control(run)

    async def _ctl_card(self, request: Request) -> Response:
        cus_id = request.path_params["id"]
        code = (await self._json(request)).get("decline_code")

        def run(s: StripeState) -> Any:
            s.set_decline(cus_id, code)
            return {"customer": cus_id, "decline_code": code}

        return await self._control(run)

    async def _ctl_resend(self, request: Request) -> Response:
        evt_id = request.path_params["id"]
        with self.lock:
            evt = self.state.find(evt_id, "event")
        if evt is None:
            return JSONResponse({"error": f"no such event {evt_id}"}, status_code=404)
        await self.deliver_events([evt])
        return JSONResponse({"resent": evt_id, "targets": len(self.webhook_targets)})

    async def _ctl_clock(self, request: Request) -> Response:
        if request.method == "POST":
            self.advance_clock(float((await self._json(request)).get("seconds", 0)))
        return JSONResponse({"now": int(self.now()), "offset_s": self.clock_offset})

    async def _ctl_secrets(self, request: Request) -> Response:
        if request.method != "GET":
            secret = (await self._json(request)).get("secret")
            if not secret:
                return JSONResponse({"error": "secret required"}, status_code=400)
            if request.method == "POST":
                self.add_webhook_secret(secret)
            else:
                self.remove_webhook_secret(secret)
        return JSONResponse({"secrets": list(self.webhook_secrets)})

    async def _ctl_meter_events(self, request: Request) -> Response:
        customer = request.query_params.get("customer")
        name = request.query_params.get("event_name")
        with self.lock:
            evts = [
                e
                for e in self.state.meter_events
                if (not customer or e["payload"].get("stripe_customer_id") == customer)
                and (not name or e["event_name"] == name)
            ]
        return JSONResponse({"meter_events": evts})

    async def _ctl_realism(self, request: Request) -> Response:
        """Read or change the account's limits and search lag (None/0 turns one off)."""
        if request.method == "POST":
            body = await self._json(request)
            with self.lock:
                for name in ("rate_limit_per_s", "search_rate_per_s"):
                    if name in body:
                        setattr(self, name, float(body[name]) if body[name] else None)
            if "search_lag_s" in body:
                self.set_search_lag(float(body["search_lag_s"] or 0))
        return JSONResponse(
            {
                "rate_limit_per_s": self.rate_limit_per_s,
                "search_rate_per_s": self.search_rate_per_s,
                "search_lag_s": self.search_lag_s,
                "rate_limited": self.rate_limited,
            }
        )
