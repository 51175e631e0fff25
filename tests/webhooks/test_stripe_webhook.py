"""The Stripe route: the signature matrix (pure unit tests of ``verify``), normalization, and the
real ASGI app fed with deliveries the Stripe emulator actually sent (its own signer), down to a
dunning workflow on the real Temporal dev server."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client, WorkflowExecutionStatus

from connectors.stripe import StripeBilling
from domain.ids import idempotency_key
from domain.models import InvoicePaid, NoteTarget, PaymentFailed
from domain.settings import Settings, StripeSettings, WebhookSettings
from domain.temporal import CUSTOMER_KEY
from sandbox.framework import App, ServerThread
from sandbox.stripe import StripeEmulator
from sandbox.stripe.signing import compute_signature, signature_header
from webhooks import stripe as hook
from webhooks.app import create_app
from webhooks.errors import Rejected

OLD, NEW = "whsec_old_revbridge", "whsec_new_revbridge"
SECRET = "whsec_emulator_revbridge"
API_KEY = "sk_test_revbridge_webhooks"
URL = "/webhooks/stripe"
NOW = 1_767_225_600


def event(
    etype: str = "invoice.payment_failed",
    invoice: str = "in_1QabcDEF",
    *,
    idem: str | None = None,
    **invoice_fields: Any,
) -> dict[str, Any]:
    """A realistic event (billing-apis.md §1d fixture shape)."""
    obj = {
        "id": invoice,
        "object": "invoice",
        "customer": "cus_QabcDEF",
        "status": "open",
        "currency": "usd",
        "amount_due": 2000,
        "attempt_count": 1,
        "parent": {
            "type": "subscription_details",
            "subscription_details": {"subscription": "sub_1QabcDEF", "metadata": {}},
        },
        **invoice_fields,
    }
    return {
        "id": "evt_1QabcDEF",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": NOW,
        "type": etype,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": idem},
        "data": {"object": obj},
    }


def body(evt: dict[str, Any] | None = None) -> bytes:
    # Stripe pretty-prints its deliveries; re-serializing therefore changes the bytes
    return json.dumps(evt or event(), indent=2).encode()


def rejected(raw: bytes, header: str | None, secrets: list[str], now: float = NOW) -> Rejected:
    with pytest.raises(Rejected) as exc:
        hook.verify(raw, header, secrets, now=now)
    return exc.value


# --- the signature matrix -----------------------------------------------------------------------------


def test_valid_signature_is_accepted() -> None:
    raw = body()
    hook.verify(raw, signature_header(raw, [SECRET], NOW), [SECRET], now=NOW)


def test_stripe_pythons_own_signer_is_accepted() -> None:
    raw = body()
    header = stripe.WebhookSignature.generate_signature_header(raw.decode(), SECRET, NOW)
    hook.verify(raw, header, [SECRET], now=NOW)


def test_a_flipped_byte_is_invalid() -> None:
    raw = body()
    header = signature_header(raw, [SECRET], NOW)
    i = raw.index(b"2000")
    tampered = raw[:i] + b"1" + raw[i + 1 :]
    err = rejected(tampered, header, [SECRET])
    assert (err.status, err.code) == (401, "signature_invalid")


def test_reserialized_json_is_invalid() -> None:
    raw = body()
    header = signature_header(raw, [SECRET], NOW)
    reserialized = json.dumps(json.loads(raw)).encode()
    assert reserialized != raw and json.loads(reserialized) == json.loads(raw)
    assert rejected(reserialized, header, [SECRET]).code == "signature_invalid"


def test_wrong_secret_is_invalid() -> None:
    raw = body()
    err = rejected(raw, signature_header(raw, ["whsec_someone_else"], NOW), [SECRET])
    assert (err.status, err.code) == (401, "signature_invalid")


@pytest.mark.parametrize(
    "signed_with", [[OLD], [NEW], [OLD, NEW], [NEW, OLD]], ids=["old", "new", "both", "both-rev"]
)
def test_rotation_accepts_old_new_or_both(signed_with: list[str]) -> None:
    raw = body()
    hook.verify(raw, signature_header(raw, signed_with, NOW), [OLD, NEW], now=NOW)


def test_after_rotation_an_old_only_signature_fails() -> None:
    raw = body()
    hook.verify(raw, signature_header(raw, [OLD, NEW], NOW), [NEW], now=NOW)
    assert rejected(raw, signature_header(raw, [OLD], NOW), [NEW]).code == "signature_invalid"


def test_v0_and_unknown_entries_are_ignored() -> None:
    raw = body()
    good = compute_signature(raw, SECRET, NOW)
    header = f"t={NOW},v0={'0' * 64},v1={'f' * 64},v1={good},x=y"
    hook.verify(raw, header, [SECRET], now=NOW)
    only_v0 = f"t={NOW},v0={good}"
    assert rejected(raw, only_v0, [SECRET]).code == "signature_malformed"


@pytest.mark.parametrize(
    ("age_s", "ok", "code"),
    [
        (0, True, None),
        (299, True, None),
        (301, False, "timestamp_stale"),
        (3600, False, "timestamp_stale"),
        (-299, True, None),
        (-301, False, "timestamp_future"),
        (-360, False, "timestamp_future"),
    ],
    ids=["now", "tolerance-1", "tolerance+1", "an-hour-old", "future-299", "future-301", "6min"],
)
def test_replay_window(age_s: int, ok: bool, code: str | None) -> None:
    raw = body()
    signed_at = NOW - age_s
    header = signature_header(raw, [SECRET], signed_at)
    if ok:
        hook.verify(raw, header, [SECRET], now=NOW)
    else:
        err = rejected(raw, header, [SECRET])
        assert (err.status, err.code) == (400, code)


def test_a_forged_stale_request_is_invalid_not_stale() -> None:
    raw = body()
    header = signature_header(raw, ["whsec_forger"], NOW - 3600)
    assert rejected(raw, header, [SECRET]).code == "signature_invalid"


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_header(header: str | None) -> None:
    err = rejected(body(), header, [SECRET])
    assert (err.status, err.code) == (400, "signature_missing")


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "v1=" + "a" * 64,
        f"t=,v1={'a' * 64}",
        f"t=abc,v1={'a' * 64}",
        f"t=1.5,v1={'a' * 64}",
        f"t=-5,v1={'a' * 64}",
        f"t=１２３,v1={'a' * 64}",  # full-width digits: int() would take them
        f"t=1{'0' * 40},v1={'a' * 64}",
        f"t={NOW}",
        f"t={NOW},v1",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        ",,,,",
        "=" * 10,
        "t=" + "9" * 10_000,
    ],
)
def test_garbled_headers_are_malformed(header: str) -> None:
    err = rejected(body(), header, [SECRET])
    assert (err.status, err.code) == (400, "signature_malformed")
    assert "\n" not in err.reason


def test_fuzzed_headers_only_ever_raise_rejected() -> None:
    rng = random.Random(20261127)
    raw = body()
    valid = signature_header(raw, [SECRET], NOW)
    pieces = ["t=", "v1=", "v0=", ",", "=", " ", str(NOW), "-", "0", "f", "é", "\x00", "\ud800"]
    alphabet = "tv01=,. -_xyzABF\t\n\x00\x7fé€\ud83d"
    for _ in range(3000):
        mode = rng.random()
        if mode < 0.4:
            header = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        elif mode < 0.8:
            header = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        else:  # mutate a valid header
            chars = list(valid)
            for _ in range(rng.randint(1, 4)):
                chars[rng.randrange(len(chars))] = rng.choice(alphabet)
            header = "".join(chars)
        try:
            hook.verify(raw, header, [SECRET], now=NOW)
        except Rejected as exc:
            assert exc.status in (400, 401) and "\n" not in exc.reason


# --- echo and normalization ------------------------------------------------------------------------


def test_echo_is_our_own_idempotency_key() -> None:
    assert hook.is_echo(event(idem=idempotency_key("dunning:stripe:in_1", "note")))
    assert not hook.is_echo(event(idem="8c1b6b6e-6a53-4a67-9c1a-2b1c3d4e5f60"))  # Stripe's own
    assert not hook.is_echo(event(idem=None))
    assert not hook.is_echo({"request": "req_123"})  # pre-2017 shape
    assert not hook.is_echo([1, 2])


def test_payment_failed_is_normalized() -> None:
    got = hook.normalize(event())
    assert got == PaymentFailed(
        billing="stripe",
        event_id="evt_1QabcDEF",
        invoice_id="in_1QabcDEF",
        customer_id="cus_QabcDEF",
        subscription_id="sub_1QabcDEF",
        amount_due=2000,
        currency="USD",
        occurred_at=got.occurred_at,
    )
    assert int(got.occurred_at.timestamp()) == NOW
    assert hook.normalize(event(parent=None)).subscription_id is None


@pytest.mark.parametrize("etype", ["invoice.paid", "invoice.payment_succeeded"])
def test_paid_is_normalized(etype: str) -> None:
    got = hook.normalize(event(etype, status="paid"))
    assert isinstance(got, InvoicePaid)
    assert (got.billing, got.invoice_id, got.customer_id) == (
        "stripe",
        "in_1QabcDEF",
        "cus_QabcDEF",
    )


@pytest.mark.parametrize("etype", ["customer.updated", "invoice.finalized", "charge.failed"])
def test_other_types_are_ignored(etype: str) -> None:
    assert hook.normalize(event(etype)) is None


def _without(path: list[str]) -> dict[str, Any]:
    evt = event()
    node: Any = evt
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return evt


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ([1, 2], 400, "not_an_object"),
        ("evt", 400, "not_an_object"),
        (_without(["id"]), 422, "missing_field"),
        (_without(["type"]), 422, "missing_field"),
        (_without(["data"]), 422, "missing_field"),
        (_without(["data", "object"]), 422, "missing_field"),
        (_without(["data", "object", "id"]), 422, "missing_field"),
        (_without(["data", "object", "customer"]), 422, "missing_field"),
        ({**event(), "created": "yesterday"}, 422, "bad_field"),
        (event(amount_due="lots"), 422, "bad_field"),
        (event(currency=None), 422, "bad_field"),
        (event(customer="cus 1; DROP"), 422, "bad_id"),
        (event(invoice="in_../../x:y"), 422, "bad_id"),
        ({**event(), "id": "evt\nforged"}, 422, "bad_id"),
    ],
)
def test_bad_shapes_are_rejected_with_one_line(payload: Any, status: int, code: str) -> None:
    with pytest.raises(Rejected) as exc:
        hook.normalize(payload)
    assert (exc.value.status, exc.value.code) == (status, code)
    assert "\n" not in exc.value.reason


# --- the real app, fed by the emulator -------------------------------------------------------------


class Receiver:
    """A webhook endpoint that only records what the emulator delivered (exact bytes)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []

    async def handle(self, request: Request) -> Response:
        self.deliveries.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})

    def wait_for(self, etype: str, object_id: str, within_s: float = 5.0) -> tuple[str, bytes]:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            for headers, raw in list(self.deliveries):
                evt = json.loads(raw)
                if evt["type"] == etype and evt["data"]["object"]["id"] == object_id:
                    return headers["stripe-signature"], raw
            time.sleep(0.02)
        raise AssertionError(f"no {etype} delivery for {object_id}")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[StripeEmulator, str, Receiver]]:
    em = StripeEmulator(api_key=API_KEY, webhook_secret=SECRET)
    receiver = Receiver()
    app = App("receiver", Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])]))
    with ServerThread({em: 0, app: 0}) as thread:
        url = thread.urls["stripe"]
        httpx.post(url + "/_sandbox/webhooks", json={"url": thread.urls["receiver"] + "/hook"})
        yield em, url, receiver


def seed_failed_invoice(url: str) -> tuple[str, str]:
    u = uuid.uuid4().hex[:10]
    inv, cus = f"in_{u}", f"cus_{u}"
    seeded = httpx.post(
        url + "/_sandbox/seed",
        json={
            "customers": [{"id": cus, "email": f"{u}@example.com"}],
            "invoices": [{"id": inv, "customer": cus, "lines": [{"amount": 4200}]}],
        },
    )
    assert seeded.status_code == 200, seeded.text
    failed = httpx.post(
        f"{url}/_sandbox/stripe/invoices/{inv}/fail_payment", json={"decline_code": "expired_card"}
    )
    assert failed.status_code == 200, failed.text
    return inv, cus


class CountingProvider:
    def __init__(self, client: Client | None) -> None:
        self.client = client
        self.calls = 0

    async def __call__(self) -> Client:
        self.calls += 1
        assert self.client is not None
        return self.client


def make_http(provider: CountingProvider, secrets: list[str]) -> httpx.AsyncClient:
    settings = Settings(
        billing="stripe", webhooks=WebhookSettings(stripe_secrets=[SecretStr(s) for s in secrets])
    )
    app = create_app(settings, client=provider)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")


@pytest.mark.parametrize(
    ("mutate", "status", "code"),
    [
        (lambda h, raw: ({}, raw), 400, "signature_missing"),
        (lambda h, raw: ({"Stripe-Signature": "t=now,v1=sig"}, raw), 400, "signature_malformed"),
        (lambda h, raw: ({"Stripe-Signature": h}, raw + b" "), 401, "signature_invalid"),
        (
            lambda h, raw: ({"Stripe-Signature": signature_header(raw, ["whsec_x"])}, raw),
            401,
            "signature_invalid",
        ),
        (
            lambda h, raw: (
                {"Stripe-Signature": signature_header(raw, [SECRET], int(time.time()) - 301)},
                raw,
            ),
            400,
            "timestamp_stale",
        ),
        (
            lambda h, raw: (
                {"Stripe-Signature": signature_header(raw, [SECRET], int(time.time()) + 360)},
                raw,
            ),
            400,
            "timestamp_future",
        ),
    ],
    ids=["missing", "garbled", "tampered", "wrong-secret", "stale", "future"],
)
async def test_rejections_answer_one_line_and_touch_no_temporal(
    sandbox: tuple[StripeEmulator, str, Receiver], mutate: Any, status: int, code: str
) -> None:
    em, url, receiver = sandbox
    inv, _ = seed_failed_invoice(url)
    header, raw = receiver.wait_for("invoice.payment_failed", inv)
    provider = CountingProvider(None)
    headers, content = mutate(header, raw)
    async with make_http(provider, [SECRET]) as http:
        resp = await http.post(URL, content=content, headers=headers)
        metrics = (await http.get("/metrics.json")).json()
    assert resp.status_code == status
    reason = resp.json()["error"]
    assert reason and "\n" not in reason and SECRET not in reason
    assert provider.calls == 0
    assert metrics == {f"stripe.rejected.{code}": 1}


async def test_unconfigured_secrets_are_503() -> None:
    provider = CountingProvider(None)
    async with make_http(provider, []) as http:
        raw = body()
        resp = await http.post(URL, content=raw, headers={"Stripe-Signature": "t=1,v1=a"})
    assert resp.status_code == 503 and provider.calls == 0


async def test_our_own_write_comes_back_as_an_echo(
    sandbox: tuple[StripeEmulator, str, Receiver],
) -> None:
    em, url, receiver = sandbox
    inv, _ = seed_failed_invoice(url)
    billing = StripeBilling(StripeSettings(api_key=SecretStr(API_KEY), api_url=url))
    key = idempotency_key(f"dunning:stripe:{inv}", "audit-1")
    await asyncio.to_thread(billing.add_note, NoteTarget.INVOICE, inv, "RevBridge: noted", key)
    header, raw = receiver.wait_for("invoice.updated", inv)
    assert json.loads(raw)["request"]["idempotency_key"] == key
    provider = CountingProvider(None)
    async with make_http(provider, [SECRET]) as http:
        resp = await http.post(URL, content=raw, headers={"Stripe-Signature": header})
    assert resp.status_code == 200 and resp.json()["status"] == "echo"
    assert provider.calls == 0


async def test_emulator_signed_payment_failed_starts_dunning(
    sandbox: tuple[StripeEmulator, str, Receiver], client: Client
) -> None:
    em, url, receiver = sandbox
    em.add_webhook_secret(NEW)  # mid-rotation: the delivery carries two v1 entries
    try:
        inv, cus = seed_failed_invoice(url)
        header, raw = receiver.wait_for("invoice.payment_failed", inv)
    finally:
        em.remove_webhook_secret(NEW)
    assert header.count("v1=") == 2
    provider = CountingProvider(client)
    wf_id = f"dunning:stripe:{inv}"
    async with make_http(provider, [NEW]) as http:  # only the new secret configured here
        resp = await http.post(URL, content=raw, headers={"Stripe-Signature": header})
        assert resp.status_code == 202, resp.text
        assert resp.json() == {"status": "accepted", "workflow_id": wf_id}
    handle = client.get_workflow_handle(wf_id)
    try:
        desc = await handle.describe()
        assert desc.status == WorkflowExecutionStatus.RUNNING
        assert desc.workflow_type == "DunningWorkflow"
        assert desc.typed_search_attributes.get(CUSTOMER_KEY) == cus
        # a redelivery signals the same run (the workflow dedups by event ID): still one run
        async with make_http(provider, [NEW]) as http:
            again = await http.post(URL, content=raw, headers={"Stripe-Signature": header})
        assert again.status_code == 202, again.text
        assert (await handle.describe()).run_id == desc.run_id
    finally:
        await handle.terminate(reason="test done")
