"""A hostile sender against the routes the new use cases added: the Zendesk webhook (a new ticket
starts support context), the Salesforce account-change Flow callout and HubSpot's company / contact
``propertyChange`` events (both feed the account sync, REVBRIDGE_ACCOUNT_SYNC=1).

Each bad delivery gets its documented status with a one-line reason and starts nothing; any
bytes through the new parsers are a clean rejection (``Rejected``), never another exception
(Hypothesis); through the app, never a 5xx. The Temporal side is a recording client (the routes'
real starts are covered by tests/zendesk/test_end_to_end.py and tests/sync/). There is no
Marketing Cloud callback route: its send status is polled by the connector
(connectors/marketing_cloud.py), so nothing arrives from Marketing Cloud to attack.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain.golden import SyncSignal
from domain.ids import PROVIDER_ID
from domain.settings import HubSpotSettings, Settings, WebhookSettings
from webhooks import hubspot, salesforce, zendesk
from webhooks.errors import Rejected
from webhooks.parsing import MAX_BODY, parse_json

ZD_SECRET = "zd-hostile-secret"  # noqa: S105
SF_SECRET = "sf-hostile-secret"  # noqa: S105
HS_SECRET = "hs-hostile-secret"  # noqa: S105
HS_URL = "http://webhooks/webhooks/hubspot"
ORG = "00D000000000001"
DOCUMENTED = {200, 202, 400, 401, 403, 404, 413, 422, 503}
HOOK = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


class RecordingClient:
    """``start_workflow`` as Temporal answers it: a plain start of an ID that exists is already
    started; a signal-with-start (the account sync) signals the running run."""

    def __init__(self) -> None:
        self.started: list[tuple[str, Any]] = []

    async def start_workflow(self, workflow: str, arg: Any, *, id: str, **kw: Any) -> None:
        if kw.get("start_signal") is None and any(wf_id == id for wf_id, _ in self.started):
            raise WorkflowAlreadyStartedError(id, workflow)
        self.started.append((id, kw.get("start_signal_args") or arg))


def make_app(client: RecordingClient, **over: Any) -> Any:
    from webhooks.app import create_app

    s = Settings(
        billing="chargebee",
        crm=over.pop("crm", "salesforce"),
        desk="zendesk",
        task_queue="hostile-door",
        hubspot=HubSpotSettings(
            access_token=SecretStr("t"), api_url="http://127.0.0.1:9", app_id="99"
        ),
        webhooks=WebhookSettings(
            zendesk_secrets=[SecretStr(ZD_SECRET)],
            salesforce_secrets=[SecretStr(SF_SECRET)],
            salesforce_org_id=ORG,
            hubspot_client_secret=SecretStr(HS_SECRET),
            hubspot_public_url=HS_URL,
            account_sync=True,
            **over,
        ),
    )

    async def provider() -> RecordingClient:
        return client

    return create_app(s, client=provider)  # type: ignore[arg-type]


async def post(app: Any, route: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://webhooks") as http:
        return await http.post(f"/webhooks/{route}", content=body, headers=headers)


def one_line(resp: httpx.Response) -> str:
    assert resp.status_code in DOCUMENTED, resp.text
    assert "\n" not in resp.text and "Traceback" not in resp.text
    body = resp.json()
    return body.get("error") or body.get("reason") or body.get("status") or json.dumps(body)


# --- Zendesk ----------------------------------------------------------------------------------


def zd_headers(body: bytes, at: datetime | None = None, secret: str = ZD_SECRET) -> dict[str, str]:
    ts = (at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        zendesk.SIGNATURE: zendesk.sign(secret, ts, body),
        zendesk.TIMESTAMP: ts,
        "Content-Type": "application/json",
    }


def ticket(ticket_id: str = "4242", **detail: Any) -> dict[str, Any]:
    return {
        "type": "zen:event-type:ticket.created",
        "id": f"01J-{ticket_id}",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "detail": {"id": ticket_id, **detail},
        "event": {},
    }


def zd_case(name: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(ticket()).encode()
    if name == "missing-signature":
        return body, {zendesk.TIMESTAMP: zd_headers(body)[zendesk.TIMESTAMP]}
    if name == "missing-timestamp":
        return body, {zendesk.SIGNATURE: zd_headers(body)[zendesk.SIGNATURE]}
    if name == "empty-signature":
        return body, {**zd_headers(body), zendesk.SIGNATURE: "  "}
    if name == "not-base64":
        return body, {**zd_headers(body), zendesk.SIGNATURE: "%%%not-base64%%%"}
    if name == "wrong-secret":
        return body, zd_headers(body, secret="guessed")
    if name == "stale":  # a captured delivery replayed six minutes later
        return body, zd_headers(body, at=datetime.now(UTC) - timedelta(minutes=6))
    if name == "future":
        return body, zd_headers(body, at=datetime.now(UTC) + timedelta(minutes=6))
    if name == "naive-timestamp":
        h = zd_headers(body)
        ts = h[zendesk.TIMESTAMP].rstrip("Z")
        return body, {
            **h,
            zendesk.TIMESTAMP: ts,
            zendesk.SIGNATURE: zendesk.sign(ZD_SECRET, ts, body),
        }
    if name == "year-one":
        ts = "0001-01-01T00:00:00+14:00"
        return body, {zendesk.SIGNATURE: zendesk.sign(ZD_SECRET, ts, body), zendesk.TIMESTAMP: ts}
    raise AssertionError(name)


ZD_AUTH = [
    ("missing-signature", "missing X-Zendesk-Webhook-Signature header"),
    ("missing-timestamp", "missing X-Zendesk-Webhook-Signature-Timestamp header"),
    ("empty-signature", "missing X-Zendesk-Webhook-Signature header"),
    ("not-base64", "signature is not base64"),
    ("wrong-secret", "signature does not match"),
    ("stale", "signature timestamp is too old (or in the future)"),
    ("future", "signature timestamp is too old (or in the future)"),
    ("naive-timestamp", "signature timestamp is not an ISO-8601 UTC time"),
    ("year-one", "signature timestamp is too old (or in the future)"),
]


@pytest.mark.parametrize(("case", "reason"), ZD_AUTH, ids=[c for c, _ in ZD_AUTH])
async def test_zendesk_bad_signatures_are_401_and_start_nothing(case: str, reason: str) -> None:
    client = RecordingClient()
    body, headers = zd_case(case)
    resp = await post(make_app(client), "zendesk", body, headers)
    assert resp.status_code == 401
    assert one_line(resp) == reason
    assert client.started == []


def _signed_json(payload: Any) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return body, zd_headers(body)


ZD_BODIES = [
    ("malformed-json", b'{"type": "zen:event-type:ticket.created", ', 400),
    ("not-utf8", b'{"type": "\xff\xfe"}', 400),
    ("array", [ticket()], 400),
    ("no-type", {k: v for k, v in ticket().items() if k != "type"}, 400),
    ("detail-not-object", {**ticket(), "detail": "4242"}, 400),
    ("no-ticket-id", {**ticket(), "detail": {}}, 422),
    ("ticket-id-text", {**ticket(), "detail": {"id": "42; DROP"}}, 422),
    ("ticket-id-float", {**ticket(), "detail": {"id": 42.5}}, 422),
    ("ticket-id-negative", {**ticket(), "detail": {"id": -4}}, 422),
    ("no-event-id", {k: v for k, v in ticket().items() if k != "id"}, 400),
    ("no-time", {k: v for k, v in ticket().items() if k != "time"}, 422),
    ("time-garbled", {**ticket(), "time": "yesterday"}, 422),
    ("time-1970", {**ticket(), "time": "1970-01-01T00:00:00Z"}, 422),
    ("trigger-no-ticket-id", {"event": "ticket_created"}, 422),
    ("trigger-id-email", {"event": "ticket_created", "ticket_id": "jane@example.com"}, 422),
    ("deep", b"[" * 50_000, 400),
    ("huge-int", b'{"type": "ticket_created", "ticket_id": ' + b"9" * 400 + b"}", 400),
    ("nan", b'{"event": "ticket_created", "ticket_id": NaN}', 400),
]


@pytest.mark.parametrize(("case", "body", "status"), ZD_BODIES, ids=[c for c, _, _ in ZD_BODIES])
async def test_zendesk_bad_bodies_with_a_valid_signature_are_one_line_4xx(
    case: str, body: Any, status: int
) -> None:
    client = RecordingClient()
    raw, headers = _signed_json(body)
    resp = await post(make_app(client), "zendesk", raw, headers)
    assert resp.status_code == status, resp.text
    one_line(resp)
    assert client.started == []


async def test_zendesk_huge_body_is_413_before_it_is_read_whole() -> None:
    client = RecordingClient()
    body = b'{"event": "ticket_created", "ticket_id": "1", "pad": "' + b"x" * MAX_BODY + b'"}'
    resp = await post(make_app(client), "zendesk", body, zd_headers(body))
    assert resp.status_code == 413 and one_line(resp) == "body too large"
    # a lying Content-Length is refused from the header alone
    resp = await post(
        make_app(client), "zendesk", b"{}", {**zd_headers(b"{}"), "Content-Length": "9" * 15}
    )
    assert resp.status_code in (400, 413), resp.text
    assert client.started == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "", "application/xml"]
)
async def test_zendesk_judges_the_signed_bytes_not_the_content_type(content_type: str) -> None:
    """The signature covers the body, not the header: a signed JSON ticket under another
    Content-Type is the same delivery (one run), a signed non-JSON body a one-line 400."""
    client = RecordingClient()
    body = json.dumps(ticket("5151")).encode()
    resp = await post(
        make_app(client), "zendesk", body, {**zd_headers(body), "Content-Type": content_type}
    )
    assert resp.status_code == 202, resp.text
    form = b"type=zen%3Aevent-type%3Aticket.created&detail=5152"
    resp = await post(
        make_app(client), "zendesk", form, {**zd_headers(form), "Content-Type": content_type}
    )
    assert resp.status_code == 400 and one_line(resp).startswith("malformed JSON")
    assert [wf for wf, _ in client.started] == ["case:zendesk:5151"]


async def test_zendesk_replayed_delivery_starts_one_run() -> None:
    """A captured delivery replayed inside the signature window joins the run it started (200
    duplicate); replayed later it is refused (401): one run either way."""
    client = RecordingClient()
    app = make_app(client)
    body = json.dumps(ticket("6161")).encode()
    headers = zd_headers(body)
    first = await post(app, "zendesk", body, headers)
    again = await post(app, "zendesk", body, headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["status"] == "duplicate"
    late = await post(
        app, "zendesk", body, zd_headers(body, at=datetime.now(UTC) - timedelta(hours=1))
    )
    assert late.status_code == 401
    assert [wf for wf, _ in client.started] == ["case:zendesk:6161"]


printable_header = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80
)
timestamps = st.one_of(
    printable_header,
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2026-02-30T00:00:00Z",
            "2026-01-01", "T", "Z", "+00:00", "2026-01-01T00:00:00.9999999999Z", "1" * 40,
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(lambda d: d.isoformat()),
)  # fmt: skip


@HOOK
@given(signature=printable_header, timestamp=timestamps)
def test_zendesk_any_signature_header_is_a_one_line_401(signature: str, timestamp: str) -> None:
    client = RecordingClient()
    body = json.dumps(ticket("7171")).encode()
    headers = {zendesk.SIGNATURE: signature, zendesk.TIMESTAMP: timestamp}
    resp = asyncio.run(post(make_app(client), "zendesk", body, headers))
    assert resp.status_code == 401, resp.text
    one_line(resp)
    assert client.started == []


# --- the parsers, any bytes -------------------------------------------------------------------

hostile_bytes = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=20),
        ),
        lambda kids: (
            st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4)
        ),
        max_leaves=20,
    ).map(lambda v: json.dumps(v).encode()),
)


def _shaped(kind: str) -> st.SearchStrategy[bytes]:
    """Vendor-shaped bodies with hostile values in their fields."""
    value = st.one_of(
        st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
        st.text(max_size=30), st.sampled_from(["", "../x", "a b", "jane@example.com", "x" * 300]),
        st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    )  # fmt: skip
    if kind == "salesforce":
        keys = ["event", "eventId", "recordId", "orgId", "occurredAt", "record"]
        rec = ["Billing_Customer_Id__c", "Billing_Platform__c", "LastModifiedById", "Name"]
        return st.builds(
            lambda top, inner: json.dumps(
                {**sf_body(), **top, "record": {**sf_body()["record"], **inner}}
            ).encode(),
            st.dictionaries(st.sampled_from(keys[1:]), value, max_size=3),
            st.dictionaries(st.sampled_from(rec), value, max_size=3),
        )
    keys = ["eventId", "subscriptionType", "objectId", "propertyName", "occurredAt", "changeSource"]
    return st.builds(
        lambda edits, n: json.dumps([{**hs_event(i), **edits} for i in range(n)]).encode(),
        st.dictionaries(st.sampled_from(keys), value, max_size=3),
        st.integers(min_value=0, max_value=3),
    )


@HOOK
@given(body=st.one_of(hostile_bytes, _shaped("salesforce")))
def test_zendesk_and_salesforce_parsers_reject_cleanly(body: bytes) -> None:
    for parse in (
        lambda p: zendesk.normalize(p, "777"),
        lambda p: salesforce.normalize(p, org_id=ORG, sync=True, billing="chargebee"),
    ):
        try:
            out = parse(parse_json(body))
        except Rejected as exc:
            assert 400 <= exc.status < 500 and "\n" not in exc.reason
            continue
        if isinstance(out, SyncSignal):
            assert out.billing == "chargebee"
            assert PROVIDER_ID.fullmatch(out.customer_id) and PROVIDER_ID.fullmatch(
                out.crm_account_id or ""
            )


@HOOK
@given(body=st.one_of(hostile_bytes, _shaped("hubspot")))
def test_hubspot_parser_rejects_cleanly(body: bytes) -> None:
    try:
        events = hubspot.parse_batch(parse_json(body))
    except Rejected as exc:
        assert exc.status == 400
        return
    for raw in events:
        try:
            hubspot.normalize(raw, own_app_id="99")
        except Rejected as exc:
            assert exc.status == 422 and "\n" not in exc.reason


# --- Salesforce: the account-change Flow callout ------------------------------------------------


def sf_body(**over: Any) -> dict[str, Any]:
    return {
        "event": "account_changed",
        "eventId": f"ev-{time.monotonic_ns()}",
        "sobject": "Account",
        "recordId": "001000000000001AAA",
        "orgId": ORG,
        "occurredAt": datetime.now(UTC).isoformat(),
        "changedFields": ["Billing_Contact_Email__c"],
        "record": {
            "Billing_Customer_Id__c": "cus_1",
            "Billing_Platform__c": "chargebee",
            "LastModifiedById": "005000000000002",
        },
        **over,
    }


SF_CASES: list[tuple[str, dict[str, str] | None, Any, int, str]] = [
    ("no-secret", {}, sf_body(), 401, f"missing {salesforce.HEADER} header"),
    ("wrong-secret", {salesforce.HEADER: "guess"}, sf_body(), 401, "webhook secret does not match"),
    ("other-org", None, sf_body(orgId="00D999999999999"), 403, "callout from another Salesforce org"),
    ("malformed", None, b'{"event": "account_changed"', 400, "malformed JSON at position 27"),
    ("no-event-id", None, sf_body(eventId=""), 400, "eventId is missing"),
    ("no-record-id", None, sf_body(recordId=None), 400, "recordId is missing"),
    ("record-id-soql", None, sf_body(recordId="001' OR Name != '"), 422, "recordId is not a provider ID"),
    ("record-id-email", None, sf_body(recordId="jane@example.com"), 422, "recordId is not a provider ID"),
    ("no-record", None, sf_body(record=None), 400, "account_changed without record"),
    ("customer-id-path", None, sf_body(record={"Billing_Customer_Id__c": "../cus", "Billing_Platform__c": "chargebee"}), 422, "record.Billing_Customer_Id__c is not a provider ID"),
    ("time-garbled", None, sf_body(occurredAt="soon"), 422, "occurredAt is not an ISO 8601 timestamp"),
    ("unlinked", None, sf_body(record={"Name": "Acme"}), 200, "event type not routed"),
    ("other-platform", None, sf_body(record={"Billing_Customer_Id__c": "cus_1", "Billing_Platform__c": "stripe"}), 200, "event type not routed"),
    ("unknown-platform", None, sf_body(record={"Billing_Customer_Id__c": "cus_1", "Billing_Platform__c": "paypal"}), 200, "event type not routed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "headers", "body", "status", "reason"), SF_CASES, ids=[c[0] for c in SF_CASES]
)
async def test_salesforce_account_change_callouts(
    case: str, headers: dict[str, str] | None, body: Any, status: int, reason: str
) -> None:
    client = RecordingClient()
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await post(
        make_app(client),
        "salesforce",
        raw,
        headers if headers is not None else {salesforce.HEADER: SF_SECRET},
    )
    assert resp.status_code == status, resp.text
    assert one_line(resp) == reason
    assert client.started == []


async def test_salesforce_account_change_reaches_its_customer_once_per_event() -> None:
    client = RecordingClient()
    body = json.dumps(sf_body(eventId="ev-sf-1")).encode()
    app = make_app(client)
    for _ in range(2):  # a replay signals the same run again: the run dedups by event ID
        resp = await post(app, "salesforce", body, {salesforce.HEADER: SF_SECRET})
        assert resp.status_code == 202 and resp.json()["workflow_id"] == "account:chargebee:cus_1"
    (signal,) = {s[0].event_id for _, s in client.started}
    assert signal == "ev-sf-1"


@HOOK
@given(body=st.one_of(hostile_bytes, _shaped("salesforce")))
def test_salesforce_callout_any_body_never_5xx(body: bytes) -> None:
    client = RecordingClient()
    resp = asyncio.run(post(make_app(client), "salesforce", body, {salesforce.HEADER: SF_SECRET}))
    one_line(resp)
    if resp.status_code == 202:
        ((wf_id, _),) = client.started
        assert wf_id.startswith("account:chargebee:") and PROVIDER_ID.fullmatch(
            wf_id.split(":", 2)[2]
        )
    else:
        assert client.started == []


# --- HubSpot: company / contact propertyChange for the account sync ---------------------------


def hs_event(i: int = 0, **over: Any) -> dict[str, Any]:
    return {
        "eventId": 1000 + i,
        "subscriptionId": 7,
        "portalId": 62515,
        "appId": 5,
        "occurredAt": int(time.time() * 1000),
        "subscriptionType": "company.propertyChange",
        "attemptNumber": 0,
        "objectId": 500 + i,
        "propertyName": "billing_contact_email",
        "propertyValue": "new@example.com",
        "changeSource": "CRM_UI",
        **over,
    }


def hs_headers(body: bytes, ts_ms: int | None = None) -> dict[str, str]:
    ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    return {
        "X-HubSpot-Signature-v3": hubspot.signature_v3(HS_SECRET, "POST", HS_URL, body, ts),
        "X-HubSpot-Request-Timestamp": ts,
        "Content-Type": "application/json",
    }


class FakeLookup(hubspot.HubSpotLookup):
    """The real lookup's resolution (``_resolve``) over links a test chooses (no HubSpot)."""

    links: dict[str, dict[str, Any]] = {}
    company_of: dict[str, str] = {}
    down = False

    def __init__(self, *_: Any, **__: Any) -> None:
        self.calls = 0

    def _company_of(self, contact_ids: list[str]) -> dict[str, str]:
        return {c: FakeLookup.company_of[c] for c in contact_ids if c in FakeLookup.company_of}

    def _links(self, company_ids: list[str]) -> dict[str, dict[str, str]]:
        if FakeLookup.down:
            raise Rejected(
                503, "hubspot lookup failed (ConnectTimeout), retry later", "lookup_failed"
            )
        return {c: FakeLookup.links[c] for c in company_ids if c in FakeLookup.links}


@pytest.fixture()
def lookup(monkeypatch: pytest.MonkeyPatch) -> type[FakeLookup]:
    monkeypatch.setattr(hubspot, "HubSpotLookup", FakeLookup)
    FakeLookup.links = {"500": {"billing_customer_id": "cus_hs", "billing_platform": "chargebee"}}
    FakeLookup.company_of = {"900": "500"}
    FakeLookup.down = False
    return FakeLookup


HS_CASES: list[tuple[str, Any, str]] = [
    ("linked-company", [hs_event()], "accepted"),
    ("linked-contact", [hs_event(subscriptionType="contact.propertyChange", objectId=900)], "accepted"),
    ("unlinked-company", [hs_event(objectId=501)], "ignored"),
    ("no-property-name", [hs_event(propertyName=None)], "dead_letter"),
    ("object-id-text", [hs_event(objectId="500 OR 1=1")], "dead_letter"),
    ("no-occurred-at", [hs_event(occurredAt=None)], "dead_letter"),
    ("our-own-write", [hs_event(changeSource="INTEGRATION", sourceId="99")], "echo"),
    ("not-an-object", ["company.propertyChange"], "dead_letter"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "batch", "status"), HS_CASES, ids=[c for c, _, _ in HS_CASES])
async def test_hubspot_property_changes(
    case: str, batch: list[Any], status: str, lookup: type[FakeLookup]
) -> None:
    client = RecordingClient()
    body = json.dumps(batch).encode()
    resp = await post(make_app(client, crm="hubspot"), "hubspot", body, hs_headers(body))
    assert resp.status_code == 200, resp.text
    assert "\n" not in resp.text
    (result,) = resp.json()["results"]
    assert result["status"] == status, result
    if status == "accepted":
        assert [wf for wf, _ in client.started] == ["account:chargebee:cus_hs"]
    else:
        assert client.started == []


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("stale", 401, None),
        ("tampered", 401, None),
        ("too-many", 400, "a HubSpot batch has at most 100 events"),
        ("object", 400, "a HubSpot webhook body must be a JSON array of events"),
        ("lookup-down", 503, "hubspot lookup failed (ConnectTimeout), retry later"),
    ],
)
async def test_hubspot_deliveries_refused_whole(
    case: str, status: int, reason: str | None, lookup: type[FakeLookup]
) -> None:
    client = RecordingClient()
    batch: Any = [hs_event()]
    body = json.dumps(batch).encode()
    headers = hs_headers(body)
    if case == "stale":
        headers = hs_headers(body, ts_ms=int(time.time() * 1000) - 6 * 60_000)
    elif case == "tampered":
        body = body.replace(b"new@example.com", b"evil@example.com")
    elif case == "too-many":
        body = json.dumps([hs_event(i) for i in range(101)]).encode()
        headers = hs_headers(body)
    elif case == "object":
        body = json.dumps(hs_event()).encode()
        headers = hs_headers(body)
    elif case == "lookup-down":
        lookup.down = True
    resp = await post(make_app(client, crm="hubspot"), "hubspot", body, headers)
    assert resp.status_code == status, resp.text
    line = one_line(resp)
    if reason:
        assert line == reason
    if status == 503:
        assert resp.headers["Retry-After"]
    assert client.started == []


link_value = st.one_of(
    st.none(),
    st.text(max_size=40),
    st.sampled_from(["", "cus 1", "../cus", "jane@example.com", "x" * 200, "cus_ok"]),
)


@HOOK
@given(
    customer=link_value,
    platform=st.one_of(link_value, st.sampled_from(["chargebee", "stripe"])),
    batch=_shaped("hubspot"),
)
def test_hubspot_any_batch_or_link_never_5xx(
    customer: str | None, platform: str | None, batch: bytes, lookup: type[FakeLookup]
) -> None:
    """Hostile events, and hostile billing links on the companies they name (a CRM user can type
    anything into ``billing_customer_id``): never a 5xx, and a start only for an ID a workflow
    can carry, of this deployment's platform."""
    lookup.links = {
        str(500 + i): {"billing_customer_id": customer, "billing_platform": platform}
        for i in range(4)
    }
    client = RecordingClient()
    resp = asyncio.run(post(make_app(client, crm="hubspot"), "hubspot", batch, hs_headers(batch)))
    assert resp.status_code in (200, 400), resp.text
    assert "\n" not in resp.text
    for wf_id, _ in client.started:
        assert platform == "chargebee" and wf_id == f"account:chargebee:{customer}"
        assert PROVIDER_ID.fullmatch(customer or "")


# --- the billing side of the account sync: customer / subscription events, sync on ------------

_value = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False), st.text(max_size=30),
    st.sampled_from(["", "../x", "a b", "x" * 300, "2026-01-01", "jane@example.com"]),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)  # fmt: skip
_FIELDS = ["id", "customer_id", "customer", "status", "mrr", "plan_id", "email", "object", "items"]


def _billing_event(vendor: str, kind: str, fields: dict[str, Any]) -> bytes:
    if vendor == "chargebee":
        key = "customer" if kind.startswith("customer") else "subscription"
        body: dict[str, Any] = {
            "id": "ev_1", "event_type": kind, "api_version": "v2", "occurred_at": int(time.time()),
            "content": {key: fields},
        }  # fmt: skip
    elif vendor == "stripe":
        body = {
            "id": "evt_1", "type": kind, "created": int(time.time()),
            "data": {"object": fields}, "request": {"id": None, "idempotency_key": None},
        }  # fmt: skip
    else:
        body = {"id": "n1", "object_type": kind, "event_type": "updated", **fields}
    return json.dumps(body).encode()


_billing_events = st.one_of(
    st.builds(
        _billing_event,
        st.just("chargebee"),
        st.sampled_from(["customer_changed", "customer_created", "subscription_changed",
                         "subscription_cancelled", "subscription_created", "customer_deleted"]),
        st.dictionaries(st.sampled_from(_FIELDS), _value, max_size=4),
    ),
    st.builds(
        _billing_event,
        st.just("stripe"),
        st.sampled_from(["customer.updated", "customer.created", "customer.deleted",
                         "customer.subscription.updated", "customer.subscription.deleted"]),
        st.dictionaries(st.sampled_from(_FIELDS), _value, max_size=4),
    ),
    st.builds(
        _billing_event,
        st.just("recurly"),
        st.sampled_from(["account", "subscription", "charge_invoice", "payment"]),
        st.dictionaries(st.sampled_from(["account_code", "uuid", "event_time", "site_id", "account"]), _value, max_size=4),  # fmt: skip
    ),
)  # fmt: skip


@settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=_billing_events)
def test_billing_change_parsers_with_the_sync_on_reject_cleanly(body: bytes) -> None:
    from webhooks import chargebee, recurly, stripe

    try:
        payload = parse_json(body)
    except Rejected as exc:  # (Infinity, 1e400: the door's parser)
        assert exc.status == 400
        return
    for parse in (
        lambda p: chargebee.normalize(p, api_user="rb", sync=True),
        lambda p: stripe.normalize(p, sync=True),
        lambda p: recurly.parse(p, sync=True),
    ):
        try:
            out = parse(payload)
        except Rejected as exc:
            assert 400 <= exc.status < 500 and "\n" not in exc.reason
            continue
        if isinstance(out, SyncSignal):
            assert PROVIDER_ID.fullmatch(out.customer_id) and PROVIDER_ID.fullmatch(out.billing)


# --- Temporal down: 503 + Retry-After, so the vendor redelivers (nothing accepted is lost) ------


class DownClient:
    """Temporal answering UNAVAILABLE to every start (a server restart, a network split)."""

    def __init__(self) -> None:
        self.calls = 0

    async def start_workflow(self, *_: Any, **__: Any) -> None:
        from temporalio.service import RPCError, RPCStatusCode

        self.calls += 1
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


@pytest.mark.parametrize("route", ["zendesk", "salesforce", "hubspot"])
async def test_temporal_down_is_503_with_retry_after(route: str, lookup: type[FakeLookup]) -> None:
    from webhooks.app import create_app

    down = DownClient()

    async def provider() -> DownClient:
        return down

    s = Settings(
        billing="chargebee",
        crm="hubspot" if route == "hubspot" else "salesforce",
        desk="zendesk",
        hubspot=HubSpotSettings(access_token=SecretStr("t"), api_url="http://127.0.0.1:9"),
        webhooks=WebhookSettings(
            zendesk_secrets=[SecretStr(ZD_SECRET)],
            salesforce_secrets=[SecretStr(SF_SECRET)],
            hubspot_client_secret=SecretStr(HS_SECRET),
            hubspot_public_url=HS_URL,
            account_sync=True,
        ),
    )
    app = create_app(s, client=provider)  # type: ignore[arg-type]
    if route == "zendesk":
        body = json.dumps(ticket("8181")).encode()
        headers = zd_headers(body)
    elif route == "salesforce":
        body = json.dumps(sf_body(orgId=None)).encode()
        headers = {salesforce.HEADER: SF_SECRET}
    else:
        body = json.dumps([hs_event()]).encode()
        headers = hs_headers(body)
    resp = await post(app, route, body, headers)
    assert resp.status_code == 503, resp.text
    assert one_line(resp) == "workflow engine unavailable, retry later"
    assert resp.headers["Retry-After"]
    assert down.calls == 1


async def test_zendesk_on_a_deployment_without_a_desk_is_a_404_naming_none() -> None:
    from webhooks.app import create_app

    client = RecordingClient()

    async def provider() -> RecordingClient:
        return client

    app = create_app(Settings(task_queue="no-desk"), client=provider)  # type: ignore[arg-type]
    body = json.dumps(ticket()).encode()
    resp = await post(app, "zendesk", body, zd_headers(body))
    assert resp.status_code == 404
    assert one_line(resp) == "zendesk is not this deployment's support desk (none)"  # not "(None)"
    assert client.started == []
