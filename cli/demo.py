"""``revbridge demo``: failed payments become CRM cases, end to end, live, on any billing × CRM pair.

Seeds three realistic customers in both sandboxes, makes their card payments fail through the
billing platform's official client (so the sandbox emits its real, authenticated webhook),
follows the dunning workflows as they run, pays one invoice to show a recovery, and summarizes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from temporalio.client import Client

from cli.config import CliError, StackConfig
from cli.demo_stack import Out
from cli.stack import Stack, stack_health
from connectors.registry import build_billing, build_crm
from domain.approvals import QUERY, PendingApproval
from domain.dunning import DunningResult, DunningStatus
from domain.ids import dunning_workflow_id
from domain.models import NoteTarget
from domain.settings import Settings
from harness.drivers import drivers
from infra.codec import data_converter
from sandbox.scenarios import DEMO_CUSTOMERS, DEMO_STRATEGIC, DunningCustomer

WAIT_S = 45.0
AUDIT_WORDS = {"salesforce": "AI_Agent_Log__c entries", "hubspot": "HubSpot notes on the company"}
NOTE_WORDS = {
    "chargebee": "Chargebee invoice comment(s)",
    "stripe": "Stripe invoice metadata note(s)",
    "recurly": "Recurly account note(s)",
    "zuora": "Zuora account note(s) (and a line on the subscription)",
}


Scenario = Callable[[StackConfig, Out], Awaitable[dict[str, Any]]]
Printer = Callable[[dict[str, Any], Out], None]

#: ``revbridge demo --scenario NAME``: the use case to show
SCENARIOS = (
    "dunning", "quote-to-cash", "churn", "support", "revenue", "expansion", "reconcile", "sync"
)  # fmt: skip


def _scenario_for(name: str) -> tuple[Scenario, Printer | None]:
    if name == "dunning":
        return _scenario, None
    if name == "quote-to-cash":
        from cli import demo_q2c as mod
    elif name == "churn":
        from cli import demo_churn as mod  # type: ignore[no-redef]
    elif name == "support" and os.environ.get("REVBRIDGE_DESK") == "zendesk":
        from cli import demo_zendesk as mod  # type: ignore[no-redef]  # --desk zendesk
    elif name == "support":
        from cli import demo_support as mod  # type: ignore[no-redef]
    elif name == "revenue":
        from cli import demo_revenue as mod  # type: ignore[no-redef]
    elif name == "expansion":
        from cli import demo_expansion as mod  # type: ignore[no-redef]
    elif name == "reconcile":
        from cli import demo_reconcile as mod  # type: ignore[no-redef]
    elif name == "sync":
        from cli import demo_sync as mod  # type: ignore[no-redef]
    else:
        raise CliError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
    return mod.scenario, getattr(mod, "print_summary", None) or _print_json


def _print_json(summary: dict[str, Any], say: Out) -> None:
    say(json.dumps({k: v for k, v in summary.items() if k not in ("seconds", "stack")}, indent=2))


async def run_demo(
    cfg: StackConfig,
    config_path: Path,
    as_json: bool = False,
    keep: bool = False,
    scenario: str = "dunning",
) -> None:
    say = Out(as_json)
    run_scenario, printer = _scenario_for(scenario)
    check = getattr(sys.modules[run_scenario.__module__], "check_pair", None)
    if check is not None:  # a scenario built on some pairs only: refused before a stack starts
        check(cfg.pair.billing, cfg.pair.crm)
    started = time.monotonic()
    health = await stack_health(cfg)
    stack: Stack | None = None
    if all(health.values()):
        async with httpx.AsyncClient(timeout=2) as http:
            running = (await http.get(cfg.webhooks.url + "/healthz")).json()
        if (running.get("billing"), running.get("crm")) != (cfg.pair.billing, cfg.pair.crm):
            raise CliError(
                f"the running stack is {running.get('billing')} × {running.get('crm')}, not "
                f"{cfg.pair.billing} × {cfg.pair.crm}: stop it, or ask for that pair"
            )
        say(f"Using the running stack ({cfg.pair.billing} × {cfg.pair.crm}).")
    elif any(health.values()):
        up = [k for k, v in health.items() if v]
        down = [k for k, v in health.items() if not v]
        raise CliError(
            f"a partial stack is running ({', '.join(up)} up; {', '.join(down)} down): "
            "stop it, or start all of it with `revbridge dev`"
        )
    else:
        say("Starting the embedded stack (Temporal dev server, sandboxes, worker, webhooks):")
        stack = Stack(cfg, config_path)
    try:
        if stack is not None:  # inside the try: a start that fails half-way stops what it began
            await stack.start(progress=say)
        summary = await run_scenario(cfg, say)
    finally:
        if stack is not None and not keep:
            stack.stop()
    summary["stack"] = (
        "kept running"
        if (stack and keep)
        else ("started for this run and stopped" if stack else "already running")
    )
    summary["seconds"] = round(time.monotonic() - started, 1)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    elif printer is not None:
        printer(summary, say)
        say(f"({summary['seconds']} s; stack {summary['stack']}.)")
    else:
        _print_summary(summary, say, stopped=stack is not None and not keep)


async def _scenario(cfg: StackConfig, say: Out) -> dict[str, Any]:
    from cli.channels import stack_env

    settings = Settings.from_env(stack_env(cfg))
    billing, crm = build_billing(settings), build_crm(settings)
    bd, cd = drivers(settings, billing, crm)
    client = await Client.connect(
        cfg.temporal.address,
        namespace=cfg.temporal.namespace,
        data_converter=data_converter(),
    )
    suffix = datetime.now(UTC).strftime("%m%d%H%M%S")
    customers = (*DEMO_CUSTOMERS, DEMO_STRATEGIC)
    await asyncio.to_thread(bd.seed, customers, suffix)
    await asyncio.to_thread(cd.seed, customers, suffix, bd.name)
    say(
        f"Seeded {len(customers)} customers in {bd.name} and {cd.name}: "
        + ", ".join(c.company for c in customers)
    )

    for c in customers:
        ids = c.ids(suffix)
        await asyncio.to_thread(bd.decline, ids["invoice"])
        say(
            f"  ✗ {bd.name} declined {c.company}'s invoice {ids['invoice']} "
            f"({c.invoice_total / 100:,.2f} USD): {c.decline_code}"
        )

    handles = {
        c.key: client.get_workflow_handle(
            dunning_workflow_id(bd.name, c.ids(suffix)["invoice"]), result_type=DunningResult
        )
        for c in customers
    }
    statuses, waiting = await _follow(handles, "waiting for payment", say)

    recovered = customers[2]  # Initech, Mid-Market
    rec_ids = recovered.ids(suffix)
    say(f"{recovered.company} pays invoice {rec_ids['invoice']} by bank transfer…")
    await asyncio.to_thread(bd.pay, rec_ids["invoice"], recovered.invoice_total)
    result = await asyncio.wait_for(handles[recovered.key].result(), timeout=WAIT_S)
    say(f"  ✓ {recovered.company}: {result.outcome}")
    statuses[recovered.key] = await handles[recovered.key].query(
        "status", result_type=DunningStatus
    )

    rows = []
    for c in customers:
        rows.append(
            await asyncio.to_thread(
                _row,
                c,
                suffix,
                statuses[c.key],
                waiting.get(c.key, []),
                handles[c.key].id,
                crm,
                billing,
                cfg,
            )
        )
    summary = {
        "pair": {"billing": bd.name, "crm": cd.name},
        "web_ui": cfg.ui_url(),
        "customers": rows,
    }
    if settings.email_channel == "marketing-cloud":  # --channel marketing-cloud
        from cli.channels import mc_ledger

        summary["email_channel"] = "marketing-cloud"
        summary["marketing_cloud_ledger"] = mc_ledger(cfg)
    return summary


async def _follow(
    handles: dict[str, Any], stage: str, say: Out
) -> tuple[dict[str, DunningStatus], dict[str, list[PendingApproval]]]:
    """Until each run waits for payment, is closed, or waits for a person."""
    seen: dict[str, str] = {}
    done: dict[str, DunningStatus] = {}
    waiting: dict[str, list[PendingApproval]] = {}
    deadline = time.monotonic() + WAIT_S
    while len(done) < len(handles):
        for key, handle in handles.items():
            if key in done:
                continue
            try:
                status = await handle.query("status", result_type=DunningStatus)
            except Exception:  # noqa: S112 - the webhook has not started it yet
                continue
            if seen.get(key) != status.stage:
                seen[key] = status.stage
                say(f"  … {handle.id}: {status.stage}")
            pending = await handle.query(QUERY, result_type=list[PendingApproval])
            if pending and seen.get(key) != "approval":
                seen[key] = "approval"
                for p in pending:
                    say(
                        f"  ⏸ {handle.id}: {p.action.describe()} waits for "
                        f"{' or '.join(p.approver_roles)} approval ({', '.join(p.policy_ids)})"
                    )
            if status.stage in (stage, "closed") or pending:
                done[key] = status
                waiting[key] = pending
        if time.monotonic() > deadline:
            missing = [handles[k].id for k in handles if k not in done]
            raise CliError(f"timed out waiting for {', '.join(missing)} (see .revbridge/logs/)")
        await asyncio.sleep(0.2)
    return done, waiting


def _row(
    c: DunningCustomer,
    suffix: str,
    status: DunningStatus,
    pending: list[PendingApproval],
    workflow_id: str,
    crm: Any,
    billing: Any,
    cfg: StackConfig,
) -> dict[str, Any]:
    ids = c.ids(suffix)
    logs = crm.audit_log(workflow_id)
    notes = billing.list_notes(NoteTarget.INVOICE, ids["invoice"])
    mail = _mailed(cfg, ids["invoice"])
    ui = f"http://{cfg.temporal.ip}:{cfg.temporal.ui_port}/namespaces/{cfg.temporal.namespace}/workflows/{quote(workflow_id, safe='')}"
    return {
        "company": c.company,
        "tier": c.tier,
        "invoice": ids["invoice"],
        "amount_due": c.invoice_total / 100,
        "failure_class": status.failure_class,
        "priority": status.priority,
        "case": {"id": status.case_id, "number": status.case_number},
        "crm_audit": [
            {"id": r["id"], "action": r["action"], "outcome": r["outcome"]} for r in logs
        ],
        "billing_notes": len(notes),
        "segment": status.segment,
        "reminders": f"{status.reminders_sent} of {status.reminders_total}",
        "emails": [m["subject"] for m in mail],
        "next_step_at": status.next_step_at.isoformat() if status.next_step_at else None,
        "attribution": status.attribution,
        "state": status.outcome or ("waiting for approval" if pending else status.stage),
        "actions": status.actions,
        "pending_approvals": [
            {
                "action_id": p.action_id,
                "action": p.action.describe(),
                "approver_roles": p.approver_roles,
                "eligible_approvers": p.eligible_approvers,
                "signal": p.signal_json(
                    p.eligible_approvers[0] if p.eligible_approvers else "you@example.com"
                ),
                "cli": f"revbridge approve {workflow_id} --action {p.action_id} --as "
                + (p.eligible_approvers[0] if p.eligible_approvers else "<your email>"),
            }
            for p in pending
        ],
        "workflow_id": workflow_id,
        "web_ui": ui,
    }


def _mailed(cfg: StackConfig, invoice_id: str) -> list[dict[str, Any]]:
    """What the sandbox's mail relay (or Marketing Cloud, when it is the channel) received
    about this invoice."""
    if os.environ.get("REVBRIDGE_EMAIL_CHANNEL") == "marketing-cloud":
        from cli.channels import mc_messages

        return [m for m in mc_messages(cfg) if invoice_id in m["subject"]]
    if "mailbox" not in cfg.sandbox.ports:
        return []
    try:
        rows = httpx.get(cfg.sandbox.url("mailbox") + "/_sandbox/mailbox/messages", timeout=5)
    except httpx.HTTPError:
        return []
    return [m for m in rows.json()["messages"] if invoice_id in m["subject"]]


def _print_summary(summary: dict[str, Any], say: Out, stopped: bool) -> None:
    say("")
    say(
        f"Summary ({summary['pair']['billing']} → {summary['pair']['crm']}, {summary['seconds']} s):"
    )
    for row in summary["customers"]:
        say(
            f"  {row['company']} ({row['tier']}), invoice {row['invoice']}, {row['amount_due']:,.2f} USD"
        )
        say(
            f"    failure: {row['failure_class']} → {summary['pair']['crm']} case {row['case']['number']} ({row['priority']} priority)"
        )
        actions = ", ".join(f"{a['action']}: {a['outcome']}" for a in row["crm_audit"])
        say(
            f"    audit: {len(row['crm_audit'])} {AUDIT_WORDS[summary['pair']['crm']]} [{actions}]; "
            f"{row['billing_notes']} {NOTE_WORDS[summary['pair']['billing']]}"
        )
        say(
            f"    playbook: {row['segment']}, reminder {row['reminders']} sent"
            + (f", next step {row['next_step_at'][:16]} UTC" if row["next_step_at"] else "")
            + (f"; emails: {'; '.join(row['emails'])}" if row["emails"] else "; no email")
        )
        state = row["state"] + (f" ({row['attribution']})" if row["attribution"] else "")
        say(f"    state: {state}   workflow: {row['workflow_id']}")
        for p in row["pending_approvals"]:
            say(f"    ⏸ {p['action']} waits for {' or '.join(p['approver_roles'])}:")
            say(f"      Web UI (signed in) → Send a Signal `approval` with {p['signal']}")
            say(
                f"      or: {p['cli']}"
                + ("  (with your REVBRIDGE_ID_TOKEN, docs/approvals.md)" if _verified() else "")
            )
        say(f"    {row['web_ui']}")
    for line in summary.get("marketing_cloud_ledger", []):
        say(f"  Marketing Cloud ledger: {line}")
    if stopped:
        say(
            "The stack was started for this run and has stopped; `revbridge dev` (or `make dev` in a "
            "checkout) keeps it (and the Web UI) up."
        )
    else:
        say(f"Web UI: {summary['web_ui']}")


def _verified() -> bool:
    """Approvers are verified on this stack (identity keys): a typed --as alone is refused."""
    from infra.codec import load_identity_keys

    return bool(load_identity_keys())
