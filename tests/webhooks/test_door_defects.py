"""The three defects issue 14 found at the door, each tried from outside with valid credentials:
deep nesting (RecursionError → 500), out-of-range amounts (OverflowError → 500), and a 422 sent
after the dunning run had already started. Each fails on the code before the fix."""

from __future__ import annotations

import json
import time

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from domain.settings import Settings
from tests.webhooks.door import ALL_ROUTES, door
from tests.webhooks.helpers import payment_failed


async def assert_no_workflow(client: Client, workflow_id: str) -> None:
    with pytest.raises(RPCError) as exc:
        await client.get_workflow_handle(workflow_id).describe()
    assert exc.value.status == RPCStatusCode.NOT_FOUND


@pytest.mark.parametrize("route", ALL_ROUTES)
@pytest.mark.parametrize("opener", [b"[", b'{"":'])
async def test_200000_levels_of_nesting_are_a_400_not_a_500(
    settings: Settings, route: str, opener: bytes, uid: str
) -> None:
    body = opener * 200_000
    assert len(body) < 1_000_000  # under the size limit: only the depth can refuse it
    d = door(settings, route, None, f"door-{uid}")
    async with d.http:
        resp = await d.post(body)
    assert resp.status_code == 400, resp.text
    assert "nested deeper" in resp.json()["error"]
    assert d.provider.calls == 0


@pytest.mark.parametrize(
    "amount", [b"1e400", b"-1e400", b"9" * 400, b"1" + b"0" * 5000], ids=["1e400", "-1e400", "400-digits", "5001-digits"]
)  # fmt: skip
async def test_an_out_of_range_chargebee_amount_is_refused_and_starts_nothing(
    settings: Settings, client: Client, amount: bytes, uid: str
) -> None:
    invoice = f"INV-{uid}"
    body = payment_failed(invoice, customer_id=f"cust_{uid}").replace(
        b'"amount_due": 2000', b'"amount_due": ' + amount
    )
    assert amount in body
    d = door(settings, "chargebee", client, f"door-{uid}")
    async with d.http:
        resp = await d.post(body)
    assert resp.status_code in (400, 422), resp.text
    assert "\n" not in resp.json()["error"]
    await assert_no_workflow(client, f"dunning:chargebee:{invoice}")


async def test_an_out_of_range_stripe_amount_is_refused_and_starts_nothing(
    settings: Settings, client: Client, uid: str
) -> None:
    invoice = f"in_{uid}"
    event = {
        "id": f"evt_{uid}",
        "object": "event",
        "created": int(time.time()),
        "type": "invoice.payment_failed",
        "request": {"id": None, "idempotency_key": None},
        "data": {
            "object": {
                "id": invoice,
                "object": "invoice",
                "customer": f"cus_{uid}",
                "currency": "usd",
                "amount_due": 10**400,
            }
        },
    }
    d = door(settings, "stripe", client, f"door-{uid}")
    async with d.http:
        resp = await d.post(json.dumps(event).encode())
    assert resp.status_code in (400, 422), resp.text
    await assert_no_workflow(client, f"dunning:stripe:{invoice}")


@pytest.mark.parametrize(
    "customer_id", ["cust 1", "cust/1", "x" * 200, "ü"], ids=["space", "slash", "long", "unicode"]
)
async def test_an_invalid_customer_id_is_refused_before_any_run_starts(
    settings: Settings, client: Client, customer_id: str, uid: str
) -> None:
    """Before: the dunning run started, then the churn route refused the customer ID with a 422
    — the vendor was told "rejected" and redelivered, while the run mailed the customer."""
    invoice = f"INV-{uid}"
    d = door(settings, "chargebee", client, f"door-{uid}")
    async with d.http:
        resp = await d.post(payment_failed(invoice, customer_id=customer_id))
    assert resp.status_code == 422, resp.text
    assert "customer_id" in resp.json()["error"]
    assert d.provider.calls == 0  # not even a connection: refused before any Temporal call
    await assert_no_workflow(client, f"dunning:chargebee:{invoice}")


async def test_a_hubspot_batch_of_more_than_100_events_is_refused_before_any_start(
    settings: Settings, client: Client, uid: str
) -> None:
    """HubSpot sends at most 100 events a request; 5,000 small valid ones (well under the size
    limit) would hold the request for 5,000 Temporal starts."""
    now_ms = int(time.time() * 1000)
    first = 800_000_000 + int(uid[:6], 16) * 10_000
    batch = [
        {"eventId": first + i, "subscriptionType": "ticket.creation", "objectId": first + i,
         "occurredAt": now_ms, "changeSource": "CRM_UI"}
        for i in range(5_000)
    ]  # fmt: skip
    d = door(settings, "hubspot", client, f"door-{uid}")
    async with d.http:
        resp = await d.post(json.dumps(batch).encode())
    assert (resp.status_code, resp.json()["error"]) == (
        400,
        "a HubSpot batch has at most 100 events",
    )
    assert d.provider.calls == 0
    await assert_no_workflow(client, f"case:hubspot:{first}")
