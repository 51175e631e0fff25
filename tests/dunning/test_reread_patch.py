"""The re-read patch (``dunning-reread-invoice``) is consulted at the same point on every path
that reaches the re-read before a step, settled invoice or not.

Before, ``_settled_now`` returned on an invoice already known as settled *before* it called
``workflow.patched``: a run that learned of the payment while it looked for open support cases
closed without the marker, one that learned it a moment later recorded it there. A patch must be
consulted at the same point in every execution that reaches it ("Non-deprecated patch marker ...
dunning-reread-invoice" when one execution records it and another does not).

The path here: a continued run (its first re-read is in this run) is paid while its day-3 look for
open support cases is in flight. On the code before the fix the marker was missing from its
history. Both runs' histories replay; with REVBRIDGE_WRITE_HISTORIES=1 the continued run's is
kept for the replay gate.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from domain import temporal as names
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult
from domain.models import InvoicePaid
from infra.codec import data_converter
from tests.conftest import start_time_skipping
from tests.fast.test_dunning import BILLING, Run, dunning_fakes
from workers.main import WORKFLOWS
from workflows.dunning.reads import REREAD_PATCH

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


@pytest.fixture
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of this test's own: runs other modules left on the session's
    (their workers gone) can hold its clock, and this test skips three days."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


def _patches(history: Any) -> list[str]:
    conv = data_converter().payload_converter
    found = []
    for e in history.events:
        if e.event_type != EventType.EVENT_TYPE_MARKER_RECORDED:
            continue
        attrs = e.marker_recorded_event_attributes
        if attrs.marker_name == "core_patch":
            found.append(conv.from_payload(attrs.details["patch-data"].payloads[0])["id"])
    return found


async def test_the_reread_patch_is_recorded_even_when_the_invoice_is_already_settled(
    time_env: WorkflowEnvironment,
) -> None:
    client = time_env.client
    run = Run()
    fakes = dunning_fakes(run)
    looking, paid_sent = asyncio.Event(), asyncio.Event()
    runs: list[str] = []

    @activity.defn(name="find_crm_account")
    async def find_crm_account(_: Any) -> dict[str, Any]:
        run_id = activity.info().workflow_run_id
        runs.append(run_id)
        if run_id != runs[0]:  # the continued run's day-3 look for open support cases
            looking.set()
            await paid_sent.wait()
        return {"account": run.crm_account().model_dump(mode="json"), "open_cases": []}

    activities = [
        a
        for a in fakes.activities()
        if a.__temporal_activity_definition.name != "find_crm_account"  # type: ignore[attr-defined]
    ]
    queue = f"reread-{uuid.uuid4().hex[:8]}"
    async with Worker(
        client,
        task_queue=queue,
        workflows=WORKFLOWS,
        activities=[*activities, find_crm_account],
    ):
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            # a tiny history budget: the wait for day 3 hands over to a fresh run
            DunningInput(billing=BILLING, invoice_id=run.invoice, history_limit=30),
            id=run.wf_id,
            task_queue=queue,
            start_signal=names.SIGNAL_PAYMENT_FAILED,
            start_signal_args=[run.failure()],
            result_type=DunningResult,
        )
        result_task = asyncio.create_task(handle.result())  # skips time to day 3
        try:
            await asyncio.wait_for(looking.wait(), 60)
            await client.get_workflow_handle(run.wf_id).signal(
                names.SIGNAL_INVOICE_PAID,
                InvoicePaid(
                    billing=BILLING,
                    event_id="evt-paid",
                    invoice_id=run.invoice,
                    customer_id=run.customer,
                    occurred_at=datetime.now(UTC),
                ),
            )
            await asyncio.sleep(0.5)  # the signal is in before the read answers
            paid_sent.set()
            result = await asyncio.wait_for(result_task, 60)
        finally:
            paid_sent.set()
            result_task.cancel()
        first = client.get_workflow_handle(run.wf_id, run_id=runs[0])
        assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
        continued = client.get_workflow_handle(run.wf_id)
        histories = [await first.fetch_history(), await continued.fetch_history()]

    assert result.outcome == "recovered"
    # the continued run never read the invoice again (the payment came first) but consulted the
    # patch, as a run paid a moment later does
    assert fakes.inputs("get_invoice_context") == fakes.inputs("get_invoice_context")[:1]
    assert REREAD_PATCH in _patches(histories[1])
    replayer = Replayer(workflows=WORKFLOWS, data_converter=data_converter())
    for history in histories:
        await replayer.replay_workflow(history)
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        path = HISTORIES / "DunningWorkflow__hot_path_paid_during_open_case_read_continued.json"
        path.write_text(histories[1].to_json())
