"""``revbridge revenue close [--month YYYY-MM] [--dry-run]`` and ``revbridge revenue entries``.

``close`` starts the month close (``RevenuePostingWorkflow``, the run the monthly Schedule
starts; default: last month) on the deployment's worker. ``--dry-run`` waits for it and prints
the journal entries it would propose, asking nobody and posting nothing. Without it the command
waits until the run proposes the entries to finance (or finds nothing new) and prints them with
how to approve: ``revbridge approvals`` lists it, ``revbridge approve`` decides, or the Temporal
Web UI. A close of a month is one workflow ID per billing platform and month; closing a month
again after it finished is allowed (a later credit note) and posts only what is not posted.

``entries --month`` prints RevBridge's journal entries for the month as NetSuite holds them
(SuiteQL): read-only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from cli.config import CliError, StackConfig
from connectors.base import ConnectorError
from connectors.registry import build_erp
from domain.approvals import QUERY, PendingApproval
from domain.revenue import (
    WORKFLOW_TYPE,
    RevenueCloseInput,
    RevenueCloseResult,
    close_workflow_id,
    format_minor,
    previous_month,
)
from domain.settings import Settings

_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
WAIT_S = 120.0


def month_arg(value: str | None) -> str:
    if value is None:
        return previous_month(datetime.now(UTC).date())
    if not _MONTH.match(value):
        raise CliError(f"--month wants YYYY-MM, not {value!r}")
    return value


def render(r: RevenueCloseResult, workflow_id: str, pending: PendingApproval | None) -> str:
    head = {
        "dry_run": "dry run: nothing asked, nothing posted",
        "nothing_new": "nothing new to post",
        "executed": f"posted (approved by {r.approver})",
        "reading": "waiting for finance's approval" if pending else "still reading billing",
    }.get(r.outcome, r.outcome)
    lines = [
        f"revenue close {r.month} ({workflow_id}): {head}",
        f"  read {r.documents} billing documents, {r.lines} lines; totals: {r.totals or 'none'}",
    ]
    changed = "changed since it was posted: " + (
        "the difference is adjusted below" if r.adjustments else "left for finance"
    )
    for e in [*r.entries, *r.adjustments]:
        state = f"posted as {r.posted[e.external_id]}" if e.external_id in r.posted else (
            changed if e.external_id in r.changed else "to post")  # fmt: skip
        if e in r.adjustments:
            state = f"adjusting entry, {state}"
        lines.append(f"  {e.external_id} ({e.date}, {state})")
        for x in e.lines:
            side = f"Dr {format_minor(x.debit, e.currency)}" if x.debit else (
                f"Cr {format_minor(x.credit, e.currency)}")  # fmt: skip
            lines.append(f"      {x.account:>8}  {side:>22}  {x.memo}")
    if pending is not None:
        lines += [
            f"  approval {pending.action_id}: eligible {', '.join(pending.eligible_approvers)}",
            f"  approve: revbridge approve {workflow_id} --action {pending.action_id} "
            "--as <finance email>   (or: revbridge approvals; the Temporal Web UI)",
        ]
    return "\n".join(lines)


async def close(settings: Settings, month: str, dry_run: bool, wait_s: float = WAIT_S) -> str:
    from cli.approvals import connect

    client = await connect()
    wf_id = close_workflow_id(settings.billing, month)
    if dry_run:
        wf_id += f":dry-run-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    try:
        handle: WorkflowHandle = await client.start_workflow(
            WORKFLOW_TYPE,
            RevenueCloseInput(billing=settings.billing, month=month, dry_run=dry_run),
            id=wf_id,
            task_queue=settings.task_queue,
            result_type=RevenueCloseResult,
            # closing a month again (a late credit note) is safe: posted entries are skipped
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle(wf_id, result_type=RevenueCloseResult)
        print(f"(the close of {month} is already running: showing it)")
    deadline = time.monotonic() + wait_s
    while True:
        desc = await handle.describe()
        if desc.status is not None and desc.status.name != "RUNNING":
            result = await handle.result()
            return render(result, wf_id, None)
        status = await handle.query("status", result_type=RevenueCloseResult)
        pending = await handle.query(QUERY, result_type=list[PendingApproval])
        if pending:
            return render(status, wf_id, pending[0])
        if time.monotonic() > deadline:
            return render(status, wf_id, None)
        await asyncio.sleep(0.5)


def entries(settings: Settings, month: str) -> list[dict]:
    erp = build_erp(settings)
    if erp is None:
        raise CliError("no ERP is configured: set NETSUITE_ACCOUNT_ID and its credentials")
    try:
        return [e.model_dump(mode="json") for e in erp.find_entries(month)]
    except ConnectorError as exc:
        raise CliError(str(exc)) from None
    finally:
        erp.close()


def cmd_revenue(args: argparse.Namespace) -> None:
    if args.config:  # the stack's settings, as cli.services.apply_stack_defaults sets them
        # (not imported from there: cli.services imports this module for the NetSuite sandbox)
        from cli.channels import channel_env

        cfg = StackConfig.load(args.config)
        for key, value in {**cfg.service_env(), **channel_env(cfg), **erp_env(cfg)}.items():
            os.environ.setdefault(key, value)
    settings = Settings.from_env(os.environ)
    month = month_arg(args.month)
    if args.revenue_command == "entries":
        rows = entries(settings, month)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{len(rows)} RevBridge journal entr{'y' if len(rows) == 1 else 'ies'} "
                  f"for {month} in NetSuite")  # fmt: skip
            for r in rows:
                print(f"  {r['internal_id']:>8}  {r['external_id']}  {r['tran_date']}  {r['memo']}")
        return
    if month > f"{datetime.now(UTC):%Y-%m}":  # a typo's year: revenue of days still to come
        raise CliError(f"--month {month} has not begun: a close recognizes the days that passed")
    from cli.approvals import require_worker

    asyncio.run(require_worker(settings.task_queue))  # close waits for the run's proposal
    print(asyncio.run(close(settings, month, args.dry_run)))


def add_revenue_command(add: Callable[..., argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Wire ``revenue`` into ``cli.main.parser()``: call with its local ``add`` helper."""
    sp = add("revenue", cmd_revenue, "revenue recognition: close a month, see its entries", False)
    sub = sp.add_subparsers(dest="revenue_command", required=True)
    c = sub.add_parser("close", help="close a month: propose its journal entries to finance")
    c.add_argument("--month", help="YYYY-MM (default: last month)")
    c.add_argument("--dry-run", action="store_true", help="show the entries; ask and post nothing")
    e = sub.add_parser("entries", help="RevBridge's journal entries of a month, from NetSuite")
    e.add_argument("--month", help="YYYY-MM (default: last month)")
    e.add_argument("--json", action="store_true", help="print JSON")
    return sp


# --- the local stack's NetSuite sandbox -----------------------------------------------------------
# On when the stack file lists ``sandbox.ports.netsuite`` or the environment asks for an ERP
# (``REVBRIDGE_ERP=netsuite``; ``revbridge demo --scenario revenue`` sets it). Every piece of the
# stack applies the same rule (the worker and the sandbox inherit the environment and read the same
# stack file): :func:`with_erp` adds the port (health checks, waits), :func:`erp_env` points the
# services at the sandbox with TBA credentials (what build_erp reads: NETSUITE_*; the environment
# still wins), :func:`erp_emulators` builds it.

NETSUITE = "netsuite"
NETSUITE_PORT = 8714
# credentials of the local emulator only (not secrets: nothing real is behind them)
NS_ACCOUNT = "1234567_SB1"
NS_TBA = ("revbridge-ns-consumer", "ns-local-consumer-secret", "revbridge-ns-token", "ns-local-ts")


def erp_wanted(cfg: StackConfig, env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    if env.get("REVBRIDGE_ERP") not in (None, "", NETSUITE):  # a typo, not silently no ERP
        raise CliError(f"REVBRIDGE_ERP must be {NETSUITE} (or unset): {env['REVBRIDGE_ERP']!r}")
    return NETSUITE in cfg.sandbox.ports or env.get("REVBRIDGE_ERP") == NETSUITE


def with_erp(cfg: StackConfig, env: Mapping[str, str] | None = None) -> StackConfig:
    if not erp_wanted(cfg, env) or NETSUITE in cfg.sandbox.ports:
        return cfg
    sandbox = cfg.sandbox.model_copy(
        update={"ports": {**cfg.sandbox.ports, NETSUITE: NETSUITE_PORT}}
    )
    return cfg.model_copy(update={"sandbox": sandbox})


def erp_env(cfg: StackConfig, env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    if not erp_wanted(cfg, env):
        return {}
    cfg = with_erp(cfg, env)
    key, secret, token, token_secret = NS_TBA
    out = {
        "NETSUITE_ACCOUNT_ID": NS_ACCOUNT,
        "NETSUITE_API_URL": cfg.sandbox.url(NETSUITE),
        "NETSUITE_CONSUMER_KEY": key,
        "NETSUITE_CONSUMER_SECRET": secret,
        "NETSUITE_TOKEN_ID": token,
        "NETSUITE_TOKEN_SECRET": token_secret,
    }
    return {**out, **{k: v for k, v in env.items() if k.startswith("NETSUITE_")}}


def erp_emulators(cfg: StackConfig) -> dict[Any, int]:
    """The NetSuite sandbox (``revbridge sandbox``) on its port, when the stack runs one."""
    cfg = with_erp(cfg)
    if not erp_wanted(cfg):
        return {}
    from sandbox.netsuite import NetSuiteEmulator, TbaCredentials

    key, secret, token, token_secret = NS_TBA
    em = NetSuiteEmulator(
        account_id=NS_ACCOUNT,
        tba=[
            TbaCredentials(
                consumer_key=key, consumer_secret=secret, token_id=token, token_secret=token_secret
            )
        ],  # fmt: skip
    )
    return {em: cfg.sandbox.ports[NETSUITE]}
