"""Issue 15: one Recurly decline costs the webhook service one read. The decline sends
``payment/failed`` (the transaction's UUID) and ``charge_invoice/past_due`` (the invoice's
number); whichever is looked up first — the transaction, which names its invoice and account,
or the invoice, which lists its transactions — answers the other, and a redelivery, from the
service's memory. Counted from the sandbox's request ledger."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from domain.models import PaymentFailed
from domain.settings import RecurlySettings
from sandbox.framework import ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import dunning_seed
from sandbox.scenarios import DEMO_CUSTOMERS
from webhooks import recurly as hook

API_KEY = "recurly_lookup_key"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    em = RecurlyEmulator(api_key=API_KEY, rate_limit_per_minute=None)
    with ServerThread({em: 0}) as thread:
        yield thread.urls["recurly"]


def decline(url: str) -> tuple[dict[str, str], dict[str, hook.Notification]]:
    """A scheduled attempt declines; its two notifications, parsed."""
    suffix = uuid.uuid4().hex[:8]
    ids = DEMO_CUSTOMERS[0].ids(suffix)
    httpx.post(
        url + "/_sandbox/seed", json=dunning_seed(DEMO_CUSTOMERS[:1], suffix)
    ).raise_for_status()
    before = len(notifications(url))
    httpx.post(
        f"{url}/_sandbox/recurly/invoices/{ids['invoice']}/fail_payment", json={}
    ).raise_for_status()
    notes = {}
    for raw in notifications(url)[before:]:
        note = hook.parse(raw)
        if note is not None:
            notes[f"{raw['object_type']}/{raw['event_type']}"] = note
    assert set(notes) == {"payment/failed", "charge_invoice/past_due"}, notes
    return ids, notes


def notifications(url: str) -> list[dict[str, Any]]:
    got = httpx.get(url + "/_sandbox/recurly/notifications").raise_for_status()
    return got.json()["notifications"]


def reads(url: str) -> list[str]:
    rows = httpx.get(url + "/_sandbox/requests").raise_for_status().json()["requests"]
    return [f"{r['method']} {r['path']}" for r in sorted(rows, key=lambda r: r["seq"])]


def lookup(url: str) -> hook.RecurlyLookup:
    return hook.RecurlyLookup(RecurlySettings(api_key=SecretStr(API_KEY), api_url=url))


@pytest.mark.parametrize("first", ["payment/failed", "charge_invoice/past_due"])
async def test_a_decline_costs_one_read_in_either_order_and_a_redelivery_none(
    url: str, first: str
) -> None:
    ids, notes = decline(url)
    second = next(k for k in notes if k != first)
    service = lookup(url)
    start = len(reads(url))
    a = await service.resolve(notes[first])
    b = await service.resolve(notes[second])
    again = await service.resolve(notes[first])
    made = reads(url)[start:]
    assert len(made) == 1, made
    expected = "/transactions/uuid-" if first == "payment/failed" else "/invoices/number-"
    assert expected in made[0]
    assert isinstance(a, PaymentFailed) and a == b == again
    assert (a.invoice_id, a.customer_id) == (ids["invoice"], ids["customer"])
    assert a.payment is not None and a.payment.id and a.payment.decline_code
    assert a.subscription_id == ids["subscription"]


async def test_a_service_that_did_not_see_the_first_notification_reads_again(url: str) -> None:
    """The memory is the process's own: another replica, or one restarted, reads (the run then
    deduplicates the two by the transaction's UUID)."""
    _, notes = decline(url)
    first = await lookup(url).resolve(notes["payment/failed"])
    start = len(reads(url))
    other = await lookup(url).resolve(notes["charge_invoice/past_due"])
    assert len(reads(url)[start:]) == 1
    assert isinstance(first, PaymentFailed) and isinstance(other, PaymentFailed)
    assert first.event_id == other.event_id
