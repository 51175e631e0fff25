"""The Temporal Schedule that runs the quote-to-cash catch-up every 15 minutes.

Idempotent: call it at every worker start or deploy. A schedule that exists is updated in place
(spec, action, policy) and keeps its paused state, note and history; one that does not is created.
One schedule per deployment (task queue), since each deployment serves one CRM. Overlap SKIP: a
slow catch-up is never joined by a second; catch-up window 15 minutes: after an outage one run
makes up for the missed ones (the watermark covers the whole gap).
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
from domain.quote import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
from domain.quote import CatchUpInput
from domain.settings import Settings
from infra.schedules import ensure_schedule

EVERY = timedelta(minutes=15)


def schedule_id(settings: Settings) -> str:
    return f"q2c-catch-up:{settings.task_queue}"


def catch_up_schedule(settings: Settings, every: timedelta = EVERY) -> Schedule:
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_TYPE,
            CatchUpInput(),
            # the schedule appends the scheduled time: one workflow ID per run
            id=schedule_id(settings),
            task_queue=settings.task_queue,
            execution_timeout=every,
            typed_search_attributes=TypedSearchAttributes(
                [SearchAttributePair(names.USE_CASE_KEY, names.UseCase.QUOTE_TO_CASH)]
            ),
            static_summary=f"Quote-to-cash catch-up: won {settings.crm} deals without a run",
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=every),
        state=ScheduleState(
            note="RevBridge: start quote-to-cash for won deals whose callout never arrived"
        ),
    )


async def ensure_q2c_schedule(client: Client, settings: Settings) -> str:
    """Create the catch-up schedule or bring it up to date; returns ``created`` or ``updated``."""
    return await ensure_schedule(client, schedule_id(settings), catch_up_schedule(settings))
