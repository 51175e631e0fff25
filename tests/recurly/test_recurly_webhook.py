"""``POST /webhooks/recurly``: the signature matrix over raw bytes (millisecond window edges,
rotation), notification parsing, IDs re-fetched from the sandbox through the official client,
echoes of our own collection attempts, and a signed delivery starting a dunning run."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from connectors.recurly import RecurlyBilling
from domain.models import InvoicePaid, PaymentFailed
from domain.settings import RecurlySettings, Settings, WebhookSettings
from sandbox.framework import App, ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import dunning_seed
from sandbox.scenarios import DEMO_CUSTOMERS
from webhooks import recurly as hook
from webhooks.app import create_app
from webhooks.errors import Rejected
from webhooks.parsing import Echo

API_KEY = "recurly_webhook_test_key"
OLD, NEW = "recurly-secret-old", "recurly-secret-new"
NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
URL = "/webhooks/recurly"
BODY = json.dumps(
    {
        "id": "rafhdbbf41mc",
        "object_type": "payment",
        "site_id": "qc326l1hl8k9",
        "event_type": "failed",
        "event_time": "2026-01-01T00:00:00Z",
        "uuid": "63b068f7d409d4b4478dea4e6aba58ae",
    },
    separators=(",", ":"),
).encode()


def sign(raw: bytes, secrets: list[str], ts_ms: int = NOW_MS) -> str:
    sigs = [
        hmac.new(s.encode(), f"{ts_ms}.".encode() + raw, hashlib.sha256).hexdigest()
        for s in secrets
    ]
    return ",".join([str(ts_ms), *sigs])


def rejected(raw: bytes, header: str | None, secrets: list[str], now_ms: int = NOW_MS) -> Rejected:
    with pytest.raises(Rejected) as exc:
        hook.verify(raw, header, secrets, now_ms)
    return exc.value


# --- the signature matrix --------------------------------------------------------------------


def test_valid_signature_is_accepted() -> None:
    hook.verify(BODY, sign(BODY, [NEW]), [NEW], NOW_MS)


def test_a_tampered_byte_is_invalid() -> None:
    header = sign(BODY, [NEW])
    for i in (0, len(BODY) // 2, len(BODY) - 1):
        tampered = BODY[:i] + bytes([BODY[i] ^ 0x01]) + BODY[i + 1 :]
        assert rejected(tampered, header, [NEW]).code == "signature_invalid"


def test_reserialized_json_is_invalid() -> None:
    """Same JSON, other bytes: the signature covers the raw body, not its meaning."""
    reserialized = json.dumps(json.loads(BODY), indent=1).encode()
    assert json.loads(reserialized) == json.loads(BODY)
    assert rejected(reserialized, sign(BODY, [NEW]), [NEW]).status == 401


def test_wrong_secret_is_invalid() -> None:
    exc = rejected(BODY, sign(BODY, ["not-our-secret"]), [NEW])
    assert (exc.status, exc.code) == (401, "signature_invalid")


@pytest.mark.parametrize("configured", [[OLD], [NEW], [OLD, NEW]])
def test_rotation_two_signatures_match_either_secret(configured: list[str]) -> None:
    header = sign(BODY, [OLD, NEW])
    assert len(header.split(",")) == 3
    hook.verify(BODY, header, configured, NOW_MS)


def test_rotation_both_secrets_configured_one_signature_sent() -> None:
    hook.verify(BODY, sign(BODY, [NEW]), [OLD, NEW], NOW_MS)
    hook.verify(BODY, sign(BODY, [OLD]), [OLD, NEW], NOW_MS)


def test_after_rotation_an_old_only_signature_fails() -> None:
    assert rejected(BODY, sign(BODY, [OLD]), [NEW]).code == "signature_invalid"


@pytest.mark.parametrize(
    ("offset_ms", "code"),
    [
        (-300_000, None),
        (-300_001, "timestamp_stale"),
        (300_000, None),
        (300_001, "timestamp_future"),
        (0, None),
    ],
    ids=["-5min-edge", "-5min-1ms", "+5min-edge", "+5min+1ms", "now"],
)
def test_window_edges_in_milliseconds(offset_ms: int, code: str | None) -> None:
    header = sign(BODY, [NEW], NOW_MS + offset_ms)
    if code is None:
        hook.verify(BODY, header, [NEW], NOW_MS)
    else:
        exc = rejected(BODY, header, [NEW])
        assert (exc.status, exc.code) == (400, code)


def test_a_forged_stale_request_is_invalid_not_stale() -> None:
    header = sign(BODY, ["forger"], NOW_MS - 3_600_000)
    assert rejected(BODY, header, [NEW]).code == "signature_invalid"


@pytest.mark.parametrize(
    "header",
    ["", "   ", "abc", "1767225600000", "1767225600000,", ",deadbeef", "t=1,v1=ab", "1,2,3" * 900],
)
def test_missing_or_malformed_headers(header: str) -> None:
    exc = rejected(BODY, header or None, [NEW])
    assert exc.status == 400 and exc.code in ("signature_missing", "signature_malformed")


def test_a_seconds_timestamp_is_stale_not_accepted() -> None:
    """Recurly signs milliseconds; a seconds value is 1970 to us."""
    assert rejected(BODY, sign(BODY, [NEW], NOW_MS // 1000), [NEW]).code == "timestamp_stale"


# --- parsing ----------------------------------------------------------------------------------


def test_parse_routes_payments_and_invoices_and_ignores_the_rest() -> None:
    note = hook.parse(json.loads(BODY))
    assert note is not None and note.ref == "uuid-63b068f7d409d4b4478dea4e6aba58ae"
    assert note.failed
    past_due = {
        "id": "r1",
        "object_type": "charge_invoice",
        "site_id": "s",
        "event_type": "past_due",
        "event_time": "2026-01-01T00:00:00Z",
        "invoice_number": 1001,
    }
    assert hook.parse(past_due).ref == "number-1001"  # type: ignore[union-attr]
    account = {**past_due, "object_type": "account", "event_type": "created"}
    assert hook.parse(account) is None


@pytest.mark.parametrize(
    "payload",
    [
        [],
        {"object_type": "payment"},
        {**json.loads(BODY), "uuid": "../accounts"},
        {**json.loads(BODY), "event_time": "yesterday"},
        {**json.loads(BODY), "object_type": "charge_invoice", "event_type": "paid"},
    ],
)
def test_bad_notifications_are_rejected(payload: Any) -> None:
    with pytest.raises(Rejected) as exc:
        hook.parse(payload)
    assert exc.value.status == 422 and "\n" not in exc.value.reason


# --- against the sandbox -------------------------------------------------------------------------


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.app = App(
            "receiver", Starlette(routes=[Route("/hook", self.handle, methods=["POST"])])
        )

    async def handle(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})

    def wait_for(
        self, object_type: str, event_type: str, within_s: float = 15.0
    ) -> tuple[str, bytes]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for headers, raw in self.got:
                note = json.loads(raw)
                if (note["object_type"], note["event_type"]) == (object_type, event_type):
                    return headers["recurly-signature"], raw
            time.sleep(0.02)
        raise AssertionError(f"no {object_type}/{event_type} notification")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[RecurlyEmulator, str, Receiver]]:
    em = RecurlyEmulator(api_key=API_KEY, webhook_secrets=[OLD, NEW], rate_limit_per_minute=None)
    receiver = Receiver()
    with ServerThread({em: 0, receiver.app: 0}) as thread:
        url = thread.urls["recurly"]
        httpx.post(url + "/_sandbox/webhooks", json={"url": thread.urls["receiver"] + "/hook"})
        yield em, url, receiver


@pytest.fixture
def fresh(sandbox: tuple[RecurlyEmulator, str, Receiver]) -> tuple[RecurlyEmulator, str, Receiver]:
    sandbox[2].got.clear()
    return sandbox


def declined(url: str, receiver: Receiver) -> dict[str, str]:
    """A scheduled renewal attempt declines (Recurly's own retry, not ours)."""
    ids = DEMO_CUSTOMERS[1].ids(uuid.uuid4().hex[:8])
    seed = dunning_seed(DEMO_CUSTOMERS[1:2], ids["customer"].rsplit("-", 1)[1])
    httpx.post(url + "/_sandbox/seed", json=seed).raise_for_status()
    resp = httpx.post(
        f"{url}/_sandbox/recurly/invoices/{ids['invoice']}/fail_payment",
        json={"decline_code": "insufficient_funds"},
    )
    assert resp.status_code == 200, resp.text
    return ids


class CountingProvider:
    def __init__(self, client: Client | None) -> None:
        self.client = client
        self.calls = 0

    async def __call__(self) -> Client:
        self.calls += 1
        assert self.client is not None
        return self.client


def make_http(
    provider: CountingProvider, url: str, secrets: list[str], task_queue: str = "rb-recurly-hooks"
) -> httpx.AsyncClient:
    settings = Settings(
        billing="recurly",
        task_queue=task_queue,
        recurly=RecurlySettings(api_key=SecretStr(API_KEY), api_url=url),
        webhooks=WebhookSettings(recurly_secrets=[SecretStr(s) for s in secrets]),
    )
    app = create_app(settings, client=provider)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")


async def test_payment_failed_and_past_due_resolve_to_one_event(
    fresh: tuple[RecurlyEmulator, str, Receiver],
) -> None:
    em, url, receiver = fresh
    ids = declined(url, receiver)
    lookup = hook.RecurlyLookup(RecurlySettings(api_key=SecretStr(API_KEY), api_url=url))
    events = []
    for kind in ("payment", "charge_invoice"):
        _, raw = receiver.wait_for(kind, "failed" if kind == "payment" else "past_due")
        note = hook.parse(json.loads(raw))
        assert note is not None
        events.append(await lookup.resolve(note))
    failed, past_due = events
    assert isinstance(failed, PaymentFailed) and isinstance(past_due, PaymentFailed)
    assert failed.event_id == past_due.event_id  # one declined attempt, deduplicated by the run
    assert (failed.invoice_id, failed.customer_id) == (ids["invoice"], ids["customer"])
    assert failed.subscription_id == ids["subscription"]
    assert failed.decline_code == "insufficient_funds"
    assert failed.amount_due == DEMO_CUSTOMERS[1].invoice_total
    httpx.post(f"{url}/_sandbox/recurly/invoices/{ids['invoice']}/pay", json={})
    _, raw = receiver.wait_for("charge_invoice", "paid")
    paid = await lookup.resolve(hook.parse(json.loads(raw)))  # type: ignore[arg-type]
    assert isinstance(paid, InvoicePaid) and paid.invoice_id == ids["invoice"]


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h, raw: ({}, raw), 400, "signature_missing"),
        (lambda h, raw: ({"recurly-signature": "now,sig"}, raw), 400, "signature_malformed"),
        (lambda h, raw: ({"recurly-signature": h}, raw + b" "), 401, "signature_invalid"),
        (
            lambda h, raw: ({"recurly-signature": sign(raw, ["x"], int(time.time() * 1000))}, raw),
            401,
            "signature_invalid",
        ),
        (
            lambda h, raw: (
                {"recurly-signature": sign(raw, [NEW], int(time.time() * 1000) - 301_000)},
                raw,
            ),
            400,
            "timestamp_stale",
        ),
    ],
    ids=["missing", "garbled", "tampered", "wrong-secret", "stale"],
)
async def test_rejections_answer_one_line_and_touch_no_temporal(
    fresh: tuple[RecurlyEmulator, str, Receiver], mutate: Any, status: int, code: str
) -> None:
    em, url, receiver = fresh
    declined(url, receiver)
    header, raw = receiver.wait_for("payment", "failed")
    provider = CountingProvider(None)
    headers, content = mutate(header, raw)
    async with make_http(provider, url, [NEW]) as http:
        resp = await http.post(URL, content=content, headers=headers)
        metrics = (await http.get("/metrics.json")).json()
    assert resp.status_code == status
    reason = resp.json()["error"]
    assert reason and "\n" not in reason and NEW not in reason
    assert provider.calls == 0
    assert metrics == {f"recurly.rejected.{code}": 1}


async def test_unconfigured_or_not_ours(fresh: tuple[RecurlyEmulator, str, Receiver]) -> None:
    em, url, _ = fresh
    provider = CountingProvider(None)
    async with make_http(provider, url, []) as http:
        resp = await http.post(URL, content=BODY, headers={"recurly-signature": sign(BODY, [NEW])})
    assert resp.status_code == 503
    other = Settings(billing="chargebee")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(other, client=provider)),
        base_url="http://webhooks",
    ) as http:
        resp = await http.post(URL, content=BODY, headers={"recurly-signature": sign(BODY, [NEW])})
    assert resp.status_code == 404 and provider.calls == 0


async def test_our_own_collection_attempt_comes_back_as_an_echo(
    fresh: tuple[RecurlyEmulator, str, Receiver],
) -> None:
    em, url, receiver = fresh
    ids = DEMO_CUSTOMERS[0].ids(uuid.uuid4().hex[:8])
    suffix = ids["customer"].rsplit("-", 1)[1]
    httpx.post(url + "/_sandbox/seed", json=dunning_seed(DEMO_CUSTOMERS[:1], suffix))
    billing = RecurlyBilling(RecurlySettings(api_key=SecretStr(API_KEY), api_url=url))
    attempt = await asyncio.to_thread(billing.retry_payment, ids["invoice"], "rb-retry-echo")
    assert not attempt.succeeded
    header, raw = receiver.wait_for("payment", "failed")
    provider = CountingProvider(None)
    async with make_http(provider, url, [OLD]) as http:
        resp = await http.post(URL, content=raw, headers={"recurly-signature": header})
    assert resp.status_code == 200 and resp.json()["status"] == "echo"
    assert provider.calls == 0
    lookup = hook.RecurlyLookup(RecurlySettings(api_key=SecretStr(API_KEY), api_url=url))
    assert isinstance(await lookup.resolve(hook.parse(json.loads(raw))), Echo)  # type: ignore[arg-type]


async def test_a_signed_delivery_starts_dunning_and_redeliveries_join_it(
    fresh: tuple[RecurlyEmulator, str, Receiver], client: Client
) -> None:
    em, url, receiver = fresh
    ids = declined(url, receiver)
    header, raw = receiver.wait_for("payment", "failed")
    _, raw2 = receiver.wait_for("charge_invoice", "past_due")
    provider = CountingProvider(client)
    wf_id = f"dunning:recurly:{ids['invoice']}"
    queue = f"rb-recurly-hooks-{uuid.uuid4().hex[:6]}"  # no worker: the run waits, we look at it
    async with make_http(provider, url, [NEW], task_queue=queue) as http:
        first = await http.post(URL, content=raw, headers={"recurly-signature": header})
        assert first.status_code == 202, first.text
        assert first.json()["workflow_id"] == wf_id
        # the same failure told again (past_due, a redelivery): the same run
        again = await http.post(URL, content=raw2, headers={"recurly-signature": em.sign(raw2)})
        assert again.status_code in (200, 202), again.text
        assert again.json().get("workflow_id") == wf_id
    handle = client.get_workflow_handle(wf_id)
    try:
        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        assert desc.workflow_type == "DunningWorkflow"
    finally:
        await handle.terminate("test over")
        churn = client.get_workflow_handle(f"churn:recurly:{ids['customer']}")
        with contextlib.suppress(RPCError):  # the churn signal's run, if the route started one
            await churn.terminate("test over")
