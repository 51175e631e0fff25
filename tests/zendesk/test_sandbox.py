"""The Zendesk sandbox through zenpy, as the reference's emulator checklist (§2.8) asks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import date

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket
from zenpy.lib.exception import APIException, RecordNotFoundException

from sandbox.framework import App, Fault, ServerThread, WebhookTarget
from sandbox.zendesk import ZendeskEmulator, signature
from tests.zendesk.conftest import AGENT, SECRET, TOKEN, seed_account


def test_ticket_requester_organization_and_comments(
    zendesk: ZendeskEmulator, zenpy_client: Zenpy
) -> None:
    ids = seed_account(zendesk)
    t = zenpy_client.tickets(id=ids["org"])
    assert (t.subject, t.requester_id, t.organization_id) == ("Why was I charged twice?", 10, 20)
    assert zenpy_client.users(id=t.requester_id).email == "ann@acme.test"
    assert zenpy_client.organizations(id=t.organization_id).external_id == "cust_org"

    t.comment = Comment(body="internal", public=False)
    written = zenpy_client.tickets.update(t)
    assert type(written).__name__ == "TicketAudit"  # ticket + audit, as Zendesk answers
    assert written.ticket.updated_at > t.updated_at
    comments = list(zenpy_client.tickets.comments(t.id))
    assert [(c.body, c.public) for c in comments] == [("...", True), ("internal", False)]
    put = [r for r in zendesk.ledger if r["method"] == "PUT"][0]
    assert '"public": false' in put["body"]
    # the comments list was asked for with cursor pagination (zenpy adds page[size])
    assert any("page%5Bsize%5D=100" in r["query"] for r in zendesk.ledger)


def test_zendesk_error_bodies(zendesk: ZendeskEmulator, zenpy_client: Zenpy) -> None:
    with pytest.raises(RecordNotFoundException):
        zenpy_client.tickets(id=424242)
    bad = Zenpy(subdomain="acme", email=AGENT, token="wrong", disable_cache=True)  # noqa: S106
    with pytest.raises(APIException) as exc:
        bad.users.me()
    assert exc.value.response.status_code == 401
    assert exc.value.response.json() == {"error": "Couldn't authenticate you"}
    assert exc.value.response.headers["WWW-Authenticate"] == 'Basic realm="Web Password"'
    # a closed ticket refuses updates with RecordInvalid (422)
    ids = seed_account(zendesk)
    zendesk.tickets[ids["none"]]["status"] = "closed"
    t = zenpy_client.tickets(id=ids["none"])
    t.comment = Comment(body="late", public=False)
    with pytest.raises(APIException) as exc:
        zenpy_client.tickets.update(t)
    assert exc.value.response.status_code == 422
    assert exc.value.response.json()["error"] == "RecordInvalid"


def test_safe_update_with_a_stale_stamp_is_a_409(
    zendesk: ZendeskEmulator, zenpy_client: Zenpy
) -> None:
    ids = seed_account(zendesk)
    stale = zenpy_client.tickets(id=ids["org"])
    fresh = zenpy_client.tickets(id=ids["org"])
    fresh.status = "open"
    zenpy_client.tickets.update(fresh)
    stale.comment = Comment(body="late", public=False)
    stale.safe_update = True
    stale.updated_stamp = stale.updated_at
    with pytest.raises(APIException) as exc:
        zenpy_client.tickets.update(stale)
    assert exc.value.response.status_code == 409
    assert len(zendesk.comments[ids["org"]]) == 1


def test_search_with_zendesk_query_syntax(zendesk: ZendeskEmulator, zenpy_client: Zenpy) -> None:
    seed_account(zendesk)
    orgs = list(zenpy_client.search(type="organization", external_id="cust_org"))
    assert [(type(o).__name__, o.id) for o in orgs] == [("Organization", 20)]
    users = list(zenpy_client.search(type="user", email="gus@globex.test"))
    assert [u.id for u in users] == [11]
    tickets = list(
        zenpy_client.search("invoice", type="ticket", status="new", created_after=date(2020, 1, 1))
    )
    assert [t.subject for t in tickets] == ["Invoice question"]
    q = [r["query"] for r in zendesk.ledger if r["path"] == "/api/v2/search.json"][-1]
    assert "type%3Aticket" in q and "created%3E2020-01-01" in q


def test_search_offset_pages_and_the_1000_cap(zendesk_url: str, zendesk: ZendeskEmulator) -> None:
    zendesk.seed({"users": [{"email": f"u{i}@example.test"} for i in range(150)]})
    auth = {
        "Authorization": "Basic " + base64.b64encode(f"{AGENT}/token:{TOKEN}".encode()).decode()
    }
    first = httpx.get(
        f"{zendesk_url}/api/v2/search.json", params={"query": "type:user example"}, headers=auth
    ).json()
    assert len(first["results"]) == 100 and first["count"] == 150
    assert first["next_page"].startswith(zendesk_url)  # absolute, on this host
    assert all(r["result_type"] == "user" for r in first["results"])
    second = httpx.get(first["next_page"], headers=auth).json()
    assert len(second["results"]) == 50 and second["next_page"] is None
    capped = httpx.get(
        f"{zendesk_url}/api/v2/search.json",
        params={"query": "type:user", "page": 11},
        headers=auth,
    )
    assert capped.status_code == 422 and capped.json()["error"] == "invalid"


def test_cursor_pagination_follows_absolute_next_links(
    zendesk: ZendeskEmulator, zenpy_client: Zenpy
) -> None:
    seed_account(zendesk)
    tid = zendesk.seed({"tickets": [{"requester_id": 10, "description": "x"}]})["tickets"][0]
    for i in range(120):  # more than one page of comments (100 a page)
        t = zenpy_client.tickets(id=tid)
        t.comment = Comment(body=f"c{i}", public=False)
        zendesk.per_ticket_updates = 1000
        zenpy_client.tickets.update(t)
    comments = list(zenpy_client.tickets.comments(tid))
    assert len(comments) == 121
    assert any("page%5Bafter%5D" in r["query"] for r in zendesk.ledger)


def test_429_with_retry_after_is_waited_out_by_zenpy(
    zendesk: ZendeskEmulator, zenpy_client: Zenpy, zendesk_url: str
) -> None:
    seed_account(zendesk)
    zendesk.per_minute = 3
    zendesk.requests_at.clear()
    started = time.monotonic()
    for _ in range(3):
        zenpy_client.users(id=10)
    resp = httpx.get(
        f"{zendesk_url}/api/v2/users/10.json",
        auth=(f"{AGENT}/token", TOKEN),
    )
    assert resp.status_code == 429
    assert int(resp.headers["Retry-After"]) >= 1
    assert resp.headers["X-Rate-Limit"] == "3" and resp.headers["X-Rate-Limit-Remaining"] == "0"
    assert time.monotonic() - started < 5
    # an injected one-second 429: zenpy sleeps Retry-After, then succeeds
    zendesk.per_minute = 700
    zendesk.requests_at.clear()
    with zendesk.lock:
        zendesk.faults.append(Fault(status=429, retry_after=1, path=r"/api/v2/users/10\.json"))
    t0 = time.monotonic()
    assert zenpy_client.users(id=10).id == 10
    assert time.monotonic() - t0 >= 0.9


def test_ticket_create_idempotency_key(zendesk_url: str, zendesk: ZendeskEmulator) -> None:
    seed_account(zendesk)
    auth = (f"{AGENT}/token", TOKEN)
    body = {"ticket": {"requester_id": 10, "comment": {"body": "help"}}}
    headers = {"Idempotency-Key": "k-1"}
    first = httpx.post(f"{zendesk_url}/api/v2/tickets.json", json=body, headers=headers, auth=auth)
    again = httpx.post(f"{zendesk_url}/api/v2/tickets.json", json=body, headers=headers, auth=auth)
    other = httpx.post(
        f"{zendesk_url}/api/v2/tickets.json",
        json={"ticket": {"requester_id": 11, "comment": {"body": "x"}}},
        headers=headers,
        auth=auth,
    )
    assert first.status_code == again.status_code == 201
    assert first.headers["x-idempotency-lookup"] == "miss"
    assert again.headers["x-idempotency-lookup"] == "hit"
    assert first.json()["ticket"]["id"] == again.json()["ticket"]["id"]
    assert other.status_code == 400 and other.json()["error"] == "IdempotentRequestError"


def test_create_through_zenpy_sends_a_signed_webhook(
    zendesk: ZendeskEmulator, zenpy_client: Zenpy
) -> None:
    seed_account(zendesk)
    received: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=200)

    receiver = App("receiver", Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    with ServerThread({receiver: 0}) as srv:
        zendesk.webhook_targets.clear()
        zendesk.webhook_targets.append(WebhookTarget(srv.urls["receiver"] + "/hook"))
        created = zenpy_client.tickets.create(
            Ticket(subject="Card declined", description="help", requester_id=11)
        )
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    body, headers = received[0]
    ts = headers["x-zendesk-webhook-signature-timestamp"]
    assert headers["x-zendesk-webhook-signature"] == signature(SECRET, ts, body)
    event = json.loads(body)
    assert event["type"] == "zen:event-type:ticket.created"
    assert event["detail"]["id"] == str(created.ticket.id)
    assert event["detail"]["organization_id"] == "21"


def test_signature_matches_the_documented_algorithm() -> None:
    # timestamp + body, keyed with the secret's UTF-8 bytes (reference §2.4); the older page's
    # vector was body + timestamp, which this deliberately does not reproduce
    ts, body = "2021-07-25T10:00:00Z", b'{"say": "hello"}'
    secret = "HRkRd4BeOAoUkfZr-mhauJT64rvBASlJRoIyPsd3zeA="
    expected = base64.b64encode(
        hmac.new(secret.encode(), ts.encode() + body, hashlib.sha256).digest()
    ).decode()
    assert signature(secret, ts, body) == expected
    legacy = base64.b64encode(
        hmac.new(secret.encode(), body + ts.encode(), hashlib.sha256).digest()
    ).decode()
    assert (
        legacy == "tRDSF7URY8BLCDlaBcQ7FHu051Zk+aAB0NKMP53teMw="
    )  # the old vector, for the record


def test_malformed_ticket_bodies_are_400_not_500(
    zendesk_url: str, zendesk: ZendeskEmulator
) -> None:
    ids = seed_account(zendesk)
    auth = (f"{AGENT}/token", TOKEN)
    url = f"{zendesk_url}/api/v2/tickets/{ids['org']}.json"
    for body in (b"{", b"[]", b'{"ticket": 1}', b'{"ticket": {"custom_fields": [1]}}'):
        resp = httpx.put(url, content=body, auth=auth, headers={"Content-Type": "application/json"})
        assert resp.status_code == 400, (body, resp.text)
        assert "error" in resp.json()
