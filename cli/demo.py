"""``revbridge demo``: failed Chargebee payments become Salesforce cases, end to end, live.

Seeds three realistic customers in both sandboxes, makes their card payments fail through the
official Chargebee client (so the sandbox emits the real, Basic-auth'd ``payment_failed`` webhook),
follows the dunning workflows as they run, pays one invoice to show a recovery, and summarizes.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from chargebee.api_error import PaymentError
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from cli.config import CliError, StackConfig
from cli.stack import Stack, stack_health
from connectors.chargebee import ChargebeeBilling
from connectors.salesforce import SalesforceCrm
from domain.dunning import DunningResult, DunningStatus
from domain.ids import dunning_workflow_id
from domain.models import NoteTarget
from domain.settings import Settings
from sandbox.scenarios import DEMO_CUSTOMERS, DunningCustomer, chargebee_seed, salesforce_seed

WAIT_S = 45.0


class Out:
    """Progress for people; with --json progress goes to stderr and stdout carries only JSON."""

    def __init__(self, as_json: bool) -> None:
        self.stream = sys.stderr if as_json else sys.stdout

    def __call__(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


async def run_demo(
    cfg: StackConfig, config_path: Path, as_json: bool = False, keep: bool = False
) -> None:
    say = Out(as_json)
    started = time.monotonic()
    health = await stack_health(cfg)
    stack: Stack | None = None
    if all(health.values()):
        say("Using the running stack.")
    elif any(health.values()):
        up = [k for k, v in health.items() if v]
        down = [k for k, v in health.items() if not v]
        raise CliError(
            f"a partial stack is running ({', '.join(up)} up; {', '.join(down)} down): "
            "stop it, or start all of it with `make dev`"
        )
    else:
        say("Starting the embedded stack (Temporal dev server, sandboxes, worker, webhooks):")
        stack = Stack(cfg, config_path)
        await stack.start(progress=say)
    try:
        summary = await _scenario(cfg, say)
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
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary, say, stopped=stack is not None and not keep)


async def _scenario(cfg: StackConfig, say: Out) -> dict[str, Any]:
    settings = Settings.from_env(cfg.service_env())
    assert settings.chargebee and settings.salesforce
    billing = ChargebeeBilling(settings.chargebee, timeout_s=10)
    crm = SalesforceCrm(settings.salesforce, timeout_s=10)
    client = await Client.connect(
        cfg.temporal.address,
        namespace=cfg.temporal.namespace,
        data_converter=pydantic_data_converter,
    )
    suffix = datetime.now(UTC).strftime("%m%d%H%M%S")
    customers = DEMO_CUSTOMERS
    async with httpx.AsyncClient(timeout=10) as http:
        for vendor, data in (
            ("chargebee", chargebee_seed(customers, suffix)),
            ("salesforce", salesforce_seed(customers, suffix)),
        ):
            resp = await http.post(cfg.sandbox.url(vendor) + "/_sandbox/seed", json=data)
            if resp.status_code != 200:
                raise CliError(f"seeding the {vendor} sandbox failed: HTTP {resp.status_code}")
    say(
        f"Seeded {len(customers)} customers in Chargebee and Salesforce: "
        + ", ".join(c.company for c in customers)
    )

    for c in customers:
        ids = c.ids(suffix)
        try:
            await asyncio.to_thread(billing.client.Invoice.collect_payment, ids["invoice"])
        except PaymentError:
            say(
                f"  ✗ Chargebee declined {c.company}'s invoice {ids['invoice']} "
                f"({c.invoice_total / 100:,.2f} USD): {c.decline_code}"
            )
        else:
            raise CliError(
                f"the sandbox accepted a payment it should have declined ({ids['invoice']})"
            )

    handles = {
        c.key: client.get_workflow_handle(
            dunning_workflow_id("chargebee", c.ids(suffix)["invoice"]), result_type=DunningResult
        )
        for c in customers
    }
    statuses = await _follow(handles, "waiting for payment", say)

    recovered = customers[-1]
    rec_ids = recovered.ids(suffix)
    say(f"{recovered.company} pays invoice {rec_ids['invoice']} by bank transfer…")
    await asyncio.to_thread(
        billing.client.Invoice.record_payment,
        rec_ids["invoice"],
        {
            "transaction": {
                "amount": recovered.invoice_total,
                "payment_method": "bank_transfer",
                "date": int(time.time()),
            }
        },
    )
    result = await asyncio.wait_for(handles[recovered.key].result(), timeout=WAIT_S)
    say(f"  ✓ {recovered.company}: {result.outcome}")
    statuses[recovered.key] = await handles[recovered.key].query(
        "status", result_type=DunningStatus
    )

    rows = []
    for c in customers:
        rows.append(
            await asyncio.to_thread(
                _row, c, suffix, statuses[c.key], handles[c.key].id, crm, billing, cfg
            )
        )
    return {
        "pair": {"billing": "chargebee", "crm": "salesforce"},
        "web_ui": cfg.ui_url(),
        "customers": rows,
    }


async def _follow(handles: dict[str, Any], stage: str, say: Out) -> dict[str, DunningStatus]:
    seen: dict[str, str] = {}
    done: dict[str, DunningStatus] = {}
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
            if status.stage in (stage, "closed"):
                done[key] = status
        if time.monotonic() > deadline:
            missing = [handles[k].id for k in handles if k not in done]
            raise CliError(f"timed out waiting for {', '.join(missing)} (see .revbridge/logs/)")
        await asyncio.sleep(0.2)
    return done


def _row(
    c: DunningCustomer,
    suffix: str,
    status: DunningStatus,
    workflow_id: str,
    crm: SalesforceCrm,
    billing: ChargebeeBilling,
    cfg: StackConfig,
) -> dict[str, Any]:
    ids = c.ids(suffix)
    logs = crm.audit_log(workflow_id)
    notes = billing.list_notes(NoteTarget.INVOICE, ids["invoice"])
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
            {"id": r["Id"], "action": r["Action__c"], "outcome": r["Outcome__c"]} for r in logs
        ],
        "billing_notes": len(notes),
        "state": status.outcome or status.stage,
        "workflow_id": workflow_id,
        "web_ui": ui,
    }


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
            f"    failure: {row['failure_class']} → Salesforce case {row['case']['number']} ({row['priority']} priority)"
        )
        actions = ", ".join(f"{a['action']}: {a['outcome']}" for a in row["crm_audit"])
        say(
            f"    audit: {len(row['crm_audit'])} AI_Agent_Log__c [{actions}]; {row['billing_notes']} Chargebee invoice comment(s)"
        )
        say(f"    state: {row['state']}   workflow: {row['workflow_id']}")
        say(f"    {row['web_ui']}")
    if stopped:
        say(
            "The stack was started for this run and has stopped; `make dev` keeps it (and the Web UI) up."
        )
    else:
        say(f"Web UI: {summary['web_ui']}")
