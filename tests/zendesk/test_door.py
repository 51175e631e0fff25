"""Zendesk at the shared door (tests/webhooks/door.py, where it is one of ALL_ROUTES): a hostile
sender gets a one-line 4xx — a bad or missing signature, an oversized body, a malformed one — and
the Temporal client is never asked for (nothing starts)."""

from __future__ import annotations

import pytest

from domain.settings import Settings
from tests.webhooks.door import ALL_ROUTES, auth, door
from webhooks import zendesk


def test_zendesk_is_one_of_the_doors_routes() -> None:
    assert "zendesk" in ALL_ROUTES


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"not json", 400, "JSON"),
        (b"[1, 2]", 400, "object"),
        (b'{"ticket_id": "1"}', 400, "missing"),
        (b'{"type": "zen:event-type:ticket.created", "id": "e1", "detail": {"id": "1 OR 1"}}', 422, "ticket"),
        (b'{"a": "' + b"x" * 1_000_001 + b'"}', 413, "too large"),
    ],
    ids=["not-json", "array", "no-type", "bad-ticket-id", "oversize"],
)  # fmt: skip
async def test_hostile_bodies_with_a_valid_signature_are_a_one_line_4xx(
    settings: Settings, body: bytes, status: int, words: str, uid: str
) -> None:
    d = door(settings, "zendesk", None, f"door-{uid}")
    async with d.http:
        resp = await d.post(body)
    assert resp.status_code == status, resp.text[:200]
    error = resp.json()["error"]
    assert words.lower() in error.lower() and "\n" not in error
    assert d.provider.calls == 0


@pytest.mark.parametrize("case", ["bad-signature", "missing-signature", "stale-timestamp"])
async def test_a_bad_signature_is_a_one_line_401(settings: Settings, case: str, uid: str) -> None:
    body = b'{"type": "zen:event-type:ticket.created", "id": "e1", "detail": {"id": "1"}}'
    headers = auth("zendesk", body)
    if case == "bad-signature":
        headers[zendesk.SIGNATURE] = zendesk.sign(
            "not-the-secret", headers[zendesk.TIMESTAMP], body
        )
    elif case == "missing-signature":
        del headers[zendesk.SIGNATURE]
    else:
        old = "2020-01-01T00:00:00Z"
        headers = {zendesk.TIMESTAMP: old, zendesk.SIGNATURE: zendesk.sign("x", old, body)}
    d = door(settings, "zendesk", None, f"door-{uid}")
    async with d.http:
        resp = await d.http.post("/webhooks/zendesk", content=body, headers=headers)
    assert resp.status_code == 401
    assert "\n" not in resp.json()["error"] and "signature" in resp.json()["error"].lower()
    assert d.provider.calls == 0
