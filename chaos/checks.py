"""After a scenario: what the vendors' ledgers, the mailbox and Temporal say about every failed
payment. Only RevBridge's own effects are judged (their idempotency keys start with ``rb-``).

- **lost**: a failed payment with no dunning run, or no CRM case.
- **doubled**: more than one run for the invoice, more than one case, an audit entry or billing
  note written twice, more emails to the customer than reminder steps taken, or a money-moving
  call (payment retry, credit) committed under two different keys.
- **stuck**: a run that is not at a durable wait (running with no pending activity or workflow
  task, or closed) by the deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import Client, WorkflowExecutionStatus

from chaos.vendor import World
from domain.ids import idempotency_key
from domain.models import NoteTarget

#: billing calls that move money or retry a payment: at most one committed key per target
_MONEY = re.compile(
    r".*/(collect_payment|pay|record_payment|add_promotional_credits|balance_transactions|credit_notes)$"
)


@dataclass
class Verdict:
    invoices: int = 0
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    #: the same message (same Message-ID) sent again after a kill: SMTP's at-least-once
    redelivered_emails: int = 0

    def line(self) -> str:
        line = f"lost={len(self.lost)} doubled={len(self.doubled)} stuck={len(self.stuck)}"
        return line + (
            f" emails_redelivered={self.redelivered_emails}" if self.redelivered_emails else ""
        )

    @property
    def clean(self) -> bool:
        return not (self.lost or self.doubled or self.stuck)

    def details(self) -> list[str]:
        return (
            [f"lost: {x}" for x in self.lost]
            + [f"doubled: {x}" for x in self.doubled]
            + [f"stuck: {x}" for x in self.stuck]
        )


async def at_durable_wait(client: Client, workflow_id: str) -> tuple[bool, str]:
    """Closed, or running with nothing in flight (only timers and signals left to wait on)."""
    try:
        desc = await client.get_workflow_handle(workflow_id).describe()
    except Exception as exc:  # not found yet, or the server is restarting
        return False, f"describe failed ({type(exc).__name__})"
    if desc.status != WorkflowExecutionStatus.RUNNING:
        ok = desc.status == WorkflowExecutionStatus.COMPLETED
        why = f"status {desc.status.name if desc.status else '?'}"
        return ok, why if ok else why + await why_closed(client, workflow_id)
    raw = desc.raw_description
    if raw.pending_activities:
        a = raw.pending_activities[0]
        return False, f"activity {a.activity_type.name} attempt {a.attempt} in flight"
    task = raw.pending_workflow_task
    if task.state != PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_UNSPECIFIED:
        return False, "workflow task pending" + await why_closed(client, workflow_id)
    return True, "waiting"


async def why_closed(client: Client, workflow_id: str) -> str:
    """The failure that closed a run, or the last failed workflow task of a running one, as one
    line (the failure chain's messages, decoded with the client's codec), so a verdict says what
    happened instead of only that it did: ``: <activity> failed: <error> <- ...``."""
    try:
        failure = None
        async for event in client.get_workflow_handle(workflow_id).fetch_history_events():
            if event.HasField("workflow_execution_failed_event_attributes"):
                failure = event.workflow_execution_failed_event_attributes.failure
            elif event.HasField("workflow_task_failed_event_attributes"):
                failure = event.workflow_task_failed_event_attributes.failure
            elif event.HasField("workflow_task_completed_event_attributes"):
                failure = None  # a task failure the next attempt got past
        if failure is None:
            return ""
        exc: BaseException | None = await client.data_converter.decode_failure(failure)
        chain: list[str] = []
        while exc is not None and len(chain) < 4:
            chain.append(f"{type(exc).__name__}: {exc}"[:200])
            exc = exc.__cause__
        return ": " + " <- ".join(chain).replace("\n", " ")
    except Exception as exc:  # a diagnosis never fails the verdict
        return f" (history unreadable: {type(exc).__name__})"


async def runs_of(client: Client, workflow_id: str) -> int:
    return len([w async for w in client.list_workflows(f"WorkflowId = '{workflow_id}'")])


def _ledger(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/requests", params={"method": "POST"}, timeout=10).json()[
        "requests"
    ]


def _mail(url: str) -> list[dict[str, Any]]:
    return httpx.get(url + "/_sandbox/mailbox/messages", timeout=10).json()["messages"]


async def judge(
    client: Client,
    world: World,
    ids: list[dict[str, str]],
    *,
    billing_url: str,
    mailbox_url: str,
    within_s: float = 120.0,
    before_counting: Callable[[], None] | None = None,
) -> Verdict:
    """Wait (up to ``within_s``) for every run to reach its durable wait, then count
    (``before_counting`` runs in between: the scenario turns its vendor faults off there, so the
    reads that count go through)."""
    billing = world.settings.billing
    verdict = Verdict(invoices=len(ids))
    wf_ids = {i["invoice"]: f"dunning:{billing}:{i['invoice']}" for i in ids}
    deadline = time.monotonic() + within_s
    waiting = dict(wf_ids)
    last: dict[str, str] = {}
    while waiting and time.monotonic() < deadline:
        for inv, wf in list(waiting.items()):
            ok, why = await at_durable_wait(client, wf)
            last[inv] = why
            if ok:
                waiting.pop(inv)
        if waiting:
            await asyncio.sleep(1.0)
    for inv in wf_ids:
        if inv in waiting:
            if last.get(inv, "").startswith("describe failed"):
                verdict.lost.append(f"{inv}: no run")
            else:
                verdict.stuck.append(f"{inv}: {last.get(inv)}")

    if before_counting is not None:
        await asyncio.to_thread(before_counting)
    ledger = await asyncio.to_thread(_ledger, billing_url)
    mail = await asyncio.to_thread(_mail, mailbox_url)
    for entry in ids:
        inv, wf = entry["invoice"], wf_ids[entry["invoice"]]
        runs = await runs_of(client, wf)
        if runs > 1:
            verdict.doubled.append(f"{inv}: {runs} runs")
        cases = await asyncio.to_thread(world.crm_driver.cases, idempotency_key(wf, "create-case"))
        if not cases and inv not in waiting:
            verdict.lost.append(f"{inv}: no CRM case")
        if len(cases) > 1:
            verdict.doubled.append(f"{inv}: {len(cases)} cases")
        audit = await asyncio.to_thread(world.crm.audit_log, wf)
        twice = [k for k, n in Counter((a["action"], a["text"]) for a in audit).items() if n > 1]
        if twice:
            verdict.doubled.append(f"{inv}: CRM audit entry written twice: {twice[0][0]}")
        notes = await asyncio.to_thread(world.billing.list_notes, NoteTarget.INVOICE, inv)
        twice_notes = [n for n, c in Counter(notes).items() if c > 1]
        if twice_notes:
            verdict.doubled.append(f"{inv}: billing note written twice")
        to = f"billing+{entry['customer']}@example.com"
        emails = [m for m in mail if to in m["to"]]
        reminders = await _reminders_sent(client, wf)
        # SMTP has no idempotency key: a worker killed after the relay took a message but before
        # its activity completed sends it again on the retry, with the same Message-ID (mail
        # clients fold it; connectors/email.py). That is a redelivery, counted apart; a second
        # *message* (another Message-ID) for one step is a duplicate.
        distinct = {m.get("message_id") or id(m) for m in emails}
        if len(distinct) > max(1, reminders):
            verdict.doubled.append(f"{inv}: {len(distinct)} emails for {reminders} reminder steps")
        verdict.redelivered_emails += len(emails) - len(distinct)
        keys: dict[str, set[str]] = {}
        for row in ledger:
            path = row["path"]
            if inv not in path and entry["customer"] not in path:
                continue
            if not _MONEY.fullmatch(path):
                continue
            committed = (row.get("status") or 0) < 300 or row.get("fault", "").startswith("commit")
            key = row["headers"].get("chargebee-idempotency-key") or row["headers"].get(
                "idempotency-key", ""
            )
            if committed and key.startswith("rb-"):
                keys.setdefault(path, set()).add(key)
        for path, found in keys.items():
            if len(found) > 1:
                verdict.doubled.append(f"{inv}: {path} committed under {len(found)} keys")
    return verdict


async def _reminders_sent(client: Client, workflow_id: str) -> int:
    try:
        status = await client.get_workflow_handle(workflow_id).query("status")
    except Exception:
        return 0
    if isinstance(status, dict):
        return int(status.get("reminders_sent") or 0)
    return int(getattr(status, "reminders_sent", 0) or 0)
