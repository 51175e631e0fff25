"""The account sync end to end on Chargebee × Salesforce: the emulators through the official
clients, the webhook service with REVBRIDGE_ACCOUNT_SYNC on, a worker, the dev server.

A plan change in billing reaches the CRM account; a rep's edit of a billing-owned field is
restored and audited on both sides; our own writes echo back through both sides' webhooks and
change nothing (0 extra writes in either ledger); a billing write retried after a committed but
timed-out call is one change in billing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from domain import golden
from domain.golden import SyncStatus
from domain.models import NoteTarget
from sandbox.scenarios import DunningCustomer
from tests.pairs import Pair, eventually
from tests.sync.deployment import salesforce_flow, sync_deployment
from tests.sync.settle import settled
from tests.sync.shuffle import (
    Capture,
    billing_captured,
    capture_server,
    deliver_shuffled,
    late_repeat_changes_nothing,
    shuffled,
)

BILLING, CRM = "chargebee", "salesforce"
QUEUE = "revbridge-sync-chargebee-salesforce"


@pytest.fixture(scope="module")
async def deployment(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    """A Chargebee × Salesforce deployment with the account sync switched on."""
    async with sync_deployment(temporal_env, sandbox_urls, BILLING, CRM, QUEUE) as pair:
        yield pair


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    """A receiver that keeps billing's webhooks, for their shuffled delivery (shuffle.py)."""
    with capture_server() as cap:
        yield cap


@pytest.fixture
def sync(deployment: Pair) -> Iterator[Pair]:
    """Both sandboxes' webhooks to this deployment, the account-change Flow active."""
    with salesforce_flow(deployment):
        yield deployment


def seeded(pair: Pair, uid: str) -> dict[str, str]:
    customer = DunningCustomer(
        "sync", "Sync Analytics", "Mid-Market", "team-monthly", 4_900, 5, 400, None
    )
    ids = pair.seed(customer, uid)
    ids["account"] = pair.account_id(ids["customer"]) or ""
    return ids


async def status(handle: WorkflowHandle[Any, Any]) -> SyncStatus:
    return await handle.query("status", result_type=SyncStatus)


def ledger(pair: Pair, side: str) -> list[dict[str, Any]]:
    return httpx.get(pair.urls[side] + "/_sandbox/requests").json()["requests"]


def account_writes(pair: Pair, account_id: str) -> list[dict[str, Any]]:
    return [
        r
        for r in ledger(pair, CRM)
        if r["method"] == "PATCH" and (account_id in r["path"] or account_id in str(r.get("body")))
    ]


def customer_writes(pair: Pair, customer_id: str) -> list[dict[str, Any]]:
    path = f"/api/v2/customers/{customer_id}"
    return [r for r in ledger(pair, BILLING) if r["method"] == "POST" and r["path"] == path]


async def test_plan_change_restore_and_no_ping_pong(
    sync: Pair, uid: str, temporal_env: WorkflowEnvironment, capture: Capture
) -> None:
    pair, client = sync, temporal_env.client
    cb, sf = pair.billing.client, pair.crm.client
    with billing_captured(pair, capture):
        ids = seeded(sync, uid)
        # a plan change in billing (more seats): the subscription_changed webhook starts the sync
        sub = cb.Subscription.retrieve(ids["subscription"]).subscription
        item = next(i for i in sub.subscription_items if i.item_type == "plan")
        for seats in (7, 9):  # two plan changes: a burst of two subscription_changed events
            cb.Subscription.update_for_items(
                ids["subscription"],
                {"subscription_items": [{"item_price_id": item.item_price_id, "quantity": seats}]},
            )
    wf_id = golden.account_workflow_id(BILLING, ids["customer"])
    # the seeding's and the plan change's events reach the deployment shuffled
    pair.route_billing_webhooks_here()
    burst = shuffled(list(capture.events))
    assert len(burst.events) >= 2, f"a burst of billing events, not {len(burst.events)}"
    await deliver_shuffled(pair, burst)
    mrr = cb.Subscription.retrieve(ids["subscription"]).subscription.mrr
    account = await eventually(
        lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
        lambda a: a.get("MRR__c") == mrr / 100 and a.get("Billing_Plan__c") == item.item_price_id,
        f"the new MRR and plan on the CRM account ({burst.why})",
    )
    # the scenario's invoice is due: payment health comes from the subscription re-read
    assert account["Billing_Status__c"] == "active" and account["Payment_Health__c"] == "failing"
    handle = client.get_workflow_handle(wf_id)
    # the earliest event again, late: nothing written on either side
    await late_repeat_changes_nothing(pair, ids, handle, burst)

    # a rep types another MRR into the account: billing owns it, so it is put back
    sf.Account.update(ids["account"], {"MRR__c": 1.0})
    await eventually(
        lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
        lambda a: a.get("MRR__c") == mrr / 100,
        "the MRR restored",
    )
    s = await settled(pair, handle)
    assert s.restored == 1
    audit = pair.crm.audit_log(wf_id)
    assert [a["action"] for a in audit].count("restore_field") == 1
    notes = pair.billing.list_notes(NoteTarget.CUSTOMER, ids["customer"])
    assert any("restore_field" in n or "Restored mrr" in n for n in notes)

    # every write came back through a webhook (Chargebee customer_changed for the notes,
    # Salesforce account_changed for the field sets): nothing more was written
    crm_before = len(account_writes(pair, ids["account"]))
    billing_before = len(customer_writes(pair, ids["customer"]))
    await settled(pair, handle)
    assert len(account_writes(pair, ids["account"])) == crm_before
    assert len(customer_writes(pair, ids["customer"])) == billing_before
    # the echoes did arrive (the subscription change, the rep's edit, then our own writes
    # coming back through both webhooks) and were recognised as no change
    final = await status(handle)
    assert final.signals >= 4 and final.restored == 1


@pytest.fixture(scope="module")
async def stripe_deployment(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    """Stripe × Salesforce with the account sync switched on."""
    queue = "revbridge-sync-stripe-salesforce"
    async with sync_deployment(temporal_env, sandbox_urls, "stripe", CRM, queue) as pair:
        yield pair


async def test_stripe_plan_change_reaches_salesforce_and_a_crm_edit_is_restored(
    stripe_deployment: Pair, uid: str, temporal_env: WorkflowEnvironment
) -> None:
    pair = stripe_deployment
    with salesforce_flow(pair):
        ids = seeded(pair, uid)
        st = pair.billing.client
        wf_id = golden.account_workflow_id("stripe", ids["customer"])
        (sub,) = [s for s in st.v1.subscriptions.list({"customer": ids["customer"]}).data]
        item = sub["items"]["data"][0]
        st.v1.subscriptions.update(sub["id"], {"items": [{"id": item["id"], "quantity": 9}]})
        want = 9 * int(item["price"]["unit_amount"])
        await eventually(
            lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
            lambda a: a.get("MRR__c") == want / 100,
            "the new MRR on the CRM account",
        )
        handle = temporal_env.client.get_workflow_handle(wf_id)
        await settled(pair, handle)
        pair.crm.client.Account.update(ids["account"], {"MRR__c": 1.0})
        await eventually(
            lambda: asyncio.to_thread(pair.crm_driver.account, ids["account"]),
            lambda a: a.get("MRR__c") == want / 100,
            "the MRR restored",
        )
        s = await settled(pair, handle)
        assert s.restored == 1
        assert [a["action"] for a in pair.crm.audit_log(wf_id)].count("restore_field") == 1


@pytest.fixture(scope="module")
async def hubspot_deployment(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    """Chargebee × HubSpot with the account sync switched on."""
    queue = "revbridge-sync-chargebee-hubspot"
    async with sync_deployment(temporal_env, sandbox_urls, BILLING, "hubspot", queue) as pair:
        yield pair


async def test_hubspot_company_gets_the_plan_change_and_the_golden_fields(
    hubspot_deployment: Pair, uid: str, temporal_env: WorkflowEnvironment, capture: Capture
) -> None:
    from connectors.sync.hubspot import HubSpotSync

    pair = hubspot_deployment
    cb, hs = pair.billing.client, HubSpotSync(pair.crm)
    with billing_captured(pair, capture):
        ids = seeded(pair, uid)
        assert ids["account"]
        sub = cb.Subscription.retrieve(ids["subscription"]).subscription
        item = next(i for i in sub.subscription_items if i.item_type == "plan")
        for seats in (7, 9):  # two plan changes: a burst of two subscription_changed events
            cb.Subscription.update_for_items(
                ids["subscription"],
                {"subscription_items": [{"item_price_id": item.item_price_id, "quantity": seats}]},
            )
    # the seeding's and the plan change's events reach the deployment shuffled
    pair.route_billing_webhooks_here()
    burst = shuffled(list(capture.events))
    assert len(burst.events) >= 2, f"a burst of billing events, not {len(burst.events)}"
    await deliver_shuffled(pair, burst)
    mrr = cb.Subscription.retrieve(ids["subscription"]).subscription.mrr
    view = await eventually(
        lambda: asyncio.to_thread(hs.sync_view, ids["account"]),
        lambda v: v.get("mrr") == mrr and v.get("plan") == item.item_price_id,
        f"the new MRR and plan on the HubSpot company ({burst.why})",
        within_s=60,
    )
    assert view["subscription_status"] == "active" and view["payment_health"] == "failing"
    wf_id = golden.account_workflow_id(BILLING, ids["customer"])
    # the audit entry follows the write (and HubSpot's search index lags its writes)
    await eventually(
        lambda: asyncio.to_thread(pair.crm.audit_log, wf_id),
        lambda audit: any(a["action"] == "sync_to_crm" for a in audit),
        "the sync_to_crm audit entry in HubSpot",
        within_s=60,
    )
    # the earliest event again, late: nothing written on either side
    handle = temporal_env.client.get_workflow_handle(wf_id)
    await late_repeat_changes_nothing(pair, ids, handle, burst)
