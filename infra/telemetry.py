"""Tracing, log correlation and metrics for the worker and the webhook service (docs/observability.md).

- **Traces**: one OpenTelemetry tracer provider per process, configured from the environment
  (``OTEL_EXPORTER_OTLP_ENDPOINT`` → OTLP http/protobuf, else ``REVBRIDGE_TRACE_CONSOLE=1`` →
  console, else nothing is exported). A trace runs from the webhook request (a server span from
  :class:`WebhookTracingMiddleware`) through Temporal (``TracingInterceptor`` on both clients, so
  the start carries the context into the workflow and its activities) to every vendor HTTP call
  (httpx, requests and urllib3 instrumentation). Query strings are dropped from recorded URLs.
- **Logs**: every log record gets ``trace_id`` / ``span_id`` (``-`` outside a span); the format
  from :func:`configure_logging` prints them.
- **Metrics**: the worker's come from the Temporal runtime (``PrometheusConfig`` on
  ``REVBRIDGE_METRICS_PORT``), where Temporal's own metrics and RevBridge's (recorded through
  ``activity.metric_meter()`` / ``workflow.metric_meter()``) share one endpoint. The webhook
  service has no Temporal runtime of its own to scrape, so its counters live in a per-app
  ``prometheus_client`` registry served on its own ``GET /metrics``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as PromCounter
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from domain.settings import Settings

SERVICE_WORKER = "revbridge-worker"
SERVICE_WEBHOOKS = "revbridge-webhooks"

ENV_METRICS_PORT = "REVBRIDGE_METRICS_PORT"
ENV_METRICS_HOST = "REVBRIDGE_METRICS_HOST"
ENV_TRACE_CONSOLE = "REVBRIDGE_TRACE_CONSOLE"
ENV_LOG_LEVEL = "REVBRIDGE_LOG_LEVEL"

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s trace_id=%(trace_id)s: %(message)s"

# RevBridge's own metric names (Prometheus spelling; the worker's counters get ``_total``).
METRIC_ACTIONS = "revbridge_actions"
METRIC_VENDOR_CALLS = "revbridge_vendor_api_calls"
METRIC_LLM_TOKENS = "revbridge_llm_tokens"
METRIC_WEBHOOKS = "revbridge_webhooks"
# a vendor's daily API allowance as it last reported it (Sforce-Limit-Info, HubSpot daily headers)
METRIC_VENDOR_ALLOWANCE_REMAINING = "revbridge_vendor_daily_allowance_remaining"
METRIC_VENDOR_ALLOWANCE_LIMIT = "revbridge_vendor_daily_allowance_limit"
# pending approvals = requested - decided
METRIC_APPROVALS_REQUESTED = "revbridge_approvals_requested"
METRIC_APPROVALS_DECIDED = "revbridge_approvals_decided"

log = logging.getLogger("revbridge.telemetry")
http_log = logging.getLogger("revbridge.http")

_lock = threading.Lock()


# --- tracing ---------------------------------------------------------------------------------------


def tracer_provider_from_env(
    service_name: str, env: Mapping[str, str] = os.environ
) -> TracerProvider:
    """A provider named ``service_name`` (``OTEL_SERVICE_NAME`` wins) that exports where the
    environment says: OTLP http/protobuf (batched) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the
    traces-only variant) is set, else the console with ``REVBRIDGE_TRACE_CONSOLE=1``, else
    nowhere (spans are still made, so trace IDs reach the logs)."""
    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        # the exporter reads the endpoint, headers, timeout and TLS settings from OTEL_* itself
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    elif env.get(ENV_TRACE_CONSOLE) == "1":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


def setup_tracing(
    service_name: str,
    settings: Settings | None = None,
    *,
    provider: TracerProvider | None = None,
    env: Mapping[str, str] = os.environ,
) -> TracerProvider:
    """Install the process's tracer provider (once: a provider already installed is kept and
    extended), vendor HTTP instrumentation and log correlation. Returns the provider in use."""
    with _lock:
        current = trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            active = current
            if provider is not None and provider is not current:
                log.warning("a tracer provider is already installed; keeping it")
        else:
            active = provider or tracer_provider_from_env(service_name, env)
            trace.set_tracer_provider(active)
        if not getattr(active, "_revbridge_vendor_calls", False):
            active.add_span_processor(VendorCallProcessor())
            active._revbridge_vendor_calls = True  # type: ignore[attr-defined]
    if settings is not None:
        register_vendors(settings)
    instrument_http()
    install_log_correlation()
    return active


def temporal_interceptors() -> list[TracingInterceptor]:
    """For ``Client.connect(interceptors=...)``: starts carry the trace into workflows, and a
    worker built from the client continues it in workflows and activities."""
    return [TracingInterceptor()]


def instrument_http() -> None:
    """Client spans for every vendor call: chargebee (httpx), our OAuth token fetch (httpx),
    simple-salesforce and stripe (requests), hubspot-api-client (urllib3). requests runs on
    urllib3; the instrumentations suppress the inner span, so a call is one span."""
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    with _lock:
        for instrumentor in (
            HTTPXClientInstrumentor(),
            RequestsInstrumentor(),
            URLLib3Instrumentor(),
        ):
            if not instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.instrument()


# vendor by exact host[:port] (configured base URLs, e.g. sandboxes) or by domain suffix
_VENDOR_HOSTS: dict[str, str] = {}
_VENDOR_DOMAINS = (
    ("chargebee.com", "chargebee"),
    ("stripe.com", "stripe"),
    ("salesforce.com", "salesforce"),
    ("force.com", "salesforce"),
    ("hubapi.com", "hubspot"),
    ("hubspot.com", "hubspot"),
    ("anthropic.com", "anthropic"),
)


def register_vendors(settings: Settings) -> None:
    """Name the vendor behind each configured base URL (sandboxes, proxies)."""
    urls = {
        "chargebee": settings.chargebee.api_url if settings.chargebee else None,
        "stripe": settings.stripe.api_url if settings.stripe else None,
        "salesforce": settings.salesforce.token_url if settings.salesforce else None,
        "hubspot": settings.hubspot.api_url if settings.hubspot else None,
        # the LLM reasoner, when one is configured
        "anthropic": getattr(getattr(settings, "anthropic", None), "base_url", None),
    }
    with _lock:
        for vendor, url in urls.items():
            if url:
                _VENDOR_HOSTS[urlsplit(url).netloc.lower()] = vendor


def vendor_of(url: str) -> str:
    parts = urlsplit(url)
    if (vendor := _VENDOR_HOSTS.get(parts.netloc.lower())) is not None:
        return vendor
    host = (parts.hostname or "").lower()
    for domain, vendor in _VENDOR_DOMAINS:
        if host == domain or host.endswith("." + domain):
            return vendor
    return "other"


_URL_KEYS = ("url.full", "http.url")
_STATUS_KEYS = ("http.response.status_code", "http.status_code")
_METHOD_KEYS = ("http.request.method", "http.method")


def _first(attrs: Mapping[str, Any] | None, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if attrs and key in attrs:
            return attrs[key]
    return None


class VendorCallProcessor(SpanProcessor):
    """On every HTTP client span: drop the query string from the recorded URL (SOQL and search
    parameters carry customer data), tag ``revbridge.vendor``; when it ends, count the call
    (``revbridge_vendor_api_calls``) and log one debug line, which carries the trace ID."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        if span.kind is not SpanKind.CLIENT:
            return
        for key in _URL_KEYS:
            url = (span.attributes or {}).get(key)
            if isinstance(url, str):
                parts = urlsplit(url)
                if parts.query:
                    span.set_attribute(key, urlunsplit(parts._replace(query="", fragment="")))
                span.set_attribute("revbridge.vendor", vendor_of(url))

    def on_end(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        vendor = attrs.get("revbridge.vendor")
        if span.kind is not SpanKind.CLIENT or not isinstance(vendor, str):
            return
        status = _first(attrs, _STATUS_KEYS)
        outcome = f"{int(status) // 100}xx" if isinstance(status, int) else "error"
        method = str(_first(attrs, _METHOD_KEYS) or "_OTHER")
        meter = _meter()
        if meter is not None:
            meter.create_counter(
                METRIC_VENDOR_CALLS, "HTTP calls to billing and CRM vendors", "1"
            ).add(1, {"vendor": vendor, "method": method, "outcome": outcome})
        http_log.debug(
            "vendor call vendor=%s method=%s status=%s", vendor, method, status or "error"
        )


# --- log correlation -------------------------------------------------------------------------------

_factory_installed = False


def install_log_correlation() -> None:
    """Every log record (any logger, any thread) gets ``trace_id`` and ``span_id`` in hex from
    the current span, or ``-``."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            ctx = trace.get_current_span().get_span_context()
            if ctx.is_valid:
                record.trace_id = format(ctx.trace_id, "032x")
                record.span_id = format(ctx.span_id, "016x")
            else:
                record.trace_id = record.span_id = "-"
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def configure_logging(env: Mapping[str, str] = os.environ) -> None:
    """Log lines of the worker and the webhook service carry ``trace_id=<hex>``; the level comes
    from ``REVBRIDGE_LOG_LEVEL`` when set."""
    install_log_correlation()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=LOG_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    if level := env.get(ENV_LOG_LEVEL):
        root.setLevel(level.upper())


# --- worker metrics (the Temporal runtime) ---------------------------------------------------------

_fallback_meter: MetricMeter | None = None


def _meter() -> MetricMeter | None:
    """The running activity's meter (labelled with its type and task queue), else the process
    runtime's."""
    if activity.in_activity():
        try:
            return activity.metric_meter()
        except RuntimeError:  # a non-threaded sync activity: no meter there
            return _fallback_meter
    return _fallback_meter


def worker_runtime(env: Mapping[str, str] = os.environ) -> Runtime | None:
    """A Temporal runtime that serves Prometheus metrics on ``REVBRIDGE_METRICS_PORT`` (bound to
    ``REVBRIDGE_METRICS_HOST``, default all interfaces), or None when the port is unset."""
    global _fallback_meter
    port = env.get(ENV_METRICS_PORT)
    if not port:
        return None
    host = env.get(ENV_METRICS_HOST, "0.0.0.0")
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=f"{host}:{int(port)}", counters_total_suffix=True)
        )
    )
    _fallback_meter = runtime.metric_meter
    return runtime


def record_vendor_allowance(vendor: str, remaining: int, limit: int) -> None:
    """Gauges of a vendor's daily allowance (set on every response that reports it), on the
    process runtime's meter (one series per vendor, not per activity type)."""
    meter = _fallback_meter or _meter()
    if meter is None:
        return
    labels = {"vendor": vendor}
    meter.create_gauge(
        METRIC_VENDOR_ALLOWANCE_REMAINING, "Calls left in the vendor's daily allowance", "1"
    ).set(max(remaining, 0), labels)
    meter.create_gauge(METRIC_VENDOR_ALLOWANCE_LIMIT, "The vendor's daily allowance", "1").set(
        max(limit, 0), labels
    )


class MetricsInterceptor(Interceptor):
    """Counts what the governed activities report, without touching them (counted once the
    activity succeeded, so a retried write counts once):

    - every audit entry written to the CRM is one governed step (alone, or carried by the write
      it audits, as the case is): ``revbridge_actions`` by action, decision and outcome; one whose decision was ``needs_approval`` (or that names an
      approver) closes an approval: ``revbridge_approvals_decided`` by action and outcome;
    - the approval gate looks up eligible approvers exactly when it parks an action for a
      person (workflows/approval.py ``_await_approval``): ``revbridge_approvals_requested``;
    - every assessment reports its LLM tokens: ``revbridge_llm_tokens`` by model and direction
      (counted here, once per assessment, not from the audit entries that repeat them).
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _MetricsActivityInbound(next)


class _MetricsActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        result = await super().execute_activity(input)
        try:
            name = activity.info().activity_type
            carried = getattr(input.args[0], "audit", None) if input.args else None
            if name == "write_crm_audit":
                record_audit(activity.metric_meter(), input.args[0].entry)
            elif carried is not None and hasattr(carried, "action"):
                # the hot path writes the case with its audit entry in one call (upsert_crm_case)
                record_audit(activity.metric_meter(), carried)
            elif name == "eligible_approvers":
                activity.metric_meter().create_counter(
                    METRIC_APPROVALS_REQUESTED, "Actions parked for a person's approval", "1"
                ).add(1, {"action": str(getattr(input.args[0].action, "value", "unknown"))})
            elif name == "assess_payment_failure":
                record_tokens(activity.metric_meter(), result)
        except Exception:  # metrics never fail an activity
            log.exception("recording activity metrics failed")
        return result


def record_audit(meter: MetricMeter, entry: Any) -> None:
    # "executed (case-id)" → "executed": outcomes are labels, IDs are not
    outcome = str(entry.outcome).split(" ", 1)[0] or "unknown"
    meter.create_counter(METRIC_ACTIONS, "Governed actions by kind, decision and outcome", "1").add(
        1, {"action": entry.action, "decision": entry.decision, "outcome": outcome}
    )
    if entry.decision == "needs_approval" or entry.approver:
        meter.create_counter(
            METRIC_APPROVALS_DECIDED, "Approvals closed (approved, rejected, expired...)", "1"
        ).add(1, {"action": entry.action, "outcome": outcome})


def record_tokens(meter: MetricMeter, assessment: Any) -> None:
    model = getattr(assessment, "model", None)
    if not model:
        return
    counter = meter.create_counter(METRIC_LLM_TOKENS, "LLM tokens used by the reasoner", "1")
    for direction in ("input", "output"):
        tokens = int(getattr(assessment, f"{direction}_tokens", 0) or 0)
        if tokens:
            counter.add(tokens, {"model": model, "direction": direction})


# --- webhook service metrics and spans -------------------------------------------------------------


class WebhookMetrics:
    """The webhook service's counters: a per-app Prometheus registry (``GET /metrics``) plus the
    plain ``provider.result[.reason]`` counts kept for the JSON view (``GET /metrics.json``).
    Each count also lands on the request's server span."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counts: Counter[str] = Counter()
        self.webhooks = PromCounter(
            METRIC_WEBHOOKS,
            "Webhook deliveries (HubSpot: events) by provider, result and reason",
            ["provider", "result", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "revbridge_webhook_request_duration_seconds",
            "Time to answer a webhook request",
            ["provider", "status"],
            registry=self.registry,
        )

    def count(
        self, provider: str, result: str, reason: str = "", workflow_id: str | None = None
    ) -> None:
        self.counts[".".join(p for p in (provider, result, reason) if p)] += 1
        self.webhooks.labels(provider, result, reason or "none").inc()
        span = trace.get_current_span()
        attrs: dict[str, str] = {"revbridge.webhook.result": result}
        if reason:
            attrs["revbridge.webhook.reason"] = reason
        if workflow_id:
            attrs["revbridge.workflow_id"] = workflow_id
        span.set_attributes(attrs)
        span.add_event("revbridge.webhook", attrs)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class WebhookTracingMiddleware:
    """A server span per ``POST /webhooks/<provider>``: method, route, provider and status; the
    handlers add result, reason and workflow ID (:meth:`WebhookMetrics.count`). No headers, body,
    query or client address is recorded. Inbound trace context is not trusted: vendors are
    outside callers, so each delivery starts a trace."""

    PROVIDERS = frozenset({"chargebee", "stripe", "hubspot"})

    def __init__(self, app: Any, metrics: WebhookMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self.tracer = trace.get_tracer("revbridge.webhooks")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not path.startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        name = path.removeprefix("/webhooks/")
        provider = name if name in self.PROVIDERS else "unknown"
        route = f"/webhooks/{provider}" if provider != "unknown" else "/webhooks/{provider}"
        method = scope.get("method", "")
        status: dict[str, int] = {}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=otel_context.Context(),  # a new trace, whatever the caller sent
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "http.route": route,
                "url.path": route,
                "revbridge.webhook.provider": provider,
            },
        ) as span:
            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                code = status.get("code", 500)
                span.set_attribute("http.response.status_code", code)
                if code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                self.metrics.latency.labels(provider, str(code)).observe(
                    time.perf_counter() - started
                )
