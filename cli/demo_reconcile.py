"""``revbridge demo --scenario reconcile``: a day of billing ↔ CRM reconciliation, end to end.

Seeds a small book in the running stack's Chargebee and CRM sandboxes — clean customers, and one
customer per planted discrepancy (a won deal without a subscription, a subscription that
disagrees with its deal, an invoice line the subscription does not sell, an invoice paid without
a payment, an over- and an underpayment, a drifted MRR on the CRM account, a billing customer
without an account and a customer account without billing) — then runs the daily
``ReconciliationWorkflow`` the Schedule would start, and shows what it found, what it fixed by
itself (the MRR, restored from billing), what waits for finance or RevOps, and where the HTML
report is. ``cli/demo.py`` calls :func:`scenario` with the stack config.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.client import Client

from cli.config import CliError, StackConfig
from connectors.registry import build_billing, build_crm
from domain import reconcile as rx
from domain.settings import Settings
from harness.drivers import drivers
from harness.reconcile_book import planted_kinds, seed
from infra.codec import data_converter

WAIT_S = 120.0


def check_pair(billing: str, crm: str) -> None:
    """The pairs this demo runs on (cli/demo.py asks before it starts a stack)."""
    if billing != "chargebee":
        raise CliError(
            "the reconcile demo seeds its book in Chargebee: run it with --billing chargebee"
        )


async def run_scenario(
    settings: Settings, billing: Any, crm: Any, client: Client, say: Callable[[str], None],
    prefix: str,
) -> dict[str, Any]:  # fmt: skip
    check_pair(settings.billing, settings.crm)
    cb, crm_driver = drivers(settings, billing, crm)
    planted = await asyncio.to_thread(seed, cb, crm_driver, None, prefix)  # type: ignore[arg-type]
    kinds = planted_kinds(None)
    say(
        f"Seeded {len(planted.clean)} clean customers and {len(kinds)} with a planted "
        f"discrepancy in chargebee and {settings.crm}."
    )
    handle = await client.start_workflow(
        rx.WORKFLOW_TYPE,
        rx.ReconcileInput(),
        id=f"reconcile-demo-{prefix}",
        task_queue=settings.task_queue,
        result_type=rx.ReconcileResult,
    )
    say(f"Started {handle.id} (the daily schedule starts the same workflow at 05:00 UTC).")
    result = await asyncio.wait_for(handle.result(), timeout=WAIT_S)
    mine = {x for who in planted.who.values() for x in who if x}
    say(f"  ✓ found {result.found} discrepancies in {result.scan_seconds:.1f} s")
    for kind, n in sorted(result.by_kind.items()):
        say(f"    {n} × {kind}")
    say(f"  ✓ fixed automatically: {result.auto_fixed} (a drifted MRR restored from billing)")
    say(f"  … waiting for finance or RevOps: {result.sent_for_approval} (revbridge pending)")
    say(f"  report: {result.report_html}")
    say("  the open exceptions in the CRM: revbridge reconcile --open")
    return {
        "workflow_id": handle.id,
        "planted": sorted(k.value for k in kinds.values()),
        "found": result.found,
        "by_kind": result.by_kind,
        "auto_fixed": result.auto_fixed,
        "sent_for_approval": result.sent_for_approval,
        "report_html": result.report_html,
        "report_csv": result.report_csv,
        "records": sorted(mine),
    }


async def scenario(cfg: StackConfig, say: Callable[[str], None]) -> dict[str, Any]:
    settings = Settings.from_env(cfg.service_env())
    client = await Client.connect(
        cfg.temporal.address, namespace=cfg.temporal.namespace, data_converter=data_converter()
    )
    prefix = f"rx{datetime.now(UTC):%m%d%H%M%S}"
    return await run_scenario(
        settings, build_billing(settings), build_crm(settings), client, say, prefix
    )


def print_summary(summary: dict[str, Any], say: Callable[[str], None]) -> None:
    say(
        f"\nReconciliation demo: {summary['found']} found ({len(summary['planted'])} planted), "
        f"{summary['auto_fixed']} fixed automatically, {summary['sent_for_approval']} waiting "
        f"for a person. Open {summary['report_html']} in a browser."
    )
