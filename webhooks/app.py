"""The webhook starter service (ASGI): verify → normalize → route to a workflow, answer fast.

Rules (DESIGN §2): verify credentials over the raw request first — a rejected request makes no
Temporal call; every rejection is a status code with a one-line reason; Temporal unreachable is a
503 so the vendor retries; all work happens in workflows.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from domain.connect import client_connect_kwargs
from domain.settings import Settings
from webhooks import chargebee
from webhooks.errors import Rejected
from webhooks.router import route

log = logging.getLogger("revbridge.webhooks")

MAX_BODY = 1_000_000  # bytes; vendor events are far smaller

ClientProvider = Callable[[], Awaitable[Client]]


class TemporalConnection:
    """Connects on first use and again after a failure, so the service starts (and answers 503)
    while Temporal is down, and recovers without a restart."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Client:
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await Client.connect(**client_connect_kwargs())
                except Exception as exc:  # connection refused, DNS, TLS: all mean "not now"
                    log.warning("temporal connect failed: %s", type(exc).__name__)
                    raise Rejected(
                        503, "workflow engine unavailable, retry later", "temporal_unavailable"
                    ) from None
            return self._client


def create_app(settings: Settings | None = None, client: ClientProvider | None = None) -> Starlette:
    settings = settings or Settings.from_env(os.environ)
    get_client = client or TemporalConnection()
    counts: Counter[str] = Counter()

    def reject(exc: Rejected, provider: str) -> Response:
        counts[f"{provider}.rejected.{exc.code}"] += 1
        log.info("webhook rejected provider=%s status=%s reason=%s", provider, exc.status, exc.code)
        return JSONResponse({"error": exc.reason}, status_code=exc.status)

    async def read_json(request: Request) -> object:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_BODY:
            raise Rejected(413, "body too large", "too_large")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise Rejected(413, "body too large", "too_large")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            reason = (
                f"malformed JSON at position {exc.pos}"
                if isinstance(exc, json.JSONDecodeError)
                else "body is not UTF-8"
            )
            raise Rejected(400, reason, "malformed_json") from None

    async def chargebee_webhook(request: Request) -> Response:
        cfg = settings.webhooks
        try:
            if not (cfg.chargebee_username and cfg.chargebee_password):
                raise Rejected(
                    503, "chargebee webhook credentials are not configured", "not_configured"
                )
            chargebee.check_basic_auth(
                request.headers.get("authorization"),
                cfg.chargebee_username,
                cfg.chargebee_password.get_secret_value(),
            )
            event = chargebee.normalize(await read_json(request))
            if event is None:
                counts["chargebee.ignored"] += 1
                return JSONResponse(
                    {"status": "ignored", "reason": "event type not routed"}, status_code=200
                )
            status, body = await route(await get_client(), event)
        except Rejected as exc:
            return reject(exc, "chargebee")
        counts[f"chargebee.{body['status']}"] += 1
        return JSONResponse(body, status_code=status)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def metrics(request: Request) -> Response:
        return JSONResponse(dict(counts))

    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/webhooks/chargebee", chargebee_webhook, methods=["POST"]),
        ]
    )
    app.state.counts = counts
    return app
