"""The daily schedule: created once, updated in place after (idempotent), starting the
reconciliation on the deployment's queue every day; skipped on a pair it cannot read yet."""

from __future__ import annotations

from temporalio.client import Client, ScheduleActionStartWorkflow

from domain import reconcile as rx
from domain.settings import Settings
from workers.reconcile_schedule import ReconcileSchedule, ensure_reconcile_schedule


async def test_the_daily_schedule_is_ensured_idempotently(
    client: Client, settings: Settings, uid: str
) -> None:
    spec = ReconcileSchedule(task_queue=f"rq-{uid}", schedule_id=f"reconciliation-{uid}")
    assert await ensure_reconcile_schedule(client, spec, settings) == "created"
    assert await ensure_reconcile_schedule(client, spec, settings) == "updated"
    handle = client.get_schedule_handle(spec.schedule_id)
    try:
        desc = await handle.describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == rx.WORKFLOW_TYPE and action.task_queue == spec.task_queue
        cal = desc.schedule.spec.calendars[0]
        assert cal.hour[0].start == 5 and cal.minute[0].start == 0
    finally:
        await handle.delete()
    zuora = settings.model_copy(update={"billing": "zuora"})
    assert (await ensure_reconcile_schedule(client, spec, zuora)).startswith("skipped")
