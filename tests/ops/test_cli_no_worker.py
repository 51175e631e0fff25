"""The commands that start a run and wait for it (``reconcile``, ``revenue close``, ``sync
backfill``) with Temporal up but no worker on the deployment's task queue: one line naming the
queue and what to start, exit 2, and nothing started. Before, ``reconcile`` and ``sync
backfill`` waited forever without a word and ``revenue close`` ended after 30 s in ``unexpected
RPCError: Timeout expired``, each leaving a run queued for a worker that was not there.

With a worker polling the queue the check passes at once (and waits a moment for one that is
just starting). And ``report recovery --query`` with a query the store cannot read: the user's
one line, not an unexpected error."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from cli.approvals import require_worker
from cli.main import main


@workflow.defn(name="NoWorkerCheckIdle", sandboxed=False)  # this module imports the CLI
class Idle:
    @workflow.run
    async def run(self) -> None:
        return None


@pytest.fixture()
def deployment(temporal_env: WorkflowEnvironment) -> Iterator[str]:
    """This process's environment pointed at the suite's dev server, on a queue of its own."""
    queue = f"no-worker-{uuid.uuid4().hex[:8]}"
    saved = dict(os.environ)
    os.environ["TEMPORAL_ADDRESS"] = temporal_env.client.service_client.config.target_host
    os.environ["TEMPORAL_NAMESPACE"] = temporal_env.client.namespace
    os.environ["REVBRIDGE_TASK_QUEUE"] = queue
    for key in ("TEMPORAL_API_KEY", "TEMPORAL_PROFILE", "REVBRIDGE_CRM", "REVBRIDGE_BILLING"):
        os.environ.pop(key, None)
    try:
        yield queue
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize(
    "argv",
    [
        ["reconcile", "--dry-run"],
        ["revenue", "close", "--month", "2026-01", "--dry-run"],
        ["sync", "backfill", "--dry-run"],
    ],
    ids=["reconcile", "revenue-close", "sync-backfill"],
)
async def test_no_worker_is_one_line_and_starts_nothing(
    argv: list[str],
    deployment: str,
    temporal_env: WorkflowEnvironment,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(require_worker, "__defaults__", (1.0,))  # wait_s: 1 s here
    code = await asyncio.to_thread(main, argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert lines == [
        f"revbridge {argv[0]}: no worker polls task queue {deployment!r}: start one "
        "(`revbridge worker`, or `revbridge dev` locally) and run this again"
    ], err
    assert not out.strip()
    started = [
        wf.id async for wf in temporal_env.client.list_workflows(f"TaskQueue = '{deployment}'")
    ]
    assert started == []


async def test_a_polling_worker_passes_the_check(
    deployment: str, temporal_env: WorkflowEnvironment
) -> None:
    async with Worker(temporal_env.client, task_queue=deployment, workflows=[Idle]):
        await asyncio.wait_for(require_worker(deployment, wait_s=10.0), timeout=15)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("Nope = 1", "invalid search attribute: Nope"),
        ("StartTime > 'yesterday'", "unable to parse datetime 'yesterday'"),
        (")", "malformed SQL query"),
    ],
)
async def test_report_recovery_bad_query_is_the_users_one_line(
    query: str, reason: str, deployment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A visibility query the store cannot read is the user's input (exit 2, ``--query: …``),
    not an ``unexpected RPCError`` (exit 1, as before); the help's own example works."""
    code = await asyncio.to_thread(main, ["report", "recovery", "--query", query])
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("revbridge report: --query: invalid query") and reason in lines[0]
    example = ["report", "recovery", "--query", "StartTime > '2026-12-01T00:00:00Z'"]
    assert await asyncio.to_thread(main, example) == 0, capsys.readouterr().err
