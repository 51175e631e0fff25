"""The Recurly emulator, exercised through the official ``recurly`` 4.79 client (API v2021-02-25).

Raw HTTP only for what the client cannot do (a wrong Accept header) and for the ``/_sandbox``
control plane (seeding, faults, ledger, notifications).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import recurly
from recurly import errors as rerr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.framework import App, ServerThread
from sandbox.recurly import RecurlyEmulator
from sandbox.recurly.seeding import catalog_plans, dunning_seed
from sandbox.scenarios import DEMO_CUSTOMERS

KEY = "recurly_emulator_test_key"
SECRETS = ("whsec_old_recurly", "whsec_new_recurly")


class _Receiver:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.app = App("receiver", Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> Response:
        self.received.append({"headers": dict(request.headers), "body": await request.body()})
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[RecurlyEmulator, _Receiver, ServerThread]]:
    emulator = RecurlyEmulator(api_key=KEY, webhook_secrets=SECRETS)
    receiver = _Receiver()
    with ServerThread({emulator: 0, receiver.app: 0}) as server:
        yield emulator, receiver, server


@pytest.fixture
def em(servers: tuple[RecurlyEmulator, _Receiver, ServerThread]) -> RecurlyEmulator:
    emulator, receiver, server = servers
    with emulator.lock:
        emulator.ledger.clear()
        emulator.faults.clear()
        emulator.webhook_targets.clear()
        emulator.deliveries.clear()
        emulator.reset_state()
    receiver.received.clear()
    return emulator


@pytest.fixture
def url(servers: tuple[RecurlyEmulator, _Receiver, ServerThread], em: RecurlyEmulator) -> str:
    return servers[2].urls["recurly"]


@pytest.fixture
def receiver(servers: tuple[RecurlyEmulator, _Receiver, ServerThread], url: str) -> _Receiver:
    httpx.post(
        url + "/_sandbox/webhooks", json={"url": servers[2].urls["receiver"] + "/hook"}
    ).raise_for_status()
    return servers[1]


def client_for(url: str, key: str = KEY, timeout: float = 5.0) -> recurly.Client:
    """The official client pointed at the sandbox (billing-apis.md §4a: swap its connection)."""
    client = recurly.Client(key)
    host, port = url.removeprefix("http://").split(":")
    client._BaseClient__conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    return client


@pytest.fixture
def rc(url: str) -> recurly.Client:
    return client_for(url)


def seed(url: str, data: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.post(url + "/_sandbox/seed", json=data)
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_for(pred, within_s: float = 15.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("condition never held")


# --- transport: auth, version, errors, pagination, rate limits --------------------------------


def test_wrong_key_is_401_unauthorized(url: str) -> None:
    with pytest.raises(rerr.UnauthorizedError):
        client_for(url, key="wrong").list_accounts().first()


def test_accept_header_selects_the_api_version(url: str, rc: recurly.Client) -> None:
    auth = (KEY, "")
    resp = httpx.get(url + "/accounts", auth=auth, headers={"Accept": "application/json"})
    assert resp.status_code == 406
    assert resp.json()["error"]["type"] == "invalid_api_version"
    assert "application/vnd.recurly.v2021-02-25" in resp.json()["error"]["message"]
    ok = httpx.get(
        url + "/accounts", auth=auth, headers={"Accept": "application/vnd.recurly.v2021-02-25"}
    )
    assert ok.status_code == 200
    assert ok.headers["Recurly-Version"] == "recurly.v2021-02-25"
    assert ok.headers["X-Request-Id"]


def test_errors_are_typed_as_the_client_expects(url: str, rc: recurly.Client) -> None:
    with pytest.raises(rerr.NotFoundError) as nf:
        rc.get_account("code-nobody")
    assert nf.value.error.type == "not_found"
    rc.create_account({"code": "acme"})
    with pytest.raises(rerr.ValidationError) as dup:
        rc.create_account({"code": "acme"})
    assert dup.value.error.params[0]["param"] == "code"
    with pytest.raises(rerr.ValidationError):
        rc.create_account({"code": "x", "custom_fields": [{"name": "undefined_cf", "value": "1"}]})


def test_cursor_pagination_as_the_client_walks_it(url: str, rc: recurly.Client) -> None:
    for n in range(7):
        rc.create_account({"code": f"page-{n}", "company": "Paged"})
    pages = list(rc.list_accounts(params={"limit": 3, "order": "asc"}).pages())
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [a.code for p in pages for a in p] == [f"page-{n}" for n in range(7)]
    # the client requests ``next`` verbatim: a path, with the cursor and the same parameters
    gets = [r for r in httpx.get(url + "/_sandbox/requests").json()["requests"]]
    assert [g["path"] for g in gets[-3:]] == ["/accounts"] * 3
    assert "cursor=" in gets[-1]["query"] and "limit=3" in gets[-1]["query"]
    assert rc.list_accounts(params={"limit": 2}).count() == 7  # HEAD: Recurly-Total-Records
    newest = rc.list_accounts(params={"limit": 1}).first()
    assert newest.code == "page-6"  # default order: newest first
    with pytest.raises(rerr.ValidationError):
        next(rc.list_accounts(params={"limit": 500}).pages())


def test_rate_limit_headers_and_429(url: str, rc: recurly.Client) -> None:
    httpx.post(url + "/_sandbox/recurly/rate_limit", json={"per_minute": 1, "window_s": 180})
    page = rc.list_accounts(params={"limit": 1}).take(1)
    assert page is not None
    resp = rc.get_account  # the next calls exhaust the 3-request allowance (1/min over 3 min)
    rc.create_account({"code": "rl-1"})
    account = resp("code-rl-1")
    meta = account.get_response()
    assert meta.rate_limit == 3 and meta.rate_limit_remaining == 0
    assert meta.rate_limit_reset is not None
    with pytest.raises(rerr.RateLimitedError):
        rc.get_account("code-rl-1")


def test_production_limits_count_gets_only(url: str, rc: recurly.Client) -> None:
    httpx.post(
        url + "/_sandbox/recurly/rate_limit",
        json={"per_minute": 1, "window_s": 60, "count_writes": False},
    )
    for n in range(3):
        rc.create_account({"code": f"w-{n}"})  # writes are not counted
    rc.get_account("code-w-0")
    with pytest.raises(rerr.RateLimitedError):
        rc.get_account("code-w-1")


def test_no_idempotency_header_natural_keys_protect_creates(url: str, rc: recurly.Client) -> None:
    """v2021-02-25 documents no idempotency header: one sent changes nothing (a second create
    with the same key is a second object), the unique account code is what protects."""
    rc.create_coupon(
        {"code": "c1", "name": "C1", "discount_type": "percent", "discount_percent": 10},
        headers={"Idempotency-Key": "k-1"},
    )
    with pytest.raises(rerr.ValidationError):
        rc.create_coupon(
            {"code": "c1", "name": "C1", "discount_type": "percent", "discount_percent": 10},
            headers={"Idempotency-Key": "k-1"},
        )
    rc.create_account({"code": "idem"}, headers={"Idempotency-Key": "k-2"})
    rc.create_account_note("code-idem", {"message": "one"}, headers={"Idempotency-Key": "k-3"})
    rc.create_account_note("code-idem", {"message": "one"}, headers={"Idempotency-Key": "k-3"})
    assert len(list(rc.list_account_notes("code-idem").items())) == 2
    ledger = httpx.get(url + "/_sandbox/requests?method=POST").json()["requests"]
    assert ledger[-1]["headers"]["idempotency-key"] == "k-3"


def test_faults_and_ledger(url: str, rc: recurly.Client, em: RecurlyEmulator) -> None:
    httpx.post(url + "/_sandbox/faults", json={"path": "/accounts/.*", "status": 503})
    with pytest.raises(rerr.ServiceNotAvailableError):
        rc.get_account("code-x")
    httpx.post(
        url + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "POST", "path": "/accounts", "delay_s": 2},
    )
    slow = client_for(url, timeout=0.5)
    with pytest.raises(recurly.NetworkError):
        slow.create_account({"code": "committed"})
    assert rc.get_account("code-committed").code == "committed"  # it happened anyway


# --- accounts, billing info, notes, custom fields, balance -----------------------------------


def test_accounts_notes_custom_fields_and_deactivation(rc: recurly.Client) -> None:
    account = rc.create_account(
        {
            "code": "acct-1",
            "company": "Acme",
            "email": "ap@acme.example",
            "custom_fields": [{"name": "crm", "value": "hubspot"}],
            "billing_info": {"token_id": "tok_visa"},
        }
    )
    assert account.billing_info.payment_method.last_four == "1111"
    updated = rc.update_account(
        "code-acct-1", {"custom_fields": [{"name": "crm_account_id", "value": "42"}]}
    )
    assert {f.name: f.value for f in updated.custom_fields} == {
        "crm": "hubspot",
        "crm_account_id": "42",
    }
    found = list(rc.list_accounts(params={"email": "ap@acme.example"}).items())
    assert [a.code for a in found] == ["acct-1"]
    note = rc.create_account_note("code-acct-1", {"message": "audit: retried"})
    assert rc.get_account_note("code-acct-1", note.id).message == "audit: retried"
    rc.remove_account_note("code-acct-1", note.id)
    assert list(rc.list_account_notes("code-acct-1").items()) == []
    closed = rc.deactivate_account("code-acct-1")
    assert closed.state == "inactive"
    with pytest.raises(rerr.ValidationError):
        rc.create_account({"code": "acct-1"})  # a code is taken for ever


def test_credit_adjustment_shows_in_balance(rc: recurly.Client) -> None:
    rc.create_account({"code": "cred"})
    item = rc.create_line_item(
        "code-cred",
        {"type": "credit", "currency": "USD", "unit_amount": 25, "description": "Courtesy"},
    )
    assert item.amount == -25.0 and item.state == "pending"
    balance = rc.get_account_balance("code-cred")
    assert balance.balances[0].amount == -25.0


# --- subscriptions, invoices, transactions, coupons, usage -----------------------------------


def _catalog(url: str) -> None:
    seed(url, {"plans": catalog_plans()})


def test_subscription_lifecycle(url: str, rc: recurly.Client) -> None:
    _catalog(url)
    sub = rc.create_subscription(
        {
            "plan_code": "rb-core",
            "currency": "USD",
            "account": {"code": "life", "billing_info": {"token_id": "tok_visa"}},
            "add_ons": [{"code": "seat", "quantity": 5}],
            "custom_fields": [{"name": "crm_opportunity_id", "value": "opp-1"}],
        }
    )
    assert sub.state == "active" and sub.subtotal == 500 + 5 * 40
    invoices = list(rc.list_subscription_invoices(sub.id).items())
    assert invoices[0].state == "paid" and invoices[0].total == 700
    txns = list(rc.list_account_transactions("code-life").items())
    assert txns[0].status == "success" and txns[0].origin == "api"

    pending = rc.create_subscription_change(
        sub.id, {"timeframe": "renewal", "add_ons": [{"code": "seat", "quantity": 2}]}
    )
    assert pending.activated is False
    assert rc.get_subscription_change(sub.id).add_ons[0].quantity == 2
    rc.remove_subscription_change(sub.id)
    now = rc.create_subscription_change(
        sub.id, {"timeframe": "now", "add_ons": [{"code": "seat", "quantity": 2}]}
    )
    assert now.activated is True
    assert rc.get_subscription(sub.id).subtotal == 580
    prorations = list(rc.list_subscription_line_items(sub.id, params={"limit": 200}).items())
    assert any(li.type == "credit" and li.proration_rate is not None for li in prorations)

    assert rc.pause_subscription(sub.id, {"remaining_pause_cycles": 1}).state == "paused"
    assert rc.resume_subscription(sub.id).state == "active"
    assert rc.cancel_subscription(sub.id).state == "canceled"
    assert rc.reactivate_subscription(sub.id).state == "active"
    assert rc.terminate_subscription(sub.id, params={"refund": "none"}).state == "expired"
    with pytest.raises(rerr.ImmutableSubscriptionError):
        rc.cancel_subscription(sub.id)
    assert rc.get_subscription(f"uuid-{sub.uuid}").id == sub.id


def test_declined_purchase_is_a_transaction_error_and_rolls_back(
    url: str, rc: recurly.Client
) -> None:
    _catalog(url)
    with pytest.raises(rerr.TransactionError) as exc:
        rc.create_subscription(
            {
                "plan_code": "rb-core",
                "currency": "USD",
                "account": {
                    "code": "broke",
                    "billing_info": {"token_id": "tok_decline_insufficient_funds"},
                },
            }
        )
    assert exc.value.error.transaction_error.code == "insufficient_funds"
    assert exc.value.error.transaction_error.category == "soft"
    with pytest.raises(rerr.NotFoundError):
        rc.get_account("code-broke")


def test_dunning_invoice_collect_mark_failed_void_and_refund(url: str, rc: recurly.Client) -> None:
    seed(url, {"campaigns": [{"id": "camp-1", "code": "standard", "default_campaign": True}]})
    seed(url, dunning_seed(DEMO_CUSTOMERS, "t1"))
    with pytest.raises(rerr.TransactionError) as exc:
        rc.collect_invoice("INV-northwind-t1")
    assert exc.value.error.transaction_error.decline_code == "expired_card"
    inv = rc.get_invoice("INV-northwind-t1")
    assert inv.state == "past_due" and inv.dunning_campaign_id == "camp-1"
    assert rc.get_invoice(f"number-{inv.number}").id == inv.id
    failed = inv.transactions
    assert failed[0].status == "declined" and failed[0].origin == "force_collect"
    assert failed[0].status_code == "expired_card"
    assert rc.get_account("code-northwind-t1").has_past_due_invoice is True
    assert rc.mark_invoice_failed(inv.id).state == "failed"
    with pytest.raises(rerr.ValidationError):
        rc.collect_invoice(inv.id)
    assert rc.void_invoice("INV-initech-t1").state == "voided"
    # a card that works: collect pays, refund makes a credit invoice
    httpx.post(url + "/_sandbox/recurly/accounts/globex-t1/card", json={"decline_code": None})
    paid = rc.collect_invoice("INV-globex-t1")
    assert paid.state == "paid" and paid.balance == 0
    credit = rc.refund_invoice(paid.id, {"type": "amount", "amount": 100})
    assert credit.type == "credit" and credit.total == -100


def test_coupons_redemptions_and_discounted_total(url: str, rc: recurly.Client) -> None:
    _catalog(url)
    sub = rc.create_subscription(
        {
            "plan_code": "rb-core",
            "currency": "USD",
            "account": {"code": "coupon-acct", "billing_info": {"token_id": "tok_visa"}},
        }
    )
    coupon = rc.create_coupon(
        {
            "code": "retain-20",
            "name": "Retention 20%",
            "discount_type": "percent",
            "discount_percent": 20,
            "duration": "temporal",
            "temporal_amount": 3,
            "temporal_unit": "month",
            "redemption_resource": "subscription",
            "max_redemptions_per_account": 1,
        }
    )
    red = rc.create_coupon_redemption(
        "code-coupon-acct", {"coupon_id": coupon.id, "subscription_id": sub.id}
    )
    assert red.state == "active" and red.subscription_id == sub.id
    again = rc.get_subscription(sub.id)
    assert again.total == 400 and again.coupon_redemptions[0].coupon.code == "retain-20"
    with pytest.raises(rerr.ValidationError):
        rc.create_coupon_redemption("code-coupon-acct", {"coupon_id": "code-retain-20"})
    assert rc.get_coupon("code-retain-20").id == coupon.id


def test_usage_on_a_usage_add_on(url: str, rc: recurly.Client) -> None:
    _catalog(url)
    sub = rc.create_subscription(
        {
            "plan_code": "rb-core",
            "currency": "USD",
            "account": {"code": "metered", "billing_info": {"token_id": "tok_visa"}},
            "add_ons": [{"code": "api-calls"}],
        }
    )
    usage = rc.create_usage(sub.id, "code-api-calls", {"amount": 1200, "merchant_tag": "day-1"})
    assert rc.get_usage(usage.id).amount == 1200
    listed = list(rc.list_usage(sub.id, "code-api-calls").items())
    assert [u.merchant_tag for u in listed] == ["day-1"]
    with pytest.raises(rerr.NotFoundError):
        rc.create_usage(sub.id, "code-seat", {"amount": 1})


# --- webhooks ------------------------------------------------------------------------------


def _verify(header: str, body: bytes, secret: str) -> bool:
    ts, *sigs = header.split(",")
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, s) for s in sigs)


def test_notifications_are_ids_only_and_signed_with_every_secret(
    url: str, rc: recurly.Client, receiver: _Receiver
) -> None:
    seed(url, dunning_seed(DEMO_CUSTOMERS[:1], "w1"))
    with pytest.raises(rerr.TransactionError):
        rc.collect_invoice("INV-northwind-w1")
    wait_for(lambda: len(receiver.received) >= 2)
    bodies = [json.loads(r["body"]) for r in receiver.received]
    kinds = {(b["object_type"], b["event_type"]) for b in bodies}
    assert ("payment", "failed") in kinds and ("charge_invoice", "past_due") in kinds
    payment = next(b for b in bodies if b["object_type"] == "payment")
    assert set(payment) == {"id", "object_type", "site_id", "event_type", "event_time", "uuid"}
    assert rc.get_transaction(f"uuid-{payment['uuid']}").status_code == "expired_card"
    for r in receiver.received:
        header = r["headers"]["recurly-signature"]
        ts = int(header.split(",")[0])
        assert abs(ts - time.time() * 1000) < 60_000  # milliseconds
        assert len(header.split(",")) == 3  # a rotation: one signature per secret
        assert all(_verify(header, r["body"], s) for s in SECRETS)


def test_redelivery_twice_and_out_of_order(
    url: str, rc: recurly.Client, receiver: _Receiver
) -> None:
    seed(url, dunning_seed(DEMO_CUSTOMERS[:1], "w2"))
    httpx.post(url + "/_sandbox/recurly/invoices/INV-northwind-w2/pay", json={})
    wait_for(lambda: len(receiver.received) >= 2)
    first = [json.loads(r["body"])["id"] for r in receiver.received]
    httpx.post(url + "/_sandbox/recurly/notifications/redeliver", json={"reverse": True})
    wait_for(lambda: len(receiver.received) >= 2 * len(first))
    again = [json.loads(r["body"])["id"] for r in receiver.received[len(first) :]]
    assert again == list(reversed(first))


def test_every_notification_can_be_delivered_twice(
    url: str, rc: recurly.Client, receiver: _Receiver, em: RecurlyEmulator
) -> None:
    em.duplicate_deliveries = True
    try:
        rc.create_account({"code": "twice"})
        wait_for(lambda: len(receiver.received) >= 2)
    finally:
        em.duplicate_deliveries = False
    bodies = [r["body"] for r in receiver.received]
    assert bodies[0] == bodies[1]  # the same notification (same id), signed anew
    assert json.loads(bodies[0])["account_code"] == "twice"
