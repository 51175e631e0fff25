"""HubSpot company and contact changes reach the account sync (issue 19), end to end on
Chargebee × HubSpot: the sandbox signs its webhooks as HubSpot does (v3), the webhook service
looks the billing customer up (the company's billing link, one batch read per delivery; a
contact's company through one associations batch read), and the customer's sync re-reads and
acts. A rep's edit of a billing-owned property is restored; an edit of the billing contact goes
to Chargebee; our own writes come back as ``changeSource: API`` events of our app and are dropped
at the door."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hubspot.crm.companies import SimplePublicObjectInputForCreate as NewCompany
from hubspot.crm.contacts import SimplePublicObjectInputForCreate as NewContact
from temporalio.testing import WorkflowEnvironment

from domain import golden
from domain.golden import SyncStatus
from domain.models import CrmAccountChanged
from sandbox.scenarios import DunningCustomer
from tests.pairs import Pair, eventually
from tests.sync.deployment import sync_deployment
from tests.sync.settle import settled
from webhooks import hubspot as hooks

BILLING, CRM = "chargebee", "hubspot"
QUEUE = "revbridge-sync-hubspot-crm"


@pytest.fixture(scope="module")
async def deployment(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    async with sync_deployment(temporal_env, sandbox_urls, BILLING, CRM, QUEUE) as pair:
        yield pair


def seeded(pair: Pair, uid: str) -> dict[str, str]:
    customer = DunningCustomer(
        "hsync", "HubSync Labs", "Mid-Market", "team-monthly", 4_900, 5, 400, None
    )
    ids = pair.seed(customer, uid)
    ids["account"] = pair.account_id(ids["customer"]) or ""
    return ids


def ui_update(pair: Pair, company: str, properties: dict[str, str]) -> None:
    """A rep edits the company in HubSpot's UI (its webhook says ``changeSource: CRM_UI``)."""
    url = f"{pair.urls[CRM]}/_sandbox/hubspot/objects/companies/{company}/ui_update"
    httpx.post(url, json={"properties": properties}).raise_for_status()


def company_writes(pair: Pair, company: str) -> list[dict[str, Any]]:
    rows = httpx.get(pair.urls[CRM] + "/_sandbox/requests").json()["requests"]
    return [
        r
        for r in rows
        if r["method"] in ("PATCH", "POST")
        and "/crm/v3/objects/companies" in r["path"]
        and (company in r["path"] or ("batch/update" in r["path"] and company in str(r["body"])))
    ]


def customer_writes(pair: Pair, customer_id: str) -> list[dict[str, Any]]:
    rows = httpx.get(pair.urls[BILLING] + "/_sandbox/requests").json()["requests"]
    path = f"/api/v2/customers/{customer_id}"
    return [r for r in rows if r["method"] == "POST" and r["path"] == path]


async def test_lookup_reads_each_kind_once_per_delivery(deployment: Pair, uid: str) -> None:
    """Several companies and a contact in one delivery: one associations read for the contacts,
    one batch read for the companies; an unlinked company (or another platform's) is None."""
    pair = deployment
    ids = seeded(pair, uid)
    other = seeded(pair, uid[::-1])
    client = pair.crm
    bare = client._call(  # a company nobody linked
        client._companies.create,
        NewCompany(properties={"name": f"Unlinked {uid}"}),
        what="company",
    )
    contact = client._call(
        client._client.crm.contacts.basic_api.create,
        NewContact(
            properties={"email": f"ap-{uid}@hubsync.example"},
            associations=[
                {
                    "to": {"id": ids["account"]},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}],
                }
            ],
        ),
        what="contact",
    )
    at = datetime.now(UTC)
    events = [
        CrmAccountChanged(crm=CRM, event_id="1", account_id=ids["account"], occurred_at=at),
        CrmAccountChanged(crm=CRM, event_id="2", account_id=other["account"], occurred_at=at),
        CrmAccountChanged(crm=CRM, event_id="3", account_id=str(bare.id), occurred_at=at),
        hooks.ContactChanged(event_id="4", contact_id=str(contact.id), occurred_at=at),
    ]
    lookup = hooks.HubSpotLookup(pair.settings.hubspot)  # type: ignore[arg-type]
    signals = await lookup.resolve(events, BILLING)
    assert lookup.calls == 2
    assert [s.customer_id if s else None for s in signals] == [
        ids["customer"],
        other["customer"],
        None,
        ids["customer"],
    ]
    assert signals[3] is not None and signals[3].crm_account_id == ids["account"]
    assert all(s is None for s in await lookup.resolve(events[:2], "stripe"))  # not ours


async def test_company_edits_reach_the_sync_restore_and_billing_contact(
    deployment: Pair, uid: str, temporal_env: WorkflowEnvironment
) -> None:
    pair = deployment
    pair.route_billing_webhooks_here()
    pair.route_crm_webhooks_here()
    try:
        ids = seeded(pair, uid)
        cb = pair.billing.client
        wf_id = golden.account_workflow_id(BILLING, ids["customer"])
        # the first change comes from HubSpot: a rep edits the company's tier (CRM-owned), and
        # the company.propertyChange webhook alone starts the customer's sync (first sync:
        # billing's values are written to the company)
        ui_update(pair, ids["account"], {"customer_tier": "Enterprise"})
        handle = temporal_env.client.get_workflow_handle(wf_id)
        mrr = cb.Subscription.retrieve(ids["subscription"]).subscription.mrr
        from connectors.sync.hubspot import HubSpotSync

        hs = HubSpotSync(pair.crm)
        await eventually(
            lambda: asyncio.to_thread(hs.sync_view, ids["account"]),
            lambda v: v.get("mrr") == mrr and v.get("plan") and v.get("segment") == "Enterprise",
            "billing's golden fields on the company after a HubSpot-side change",
            within_s=60,
        )
        s = await settled(pair, handle)
        assert s.signals >= 1 and s.crm_account_id == ids["account"]

        # a rep types another MRR into the company: billing owns it, so it is put back
        ui_update(pair, ids["account"], {"mrr": "1.0"})
        await eventually(
            lambda: asyncio.to_thread(hs.sync_view, ids["account"]),
            lambda v: v.get("mrr") == mrr,
            "the MRR restored on the company",
            within_s=60,
        )
        s = await settled(pair, handle)
        assert s.restored == 1

        # the billing contact is shared two-way: a rep's edit in HubSpot reaches Chargebee
        email = f"billing-{uid}@hubsync.example"
        ui_update(pair, ids["account"], {"billing_contact_email": email})
        await eventually(
            lambda: asyncio.to_thread(lambda: cb.Customer.retrieve(ids["customer"]).customer),
            lambda c: c.email == email,
            "the billing contact on the Chargebee customer",
            within_s=60,
        )
        s = await settled(pair, handle)
        # our writes come back through both sides' webhooks and change nothing
        crm_before = len(company_writes(pair, ids["account"]))
        billing_before = len(customer_writes(pair, ids["customer"]))
        final = await settled(pair, handle)
        assert len(company_writes(pair, ids["account"])) == crm_before
        assert len(customer_writes(pair, ids["customer"])) == billing_before
        assert final.restored == 1 and not final.conflicts_open
        events = httpx.get(pair.urls[CRM] + "/_sandbox/hubspot/webhooks/events").json()["events"]
        ours = [e for e in events if e.get("changeSource") == "API"]
        assert ours, "our own writes were delivered back as API events"
    finally:
        httpx.delete(pair.urls[CRM] + "/_sandbox/webhooks")


async def test_a_billing_contact_changed_on_both_sides_at_once_is_reviewed_without_ping_pong(
    deployment: Pair, uid: str, temporal_env: WorkflowEnvironment
) -> None:
    """Chargebee × HubSpot: the same shared field edited in Chargebee and in HubSpot's UI
    before either reached the other → one conflict; a person keeps billing's value, which is
    written to the company once; the echoes change nothing."""
    from connectors.sync.hubspot import HubSpotSync
    from domain.approvals import Decision
    from tests.sync.world import decide

    pair = deployment
    pair.route_billing_webhooks_here()
    pair.route_crm_webhooks_here()
    try:
        ids = seeded(pair, uid)
        cb, hs = pair.billing.client, HubSpotSync(pair.crm)
        handle = temporal_env.client.get_workflow_handle(
            golden.account_workflow_id(BILLING, ids["customer"])
        )
        ui_update(pair, ids["account"], {"customer_tier": "Strategic"})  # the first sync
        await eventually(
            lambda: asyncio.to_thread(hs.sync_view, ids["account"]),
            lambda v: bool(v.get("plan")) and bool(v.get("billing_contact")),
            "the first sync on the company",
            within_s=60,
        )
        await settled(pair, handle)
        # both sides at once
        cb.Customer.update(ids["customer"], {"email": f"finance-{uid}@hubsync.example"})
        ui_update(pair, ids["account"], {"billing_contact_email": f"ap-{uid}@hubsync.example"})
        s = await eventually(
            lambda: handle.query("status", result_type=SyncStatus),
            lambda s: len(s.conflicts_open) == 1,
            "the conflict in the review queue",
            within_s=60,
        )
        (conflict,) = s.conflicts_open
        assert conflict.field == "billing_contact"
        await decide(
            temporal_env.client, handle.id, conflict.action_id, Decision.REJECT, "bob@example.com"
        )  # reject = keep billing's value
        await eventually(
            lambda: asyncio.to_thread(hs.sync_view, ids["account"]),
            lambda v: v.get("billing_contact") == f"finance-{uid}@hubsync.example",
            "billing's contact on the company",
            within_s=60,
        )
        await settled(pair, handle)
        crm_before = len(company_writes(pair, ids["account"]))
        billing_before = len(customer_writes(pair, ids["customer"]))
        final = await settled(pair, handle)
        assert len(company_writes(pair, ids["account"])) == crm_before
        assert len(customer_writes(pair, ids["customer"])) == billing_before
        assert final.conflicts_resolved == 1 and not final.conflicts_open
        assert cb.Customer.retrieve(ids["customer"]).customer.email == (
            f"finance-{uid}@hubsync.example"
        )
    finally:
        httpx.delete(pair.urls[CRM] + "/_sandbox/webhooks")
