"""The Temporal Schedule that runs the dunning catch-up every 15 minutes: a lost "paid" or
"failed" webhook is repaired within one period (workflows/dunning/catch_up.py).

Idempotent, like the quote-to-cash one: call it at every worker start or deploy. A schedule that
exists is updated in place (spec, action, policy) and keeps its paused state, note and history.
One per deployment (task queue), since each deployment serves one billing platform. Overlap SKIP;
catch-up window one period: after an outage one run makes up for the missed ones (the watermark
covers the whole gap).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain import temporal as names
from domain.dunning import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
from domain.dunning import DunningCatchUpInput
from domain.settings import Settings
from infra.schedules import ensure_schedule

EVERY = timedelta(minutes=15)


def schedule_id(settings: Settings) -> str:
    return f"dunning-catch-up:{settings.task_queue}"


def catch_up_schedule(settings: Settings, every: timedelta = EVERY) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            DunningCatchUpInput(),
            # the schedule appends the scheduled time: one workflow ID per run
            id=schedule_id(settings),
            task_queue=settings.task_queue,
            execution_timeout=every,
            typed_search_attributes=TypedSearchAttributes(
                [SearchAttributePair(names.USE_CASE_KEY, "dunning")]
            ),
            static_summary=f"Dunning catch-up: {settings.billing} payments no webhook delivered",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
        state=ScheduleState(
            note="RevBridge: settle dunning runs whose invoice was paid, start those never started"
        ),
    )


async def ensure_dunning_schedule(client: Client, settings: Settings) -> str:
    """Create the catch-up schedule or bring it up to date; returns ``created`` or ``updated``."""
    return await ensure_schedule(client, schedule_id(settings), catch_up_schedule(settings))
