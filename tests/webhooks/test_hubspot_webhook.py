"""The HubSpot route: webhooks v3 signatures (matrix, replay window, URI decoding, fuzz), batch
isolation and echo suppression — unit tests on ``webhooks.hubspot`` and the real ASGI app, plus a
batch the HubSpot sandbox really sent, replayed into the app with its original headers and URL."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hubspot.utils.signature import Signature
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client

from connectors.hubspot import HubSpotCrm
from domain.models import CaseDraft, CaseOpened, CasePriority, CrmAccountChanged, DealWon
from domain.settings import HubSpotSettings, Settings, WebhookSettings
from sandbox.framework import App, ServerThread, WebhookTarget
from sandbox.hubspot import HubSpotEmulator
from webhooks import hubspot
from webhooks.app import create_app
from webhooks.errors import Rejected

SECRET = "hubspot-test-secret"
APP_ID = "1160452"
PUBLIC_URL = "https://hooks.example.com/webhooks/hubspot?portal=62515&tag=a%3Ab%2Fc"
ROUTE = "/webhooks/hubspot"
NOW_MS = 1_735_000_000_000


def hubspot_signature(secret: str, method: str, uri: str, body: bytes, ts: str) -> str:
    """As HubSpot signs (its docs): the escapes in its table decoded, then the SDK's formula."""
    for escape, char in {"%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$",
                         "%27": "'", "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";"}.items():  # fmt: skip
        uri = uri.replace(escape, char).replace(escape.lower(), char)
    return Signature.get_signature(secret, body.decode(), "v3", uri, method, ts)


def signed(
    body: bytes, uri: str = PUBLIC_URL, ts_ms: int = NOW_MS, secret: str = SECRET
) -> dict[str, Any]:
    ts = str(ts_ms)
    return {
        "method": "POST",
        "uri": uri,
        "body": body,
        "signature": hubspot_signature(secret, "POST", uri, body, ts),
        "timestamp": ts,
        "secret": SECRET,
        "now_ms": NOW_MS,
    }


def event(event_id: int, sub_type: str = "contact.creation", **extra: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "subscriptionId": 1001,
        "portalId": 62515,
        "appId": int(APP_ID),
        "occurredAt": NOW_MS - 1000,
        "subscriptionType": sub_type,
        "attemptNumber": 0,
        "objectId": 5000 + event_id,
        "changeSource": "CRM_UI",
        "sourceId": "userId:9000001",
        **extra,
    }


BODY = json.dumps([event(1)], separators=(",", ":")).encode()


# --- verify: the signature matrix ----------------------------------------------------------------


def test_valid_signature_is_accepted() -> None:
    hubspot.verify(**signed(BODY))


def test_sandbox_signer_agrees() -> None:
    from sandbox.hubspot import signature_v3

    sig = signature_v3(SECRET, "POST", PUBLIC_URL, BODY, NOW_MS)
    hubspot.verify(**{**signed(BODY), "signature": sig})


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY[:-2] + b"X]"},  # one byte flipped
        {"body": json.dumps(json.loads(BODY), indent=1).encode()},  # re-serialized JSON
        {"body": BODY + b" "},
        {"secret": "another-secret"},
        {"method": "PUT"},
        {"uri": PUBLIC_URL.replace("62515", "62516")},
        {"uri": PUBLIC_URL.replace("https://", "http://")},
        {"timestamp": str(NOW_MS + 1)},  # the timestamp is signed too
    ],
    ids=["flipped", "reserialized", "trailing", "secret", "method", "query", "scheme", "ts"],
)
def test_tampering_is_401(change: dict[str, Any]) -> None:
    with pytest.raises(Rejected) as exc:
        hubspot.verify(**{**signed(BODY), **change})
    assert exc.value.status == 401 and exc.value.code == "bad_signature"


def test_wrong_secret_signature_is_401() -> None:
    with pytest.raises(Rejected) as exc:
        hubspot.verify(**signed(BODY, secret="not-our-secret"))
    assert exc.value.status == 401


def test_percent_encoded_uri_is_decoded_the_way_hubspot_signs() -> None:
    uri = "https://hooks.example.com/hs%2Fhook?who=a%40b.test&list=%28x%2Cy%29&star=%2a&sp=%20%25"
    hubspot.verify(**signed(BODY, uri=uri))
    # HubSpot's own helper skips the decoding: its signature is not HubSpot's for this URI.
    sdk = Signature.get_signature(SECRET, BODY.decode(), "v3", uri, "POST", str(NOW_MS))
    with pytest.raises(Rejected):
        hubspot.verify(**{**signed(BODY, uri=uri), "signature": sdk})
    # Only the listed escapes are decoded: %20 and %25 stay, and no double decoding.
    assert hubspot.signing_uri("a%3Ab%253Ac%20d%2f") == "a:b%253Ac%20d/"


@pytest.mark.parametrize(
    ("offset_ms", "ok"),
    [
        (-(300_000 - 1000), True),  # 5 min - 1 s old
        (-(300_000 + 1000), False),  # 5 min + 1 s old
        (300_000 - 1000, True),  # clock skew, a little ahead
        (360_000, False),  # 6 min in the future
    ],
    ids=["old-4m59", "old-5m01", "ahead-4m59", "ahead-6m"],
)
def test_replay_window(offset_ms: int, ok: bool) -> None:
    args = signed(BODY, ts_ms=NOW_MS + offset_ms)
    if ok:
        hubspot.verify(**args)
        return
    with pytest.raises(Rejected) as exc:
        hubspot.verify(**args)
    assert exc.value.status == 401 and exc.value.code in ("stale_timestamp", "future_timestamp")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"signature": None}, "missing_signature"),
        ({"signature": ""}, "missing_signature"),
        ({"timestamp": None}, "missing_timestamp"),
        ({"timestamp": "  "}, "missing_timestamp"),
        ({"timestamp": "12e5"}, "bad_timestamp"),
        ({"timestamp": "-1"}, "bad_timestamp"),
        ({"timestamp": "１２３"}, "bad_timestamp"),  # full-width digits
        ({"timestamp": "9" * 400}, "bad_timestamp"),
        ({"signature": "not base64 at all ✓"}, "bad_signature"),
    ],
)
def test_missing_or_garbled_headers_are_401(change: dict[str, Any], code: str) -> None:
    with pytest.raises(Rejected) as exc:
        hubspot.verify(**{**signed(BODY), **change})
    assert (exc.value.status, exc.value.code) == (401, code)
    assert "\n" not in exc.value.reason


def test_fuzzed_headers_only_ever_raise_rejected() -> None:
    rng = random.Random(20250102)
    good = signed(BODY)
    alphabet = (
        "0123456789+/=ABCxyz -_.:,;\t\r\n\x00\x7f\xff" + "é✓\u202e\U0001f600" + "\ud800\udfff"
    )

    def junk() -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 60)))

    for i in range(3000):
        sig = junk() if i % 3 else good["signature"][: rng.randrange(0, 45)] + junk()
        ts = junk() if i % 2 else str(NOW_MS + rng.randrange(-400_000, 400_000))
        with pytest.raises(Rejected) as exc:
            hubspot.verify(**{**good, "signature": sig, "timestamp": ts})
        assert exc.value.status == 401


def test_empty_secret_never_verifies() -> None:
    with pytest.raises(Rejected) as exc:
        hubspot.verify(**{**signed(BODY, secret=""), "secret": ""})
    assert exc.value.status == 503


# --- parse_batch and normalize -------------------------------------------------------------------


@pytest.mark.parametrize("payload", [{}, {"events": []}, "x", 1, None])
def test_a_batch_must_be_an_array(payload: Any) -> None:
    with pytest.raises(Rejected) as exc:
        hubspot.parse_batch(payload)
    assert exc.value.status == 400


def test_normalize_routes_the_three_crm_events() -> None:
    ticket = hubspot.normalize(event(1, "ticket.creation"), APP_ID)
    assert isinstance(ticket, CaseOpened)
    assert (ticket.crm, ticket.event_id, ticket.case_id) == ("hubspot", "1", "5001")
    assert ticket.occurred_at.timestamp() * 1000 == NOW_MS - 1000
    won = hubspot.normalize(
        event(2, "deal.propertyChange", propertyName="dealstage", propertyValue="closedwon"), APP_ID
    )
    assert isinstance(won, DealWon) and won.opportunity_id == "5002"
    other_stage = event(3, "deal.propertyChange", propertyName="dealstage", propertyValue="closedlost")  # fmt: skip
    assert hubspot.normalize(other_stage, APP_ID) is None
    changed = hubspot.normalize(
        event(4, "company.propertyChange", propertyName="mrr", propertyValue="10"), APP_ID
    )
    assert isinstance(changed, CrmAccountChanged)
    assert (changed.account_id, changed.fields) == ("5004", ["mrr"])
    assert hubspot.normalize(event(5, "contact.creation"), APP_ID) is None
    assoc = event(6, "ticket.associationChange", fromObjectId=1, toObjectId=2)
    del assoc["objectId"]  # association events carry from/to instead
    assert hubspot.normalize(assoc, APP_ID) is None


def test_echo_is_our_app_writing_through_the_api() -> None:
    ours = event(1, "ticket.creation", changeSource="API", sourceId=APP_ID)
    assert hubspot.normalize(ours, APP_ID) is hubspot.ECHO
    assert hubspot.normalize({**ours, "changeSource": "INTEGRATION"}, APP_ID) is hubspot.ECHO
    other_app = {**ours, "sourceId": "999"}
    assert isinstance(hubspot.normalize(other_app, APP_ID), CaseOpened)
    ui_user = {**ours, "changeSource": "CRM_UI", "sourceId": f"userId:{APP_ID}"}
    assert isinstance(hubspot.normalize(ui_user, APP_ID), CaseOpened)
    assert isinstance(hubspot.normalize(ours, None), CaseOpened)  # no app id: nothing is an echo


@pytest.mark.parametrize(
    "bad",
    [
        [1],
        "event",
        {k: v for k, v in event(1).items() if k != "eventId"},
        {k: v for k, v in event(1).items() if k != "objectId"},
        {k: v for k, v in event(1).items() if k != "subscriptionType"},
        {**event(1), "eventId": True},
        {**event(1), "objectId": "12; DROP"},
        {**event(1, "ticket.creation"), "occurredAt": "yesterday"},
        event(1, "company.propertyChange"),  # no propertyName
    ],
)
def test_malformed_events_are_422(bad: Any) -> None:
    with pytest.raises(Rejected) as exc:
        hubspot.normalize(bad, APP_ID)
    assert exc.value.status == 422


# --- the ASGI app --------------------------------------------------------------------------------


class CountingProvider:
    """Stands in for the Temporal client provider; counts how often the app asked for it."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> Any:
        self.calls += 1
        raise AssertionError("the HubSpot route must not need Temporal here")


def make_settings(public_url: str = PUBLIC_URL, secret: str = SECRET) -> Settings:
    return Settings(
        crm="hubspot",
        hubspot=HubSpotSettings(access_token=SecretStr("pat-unused"), app_id=APP_ID),
        webhooks=WebhookSettings(
            hubspot_client_secret=SecretStr(secret), hubspot_public_url=public_url
        ),
    )


def asgi(settings: Settings, provider: CountingProvider) -> httpx.AsyncClient:
    app = create_app(settings, client=provider)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")


def headers_for(body: bytes, uri: str = PUBLIC_URL, secret: str = SECRET) -> dict[str, str]:
    ts = str(int(time.time() * 1000))
    return {
        "Content-Type": "application/json",
        "X-HubSpot-Signature-v3": hubspot_signature(secret, "POST", uri, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        headers_for(BODY, secret="wrong-secret"),
        headers_for(BODY, uri="http://webhooks" + ROUTE),  # signed for another URL
        {
            **headers_for(BODY),
            "X-HubSpot-Request-Timestamp": str(int(time.time() * 1000) - 301_000),
        },  # fmt: skip
    ],
    ids=["missing", "wrong-secret", "other-url", "stale"],
)
async def test_bad_signature_is_401_and_touches_nothing(headers: dict[str, str]) -> None:
    provider = CountingProvider()
    async with asgi(make_settings(), provider) as http:
        resp = await http.post(ROUTE, content=BODY, headers=headers)
    assert resp.status_code == 401
    reason = resp.json()["error"]
    assert reason and "\n" not in reason
    assert provider.calls == 0


async def test_verified_body_that_is_not_an_array_is_400() -> None:
    provider = CountingProvider()
    async with asgi(make_settings(), provider) as http:
        for body in (b'{"eventId": 1}', b"[{"):
            resp = await http.post(ROUTE, content=body, headers=headers_for(body))
            assert resp.status_code == 400, body
    assert provider.calls == 0


async def test_batch_of_100_is_judged_event_by_event(client: Client, uid: str) -> None:
    kinds = [
        ("ticket.creation", {}),
        ("deal.propertyChange", {"propertyName": "dealstage", "propertyValue": "closedwon"}),
        ("company.propertyChange", {"propertyName": "customer_tier", "propertyValue": "SMB"}),
        ("contact.creation", {}),
    ]
    base = int(uid[:6], 16) * 1000  # object IDs of this run only: workflow IDs are one-shot
    batch: list[Any] = [
        event(i, kinds[i % 4][0], objectId=base + i, **kinds[i % 4][1]) for i in range(94)
    ]
    batch += [batch[10], batch[11], batch[12]]  # 3 duplicates (HubSpot redelivers)
    batch += [
        event(200, "ticket.creation", changeSource="API", sourceId=APP_ID),  # our own writes
        event(
            201, "company.propertyChange", propertyName="mrr", changeSource="API", sourceId=APP_ID
        ),  # fmt: skip
    ]
    malformed = {k: v for k, v in event(300, "ticket.creation").items() if k != "objectId"}
    batch.insert(50, malformed)
    assert len(batch) == 100
    body = json.dumps(batch).encode()

    # a task queue no worker polls: this test is about what gets started, not how it runs
    app_settings = make_settings().model_copy(update={"task_queue": f"hs-batch-{uid}"})
    async with asgi(app_settings, lambda: _client(client)) as http:
        resp = await http.post(ROUTE, content=body, headers=headers_for(body))
    assert resp.status_code == 200
    results = resp.json()["results"]
    assert len(results) == 100
    statuses = [r["status"] for r in results]
    assert statuses[50] == "dead_letter" and "objectId" in results[50]["reason"]
    assert statuses[-2:] == ["echo", "echo"]
    assert statuses.count("dead_letter") == 1 and statuses.count("echo") == 2
    # tickets and won deals each start one workflow; their redelivery starts nothing new
    started = [r["workflow_id"] for r in results if r["status"] == "accepted"]
    assert len(started) == len(set(started)) == 48  # 24 tickets + 24 won deals of the 94
    assert results[-5:-3] == [results[10], results[11]]  # not routed: the same answer again
    assert results[-3] == {"status": "duplicate", "workflow_id": results[12]["workflow_id"]}
    assert statuses.count("ignored") == 94 - 48 + 2
    for wf_id in started:
        await client.get_workflow_handle(wf_id).terminate("test over")


async def _client(client: Client) -> Client:
    return client


# --- a batch the HubSpot sandbox sent ------------------------------------------------------------


class Receiver:
    """Records what HubSpot posted: the raw body, the headers and the URL it posted to."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.app = App(
            "receiver", Starlette(routes=[Route("/hooks/hubspot", self._hook, methods=["POST"])])
        )

    async def _hook(self, request: Request) -> Response:
        self.received.append({"headers": dict(request.headers), "body": await request.body()})
        self.arrived.set()
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def sandbox() -> Iterator[tuple[HubSpotEmulator, Receiver, str, str]]:
    emulator, receiver = HubSpotEmulator(client_secret=SECRET), Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as st:
        # a query with escapes HubSpot decodes before signing
        target = st.urls["receiver"] + "/hooks/hubspot?portal=62515&tag=rev%3Abridge%2Ftest"
        emulator.webhook_targets.append(WebhookTarget(target))
        yield emulator, receiver, st.urls["hubspot"], target


def deliveries(receiver: Receiver, url: str) -> list[dict[str, Any]]:
    """Everything posted since the receiver was cleared: the flush route sends what is still
    buffered and waits for every delivery in flight (including ones the ~100 ms timer started)."""
    httpx.post(url + "/_sandbox/hubspot/webhooks/flush", timeout=15).raise_for_status()
    assert receiver.received, "the sandbox delivered nothing"
    return list(receiver.received)


class RecordingClient:
    """Takes workflow starts without a server: these replays are about verification and
    normalization (the real start path is the batch test's), and the sandbox's deal IDs repeat
    across emulator instances, so real one-shot workflow IDs would collide with other tests'."""

    def __init__(self) -> None:
        self.started: list[str] = []

    async def start_workflow(self, workflow: str, arg: Any, *, id: str, **_: Any) -> None:
        self.started.append(id)


async def replay(
    hit: dict[str, Any], target: str, recorder: RecordingClient | None = None
) -> httpx.Response:
    settings = make_settings(public_url=target)
    headers = {
        k: v
        for k, v in hit["headers"].items()
        if k in ("content-type", "x-hubspot-signature-v3", "x-hubspot-request-timestamp")
    }
    rec = recorder or RecordingClient()

    async def provider() -> Any:
        return rec

    async with asgi(settings, provider) as http:
        return await http.post(ROUTE, content=hit["body"], headers=headers)


async def test_a_real_sandbox_batch_verifies_and_normalizes(
    sandbox: tuple[HubSpotEmulator, Receiver, str, str],
) -> None:
    emulator, receiver, url, target = sandbox
    assert str(emulator.app_id) == APP_ID
    deal = emulator.seed(
        {
            "objects": {
                "deals": [
                    {"ref": "d", "properties": {"dealname": "Big", "dealstage": "contractsent"}}
                ]
            }
        }  # fmt: skip
    )["refs"]["d"]["id"]
    receiver.received.clear()
    r = httpx.post(
        f"{url}/_sandbox/hubspot/objects/deals/{deal}/ui_update",
        json={"properties": {"dealstage": "closedwon"}},
    )
    assert r.status_code == 200
    [hit] = deliveries(receiver, url)
    events = json.loads(hit["body"])
    recorder = RecordingClient()
    resp = await replay(hit, target, recorder)
    assert resp.status_code == 200, resp.text
    assert recorder.started == [f"q2c:hubspot:{deal}"]
    assert len(resp.json()["results"]) == len(events)
    assert all(r["status"] not in ("dead_letter", "echo") for r in resp.json()["results"])
    won = [hubspot.normalize(e, APP_ID) for e in events]
    assert any(isinstance(w, DealWon) and w.opportunity_id == deal for w in won)

    # the URL configured in decoded form is the same signed URI; another URL or body is not
    decoded = target.replace("%3A", ":").replace("%2F", "/")
    assert (await replay(hit, decoded)).status_code == 200
    bad = await replay(hit, target.replace("bridge", "BRIDGE"))
    assert bad.status_code == 401
    tampered = await replay(
        {**hit, "body": hit["body"].replace(b"closedwon", b"closedwoN")}, target
    )
    assert tampered.status_code == 401


async def test_our_own_connector_writes_come_back_as_echoes(
    sandbox: tuple[HubSpotEmulator, Receiver, str, str],
) -> None:
    emulator, receiver, url, target = sandbox
    company = emulator.seed(
        {"objects": {"companies": [{"ref": "c", "properties": {"name": "Acme"}}]}}
    )["refs"]["c"]["id"]
    crm = HubSpotCrm(HubSpotSettings(access_token=SecretStr(emulator.access_token), api_url=url))
    receiver.received.clear()
    crm.upsert_case(
        CaseDraft(
            key="rb-echo-1",
            account_id=company,
            subject="s",
            description="d",
            priority=CasePriority.LOW,
            invoice_id="INV-1",
        )
    )
    hits = deliveries(receiver, url)
    events = [e for hit in hits for e in json.loads(hit["body"])]
    assert {e["subscriptionType"] for e in events} >= {"ticket.creation"}
    for hit in hits:
        resp = await replay(hit, target)
        assert resp.status_code == 200
        assert {r["status"] for r in resp.json()["results"]} == {"echo"}
