"""The Chargebee route: authentication, bad input, dedup and availability — through the real ASGI
app and a real Temporal dev server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from temporalio.client import Client

from domain.settings import Settings
from domain.temporal import AMOUNT_AT_RISK_KEY, CUSTOMER_KEY, USE_CASE_KEY
from sandbox.framework import free_port
from tests.webhooks.helpers import basic, payment_failed, payment_succeeded
from webhooks.app import TemporalConnection, create_app

URL = "/webhooks/chargebee"


class CountingProvider:
    """Hands out the real client and counts how often the app asked for it."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.calls = 0

    async def __call__(self) -> Client:
        self.calls += 1
        return self.client


@pytest.fixture
def provider(client: Client) -> CountingProvider:
    return CountingProvider(client)


@pytest.fixture
def http(settings: Settings, provider: CountingProvider) -> httpx.AsyncClient:
    app = create_app(settings, client=provider)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong"),
        basic(user="someone-else"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer " + "x" * 20},
    ],
    ids=["missing", "wrong-password", "wrong-user", "malformed", "other-scheme"],
)
async def test_bad_credentials_are_401_and_start_nothing(
    http: httpx.AsyncClient,
    provider: CountingProvider,
    client: Client,
    uid: str,
    headers: dict[str, str],
) -> None:
    resp = await http.post(URL, content=payment_failed(f"INV-{uid}"), headers=headers)
    assert resp.status_code == 401
    assert "\n" not in resp.json()["error"]
    assert provider.calls == 0
    with pytest.raises(Exception):  # noqa: B017 - RPCError NOT_FOUND: no such workflow
        await client.get_workflow_handle(f"dunning:chargebee:INV-{uid}").describe()


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"id": "ev_1", "event_type": ', 400, "malformed JSON"),
        (b"\xff\xfe\x00", 400, "UTF-8"),
        (b"[1, 2]", 400, "JSON object"),
        (
            json.dumps({"id": "ev_1", "event_type": "payment_failed", "content": {}}).encode(),
            422,
            "content.invoice",
        ),
        (json.dumps({"event_type": "payment_failed", "content": {}}).encode(), 422, "event.id"),
        (
            json.dumps(
                {
                    "id": "ev_1",
                    "event_type": "payment_failed",
                    "content": {"invoice": {"id": "INV 1", "customer_id": "c"}},
                }
            ).encode(),
            422,
            "provider ID",
        ),
        (
            json.dumps(
                {"id": "ev_1", "event_type": "payment_failed", "api_version": "v1", "content": {}}
            ).encode(),
            422,
            "api_version",
        ),
    ],
    ids=["truncated", "not-utf8", "array", "no-invoice", "no-id", "bad-invoice-id", "api-v1"],
)
async def test_bad_bodies_get_one_line_reasons_and_start_nothing(
    http: httpx.AsyncClient, provider: CountingProvider, body: bytes, status: int, fragment: str
) -> None:
    resp = await http.post(URL, content=body, headers=basic())
    assert resp.status_code == status
    reason = resp.json()["error"]
    assert fragment in reason and "\n" not in reason and "Traceback" not in reason
    # a bad ID is only detected while routing, before any RPC: the client is fetched but unused
    assert provider.calls <= 1


async def test_unknown_event_types_are_acknowledged_and_ignored(
    http: httpx.AsyncClient, provider: CountingProvider
) -> None:
    body = json.dumps(
        {"id": "ev_x", "event_type": "subscription_renewed", "api_version": "v2", "content": {}}
    ).encode()
    resp = await http.post(URL, content=body, headers=basic())
    assert resp.status_code == 200
    assert resp.json()["status"] == "ignored"
    assert provider.calls == 0


async def test_oversized_body_is_413(http: httpx.AsyncClient, provider: CountingProvider) -> None:
    resp = await http.post(URL, content=b"{" + b" " * 1_100_000 + b"}", headers=basic())
    assert resp.status_code == 413
    assert provider.calls == 0


async def test_payment_failed_starts_one_dunning_workflow_with_search_attributes(
    http: httpx.AsyncClient, client: Client, uid: str
) -> None:
    resp = await http.post(
        URL,
        content=payment_failed(f"INV-{uid}", customer_id=f"cust_{uid}", amount=12_345),
        headers=basic(),
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["workflow_id"] == f"dunning:chargebee:INV-{uid}"
    desc = await client.get_workflow_handle(f"dunning:chargebee:INV-{uid}").describe()
    assert desc.workflow_type == "DunningWorkflow"
    attrs = desc.typed_search_attributes
    assert attrs.get(USE_CASE_KEY) == "dunning"
    assert attrs.get(CUSTOMER_KEY) == f"cust_{uid}"
    assert attrs.get(AMOUNT_AT_RISK_KEY) == pytest.approx(123.45)


async def test_a_failed_payment_is_one_temporal_call_churn_is_the_dunning_runs_job(
    http: httpx.AsyncClient, client: Client, uid: str
) -> None:
    """Issue 15: one Temporal call per failed payment. The dunning run hands the failure to the
    churn intervention itself, with what it read (tests/fast/test_dunning.py), so the webhook
    service no longer starts a churn run that re-reads everything."""
    body = payment_failed(f"INV-{uid}", customer_id=f"cust_{uid}")
    for _ in range(3):  # redeliveries signal the same dunning run; it dedups by event ID
        assert (await http.post(URL, content=body, headers=basic())).status_code in (200, 202)
    handle = client.get_workflow_handle(f"dunning:chargebee:INV-{uid}")
    signals = [
        e.workflow_execution_signaled_event_attributes.signal_name
        async for e in handle.fetch_history_events()
        if e.HasField("workflow_execution_signaled_event_attributes")
    ]
    # at most one call per delivery (the service may answer a redelivery it knows itself)
    assert signals[0] == "payment_failed" and set(signals) == {"payment_failed"}
    assert len(signals) <= 3
    with pytest.raises(Exception):  # noqa: B017 - RPCError NOT_FOUND: no churn run from here
        await client.get_workflow_handle(f"churn:chargebee:cust_{uid}").describe()


async def test_five_concurrent_deliveries_make_one_workflow_run(
    http: httpx.AsyncClient, client: Client, uid: str
) -> None:
    body = payment_failed(f"INV-{uid}")
    responses = await asyncio.gather(
        *(http.post(URL, content=body, headers=basic()) for _ in range(5))
    )
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    runs = [wf async for wf in client.list_workflows(f"WorkflowId = 'dunning:chargebee:INV-{uid}'")]
    # visibility is eventually consistent; describe is not, and one run ID is what matters
    handle = client.get_workflow_handle(f"dunning:chargebee:INV-{uid}")
    desc = await handle.describe()
    assert len({r.run_id for r in runs} | {desc.run_id}) == 1


async def test_invoice_paid_without_a_dunning_run_is_ignored(
    http: httpx.AsyncClient, client: Client, uid: str
) -> None:
    resp = await http.post(URL, content=payment_succeeded(f"INV-{uid}"), headers=basic())
    assert resp.status_code == 200
    assert resp.json()["status"] == "ignored"


async def test_temporal_unreachable_is_503(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, uid: str
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    app = create_app(settings, client=TemporalConnection())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://webhooks"
    ) as http:
        resp = await http.post(URL, content=payment_failed(f"INV-{uid}"), headers=basic())
    assert resp.status_code == 503
    assert resp.json()["error"] == "workflow engine unavailable, retry later"


async def test_another_vendors_webhook_is_not_this_deployments(
    settings: Settings, provider: CountingProvider, uid: str
) -> None:
    stripe_deployment = settings.model_copy(update={"billing": "stripe"})
    app = create_app(stripe_deployment, client=provider)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://w"
    ) as http:
        resp = await http.post(URL, content=payment_failed(f"INV-{uid}"), headers=basic())
    assert resp.status_code == 404
    assert resp.json()["error"] == "chargebee is not this deployment's billing platform (stripe)"
    assert provider.calls == 0
