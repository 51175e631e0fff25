"""``revbridge demo --scenario quote-to-cash``: won deals become live, linked subscriptions.

Seeds the shared product catalogue in both sandboxes, then, through the CRM's official client,
creates two accounts with a contact and a deal each and moves both deals to closed-won: the CRM
sends its callout / webhook, the webhook service starts one QuoteToCashWorkflow per deal. One deal
is on standard terms and goes live (customer and subscription in billing, IDs, MRR and status
written back to the CRM, a provisioning task); the other carries a 30% discount and waits for a
RevOps approval, which is left for you to give in the Web UI or with ``revbridge approve``.

If a callout does not arrive (Salesforce Flow does not redeliver), the scenario runs the catch-up
once, as its 15-minute schedule would.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from cli.config import CliError, StackConfig
from domain.approvals import QUERY, PendingApproval
from domain.ids import q2c_workflow_id
from domain.quote import CATCH_UP_WORKFLOW_TYPE as CATCH_UP
from domain.quote import QUERY_STATUS, CatchUpInput, CatchUpResult, QuoteToCashStatus
from domain.settings import Settings
from harness.drivers import drivers

WAIT_S = 45.0
CALLOUT_WAIT_S = 6.0
Say = Any  # cli.demo.Out, or any callable taking one line

#: (label, company, tier, lines (product code, quantity, unit price in cents, discount %))
DEALS = (
    ("standard", "Northwind Traders", "Mid-Market", [("RB-CORE", 1, 50_000, 10.0), ("RB-SEAT", 12, 4_000, 10.0)]),
    ("discounted", "Globex Corporation", "Enterprise", [("RB-CORE", 1, 50_000, 30.0), ("RB-SUPPORT", 1, 20_000, 30.0)]),
)  # fmt: skip


async def scenario(cfg: StackConfig, say: Say) -> dict[str, Any]:
    from cli.demo_stack import run_on_stack

    return await run_on_stack(cfg, say, run_scenario)


async def run_scenario(
    settings: Settings,
    billing: Any,
    crm: Any,
    client: Client,
    say: Say,
    *,
    ui_url: str,
    suffix: str,
) -> dict[str, Any]:
    """The scenario against any running deployment (``scenario`` builds one from the stack
    config; the tests pass a pair's). ``suffix`` keeps its records apart from earlier runs."""
    bd, cd = drivers(settings, billing, crm)
    await asyncio.to_thread(bd.seed_catalog)
    await asyncio.to_thread(cd.seed_catalog)
    say(f"Seeded the product catalogue in {bd.name} and {cd.name}.")

    since = datetime.now(UTC) - timedelta(seconds=2)
    deals: dict[str, dict[str, Any]] = {}
    for label, company, tier, lines in DEALS:
        name = f"{company} {suffix}"
        email = f"buyer-{label}-{suffix}@{company.split()[0].lower()}.example"
        account = await asyncio.to_thread(cd.create_account, name, tier)
        opp = await asyncio.to_thread(
            cd.create_opportunity,
            account,
            f"{name} — new business",
            lines,
            payment_terms="Net 30",
            contact_email=email,
        )
        await asyncio.to_thread(cd.win, opp)
        total = sum(q * p * (1 - d / 100) for _, q, p, d in lines)
        say(f"  ✓ {cd.name}: {name} won opportunity {opp} ({total / 100:,.2f} USD / month)")
        deals[label] = {"company": name, "account": account, "opportunity": opp}

    handles = {
        label: client.get_workflow_handle(q2c_workflow_id(cd.name, d["opportunity"]))
        for label, d in deals.items()
    }
    if not await _all_started(handles.values(), CALLOUT_WAIT_S):
        say("  … a callout did not arrive: running the catch-up once, as its schedule would")
        caught = await client.execute_workflow(
            CATCH_UP,
            CatchUpInput(since=since),
            id=f"q2c-catch-up-demo-{suffix}",
            task_queue=settings.task_queue,
            result_type=CatchUpResult,
        )
        say(f"    catch-up: {len(caught.found)} won deal(s), {len(caught.running)} run(s)")

    rows = []
    for label, handle in handles.items():
        status, pending = await _settle(handle, say)
        rows.append(
            await asyncio.to_thread(
                _row, label, deals[label], status, pending, handle.id, bd, cd, ui_url
            )
        )
    for row in rows:
        _print_row(row, say)
    return {"pair": {"billing": bd.name, "crm": cd.name}, "web_ui": ui_url, "deals": rows}


async def _all_started(handles: Any, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    pending = list(handles)
    while pending and time.monotonic() < deadline:
        still = []
        for handle in pending:
            try:
                await handle.describe()
            except RPCError:
                still.append(handle)
        pending = still
        if pending:
            await asyncio.sleep(0.2)
    return not pending


async def _settle(
    handle: WorkflowHandle, say: Say
) -> tuple[QuoteToCashStatus, list[PendingApproval]]:
    """Until the run is closed or waits for a person."""
    seen = ""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            status = await handle.query(QUERY_STATUS, result_type=QuoteToCashStatus)
            pending = await handle.query(QUERY, result_type=list[PendingApproval])
        except RPCError:
            await asyncio.sleep(0.2)
            continue
        if status.stage != seen:
            seen = status.stage
            say(f"  … {handle.id}: {status.stage}")
        if status.outcome or pending or status.unmapped or status.candidates:
            return status, pending
        await asyncio.sleep(0.2)
    raise CliError(f"timed out waiting for {handle.id} (see .revbridge/logs/)")


def _row(
    label: str,
    deal: dict[str, Any],
    status: QuoteToCashStatus,
    pending: list[PendingApproval],
    workflow_id: str,
    bd: Any,
    cd: Any,
    ui_url: str,
) -> dict[str, Any]:
    account, opp = cd.account(deal["account"]), cd.opportunity(deal["opportunity"])
    sf = cd.name == "salesforce"
    subs = bd.subscriptions(status.customer_id) if status.customer_id else []
    return {
        "deal": label,
        "company": deal["company"],
        "opportunity": deal["opportunity"],
        "state": status.outcome or ("waiting for approval" if pending else status.stage),
        "customer": {"id": status.customer_id, "how": status.customer_how},
        "subscriptions": [{"id": s.get("id"), "status": s.get("status")} for s in subs],
        "mrr": status.mrr / 100,
        "crm": {
            "account_billing_customer": account.get(
                "Billing_Customer_Id__c" if sf else "billing_customer_id"
            ),
            "opportunity_subscription": opp.get(
                "Billing_Subscription_Id__c" if sf else "billing_subscription_id"
            ),
            "opportunity_status": opp.get("Billing_Status__c" if sf else "billing_status"),
        },
        "provisioning_tasks": [
            t["subject"] for t in cd.tasks(deal["account"]) if t["subject"].startswith("Provision")
        ],
        "actions": status.actions,
        "pending_approvals": [
            {
                "action_id": p.action_id,
                "action": p.action.describe(),
                "approver_roles": p.approver_roles,
                "signal": p.signal_json(
                    p.eligible_approvers[0] if p.eligible_approvers else "you@example.com"
                ),
                "cli": f"revbridge approve {workflow_id} --action {p.action_id} --as "
                + (p.eligible_approvers[0] if p.eligible_approvers else "<your email>"),
            }
            for p in pending
        ],
        "workflow_id": workflow_id,
        "web_ui": f"{ui_url}/{quote(workflow_id, safe='')}",
    }


def _print_row(row: dict[str, Any], say: Say) -> None:
    say("")
    say(f"{row['company']} (opportunity {row['opportunity']}): {row['state']}")
    if row["customer"]["id"]:
        say(f"  billing customer {row['customer']['id']} ({row['customer']['how']})")
    for sub in row["subscriptions"]:
        say(f"  subscription {sub['id']} ({sub['status']}), MRR {row['mrr']:,.2f} USD")
    crm = row["crm"]
    if crm["opportunity_subscription"]:
        say(
            f"  written back to the CRM: account → {crm['account_billing_customer']}, "
            f"opportunity → {crm['opportunity_subscription']} ({crm['opportunity_status']})"
        )
    for task in row["provisioning_tasks"]:
        say(f"  task: {task}")
    for p in row["pending_approvals"]:
        say(f"  ⏸ {p['action']} waits for {' or '.join(p['approver_roles'])}:")
        say(f"    Web UI → Send a Signal `approval` with {p['signal']}")
        say(f"    or: {p['cli']}")
    say(f"  {row['web_ui']}")


def print_summary(summary: dict[str, Any], say: Say) -> None:
    """Each deal was printed as it settled; close with where to look next."""
    live = sum(1 for row in summary["deals"] if row["subscriptions"])
    waiting = sum(1 for row in summary["deals"] if row["pending_approvals"])
    say("")
    say(
        f"Summary ({summary['pair']['crm']} → {summary['pair']['billing']}): "
        f"{live} deal(s) live and linked, {waiting} waiting for approval. "
        f"Web UI: {summary['web_ui']}"
    )
