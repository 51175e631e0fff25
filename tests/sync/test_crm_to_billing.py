"""CRM → billing (issue 19): the billing contact (email and name) and the billing address are
shared two-way. Each vendor's sync module reads and writes them in the golden record's shape (the
same address reads back as the same value on every vendor: an echo is recognised by equality);
a billing write retried after a committed but timed-out call is one effect in the billing ledger;
and end to end on Chargebee × Salesforce, the same shared field changed on both sides at once
goes to the conflict queue, and once a person picks a value nothing ping-pongs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from connectors.base import ConnectorError
from connectors.sync import sync_billing, sync_crm
from domain import golden
from domain.approvals import Decision
from domain.golden import SyncStatus
from domain.ids import idempotency_key
from sandbox.scenarios import DunningCustomer
from tests.pairs import Pair, eventually, pair_settings
from tests.sync.deployment import salesforce_flow, sync_deployment
from tests.sync.settle import settled
from tests.sync.world import decide

ADDRESS = {
    "line1": "1 Market St",
    "line2": "Suite 200",
    "city": "San Francisco",
    "state": "CA",
    "postal_code": "94105",
    "country": "US",
}
QUEUE = "revbridge-sync-crm-to-billing"


def customer(uid: str, name: str = "crm2b") -> DunningCustomer:
    return DunningCustomer(name, "Shared Fields Inc", "SMB", "team-monthly", 4_900, 2, 90, None)


def faults(pair: Pair, vendor: str, path: str) -> None:
    httpx.post(
        pair.urls[vendor] + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": path,
            "delay_s": 3,
            "times": 1,
        },
    ).raise_for_status()


def requests(pair: Pair, vendor: str, path: str) -> list[dict[str, Any]]:
    rows = httpx.get(pair.urls[vendor] + "/_sandbox/requests").json()["requests"]
    return [r for r in rows if r["method"] == "POST" and r["path"] == path]


@pytest.mark.parametrize("billing", ["chargebee", "stripe"])
def test_billing_contact_and_address_round_trip_once_despite_a_lost_answer(
    billing: str, sandbox_urls: dict[str, str], uid: str
) -> None:
    pair = Pair.build(pair_settings(sandbox_urls, billing, "salesforce", QUEUE), sandbox_urls, "")
    cid = pair.seed(customer(uid), uid)["customer"]
    sync = sync_billing(pair.billing)
    fields = {
        "billing_contact": f"ap+{uid}@shared.example",
        "billing_contact_name": "Ada Lovelace",
        "billing_address": ADDRESS,
    }
    key = idempotency_key(golden.account_workflow_id(billing, cid), "sync:b1:2")
    # Chargebee: the address is its own call (update_billing_info, key + "-addr"); Stripe: one
    # customer update. The last call's answer is lost after it committed
    path = (
        f"/api/v2/customers/{cid}/update_billing_info"
        if billing == "chargebee"
        else f"/v1/customers/{cid}"
    )
    faults(pair, billing, path)
    with pytest.raises(ConnectorError):
        sync.sync_write(cid, fields, key)
    sync.sync_write(cid, fields, key)  # the activity's retry: the same key
    view = sync.sync_view(cid)
    assert {k: view.get(k) for k in fields} == fields
    sent = requests(pair, billing, path)
    header = "chargebee-idempotency-key" if billing == "chargebee" else "idempotency-key"
    assert len(sent) == 2 and len({r["headers"].get(header) for r in sent}) == 1
    # one effect: the vendor replayed its first answer to the retry
    if billing == "chargebee":
        events = pair.billing.client.Event.list(
            {"event_type": {"is": "customer_changed"}, "limit": 100}
        ).list
        addressed = [
            e
            for e in events
            if e.event.raw_data["content"]["customer"]["id"] == cid
            and (e.event.raw_data["content"]["customer"].get("billing_address") or {}).get("zip")
            == "94105"
        ]
        assert len(addressed) == 1
    else:
        events = pair.billing.client.v1.events.list({"type": "customer.updated", "limit": 100})
        mine = [e for e in events.data if e["data"]["object"]["id"] == cid]
        assert len(mine) == 1


@pytest.mark.parametrize("crm", ["salesforce", "hubspot"])
def test_the_crm_holds_the_shared_fields_in_the_same_shape(
    crm: str, sandbox_urls: dict[str, str], uid: str
) -> None:
    pair = Pair.build(pair_settings(sandbox_urls, "chargebee", crm, QUEUE), sandbox_urls, "")
    cid = pair.seed(customer(uid, "crmshape"), uid)["customer"]
    account = pair.account_id(cid)
    assert account
    sync = sync_crm(pair.crm)
    fields = {
        "billing_contact": f"ap+{uid}@shared.example",
        "billing_contact_name": "Ada Lovelace",
        "billing_address": ADDRESS,
    }
    sync.sync_write(account, fields)
    view = sync.sync_view(account)
    assert {k: view.get(k) for k in fields} == fields
    # a shorter address clears the parts it no longer has
    short = {"line1": "9 Elm St", "city": "Austin", "country": "US"}
    sync.sync_write(account, {"billing_address": short})
    assert sync.sync_view(account)["billing_address"] == short


# --- end to end: both sides at once ------------------------------------------------------------


@pytest.fixture(scope="module")
async def deployment(
    temporal_env: WorkflowEnvironment, sandbox_urls: dict[str, str]
) -> AsyncIterator[Pair]:
    async with sync_deployment(
        temporal_env, sandbox_urls, "chargebee", "salesforce", QUEUE
    ) as pair:
        yield pair


@pytest.fixture
def wired(deployment: Pair) -> Iterator[Pair]:
    with salesforce_flow(deployment):
        yield deployment


def writes(pair: Pair, cid: str, account: str) -> tuple[int, int]:
    billing = [
        r
        for r in httpx.get(pair.urls["chargebee"] + "/_sandbox/requests").json()["requests"]
        if r["method"] == "POST"
        and r["path"].startswith(f"/api/v2/customers/{cid}")
        and not r["path"].endswith("/notes")
    ]
    crm = [
        r
        for r in httpx.get(pair.urls["salesforce"] + "/_sandbox/requests").json()["requests"]
        if r["method"] == "PATCH" and account in r["path"] + str(r.get("body"))
    ]
    return len(billing), len(crm)


async def test_a_shared_field_changed_on_both_sides_at_once_is_reviewed_and_never_ping_pongs(
    wired: Pair, uid: str, temporal_env: WorkflowEnvironment
) -> None:
    pair, client = wired, temporal_env.client
    ids = pair.seed(customer(uid, "pingpong"), uid)
    cid, account = ids["customer"], pair.account_id(ids["customer"])
    assert account
    cb, sf = pair.billing.client, pair.crm.client
    wf_id = golden.account_workflow_id("chargebee", cid)
    # the first sync (a billing-side change starts it): both sides in step
    cb.Customer.update(cid, {"first_name": "Grace", "last_name": "Hopper"})
    await eventually(
        lambda: asyncio.to_thread(sync_crm(pair.crm).sync_view, account),
        lambda v: v.get("billing_contact_name") == "Grace Hopper",
        "the billing contact's name on the Salesforce account",
        within_s=60,
    )
    handle = client.get_workflow_handle(wf_id)
    await settled(pair, handle)

    # a rep edits the billing address in Salesforce: it reaches the Chargebee customer
    sf.Account.update(
        account,
        {"BillingStreet": "1 Market St\nSuite 200", "BillingCity": "San Francisco",
         "BillingState": "CA", "BillingPostalCode": "94105", "BillingCountry": "US"},
    )  # fmt: skip
    await eventually(
        lambda: asyncio.to_thread(sync_billing(pair.billing).sync_view, cid),
        lambda v: v.get("billing_address") == ADDRESS,
        "the CRM's billing address on the Chargebee customer",
        within_s=60,
    )
    await settled(pair, handle)
    audit = await asyncio.to_thread(pair.crm.audit_log, wf_id)
    assert any(a["action"] == "sync_to_billing" for a in audit)
    assert "94105" not in str(audit)  # personal data: audited as "(changed)"

    # both sides change the city at once, before either reached the other
    cb.Customer.update_billing_info(cid, {"billing_address": {**_cb(ADDRESS), "city": "Oakland"}})
    sf.Account.update(account, {"BillingCity": "Berkeley"})
    s = await eventually(
        lambda: handle.query("status", result_type=SyncStatus),
        lambda s: len(s.conflicts_open) == 1,
        "the conflict in the review queue",
        within_s=60,
    )
    (conflict,) = s.conflicts_open
    assert conflict.field == "billing_address"
    assert conflict.billing_value["city"] == "Oakland" and conflict.crm_value["city"] == "Berkeley"
    # neither value was written anywhere while the conflict waits
    assert sync_billing(pair.billing).sync_view(cid)["billing_address"]["city"] == "Oakland"
    assert sync_crm(pair.crm).sync_view(account)["billing_address"]["city"] == "Berkeley"

    # a person takes the CRM's value: written to billing once, and the echoes change nothing
    await decide(client, wf_id, conflict.action_id, Decision.APPROVE, "bob@example.com")
    await eventually(
        lambda: asyncio.to_thread(sync_billing(pair.billing).sync_view, cid),
        lambda v: v["billing_address"]["city"] == "Berkeley",
        "the CRM's city on the Chargebee customer",
        within_s=60,
    )
    done = await settled(pair, handle)
    before = writes(pair, cid, account)
    final = await settled(pair, handle)
    assert writes(pair, cid, account) == before  # zero ping-pong
    assert final.conflicts_resolved == done.conflicts_resolved == 1
    assert not final.conflicts_open


def _cb(addr: dict[str, str]) -> dict[str, str]:
    """The golden address in Chargebee's billing_address names."""
    names = {"postal_code": "zip"}
    return {names.get(k, k): v for k, v in addr.items()}
