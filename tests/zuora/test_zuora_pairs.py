"""Every use case once on Zuora × Salesforce and Zuora × HubSpot: the real connectors, the Zuora
tenant's callouts through the real webhook service, the pair's worker on the dev server.

Dunning (Payment Declined starts it, Payment Processed ends it) · quote-to-cash through Orders
(and the catch-up) · churn intervention (payment history, a non-renewing subscription, a
discount rate plan as the retention offer) and the sweep · support context (plan, invoices,
payments, open dunning). With REVBRIDGE_WRITE_HISTORIES=1 the Zuora × Salesforce runs are
written to tests/histories as ``<WorkflowType>__zuora_<what>.json`` for the replay gate.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from cli.demo_support import written_note
from domain.approvals import UPDATE, ApprovalSignal, Decision
from domain.churn import (
    SWEEP_WORKFLOW_TYPE,
    ChurnStatus,
    SweepInput,
    SweepResult,
)
from domain.dunning import (
    CATCH_UP_WORKFLOW_TYPE as DUNNING_CATCH_UP,
)
from domain.dunning import (
    DunningCatchUpInput,
    DunningCatchUpResult,
    DunningResult,
)
from domain.models import NoteTarget
from domain.quote import CATCH_UP_WORKFLOW_TYPE, CatchUpInput, CatchUpResult, QuoteToCashResult
from sandbox import books
from sandbox.scenarios import DAY, DEMO_CUSTOMERS
from sandbox.zuora.scenarios import book_downgrades, book_seed
from tests.pairs import Pair, eventually, pending_of, seed_crm_book, stage, start_churn_on_risk
from tests.quote_to_cash.conftest import Deal, crm_link, won_deal
from tests.quote_to_cash.conftest import start as start_q2c
from tests.quote_to_cash.test_catch_up import index_lag
from tests.support_context.conftest import start_support

HISTORIES = Path(__file__).parent.parent / "histories"
NORTHWIND = DEMO_CUSTOMERS[0]  # SMB, expired card
STANDARD = [("RB-CORE", 1, 50_000, 10.0), ("RB-SEAT", 10, 4_000, 10.0)]
STANDARD_MRR = round((50_000 + 10 * 4_000) * 0.9)


async def start(client: Client, pair: Pair, deal: Deal) -> WorkflowHandle:
    """The deal's run as the webhook service starts it; when the CRM's callout started it
    first (quote-to-cash's start policy refuses a second start), the run it started."""
    try:
        return await start_q2c(client, pair, deal)
    except WorkflowAlreadyStartedError:
        return client.get_workflow_handle(deal.workflow_id(pair), result_type=QuoteToCashResult)


async def keep_history(pair: Pair, handle: WorkflowHandle, what: str) -> None:
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1" and pair.name == "zuora×salesforce":
        wf_type = (await handle.describe()).workflow_type
        history = await handle.fetch_history()
        (HISTORIES / f"{wf_type}__zuora_{what}.json").write_text(history.to_json())


def live_subscriptions(pair: Pair, customer_id: str) -> list[dict]:
    return [s for s in pair.billing_driver.subscriptions(customer_id) if s["status"] == "active"]


async def test_dunning_payment_declined_callout_case_notes_then_payment_processed(
    client: Client, zpair: Pair, uid: str
) -> None:
    ids = zpair.seed(NORTHWIND, uid)
    zpair.billing_driver.decline(ids["invoice"])  # invoice-collect declines: Payment Declined
    handle = client.get_workflow_handle(
        zpair.workflow_id(ids["invoice"]), result_type=DunningResult
    )
    status = await stage(handle, "waiting for payment", within_s=60)
    assert status.failure_class == "expired_card"  # re-fetched: the payment's gateway code
    [case] = zpair.cases(ids["invoice"])
    assert case["id"] == status.case_id
    account_id = zpair.account_id(ids["customer"])
    assert account_id and str(case["account_id"]) == str(account_id)
    # the audit trail on the Zuora subscription's notes and in the CRM's agent log
    notes = zpair.billing_notes(ids["invoice"])
    assert notes and any("create_case" in n for n in notes)
    assert [r["action"] for r in zpair.audit(ids["invoice"])][0] == "create_case"
    # retries never double-collect: the run's collect attempts carry its idempotency keys
    zpair.billing_driver.pay(ids["invoice"], NORTHWIND.invoice_total)  # Payment Processed
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "recovered"
    assert [r["action"] for r in zpair.audit(ids["invoice"])][-1] == "close_dunning"
    assert zpair.billing.get_invoice_context(ids["invoice"]).invoice.amount_due == 0
    await keep_history(zpair, handle, "recovered")


async def test_dunning_catch_up_repairs_lost_callouts(
    client: Client, zpair: Pair, uid: str
) -> None:
    """Zuora gave up on both callouts (the receiver was down): the catch-up finds the declined
    payment through Object Query and starts the run once, then the paid invoice and ends it."""
    httpx.delete(zpair.urls["zuora"] + "/_sandbox/webhooks").raise_for_status()  # lost callouts
    ids = zpair.seed(NORTHWIND, f"c{uid}")
    since = datetime.now(UTC) - timedelta(seconds=5)
    zpair.billing_driver.decline(ids["invoice"])

    async def catch_up(n: int) -> DunningCatchUpResult:
        return await client.execute_workflow(
            DUNNING_CATCH_UP,
            DunningCatchUpInput(since=since),
            id=f"dunning-catch-up-zuora-{uid}-{n}",
            task_queue=zpair.settings.task_queue,
            result_type=DunningCatchUpResult,
        )

    first = await catch_up(1)
    wf_id = zpair.workflow_id(ids["invoice"])
    assert wf_id in first.runs.started
    handle = client.get_workflow_handle(wf_id, result_type=DunningResult)
    await stage(handle, "waiting for payment", within_s=60)
    zpair.billing_driver.pay(ids["invoice"], NORTHWIND.invoice_total)  # its callout is lost too
    second = await catch_up(2)
    assert ids["invoice"] in second.paid and wf_id not in second.runs.started
    assert (await asyncio.wait_for(handle.result(), timeout=90)).outcome == "recovered"
    runs = [e async for e in client.list_workflows(f"WorkflowId = '{wf_id}'")]
    assert len(runs) == 1
    await keep_history(
        zpair, client.get_workflow_handle(f"dunning-catch-up-zuora-{uid}-1"), "started"
    )


async def test_quote_to_cash_order_creates_the_subscription_and_links_both_sides(
    client: Client, zpair: Pair, uid: str
) -> None:
    deal = won_deal(zpair, uid, STANDARD)  # the CRM's callout starts the run; start() joins it
    handle = await start(client, zpair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "live", result.reason
    [customer] = zpair.billing_driver.customers(email=deal.email)
    assert customer["id"] == result.customer_id and customer["crmId"] == deal.account_id
    [sub] = live_subscriptions(zpair, result.customer_id)
    assert sub["subscriptionNumber"] == result.subscription_id
    assert sub["OrderNumber" if "OrderNumber" in sub else "orderNumber"].startswith("RB-O-")
    assert sub["contractedNetMrr"] == pytest.approx(STANDARD_MRR / 100)
    link = crm_link(zpair, deal)
    assert (link["customer"], link["subscription"]) == (result.customer_id, result.subscription_id)
    assert float(link["mrr"] or 0) == pytest.approx(STANDARD_MRR / 100)
    log = zpair.crm.audit_log(handle.id)
    assert [r["action"] for r in log] == [
        "create_customer",
        "create_subscription",
        "quote_to_cash_live",
    ]
    await keep_history(zpair, handle, "live")


async def test_quote_to_cash_catch_up_starts_a_missed_deal_once(
    client: Client, zpair: Pair, uid: str
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=2)
    deal = won_deal(zpair, uid, [("RB-CORE", 1, 50_000, 0.0)], callout=False)
    await index_lag(zpair)  # the catch-up searches the CRM: a won deal shows once indexed
    catch_up = await client.start_workflow(
        CATCH_UP_WORKFLOW_TYPE,
        CatchUpInput(since=since),
        id=f"q2c-catch-up-zuora-{uid}",
        task_queue=zpair.settings.task_queue,
        result_type=CatchUpResult,
    )
    first = await catch_up.result()
    assert deal.workflow_id(zpair) in first.running
    run = client.get_workflow_handle(deal.workflow_id(zpair), result_type=QuoteToCashResult)
    assert (await asyncio.wait_for(run.result(), timeout=90)).outcome == "live"
    await keep_history(zpair, catch_up, "started")


def seed_risky(pair: Pair, uid: str) -> books.BookCustomer:
    """A Zuora account 40 days old with three declined payments, an unpaid invoice and a
    subscription cancelled at the end of its term; two old open cases in the CRM."""
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
    now = int(time.time())
    zuora = {
        "accounts": [{"id": c.id, "name": c.company, "createdDate": now - 40 * DAY}],
        "subscriptions": [
            {
                "subscriptionNumber": c.subscription_id,
                "account": c.id,
                "start": now - 40 * DAY,
                "plans": [{"plan": "PRP-BUSINESS-MONTHLY", "quantity": c.quantity}],
            }
        ],
        "invoices": [
            {
                "id": f"inv-{uid}-{k}",
                "account": c.id,
                "subscription": c.subscription_id,
                "amount": c.mrr,
                "invoiceDate": now - (30 - 10 * k) * DAY,
            }
            for k in range(3)
        ],
        "payments": [
            {
                "account": c.id,
                "invoice": f"inv-{uid}-{k}",
                "status": "Error",
                "gatewayResponseCode": "insufficient_funds",
                "createdDate": now - (29 - 10 * k) * DAY,
            }
            for k in range(3)
        ],
    }
    httpx.post(pair.urls["zuora"] + "/_sandbox/seed", json=zuora, timeout=30).raise_for_status()
    seed_crm_book(pair, books.Book(prefix=f"z{uid}", customers=[c]))
    pair.billing.request(
        "PUT",
        f"/v1/subscriptions/{c.subscription_id}/cancel",
        json={"cancellationPolicy": "EndOfCurrentTerm"},
    )
    return c


async def test_churn_intervention_scores_offers_a_discount_rate_plan_and_follows_up(
    client: Client, zpair: Pair, uid: str
) -> None:
    c = seed_risky(zpair, uid)
    handle = await start_churn_on_risk(client, zpair, c.id, uid)
    pending = await pending_of(handle, within_s=60)
    status = await handle.query("status", result_type=ChurnStatus)
    assert status.score is not None and status.score >= 60, status
    assert (
        pending.action.kind.value == "offer_discount"
        and pending.action.subject_id == c.subscription_id
    )
    assert any("scheduled to cancel" in r for r in status.reasons)
    assert any("failed" in r for r in status.reasons)
    await handle.execute_update(
        UPDATE,
        ApprovalSignal(
            action_id=pending.action_id, decision=Decision.APPROVE, approver="bob@example.com"
        ),
    )
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert (result.outcome, result.offer) == ("churned", "executed")
    final = await handle.query("status", result_type=ChurnStatus)
    subs = zpair.billing_driver.subscriptions(c.id)
    assert final.offer_id and final.offer_id in json.dumps(subs)  # the discount order
    plans = [rp["productRatePlanNumber"] for s in subs for rp in s["ratePlans"]]
    assert "PRP-DISCOUNT-PERCENTAGE" in plans
    actions = [r["action"] for r in zpair.crm.audit_log(handle.id)]
    for expected in ("write_churn_score", "create_task", "offer_discount", "churn_outcome"):
        assert expected in actions, actions
    notes = await eventually(
        lambda: asyncio.to_thread(zpair.billing.list_notes, NoteTarget.CUSTOMER, c.id),
        lambda n: len(n) >= 2,
        "account notes for the offer and the outcome",
        within_s=60,
    )
    assert notes
    await keep_history(zpair, handle, "offer_approved")


async def test_support_context_cites_plan_invoice_declined_payment_and_open_dunning(
    client: Client, zpair: Pair, uid: str
) -> None:
    ids = zpair.seed(NORTHWIND, f"s{uid}")
    zpair.billing_driver.decline(ids["invoice"])
    dunning = client.get_workflow_handle(zpair.workflow_id(ids["invoice"]))
    try:
        await stage(dunning, "waiting for payment", within_s=60)
        account_id = zpair.account_id(ids["customer"])
        assert account_id is not None
        case_id = zpair.crm_driver.open_case(account_id, "Why is our invoice open?", "New card.")
        handle = await start_support(
            client, zpair.settings.crm, "zuora", case_id, zpair.settings.task_queue
        )
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        await dunning.terminate("test over")
    assert (result.outcome, result.customer_id) == ("summarized", ids["customer"])
    note = written_note(zpair.settings, zpair.crm, case_id, result.note_id)
    assert note is not None
    total = f"{NORTHWIND.invoice_total / 100:,.2f} USD"
    assert f"1 unpaid invoice(s), {total} due ({ids['invoice']})" in note
    assert "failed (expired_card)" in note
    assert "PRP-TEAM-MONTHLY" in note and f"Open dunning: invoice {ids['invoice']}" in note
    assert "@" not in note
    await keep_history(zpair, handle, "summarized")


#: where each CRM's provisioning task goes, to refuse it for good
TASK_WRITES = {
    "salesforce": ("PATCH", r"/services/data/v[0-9.]+/sobjects/Task/RevBridge_Key__c/.+"),
    "hubspot": ("POST", r"/crm/v3/objects/tasks"),
}


async def test_quote_to_cash_compensation_cancels_the_orders_subscription(
    client: Client, zpair: Pair, uid: str
) -> None:
    method, path = TASK_WRITES[zpair.settings.crm]
    crm_url = zpair.urls[zpair.settings.crm]
    httpx.post(
        crm_url + "/_sandbox/faults",
        json={"kind": "status", "status": 400, "method": method, "path": path, "times": -1},
    ).raise_for_status()  # the CRM refuses the provisioning task for good
    try:
        deal = won_deal(zpair, uid, STANDARD)
        handle = await start(client, zpair, deal)
        result = await asyncio.wait_for(handle.result(), timeout=90)
    finally:
        httpx.delete(crm_url + "/_sandbox/faults")
    assert result.outcome == "rolled_back" and result.reason.startswith("upsert_crm_task failed")
    status = await handle.query("status", result_type=None)
    sub_id, customer_id = status["subscription_id"], status["customer_id"]
    assert sub_id and customer_id
    assert [c.split(" ")[0] for c in status["compensations"]] == [
        "cancelled",
        "deleted",
        "restored",
    ]
    sub = zpair.billing.request("GET", f"/v1/subscriptions/{sub_id}")
    assert sub["status"] == "Cancelled" and sub["orderNumber"].startswith("RB-O-")
    assert zpair.billing_driver.customers(email=deal.email) == []
    link = crm_link(zpair, deal)
    assert link["customer"] is None and link["subscription"] is None


async def test_quote_to_cash_order_retried_after_commit_then_timeout_makes_one(
    client: Client, zpair: Pair, uid: str
) -> None:
    httpx.post(
        zpair.urls["zuora"] + "/_sandbox/faults",
        json={"kind": "commit_then_timeout", "method": "POST", "path": "/v1/orders", "delay_s": 4},
    ).raise_for_status()  # the order commits; the connector gives up after 2 s not knowing it
    deal = won_deal(zpair, uid, STANDARD)
    handle = await start(client, zpair, deal)
    result = await asyncio.wait_for(handle.result(), timeout=90)
    assert result.outcome == "live", result.reason
    subs = zpair.billing_driver.subscriptions(result.customer_id)
    assert [s["subscriptionNumber"] for s in subs] == [result.subscription_id]
    orders = [
        r
        for r in httpx.get(
            zpair.urls["zuora"] + "/_sandbox/requests",
            params={"method": "POST", "path_prefix": "/v1/orders"},
        ).json()["requests"]
        if deal.opportunity_id in r["body"]
    ]
    # one POST, committed then timed out; the retry found the subscription by its number
    assert [o.get("fault") for o in orders] == ["commit_then_timeout"]


async def test_churn_sweep_walks_the_tenant_with_object_query_pages(
    client: Client, zpair: Pair, uid: str
) -> None:
    """A small book (sandbox.books) with its failures, non-renewals and downgrade orders; the
    sweep pages through the tenant's accounts with Object Query cursors and continues as new."""
    book = books.book(6, prefix=f"zb{uid}", seed=16)
    seed_url = zpair.urls["zuora"] + "/_sandbox/seed"
    httpx.post(seed_url, json=book_seed(book), timeout=30).raise_for_status()
    for number, quantity in book_downgrades(book):
        zpair.billing_driver.downgrade(number, quantity)  # type: ignore[attr-defined]
    seed_crm_book(zpair, book)
    active = 0
    cursor = None
    while True:
        page = zpair.billing.list_customers(cursor, limit=99)
        active += len(page.customers)
        cursor = page.next_cursor
        if not cursor:
            break
    assert active >= len(book.customers)
    sweep = await client.start_workflow(
        SWEEP_WORKFLOW_TYPE,
        SweepInput(billing="zuora", page_size=4, pages_per_run=1, follow_up=timedelta(seconds=3)),
        id=f"churn-sweep-zuora-{uid}",
        task_queue=zpair.settings.task_queue,
        result_type=SweepResult,
    )
    result = await asyncio.wait_for(sweep.result(), timeout=90)
    # paged and continued as new; other tests' accounts in this tenant are swept too
    assert result.customers >= len(book.customers) and result.runs >= 2

    def scored() -> list[str]:
        missing = []
        for c in book.customers:
            account = zpair.account_id(c.id)
            fields = zpair.crm_driver.account(account) if account else {}
            if fields.get("Churn_Risk__c", fields.get("churn_risk")) in (None, ""):
                missing.append(c.id)
        return missing

    # every customer of the book has a score on its CRM account (the sweep's own low-risk
    # writes, the interventions' for the rest)
    await eventually(lambda: asyncio.to_thread(scored), lambda m: m == [], "scores", within_s=60)
    await keep_history(zpair, sweep, "finished")
