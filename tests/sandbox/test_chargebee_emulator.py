"""The Chargebee emulator, exercised through the official ``chargebee`` 3.29.0 client.

Raw HTTP is used only for the ``/_sandbox`` control plane (seeding, faults, ledger).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import chargebee
import httpx
import pytest
from chargebee import Chargebee
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.chargebee import ChargebeeEmulator
from sandbox.framework import App, ServerThread

KEY = "test_chargebee_key"
HOOK_AUTH = ("cb_hook_user", "cb_hook_pass")


class _Receiver:
    """A webhook endpoint that records what it receives (headers in clear)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.app = App("receiver", Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    def reset_state(self) -> None:
        self.received.clear()

    async def _hook(self, request: Request) -> Response:
        self.received.append({"headers": dict(request.headers), "body": await request.body()})
        return JSONResponse({"ok": True})


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ChargebeeEmulator, _Receiver, ServerThread]]:
    emulator = ChargebeeEmulator(api_key=KEY)
    receiver = _Receiver()
    server = ServerThread({emulator: 0, receiver.app: 0}).start()
    try:
        yield emulator, receiver, server
    finally:
        server.stop()


@pytest.fixture
def em(servers: tuple[ChargebeeEmulator, _Receiver, ServerThread]) -> ChargebeeEmulator:
    emulator, receiver, server = servers
    ctl(server, "POST", "/_sandbox/reset")
    ctl(server, "DELETE", "/_sandbox/webhooks")
    receiver.reset_state()
    return emulator


@pytest.fixture
def server(servers: tuple[ChargebeeEmulator, _Receiver, ServerThread], em: Any) -> ServerThread:
    return servers[2]


@pytest.fixture
def receiver(servers: tuple[ChargebeeEmulator, _Receiver, ServerThread], em: Any) -> _Receiver:
    return servers[1]


def make_client(base_url: str, api_key: str = KEY, **kwargs: Any) -> Chargebee:
    """The reference's recipe (§2a): plain HTTP to a local server through the official client."""
    Chargebee.verify_ca_certs = False  # class attribute: the request code reads it there
    cb = Chargebee(api_key=api_key, site="acme-test", protocol="http", **kwargs)
    cb.env.api_url = lambda url, subDomain=None: base_url + "/api/v2" + url
    return cb


@pytest.fixture
def cb(server: ServerThread) -> Chargebee:
    return make_client(server.urls["chargebee"])


# one client for the control plane: creating an httpx client costs ~30 ms (TLS context)
_CONTROL = httpx.Client(timeout=10)


def ctl(server: ServerThread, method: str, path: str, body: Any = None) -> Any:
    resp = _CONTROL.request(method, server.urls["chargebee"] + path, json=body)
    resp.raise_for_status()
    return resp.json()


def ledger(server: ServerThread, path_prefix: str, method: str | None = None) -> list[dict]:
    params = {"path_prefix": path_prefix, **({"method": method} if method else {})}
    resp = _CONTROL.get(server.urls["chargebee"] + "/_sandbox/requests", params=params)
    return resp.json()["requests"]


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


PLAN = {
    "id": "pro-USD-monthly",
    "item_id": "pro",
    "name": "Pro Monthly",
    "price": 5000,
    "currency_code": "USD",
    "period": 1,
    "period_unit": "month",
}
YEARLY = {
    **PLAN,
    "id": "pro-USD-yearly",
    "name": "Pro Yearly",
    "price": 48000,
    "period_unit": "year",
}
SEATS = {
    "id": "seats-USD-monthly",
    "item_id": "seats",
    "name": "Extra seats",
    "price": 1000,
    "currency_code": "USD",
    "period": 1,
    "period_unit": "month",
    "item_type": "addon",
}


def seed_dunning(server: ServerThread, decline_code: str | None = "insufficient_funds") -> dict:
    return ctl(
        server,
        "POST",
        "/_sandbox/seed",
        {
            "item_prices": [PLAN, SEATS],
            "customers": [
                {
                    "id": "cust_1",
                    "first_name": "Ada",
                    "last_name": "Lovelace",
                    "email": "ada@example.com",
                    "company": "Analytical Engines",
                    "card": {"decline_code": decline_code, "last4": "0341"},
                }
            ],
            "subscriptions": [
                {
                    "id": "sub_1",
                    "customer_id": "cust_1",
                    "items": [{"item_price_id": PLAN["id"], "quantity": 2}],
                    "status": "active",
                    "started_at": int(time.time()) - 40 * 86400,
                }
            ],
            "invoices": [
                {
                    "id": "INV-42",
                    "customer_id": "cust_1",
                    "subscription_id": "sub_1",
                    "total": 10000,
                    "status": "payment_due",
                    "date": int(time.time()) - 86400,
                }
            ],
        },
    )


def add_hook(server: ServerThread, receiver_url: str) -> None:
    ctl(
        server,
        "POST",
        "/_sandbox/webhooks",
        {"url": receiver_url + "/hook", "basic_auth": list(HOOK_AUTH)},
    )


# --- customers ------------------------------------------------------------------------------------


def test_customer_create_retrieve_update_delete(cb: Chargebee, server: ServerThread) -> None:
    res = cb.Customer.create(
        {
            "id": "cust_ada",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "company": "Analytical Engines",
            "auto_collection": "on",
            "net_term_days": 15,
            "meta_data": json.dumps({"crm_id": "0015g00000XyZ", "tier": 2}),
            "billing_address": {"city": "London", "country": "GB", "line1": "1 St James's Sq"},
        }
    )
    c = res.customer
    assert c.id == "cust_ada" and c.object == "customer"
    assert c.net_term_days == 15 and c.auto_collection == "on"
    assert c.meta_data == {"crm_id": "0015g00000XyZ", "tier": 2}
    assert c.billing_address.city == "London"
    assert isinstance(c.resource_version, int) and c.created_at <= int(time.time())
    assert res.card is not None and res.card.object == "card"
    assert res.is_idempotency_replayed is False

    got = cb.Customer.retrieve("cust_ada")
    assert got.customer.email == "ada@example.com" and got.card.last4 == "1111"

    upd = cb.Customer.update("cust_ada", {"company": "Babbage & Co", "auto_collection": "off"})
    assert upd.customer.company == "Babbage & Co" and upd.customer.auto_collection == "off"
    assert upd.customer.resource_version > c.resource_version

    # id optional: Chargebee generates one
    anon = cb.Customer.create({"first_name": "Grace"}).customer
    assert anon.id.startswith("16") and len(anon.id) == 16

    with pytest.raises(chargebee.InvalidRequestError) as dup:
        cb.Customer.create({"id": "cust_ada"})
    assert dup.value.api_error_code == "duplicate_entry" and dup.value.http_status_code == 400

    # meta_data must be JSON (a Python-repr dict is what the client sends for a dict)
    with pytest.raises(chargebee.InvalidRequestError) as bad:
        cb.Customer.update("cust_ada", {"meta_data": {"a": 1}})
    assert bad.value.api_error_code == "param_wrong_value" and bad.value.param == "meta_data"

    deleted = cb.Customer.delete("cust_ada")
    assert deleted.customer.deleted is True
    with pytest.raises(chargebee.InvalidRequestError):
        cb.Customer.retrieve("cust_ada")

    events = [e.event.event_type for e in cb.Event.list({"sort_by": {"asc": "occurred_at"}}).list]
    assert events == [
        "customer_created",
        "customer_changed",
        "customer_created",
        "customer_deleted",
    ]


def test_not_found_and_missing_param(cb: Chargebee) -> None:
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Customer.retrieve("nobody")
    err = exc.value
    assert err.http_status_code == 404
    assert err.api_error_code == "resource_not_found"
    assert err.type == "invalid_request"
    assert err.json_obj["error_code"] and err.json_obj["error_msg"] and err.param == "id"

    with pytest.raises(chargebee.InvalidRequestError) as missing:
        cb.Comment.create({"entity_type": "customer", "entity_id": "x"})
    assert missing.value.http_status_code == 400
    assert missing.value.api_error_code == "param_wrong_value"
    assert missing.value.param == "notes"
    assert missing.value.json_obj["error_param"] == "notes"


def test_wrong_api_key_is_401(server: ServerThread) -> None:
    bad = make_client(server.urls["chargebee"], api_key="not_the_key")
    with pytest.raises(chargebee.APIError) as exc:
        bad.Customer.list()
    assert exc.value.http_status_code == 401
    assert exc.value.api_error_code == "api_authentication_failed"
    resp = _CONTROL.get(server.urls["chargebee"] + "/api/v2/customers")  # no credentials at all
    assert resp.status_code == 401 and resp.json()["api_error_code"] == "api_authentication_failed"


def test_list_filters_and_sort(cb: Chargebee, server: ServerThread) -> None:
    now = int(time.time())
    ctl(
        server,
        "POST",
        "/_sandbox/seed",
        {
            "item_prices": [PLAN],
            "customers": [
                {"id": "c_old", "email": "old@x.io", "company": "Old", "created_at": now - 3000},
                {"id": "c_mid", "email": "mid@x.io", "company": "Mid", "created_at": now - 2000},
                {"id": "c_new", "email": "new@x.io", "company": "New", "created_at": now - 1000},
            ],
            "subscriptions": [
                {"id": "s_act", "customer_id": "c_old", "items": [{"item_price_id": PLAN["id"]}]},
                {
                    "id": "s_trial",
                    "customer_id": "c_mid",
                    "items": [{"item_price_id": PLAN["id"]}],
                    "status": "in_trial",
                },
                {
                    "id": "s_gone",
                    "customer_id": "c_new",
                    "items": [{"item_price_id": PLAN["id"]}],
                    "status": "cancelled",
                },
            ],
        },
    )
    by_email = cb.Customer.list({"email": {"is": "mid@x.io"}})
    assert [r.customer.id for r in by_email.list] == ["c_mid"]
    assert by_email.next_offset is None

    after = cb.Customer.list(
        {"created_at": {"after": now - 2500}, "sort_by": {"asc": "created_at"}}
    )
    assert [r.customer.id for r in after.list] == ["c_mid", "c_new"]
    desc = cb.Customer.list({"sort_by": {"desc": "created_at"}})
    assert [r.customer.id for r in desc.list] == ["c_new", "c_mid", "c_old"]
    assert [r.customer.id for r in cb.Customer.list({"id": {"is": "c_old"}}).list] == ["c_old"]
    assert [r.customer.id for r in cb.Customer.list({"company": {"in": ["Old", "New"]}}).list] == [
        "c_new",
        "c_old",
    ]

    subs = cb.Subscription.list(
        {"status": {"in": ["active", "in_trial"]}, "sort_by": {"asc": "created_at"}}
    )
    assert sorted(r.subscription.id for r in subs.list) == ["s_act", "s_trial"]
    assert all(r.customer is not None for r in subs.list)
    query = unquote(ledger(server, "/api/v2/subscriptions", "GET")[-1]["query"])
    assert "status[in]=['active', 'in_trial']" in query.replace("+", " ")

    active = cb.Subscription.list({"status": {"is": "active"}}).list[0].subscription
    assert active.mrr == 5000 and active.subscription_items[0].item_price_id == PLAN["id"]
    assert [
        r.subscription.id
        for r in cb.Subscription.list(
            {"item_price_id": {"is": PLAN["id"]}, "status": {"is_not": "active"}}
        ).list
    ] == ["s_gone", "s_trial"]

    with pytest.raises(chargebee.InvalidRequestError) as bad_sort:
        cb.Customer.list({"sort_by": {"asc": "email"}})
    assert bad_sort.value.api_error_code == "param_wrong_value"


def test_pagination_with_next_offset(cb: Chargebee, server: ServerThread) -> None:
    ctl(
        server,
        "POST",
        "/_sandbox/seed",
        {"customers": [{"id": f"c_{i:02d}", "created_at": 1_700_000_000} for i in range(25)]},
    )
    seen: list[str] = []
    offsets: list[str | None] = []
    offset = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 10}
        if offset:
            params["offset"] = offset
        page = cb.Customer.list(params)
        seen += [r.customer.id for r in page.list]
        offset = page.next_offset
        offsets.append(offset)
        if not offset:
            break
    assert len(offsets) == 3 and offsets[-1] is None
    assert isinstance(offsets[0], str) and json.loads(offsets[0])
    assert len(seen) == 25 and len(set(seen)) == 25

    with pytest.raises(chargebee.InvalidRequestError):
        cb.Customer.list({"limit": 101})
    with pytest.raises(chargebee.InvalidRequestError):
        cb.Customer.list({"offset": "garbage"})


# --- subscriptions --------------------------------------------------------------------------------


def test_subscription_for_items_index_last_arrays(cb: Chargebee, server: ServerThread) -> None:
    ctl(
        server,
        "POST",
        "/_sandbox/seed",
        {
            "item_prices": [PLAN, YEARLY, SEATS],
            "coupons": [
                {
                    "id": "SAVE10",
                    "name": "10% off",
                    "discount_type": "percentage",
                    "discount_percentage": 10,
                }
            ],
            "customers": [{"id": "cust_1", "email": "a@example.com"}],
        },
    )
    res = cb.Subscription.create_with_items(
        "cust_1",
        {
            "id": "sub_new",
            "subscription_items": [
                {"item_price_id": PLAN["id"], "quantity": 1},
                {"item_price_id": SEATS["id"], "quantity": 3},
            ],
            "coupon_ids": ["SAVE10"],
        },
    )
    sub = res.subscription
    assert sub.id == "sub_new" and sub.status == "active" and sub.customer_id == "cust_1"
    assert [(i.item_price_id, i.quantity) for i in sub.subscription_items] == [
        (PLAN["id"], 1),
        (SEATS["id"], 3),
    ]
    assert sub.mrr == 7200  # (5000 + 3 * 1000) - 10 %
    assert sub.coupons[0].coupon_id == "SAVE10"
    assert res.customer.id == "cust_1"
    assert res.invoice.status == "paid" and res.invoice.total == 7200
    assert res.invoice.amount_paid == 7200 and res.invoice.amount_due == 0

    body = unquote(ledger(server, "/api/v2/customers/cust_1/subscription_for_items")[-1]["body"])
    assert "subscription_items[item_price_id][0]=pro-USD-monthly" in body
    assert "subscription_items[quantity][1]=3" in body
    assert "coupon_ids[0]=SAVE10" in body

    got = cb.Subscription.retrieve("sub_new")
    assert got.subscription.id == "sub_new" and got.customer.id == "cust_1" and got.card.last4

    changed = cb.Subscription.update_for_items(
        "sub_new",
        {
            "subscription_items": [
                {"item_price_id": YEARLY["id"]},
                {"item_price_id": SEATS["id"], "quantity": 5},
            ]
        },
    )
    assert [(i.item_price_id, i.quantity) for i in changed.subscription.subscription_items] == [
        (SEATS["id"], 5),
        (YEARLY["id"], 1),
    ]
    assert changed.subscription.billing_period_unit == "year"

    cancelled = cb.Subscription.cancel_for_items("sub_new", {"end_of_term": False})
    assert cancelled.subscription.status == "cancelled" and cancelled.subscription.mrr == 0
    with pytest.raises(chargebee.InvalidRequestError) as again:
        cb.Subscription.cancel_for_items("sub_new", {})
    assert again.value.api_error_code == "invalid_state_for_request"

    kinds = [
        e.event.event_type
        for e in cb.Event.list({"sort_by": {"asc": "occurred_at"}, "limit": 20}).list
    ]
    assert kinds == [
        "subscription_created",
        "invoice_generated",
        "payment_succeeded",
        "subscription_changed",
        "subscription_cancelled",
    ]

    with pytest.raises(chargebee.InvalidRequestError) as unknown_price:
        cb.Subscription.create_with_items(
            "cust_1", {"subscription_items": [{"item_price_id": "nope"}]}
        )
    assert unknown_price.value.http_status_code == 404
    assert unknown_price.value.param == "subscription_items[item_price_id][0]"
    with pytest.raises(chargebee.InvalidRequestError) as no_items:
        cb.Subscription.create_with_items("cust_1", {})
    assert no_items.value.api_error_code == "param_wrong_value"


def test_subscription_create_with_declining_card_creates_nothing(
    cb: Chargebee, server: ServerThread
) -> None:
    ctl(
        server,
        "POST",
        "/_sandbox/seed",
        {
            "item_prices": [PLAN],
            "customers": [{"id": "c1", "card": {"decline_code": "card_declined"}}],
        },
    )
    with pytest.raises(chargebee.PaymentError) as exc:
        cb.Subscription.create_with_items(
            "c1", {"subscription_items": [{"item_price_id": PLAN["id"]}]}
        )
    assert exc.value.api_error_code == "payment_processing_failed"
    assert "card_declined" in str(exc.value)
    assert cb.Subscription.list().list == []
    assert cb.Invoice.list().list == []


# --- idempotency and faults -----------------------------------------------------------------------


def test_idempotent_replay_and_key_reuse(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server)
    params = {"entity_type": "customer", "entity_id": "cust_1", "notes": "Called about the card"}
    first = cb.Comment.create(dict(params), {"chargebee-idempotency-key": "key-1"})
    second = cb.Comment.create(dict(params), {"chargebee-idempotency-key": "key-1"})
    assert first.is_idempotency_replayed is False
    assert second.is_idempotency_replayed is True
    assert second.comment.id == first.comment.id
    assert len(cb.Comment.list({"entity_type": "customer", "entity_id": "cust_1"}).list) == 1

    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Comment.create({**params, "notes": "other"}, {"chargebee-idempotency-key": "key-1"})
    assert exc.value.http_status_code == 400
    assert exc.value.api_error_code == "invalid_request"
    assert len(cb.Comment.list().list) == 1

    third = cb.Comment.create({**params, "notes": "other"}, {"chargebee-idempotency-key": "key-2"})
    assert third.is_idempotency_replayed is False
    assert len(cb.Comment.list().list) == 2


def test_idempotency_window_expires() -> None:
    em = ChargebeeEmulator(idempotency_window_s=0.5)
    with ServerThread({em: 0}) as srv:
        cb = make_client(srv.urls["chargebee"])
        cb.Customer.create({"id": "a"}, {"chargebee-idempotency-key": "k"})
        assert cb.Customer.create(
            {"id": "a"}, {"chargebee-idempotency-key": "k"}
        ).is_idempotency_replayed
        time.sleep(0.6)
        with pytest.raises(chargebee.InvalidRequestError) as exc:  # processed anew: duplicate id
            cb.Customer.create({"id": "a"}, {"chargebee-idempotency-key": "k"})
        assert exc.value.api_error_code == "duplicate_entry"


def test_injected_429_with_retry_after(cb: Chargebee, server: ServerThread) -> None:
    ctl(
        server,
        "POST",
        "/_sandbox/faults",
        {"status": 429, "retry_after": 2, "path": "/api/v2/customers", "method": "GET"},
    )
    with pytest.raises(chargebee.APIError) as exc:
        cb.Customer.list()
    err = exc.value
    assert err.http_status_code == 429
    assert err.api_error_code == "api_request_limit_exceeded"
    assert err.http_headers["retry-after"] == "2"
    assert cb.Customer.list().list == []  # the fault was spent


def test_injected_5xx_is_a_chargebee_error(cb: Chargebee, server: ServerThread) -> None:
    ctl(server, "POST", "/_sandbox/faults", {"status": 503, "path": "/api/v2/invoices"})
    with pytest.raises(chargebee.APIError) as exc:
        cb.Invoice.list()
    assert exc.value.http_status_code == 503
    assert exc.value.api_error_code == "internal_temporary_error"


def test_commit_then_timeout(server: ServerThread) -> None:
    ctl(server, "POST", "/_sandbox/seed", {"customers": [{"id": "cust_1"}]})
    slow = make_client(server.urls["chargebee"], read_time_out=0.3)  # seconds (httpx.Timeout)
    ctl(
        server,
        "POST",
        "/_sandbox/faults",
        {
            "kind": "commit_then_timeout",
            "delay_s": 1.0,
            "path": "/api/v2/comments",
            "method": "POST",
        },
    )
    params = {"entity_type": "customer", "entity_id": "cust_1", "notes": "lost answer"}
    with pytest.raises(httpx.ReadTimeout):
        slow.Comment.create(dict(params), {"chargebee-idempotency-key": "retry-me"})
    listed = slow.Comment.list({"entity_id": "cust_1", "entity_type": "customer"}).list
    assert [r.comment.notes for r in listed] == ["lost answer"]  # committed
    retry = slow.Comment.create(dict(params), {"chargebee-idempotency-key": "retry-me"})
    assert retry.is_idempotency_replayed and retry.comment.id == listed[0].comment.id


def test_rate_limit_lifts(cb: Chargebee, server: ServerThread) -> None:
    ctl(server, "POST", "/_sandbox/chargebee/rate_limit", {"per_minute": 2, "window_s": 0.3})
    try:
        cb.Customer.list()
        cb.Customer.list()
        with pytest.raises(chargebee.APIError) as exc:
            cb.Customer.list()
        assert exc.value.http_status_code == 429
        assert exc.value.api_error_code == "api_request_limit_exceeded"
        assert int(exc.value.http_headers["retry-after"]) >= 1
        time.sleep(0.35)
        cb.Customer.list()
    finally:
        ctl(server, "POST", "/_sandbox/chargebee/rate_limit", {"per_minute": None})


# --- payments and webhooks ------------------------------------------------------------------------


def _webhooks(receiver: _Receiver, count: int) -> list[dict[str, Any]]:
    wait_for(lambda: len(receiver.received) >= count)
    return receiver.received


def test_collect_payment_declined_sends_payment_failed(
    cb: Chargebee, server: ServerThread, receiver: _Receiver
) -> None:
    seed_dunning(server, "insufficient_funds")
    add_hook(server, server.urls["receiver"])
    with pytest.raises(chargebee.PaymentError) as exc:
        cb.Invoice.collect_payment("INV-42")
    err = exc.value
    assert err.type == "payment" and err.api_error_code == "payment_processing_failed"
    assert err.http_status_code == 400  # Chargebee's documented status for payment errors
    assert "insufficient_funds" in str(err) and "USD 100.00" in str(err)

    failed = cb.Transaction.list(
        {"customer_id": {"is": "cust_1"}, "status": {"is": "failure"}}
    ).list
    assert len(failed) == 1
    txn = failed[0].transaction
    assert txn.type == "payment" and txn.amount == 10000 and txn.currency_code == "USD"
    assert txn.error_code == "insufficient_funds" and txn.error_text
    assert txn.linked_invoices[0].invoice_id == "INV-42"

    inv = cb.Invoice.retrieve("INV-42").invoice
    assert inv.status == "payment_due" and inv.dunning_status == "in_progress"
    assert inv.next_retry_at > int(time.time()) and inv.amount_due == 10000
    assert inv.dunning_attempts[0].transaction_id == txn.id
    assert [t.transaction.id for t in cb.Transaction.payments_for_invoice("INV-42").list] == [
        txn.id
    ]

    (hook,) = _webhooks(receiver, 1)
    token = base64.b64encode(":".join(HOOK_AUTH).encode()).decode()
    assert hook["headers"]["authorization"] == f"Basic {token}"
    assert hook["headers"]["content-type"].startswith("application/json")
    payload = json.loads(hook["body"])
    assert payload["id"].startswith("ev_") and payload["object"] == "event"
    assert payload["api_version"] == "v2" and payload["event_type"] == "payment_failed"
    assert (
        isinstance(payload["occurred_at"], int) and payload["source"] and payload["webhook_status"]
    )
    assert set(payload["content"]) >= {"transaction", "invoice", "customer", "subscription"}
    assert payload["content"]["transaction"]["status"] == "failure"
    assert payload["content"]["invoice"]["dunning_status"] == "in_progress"
    assert payload["content"]["subscription"]["id"] == "sub_1"

    event = cb.Event.deserialize(hook["body"].decode())
    assert event.event_type == "payment_failed" and event.id == payload["id"]
    assert event.content["transaction"]["error_code"] == "insufficient_funds"

    listed = cb.Event.list({"event_type": {"in": ["payment_failed", "payment_succeeded"]}}).list
    assert [e.event.id for e in listed] == [payload["id"]]

    # an idempotent retry of the failed collection does not charge again
    with pytest.raises(chargebee.PaymentError):
        cb.Invoice.collect_payment("INV-42", {}, {"chargebee-idempotency-key": "collect-1"})
    with pytest.raises(chargebee.PaymentError):
        cb.Invoice.collect_payment("INV-42", {}, {"chargebee-idempotency-key": "collect-1"})
    assert len(cb.Transaction.list({"status": {"is": "failure"}}).list) == 2


def test_record_payment_sends_payment_succeeded(
    cb: Chargebee, server: ServerThread, receiver: _Receiver
) -> None:
    seed_dunning(server)
    add_hook(server, server.urls["receiver"])
    paid_at = int(time.time()) - 60
    res = cb.Invoice.record_payment(
        "INV-42",
        {
            "transaction": {"amount": 10000, "payment_method": "bank_transfer", "date": paid_at},
            "comment": "Wire received",
        },
    )
    assert res.invoice.status == "paid" and res.invoice.amount_due == 0
    assert (
        res.invoice.amount_paid == 10000
        and res.invoice.linked_payments[0].txn_id == res.transaction.id
    )
    assert res.transaction.status == "success" and res.transaction.payment_method == "bank_transfer"
    assert res.transaction.date == paid_at

    (hook,) = _webhooks(receiver, 1)
    event = cb.Event.deserialize(hook["body"].decode())
    assert event.event_type == "payment_succeeded"
    assert event.content["invoice"]["status"] == "paid"
    notes = cb.Comment.list({"entity_type": "invoice", "entity_id": "INV-42"}).list
    assert [n.comment.notes for n in notes] == ["Wire received"]

    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Invoice.record_payment("INV-42", {"transaction": {"payment_method": "cash"}})
    assert exc.value.api_error_code == "invalid_state_for_request"


def test_collect_payment_success_and_controls(
    cb: Chargebee, server: ServerThread, receiver: _Receiver, em: ChargebeeEmulator
) -> None:
    seed_dunning(server, decline_code="card_declined")
    add_hook(server, server.urls["receiver"])

    # control route: a dunning retry fails with a given code
    ev = ctl(
        server,
        "POST",
        "/_sandbox/chargebee/invoices/INV-42/fail_payment",
        {"decline_code": "do_not_honor"},
    )
    assert ev["event_type"] == "payment_failed"
    assert ev["content"]["transaction"]["error_code"] == "do_not_honor"

    # Python control, from the emulator's loop
    loop = servers_loop(server)
    ev2 = asyncio.run_coroutine_threadsafe(em.fail_payment("INV-42"), loop).result(5)
    assert ev2["content"]["transaction"]["error_code"] == "card_declined"
    assert ev2["content"]["invoice"]["dunning_attempts"][-1]["attempt"] == 1

    # the customer fixes the card; a collection now succeeds
    em.set_card_decline("cust_1", None)
    res = cb.Invoice.collect_payment("INV-42")
    assert res.invoice.status == "paid" and res.invoice.dunning_status == "success"
    assert res.transaction.status == "success" and res.transaction.amount == 10000
    with pytest.raises(chargebee.InvalidRequestError):
        cb.Invoice.collect_payment("INV-42")

    kinds = [json.loads(h["body"])["event_type"] for h in _webhooks(receiver, 3)]
    assert sorted(kinds) == ["payment_failed", "payment_failed", "payment_succeeded"]
    sub = cb.Subscription.retrieve("sub_1").subscription
    assert sub.due_invoices_count == 0


def test_dunning_exhausts_and_pay_control(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server, decline_code=None)
    ctl(
        server,
        "POST",
        "/_sandbox/chargebee/customers/cust_1/card",
        {"decline_code": "expired_card"},
    )
    assert cb.Customer.retrieve("cust_1").customer.card_status == "expired"
    for _ in range(3):
        with pytest.raises(chargebee.PaymentError):
            cb.Invoice.collect_payment("INV-42")
        assert cb.Invoice.retrieve("INV-42").invoice.status == "payment_due"
    sub = cb.Subscription.retrieve("sub_1").subscription
    assert sub.due_invoices_count == 1 and sub.total_dues == 10000
    with pytest.raises(chargebee.PaymentError):
        cb.Invoice.collect_payment("INV-42")
    inv = cb.Invoice.retrieve("INV-42").invoice
    assert (
        inv.status == "not_paid" and inv.dunning_status == "exhausted" and inv.next_retry_at is None
    )

    ev = ctl(server, "POST", "/_sandbox/chargebee/invoices/INV-42/pay")
    assert ev["event_type"] == "payment_succeeded" and ev["content"]["invoice"]["status"] == "paid"
    listed = cb.Invoice.list(
        {"customer_id": {"is": "cust_1"}, "status": {"in": ["paid"]}, "sort_by": {"desc": "date"}}
    )
    assert [r.invoice.id for r in listed.list] == ["INV-42"]


def test_seeded_payment_history(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server)
    now = int(time.time())
    out = ctl(
        server,
        "POST",
        "/_sandbox/seed",
        {
            "invoices": [
                {
                    "id": "INV-41",
                    "customer_id": "cust_1",
                    "subscription_id": "sub_1",
                    "total": 10000,
                    "status": "paid",
                    "date": now - 40 * 86400,
                }
            ],
            "transactions": [
                {"invoice_id": "INV-41", "status": "success", "date": now - 40 * 86400},
                {
                    "invoice_id": "INV-42",
                    "status": "failure",
                    "error_code": "expired_card",
                    "date": now - 3600,
                },
            ],
        },
    )
    assert out["invoices"] == ["INV-41"] and len(out["transactions"]) == 2
    # what the connector asks for: the customer's latest payments, newest first
    recent = cb.Transaction.list(
        {
            "customer_id": {"is": "cust_1"},
            "type": {"is": "payment"},
            "sort_by": {"desc": "date"},
            "limit": 5,
        }
    ).list
    assert [
        (t.transaction.status, t.transaction.linked_invoices[0].invoice_id) for t in recent
    ] == [
        ("failure", "INV-42"),
        ("success", "INV-41"),
    ]
    assert recent[0].transaction.error_code == "expired_card" and recent[0].transaction.error_text
    assert cb.Invoice.retrieve("INV-42").invoice.status == "payment_due"  # left as seeded
    assert (
        cb.Customer.list({"id": {"is": "cust_1"}}).list[0].customer.company == "Analytical Engines"
    )


# --- comments, coupons, credits, events -----------------------------------------------------------


def test_comments_by_entity(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server)
    a = cb.Comment.create({"entity_type": "customer", "entity_id": "cust_1", "notes": "first"})
    cb.Comment.create({"entity_type": "subscription", "entity_id": "sub_1", "notes": "on sub"})
    cb.Comment.create({"entity_type": "customer", "entity_id": "cust_1", "notes": "second"})
    on_customer = cb.Comment.list({"entity_type": "customer", "entity_id": "cust_1"}).list
    assert sorted(r.comment.notes for r in on_customer) == ["first", "second"]
    assert all(r.comment.object == "comment" for r in on_customer)
    assert cb.Comment.retrieve(a.comment.id).comment.notes == "first"
    assert cb.Comment.delete(a.comment.id).comment.id == a.comment.id
    assert len(cb.Comment.list({"entity_type": "customer", "entity_id": "cust_1"}).list) == 1
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.Comment.create({"entity_type": "invoice", "entity_id": "nope", "notes": "x"})
    assert exc.value.api_error_code == "resource_not_found"


def test_coupons_and_promotional_credits(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server)
    coupon = cb.Coupon.create_for_items(
        {
            "id": "WINBACK20",
            "name": "Win-back 20%",
            "discount_type": "percentage",
            "discount_percentage": 20.0,
            "duration_type": "limited_period",
            "period": 3,
            "period_unit": "month",
            "apply_on": "each_specified_item",
            "item_constraints": [
                {"constraint": "specific", "item_type": "plan", "item_price_ids": [PLAN["id"]]}
            ],
        }
    ).coupon
    assert coupon.discount_percentage == 20.0 and coupon.status == "active"
    assert coupon.item_constraints[0].item_price_ids == [PLAN["id"]]
    fixed = cb.Coupon.create_for_items(
        {
            "id": "FLAT5",
            "name": "$5 off",
            "discount_type": "fixed_amount",
            "discount_amount": 500,
            "currency_code": "USD",
            "apply_on": "invoice_amount",
        }
    ).coupon
    assert fixed.discount_amount == 500
    assert cb.Coupon.retrieve("WINBACK20").coupon.name == "Win-back 20%"
    assert [
        r.coupon.id for r in cb.Coupon.list({"discount_type": {"is": "fixed_amount"}}).list
    ] == ["FLAT5"]
    with pytest.raises(chargebee.InvalidRequestError) as dup:
        cb.Coupon.create_for_items(
            {
                "id": "FLAT5",
                "name": "again",
                "discount_percentage": 5.0,
                "apply_on": "invoice_amount",
            }
        )
    assert dup.value.api_error_code == "duplicate_entry"

    upd = cb.Subscription.update_for_items("sub_1", {"coupon_ids": ["WINBACK20"]})
    assert upd.subscription.mrr == 8000  # 2 x 5000, 20 % off

    res = cb.Customer.add_promotional_credits("cust_1", {"amount": 1500, "description": "Goodwill"})
    assert res.customer.promotional_credits == 1500
    res2 = cb.PromotionalCredit.add({"customer_id": "cust_1", "amount": 500, "description": "More"})
    assert res2.customer.promotional_credits == 2000
    assert (
        res2.promotional_credit.closing_balance == 2000
        and res2.promotional_credit.type == "increment"
    )
    with pytest.raises(chargebee.InvalidRequestError) as exc:
        cb.PromotionalCredit.add({"customer_id": "cust_1", "amount": 500})
    assert exc.value.param == "description"


def test_events_filters(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server)
    start = int(time.time())
    cb.Customer.update("cust_1", {"phone": "+44 20 0000"})
    cb.Subscription.cancel_for_items("sub_1", {"end_of_term": True})
    everything = cb.Event.list().list
    assert {e.event.event_type for e in everything} == {
        "customer_changed",
        "subscription_cancellation_scheduled",
    }
    only = cb.Event.list(
        {"event_type": {"in": ["customer_changed"]}, "occurred_at": {"after": start - 1}}
    )
    assert [e.event.event_type for e in only.list] == ["customer_changed"]
    assert cb.Event.list({"occurred_at": {"after": start + 3600}}).list == []
    ev_id = only.list[0].event.id
    got = cb.Event.retrieve(ev_id).event
    assert got.content["customer"]["phone"] == "+44 20 0000" and got.api_version == "v2"
    sub = cb.Subscription.retrieve("sub_1").subscription
    assert sub.status == "non_renewing" and sub.cancelled_at == sub.current_term_end


def test_usage_event_json_on_ingest_subdomain(cb: Chargebee, server: ServerThread) -> None:
    seed_dunning(server)
    res = cb.UsageEvent.create(
        {
            "subscription_id": "sub_1",
            "deduplication_id": "dedup-1",
            "usage_timestamp": int(time.time() * 1000),
            "properties": {"api_calls": 3},
        }
    )
    assert res.usage_event.subscription_id == "sub_1" and res.usage_event.properties == {
        "api_calls": 3
    }
    row = ledger(server, "/api/v2/usage_events")[-1]
    assert row["headers"]["content-type"].startswith("application/json")


def servers_loop(server: ServerThread) -> asyncio.AbstractEventLoop:
    assert server.loop is not None
    return server.loop
