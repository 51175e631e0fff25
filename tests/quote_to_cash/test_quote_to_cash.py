"""QuoteToCashWorkflow on the real dev server, the pair's worker and the four vendor sandboxes,
driven through the vendors' official clients.

A deal is built and won in the CRM the way a rep does it (the shared CATALOG, a contact, line
items); runs are started the way the webhook service and the catch-up start them.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError

from activities.policy import DEFAULT_POLICY_DIR
from domain import temporal as names
from domain.approvals import UPDATE, ApprovalSignal, Decision
from domain.quote import WORKFLOW_TYPE, MappingFixed, QuoteToCashInput, QuoteToCashResult
from tests.pairs import Pair, eventually, on_pairs, pending_of
from tests.quote_to_cash.conftest import (
    crm_link,
    keep_history,
    live_subscriptions,
    start,
    start_once,
    status_of,
    won_deal,
)
from workers.main import build_worker

STANDARD = [("RB-CORE", 1, 50_000, 10.0), ("RB-SEAT", 10, 4_000, 10.0)]
#: the shared CATALOG's list prices, 10% off: what the subscription bills each month
STANDARD_MRR = round((50_000 + 10 * 4_000) * 0.9)


async def test_won_deal_becomes_a_live_subscription_linked_on_both_sides(
    client: Client, pair: Pair, uid: str
) -> None:
    deal = won_deal(pair, uid, STANDARD)
    handle = await start(client, pair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=30)

    assert result.outcome == "live", result.reason
    assert result.customer_id and result.subscription_id
    [customer] = pair.billing_driver.customers(email=deal.email)
    assert customer["id"] == result.customer_id
    [sub] = live_subscriptions(pair, result.customer_id)
    assert sub["id"] == result.subscription_id

    link = crm_link(pair, deal)
    assert link["customer"] == result.customer_id
    assert link["subscription"] == result.subscription_id
    assert link["status"] and link["status"] != "pending approval"
    assert float(link["mrr"] or 0) == pytest.approx(STANDARD_MRR / 100)

    [task] = [t for t in pair.crm_driver.tasks(deal.account_id) if "Provision" in t["subject"]]
    assert result.subscription_id in task["subject"]

    status = await handle.query("status", result_type=None)
    assert status["customer_how"] == "created" and status["mrr"] == STANDARD_MRR
    assert status["actions"] == [
        "create_customer: allow → executed",
        "create_subscription: allow → executed",
    ]
    log = pair.crm.audit_log(handle.id)
    assert [r["action"] for r in log] == [
        "create_customer",
        "create_subscription",
        "quote_to_cash_live",
    ]
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.USE_CASE_KEY) == "quote_to_cash"
    assert desc.typed_search_attributes.get(names.CUSTOMER_KEY) == result.customer_id
    await keep_history(pair, handle, "live")


CB_SF, CB_HS, ST_SF, ST_HS = (
    "chargebee×salesforce",
    "chargebee×hubspot",
    "stripe×salesforce",
    "stripe×hubspot",
)


@on_pairs(CB_SF, ST_HS)
async def test_the_same_won_event_twice_gives_one_customer_and_one_subscription(
    client: Client, pair: Pair, uid: str
) -> None:
    deal = won_deal(pair, uid, STANDARD)
    # the callout delivered twice at once (and perhaps a third time by the CRM's own webhook)
    first, second = await asyncio.gather(start(client, pair, deal), start(client, pair, deal))
    assert first.id == second.id
    result = await asyncio.wait_for(first.result(), timeout=30)
    assert result.outcome == "live"
    # a late redelivery after the run closed starts nothing (domain/starts.py)
    with pytest.raises(WorkflowAlreadyStartedError):
        await start_once(client, pair, deal)
    assert len(pair.billing_driver.customers(email=deal.email)) == 1
    assert len(pair.billing_driver.subscriptions(result.customer_id)) == 1
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{first.id}'")]
    assert len(runs) == 1


@on_pairs(CB_HS, ST_SF)
async def test_an_existing_customer_with_the_contacts_email_is_linked_not_duplicated(
    client: Client, pair: Pair, uid: str
) -> None:
    deal = won_deal(pair, uid, STANDARD, win=False)
    existing = pair.billing_driver.create_customer(deal.company, deal.email)
    pair.crm_driver.win(deal.opportunity_id)
    handle = await start(client, pair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=30)

    assert result.outcome == "live" and result.customer_id == existing
    assert [c["id"] for c in pair.billing_driver.customers(email=deal.email)] == [existing]
    assert crm_link(pair, deal)["customer"] == existing
    status = await handle.query("status", result_type=None)
    assert status["customer_how"] == "matched by email"
    assert [a.split(":")[0] for a in status["actions"]] == ["create_subscription"]
    # the billing side carries the link now: a second deal for the account finds it by link
    found = pair.billing.find_customer_by_crm(pair.settings.crm, deal.account_id)
    assert found is not None and found.id == existing


@on_pairs(CB_SF, ST_HS)
async def test_a_similar_customer_waits_for_a_person_to_pick_then_links_it(
    client: Client, pair: Pair, uid: str
) -> None:
    deal = won_deal(pair, uid, STANDARD, win=False)
    lookalike = pair.billing_driver.create_customer(
        f"{deal.company} Inc.", f"accounts-{uid}@elsewhere.example"
    )
    pair.crm_driver.win(deal.opportunity_id)
    handle = await start(client, pair, deal)
    status = await status_of(handle, lambda s: bool(s.candidates), "a customer choice")
    assert status.stage == "waiting for a person to pick the customer"
    assert status.candidates[0].customer_id == lookalike
    assert "similar company name" in status.candidates[0].reasons[0] or (
        "same company name" in status.candidates[0].reasons[0]
    )
    # the Web UI's current details tell the person what to send
    meta = await handle.query("__temporal_workflow_metadata")
    assert lookalike in meta.current_details and "customer_picked" in meta.current_details
    await handle.signal(
        "customer_picked", {"customer_id": "cus_not_offered", "by": "bob@example.com"}
    )
    # only RevOps (policies/approvers.yaml) may pick: a support agent's pick changes nothing
    await handle.signal("customer_picked", {"customer_id": lookalike, "by": "carol@example.com"})
    await handle.signal("customer_picked", {"customer_id": lookalike, "by": "bob@example.com"})
    result = await asyncio.wait_for(handle.result(), timeout=30)

    assert result.outcome == "live" and result.customer_id == lookalike
    final = await handle.query("status", result_type=None)
    assert final["customer_how"] == "picked by bob@example.com"
    assert final["refused"] == [
        "pick 'cus_not_offered' ignored: not one of the offered candidates",
        f"pick '{lookalike}' ignored: carol@example.com is not among who may answer",
    ]
    assert pair.billing_driver.customers(email=deal.email) == []  # nobody new was created
    await keep_history(pair, handle, "customer_picked_by_role")


@on_pairs(CB_SF, ST_HS)
async def test_an_unknown_product_waits_for_the_mapping_then_continues(
    client: Client, pair: Pair, uid: str, tmp_path: Path
) -> None:
    # this test edits the mapping: its own worker reads its own copy of policies/
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    queue = f"q2c-mapping-{uid}"
    deal = won_deal(
        pair, uid, [("RB-CORE", 1, 50_000, 0.0), ("RB-LEGACY", 2, 4_000, 0.0)], callout=False
    )
    async with build_worker(client, pair.billing, pair.crm, task_queue=queue, policy_dir=policies):
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            QuoteToCashInput(
                crm=pair.settings.crm,
                billing=pair.settings.billing,
                opportunity_id=deal.opportunity_id,
            ),
            id=deal.workflow_id(pair),
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            result_type=QuoteToCashResult,
        )
        status = await status_of(handle, lambda s: bool(s.unmapped), "waiting for the mapping")
        assert status.stage == "waiting for the product mapping"
        assert list(status.unmapped) == ["RB-LEGACY"]
        meta = await handle.query("__temporal_workflow_metadata")
        assert "RB-LEGACY" in meta.current_details and "mapping_fixed" in meta.current_details
        assert pair.billing_driver.customers(email=deal.email) == []  # nothing written yet

        # RevOps decides the legacy add-on is billed as seats, and says so in the mapping
        seat = {"chargebee": "seat-USD-monthly", "stripe": "seat_monthly"}
        mapping = yaml.safe_load((policies / "products.yaml").read_text())
        mapping["products"]["RB-LEGACY"] = seat
        (policies / "products.yaml").write_text(yaml.safe_dump(mapping))
        await handle.signal("mapping_fixed", MappingFixed(by="bob@example.com"))
        result = await asyncio.wait_for(handle.result(), timeout=30)
        final = await handle.query("status", result_type=None)  # needs the worker

    assert result.outcome == "live", result.reason
    [sub] = live_subscriptions(pair, result.customer_id)
    assert sub["id"] == result.subscription_id
    assert final["unmapped"] == {} and final["mrr"] == 50_000 + 2 * 4_000


@on_pairs(CB_HS, ST_SF)
async def test_a_discount_above_policy_waits_for_revops_then_is_created(
    client: Client, pair: Pair, uid: str
) -> None:
    deal = won_deal(pair, uid, [("RB-CORE", 1, 50_000, 25.0), ("RB-SEAT", 5, 4_000, 25.0)])
    handle = await start(client, pair, deal)
    pending = await pending_of(handle)
    assert pending.action.kind.value == "create_subscription"
    assert pending.action.discount_percent == 25
    assert pending.approver_roles == ["revops"]
    assert "q2c_discount_needs_revops" in pending.policy_ids
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.APPROVAL_KEY) == "pending"
    # the customer exists, the subscription does not, while RevOps decides
    [customer] = pair.billing_driver.customers(email=deal.email)
    assert pair.billing_driver.subscriptions(customer["id"]) == []

    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.APPROVE, approver="bob@example.com"
        ),
    )
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "live"
    [sub] = live_subscriptions(pair, result.customer_id)
    assert sub["id"] == result.subscription_id
    status = await handle.query("status", result_type=None)
    assert status["actions"][-1] == (
        "create_subscription: needs_approval → executed (bob@example.com)"
    )
    assert (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY) == "approved"
    log = pair.crm.audit_log(handle.id)
    assert "bob@example.com" in next(r for r in log if r["action"] == "create_subscription")["text"]


@on_pairs(CB_SF, ST_HS)
async def test_a_rejected_deal_leaves_nothing_behind(client: Client, pair: Pair, uid: str) -> None:
    deal = won_deal(pair, uid, [("RB-CORE", 1, 50_000, 40.0)])
    handle = await start(client, pair, deal)
    pending = await pending_of(handle)
    [customer] = pair.billing_driver.customers(email=deal.email)  # created before the ask

    await handle.signal(
        "approval",
        ApprovalSignal(
            action_id=pending.action_id,
            decision=Decision.REJECT,
            approver="bob@example.com",
            note="40% is not a price we sell at",
        ),
    )
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "rolled_back"
    assert "rejected by bob@example.com" in result.reason
    assert result.customer_id is None and result.subscription_id is None

    # billing: the customer we created is gone, and it never had a subscription
    assert pair.billing_driver.customers(email=deal.email) == []
    assert pair.billing_driver.subscriptions(customer["id"]) == []
    # CRM: no link, and the reason on the opportunity
    link = crm_link(pair, deal)
    assert link["customer"] is None and link["subscription"] is None
    assert link["status"].startswith("rolled back: create_subscription rejected")
    log = pair.crm.audit_log(handle.id)
    assert [r["action"] for r in log] == [
        "create_customer",
        "create_subscription",
        "quote_to_cash_rolled_back",
    ]
    assert "deleted customer" in log[-1]["text"]
    await keep_history(pair, handle, "rejected_rolled_back")


#: where each CRM's provisioning-task write goes, for fault injection
TASK_WRITES = {
    "salesforce": ("PATCH", r"/services/data/v[0-9.]+/sobjects/Task/RevBridge_Key__c/.+"),
    "hubspot": ("POST", r"/crm/v3/objects/tasks"),
}


@on_pairs(CB_HS, ST_SF)
async def test_a_failure_after_the_subscription_was_created_is_compensated(
    client: Client, pair: Pair, uid: str
) -> None:
    method, path = TASK_WRITES[pair.settings.crm]
    httpx.post(
        pair.urls[pair.settings.crm] + "/_sandbox/faults",
        json={"kind": "status", "status": 400, "method": method, "path": path, "times": -1},
    ).raise_for_status()  # the CRM refuses the provisioning task for good
    deal = won_deal(pair, uid, STANDARD)
    handle = await start(client, pair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=30)

    assert result.outcome == "rolled_back"
    assert result.reason.startswith("upsert_crm_task failed")
    status = await handle.query("status", result_type=None)
    sub_id, customer_id = status["subscription_id"], status["customer_id"]
    assert sub_id and customer_id  # both existed before the failure
    assert [c.split(" ")[0] for c in status["compensations"]] == [
        "cancelled",
        "deleted",
        "restored",
    ]
    assert status["compensation_failures"] == []
    assert live_subscriptions(pair, customer_id) == []
    assert pair.billing_driver.customers(email=deal.email) == []
    link = crm_link(pair, deal)
    assert link["customer"] is None and link["subscription"] is None
    assert link["status"].startswith("rolled back: upsert_crm_task failed")
    assert [r["action"] for r in pair.crm.audit_log(handle.id)][-1] == "quote_to_cash_rolled_back"


#: where each billing platform's subscription create goes, for fault injection
SUBSCRIPTION_CREATES = {
    "chargebee": ("POST", r"/api/v2/customers/[^/]+/subscription_for_items"),
    "stripe": ("POST", r"/v1/subscriptions"),
}


@on_pairs(CB_SF, ST_HS)
async def test_a_subscription_create_retried_after_commit_then_timeout_makes_one(
    client: Client, pair: Pair, uid: str
) -> None:
    method, path = SUBSCRIPTION_CREATES[pair.settings.billing]
    httpx.post(
        pair.billing_url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": method,
            "path": path,
            "delay_s": 4,
            "times": 1,
        },
    ).raise_for_status()  # the connector gives up after 2 s, not knowing it succeeded
    deal = won_deal(pair, uid, STANDARD)
    handle = await start(client, pair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=40)

    assert result.outcome == "live", result.reason
    assert [s["id"] for s in pair.billing_driver.subscriptions(result.customer_id)] == [
        result.subscription_id
    ]
    writes = [
        r
        for r in httpx.get(
            pair.billing_url + "/_sandbox/requests", params={"method": method}
        ).json()["requests"]
        if re.fullmatch(path, r["path"]) and deal.opportunity_id in r["body"]
    ]
    assert writes[0].get("fault") == "commit_then_timeout"
    # Chargebee: the retry POSTs again under the same key and gets the committed one back;
    # Stripe: the retry first lists the customer's subscriptions and finds it (no second POST)
    assert len(writes) >= (2 if pair.settings.billing == "chargebee" else 1)
    attempts = [
        e.activity_task_started_event_attributes.attempt
        async for e in handle.fetch_history_events()
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
    ]
    assert 2 in attempts


@on_pairs(CB_SF, ST_HS)
async def test_a_deal_won_in_the_crm_starts_its_run_through_the_crm_webhook(
    client: Client, pair: Pair, uid: str
) -> None:
    """No direct start: the Salesforce Flow callout / HubSpot deal.propertyChange webhook goes
    to this pair's webhook service, which starts the run."""
    deal = won_deal(pair, uid, STANDARD)
    handle = client.get_workflow_handle(deal.workflow_id(pair), result_type=QuoteToCashResult)
    await eventually(handle.describe, lambda d: d is not None, "the run started by the webhook")
    result = await asyncio.wait_for(handle.result(), timeout=30)
    assert result.outcome == "live", result.reason
    assert crm_link(pair, deal)["subscription"] == result.subscription_id
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.USE_CASE_KEY) == "quote_to_cash"


@on_pairs(CB_HS)
async def test_a_compensation_that_fails_is_audited_and_fails_the_run(
    client: Client, pair: Pair, uid: str
) -> None:
    crm_method, crm_path = TASK_WRITES[pair.settings.crm]
    for url, fault in (
        (pair.urls[pair.settings.crm], {"method": crm_method, "path": crm_path}),
        # …and billing refuses to cancel the subscription, for good
        (
            pair.billing_url,
            {"method": "POST", "path": r"/api/v2/subscriptions/[^/]+/cancel_for_items"},
        ),
    ):
        httpx.post(
            url + "/_sandbox/faults", json={"kind": "status", "status": 400, "times": -1, **fault}
        ).raise_for_status()
    deal = won_deal(pair, uid, STANDARD)
    handle = await start(client, pair, deal)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(), timeout=30)
    assert isinstance(failed.value.cause, ApplicationError)
    assert failed.value.cause.type == "QuoteToCashCompensationFailed"

    status = await handle.query("status", result_type=None)
    assert [f.split(":")[0] for f in status["compensation_failures"]] == ["create subscription"]
    # the rest was still undone, newest first, and both failures are on record
    assert [c.split(" ")[0] for c in status["compensations"]] == ["deleted", "restored"]
    log = [r["action"] for r in pair.crm.audit_log(handle.id)]
    assert log[-2:] == ["compensation_failed", "quote_to_cash_rolled_back"]
