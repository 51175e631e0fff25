"""Metrics on Prometheus endpoints: the webhook service's own ``GET /metrics`` (and its JSON
view), the worker's Temporal runtime endpoint with Temporal's metrics and RevBridge's."""

from __future__ import annotations

import socket

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from domain.approvals import QUERY, UPDATE, ApprovalSignal, Decision, PendingApproval
from infra import telemetry
from tests.observability.conftest import GLOBEX, Deployment, eventually
from tests.webhooks.helpers import basic, payment_failed


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def value(text: str, name: str, **labels: str) -> float:
    return sum(
        v
        for n, ls, v in samples(text)
        if n == name and all(ls.get(k) == want for k, want in labels.items())
    )


async def test_webhook_metrics_count_rejected_and_accepted_by_provider_and_reason(
    deployment: Deployment, uid: str
) -> None:
    app = deployment.app()
    async with deployment.http(app) as http:
        bad = await http.post(
            "/webhooks/chargebee",
            content=payment_failed(f"INV-{uid}"),
            headers=basic(password="not-the-password"),
        )
        assert bad.status_code == 401
        workflow_id, _ = await deployment.post_payment_failed(http, uid)
        resp = await http.get("/metrics")
        json_view = (await http.get("/metrics.json")).json()

    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "not-the-password" not in text and workflow_id not in text
    name = "revbridge_webhooks_total"
    assert value(text, name, provider="chargebee", result="rejected", reason="auth_invalid") == 1
    assert value(text, name, provider="chargebee", result="accepted", reason="none") == 1
    assert value(text, name, provider="stripe") == 0
    assert (
        value(
            text,
            "revbridge_webhook_request_duration_seconds_count",
            provider="chargebee",
            status="401",
        )
        == 1
    )
    assert json_view == {"chargebee.rejected.auth_invalid": 1, "chargebee.accepted": 1}
    assert app.state.counts == json_view

    await deployment.client.get_workflow_handle(workflow_id).terminate("test done")


async def test_worker_endpoint_serves_temporal_and_revbridge_metrics(
    deployment: Deployment, uid: str
) -> None:
    async with deployment.http(deployment.app()) as http:
        workflow_id, _ = await deployment.post_payment_failed(http, uid)
    await deployment.case_opened(workflow_id)

    async def scrape() -> str:
        async with httpx.AsyncClient() as http:
            return (await http.get(deployment.metrics_url)).raise_for_status().text

    def ready(text: str) -> bool:
        return value(text, "revbridge_actions_total", action="create_case", outcome="executed") >= 1

    text = await eventually(scrape, ready, "the create_case action metric", within_s=10)
    names = {n for n, _, _ in samples(text)}
    assert any(n.startswith("temporal_") for n in names), sorted(names)
    assert "temporal_activity_execution_latency_count" in names or any(
        n.startswith("temporal_workflow_task") for n in names
    ), sorted(names)
    [(_, labels, _)] = [
        s
        for s in samples(text)
        if s[0] == "revbridge_actions_total" and s[1].get("action") == "create_case"
    ]
    assert labels["decision"] == "allow"
    # a dunning run's activities stay on its own queue, dispatched eagerly with the workflow task
    # that scheduled them (workers/main.py EAGER_WORKFLOWS); other use cases' go to the vendor's
    assert labels["task_queue"] == deployment.settings.task_queue
    assert value(text, "revbridge_vendor_api_calls_total", vendor="chargebee", outcome="2xx") >= 1
    assert value(text, "revbridge_vendor_api_calls_total", vendor="salesforce") >= 1

    await deployment.client.get_workflow_handle(workflow_id).terminate("test done")


async def test_approvals_requested_and_decided_make_pending_countable(
    deployment: Deployment, uid: str
) -> None:
    """Globex's courtesy credit waits for finance: requested +1; a rejection: decided +1."""

    async def scrape() -> str:
        async with httpx.AsyncClient() as http:
            return (await http.get(deployment.metrics_url)).raise_for_status().text

    def counts(text: str) -> tuple[float, float]:
        return (
            value(text, "revbridge_approvals_requested_total", action="apply_credit"),
            value(
                text,
                "revbridge_approvals_decided_total",
                action="apply_credit",
                outcome="rejected",
            ),
        )

    requested, decided = counts(await scrape())
    async with deployment.http(deployment.app()) as http:
        workflow_id, _ = await deployment.post_payment_failed(http, uid, GLOBEX)
    handle = deployment.client.get_workflow_handle(workflow_id)
    [pending] = await eventually(
        lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "a pending approval"
    )
    await eventually(scrape, lambda t: counts(t) == (requested + 1, decided), "requested +1")
    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.REJECT, approver="alice@example.com"
        ),
    )
    await eventually(scrape, lambda t: counts(t) == (requested + 1, decided + 1), "decided +1")
    await handle.terminate("test done")


# --- configuration from the environment ------------------------------------------------------------


def _processors(provider: object) -> list[object]:
    return list(provider._active_span_processor._span_processors)  # type: ignore[attr-defined]


def test_tracer_provider_exports_where_the_environment_says() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    none = telemetry.tracer_provider_from_env(telemetry.SERVICE_WORKER, {})
    assert _processors(none) == []
    assert none.resource.attributes["service.name"] == "revbridge-worker"

    console = telemetry.tracer_provider_from_env(
        telemetry.SERVICE_WEBHOOKS, {"REVBRIDGE_TRACE_CONSOLE": "1"}
    )
    [proc] = _processors(console)
    assert isinstance(proc.span_exporter, ConsoleSpanExporter)  # type: ignore[attr-defined]
    assert console.resource.attributes["service.name"] == "revbridge-webhooks"

    otlp = telemetry.tracer_provider_from_env(
        telemetry.SERVICE_WORKER,
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "REVBRIDGE_TRACE_CONSOLE": "1"},
    )
    [proc] = _processors(otlp)
    assert isinstance(proc.span_exporter, OTLPSpanExporter)  # type: ignore[attr-defined]
    for provider in (none, console, otlp):
        provider.shutdown()


def test_worker_runtime_only_with_a_metrics_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry, "_fallback_meter", telemetry._fallback_meter)
    assert telemetry.worker_runtime({}) is None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    runtime = telemetry.worker_runtime(
        {"REVBRIDGE_METRICS_PORT": str(port), "REVBRIDGE_METRICS_HOST": "127.0.0.1"}
    )
    assert runtime is not None
    runtime.metric_meter.create_counter("revbridge_probe").add(1)
    text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "revbridge_probe_total" in text


@pytest.mark.parametrize(
    ("url", "vendor"),
    [
        ("https://acme.chargebee.com/api/v2/invoices/1", "chargebee"),
        ("https://api.stripe.com/v1/invoices", "stripe"),
        ("https://acme.my.salesforce.com/services/data/v62.0/query", "salesforce"),
        ("https://api.hubapi.com/crm/v3/objects/tickets", "hubspot"),
        ("https://api.anthropic.com/v1/messages", "anthropic"),
        ("https://notstripe.com/v1", "other"),
    ],
)
def test_vendor_of_known_hosts(url: str, vendor: str) -> None:
    assert telemetry.vendor_of(url) == vendor
