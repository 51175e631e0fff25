"""Every use case once on Recurly × Salesforce and Recurly × HubSpot: the real dev server, the
pair's worker and webhook service, the Recurly sandbox through the official ``recurly`` client
and the CRM sandboxes through theirs. Payment failures arrive the way Recurly sends them (a
signed IDs-only notification the webhook service re-fetches)."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from domain import temporal as names
from domain.approvals import UPDATE, ApprovalSignal, Decision
from domain.churn import ChurnStatus
from domain.dunning import DunningResult, DunningStatus
from domain.ids import support_workflow_id
from domain.models import NoteTarget
from domain.quote import QuoteToCashResult
from sandbox import books
from sandbox.recurly.seeding import book_seed
from sandbox.scenarios import DEMO_CUSTOMERS
from tests.pairs import Pair, eventually, pending_of, seed_crm_book, stage, start_churn_on_risk
from tests.quote_to_cash.conftest import Deal, crm_link, start, won_deal
from tests.quote_to_cash.test_catch_up import index_lag
from tests.support_context.conftest import start_support

NORTHWIND, GLOBEX, _ = DEMO_CUSTOMERS
HISTORIES = Path(__file__).parent.parent / "histories"
STANDARD = [("RB-CORE", 1, 50_000, 10.0), ("RB-SEAT", 10, 4_000, 10.0)]
STANDARD_MRR = round((50_000 + 10 * 4_000) * 0.9)


async def keep_history(pair: Pair, handle: WorkflowHandle, what: str) -> None:
    """With REVBRIDGE_WRITE_HISTORIES=1, commit this run's history for the replay gate."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1" and pair.name == "recurly×salesforce":
        history = await handle.fetch_history()
        wf_type = (await handle.describe()).workflow_type
        (HISTORIES / f"{wf_type}__recurly_{what}.json").write_text(history.to_json())


async def start_or_join(client: Client, pair: Pair, deal: Deal) -> WorkflowHandle:
    """Start the deal's run as the catch-up would; when the CRM's own callout already started it
    (one run per deal: a second start is refused), follow that run."""
    try:
        return await start(client, pair, deal)
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(deal.workflow_id(pair), result_type=QuoteToCashResult)


def credit_of(pair: Pair, customer_id: str) -> int:
    return pair.billing.customer_snapshot(customer_id).credit_balance


async def test_dunning_case_credit_approved_redeliveries_joined_then_recovered(
    client: Client, rpair: Pair, uid: str
) -> None:
    ids = rpair.seed(GLOBEX, uid)
    rpair.billing_driver.decline(ids["invoice"])  # Recurly's renewal attempt declines

    handle = client.get_workflow_handle(
        rpair.workflow_id(ids["invoice"]), result_type=DunningResult
    )
    await stage(handle, "deciding on apply_credit", within_s=60)
    pending = await pending_of(handle, within_s=60)
    assert pending.action.kind.value == "apply_credit"
    assert pending.action.amount == GLOBEX.invoice_total * 5 // 100
    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.APPROVE, approver="alice@example.com"
        ),
    )
    status = await stage(handle, "waiting for payment", within_s=60)
    assert status.failure_class == "insufficient_funds"
    assert status.actions[:2] == [
        "create_case: allow → executed",
        "apply_credit: needs_approval → executed (alice@example.com)",
    ]
    [case] = rpair.cases(ids["invoice"])
    assert case["id"] == status.case_id
    assert credit_of(rpair, ids["customer"]) == GLOBEX.invoice_total * 5 // 100
    notes = rpair.billing_notes(ids["invoice"])  # audit notes: account notes in Recurly
    assert any("create_case" in n and handle.id in n for n in notes)

    # Recurly delivers every notification again, newest first: the run joins them all
    resp = httpx.post(
        rpair.billing_url + "/_sandbox/recurly/notifications/redeliver", json={"reverse": True}
    )
    assert resp.status_code == 200
    await asyncio.sleep(1.0)
    again = await handle.query("status", result_type=DunningStatus)
    assert again.actions == status.actions and again.case_id == status.case_id
    assert len(rpair.cases(ids["invoice"])) == 1
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{handle.id}'")]
    assert len(runs) == 1

    rpair.billing_driver.pay(ids["invoice"], GLOBEX.invoice_total)  # a wire, out of band
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "recovered"
    assert (await handle.describe()).typed_search_attributes.get(names.AMOUNT_AT_RISK_KEY) == 0.0
    await keep_history(rpair, handle, "recovered_with_approval")


async def test_quote_to_cash_subscription_with_coupon_linked_on_both_sides(
    client: Client, rpair: Pair, uid: str
) -> None:
    deal = won_deal(rpair, uid, STANDARD)
    handle = await start_or_join(client, rpair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "live", result.reason
    [customer] = rpair.billing_driver.customers(email=deal.email)
    assert customer["id"] == result.customer_id
    assert customer["custom_fields"] == {
        "crm": rpair.settings.crm,
        "crm_account_id": deal.account_id,
    }
    [sub] = rpair.billing_driver.subscriptions(result.customer_id)
    assert sub["id"] == result.subscription_id and sub["state"] == "active"
    assert (sub["plan"], sub["add_ons"]) == ("rb-core", {"seat": 10})
    assert len(sub["coupons"]) == 1  # the deal's 10% as a coupon redemption
    assert sub["custom_fields"]["crm_opportunity_id"] == deal.opportunity_id
    link = crm_link(rpair, deal)
    assert (link["customer"], link["subscription"]) == (result.customer_id, result.subscription_id)
    assert float(link["mrr"] or 0) == pytest.approx(STANDARD_MRR / 100)
    await keep_history(rpair, handle, "live")


def seed_risky(pair: Pair, uid: str) -> books.BookCustomer:
    c = books.BookCustomer(
        id=f"risky-{uid}",
        company=f"Risky Co {uid}",
        tier="Mid-Market",
        plan="book-business",
        unit_price=9_900,
        quantity=12,
        tenure_days=40,
        failures=3,
        unpaid=True,
        open_cases=(20, 35),
        non_renewing=True,
        risky=True,
    )
    book = books.Book(prefix=f"p{uid}", customers=[c])
    httpx.post(
        pair.urls["recurly"] + "/_sandbox/seed", json=book_seed(book), timeout=90
    ).raise_for_status()
    seed_crm_book(pair, book)
    return c


async def test_churn_scored_offer_approved_as_a_coupon_redemption(
    client: Client, rpair: Pair, uid: str
) -> None:
    c = seed_risky(rpair, uid)
    handle = await start_churn_on_risk(client, rpair, c.id, uid)
    pending = await pending_of(handle, within_s=60)
    status = await handle.query("status", result_type=ChurnStatus)
    assert status.score is not None and status.score >= 60, status
    assert pending.action.kind.value == "offer_discount"
    assert pending.action.subject_id == c.subscription_id
    assert any("scheduled to cancel" in r for r in status.reasons)
    assert any("failed" in r for r in status.reasons)
    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.APPROVE, approver="bob@example.com"
        ),
    )
    result = await asyncio.wait_for(handle.result(), timeout=60)
    assert (result.outcome, result.offer) == ("churned", "executed")
    final = await handle.query("status", result_type=ChurnStatus)
    subs = rpair.billing_driver.subscriptions(c.id)
    assert final.offer_id and final.offer_id in json.dumps(subs)  # redeemed on the subscription
    actions = [r["action"] for r in rpair.crm.audit_log(handle.id)]
    for expected in ("write_churn_score", "create_task", "offer_discount", "churn_outcome"):
        assert expected in actions, actions
    notes = await eventually(
        lambda: asyncio.to_thread(rpair.billing.list_notes, NoteTarget.CUSTOMER, c.id),
        lambda n: len(n) >= 2,
        "account notes for the offer and the outcome",
        within_s=60,
    )
    assert any("churn_outcome" in n for n in notes)
    await keep_history(rpair, handle, "offer_approved_churned")


async def test_support_context_cites_the_recurly_invoice_and_open_dunning(
    client: Client, rpair: Pair, uid: str
) -> None:
    from cli.demo_support import written_note

    ids = rpair.seed(NORTHWIND, uid)
    rpair.billing_driver.decline(ids["invoice"])
    dunning = client.get_workflow_handle(rpair.workflow_id(ids["invoice"]))
    try:
        await stage(dunning, "waiting for payment", within_s=60)
        account_id = rpair.account_id(ids["customer"])
        assert account_id is not None
        case_id = rpair.crm_driver.open_case(account_id, "Card declined: why is our invoice open?")
        handle = await start_support(
            client, rpair.settings.crm, "recurly", case_id, rpair.settings.task_queue
        )
        result = await handle.result()
    finally:
        await dunning.terminate("test over")
    assert (result.outcome, result.customer_id) == ("summarized", ids["customer"])
    note = written_note(rpair.settings, rpair.crm, case_id, result.note_id)
    assert note is not None
    total = f"{NORTHWIND.invoice_total / 100:,.2f} USD"
    assert f"Payment status: 1 unpaid invoice(s), {total} due ({ids['invoice']})." in note
    assert "(expired_card)" in note
    assert f"Open dunning: invoice {ids['invoice']} since " in note
    log = rpair.crm.audit_log(support_workflow_id(rpair.settings.crm, case_id))
    assert [r["action"] for r in log] == ["annotate_case"]
    await keep_history(rpair, handle, "summarized")


#: where each CRM's provisioning task goes (refused for good to make quote-to-cash roll back)
TASK_WRITES = {
    "salesforce": ("PATCH", r"/services/data/v[0-9.]+/sobjects/Task/RevBridge_Key__c/.+"),
    "hubspot": ("POST", r"/crm/v3/objects/tasks"),
}


async def test_quote_to_cash_compensation_terminates_and_deactivates_what_it_made(
    client: Client, rpair: Pair, uid: str
) -> None:
    method, path = TASK_WRITES[rpair.settings.crm]
    httpx.post(
        rpair.urls[rpair.settings.crm] + "/_sandbox/faults",
        json={"kind": "status", "status": 400, "method": method, "path": path, "times": -1},
    ).raise_for_status()
    deal = won_deal(rpair, uid, STANDARD)
    handle = await start_or_join(client, rpair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "rolled_back", result.reason
    status = await handle.query("status", result_type=None)
    assert [c.split(" ")[0] for c in status["compensations"]] == [
        "cancelled",
        "deleted",
        "restored",
    ]
    sub = rpair.billing.client.get_subscription(status["subscription_id"])
    assert sub.state == "expired"  # terminated, no refund
    account = rpair.billing.client.get_account(f"code-{status['customer_id']}")
    assert account.state == "inactive"
    assert rpair.billing_driver.customers(email=deal.email) == []
    link = crm_link(rpair, deal)
    assert link["customer"] is None and link["subscription"] is None


async def test_a_subscription_create_whose_answer_is_lost_makes_one(
    client: Client, rpair: Pair, uid: str
) -> None:
    httpx.post(
        rpair.billing_url + "/_sandbox/faults",
        json={
            "kind": "commit_then_timeout",
            "method": "POST",
            "path": "/subscriptions",
            "delay_s": 4,
            "times": 1,
        },
    ).raise_for_status()  # Recurly commits; the connector gives up after 2 s
    deal = won_deal(rpair, uid, STANDARD)
    handle = await start_or_join(client, rpair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "live", result.reason
    subs = rpair.billing_driver.subscriptions(result.customer_id)
    assert [s["id"] for s in subs] == [result.subscription_id]
    posts = httpx.get(rpair.billing_url + "/_sandbox/requests", params={"method": "POST"}).json()[
        "requests"
    ]
    creates = [
        r for r in posts if r["path"] == "/subscriptions" and deal.opportunity_id in r["body"]
    ]
    assert creates[0].get("fault") == "commit_then_timeout"
    assert len(creates) == 1  # the retry looked up revbridge_key and found it: no second POST


async def test_the_catch_up_starts_a_missed_deal_once(
    client: Client, rpair: Pair, uid: str
) -> None:
    from domain.quote import CATCH_UP_WORKFLOW_TYPE, CatchUpInput, CatchUpResult, QuoteToCashResult

    since = datetime.now(UTC) - timedelta(seconds=2)
    deal = won_deal(rpair, uid, STANDARD, callout=False)  # the callout is lost
    await index_lag(rpair)  # the catch-up searches the CRM: a won deal shows once indexed
    catch_up_id = f"q2c-catch-up-recurly-{uid}"
    first = await client.execute_workflow(
        CATCH_UP_WORKFLOW_TYPE,
        CatchUpInput(since=since),
        id=catch_up_id,
        task_queue=rpair.settings.task_queue,
        result_type=CatchUpResult,
    )
    wf_id = deal.workflow_id(rpair)
    assert deal.opportunity_id in first.found and wf_id in first.running
    run = client.get_workflow_handle(wf_id, result_type=QuoteToCashResult)
    result = await asyncio.wait_for(run.result(), timeout=90)
    assert result.outcome == "live", result.reason
    [customer] = rpair.billing_driver.customers(email=deal.email)
    assert len(rpair.billing_driver.subscriptions(customer["id"])) == 1
    await keep_history(rpair, client.get_workflow_handle(catch_up_id), "started")
