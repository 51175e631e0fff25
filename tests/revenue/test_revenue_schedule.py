"""The monthly close's Schedule: ensured idempotently where it can work (an ERP and a billing
platform with revenue reads), skipped with the reason elsewhere; its day and hour configurable."""

from __future__ import annotations

import pytest
from temporalio.client import ScheduleActionStartWorkflow
from temporalio.testing import WorkflowEnvironment

from domain import revenue as rv
from domain.settings import NetSuiteSettings, Settings, SettingsError
from workers.revenue_schedule import RevenueSchedule, ensure_revenue_schedule

NS = NetSuiteSettings(account_id="1234567_SB1", api_url="http://127.0.0.1:9")


async def test_the_monthly_close_is_scheduled_once_and_updated_in_place(
    temporal_env: WorkflowEnvironment, settings: Settings, uid: str, monkeypatch
) -> None:  # noqa: ANN001
    client = temporal_env.client
    monkeypatch.setenv("REVBRIDGE_REVENUE_CLOSE_DAY", "5")
    with_erp = settings.model_copy(
        update={"netsuite": NS, "billing": "stripe", "task_queue": f"rv-{uid}"}
    )
    assert await ensure_revenue_schedule(client, with_erp) == "created"
    assert await ensure_revenue_schedule(client, with_erp) == "updated"
    handle = client.get_schedule_handle(f"{rv.SCHEDULE_ID}:stripe")
    try:
        desc = await handle.describe()
        action = desc.schedule.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert action.workflow == rv.WORKFLOW_TYPE and action.task_queue == f"rv-{uid}"
        cal = desc.schedule.spec.calendars[0]
        assert (cal.day_of_month[0].start, cal.hour[0].start) == (5, 6)
    finally:
        await handle.delete()
    no_erp = settings.model_copy(update={"netsuite": None})
    assert await ensure_revenue_schedule(client, no_erp) == "skipped (no ERP configured)"
    other = with_erp.model_copy(update={"billing": "other"})
    assert (await ensure_revenue_schedule(client, other)).startswith("skipped (revenue reads")


def test_a_bad_close_day_is_one_line(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="1-28"):
        RevenueSchedule.from_env(settings, {"REVBRIDGE_REVENUE_CLOSE_DAY": "31"})
