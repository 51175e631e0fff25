"""The callout matrix: the Zuora emulator delivers callouts over HTTP to the real webhook
service, which starts work on the session's Temporal dev server (no worker: what is asserted is
what the door starts, and how often).

challenge/response · preemptive · wrong password · HMAC valid / tampered / rotated · a retried
callout with a new Zuora-Request-Id starting nothing twice · Payment Declined and Payment
Processed out of order · echoes of our own orders · exactly 200.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from domain.settings import Settings, WebhookSettings, ZuoraSettings
from sandbox.framework import App, ServerThread, WebhookTarget
from sandbox.zuora import ZuoraEmulator
from sandbox.zuora.scenarios import catalog

HOOK_USER, HOOK_PASSWORD = "zuora-callouts", "callout-password"
OLD_KEY, NEW_KEY = "hmac-old-key", "hmac-new-key"
QUEUE = "revbridge-zuora-callouts"


@pytest.fixture(scope="module")
def stack(temporal_env: WorkflowEnvironment) -> Iterator[dict[str, Any]]:
    from webhooks.app import TemporalConnection, create_app

    em = ZuoraEmulator()
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    with ServerThread({em: 0}) as zthread:
        settings = Settings(
            billing="zuora",
            crm="salesforce",
            task_queue=QUEUE,
            zuora=ZuoraSettings(
                client_id="test_zuora_client",
                client_secret=SecretStr("test_zuora_secret"),
                api_url=zthread.urls["zuora"],
            ),
            webhooks=WebhookSettings(
                zuora_username=HOOK_USER,
                zuora_password=SecretStr(HOOK_PASSWORD),
                # a rotation in progress: the new key first, the old one still accepted
                zuora_hmac_keys=[SecretStr(NEW_KEY), SecretStr(OLD_KEY)],
            ),
        )
        app = create_app(settings, client=TemporalConnection())
        with ServerThread({App("webhooks", app): 0}) as wthread:
            yield {
                "em": em,
                "zuora": zthread.urls["zuora"],
                "webhooks": wthread.urls["webhooks"],
                "app": app,
            }


@pytest.fixture
def z(stack: dict[str, Any]) -> Iterator[dict[str, Any]]:
    url = stack["zuora"]
    httpx.post(url + "/_sandbox/reset").raise_for_status()
    httpx.post(url + "/_sandbox/seed", json={"products": catalog()}).raise_for_status()
    em: ZuoraEmulator = stack["em"]
    em.webhook_targets[:] = [
        WebhookTarget(
            url=stack["webhooks"] + "/webhooks/zuora", basic_auth=(HOOK_USER, HOOK_PASSWORD)
        )
    ]
    httpx.post(
        url + "/_sandbox/zuora/callouts/settings", json={"auth": "challenge", "hmac_key": NEW_KEY}
    ).raise_for_status()
    yield stack


def _customer(url: str) -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    seed = {
        "accounts": [{"id": f"acct-{tag}", "name": f"Callout {tag}"}],
        "subscriptions": [
            {
                "subscriptionNumber": f"S-{tag}",
                "account": f"acct-{tag}",
                "plans": [{"plan": "PRP-TEAM-MONTHLY", "quantity": 3}],
            }
        ],
        "invoices": [
            {
                "id": f"inv-{tag}",
                "account": f"acct-{tag}",
                "subscription": f"S-{tag}",
                "amount": 14_700,
            }
        ],
    }
    httpx.post(url + "/_sandbox/seed", json=seed).raise_for_status()
    return f"acct-{tag}", f"inv-{tag}"


def _decline(url: str, invoice: str) -> dict[str, Any]:
    resp = httpx.post(
        f"{url}/_sandbox/zuora/invoices/{invoice}/decline", json={"decline_code": "card_declined"}
    )
    resp.raise_for_status()
    httpx.post(url + "/_sandbox/zuora/callouts/release", json={}).raise_for_status()  # waits
    return resp.json()


def _deliveries(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/webhooks/deliveries").json()["deliveries"]


def _counts(stack: dict[str, Any]) -> dict[str, int]:
    return httpx.get(stack["webhooks"] + "/metrics.json").json()


async def _runs(client: Client, workflow_id: str) -> list[Any]:
    return [w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")]


async def _signals(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    out = []
    for ev in history.events:
        attrs = ev.workflow_execution_signaled_event_attributes
        if ev.HasField("workflow_execution_signaled_event_attributes"):
            # payloads are encrypted in history (infra/codec.py): read through the client's codec
            [payload] = await client.data_converter.decode([attrs.input.payloads[0]])
            out.append({"name": attrs.signal_name, "payload": payload})
    return out


async def _started(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
        return True
    except RPCError:
        return False


def _basic(user: str = HOOK_USER, password: str = HOOK_PASSWORD) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _signed(body: bytes, key: str = NEW_KEY) -> str:
    return hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


async def test_challenge_response_then_exactly_200_and_one_dunning_run(
    z: dict[str, Any], client: Client
) -> None:
    url = z["zuora"]
    before = _counts(z)
    acct, inv = _customer(url)
    _decline(url, inv)
    deliveries = _deliveries(url)
    assert deliveries[-1]["delivered"] is True and deliveries[-1]["status"] == 200
    assert deliveries[-1]["attempts"] == 1  # the 401 challenge is part of the attempt
    after = _counts(z)
    assert after.get("zuora.challenge", 0) == before.get("zuora.challenge", 0) + 1
    assert await _started(client, f"dunning:zuora:{inv}")
    # one Temporal call per webhook: the dunning run hands the failure to churn itself
    assert not await _started(client, f"churn:zuora:{acct}")


async def test_preemptive_basic_needs_no_challenge(z: dict[str, Any], client: Client) -> None:
    url = z["zuora"]
    httpx.post(
        url + "/_sandbox/zuora/callouts/settings", json={"auth": "preemptive"}
    ).raise_for_status()
    before = _counts(z).get("zuora.challenge", 0)
    _, inv = _customer(url)
    _decline(url, inv)
    assert _deliveries(url)[-1]["delivered"] is True
    assert _counts(z).get("zuora.challenge", 0) == before
    assert await _started(client, f"dunning:zuora:{inv}")


async def test_wrong_password_is_401_every_attempt_and_starts_nothing(
    z: dict[str, Any], client: Client
) -> None:
    url = z["zuora"]
    z["em"].webhook_targets[:] = [
        WebhookTarget(url=z["webhooks"] + "/webhooks/zuora", basic_auth=(HOOK_USER, "wrong"))
    ]
    _, inv = _customer(url)
    _decline(url, inv)
    delivery = _deliveries(url)[-1]
    assert delivery["delivered"] is False and delivery["status"] == 401
    assert delivery["attempts"] == 3  # Zuora's default: 3 attempts, then the callout history
    assert not await _started(client, f"dunning:zuora:{inv}")
    direct = httpx.post(
        z["webhooks"] + "/webhooks/zuora",
        content=b"{}",
        headers={"Authorization": _basic(password="wrong")},
    )
    assert direct.status_code == 401 and direct.headers["www-authenticate"].startswith(
        "Basic realm="
    )


async def test_hmac_rotated_key_accepted_tampered_and_unknown_refused(
    z: dict[str, Any], client: Client
) -> None:
    url = z["zuora"]
    # the tenant still signs with the old key: accepted during the rotation
    httpx.post(
        url + "/_sandbox/zuora/callouts/settings", json={"hmac_key": OLD_KEY}
    ).raise_for_status()
    _, inv = _customer(url)
    _decline(url, inv)
    assert _deliveries(url)[-1]["delivered"] is True
    assert await _started(client, f"dunning:zuora:{inv}")
    # a key we do not hold
    httpx.post(
        url + "/_sandbox/zuora/callouts/settings", json={"hmac_key": "someone-elses"}
    ).raise_for_status()
    _, inv2 = _customer(url)
    _decline(url, inv2)
    assert _deliveries(url)[-1]["status"] == 401
    assert not await _started(client, f"dunning:zuora:{inv2}")
    # a body changed after signing
    _, inv3 = _customer(url)
    body = json.dumps(
        {
            "eventCategory": "PaymentDeclined",
            "paymentId": "p1",
            "accountId": "a1",
            "invoiceId": inv3,
        }
    ).encode()
    tampered = body.replace(b"p1", b"p2")
    resp = httpx.post(
        z["webhooks"] + "/webhooks/zuora",
        content=tampered,
        headers={"Authorization": _basic(), "X-Zuora-Signature": _signed(body)},
    )
    assert resp.status_code == 401 and resp.json() == {"error": "invalid callout signature"}
    missing = httpx.post(
        z["webhooks"] + "/webhooks/zuora", content=body, headers={"Authorization": _basic()}
    )
    assert missing.status_code == 401
    assert not await _started(client, f"dunning:zuora:{inv3}")


async def test_retried_callout_with_a_new_request_id_starts_nothing_twice(
    z: dict[str, Any], client: Client
) -> None:
    url = z["zuora"]
    acct, inv = _customer(url)
    body = json.dumps(
        {
            "eventCategory": "PaymentDeclined",
            "eventTimestamp": "2026-12-07T10:00:00.000+00:00",
            "paymentId": f"pay-{inv}",
            "accountId": acct,
            "invoiceId": inv,
            "gatewayResponseCode": "card_declined",
        }
    ).encode()
    answers = []
    for _ in range(3):  # Zuora retries (its answer was lost): same body, new Zuora-Request-Id
        answers.append(
            httpx.post(
                z["webhooks"] + "/webhooks/zuora",
                content=body,
                headers={
                    "Authorization": _basic(),
                    "X-Zuora-Signature": _signed(body),
                    "Zuora-Request-Id": str(uuid.uuid4()),
                    "Content-Type": "application/json",
                },
            )
        )
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len(await _runs(client, f"dunning:zuora:{inv}")) == 1
    signals = await _signals(client, f"dunning:zuora:{inv}")
    assert {s["payload"]["event_id"] for s in signals} == {f"PaymentDeclined:pay-{inv}"}
    assert await _runs(client, f"churn:zuora:{acct}") == []  # dunning's to start, not the door's


async def test_declined_and_processed_out_of_order(z: dict[str, Any], client: Client) -> None:
    url = z["zuora"]
    em: ZuoraEmulator = z["em"]
    acct, inv = _customer(url)
    httpx.post(url + "/_sandbox/zuora/callouts/hold").raise_for_status()
    httpx.post(
        f"{url}/_sandbox/zuora/invoices/{inv}/decline", json={"decline_code": "card_declined"}
    ).raise_for_status()
    em.set_card_decline(acct, None)
    token = httpx.post(
        url + "/oauth/token",
        data={
            "client_id": "test_zuora_client",
            "client_secret": "test_zuora_secret",
            "grant_type": "client_credentials",
        },
    ).json()["access_token"]
    paid = httpx.post(
        url + "/v1/operations/invoice-collect",
        json={"accountKey": acct, "invoiceId": inv},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert paid.json()["success"] is True
    before = _counts(z)
    released = httpx.post(
        url + "/_sandbox/zuora/callouts/release", json={"order": "reverse"}
    ).json()["deliveries"]
    assert [d["status"] for d in released] == [200, 200]  # Processed first, then Declined
    after = _counts(z)
    # Payment Processed before any run: acknowledged, nothing to signal
    assert after.get("zuora.ignored", 0) == before.get("zuora.ignored", 0) + 1
    # Payment Declined after it: the run starts and re-fetches the invoice, which is paid
    assert await _started(client, f"dunning:zuora:{inv}")


async def test_own_order_echo_dropped_downgrade_rescored_others_acknowledged(
    z: dict[str, Any], client: Client
) -> None:
    hook = z["webhooks"] + "/webhooks/zuora"

    def post(body: dict[str, Any]) -> httpx.Response:
        raw = json.dumps(body).encode()
        return httpx.post(
            hook,
            content=raw,
            headers={"Authorization": _basic(), "X-Zuora-Signature": _signed(raw)},
        )

    acct = f"acct-{uuid.uuid4().hex[:10]}"
    echo = post(
        {
            "eventCategory": "OrderProcessed",
            "orderNumber": "RB-O-1",
            "accountId": acct,
            "orderActionTypes": "RemoveProduct",
            "revbridgeKey": "rb-key",
        }
    )
    assert echo.status_code == 200 and echo.json()["status"] == "echo"
    assert not await _started(client, f"churn:zuora:{acct}")
    down = post(
        {
            "eventCategory": "OrderProcessed",
            "orderNumber": "O-9",
            "accountId": acct,
            "orderActionTypes": "UpdateProduct",
            "revbridgeKey": "",
        }
    )
    assert down.status_code == 200 and down.json()["status"] == "accepted"
    signals = await _signals(client, f"churn:zuora:{acct}")
    assert [s["payload"]["kind"] for s in signals] == ["downgrade"]
    for body in (
        {
            "eventCategory": "OrderProcessed",
            "orderNumber": "O-10",
            "accountId": acct,
            "orderActionTypes": "CreateSubscription",
        },
        {"eventCategory": "InvoicePosted", "invoiceId": "inv-x", "accountId": acct},
        {"eventCategory": "UsageRecorded", "usageId": "u-1", "accountId": acct},
    ):
        resp = post(body)
        assert resp.status_code == 200 and resp.json()["status"] == "ignored"
    bad = post(
        {
            "eventCategory": "PaymentDeclined",
            "paymentId": "p 1; drop",
            "accountId": acct,
            "invoiceId": "i",
        }
    )
    assert bad.status_code == 422
