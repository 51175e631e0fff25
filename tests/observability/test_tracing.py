"""One trace from the webhook request through Temporal to the vendor HTTP calls, and the trace
ID in the log lines an activity writes."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from infra import telemetry
from tests.observability.conftest import Deployment, eventually
from tests.pairs import CB_KEY, SF_SECRET, WEBHOOK_PASSWORD


def _url(span: ReadableSpan) -> str:
    attrs = span.attributes or {}
    return str(attrs.get("url.full") or attrs.get("http.url") or "")


async def test_one_trace_spans_webhook_workflow_activity_and_vendor_calls(
    deployment: Deployment,
    spans: InMemorySpanExporter,
    caplog: pytest.LogCaptureFixture,
    uid: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="revbridge.http")
    async with deployment.http(deployment.app()) as http:
        workflow_id, ids = await deployment.post_payment_failed(http, uid)
    await deployment.case_opened(workflow_id)

    def server_spans() -> list[ReadableSpan]:
        return [
            s
            for s in spans.get_finished_spans()
            if s.kind is SpanKind.SERVER
            and (s.attributes or {}).get("revbridge.workflow_id") == workflow_id
        ]

    [server] = server_spans()
    assert server.name == "POST /webhooks/chargebee"
    attrs = server.attributes or {}
    assert attrs["revbridge.webhook.provider"] == "chargebee"
    assert attrs["revbridge.webhook.result"] == "accepted"
    assert attrs["http.response.status_code"] == 202
    assert server.parent is None  # each delivery starts a trace
    trace_id = server.context.trace_id

    async def in_trace() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]

    need = {
        "SignalWithStartWorkflow:DunningWorkflow",
        "RunWorkflow:DunningWorkflow",
        "RunActivity:get_invoice_context",
        "RunActivity:upsert_crm_case",
    }
    traced = await eventually(
        in_trace, lambda ss: need <= {s.name for s in ss}, "the Temporal spans", within_s=10
    )
    names = {s.name for s in traced}
    assert need <= names, sorted(names)

    urls = deployment.pair.urls
    vendor_calls = [s for s in traced if s.kind is SpanKind.CLIENT and _url(s)]
    by_vendor = {(s.attributes or {}).get("revbridge.vendor") for s in vendor_calls}
    assert {"chargebee", "salesforce"} <= by_vendor, [(s.name, _url(s)) for s in vendor_calls]
    assert any(_url(s).startswith(urls["chargebee"]) for s in vendor_calls)
    # simple-salesforce's https URLs are rewritten to the sandbox's http by our transport
    sf_host = urls["salesforce"].split("://", 1)[1]
    assert any(f"://{sf_host}/" in _url(s) for s in vendor_calls)
    # the activity spans hang off the workflow, the HTTP spans off the activities
    by_id = {s.context.span_id: s for s in traced}
    get_ctx = next(s for s in traced if s.name == "RunActivity:get_invoice_context")
    cb_call = next(
        s
        for s in vendor_calls
        if s.parent is not None and s.parent.span_id == get_ctx.context.span_id
    )
    assert (cb_call.attributes or {})["revbridge.vendor"] == "chargebee"
    assert get_ctx.parent is not None and get_ctx.parent.span_id in by_id

    # no secrets, and no query strings (SOQL carries customer IDs) anywhere in the trace
    for span in traced:
        for value in (span.attributes or {}).values():
            text = str(value)
            for secret in (CB_KEY, SF_SECRET, WEBHOOK_PASSWORD):
                assert secret not in text, (span.name, text)
        assert "?" not in _url(span), _url(span)

    # log lines written inside the activities carry the trace ID
    hex_id = format(trace_id, "032x")
    vendor_logs = [r for r in caplog.records if r.name == "revbridge.http"]
    in_activity = [r for r in vendor_logs if getattr(r, "trace_id", None) == hex_id]
    assert in_activity, [(r.getMessage(), getattr(r, "trace_id", None)) for r in vendor_logs]
    assert any("vendor=chargebee" in r.getMessage() for r in in_activity)
    assert all(r.threadName.startswith("activity") for r in in_activity)
    line = logging.Formatter(telemetry.LOG_FORMAT).format(in_activity[0])
    assert f"trace_id={hex_id}" in line

    await deployment.client.get_workflow_handle(workflow_id).terminate("test done")


def test_log_records_outside_a_span_say_so() -> None:
    telemetry.install_log_correlation()
    record = logging.getLogger("revbridge.test").makeRecord(
        "revbridge.test", logging.INFO, __file__, 1, "hello", None, None
    )
    assert record.trace_id == "-"  # type: ignore[attr-defined]
