"""DunningWorkflow against a real dev server, the sandboxes and the real webhook service.

Payment failures are made the way production sees them: the Chargebee client collects a payment
from a declining card, the Chargebee sandbox emits its webhook with Basic auth, the webhook service
signals-with-start the workflow, the worker talks to both sandboxes through the official clients.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from chargebee.api_error import PaymentError
from simple_salesforce import format_soql
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle

from connectors.chargebee import ChargebeeBilling
from connectors.salesforce import SalesforceCrm
from domain import temporal as names
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult, DunningStatus
from domain.models import NoteTarget, PaymentFailed
from domain.settings import Settings
from sandbox.scenarios import DEMO_CUSTOMERS, DunningCustomer, chargebee_seed, salesforce_seed
from tests.conftest import WEBHOOK_PASSWORD, WEBHOOK_USER

HISTORIES = Path(__file__).parent.parent / "histories"


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """`make histories` commits this run's history for the replay gate (tests/replay)."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"DunningWorkflow__{name}.json").write_text(history.to_json())


pytestmark = pytest.mark.usefixtures("worker")

NORTHWIND, GLOBEX, INITECH = DEMO_CUSTOMERS


@pytest.fixture(scope="module")
def billing(settings: Settings) -> ChargebeeBilling:
    assert settings.chargebee
    return ChargebeeBilling(settings.chargebee, timeout_s=5)


@pytest.fixture(scope="module")
def crm(settings: Settings) -> SalesforceCrm:
    assert settings.salesforce
    return SalesforceCrm(settings.salesforce, timeout_s=5)


@pytest.fixture(scope="module", autouse=True)
def route_chargebee_webhooks(sandbox_urls: dict[str, str], webhook_url: str) -> None:
    cb = sandbox_urls["chargebee"]
    httpx.delete(cb + "/_sandbox/webhooks")
    httpx.post(
        cb + "/_sandbox/webhooks",
        json={
            "url": webhook_url + "/webhooks/chargebee",
            "basic_auth": [WEBHOOK_USER, WEBHOOK_PASSWORD],
        },
    ).raise_for_status()


def seed(sandbox_urls: dict[str, str], customer: DunningCustomer, suffix: str) -> dict[str, str]:
    httpx.post(
        sandbox_urls["chargebee"] + "/_sandbox/seed", json=chargebee_seed((customer,), suffix)
    ).raise_for_status()
    httpx.post(
        sandbox_urls["salesforce"] + "/_sandbox/seed", json=salesforce_seed((customer,), suffix)
    ).raise_for_status()
    return customer.ids(suffix)


def fail_payment(billing: ChargebeeBilling, invoice_id: str) -> None:
    with pytest.raises(PaymentError):
        billing.client.Invoice.collect_payment(invoice_id)


async def wait_for_stage(
    handle: WorkflowHandle, stage: str, within_s: float = 20.0
) -> DunningStatus:
    deadline = time.monotonic() + within_s
    while True:
        try:
            status = await handle.query("status", result_type=DunningStatus)
            if status.stage == stage:
                return status
        except Exception:  # noqa: S110 - not started yet / first task not processed
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"workflow did not reach {stage!r}")
        await asyncio.sleep(0.1)


def cases_for(crm: SalesforceCrm, invoice_id: str) -> list[dict]:
    return crm.query(
        format_soql(
            "SELECT Id, CaseNumber, Subject, Priority, Description, AccountId, RevBridge_Key__c "
            "FROM Case WHERE Billing_Invoice_Id__c = {}",
            invoice_id,
        )
    )


def logs_for(crm: SalesforceCrm, workflow_id: str) -> list[dict]:
    return crm.audit_log(workflow_id)


async def test_failed_payment_becomes_case_with_audit_in_both_systems_then_recovers(
    client: Client,
    sandbox_urls: dict[str, str],
    billing: ChargebeeBilling,
    crm: SalesforceCrm,
    uid: str,
) -> None:
    ids = seed(sandbox_urls, GLOBEX, uid)
    fail_payment(billing, ids["invoice"])

    wf_id = f"dunning:chargebee:{ids['invoice']}"
    handle = client.get_workflow_handle(wf_id, result_type=DunningResult)
    status = await wait_for_stage(handle, "waiting for payment")
    assert status.failure_class == "insufficient_funds"
    assert status.priority == "High"  # enterprise + large amount

    [case] = cases_for(crm, ids["invoice"])
    assert case["Id"] == status.case_id
    assert "insufficient_funds" in case["Subject"]
    assert case["Priority"] == "High"
    account = crm.find_account("chargebee", ids["customer"])
    assert account and case["AccountId"] == account.id
    assert wf_id in case["Description"]

    [log] = logs_for(crm, wf_id)
    assert (log["Action__c"], log["Case__c"], log["Account__c"]) == (
        "create_case",
        case["Id"],
        account.id,
    )
    notes = billing.list_notes(NoteTarget.INVOICE, ids["invoice"])
    assert len(notes) == 1 and "create_case" in notes[0] and wf_id in notes[0]

    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.AMOUNT_AT_RISK) == pytest.approx(
        GLOBEX.invoice_total / 100
    )

    # The customer pays: Chargebee emits payment_succeeded, the workflow closes as recovered.
    billing.client.Invoice.record_payment(
        ids["invoice"],
        {
            "transaction": {
                "amount": GLOBEX.invoice_total,
                "payment_method": "bank_transfer",
                "date": int(time.time()),
            }
        },
    )
    result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result.outcome == "recovered"
    assert [row["Action__c"] for row in logs_for(crm, wf_id)] == ["create_case", "close_dunning"]
    assert len(billing.list_notes(NoteTarget.INVOICE, ids["invoice"])) == 2
    assert (await handle.describe()).typed_search_attributes.get(names.AMOUNT_AT_RISK) == 0.0
    await keep_history(handle, "recovered")


async def test_same_webhook_five_times_concurrently_gives_one_workflow_and_one_case(
    client: Client,
    sandbox_urls: dict[str, str],
    billing: ChargebeeBilling,
    crm: SalesforceCrm,
    webhook_url: str,
    uid: str,
) -> None:
    ids = seed(sandbox_urls, NORTHWIND, uid)
    # capture the real webhook body the sandbox sends, then deliver it five times at once
    fail_payment(billing, ids["invoice"])
    handle = client.get_workflow_handle(f"dunning:chargebee:{ids['invoice']}")
    await wait_for_stage(handle, "waiting for payment")
    events = billing.client.Event.list({"event_type": {"is": "payment_failed"}, "limit": 100}).list
    event = next(e.event for e in events if ids["invoice"] in str(e.event.raw_data))
    body = httpx.Response(200, json=event.raw_data).content
    run_before = (await handle.describe()).run_id

    async with httpx.AsyncClient(auth=(WEBHOOK_USER, WEBHOOK_PASSWORD)) as http:
        responses = await asyncio.gather(
            *(http.post(webhook_url + "/webhooks/chargebee", content=body) for _ in range(5))
        )
    assert {r.status_code for r in responses} == {202}
    await asyncio.sleep(0.5)
    status = await handle.query("status", result_type=DunningStatus)
    assert status.failures_seen == 1  # six deliveries of one event
    assert len(cases_for(crm, ids["invoice"])) == 1
    assert len(logs_for(crm, handle.id)) == 1
    assert (await handle.describe()).run_id == run_before


async def test_case_upsert_retried_after_commit_then_timeout_opens_one_case(
    client: Client,
    sandbox_urls: dict[str, str],
    billing: ChargebeeBilling,
    crm: SalesforceCrm,
    uid: str,
) -> None:
    ids = seed(sandbox_urls, INITECH, uid)
    sf = sandbox_urls["salesforce"]
    httpx.post(
        sf + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "PATCH",
            "path": r"/services/data/v[0-9.]+/sobjects/Case/RevBridge_Key__c/.+",
            "delay_s": 4,  # the connector gives up after 2 s
            "times": 1,
        },
    ).raise_for_status()

    fail_payment(billing, ids["invoice"])
    handle = client.get_workflow_handle(f"dunning:chargebee:{ids['invoice']}")
    await wait_for_stage(handle, "waiting for payment", within_s=30)

    assert len(cases_for(crm, ids["invoice"])) == 1
    upserts = [
        r
        for r in httpx.get(sf + "/_sandbox/requests", params={"method": "PATCH"}).json()["requests"]
        if re.search(r"/sobjects/Case/RevBridge_Key__c/", r["path"]) and ids["invoice"] in r["body"]
    ]
    assert len(upserts) == 2  # the committed-then-timed-out attempt and the retry
    assert upserts[0]["path"] == upserts[1]["path"]  # same idempotency key on both attempts
    assert upserts[0].get("fault") == "commit_then_timeout"

    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert 2 in attempts


async def test_no_payment_within_the_wait_closes_unresolved(
    client: Client,
    sandbox_urls: dict[str, str],
    billing: ChargebeeBilling,
    crm: SalesforceCrm,
    uid: str,
) -> None:
    ids = seed(sandbox_urls, NORTHWIND, uid)
    wf_id = f"dunning:chargebee:{ids['invoice']}"
    event = PaymentFailed(
        billing="chargebee",
        event_id=f"ev_{uid}",
        invoice_id=ids["invoice"],
        customer_id=ids["customer"],
        amount_due=NORTHWIND.invoice_total,
        occurred_at=datetime.now(UTC),
    )
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        DunningInput(
            billing="chargebee", invoice_id=ids["invoice"], payment_wait=timedelta(seconds=2)
        ),
        id=wf_id,
        task_queue=names.TASK_QUEUE,
        start_signal=names.SIGNAL_PAYMENT_FAILED,
        start_signal_args=[event],
        result_type=DunningResult,
    )
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "unresolved"
    assert [r["Outcome__c"] for r in logs_for(crm, wf_id)] == ["case opened", "unresolved"]
    await keep_history(handle, "unresolved")


async def test_failure_event_for_an_already_paid_invoice_opens_nothing(
    client: Client,
    sandbox_urls: dict[str, str],
    billing: ChargebeeBilling,
    crm: SalesforceCrm,
    uid: str,
) -> None:
    ids = seed(sandbox_urls, INITECH, uid)
    billing.client.Invoice.record_payment(
        ids["invoice"],
        {
            "transaction": {
                "amount": INITECH.invoice_total,
                "payment_method": "check",
                "date": int(time.time()),
            }
        },
    )
    event = PaymentFailed(
        billing="chargebee",
        event_id=f"ev_{uid}",
        invoice_id=ids["invoice"],
        customer_id=ids["customer"],
        occurred_at=time.time(),  # type: ignore[arg-type]
    )
    handle = await client.start_workflow(
        WORKFLOW_TYPE,
        DunningInput(billing="chargebee", invoice_id=ids["invoice"]),
        id=f"dunning:chargebee:{ids['invoice']}",
        task_queue=names.TASK_QUEUE,
        start_signal=names.SIGNAL_PAYMENT_FAILED,
        start_signal_args=[event],
        result_type=DunningResult,
    )
    result = await asyncio.wait_for(handle.result(), timeout=20)
    assert result.outcome == "already_paid"
    assert cases_for(crm, ids["invoice"]) == []
    await keep_history(handle, "already_paid")
