"""Temporal Schedules RevBridge owns: created at worker start, or brought up to date in place.

Idempotent. A schedule that exists keeps what operators own — its paused state, note and history
— and gets what RevBridge owns (spec, action, policy) replaced; one that does not exist is created.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain import temporal as names


@dataclass(frozen=True)
class CatchUp:
    """A catch-up workflow run every ``every`` on one deployment's task queue: overlap SKIP (a slow
    run is never joined by a second), catch-up window one period (after an outage one run makes up
    for the missed ones: the workflow's watermark covers the whole gap)."""

    schedule_id: str
    workflow_type: str
    input: Any
    task_queue: str
    use_case: names.UseCase
    summary: str
    note: str
    every: timedelta = timedelta(minutes=15)

    def schedule(self) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                self.workflow_type,
                self.input,
                # the schedule appends the scheduled time: one workflow ID per run
                id=self.schedule_id,
                task_queue=self.task_queue,
                execution_timeout=self.every,
                typed_search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(names.USE_CASE_KEY, self.use_case)]
                ),
                static_summary=self.summary,
            ),
            spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=self.every)]),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=self.every),
            state=ScheduleState(note=self.note),
        )

    async def ensure(self, client: Client) -> str:
        return await ensure_schedule(client, self.schedule_id, self.schedule())


def calendar_schedule(
    workflow_type: str,
    input: Any,
    *,
    workflow_id: str,
    task_queue: str,
    use_case: str,
    timeout: timedelta,
    at: ScheduleCalendarSpec,
    note: str,
    summary: str | None = None,
) -> Schedule:
    """A workflow started at calendar times (the nightly sweep, the daily reconciliation and
    intake, the monthly close): overlap SKIP, so a slow run is never joined by a second. The
    schedule appends the scheduled time to ``workflow_id``: one workflow ID per run."""
    return Schedule(
        action=ScheduleActionStartWorkflow(
            workflow_type,
            input,
            id=workflow_id,
            task_queue=task_queue,
            execution_timeout=timeout,
            typed_search_attributes=TypedSearchAttributes(
                [SearchAttributePair(names.USE_CASE_KEY, use_case)]
            ),
            static_summary=summary,
        ),
        spec=ScheduleSpec(calendars=[at]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
        state=ScheduleState(note=note),
    )


def at_utc(
    hour: int, minute: int, comment: str, day_of_month: int | None = None
) -> ScheduleCalendarSpec:
    """Every day (or on ``day_of_month``) at ``hour:minute:00`` UTC."""
    return ScheduleCalendarSpec(
        **({"day_of_month": [ScheduleRange(day_of_month)]} if day_of_month else {}),
        hour=[ScheduleRange(hour)],
        minute=[ScheduleRange(minute)],
        second=[ScheduleRange(0)],
        comment=comment,
    )


async def ensure_schedule(client: Client, schedule_id: str, wanted: Schedule) -> str:
    """Create ``wanted`` or update the existing one; returns ``created`` or ``updated``."""
    try:
        await client.create_schedule(schedule_id, wanted)
        return "created"
    except ScheduleAlreadyRunningError:
        pass

    def update(current: ScheduleUpdateInput) -> ScheduleUpdate:
        # keep the operator's pause and note: only what RevBridge owns is replaced
        return ScheduleUpdate(
            schedule=Schedule(
                action=wanted.action,
                spec=wanted.spec,
                policy=wanted.policy,
                state=current.description.schedule.state,
            )
        )

    await client.get_schedule_handle(schedule_id).update(update)
    return "updated"
