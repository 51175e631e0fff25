"""The Stripe emulator's quote-to-cash and churn surface, through the official stripe-python 16
client: metadata search, list and search pagination, lookup keys (and an idempotent catalogue
seed), idempotency replays and conflicts, billing-cycle anchors, cancellation of a cancelled
subscription, and ``previous_attributes`` on subscription updates.

Raw HTTP is only used for the ``/_sandbox`` control plane.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe

from sandbox.framework import ServerThread
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_q2c_emulator"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    # focused on shapes and state: limits and search lag are off (test_stripe_realism.py)
    with ServerThread({StripeEmulator(api_key=API_KEY, realistic=False): 0}) as srv:
        yield srv.urls["stripe"]


@pytest.fixture(scope="module")
def client(server: str) -> stripe.StripeClient:
    return stripe.StripeClient(API_KEY, base_addresses={"api": server}, max_network_retries=0)


def seed(server: str, data: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(server + "/_sandbox/seed", json=data)
    assert resp.status_code == 200, resp.text
    return resp.json()


def catalogue(u: str) -> dict[str, Any]:
    """One product and its monthly price (unique lookup key per test)."""
    return {
        "products": [{"id": f"prod_{u}", "name": "Core"}],
        "prices": [
            {
                "id": f"price_{u}",
                "product": f"prod_{u}",
                "lookup_key": f"core_{u}",
                "unit_amount": 10_000,
                "currency": "usd",
                "recurring": {"interval": "month"},
            }
        ],
    }


def test_customer_search_by_metadata_and_name(client: stripe.StripeClient) -> None:
    u = uuid.uuid4().hex[:8]
    linked = client.v1.customers.create(
        {"name": f'Acme "EU" {u}', "metadata": {"crm": "salesforce", "crm_account_id": f"001{u}"}}
    )
    client.v1.customers.create({"name": f"acme us {u}", "metadata": {"crm": "hubspot"}})
    hits = client.v1.customers.search(
        {"query": f"metadata['crm_account_id']:'001{u}' AND metadata['crm']:'salesforce'"}
    )
    assert hits.object == "search_result" and [c.id for c in hits.data] == [linked.id]
    assert hits.url == "/v1/customers/search"
    # escaped quotes inside a quoted value
    exact = client.v1.customers.search({"query": f'name:"Acme \\"EU\\" {u}"'})
    assert [c.id for c in exact.data] == [linked.id]
    # ~ is a case-insensitive substring match
    both = client.v1.customers.search({"query": f'name~"ACME" AND name~"{u}"'})
    assert len(both.data) == 2
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.search({"query": "name:'x' OR email:'y' AND phone:'z'"})
    assert exc.value.http_status == 400 and exc.value.error.param == "query"


def test_search_pages_with_next_page(client: stripe.StripeClient) -> None:
    u = uuid.uuid4().hex[:8]
    made = {
        client.v1.customers.create({"name": f"Paged {i}", "metadata": {"batch": u}}).id
        for i in range(5)
    }
    query = f"metadata['batch']:'{u}'"
    first = client.v1.customers.search({"query": query, "limit": 2})
    assert first.has_more and first.next_page and len(first.data) == 2
    second = client.v1.customers.search({"query": query, "limit": 2, "page": first.next_page})
    assert len(second.data) == 2 and not {c.id for c in second.data} & {c.id for c in first.data}
    everyone = {c.id for c in client.v1.customers.search({"query": query}).auto_paging_iter()}
    assert everyone == made


def test_customer_list_pages_newest_first_with_starting_after(
    server: str, client: stripe.StripeClient
) -> None:
    u = uuid.uuid4().hex[:8]
    ids = seed(
        server,
        {"customers": [{"name": f"Book {i}", "email": f"book-{u}@example.com"} for i in range(7)]},
    )["customers"]
    params: Any = {"email": f"book-{u}@example.com", "limit": 3}
    page = client.v1.customers.list(params)
    assert page.url == "/v1/customers" and page.has_more
    assert [c.id for c in page.data] == ids[::-1][:3]
    after = client.v1.customers.list({**params, "starting_after": page.data[-1].id})
    assert [c.id for c in after.data] == ids[::-1][3:6] and after.has_more
    walked = [c.id for c in client.v1.customers.list(params).auto_paging_iter()]
    assert walked == ids[::-1]
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.customers.list({"limit": 101})
    assert exc.value.http_status == 400 and exc.value.error.param == "limit"


def test_idempotent_create_replays_and_conflicts(client: stripe.StripeClient) -> None:
    k = f"test-{uuid.uuid4().hex}"
    params: Any = {"name": "Initech", "metadata": {"crm": "salesforce"}}
    first = client.v1.customers.create(params, {"idempotency_key": k})
    again = client.v1.customers.create(params, {"idempotency_key": k})
    assert again.id == first.id
    assert first.last_response.headers.get("Idempotent-Replayed") is None
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    with pytest.raises(stripe.IdempotencyError) as exc:
        client.v1.customers.create({"name": "Initrode"}, {"idempotency_key": k})
    assert exc.value.http_status == 400 and exc.value.error.type == "idempotency_error"
    assert "same parameters" in str(exc.value.user_message)


def test_prices_by_lookup_key_and_a_taken_key(server: str, client: stripe.StripeClient) -> None:
    u = uuid.uuid4().hex[:8]
    seed(server, catalogue(u))
    found = client.v1.prices.list({"lookup_keys": [f"core_{u}"], "active": True})
    assert [p.id for p in found.data] == [f"price_{u}"] and found.url == "/v1/prices"
    taken: Any = {
        "product": f"prod_{u}",
        "lookup_key": f"core_{u}",
        "unit_amount": 12_000,
        "currency": "usd",
        "recurring": {"interval": "month"},
    }
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.prices.create(taken)
    assert exc.value.http_status == 400 and exc.value.error.param == "lookup_key"
    moved = client.v1.prices.create({**taken, "transfer_lookup_key": True})
    assert client.v1.prices.retrieve(f"price_{u}").lookup_key is None
    held = client.v1.prices.list({"lookup_keys": [f"core_{u}"]}).data
    assert [p.id for p in held] == [moved.id]


def test_seeding_a_catalogue_twice_adds_nothing(server: str, client: stripe.StripeClient) -> None:
    u = uuid.uuid4().hex[:8]
    first = seed(server, catalogue(u))
    spec = catalogue(u)
    del spec["prices"][0]["id"]  # same lookup key, no id: still the same price
    second = seed(server, spec)
    assert second == first == {"products": [f"prod_{u}"], "prices": [f"price_{u}"]}
    assert len(client.v1.prices.list({"lookup_keys": [f"core_{u}"]}).data) == 1


def test_billing_cycle_anchor(server: str, client: stripe.StripeClient) -> None:
    u = uuid.uuid4().hex[:8]
    seed(server, catalogue(u))
    cus = client.v1.customers.create({"name": "Anchored"})
    anchor = int(time.time()) + 10 * 86_400
    free: Any = {
        "customer": cus.id,
        "items": [{"price": f"price_{u}", "quantity": 2}],
        "billing_cycle_anchor": anchor,
        "proration_behavior": "none",
        "expand": ["latest_invoice"],
    }
    sub = client.v1.subscriptions.create(free)
    assert sub.status == "active" and sub.billing_cycle_anchor == anchor
    assert sub.latest_invoice.amount_due == 0  # the period before the anchor is free
    assert sub["items"].data[0].current_period_end == anchor
    prorated = client.v1.subscriptions.create({**free, "proration_behavior": "create_prorations"})
    assert 0 < prorated.latest_invoice.amount_due < 20_000
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.create({**free, "billing_cycle_anchor": anchor + 60 * 86_400})
    assert exc.value.http_status == 400 and exc.value.error.param == "billing_cycle_anchor"
    assert "next natural billing date" in str(exc.value.user_message)


def test_cancelling_a_cancelled_subscription_is_404(
    server: str, client: stripe.StripeClient
) -> None:
    u = uuid.uuid4().hex[:8]
    seed(server, catalogue(u))
    cus = client.v1.customers.create({"name": "Cancelled"})
    sub = client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": f"price_{u}"}]})
    params: Any = {"prorate": False, "invoice_now": False}
    assert client.v1.subscriptions.cancel(sub.id, params).status == "canceled"
    with pytest.raises(stripe.InvalidRequestError) as exc:
        client.v1.subscriptions.cancel(sub.id, params)
    assert exc.value.http_status == 404 and exc.value.code == "resource_missing"
    assert client.v1.subscriptions.retrieve(sub.id).status == "canceled"  # still readable
    client.v1.customers.delete(cus.id)
    with pytest.raises(stripe.InvalidRequestError) as gone:
        client.v1.customers.delete(cus.id)
    assert gone.value.http_status == 404 and gone.value.code == "resource_missing"


def test_subscription_updates_carry_previous_attributes(
    server: str, client: stripe.StripeClient
) -> None:
    u = uuid.uuid4().hex[:8]
    seed(server, catalogue(u))
    since = int(time.time()) - 5
    cus = client.v1.customers.create({"name": "Downgrader"})
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": f"price_{u}", "quantity": 8}]}
    )
    item = sub["items"].data[0]
    client.v1.subscriptions.update(
        sub.id, {"items": [{"id": item.id, "quantity": 3}], "proration_behavior": "none"}
    )
    events = client.v1.events.list(
        {"type": "customer.subscription.updated", "created": {"gte": since}, "limit": 100}
    )
    mine = [e.to_dict()["data"] for e in events.data if e.data.object.id == sub.id]
    # incomplete → active after the first payment, then the quantity change
    assert [sorted(d["previous_attributes"]) for d in mine][-1] == ["status"]
    data = mine[0]
    assert "status" not in data["previous_attributes"]
    assert data["object"]["items"]["data"][0]["quantity"] == 3
    assert data["previous_attributes"]["items"]["data"][0]["quantity"] == 8
    assert client.v1.events.list({"type": "invoice.nothing_like_this"}).data == []
