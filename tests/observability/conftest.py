"""A traced, metered deployment (Chargebee × Salesforce) on its own task queue: the worker's
client has the TracingInterceptor and a Temporal runtime serving Prometheus on a free port; the
webhook app is the real one (its TemporalConnection adds the interceptor itself). Spans go to an
in-memory exporter on the process's tracer provider."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain.dunning import DunningStatus
from domain.settings import Settings
from infra import telemetry
from infra.codec import data_converter
from sandbox.framework import free_port
from sandbox.scenarios import DEMO_CUSTOMERS, DunningCustomer
from tests import pairs
from tests.pairs import Pair, pair_settings
from tests.webhooks.helpers import basic, payment_failed

T = TypeVar("T")
NORTHWIND, GLOBEX, _ = DEMO_CUSTOMERS


@pytest.fixture(scope="session")
def spans() -> Iterator[InMemorySpanExporter]:
    """The in-memory exporter on the process's tracer provider (installed here unless another
    provider already is, in which case the exporter joins that one)."""
    exporter = InMemorySpanExporter()
    provider = telemetry.setup_tracing(
        telemetry.SERVICE_WORKER,
        provider=TracerProvider(
            resource=Resource.create({"service.name": telemetry.SERVICE_WORKER})
        ),
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@dataclass
class Deployment:
    settings: Settings
    pair: Pair
    client: Client  # the worker's: TracingInterceptor + Prometheus runtime
    metrics_url: str

    def app(self) -> Any:
        from webhooks.app import TemporalConnection, create_app

        return create_app(self.settings, client=TemporalConnection())

    def http(self, app: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")

    async def post_payment_failed(
        self, http: httpx.AsyncClient, uid: str, customer: DunningCustomer = NORTHWIND
    ) -> tuple[str, dict]:
        """Seed ``customer`` in both sandboxes, have its card decline (the sandbox's own webhook
        deliveries switched off: another deployment must not start this run) and deliver the
        failure webhook here."""
        ids = self.pair.seed(customer, uid)
        httpx.delete(self.pair.billing_url + "/_sandbox/webhooks").raise_for_status()
        self.pair.billing_driver.decline(ids["invoice"])
        resp = await http.post(
            "/webhooks/chargebee",
            # as Chargebee sends it: the transaction carries the decline the card gave (the run
            # takes it from the event instead of reading the transactions: issue 15)
            content=payment_failed(
                ids["invoice"],
                customer_id=ids["customer"],
                amount=customer.invoice_total,
                error_code=customer.decline_code or "card_declined",
            ),
            headers=basic(),
        )
        assert resp.status_code == 202, resp.text
        return resp.json()["workflow_id"], ids

    async def case_opened(self, workflow_id: str) -> DunningStatus:
        handle = self.client.get_workflow_handle(workflow_id)
        return await eventually(
            lambda: handle.query("status", result_type=DunningStatus),
            lambda s: s.case_id is not None,
            "the CRM case",
        )


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str, within_s: float = 30.0
) -> T:
    """tests.pairs.eventually, patient with anything (metrics are scraped over HTTP)."""
    return await pairs.eventually(probe, ok, what, within_s, tolerate=(Exception,))


@pytest.fixture(scope="session")
async def deployment(
    spans: InMemorySpanExporter, temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Deployment]:
    from workers.main import build_worker

    task_queue = f"revbridge-observability-{uuid.uuid4().hex[:6]}"
    settings = pair_settings(sandbox_urls, "chargebee", "salesforce", task_queue)
    telemetry.register_vendors(settings)
    port = free_port("127.0.0.1")
    runtime = telemetry.worker_runtime(
        {telemetry.ENV_METRICS_PORT: str(port), telemetry.ENV_METRICS_HOST: "127.0.0.1"}
    )
    assert runtime is not None
    target = temporal_env.client.service_client.config.target_host
    os.environ["TEMPORAL_ADDRESS"] = target  # for the webhook app's TemporalConnection
    client = await Client.connect(
        target,
        namespace="default",
        runtime=runtime,
        interceptors=telemetry.temporal_interceptors(),
        data_converter=data_converter(),
    )
    pair = Pair.build(settings, sandbox_urls, webhook_url="http://webhooks")
    worker = build_worker(client, pair.billing, pair.crm, task_queue=task_queue)
    task = asyncio.create_task(worker.run())
    try:
        yield Deployment(settings, pair, client, f"http://127.0.0.1:{port}/metrics")
    finally:
        await worker.shutdown()
        await task
