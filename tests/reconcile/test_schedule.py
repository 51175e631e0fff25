"""The daily schedule: created once, updated in place after (idempotent), starting the
reconciliation on the deployment's queue every day, on every billing platform (Zuora too);
skipped on a platform it cannot read."""

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
    # every billing platform is reconciled now, Zuora too (connectors/reconcile/zuora.py)
    zuora = settings.model_copy(update={"billing": "zuora"})
    assert await ensure_reconcile_schedule(client, spec, zuora) == "created"
    await handle.delete()
    other = settings.model_copy(update={"billing": "paddle"})
    assert (await ensure_reconcile_schedule(client, spec, other)).startswith("skipped")
