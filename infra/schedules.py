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
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
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
