"""The Stripe emulator behaves like a real test-mode account by default (issue 16): its rate
limiter answers 429 past 25 requests/s (search: 20/s) with Stripe's error body and headers,
search results lag behind writes, the ``email=`` list filter is case-sensitive and a coupon
``name`` is at most 40 characters. ``realistic=False`` turns the limits and the lag off.

Each of these failed on the emulator before: it never answered 429, searched instantly,
matched emails case-insensitively and stored any coupon name."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import stripe

from sandbox.framework import ServerThread, WebhookTarget
from sandbox.stripe import StripeEmulator

API_KEY = "sk_test_revbridge_realism"


@pytest.fixture
def emulator() -> Iterator[tuple[StripeEmulator, stripe.StripeClient]]:
    em = StripeEmulator(api_key=API_KEY)
    with ServerThread({em: 0}) as srv:
        client = stripe.StripeClient(
            API_KEY, base_addresses={"api": srv.urls["stripe"]}, max_network_retries=0
        )
        yield em, client


def test_realistic_by_default() -> None:
    em = StripeEmulator(api_key=API_KEY)
    assert em.rate_limit_per_s == 25 and em.search_rate_per_s == 20
    assert 0 < em.search_lag_s <= 60


def test_a_burst_past_25_per_second_is_429_rate_limit(emulator) -> None:  # noqa: ANN001
    em, client = emulator
    client.v1.customers.create(params={"email": "a@example.com"})
    errors: list[stripe.RateLimitError] = []
    start = time.monotonic()
    for _ in range(40):
        try:
            client.v1.customers.list(params={"limit": 1})
        except stripe.RateLimitError as exc:
            errors.append(exc)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0, "the burst must fit in one second for this test to mean anything"
    assert len(errors) >= 40 - 24  # 25 per rolling second, the create counted too
    err = errors[0]
    assert err.http_status == 429
    body = err.json_body["error"]  # type: ignore[index]
    assert body["type"] == "invalid_request_error" and body["code"] == "rate_limit"
    assert body["message"].startswith("Request rate limit exceeded.")
    headers = {k.lower(): v for k, v in (err.headers or {}).items()}
    assert headers["stripe-rate-limited-reason"] == "global-rate"
    assert headers["request-id"].startswith("req_")
    assert em.rate_limited == len(errors)
    time.sleep(1.05)  # the window rolls on: the account answers again
    assert client.v1.customers.list(params={"limit": 1}).data


def test_search_has_its_own_20_per_second(emulator) -> None:  # noqa: ANN001
    em, client = emulator
    statuses = []
    for _ in range(24):
        try:
            client.v1.customers.search(params={"query": "email:'x@example.com'"})
            statuses.append(200)
        except stripe.RateLimitError as exc:
            statuses.append(429)
            reason = {k.lower(): v for k, v in (exc.headers or {}).items()}
            assert reason["stripe-rate-limited-reason"] == "endpoint-rate"
    assert statuses.count(200) == 20 and statuses.count(429) == 4


def test_search_lags_behind_writes(emulator) -> None:  # noqa: ANN001
    em, client = emulator
    em.set_search_lag(0.6)
    cus = client.v1.customers.create(
        params={"email": "lag@example.com", "metadata": {"crm_account_id": "001A"}}
    )
    query = {"query": "metadata['crm_account_id']:'001A'"}
    assert client.v1.customers.search(params=query).data == []  # not indexed yet
    # the strongly consistent reads see it at once
    assert client.v1.customers.retrieve(cus.id).email == "lag@example.com"
    assert [c.id for c in client.v1.customers.list(params={"email": "lag@example.com"}).data] == [
        cus.id
    ]
    time.sleep(0.7)
    assert [c.id for c in client.v1.customers.search(params=query).data] == [cus.id]
    client.v1.customers.update(cus.id, params={"metadata": {"crm_account_id": "001B"}})
    # the update is not indexed yet: the search still sees the first version
    assert [c.id for c in client.v1.customers.search(params=query).data] == [cus.id]
    time.sleep(0.7)
    assert client.v1.customers.search(params=query).data == []
    moved = client.v1.customers.search(params={"query": "metadata['crm_account_id']:'001B'"})
    assert [c.id for c in moved.data] == [cus.id]


def test_email_filter_is_case_sensitive(emulator) -> None:  # noqa: ANN001
    _, client = emulator
    cus = client.v1.customers.create(params={"email": "jane@acme.example"})
    assert client.v1.customers.list(params={"email": "Jane@Acme.example"}).data == []
    found = client.v1.customers.list(params={"email": "jane@acme.example"})
    assert [c.id for c in found.data] == [cus.id]


def test_coupon_name_is_at_most_40_characters(emulator) -> None:  # noqa: ANN001
    _, client = emulator
    ok = client.v1.coupons.create(params={"percent_off": 10, "name": "x" * 40})
    assert ok.name == "x" * 40
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.coupons.create(params={"percent_off": 10, "name": "y" * 41})
    assert info.value.http_status == 400 and info.value.param == "name"  # type: ignore[attr-defined]
    assert "must be at most 40 characters" in str(info.value.user_message)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.coupons.update(ok.id, params={"name": "z" * 41})


def test_webhook_endpoints_list_the_accounts_targets(emulator) -> None:  # noqa: ANN001
    em, client = emulator
    assert client.v1.webhook_endpoints.list().data == []
    em.webhook_targets.append(WebhookTarget(url="http://127.0.0.1:1/webhooks/stripe"))
    em.webhook_enabled_events = ["invoice.paid"]
    (endpoint,) = client.v1.webhook_endpoints.list().data
    assert endpoint.url == "http://127.0.0.1:1/webhooks/stripe"
    assert endpoint.enabled_events == ["invoice.paid"] and endpoint.status == "enabled"


def test_realistic_false_turns_limits_and_lag_off() -> None:
    em = StripeEmulator(api_key=API_KEY, realistic=False)
    with ServerThread({em: 0}) as srv:
        client = stripe.StripeClient(
            API_KEY, base_addresses={"api": srv.urls["stripe"]}, max_network_retries=0
        )
        cus = client.v1.customers.create(params={"name": "Instant Co"})
        assert [
            c.id for c in client.v1.customers.search(params={"query": "name:'Instant Co'"}).data
        ] == [cus.id]
        for _ in range(40):
            client.v1.customers.list(params={"limit": 1})
        assert em.rate_limited == 0
