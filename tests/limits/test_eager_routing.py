"""The failed payment's activities stay on the workflow's own task queue, where Temporal hands
them to the worker with the workflow task that scheduled them (eager dispatch, issue 15); every
other workflow's single-vendor activities still go to the vendor's queue."""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.worker import Worker

from workers.main import EAGER_WORKFLOWS
from workers.vendor_queues import VendorRouting
from workflows.options import BILLING, CRM, vendor_task_queue


@activity.defn(name="get_invoice_context")
async def _read(queue: str) -> str:
    return activity.info().task_queue


@workflow.defn(name="DunningWorkflow", sandboxed=False)
class _Dunning:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            "get_invoice_context", "x", start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn(name="ChurnInterventionWorkflow", sandboxed=False)
class _Churn:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            "get_invoice_context", "x", start_to_close_timeout=timedelta(seconds=10)
        )


async def test_dunning_activities_stay_on_the_main_queue(client: Client) -> None:
    assert "DunningWorkflow" in EAGER_WORKFLOWS
    queue = f"eager-{uuid.uuid4().hex[:8]}"
    vendors = {BILLING: "chargebee", CRM: "salesforce"}
    routing = VendorRouting(queue, vendors, EAGER_WORKFLOWS)
    main = Worker(
        client, task_queue=queue, workflows=[_Dunning, _Churn], activities=[_read],
        interceptors=[routing],
    )  # fmt: skip
    vendor = Worker(client, task_queue=vendor_task_queue(queue, "chargebee"), activities=[_read])
    async with main, vendor:
        ran = {}
        for wf in ("DunningWorkflow", "ChurnInterventionWorkflow"):
            ran[wf] = await client.execute_workflow(
                wf, id=f"{queue}-{wf}", task_queue=queue, execution_timeout=timedelta(seconds=30)
            )
            history = await client.get_workflow_handle(f"{queue}-{wf}").fetch_history()
            (scheduled,) = [
                e.activity_task_scheduled_event_attributes.task_queue.name
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            ]
            assert scheduled == ran[wf]
    assert ran == {
        "DunningWorkflow": queue,
        "ChurnInterventionWorkflow": vendor_task_queue(queue, "chargebee"),
    }
