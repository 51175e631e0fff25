"""``revbridge sync conflicts | resolve | backfill | status``: the golden customer record from a
terminal (issue 19).

- ``conflicts``: every shared field waiting for a person (both values, their sources and times).
- ``resolve CUSTOMER --field F --take crm|billing --as EMAIL``: the same decision the Web UI's
  "Send a Signal" → ``approval`` makes (``approve`` takes the CRM value, ``reject`` keeps
  billing's), through the workflow's ``decide`` update (``revbridge approve``'s path: the answer
  is immediate, a refusal says why, verified identities where approvers are verified).
- ``backfill [--dry-run]``: link the existing book (``domain/linking.py``), a workflow that
  resumes where it stopped; prints the report.
- ``status CUSTOMER``: the customer's golden record and sync status.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowFailureError
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from cli.approvals import connect, decide, require_worker
from cli.config import CliError, StackConfig
from domain import golden
from domain import temporal as names
from domain.approvals import Decision
from domain.golden import BackfillInput, BackfillReport, Conflict, GoldenRecord, SyncStatus
from domain.settings import Settings
from domain.starts import start_options

CONFLICTS_QUERY = (
    f"{names.USE_CASE_KEY.name} = '{names.UseCase.ACCOUNT_SYNC.value}' AND "
    f"{names.APPROVAL_KEY.name} = 'pending' AND ExecutionStatus = 'Running'"
)


def _settings(args: argparse.Namespace) -> Settings:
    from cli.services import apply_stack_defaults

    apply_stack_defaults(StackConfig.load(args.config) if args.config else None)
    return Settings.from_env(os.environ)


def _workflow_id(settings: Settings, customer: str) -> str:
    if customer.startswith("account:"):
        return customer
    try:
        return golden.account_workflow_id(settings.billing, customer)
    except ValueError as exc:
        raise CliError(f"{customer[:80]!r}: {exc}") from None


async def open_conflicts(client: Client) -> list[tuple[str, Conflict]]:
    found: list[tuple[str, Conflict]] = []
    async for wf in client.list_workflows(CONFLICTS_QUERY):
        try:
            rows = await client.get_workflow_handle(wf.id).query(
                "conflicts", result_type=list[Conflict]
            )
        except RPCError:
            continue  # closed meanwhile
        found.extend((wf.id, c) for c in rows)
    return found


def render_conflicts(rows: list[tuple[str, Conflict]]) -> str:
    if not rows:
        return "no conflicts waiting"
    lines = []
    for wf_id, c in rows:
        lines += [
            f"{wf_id}  {c.field}  (action {c.action_id})",
            f"  billing: {c.billing_value!r} at {c.billing_at:%Y-%m-%d %H:%M:%S} UTC",
            f"  CRM:     {c.crm_value!r} at {c.crm_at:%Y-%m-%d %H:%M:%S} UTC",
            f"  → revbridge sync resolve {wf_id} --field {c.field} --take crm|billing --as <you>",
        ]
    return "\n".join(lines)


async def conflicts(as_json: bool) -> str:
    rows = await open_conflicts(await connect())
    if as_json:
        return json.dumps(
            [{"workflow_id": w, **c.model_dump(mode="json")} for w, c in rows], indent=2
        )
    return render_conflicts(rows)


async def resolve(workflow_id: str, field: str, take: str, approver: str, note: str) -> None:
    client = await connect()
    try:
        rows = await client.get_workflow_handle(workflow_id).query(
            "conflicts", result_type=list[Conflict]
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no running account sync {workflow_id}") from None
        why = exc.status.name if exc.status else exc
        raise CliError(f"Temporal refused the query: {why}") from None
    match = [c for c in rows if c.field == field]
    if not match:
        raise CliError(f"no conflict on {field} for {workflow_id}")
    decision = Decision.APPROVE if take == "crm" else Decision.REJECT
    await decide(workflow_id, match[0].action_id, approver, decision, note)


async def backfill(settings: Settings, dry_run: bool, progress: bool = True) -> BackfillReport:
    client = await connect()
    wf_id = golden.backfill_workflow_id(settings.billing, settings.crm)
    if dry_run:
        wf_id += ":dry-run"
    handle = await client.start_workflow(
        golden.BACKFILL_WORKFLOW_TYPE,
        BackfillInput(billing=settings.billing, crm=settings.crm, dry_run=dry_run),
        id=wf_id,
        task_queue=settings.task_queue,
        search_attributes=TypedSearchAttributes(
            [
                SearchAttributePair(names.USE_CASE_KEY, names.UseCase.ACCOUNT_SYNC.value),
                SearchAttributePair(names.APPROVAL_KEY, "none"),
            ]
        ),
        static_summary=f"Account sync backfill ({settings.billing} × {settings.crm})",
        result_type=BackfillReport,
        **start_options(golden.BACKFILL_WORKFLOW_TYPE),
    )
    waiting = asyncio.ensure_future(handle.result())
    while not waiting.done():
        await asyncio.wait({waiting}, timeout=2)
        if progress and not waiting.done():
            try:
                s = await handle.query("status", result_type=BackfillReport)
                print(f"  {s.stage}; written {s.written}", file=sys.stderr)
            except RPCError:
                pass
    try:
        return waiting.result()
    except WorkflowFailureError as exc:
        inner: BaseException = exc
        while inner.__cause__ is not None or getattr(inner, "cause", None) is not None:
            inner = getattr(inner, "cause", None) or inner.__cause__  # type: ignore[assignment]
        cause = getattr(inner, "message", None) or str(inner)
        raise CliError(
            f"backfill stopped: {cause}; run it again to resume (links written are kept)"
        ) from None


def render_backfill(r: BackfillReport) -> str:
    lines = [
        ("Backfill (dry run): " if r.dry_run else "Backfill: ")
        + ", ".join(f"{k} {v}" for k, v in r.counts.items()),
        f"  linked already: {r.linked_already}; to write: {r.to_write}; written: {r.written} "
        f"in {r.bulk_calls} bulk call(s); failed: {len(r.failed)}",
        f"  reads: billing {r.billing_reads}, CRM {r.crm_reads}; {r.stage}",
    ]
    for customer, candidates in list(r.review.items())[:20]:
        lines.append(f"  review {customer}: {', '.join(candidates)}")
    if len(r.review) > 20:
        lines.append(f"  … and {len(r.review) - 20} more for review (--json lists all)")
    return "\n".join(lines)


async def status(workflow_id: str) -> dict[str, Any]:
    handle = (await connect()).get_workflow_handle(workflow_id)
    try:
        st = await handle.query("status", result_type=SyncStatus)
        record = await handle.query("golden", result_type=GoldenRecord)
    except RPCError as exc:
        why = exc.status.name if exc.status else exc
        raise CliError(f"no account sync {workflow_id} ({why})") from None
    return {
        "status": st.model_dump(mode="json"),
        "golden": {
            name: {"value": f.value, "source": f.source.value, "at": f.changed_at.isoformat()}
            for name, f in sorted(record.fields.items())
        },
    }


def cmd_sync(args: argparse.Namespace) -> None:
    settings = _settings(args)
    what = args.sync_command
    if what == "conflicts":
        print(asyncio.run(conflicts(args.json)))
    elif what == "resolve":
        asyncio.run(
            resolve(
                _workflow_id(settings, args.customer),
                args.field,
                args.take,
                args.approver,
                args.note,
            )
        )
    elif what == "backfill":
        asyncio.run(require_worker(settings.task_queue))  # it waits for the run
        report = asyncio.run(backfill(settings, args.dry_run))
        print(report.model_dump_json(indent=2) if args.json else render_backfill(report))
    elif what == "status":
        print(json.dumps(asyncio.run(status(_workflow_id(settings, args.customer))), indent=2))


def add_sync_command(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Wire ``sync`` into ``cli.main.parser()``: call with its local ``add`` helper."""
    sp = add("sync", cmd_sync, "the golden customer record: conflicts, backfill, status", False)
    sub = sp.add_subparsers(dest="sync_command", required=True)
    c = sub.add_parser("conflicts", help="shared fields changed on both sides, waiting for you")
    c.add_argument("--json", action="store_true")
    r = sub.add_parser("resolve", help="pick the value of a conflicted field")
    r.add_argument("customer", help="the billing customer ID (or the account:… workflow ID)")
    r.add_argument("--field", required=True)
    r.add_argument("--take", required=True, choices=["crm", "billing"])
    r.add_argument("--as", dest="approver", required=True, help="your email (an approver)")
    r.add_argument("--note", default="")
    b = sub.add_parser("backfill", help="link the existing book (creates nothing)")
    b.add_argument("--dry-run", action="store_true", help="plan and report, write nothing")
    b.add_argument("--json", action="store_true")
    s = sub.add_parser("status", help="a customer's golden record and sync status")
    s.add_argument("customer")
    return sp
