"""The Zuora emulator over HTTP, the way ``httpx`` production code talks to Zuora.

Every request body we send and every response body we get is checked against the generated
models of ``zuora-sdk`` 3.21.0 (``tests/zuora/shapes.py``): field names and types as Zuora's
own clients expect them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sandbox.framework import App, ServerThread, WebhookTarget
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import CREDIT_PLAN, DISCOUNT_PLAN, catalog
from tests.zuora.shapes import operation, problems

CLIENT = ("zuora-test-client", "zuora-test-secret")
HOOK = ("zuora-hook", "hook-pass")


class Receiver:
    """A callout endpoint: Basic auth by challenge (401 + WWW-Authenticate without
    credentials), and a scripted status per request (default 200)."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self.app = App("receiver", Starlette(routes=[Route("/hook", self._hook, methods=["POST"])]))

    async def _hook(self, request: Request) -> Response:
        self.received.append({"headers": dict(request.headers), "body": await request.body()})
        if "authorization" not in request.headers:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="hooks"'})
        status = self.statuses.pop(0) if self.statuses else 200
        return JSONResponse({"ok": True}, status_code=status)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[ZuoraEmulator, Receiver, ServerThread]]:
    em = ZuoraEmulator(client_id=CLIENT[0], client_secret=CLIENT[1])
    receiver = Receiver()
    server = ServerThread({em: 0, receiver.app: 0}).start()
    em.webhook_targets.append(WebhookTarget(url=server.urls["receiver"] + "/hook", basic_auth=HOOK))
    try:
        yield em, receiver, server
    finally:
        server.stop()


@pytest.fixture
def z(servers: tuple[ZuoraEmulator, Receiver, ServerThread]) -> Iterator[Zuora]:
    em, receiver, server = servers
    httpx.post(server.urls["zuora"] + "/_sandbox/reset").raise_for_status()
    em.webhook_targets[:] = [WebhookTarget(url=server.urls["receiver"] + "/hook", basic_auth=HOOK)]
    receiver.received.clear()
    receiver.statuses.clear()
    httpx.post(
        server.urls["zuora"] + "/_sandbox/seed", json={"products": catalog()}
    ).raise_for_status()
    with Zuora(server.urls["zuora"], em, receiver) as client:
        yield client


class Zuora:
    """A thin test client: a token, JSON calls, and the spec check of both bodies."""

    def __init__(self, url: str, em: ZuoraEmulator, receiver: Receiver) -> None:
        self.url = url
        self.em = em
        self.receiver = receiver
        self.http = httpx.Client(base_url=url, timeout=10)
        self.token = self.new_token()

    def __enter__(self) -> Zuora:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def new_token(self) -> str:
        resp = self.http.post(
            "/oauth/token",
            data={
                "client_id": CLIENT[0],
                "client_secret": CLIENT[1],
                "grant_type": "client_credentials",
            },
        )
        assert resp.status_code == 200, resp.text
        assert problems("TokenResponse", resp.json()) == []
        return resp.json()["access_token"]

    def raw(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        hdrs = {"Authorization": f"Bearer {self.token}", **(headers or {})}
        return self.http.request(method, path, json=body, headers=hdrs, **kw)

    def call(
        self, method: str, template: str, path: str | None = None, body: Any = None, **kw: Any
    ) -> dict[str, Any]:
        """Call ``template`` (the spec's path) at ``path``; check request and 200 response."""
        op = operation(method, template)
        if body is not None and op["request_body"]:
            assert problems(op["request_body"], body, request=True) == [], op["request_body"]
        resp = self.raw(method, path or template, body, **kw)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert problems(op["responses"]["200"], data) == [], (
            op["responses"]["200"],
            problems(op["responses"]["200"], data),
        )
        return data

    def account(self, name: str = "Acme Corp", **extra: Any) -> dict[str, Any]:
        body = {
            "name": name,
            "currency": "USD",
            "billToContact": {
                "firstName": "Ada",
                "lastName": "Buyer",
                "workEmail": "ada@example.com",
            },
            **extra,
        }
        data = self.call("POST", "/v1/accounts", body=body)
        assert data["success"] is True
        return data

    def subscribe(
        self, account_id: str, plan: str = "PRP-CORE-USD-MONTHLY", quantity: int = 1
    ) -> dict[str, Any]:
        body = {
            "accountKey": account_id,
            "contractEffectiveDate": "2026-01-01",
            "termType": "TERMED",
            "initialTerm": 12,
            "renewalTerm": 12,
            "subscribeToRatePlans": [
                {
                    "productRatePlanNumber": plan,
                    "chargeOverrides": [
                        {"productRatePlanChargeId": self.charge_id(plan), "quantity": quantity}
                    ],
                }
            ],
        }
        return self.call("POST", "/v1/subscriptions", body=body)

    def charge_id(self, plan: str) -> str:
        return self.raw("GET", f"/v1/product-rate-plans/{plan}").json()["productRatePlanCharges"][
            0
        ]["id"]

    def seed_invoice(self, account_id: str, sub_number: str | None, amount: int) -> str:
        resp = httpx.post(
            self.url + "/_sandbox/seed",
            json={
                "invoices": [{"account": account_id, "subscription": sub_number, "amount": amount}]
            },
        )
        resp.raise_for_status()
        return resp.json()["invoices"][0]

    def wait_callouts(self, n: int, within: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            ok = [r for r in self.receiver.received if "authorization" in r["headers"]]
            if len(ok) >= n:
                return ok
            time.sleep(0.02)
        raise AssertionError(f"expected {n} authorized callouts, got {self.receiver.received}")


# --- auth -------------------------------------------------------------------------------------------


def test_oauth_token_and_401_on_missing_bad_or_expired_tokens(z: Zuora) -> None:
    bad = z.http.post(
        "/oauth/token",
        data={"client_id": CLIENT[0], "client_secret": "nope", "grant_type": "client_credentials"},
    )
    assert bad.status_code == 401
    token = z.http.post(
        "/oauth/token",
        data={
            "client_id": CLIENT[0],
            "client_secret": CLIENT[1],
            "grant_type": "client_credentials",
        },
    ).json()
    assert token["token_type"] == "bearer" and 3500 < token["expires_in"] <= 3600
    none = z.http.get("/v1/catalog/products")
    assert none.status_code == 401 and problems("ProxyUnauthorizedResponse", none.json()) == []
    assert z.raw("GET", "/v1/catalog/products").status_code == 200
    httpx.post(z.url + "/_sandbox/zuora/tokens/expire").raise_for_status()
    expired = z.raw("GET", "/v1/catalog/products")
    assert expired.status_code == 401 and expired.json() == {"message": "Authentication error"}
    # the token call itself is never ledgered with its secret
    ledger = httpx.get(z.url + "/_sandbox/requests", params={"path_prefix": "/oauth"}).json()[
        "requests"
    ]
    assert ledger and all(CLIENT[1] not in row["body"] for row in ledger)


# --- shapes of every operation RevBridge uses ----------------------------------------------------------


def test_accounts_contacts_catalogue_shapes(z: Zuora) -> None:
    acct = z.account(crmId="001000000000001AAA", notes="first", CrmSystem__c="salesforce")
    aid = acct["accountId"]
    detail = z.call("GET", "/v1/accounts/{account-key}", f"/v1/accounts/{aid}")
    assert detail["basicInfo"]["crmId"] == "001000000000001AAA"
    assert detail["basicInfo"]["CrmSystem__c"] == "salesforce"
    assert detail["billToContact"]["workEmail"] == "ada@example.com"
    by_number = z.call("GET", "/v1/accounts/{account-key}", f"/v1/accounts/{acct['accountNumber']}")
    assert by_number["basicInfo"]["id"] == aid
    z.call(
        "PUT",
        "/v1/accounts/{account-key}",
        f"/v1/accounts/{aid}",
        body={"notes": "second", "CrmSystem__c": "hubspot"},
    )
    assert (
        z.call("GET", "/v1/accounts/{account-key}", f"/v1/accounts/{aid}")["basicInfo"]["notes"]
        == "second"
    )
    contact = z.call(
        "POST",
        "/v1/contacts",
        body={
            "accountId": aid,
            "firstName": "Bo",
            "lastName": "Ops",
            "workEmail": "bo@example.com",
        },
    )
    z.call("GET", "/v1/contacts/{contactId}", f"/v1/contacts/{contact['id']}")
    z.call(
        "PUT", "/v1/contacts/{contactId}", f"/v1/contacts/{contact['id']}", body={"city": "Paris"}
    )
    products = z.call("GET", "/v1/catalog/products", params={"pageSize": 3})
    assert len(products["products"]) == 3 and products["nextPage"].startswith(
        z.url + "/v1/catalog/products?"
    )
    assert "page=2" in products["nextPage"] and "pageSize=3" in products["nextPage"]
    summary = z.call("GET", "/v1/accounts/{account-key}/summary", f"/v1/accounts/{aid}/summary")
    assert summary["basicInfo"]["name"] == "Acme Corp"
    plan = z.raw("GET", f"/v1/product-rate-plans/{DISCOUNT_PLAN}").json()
    assert plan["productRatePlanCharges"][0]["model"] == "DiscountPercentage"


def test_subscriptions_orders_and_object_query_shapes(z: Zuora) -> None:
    aid = z.account(crmId="acc-1")["accountId"]
    created = z.subscribe(aid, quantity=2)
    assert created["contractedMrr"] == 1000.0  # 2 × 500.00
    number = created["subscriptionNumber"]
    sub = z.call("GET", "/v1/subscriptions/{subscription-key}", f"/v1/subscriptions/{number}")
    charge = sub["ratePlans"][0]["ratePlanCharges"][0]
    assert sub["status"] == "Active" and charge["quantity"] == 2 and charge["price"] == 500.0
    listed = z.call(
        "GET", "/v1/subscriptions/accounts/{account-key}", f"/v1/subscriptions/accounts/{aid}"
    )
    assert [s["subscriptionNumber"] for s in listed["subscriptions"]] == [number]
    z.call(
        "PUT",
        "/v1/subscriptions/{subscription-key}",
        f"/v1/subscriptions/{number}",
        body={"notes": "audit"},
    )
    order = z.call(
        "POST",
        "/v1/orders",
        body={
            "orderDate": "2026-02-01",
            "existingAccountNumber": aid,
            "customFields": {"RevBridgeKey__c": "rb-key-1"},
            "subscriptions": [
                {
                    "orderActions": [
                        {
                            "type": "CreateSubscription",
                            "triggerDates": [
                                {"name": "ContractEffective", "triggerDate": "2026-02-01"}
                            ],
                            "createSubscription": {
                                "subscriptionNumber": "RB-S-1",
                                "terms": {
                                    "initialTerm": {
                                        "period": 12,
                                        "periodType": "Month",
                                        "termType": "TERMED",
                                    },
                                    "renewalTerms": [{"period": 12, "periodType": "Month"}],
                                    "autoRenew": True,
                                },
                                "subscribeToRatePlans": [
                                    {
                                        "productRatePlanNumber": "PRP-SEAT-USD-MONTHLY",
                                        "chargeOverrides": [
                                            {
                                                "productRatePlanChargeId": z.charge_id(
                                                    "PRP-SEAT-USD-MONTHLY"
                                                ),
                                                "pricing": {
                                                    "recurringPerUnit": {
                                                        "quantity": 10,
                                                        "listPrice": 35,
                                                    }
                                                },
                                            }
                                        ],
                                    }
                                ],
                            },
                        }
                    ]
                }
            ],
        },
    )
    assert order["subscriptionNumbers"] == ["RB-S-1"]
    got = z.call("GET", "/v1/orders/{orderNumber}", f"/v1/orders/{order['orderNumber']}")
    assert got["order"]["customFields"]["RevBridgeKey__c"] == "rb-key-1"
    seat = z.call("GET", "/v1/subscriptions/{subscription-key}", "/v1/subscriptions/RB-S-1")
    assert seat["contractedMrr"] == 350.0
    # a downgrade through Orders: UpdateProduct to fewer seats
    rp = seat["ratePlans"][0]
    z.call(
        "POST",
        "/v1/orders",
        body={
            "orderDate": "2026-03-01",
            "existingAccountNumber": aid,
            "subscriptions": [
                {
                    "subscriptionNumber": "RB-S-1",
                    "orderActions": [
                        {
                            "type": "UpdateProduct",
                            "updateProduct": {
                                "ratePlanId": rp["id"],
                                "chargeUpdates": [
                                    {
                                        "chargeNumber": rp["ratePlanCharges"][0]["number"],
                                        "pricing": {"recurringPerUnit": {"quantity": 4}},
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        },
    )
    assert (
        z.call("GET", "/v1/subscriptions/{subscription-key}", "/v1/subscriptions/RB-S-1")[
            "contractedMrr"
        ]
        == 140.0
    )
    cancelled = z.call(
        "PUT",
        "/v1/subscriptions/{subscription-key}/cancel",
        "/v1/subscriptions/RB-S-1/cancel",
        body={
            "cancellationPolicy": "SpecificDate",
            "cancellationEffectiveDate": time.strftime("%Y-%m-%d"),
        },
    )
    assert cancelled["success"] is True
    again = z.raw(
        "PUT", "/v1/subscriptions/RB-S-1/cancel", {"cancellationPolicy": "EndOfLastInvoicePeriod"}
    )
    assert again.status_code == 200 and again.json()["success"] is False
    assert str(again.json()["reasons"][0]["code"]).endswith("30")  # business rule
    # object query: filter, sort, cursor pages
    for i in range(3):
        z.account(f"Paged {i}", crmId=f"paged-{i}")
    first = z.call(
        "GET",
        "/object-query/accounts",
        params=[("filter[]", "name.SW:Paged"), ("sort[]", "createdDate.ASC"), ("pageSize", "2")],
    )
    assert [a["name"] for a in first["data"]] == ["Paged 0", "Paged 1"] and first["nextPage"]
    second = z.call(
        "GET",
        "/object-query/accounts",
        params=[
            ("filter[]", "name.SW:Paged"),
            ("sort[]", "createdDate.ASC"),
            ("pageSize", "2"),
            ("cursor", first["nextPage"]),
        ],
    )
    assert [a["name"] for a in second["data"]] == ["Paged 2"] and "nextPage" not in second
    subs = z.call(
        "GET", "/object-query/subscriptions", params=[("filter[]", f"accountId.EQ:{aid}")]
    )
    assert {s["name"] for s in subs["data"]} == {number, "RB-S-1"}
    too_big = z.raw("GET", "/object-query/accounts", params={"pageSize": 100})
    assert too_big.status_code == 400 and problems("CommonErrorResponse", too_big.json()) == []


def test_invoices_payments_collect_runs_memos_usage_shapes(z: Zuora) -> None:
    aid = z.account()["accountId"]
    number = z.subscribe(aid)["subscriptionNumber"]
    inv_id = z.seed_invoice(aid, number, 50_000)
    inv = z.call("GET", "/v1/invoices/{invoiceKey}", f"/v1/invoices/{inv_id}")
    assert inv["status"] == "Posted" and inv["balance"] == 500.0
    items = z.call("GET", "/v1/invoices/{invoiceKey}/items", f"/v1/invoices/{inv_id}/items")
    assert items["invoiceItems"][0]["subscriptionName"] == number
    z.call("PUT", "/v1/invoices/{invoiceKey}", f"/v1/invoices/{inv_id}", body={"comments": "note"})
    # a credit memo from the invoice, then applied
    memo = z.call(
        "POST",
        "/v1/credit-memos/invoice/{invoiceKey}",
        f"/v1/credit-memos/invoice/{inv_id}",
        body={
            "items": [
                {
                    "invoiceItemId": items["invoiceItems"][0]["id"],
                    "amount": 50,
                    "skuName": "SKU-CORE",
                }
            ],
            "reasonCode": "Courtesy",
        },
    )
    z.call(
        "PUT",
        "/v1/credit-memos/{creditMemoKey}/apply",
        f"/v1/credit-memos/{memo['id']}/apply",
        body={"invoices": [{"invoiceId": inv_id, "amount": 50}]},
    )
    assert (
        z.call("GET", "/v1/credit-memos/{creditMemoKey}", f"/v1/credit-memos/{memo['id']}")[
            "unappliedAmount"
        ]
        == 0.0
    )
    assert z.call("GET", "/v1/invoices/{invoiceKey}", f"/v1/invoices/{inv_id}")["balance"] == 450.0
    # a standalone memo from the courtesy-credit charge is account credit
    charge = z.raw("GET", f"/v1/product-rate-plans/{CREDIT_PLAN}").json()["productRatePlanCharges"][
        0
    ]["id"]
    standalone = z.raw(
        "POST",
        "/v1/credit-memos",
        {
            "accountId": aid,
            "charges": [{"productRatePlanChargeId": charge, "amount": 10}],
            "autoPost": True,
        },
    )
    assert standalone.json()["unappliedAmount"] == 10.0
    # invoice-collect: a working card pays the balance
    collected = z.call(
        "POST", "/v1/operations/invoice-collect", body={"accountKey": aid, "invoiceId": inv_id}
    )
    assert collected["amountCollected"] == "450.00" and collected["paymentId"]
    payment = z.call("GET", "/v1/payments/{paymentKey}", f"/v1/payments/{collected['paymentId']}")
    assert payment["status"] == "Processed" and payment["type"] == "Electronic"
    nothing = z.call(
        "POST", "/v1/operations/invoice-collect", body={"accountKey": aid, "invoiceId": inv_id}
    )
    assert nothing["amountCollected"] == "0.00" and nothing["paymentId"] is None  # never twice
    # an external payment and the payments list
    inv2 = z.seed_invoice(aid, number, 20_000)
    z.call(
        "POST",
        "/v1/payments",
        body={
            "type": "External",
            "accountId": aid,
            "amount": 200,
            "currency": "USD",
            "invoices": [{"invoiceId": inv2, "amount": 200}],
        },
    )
    listed = z.call("GET", "/v1/payments", params={"accountId": aid})
    assert [p["type"] for p in listed["payments"]] == ["External", "Electronic"]
    queried = z.call(
        "GET",
        "/object-query/payments",
        params=[("filter[]", f"accountId.EQ:{aid}"), ("sort[]", "createdDate.DESC")],
    )
    assert len(queried["data"]) == 2
    # write-off and payment runs
    inv3 = z.seed_invoice(aid, number, 1_000)
    off = z.call(
        "PUT",
        "/v1/invoices/{invoiceKey}/write-off",
        f"/v1/invoices/{inv3}/write-off",
        body={"comment": "uncollectible"},
    )
    assert off["creditMemo"]["id"]
    z.seed_invoice(aid, number, 3_000)
    run = z.call(
        "POST", "/v1/payment-runs", body={"accountId": aid, "targetDate": time.strftime("%Y-%m-%d")}
    )
    assert (
        z.call("GET", "/v1/payment-runs/{paymentRunKey}", f"/v1/payment-runs/{run['id']}")["status"]
        == "Completed"
    )
    assert z.raw("GET", f"/v1/payment-runs/{run['id']}/summary").json()["numberOfProcessed"] == 1
    # usage (CRUD shapes) and the usage lists
    made = z.call(
        "POST",
        "/v1/object/usage",
        body={
            "AccountId": aid,
            "SubscriptionNumber": number,
            "UOM": "API_CALL",
            "Quantity": 120,
            "StartDateTime": "2026-01-02",
        },
    )
    assert made["Success"] is True and made["Id"]
    z.call("GET", "/v1/usage/accounts/{account-key}", f"/v1/usage/accounts/{aid}")
    z.call("GET", "/object-query/usages", params=[("filter[]", f"accountId.EQ:{aid}")])
    z.call(
        "GET",
        "/object-query/invoices",
        params=[("filter[]", f"accountId.EQ:{aid}"), ("sort[]", "invoiceDate.DESC")],
    )
    bad = z.raw(
        "POST",
        "/v1/object/usage",
        {"AccountId": aid, "UOM": "API_CALL", "StartDateTime": "2026-01-02"},
    )
    assert bad.status_code == 400 and problems("ProxyBadRequestResponse", bad.json()) == []
    assert bad.json()["Errors"][0]["Code"] == "MISSING_REQUIRED_VALUE"


# --- Zuora's error vocabulary ---------------------------------------------------------------------------


def test_business_errors_are_http_200_with_success_false_and_8_digit_codes(z: Zuora) -> None:
    aid = z.account()["accountId"]
    resp = z.raw(
        "POST",
        "/v1/subscriptions",
        {
            "accountKey": aid,
            "contractEffectiveDate": "2026-01-01",
            "termType": "FOREVER",
            "renewalTerm": 12,
            "subscribeToRatePlans": [{"productRatePlanNumber": "PRP-CORE-USD-MONTHLY"}],
        },
    )
    body = resp.json()
    assert resp.status_code == 200 and body["success"] is False
    assert problems("CommonResponse", body) == []
    code = body["reasons"][0]["code"]
    assert isinstance(code, int) and len(str(code)) == 8 and code % 100 == 20
    assert "TERMED, EVERGREEN" in body["reasons"][0]["message"]
    missing = z.raw("GET", "/v1/invoices/nope").json()
    assert missing["success"] is False and missing["reasons"][0]["code"] % 100 == 40
    malformed = z.http.post(
        "/v1/accounts", content=b"{not json", headers={"Authorization": f"Bearer {z.token}"}
    )
    assert malformed.status_code == 200 and malformed.json()["reasons"][0]["code"] % 100 == 90


def test_declined_collection_is_success_false_category_99_with_the_gateway_code(z: Zuora) -> None:
    aid = z.account()["accountId"]
    number = z.subscribe(aid)["subscriptionNumber"]
    inv = z.seed_invoice(aid, number, 12_000)
    httpx.post(
        f"{z.url}/_sandbox/zuora/accounts/{aid}/card", json={"decline_code": "insufficient_funds"}
    ).raise_for_status()
    body = z.raw(
        "POST", "/v1/operations/invoice-collect", {"accountKey": aid, "invoiceId": inv}
    ).json()
    assert body["success"] is False and body["reasons"][0]["code"] % 100 == 99
    assert "insufficient_funds" in body["reasons"][0]["message"]
    pays = z.call("GET", "/v1/payments", params={"accountId": aid})["payments"]
    assert pays[0]["status"] == "Error" and pays[0]["gatewayResponseCode"] == "insufficient_funds"
    hooks = z.wait_callouts(1)
    assert json.loads(hooks[0]["body"])["eventCategory"] == "PaymentDeclined"
    assert z.call("GET", "/v1/invoices/{invoiceKey}", f"/v1/invoices/{inv}")["balance"] == 120.0


# --- idempotency, rate and concurrency limits ----------------------------------------------------------


def test_idempotency_key_replays_conflicts_and_mismatches(z: Zuora) -> None:
    body = {"name": "Once", "currency": "USD", "billToContact": {"firstName": "A", "lastName": "B"}}
    first = z.raw("POST", "/v1/accounts", body, headers={"Idempotency-Key": "rb-acct-1"})
    again = z.raw("POST", "/v1/accounts", body, headers={"Idempotency-Key": "rb-acct-1"})
    assert (
        first.json() == again.json()
        and first.headers["zuora-request-id"] != again.headers["zuora-request-id"]
    )
    found = z.raw("GET", "/object-query/accounts", params=[("filter[]", "name.EQ:Once")]).json()[
        "data"
    ]
    assert len(found) == 1
    other = z.raw(
        "POST", "/v1/accounts", {**body, "name": "Twice"}, headers={"Idempotency-Key": "rb-acct-1"}
    )
    assert other.status_code == 422
    # a second request while the first is still being processed: 409
    httpx.post(
        z.url + "/_sandbox/zuora/slow", json={"path": "/v1/accounts", "delay_s": 2}
    ).raise_for_status()

    async def race() -> list[int]:
        async with httpx.AsyncClient(
            base_url=z.url,
            headers={"Authorization": f"Bearer {z.token}", "Idempotency-Key": "rb-acct-2"},
        ) as c:
            slow = asyncio.create_task(c.post("/v1/accounts", json={**body, "name": "Slow"}))
            async with httpx.AsyncClient(base_url=z.url) as control:
                for _ in range(200):  # until the first request is in (it is held 2 s)
                    rows = (
                        await control.get(
                            "/_sandbox/requests", params={"path_prefix": "/v1/accounts"}
                        )
                    ).json()
                    if any(
                        r["headers"].get("idempotency-key") == "rb-acct-2" for r in rows["requests"]
                    ):
                        break
                    await asyncio.sleep(0.02)
            fast = await c.post("/v1/accounts", json={**body, "name": "Slow"})
            return [(await slow).status_code, fast.status_code]

    assert asyncio.run(race()) == [200, 409]
    httpx.post(z.url + "/_sandbox/zuora/slow", json={}).raise_for_status()
    # PUT is not idempotent by key in Zuora: the header is ignored, not an error
    aid = first.json()["accountId"]
    assert z.raw(
        "PUT", f"/v1/accounts/{aid}", {"notes": "x"}, headers={"Idempotency-Key": "k"}
    ).json()["success"]


def test_rate_limit_and_concurrency_429s_carry_zuoras_headers(z: Zuora) -> None:
    ok = z.raw("GET", "/v1/catalog/products")
    assert ok.headers["ratelimit-limit"].startswith("2250000") and "zuora-request-id" in ok.headers
    httpx.post(z.url + "/_sandbox/zuora/limits", json={"rate_per_minute": 2}).raise_for_status()
    statuses = [z.raw("GET", "/v1/catalog/products") for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    limited = statuses[-1]
    assert (
        limited.headers["ratelimit-remaining"] == "0" and int(limited.headers["retry-after"]) >= 1
    )
    assert limited.headers["ratelimit-limit"] == "2, 2;w=60"
    httpx.post(
        z.url + "/_sandbox/zuora/limits", json={"rate_per_minute": None, "reserved": 40}
    ).raise_for_status()
    busy = z.raw("GET", "/v1/catalog/products")
    assert busy.status_code == 429
    assert busy.headers["concurrency-limit-type"] == "Default"
    assert (
        busy.headers["concurrency-limit-limit"] == "40"
        and busy.headers["concurrency-limit-remaining"] == "0"
    )
    assert busy.json()["reasons"][0]["code"] % 100 == 70
    httpx.post(z.url + "/_sandbox/zuora/limits", json={"reserved": 0}).raise_for_status()
    assert z.raw("GET", "/v1/catalog/products").status_code == 200


# --- callouts -------------------------------------------------------------------------------------------


def test_callout_challenge_then_basic_ids_only_and_200_only(z: Zuora) -> None:
    aid = z.account()["accountId"]
    number = z.subscribe(aid)["subscriptionNumber"]
    inv = z.seed_invoice(aid, number, 5_000)
    z.receiver.statuses[:] = [202]  # not 200: Zuora counts it as a failure and retries
    httpx.post(
        f"{z.url}/_sandbox/zuora/invoices/{inv}/decline", json={"decline_code": "expired_card"}
    ).raise_for_status()
    hooks = z.wait_callouts(2)
    first_try = z.receiver.received[0]
    assert "authorization" not in first_try["headers"]  # the challenge round
    assert (
        hooks[0]["headers"]["authorization"]
        == "Basic " + base64.b64encode(b"zuora-hook:hook-pass").decode()
    )
    ids = [h["headers"]["zuora-request-id"] for h in hooks]
    assert len(set(ids)) == 2  # a new Zuora-Request-Id per attempt
    body = json.loads(hooks[0]["body"])
    assert (
        body["eventCategory"] == "PaymentDeclined"
        and body["invoiceId"] == inv
        and body["accountId"] == aid
    )
    assert body["gatewayResponseCode"] == "expired_card"
    # the declined attempt (issue 15: it spares the run its payments read), and no PII
    assert (body["amount"], body["currency"]) == ("50.00", "USD")
    assert not re.search(r"@|Acme", hooks[0]["body"].decode())
    deliveries = httpx.get(z.url + "/_sandbox/webhooks/deliveries").json()["deliveries"]
    assert deliveries[-1]["delivered"] is True and deliveries[-1]["attempts"] == 2


def test_callout_preemptive_and_hmac_and_out_of_order_release(z: Zuora) -> None:
    httpx.post(
        z.url + "/_sandbox/zuora/callouts/settings", json={"auth": "preemptive", "hmac_key": "k1"}
    ).raise_for_status()
    aid = z.account()["accountId"]
    number = z.subscribe(aid)["subscriptionNumber"]
    inv = z.seed_invoice(aid, number, 5_000)
    httpx.post(z.url + "/_sandbox/zuora/callouts/hold").raise_for_status()
    httpx.post(f"{z.url}/_sandbox/zuora/invoices/{inv}/decline", json={}).raise_for_status()
    z.call("POST", "/v1/operations/invoice-collect", body={"accountKey": aid, "invoiceId": inv})
    assert z.receiver.received == []
    httpx.post(
        z.url + "/_sandbox/zuora/callouts/release", json={"order": "reverse"}
    ).raise_for_status()
    hooks = z.wait_callouts(2)
    assert [json.loads(h["body"])["eventCategory"] for h in hooks] == [
        "PaymentProcessed",
        "PaymentDeclined",
    ]
    assert all("authorization" in h["headers"] for h in z.receiver.received)  # no challenge round
    sig = hooks[0]["headers"]["x-zuora-signature"]
    assert hmac.compare_digest(sig, hmac.new(b"k1", hooks[0]["body"], hashlib.sha256).hexdigest())


def test_posting_a_draft_invoice_sends_invoice_posted_ids_only(z: Zuora) -> None:
    aid = z.account()["accountId"]
    number = z.subscribe(aid)["subscriptionNumber"]
    seeded = httpx.post(
        z.url + "/_sandbox/seed",
        json={
            "invoices": [
                {"account": aid, "subscription": number, "amount": 9_900, "status": "Draft"}
            ]
        },
    ).json()["invoices"][0]
    assert z.raw("GET", f"/v1/invoices/{seeded}").json()["status"] == "Draft"
    posted = z.raw("PUT", f"/v1/invoices/{seeded}/post").json()
    assert posted["status"] == "Posted" and problems("InvoiceResponse", posted) == []
    again = z.raw("PUT", f"/v1/invoices/{seeded}/post").json()
    assert again["success"] is False and again["reasons"][0]["code"] % 100 == 30
    [hook] = z.wait_callouts(1)
    assert json.loads(hook["body"]) == {
        "eventCategory": "InvoicePosted",
        "eventTimestamp": json.loads(hook["body"])["eventTimestamp"],
        "invoiceId": seeded,
        "accountId": aid,
    }
    cancelled = z.raw("PUT", f"/v1/invoices/{seeded}/cancel").json()
    assert cancelled["success"] is False  # a posted invoice is not cancelled, it is reversed
