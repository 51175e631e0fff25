"""``revbridge reconcile [--since DATE] [--dry-run] [--open]``: the daily billing ↔ CRM
reconciliation, now.

Without ``--open`` it starts a ``ReconciliationWorkflow`` on the deployment's worker (the same
run the daily Schedule starts; ``--dry-run`` reads, checks and writes the report only) and prints
its summary and the report's path. ``--open`` prints the exceptions still open, read from the
CRM where people work them (``Billing_Exception__c``): no workflow, nothing written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Callable
from datetime import UTC, date, datetime

from cli.config import CliError, StackConfig
from connectors.base import ConnectorError
from connectors.reconcile import crm_reader
from connectors.registry import build_crm
from domain import reconcile as rx
from domain.settings import Settings


def open_exceptions(settings: Settings) -> list[dict]:
    try:
        book = crm_reader(build_crm(settings))
        return book.open_exceptions()
    except ConnectorError as exc:
        raise CliError(str(exc)) from None


def render_open(rows: list[dict], today: date) -> str:
    if not rows:
        return "no open exceptions"
    lines = [f"{len(rows)} open exception(s):"]
    for r in rows:
        first = date.fromisoformat(r["First_Seen__c"]) if r.get("First_Seen__c") else today
        who = r.get("Account__c") or r.get("Billing_Customer_Id__c") or "-"
        lines.append(
            f"  {r['Exception_Id__c']}  {r.get('Severity__c') or '':6} "
            f"{r.get('Kind__c') or '':26} {(today - first).days:>3}d  {r.get('Status__c')}  "
            f"{who}  → {r.get('Proposed_Fix__c') or ''}"
            + (f" ({r['Approver_Role__c']})" if r.get("Approver_Role__c") else "")
        )
    return "\n".join(lines)


async def run_now(settings: Settings, since: date | None, dry_run: bool) -> rx.ReconcileResult:
    from cli.approvals import connect

    client = await connect()
    now = datetime.now(UTC)
    return await client.execute_workflow(
        rx.WORKFLOW_TYPE,
        rx.ReconcileInput(since=since, dry_run=dry_run),
        id=f"{rx.WORKFLOW_ID}-manual-{now:%Y%m%dT%H%M%S}",
        task_queue=settings.task_queue,
        result_type=rx.ReconcileResult,
    )


def render_result(r: rx.ReconcileResult) -> str:
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(r.by_kind.items())) or "none"
    return "\n".join(
        [
            f"reconciliation of {r.today}{' (dry run: nothing written)' if r.dry_run else ''}: "
            f"{r.open} open ({r.new} new), {r.resolved} resolved, {r.auto_fixed} fixed "
            f"automatically, {r.sent_for_approval} sent for approval",
            f"  read: {', '.join(f'{v} {k}' for k, v in r.counts.items())} "
            f"in {r.scan_seconds:.1f} s",
            f"  open by kind: {kinds}",
            f"  report: {r.report_html}",
            f"  csv:    {r.report_csv}",
        ]
    )


def cmd_reconcile(args: argparse.Namespace) -> None:
    from cli.services import apply_stack_defaults

    apply_stack_defaults(StackConfig.load(args.config) if args.config else None)
    try:  # bad values first, whatever else is asked (a bad --since was ignored with --open)
        since = date.fromisoformat(args.since) if args.since is not None else None
    except ValueError:
        raise CliError(f"--since wants a date (YYYY-MM-DD), not {args.since!r}") from None
    if args.open and (since is not None or args.dry_run):
        raise CliError("--open lists the open exceptions; --since and --dry-run are for a run")
    settings = Settings.from_env(os.environ)
    if args.open:
        rows = open_exceptions(settings)
        print(json.dumps(rows, indent=2) if args.json else render_open(rows, date.today()))
        return
    from cli.approvals import require_worker

    asyncio.run(require_worker(settings.task_queue))  # run_now waits for the run's result
    result = asyncio.run(run_now(settings, since, args.dry_run))
    print(result.model_dump_json(indent=2) if args.json else render_result(result))


def add_reconcile_command(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Wire ``reconcile`` into ``cli.main.parser()``: call with its local ``add`` helper."""
    sp = add(
        "reconcile",
        cmd_reconcile,
        "reconcile billing and the CRM now (the daily run), or list the open exceptions",
        False,
    )
    sp.add_argument("--since", help="only deals closed, invoices and payments on/after YYYY-MM-DD")
    sp.add_argument("--dry-run", action="store_true", help="read, check and report; write nothing")
    sp.add_argument("--open", action="store_true", help="print the open exceptions (from the CRM)")
    sp.add_argument("--json", action="store_true", help="print JSON")
    return sp
