"""Echoes (issue 13, harm 3), at the webhook: our own writes come back as events and are dropped
with a 200 and a reason — recognised by what each vendor truly reports — but a business event the
customer's side caused is routed, even on an object RevBridge created.

- Salesforce: the case-created callout for the case RevBridge opened (the sandbox, like a real
  record-triggered Flow, fires it) carries our ``RevBridge_Key__c``; a record last changed by our
  integration user is ours. A case a person opened is routed.
- Chargebee: ``source: "api"`` with ``user`` = our API user is ours; the failed first charge of a
  subscription quote-to-cash created (also ``source: "api"``) still starts dunning.
- Stripe: ``request.idempotency_key`` with our ``rb-`` prefix marks what our request caused; the
  failed first invoice of a subscription quote-to-cash created carries it and must start dunning.
- HubSpot: ``changeSource`` API + ``sourceId`` = our app is ours; a person closing a deal our app
  created is routed.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from connectors.chargebee import ChargebeeBilling
from connectors.salesforce import SalesforceCrm
from domain.ids import idempotency_key
from domain.models import CaseDraft, CasePriority
from domain.records import CustomerDraft
from domain.settings import SalesforceSettings, Settings
from sandbox.framework import App, ServerThread, WebhookTarget
from sandbox.salesforce import SalesforceEmulator
from sandbox.salesforce.app import event_payload
from sandbox.salesforce.store import Event
from tests.pairs import HS_APP_ID, SF_ID, SF_SECRET, SF_WEBHOOK_SECRET
from tests.webhooks.door import deployment, door
from tests.webhooks.helpers import payment_failed
from webhooks import salesforce
from webhooks.app import TemporalConnection, create_app

CB_API_USER = "revbridge-integration"  # the Chargebee sandbox's default api_user


async def exists(client: Client, workflow_id: str) -> bool:
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


# --- Salesforce: the real emulator's callouts into a real webhook service ------------------------


@pytest.fixture(scope="module")
def salesforce_org(
    temporal_env: Any, settings: Settings
) -> Iterator[tuple[SalesforceEmulator, SalesforceCrm, str, str]]:
    """A Salesforce org whose record-triggered Flow calls this module's webhook service."""
    import os

    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    em = SalesforceEmulator(client_id=SF_ID, client_secret=SF_SECRET)
    queue = f"echo-sf-{uuid.uuid4().hex[:8]}"
    with ServerThread({em: 0}) as org:
        hooks = create_app(
            deployment(
                settings, "salesforce", queue, salesforce_integration_user_id=em.integration_user_id
            ),
            client=TemporalConnection(),
        )
        with ServerThread({App("webhooks", hooks): 0}) as service:
            url = service.urls["webhooks"]
            em.webhook_targets.append(
                WebhookTarget(
                    url=url + "/webhooks/salesforce", headers={salesforce.HEADER: SF_WEBHOOK_SECRET}
                )
            )
            crm = SalesforceCrm(
                SalesforceSettings(
                    token_url=org.urls["salesforce"] + "/services/oauth2/token",
                    client_id=SF_ID,
                    client_secret=SecretStr(SF_SECRET),
                )
            )
            yield em, crm, url, queue


async def answered(em: SalesforceEmulator, before: int, within_s: float = 10) -> int:
    """The status our webhook service answered the first callout sent after ``before``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        new = em.deliveries[before:]
        if new and new[0].status is not None:
            return new[0].status
        await asyncio.sleep(0.05)
    raise AssertionError("the org's callout was not answered")


async def test_the_case_revbridge_opened_comes_back_as_an_echo_and_starts_nothing(
    salesforce_org: tuple[SalesforceEmulator, SalesforceCrm, str, str], client: Client
) -> None:
    """Before: the callout for our own dunning case started a support-context run on it."""
    em, crm, url, _ = salesforce_org
    key = idempotency_key(f"dunning:chargebee:INV-{uuid.uuid4().hex[:8]}", "case")
    draft = CaseDraft(
        key=key,
        account_id=None,
        subject="Payment failed on invoice INV-1",
        description="Opened by RevBridge dunning",
        priority=CasePriority.MEDIUM,
        invoice_id="INV-1",
    )
    before = len(em.deliveries)
    case = await asyncio.to_thread(crm.upsert_case, draft)
    assert case.created
    assert await answered(em, before) == 200
    record = em.get_record(case.id)
    assert record is not None and record["RevBridge_Key__c"] == key
    metrics = httpx.get(url + "/metrics.json").json()
    assert metrics.get("salesforce.echo", 0) >= 1, metrics
    assert not await exists(client, f"case:salesforce:{case.id}")


async def test_a_case_a_person_opened_on_our_account_is_routed(
    salesforce_org: tuple[SalesforceEmulator, SalesforceCrm, str, str], client: Client
) -> None:
    """The same org, the same callout shape, but Casey (a CSM) created the case: routed."""
    em, _, url, _ = salesforce_org
    casey = next(
        r["Id"] for r in em.store.tables["User"].values() if r["Username"].startswith("casey")
    )
    case_id = f"500{uuid.uuid4().hex[:12]}"
    record = {
        "Id": case_id,
        "Subject": "Why was I charged twice?",
        "RevBridge_Key__c": None,
        "CreatedById": casey,
        "LastModifiedById": casey,
    }
    body = event_payload(
        Event("case_created", "Case", case_id), record, em.org_id, str(uuid.uuid4()),
        datetime.now(UTC),
    )  # fmt: skip
    resp = httpx.post(
        url + "/webhooks/salesforce",
        json=body,
        headers={salesforce.HEADER: SF_WEBHOOK_SECRET},
    )
    assert (resp.status_code, resp.json()["status"]) == (202, "accepted")
    assert await exists(client, f"case:salesforce:{case_id}")
    await client.get_workflow_handle(f"case:salesforce:{case_id}").terminate("test over")


def test_an_opportunity_we_created_and_a_rep_won_is_routed_but_our_own_change_is_not() -> None:
    """Decided by the last change, not by who created the record."""
    ours, rep = "005000000000001AAA", "005000000000002AAA"
    won = {"CreatedById": ours, "LastModifiedById": rep}
    assert salesforce.is_echo("opportunity_closed_won", won, ours) is None
    assert salesforce.is_echo("opportunity_closed_won", {**won, "LastModifiedById": ours}, ours)
    assert salesforce.is_echo("case_created", {"RevBridge_Key__c": "rb-1"}, None)
    assert salesforce.is_echo("case_created", {"CreatedById": rep}, ours) is None


# --- Chargebee ------------------------------------------------------------------------------------


async def test_chargebee_our_api_write_is_an_echo_the_failed_first_charge_is_not(
    settings: Settings, client: Client, sandbox_urls: dict[str, str], uid: str
) -> None:
    """The sandbox, like Chargebee, names who caused each event (``source``, ``user``)."""
    billing = ChargebeeBilling(settings.chargebee)  # type: ignore[arg-type]
    customer = await asyncio.to_thread(
        billing.create_customer,
        CustomerDraft(
            key=idempotency_key(f"q2c:salesforce:006{uid}", "customer"),
            company=f"Echo {uid}",
            crm="salesforce",
            crm_account_id=f"001{uid}",
        ),
    )
    events = httpx.get(sandbox_urls["chargebee"] + "/_sandbox/chargebee/events").json()["events"]
    [created] = [
        e
        for e in events
        if e["event_type"] == "customer_created" and e["content"]["customer"]["id"] == customer.id
    ]
    assert (created["source"], created["user"]) == ("api", CB_API_USER)

    d = door(settings, "chargebee", client, f"echo-cb-{uid}", chargebee_api_user=CB_API_USER)
    async with d.http:
        echo = await d.post(json.dumps(created).encode())
        assert (echo.status_code, echo.json()["status"]) == (200, "echo")

        # the first charge of the subscription quote-to-cash created fails: caused by our API
        # call, decided by the customer's card — dunning must start
        first_charge = json.loads(payment_failed(f"INV-{uid}", customer_id=customer.id))
        first_charge.update(source="api", user=CB_API_USER)
        routed = await d.post(json.dumps(first_charge).encode())
        assert (routed.status_code, routed.json()["status"]) == (202, "accepted")
    assert await exists(client, f"dunning:chargebee:INV-{uid}")


# --- Stripe ---------------------------------------------------------------------------------------


def stripe_event(etype: str, obj: dict[str, Any], key: str | None) -> bytes:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:14]}",
            "object": "event",
            "created": int(time.time()),
            "type": etype,
            "request": {"id": f"req_{uuid.uuid4().hex[:14]}", "idempotency_key": key},
            "data": {"object": obj},
        }
    ).encode()


async def test_stripe_the_failed_first_invoice_of_our_subscription_starts_dunning(
    settings: Settings, client: Client, uid: str
) -> None:
    """Before: every event whose request carried our key was dropped — this one included."""
    key = idempotency_key(f"q2c:hubspot:{uid}", "subscription")
    invoice = {
        "id": f"in_{uid}",
        "object": "invoice",
        "customer": f"cus_{uid}",
        "currency": "usd",
        "amount_due": 9900,
        "billing_reason": "subscription_create",
        "parent": {"subscription_details": {"subscription": f"sub_{uid}"}},
    }
    d = door(settings, "stripe", client, f"echo-st-{uid}")
    async with d.http:
        resp = await d.post(stripe_event("invoice.payment_failed", invoice, key))
        assert (resp.status_code, resp.json()["status"]) == (202, "accepted")
        note = await d.post(
            stripe_event("customer.updated", {"id": f"cus_{uid}", "object": "customer"}, key)
        )
        assert (note.status_code, note.json()["status"]) == (200, "echo")
    assert await exists(client, f"dunning:stripe:in_{uid}")


# --- HubSpot --------------------------------------------------------------------------------------


async def test_hubspot_a_person_winning_a_deal_our_app_created_is_routed(
    settings: Settings, client: Client, uid: str
) -> None:
    deal = 700_000_000 + int(uid[:6], 16)
    now_ms = int(time.time() * 1000)
    ours = {
        "eventId": deal,
        "subscriptionType": "ticket.creation",
        "objectId": deal + 1,
        "occurredAt": now_ms,
        "changeSource": "API",
        "sourceId": HS_APP_ID,
    }
    person = {
        "eventId": deal + 2,
        "subscriptionType": "deal.propertyChange",
        "objectId": deal,
        "propertyName": "dealstage",
        "propertyValue": "closedwon",
        "occurredAt": now_ms,
        "changeSource": "CRM_UI",
        "sourceId": "userId:9000001",
    }
    d = door(settings, "hubspot", client, f"echo-hs-{uid}")
    async with d.http:
        resp = await d.post(json.dumps([ours, person]).encode())
    assert resp.status_code == 200
    echo, routed = resp.json()["results"]
    assert echo["status"] == "echo"
    assert routed["status"] == "accepted"
    assert not await exists(client, f"case:hubspot:{deal + 1}")
    assert await exists(client, f"q2c:hubspot:{deal}")
