"""The webhook starter service (ASGI): verify → normalize → route to a workflow, answer fast.

Rules (DESIGN §2): verify over the raw request bytes first — a rejected request makes no Temporal
call; every rejection is a status code with a one-line reason, logged and counted; our own writes
coming back (echoes) are dropped; Temporal unreachable is a 503 so the vendor retries; all work
happens in workflows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from domain.golden import SyncSignal, flush_workflow_id
from domain.models import CaseOpened, CrmAccountChanged, DealWon, InvoicePaid, PaymentFailed
from domain.settings import Settings
from infra.connection import client_connect_kwargs
from infra.telemetry import WebhookMetrics, WebhookTracingMiddleware, temporal_interceptors
from webhooks import chargebee, hubspot, recurly, router, salesforce, stripe, zendesk, zuora
from webhooks.errors import Rejected

# the bounded parser every route shares (size, depth, number bounds), re-exported for the routes
from webhooks.parsing import Echo, parse_json, read_body

log = logging.getLogger("revbridge.webhooks")

RETRY_AFTER_S = "10"  # seconds, on every 503 (Temporal unreachable, not configured)

ClientProvider = Callable[[], Awaitable[Client]]


class TemporalConnection:
    """Connects on first use and again after a failure, so the service starts (and answers 503)
    while Temporal is down, and recovers without a restart."""

    def __init__(self) -> None:
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        #: set while ``revbridge webhooks`` waits for Temporal at start (infra/startup.py): requests
        #: answer 503 at once instead of each trying a connect of its own
        self.waiting = False
        self._health: tuple[float, bool, str] = (0.0, False, "not checked yet")

    def attach(self, client: Client) -> None:
        """The client the start-up wait connected (and checked)."""
        self._client = client
        self.waiting = False

    async def ready(self) -> tuple[bool, str]:
        """Readiness: Temporal answers its health check now (cached for a second)."""
        at, ok, why = self._health
        if time.monotonic() - at < 1.0:
            return ok, why
        try:
            client = await self()
            ok = await client.service_client.check_health(timeout=timedelta(seconds=2))
            why = "temporal reachable" if ok else "temporal not serving"
        except Rejected:
            ok, why = False, "waiting for temporal" if self.waiting else "temporal unreachable"
        except Exception as exc:  # unreachable after start: the SDK reconnects by itself
            ok, why = False, f"temporal unreachable ({type(exc).__name__})"
        self._health = (time.monotonic(), ok, why)
        return ok, why

    async def __call__(self) -> Client:
        if self._client is None and self.waiting:
            raise Rejected(503, "workflow engine unavailable, retry later", "temporal_unavailable")
        async with self._lock:
            if self._client is None:
                try:
                    self._client = await Client.connect(
                        **client_connect_kwargs(), interceptors=temporal_interceptors()
                    )
                except Exception as exc:  # connection refused, DNS, TLS: all mean "not now"
                    log.warning("temporal connect failed: %s", type(exc).__name__)
                    raise Rejected(
                        503, "workflow engine unavailable, retry later", "temporal_unavailable"
                    ) from None
            return self._client


def create_app(settings: Settings | None = None, client: ClientProvider | None = None) -> Starlette:
    settings = settings or Settings.from_env(os.environ)
    cfg = settings.webhooks
    get_client = client or TemporalConnection()
    metrics = WebhookMetrics()
    count = metrics.count

    def reject(exc: Rejected, provider: str) -> Response:
        count(provider, "rejected", exc.code)
        log.info("webhook rejected provider=%s status=%s reason=%s", provider, exc.status, exc.code)
        # 503 means "not now": tell the vendor when to come back (docs/reliability.md)
        headers = {"Retry-After": RETRY_AFTER_S} if exc.status == 503 else None
        return JSONResponse({"error": exc.reason}, status_code=exc.status, headers=headers)

    def echo(provider: str, event: Echo) -> Response:
        count(provider, "echo")
        return JSONResponse({"status": "echo", "reason": event.reason}, status_code=200)

    #: account sync (issue 19): customer/subscription/account changes reach it when switched on
    sync = cfg.account_sync
    flusher = flush_workflow_id(settings.billing, settings.crm)

    async def dispatch(
        provider: str, event: PaymentFailed | InvoicePaid | SyncSignal | Echo | None
    ) -> Response:
        if event is None:
            count(provider, "ignored", "event_not_routed")
            return JSONResponse(
                {"status": "ignored", "reason": "event type not routed"}, status_code=200
            )
        if isinstance(event, Echo):
            return echo(provider, event)
        # the whole event is validated and planned before the first Temporal call
        if isinstance(event, SyncSignal):
            plan = router.plan_sync(event, flusher)
        else:
            plan = router.plan(event, settings.task_queue)
        status, body = await router.execute(await get_client(), plan, settings.task_queue)
        count(provider, body["status"], workflow_id=body.get("workflow_id"))
        return JSONResponse(body, status_code=status)

    async def dispatch_crm(provider: str, plan: router.Plan) -> tuple[int, dict]:
        status, body = await router.execute(await get_client(), plan, settings.task_queue)
        count(provider, body["status"], workflow_id=body.get("workflow_id"))
        return status, body

    def ours(provider: str, configured: str, role: str) -> None:
        """One deployment serves one billing x CRM pair: another vendor's events are not ours
        (its IDs would be looked up in the wrong system)."""
        if provider != configured:
            raise Rejected(
                404, f"{provider} is not this deployment's {role} ({configured})", "not_ours"
            )

    async def chargebee_webhook(request: Request) -> Response:
        try:
            ours("chargebee", settings.billing, "billing platform")
            if not (cfg.chargebee_username and cfg.chargebee_password):
                raise Rejected(
                    503, "chargebee webhook credentials are not configured", "not_configured"
                )
            chargebee.check_basic_auth(
                request.headers.get("authorization"),
                cfg.chargebee_username,
                cfg.chargebee_password.get_secret_value(),
            )
            event = chargebee.normalize(
                parse_json(await read_body(request)), api_user=cfg.chargebee_api_user, sync=sync
            )
            return await dispatch("chargebee", event)
        except Rejected as exc:
            return reject(exc, "chargebee")

    async def stripe_webhook(request: Request) -> Response:
        try:
            ours("stripe", settings.billing, "billing platform")
            if not cfg.stripe_secrets:
                raise Rejected(503, "stripe webhook secrets are not configured", "not_configured")
            raw = await read_body(request)
            stripe.verify(
                raw,
                request.headers.get("stripe-signature"),
                [s.get_secret_value() for s in cfg.stripe_secrets],
                now=time.time(),
            )
            return await dispatch("stripe", stripe.normalize(parse_json(raw), sync=sync))
        except Rejected as exc:
            return reject(exc, "stripe")

    recurly_lookup: list[recurly.RecurlyLookup] = []

    async def recurly_webhook(request: Request) -> Response:
        """Signed JSON notifications (IDs only): verify, then re-fetch what they name."""
        try:
            ours("recurly", settings.billing, "billing platform")
            if not cfg.recurly_secrets or settings.recurly is None:
                raise Rejected(503, "recurly webhooks are not configured", "not_configured")
            raw = await read_body(request)
            recurly.verify(
                raw,
                request.headers.get("recurly-signature"),
                [s.get_secret_value() for s in cfg.recurly_secrets],
                now_ms=int(time.time() * 1000),
            )
            note = recurly.parse(parse_json(raw), sync=sync)
            if note is None:
                return await dispatch("recurly", None)
            if not recurly_lookup:
                recurly_lookup.append(recurly.RecurlyLookup(settings.recurly))
            return await dispatch("recurly", await recurly_lookup[0].resolve(note))
        except Rejected as exc:
            return reject(exc, "recurly")

    async def zuora_webhook(request: Request) -> Response:
        """Callouts: Basic by challenge/response or preemptive, optional HMAC; exactly 200."""
        return await zuora.receive(request, settings, get_client, count)

    async def zendesk_webhook(request: Request) -> Response:
        """A new Zendesk ticket (signed: timestamp + body) starts its support context run."""
        return await zendesk.receive(request, settings, get_client, count)

    hubspot_lookup: list[hubspot.HubSpotLookup] = []

    async def hubspot_webhook(request: Request) -> Response:
        """A batch of up to 100 events: each is judged alone, so one bad or duplicate event
        never sinks the others (the whole batch is only retried when Temporal is down)."""
        try:
            ours("hubspot", settings.crm, "CRM")
            if cfg.hubspot_client_secret is None:
                raise Rejected(503, "hubspot client secret is not configured", "not_configured")
            raw = await read_body(request)
            hubspot.verify(
                method=request.method,
                uri=cfg.hubspot_public_url or str(request.url),
                body=raw,
                signature=request.headers.get("x-hubspot-signature-v3"),
                timestamp=request.headers.get("x-hubspot-request-timestamp"),
                secret=cfg.hubspot_client_secret.get_secret_value(),
                now_ms=int(time.time() * 1000),
            )
            events = hubspot.parse_batch(parse_json(raw))
        except Rejected as exc:
            return reject(exc, "hubspot")
        app_id = settings.hubspot.app_id if settings.hubspot else None
        # every event of the batch is judged (validated and planned) before the first Temporal
        # call; each then starts what it should, or is dead-lettered alone
        results: list[dict[str, str] | router.Plan] = []
        #: company/contact changes for the account sync: looked up together (one read)
        changed: dict[int, CrmAccountChanged | hubspot.ContactChanged] = {}
        for raw_event in events:
            try:
                outcome = hubspot.normalize(raw_event, own_app_id=app_id)
                if isinstance(outcome, DealWon | CaseOpened):
                    results.append(router.plan_crm(outcome, settings.billing))
                    continue
                if sync and isinstance(outcome, CrmAccountChanged | hubspot.ContactChanged):
                    changed[len(results)] = outcome
                    results.append({"status": "ignored", "reason": "not linked to a customer"})
                    continue
            except Rejected as exc:
                count("hubspot", "dead_letter", exc.code)
                log.warning("hubspot event dead-lettered reason=%s", exc.code)
                results.append({"status": "dead_letter", "reason": exc.reason})
                continue
            if outcome is hubspot.ECHO:
                count("hubspot", "echo")
                results.append({"status": "echo"})
            elif outcome is None:
                count("hubspot", "ignored", "event_not_routed")
                results.append({"status": "ignored", "reason": "event type not routed"})
            else:
                # Account sync is not built yet: the canonical event is acknowledged and counted,
                # not lost silently.
                count("hubspot", "unrouted", type(outcome).__name__)
                results.append(
                    {"status": "ignored", "reason": f"no workflow for {type(outcome).__name__} yet"}
                )
        if changed and settings.hubspot is not None:
            try:
                if not hubspot_lookup:
                    hubspot_lookup.append(hubspot.HubSpotLookup(settings.hubspot))
                signals = await hubspot_lookup[0].resolve(list(changed.values()), settings.billing)
            except Rejected as exc:  # HubSpot unreachable: HubSpot redelivers the whole batch
                return reject(exc, "hubspot")
            for i, signal in zip(changed, signals, strict=True):
                if signal is not None:
                    results[i] = router.plan_sync(signal, flusher)
                else:
                    count("hubspot", "ignored", "not_linked")
        for i, item in enumerate(results):
            if isinstance(item, router.Plan):
                try:
                    _, results[i] = await dispatch_crm("hubspot", item)
                except Rejected as exc:
                    if exc.status == 503:  # Temporal down: HubSpot retries the whole batch
                        return reject(exc, "hubspot")
                    count("hubspot", "dead_letter", exc.code)
                    results[i] = {"status": "dead_letter", "reason": exc.reason}
        return JSONResponse({"results": results}, status_code=200)

    async def salesforce_webhook(request: Request) -> Response:
        """A record-triggered Flow's HTTP callout: one event per request, shared-secret header."""
        try:
            ours("salesforce", settings.crm, "CRM")
            if not cfg.salesforce_secrets:
                raise Rejected(503, "salesforce webhook secret is not configured", "not_configured")
            raw = await read_body(request)
            salesforce.verify(
                request.headers.get(salesforce.HEADER),
                [s.get_secret_value() for s in cfg.salesforce_secrets],
            )
            event = salesforce.normalize(
                parse_json(raw),
                org_id=cfg.salesforce_org_id,
                integration_user_id=cfg.salesforce_integration_user_id,
                sync=sync,
                billing=settings.billing,
            )
            if event is None:
                count("salesforce", "ignored", "event_not_routed")
                return JSONResponse(
                    {"status": "ignored", "reason": "event type not routed"}, status_code=200
                )
            if isinstance(event, Echo):
                return echo("salesforce", event)
            status, body = await dispatch_crm(
                "salesforce", router.plan_crm(event, settings.billing, flusher)
            )
            return JSONResponse(body, status_code=status)
        except Rejected as exc:
            return reject(exc, "salesforce")

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True, "billing": settings.billing, "crm": settings.crm})

    async def readiness(request: Request) -> Response:
        """Ready to hand events over: fails (503) while Temporal is unreachable, so an
        orchestrator routes vendors' deliveries elsewhere; /healthz stays the liveness probe."""
        ready = getattr(get_client, "ready", None)
        if ready is not None:
            ok, why = await ready()
        else:  # a provider without a health view (tests): ready when it yields a client
            try:
                await get_client()
                ok, why = True, "temporal client available"
            except Rejected as exc:
                ok, why = False, exc.reason
        return JSONResponse(
            {"ok": ok, "reason": why},
            status_code=200 if ok else 503,
            headers=None if ok else {"Retry-After": RETRY_AFTER_S},
        )

    async def prometheus(request: Request) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    async def metrics_json(request: Request) -> Response:
        return JSONResponse(dict(metrics.counts))

    app = Starlette(
        routes=[
            Route("/healthz", health, methods=["GET"]),
            Route("/readyz", readiness, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/metrics.json", metrics_json, methods=["GET"]),
            Route("/webhooks/chargebee", chargebee_webhook, methods=["POST"]),
            Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
            Route("/webhooks/recurly", recurly_webhook, methods=["POST"]),
            Route("/webhooks/zuora", zuora_webhook, methods=["POST"]),
            Route("/webhooks/hubspot", hubspot_webhook, methods=["POST"]),
            Route("/webhooks/salesforce", salesforce_webhook, methods=["POST"]),
            Route("/webhooks/zendesk", zendesk_webhook, methods=["POST"]),
        ],
        middleware=[Middleware(WebhookTracingMiddleware, metrics=metrics)],
    )
    app.state.counts = metrics.counts
    app.state.metrics = metrics
    return app
