"""``revbridge report recovery``: recovery rate and time to recover per draft variant (issue 22).

Each dunning run names the variants its reminders reached the customer as in its memo
(``draft_variants``: ``template``, ``llm``, or both; written by workflows/dunning/reminders.py
since ``dunning-drafting``). A run counts as ``llm`` when any of its reminders was a model's
draft, ``template`` when all were templates, ``none`` when no reminder went out (paid before the
first, or a run from before drafting). Its outcome is its result; its time to recover is from its
start to its close. Read from Temporal's visibility and results only: no worker needed, no
customer data (workflow IDs carry none).

Known limit: a run that continued as new counts from its last run's start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from domain.drafts import VARIANT_MEMO
from domain.dunning import WORKFLOW_TYPE, DunningOutcome, DunningResult

VARIANTS = ("llm", "template", "none")
#: outcomes that are not a dunning decision (nothing to recover)
_NOT_DUNNING = {DunningOutcome.ALREADY_PAID.value, DunningOutcome.UNKNOWN_INVOICE.value}


@dataclass(frozen=True)
class RunRow:
    variant: str
    outcome: str
    started: datetime
    closed: datetime


def variant_of(memo: dict[str, Any]) -> str:
    raw = memo.get(VARIANT_MEMO)
    names = set(str(raw).split(",")) if raw else set()
    if "llm" in names:
        return "llm"
    return "template" if "template" in names else "none"


def summarize(rows: list[RunRow]) -> dict[str, dict[str, Any]]:
    """Per variant: runs, recovered, recovery rate, median and mean hours to recover."""
    out: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        runs = [r for r in rows if r.variant == variant and r.outcome not in _NOT_DUNNING]
        won = [r for r in runs if r.outcome == DunningOutcome.RECOVERED.value]
        hours = [(r.closed - r.started).total_seconds() / 3600 for r in won]
        out[variant] = {
            "runs": len(runs),
            "recovered": len(won),
            "recovery_rate": round(len(won) / len(runs), 3) if runs else None,
            "median_hours_to_recover": round(statistics.median(hours), 1) if hours else None,
            "mean_hours_to_recover": round(statistics.fmean(hours), 1) if hours else None,
        }
    return out


def render(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        f"{'variant':<10} {'runs':>6} {'recovered':>10} {'rate':>7} {'median h':>9} {'mean h':>8}"
    ]

    def fmt(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{v * 100:.1f}%" if pct else str(v)

    for variant, s in summary.items():
        lines.append(
            f"{variant:<10} {s['runs']:>6} {s['recovered']:>10} "
            f"{fmt(s['recovery_rate'], True):>7} {fmt(s['median_hours_to_recover']):>9} "
            f"{fmt(s['mean_hours_to_recover']):>8}"
        )
    return "\n".join(lines)


async def collect(client: Any, extra_query: str = "") -> list[RunRow]:
    """Every completed dunning run the visibility store holds (optionally narrowed)."""
    query = f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Completed'"
    if extra_query:
        query += f" AND ({extra_query})"
    rows: list[RunRow] = []
    async for wf in client.list_workflows(query):
        memo = await wf.memo()
        handle = client.get_workflow_handle(wf.id, run_id=wf.run_id, result_type=DunningResult)
        try:
            result = await handle.result(follow_runs=False)
        except ValidationError:
            # a run of that type name whose result is not a dunning result (another program's
            # workflow on a shared namespace, a test stub): not a dunning run to count
            continue
        rows.append(
            RunRow(
                variant=variant_of(memo),
                outcome=str(result.outcome.value),
                started=wf.start_time,
                closed=wf.close_time or wf.start_time,
            )
        )
    return rows


async def rows_of(client: Any, workflow_ids: list[str]) -> list[RunRow]:
    """The same rows for named runs, read from each run's description and result (a server
    without a visibility store, e.g. the time-skipping test server the recovery bench runs on).
    Runs not completed (open, terminated, failed) are left out, as ``collect`` leaves them."""
    from temporalio.client import WorkflowExecutionStatus

    rows: list[RunRow] = []
    for wf_id in workflow_ids:
        handle = client.get_workflow_handle(wf_id, result_type=DunningResult)
        desc = await handle.describe()
        if desc.status is not WorkflowExecutionStatus.COMPLETED or desc.close_time is None:
            continue
        result = await handle.result(follow_runs=False)
        rows.append(
            RunRow(
                variant=variant_of(await desc.memo()),
                outcome=str(result.outcome.value),
                started=desc.start_time,
                closed=desc.close_time,
            )
        )
    return rows


async def recovery(as_json: bool, extra_query: str = "") -> str:
    from temporalio.service import RPCError, RPCStatusCode

    from cli.approvals import connect
    from cli.config import CliError

    client = await connect()
    try:
        rows = await collect(client, extra_query)
    except RPCError as exc:  # a --query the visibility store cannot read: the user's input
        if exc.status != RPCStatusCode.INVALID_ARGUMENT:
            raise
        raise CliError(f"--query: {exc.message.splitlines()[0][:300]}") from None
    summary = summarize(rows)
    return json.dumps(summary, indent=1) if as_json else render(summary)


def cmd_report(args: argparse.Namespace) -> None:
    print(asyncio.run(recovery(args.json, args.query or "")))


def add_report_command(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Wire ``report recovery`` into ``cli.main.parser()``: call with its local ``add`` helper."""
    sp = add("report", cmd_report, "reports: recovery rate per draft variant", False)
    sub = sp.add_subparsers(dest="report_command", required=True)
    rec = sub.add_parser(
        "recovery", help="recovery rate and time to recover per draft variant (template / llm)"
    )
    rec.add_argument("--json", action="store_true", help="print JSON")
    rec.add_argument(
        "--query",
        help="narrow the runs with a visibility query (times in RFC 3339), e.g. "
        "\"StartTime > '2026-12-01T00:00:00Z'\"",
    )
    return sp
