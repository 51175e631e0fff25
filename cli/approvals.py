"""``revbridge pending | approve | reject | start``: people acting on workflows from a terminal.

Approvals go through the workflow's ``decide`` update, so the answer is immediate: accepted, or
refused with the reason (wrong approver, stale action ID, already decided, not a verified
identity). Its update ID is derived from the action and the decision, so a retried command is one
decision. Where approvers are verified, ``REVBRIDGE_ID_TOKEN`` (the person's ID token) and
``REVBRIDGE_CODEC_URL`` send the update through the codec server, which stamps that identity. Starting work by hand
is checked against ``policies/starters.cedar`` with the caller's identity first.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from activities.policy import DEFAULT_POLICY_DIR, load_policy_set
from cli.config import CliError
from domain import temporal as names
from domain.approvals import QUERY, UPDATE, ApprovalSignal, Decision, PendingApproval
from domain.dunning import WORKFLOW_TYPE, DunningInput
from domain.ids import dunning_workflow_id
from domain.policy import Outcome, StartAction
from domain.starts import start_options
from infra.codec import KeyError_
from infra.codec_server import ENV_CODEC_URL, ENV_ID_TOKEN, stamping_converter
from infra.connection import client_connect_kwargs

PENDING_QUERY = f"{names.APPROVAL_KEY.name} = 'pending' AND ExecutionStatus = 'Running'"
#: how long one run may take to answer, and how many are asked at once
QUERY_TIMEOUT = timedelta(seconds=10)
QUERY_CONCURRENCY = 16


async def connect() -> Client:
    try:
        kwargs = client_connect_kwargs()
    except KeyError_ as exc:  # payload keys that cannot work: say which, never their material
        raise CliError(str(exc)) from None
    try:
        return await Client.connect(**kwargs)
    except Exception as exc:
        raise CliError(
            f"cannot reach Temporal ({type(exc).__name__}); is the stack running?"
        ) from None


async def require_worker(task_queue: str, wait_s: float = 5.0) -> None:
    """Refuse, in one line, to start work that no worker would pick up: a command that waits for
    its run (``reconcile``, ``revenue close``, ``sync backfill``) would otherwise wait forever,
    silent, or fail after 30 s on a query nobody answers. A worker starting right now gets
    ``wait_s`` to poll; a server that cannot say (no DescribeTaskQueue, or no permission to ask) is
    trusted."""
    import asyncio
    import time

    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    client = await connect()
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + wait_s
    while True:
        try:
            answer = await client.workflow_service.describe_task_queue(request)
        except RPCError:  # cannot tell (no such call, no permission to describe): go on
            return
        if answer.pollers:
            return
        if time.monotonic() > deadline:
            raise CliError(
                f"no worker polls task queue {task_queue!r}: start one (`revbridge worker`, or "
                "`revbridge dev` locally) and run this again"
            )
        await asyncio.sleep(0.5)


async def _ask(
    client: Client, wf: Any, gate: asyncio.Semaphore
) -> tuple[Any, list[PendingApproval] | None]:
    """One run's pending approvals; None when it did not answer in time (no worker polls its
    task queue: a query waits for one, and on its own would hold the command for 30 s a run)."""
    handle = client.get_workflow_handle(wf.id, run_id=wf.run_id)
    async with gate:
        try:
            waiting = await handle.query(
                QUERY, result_type=list[PendingApproval], rpc_timeout=QUERY_TIMEOUT
            )
        except RPCError as exc:
            if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                return wf, []  # closed between the list and the query
            return wf, None  # the deadline passed ("Timeout expired": CANCELLED), or worse
    return wf, waiting


async def pending(as_json: bool) -> None:
    client = await connect()
    rows: list[dict[str, Any]] = []
    gate = asyncio.Semaphore(QUERY_CONCURRENCY)
    runs = [wf async for wf in client.list_workflows(PENDING_QUERY)]
    answers = await asyncio.gather(*(_ask(client, wf, gate) for wf in runs))
    silent = [wf.id for wf, waiting in answers if waiting is None]
    if silent:
        shown = ", ".join(silent[:3]) + (f" and {len(silent) - 3} more" if len(silent) > 3 else "")
        print(
            f"revbridge pending: {len(silent)} run(s) waiting for approval did not answer within "
            f"{QUERY_TIMEOUT.seconds} s (is a worker running for their task queue?): {shown}",
            file=sys.stderr,
        )
    for wf, waiting in answers:
        for p in waiting or []:
            rows.append(
                {
                    "workflow_id": wf.id,
                    "action_id": p.action_id,
                    "action": p.action.describe(),
                    "why": p.why,
                    "policy_ids": p.policy_ids,
                    "approver_roles": p.approver_roles,
                    "expires_at": p.expires_at.isoformat(),
                }
            )
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("Nothing is waiting for approval.")
        return
    for r in rows:
        print(f"{r['workflow_id']}  {r['action_id']}")
        print(
            f"  {r['action']} — needs {' or '.join(r['approver_roles'])} ({', '.join(r['policy_ids'])})"
        )
        print(f"  why: {r['why']}")
        print(f"  expires {r['expires_at']}")
        print(f"  revbridge approve {r['workflow_id']} --action {r['action_id']} --as <email>")


def decision_update_id(action_id: str, decision: Decision) -> str:
    """One update per (action, decision): a command retried (a timeout, a second run of the same
    line) is the same update, which Temporal answers once — never a second decision."""
    return f"decide:{action_id[:80]}:{decision.value}"


async def decide(
    workflow_id: str, action_id: str, approver: str, decision: Decision, note: str
) -> None:
    client = await connect()
    if os.environ.get(ENV_ID_TOKEN) and os.environ.get(ENV_CODEC_URL):
        # where approvers are verified, the codec server stamps the signed-in identity
        client = Client(**{**client.config(), "data_converter": stamping_converter(os.environ)})
    handle = client.get_workflow_handle(workflow_id)
    signal = ApprovalSignal(action_id=action_id, decision=decision, approver=approver, note=note)
    try:
        answer = await handle.execute_update(
            UPDATE, signal, id=decision_update_id(action_id, decision), result_type=str
        )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause.message if exc.cause and hasattr(exc.cause, "message") else str(exc)
        raise CliError(f"refused: {cause}") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise CliError(f"no running workflow {workflow_id}") from None
        raise CliError(
            f"Temporal refused the request: {exc.status.name if exc.status else exc}"
        ) from None
    print(answer)


async def start_dunning(
    invoice_id: str, billing: str, caller: str, policy_dir: Path | None
) -> None:
    policies = load_policy_set(policy_dir or DEFAULT_POLICY_DIR)
    verdict = policies.may_start(caller, StartAction.START_DUNNING)
    if verdict.outcome is not Outcome.ALLOW:
        raise CliError(
            f"{caller} may not start dunning: {'; '.join(verdict.reasons) or 'no role allows it'}"
        )
    try:
        wf_id = dunning_workflow_id(billing, invoice_id)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    client = await connect()
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            DunningInput(billing=billing, invoice_id=invoice_id, started_by=caller),
            id=wf_id,
            task_queue=_task_queue(),
            # the webhook route's reuse policy (domain.starts: a run that failed may be redone,
            # a finished one never); a hand start reports a running run instead of joining it
            **{
                **start_options(WORKFLOW_TYPE),
                "id_conflict_policy": WorkflowIDConflictPolicy.FAIL,
            },
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(names.USE_CASE_KEY, names.UseCase.DUNNING),
                    SearchAttributePair(names.APPROVAL_KEY, "none"),
                ]
            ),
            static_summary=f"Dunning for invoice {invoice_id} ({billing}), started by hand",
            rpc_timeout=timedelta(seconds=10),
        )
    except WorkflowAlreadyStartedError:
        raise CliError(
            f"{wf_id} is running or finished (one dunning run per invoice; a failed one may be "
            "started again)"
        ) from None
    print(f"started {wf_id}", file=sys.stdout)


def _task_queue() -> str:
    import os

    return os.environ.get("REVBRIDGE_TASK_QUEUE", names.TASK_QUEUE)
