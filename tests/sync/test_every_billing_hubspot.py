"""The account sync on Stripe, Zuora and Recurly × HubSpot, end to end with both sides' webhooks
on (Chargebee × HubSpot: test_hubspot_crm.py), one customer a platform: a rep's edit of a
billing-owned company property in HubSpot's UI is restored; the billing contact changed in the
billing platform and in HubSpot's UI before either reached the other goes to the review queue, a
person's pick (Stripe: the Web UI's approval signal; Zuora, Recurly: `revbridge sync conflicts`
and `revbridge sync resolve`) is written to the billing platform and audited on
both sides; a minor change (one more seat, through the billing platform's webhook) is written in
ONE HubSpot ``companies/batch/update`` and no single-company write; a later edit of the billing
contact in HubSpot reaches the billing platform; then, once every echo of our
writes on both sides was taken (tests/sync/settle.py ``settled``, no sleeps), nothing more is
written on either side (the loop scenario).

The deployments (webhook service, worker, a Zuora tenant and a Recurly site of this module's
own) and the vendor-shaped edits are test_every_pair.py's; the HubSpot UI edit and ledger are
test_hubspot_crm.py's."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from cli.sync import open_conflicts, resolve
from connectors.base import ConnectorError
from connectors.sync import sync_billing, sync_crm
from domain.approvals import Decision
from domain.golden import FlushStatus
from domain.models import NoteTarget
from tests.pairs import Pair, eventually
from tests.sync.settle import settled
from tests.sync.test_every_pair import (  # noqa: F401  (module-scoped fixtures: this module's own stacks)
    add_seats,
    billing_writes,
    deployments,
    policy_dir,
    route_billing,
    seeded,
    set_billing_contact,
    started,
    status,
    tenants,
    unroute_billing,
)
from tests.sync.test_hubspot_crm import company_writes, ui_update
from tests.sync.world import decide

CRM = "hubspot"
BILLINGS = ["stripe", "zuora", "recurly"]
BATCH_UPDATE = "/crm/v3/objects/companies/batch/update"


def unroute_crm(pair: Pair) -> None:
    httpx.delete(pair.urls[CRM] + "/_sandbox/webhooks").raise_for_status()


def company_patches(pair: Pair, company: str) -> tuple[list[Any], list[Any]]:
    """HubSpot's ledger for the company: batch updates naming it, single-company PATCHes."""
    rows = company_writes(pair, company)
    bulk = [r for r in rows if r["path"] == BATCH_UPDATE]
    single = [r for r in rows if r["method"] == "PATCH" and r["path"].endswith("/" + company)]
    return bulk, single


@pytest.mark.parametrize("billing", BILLINGS)
async def test_restore_conflict_and_one_batch_update_without_ping_pong(
    deployments: Any,  # noqa: F811
    billing: str,
    uid: str,
    temporal_env: WorkflowEnvironment,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # `revbridge sync resolve` on this stack: its Temporal, approvers not verified (as
    # test_cli.py: a dev stack's identity-key file would ask for REVBRIDGE_ID_TOKEN)
    (tmp_path / "no-identity-keys").write_text("")
    monkeypatch.setenv("REVBRIDGE_IDENTITY_KEYS_FILE", str(tmp_path / "no-identity-keys"))
    monkeypatch.setenv("TEMPORAL_ADDRESS", temporal_env.client.service_client.config.target_host)
    pair: Pair = await deployments.get_pair((billing, CRM))
    unroute_billing(pair)
    unroute_crm(pair)
    ids = seeded(pair, "hsync", uid)
    flusher_id = f"account-sync-flush:{billing}:hubspot-{uid}"
    handle = await started(pair, ids, temporal_env, flusher_id)
    # from here on both sides' webhooks reach the deployment (the run was started first, with
    # its test flusher and a 1 s batch window)
    route_billing(pair)
    pair.route_crm_webhooks_here()
    try:
        await restored(pair, ids, handle)
        await conflict_then_flush(pair, ids, handle, flusher_id, uid, temporal_env)
    finally:
        unroute_crm(pair)
        unroute_billing(pair)


async def restored(pair: Pair, ids: dict[str, str], handle: Any) -> None:
    """A rep types another MRR into the company (company.propertyChange, CRM_UI): billing owns
    it, so it is put back (its audit entry is checked at the end: HubSpot's search shows a note
    about 2 s after it was written)."""
    c = sync_crm(pair.crm)
    mrr = c.sync_view(ids["account"])["mrr"]
    ui_update(pair, ids["account"], {"mrr": "1.0"})
    await eventually(lambda: status(handle), lambda s: s.restored == 1, "the restore counted")
    assert c.sync_view(ids["account"])["mrr"] == mrr


async def conflict_then_flush(
    pair: Pair,
    ids: dict[str, str],
    handle: Any,
    flusher_id: str,
    uid: str,
    temporal_env: WorkflowEnvironment,
) -> None:
    # both sides change the billing contact before either reached the other: the billing
    # platform's own webhook and HubSpot's company.propertyChange (a rep in the UI)
    set_billing_contact(pair, ids["customer"], f"finance+{uid}@example.com")
    ui_update(pair, ids["account"], {"billing_contact_email": f"ap+{uid}@example.com"})
    s = await eventually(
        lambda: status(handle), lambda s: bool(s.conflicts_open), "the conflict in the queue"
    )
    (conflict,) = s.conflicts_open
    assert conflict.field == "billing_contact"
    assert conflict.billing_value == f"finance+{uid}@example.com"
    assert conflict.crm_value == f"ap+{uid}@example.com"
    # a reviewer takes HubSpot's value: on Stripe the Web UI's approval signal, on Zuora and
    # Recurly `revbridge sync conflicts` then `revbridge sync resolve ... --take crm`
    if pair.settings.billing == "stripe":
        await decide(
            temporal_env.client, handle.id, conflict.action_id, Decision.APPROVE, "bob@example.com"
        )
    else:
        # the list is a visibility query: it shows the run a moment after its search
        # attribute says a person is asked (eventually consistent)
        await eventually(
            lambda: open_conflicts(temporal_env.client),
            lambda listed: (handle.id, conflict) in listed,
            "the conflict listed by revbridge sync conflicts",
        )
        await resolve(handle.id, "billing_contact", "crm", "bob@example.com", "HubSpot is right")
    await eventually(
        lambda: status(handle),
        lambda s: s.conflicts_resolved == 1 and s.stage == "waiting for a change",
        "the resolution written",
        within_s=30,
    )
    view = sync_billing(pair.billing).sync_view(ids["customer"])
    assert view["billing_contact"] == f"ap+{uid}@example.com"
    await eventually(
        lambda: asyncio.to_thread(pair.billing.list_notes, NoteTarget.CUSTOMER, ids["customer"]),
        lambda notes: sum(1 for n in notes if "approved by: bob@example.com" in n) == 1,
        "the resolution's note on the billing customer",
    )
    audit = await eventually(
        lambda: asyncio.to_thread(pair.crm.audit_log, handle.id),
        lambda audit: any(a["action"] == "resolve_conflict" for a in audit),
        "the resolution's HubSpot audit entry",
    )
    assert [a["action"] for a in audit].count("restore_field") == 1  # the restore's, once
    resolved = [a for a in audit if a["action"] == "resolve_conflict"]
    assert len(resolved) == 1 and "bob@example.com" in resolved[0]["text"]

    # a minor change (one more seat: +20 %), through the billing platform's webhook, is handed
    # to the flusher: one batch update
    await settled(pair, handle)
    bulk_before, singles_before = company_patches(pair, ids["account"])
    before = view["mrr"]
    add_seats(pair, ids, 1)
    after = sync_billing(pair.billing).sync_view(ids["customer"])["mrr"]
    assert after == before * 6 // 5
    await eventually(lambda: status(handle), lambda s: s.minor_handed >= 1, "handed to the flusher")
    flusher = temporal_env.client.get_workflow_handle(flusher_id)
    await eventually(
        lambda: flusher.query("status", result_type=FlushStatus),
        lambda f: f.records_written >= 1,
        "the bulk flush",
        within_s=30,
    )
    assert sync_crm(pair.crm).sync_view(ids["account"])["mrr"] == after
    bulk, singles = company_patches(pair, ids["account"])
    assert len(bulk) == len(bulk_before) + 1 and len(singles) == len(singles_before)
    await eventually(
        lambda: asyncio.to_thread(pair.crm.audit_log, flusher_id),
        lambda audit: "sync_bulk_write" in [a["action"] for a in audit],
        "the bulk write's HubSpot audit entry",
    )
    # a rep edits the billing contact again (no conflict now): HubSpot's webhook → the billing
    # platform
    email = f"billing+{uid}@example.com"
    ui_update(pair, ids["account"], {"billing_contact_email": email})
    await eventually(
        lambda: asyncio.to_thread(sync_billing(pair.billing).sync_view, ids["customer"]),
        lambda v: v.get("billing_contact") == email,
        "HubSpot's billing contact on the billing customer",
        # the test's client shares Recurly's one connection with the worker: a poll that finds
        # it closed mid-way is "not yet" (the connector reopens it next call)
        tolerate=(ConnectorError,),
    )
    # the batch update comes back as HubSpot API events of our app, the billing writes and
    # notes as billing events: once all were taken, nothing more is written on either side
    await settled(pair, handle)
    crm_before = len(company_writes(pair, ids["account"]))
    billing_before = len(billing_writes(pair, ids["customer"]))
    quiet = await settled(pair, handle)
    assert len(company_writes(pair, ids["account"])) == crm_before
    assert len(billing_writes(pair, ids["customer"])) == billing_before
    assert quiet.conflicts_resolved == 1 and not quiet.conflicts_open and quiet.restored == 1
    await flusher.terminate("test over")
    await handle.terminate("test over")
