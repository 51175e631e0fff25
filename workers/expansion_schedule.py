"""The Temporal Schedule that starts the daily usage intake of usage-based expansion (issue 21).

Idempotent: run on every deploy (``workers/schedules.py``). Overlap policy SKIP: an intake still
walking a large book is never joined by a second one. It runs after midnight UTC, when the day
before is complete in billing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain import temporal as names
from domain.expansion import (
    INTAKE_SCHEDULE_ID,
    INTAKE_WORKFLOW_ID,
    INTAKE_WORKFLOW_TYPE,
    IntakeInput,
)
from domain.temporal import TASK_QUEUE, UseCase
from infra.schedules import ensure_schedule


@dataclass(frozen=True)
class IntakeSchedule:
    billing: str
    crm: str
    task_queue: str = TASK_QUEUE
    #: UTC hour of the daily intake (after the day closed, before the working day)
    hour_utc: int = 2
    page_size: int = 100
    pages_per_run: int = 20
    schedule_id: str = INTAKE_SCHEDULE_ID

    def schedule(self) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                INTAKE_WORKFLOW_TYPE,
                IntakeInput(
                    billing=self.billing,
                    crm=self.crm,
                    page_size=self.page_size,
                    pages_per_run=self.pages_per_run,
                ),
                # the schedule appends the scheduled time: one workflow ID per day
                id=INTAKE_WORKFLOW_ID,
                task_queue=self.task_queue,
                execution_timeout=timedelta(hours=23),
                typed_search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(names.USE_CASE_KEY, UseCase.EXPANSION.value)]
                ),
            ),
            spec=ScheduleSpec(
                calendars=[
                    ScheduleCalendarSpec(
                        hour=[ScheduleRange(self.hour_utc)],
                        minute=[ScheduleRange(15)],
                        second=[ScheduleRange(0)],
                        comment="daily usage intake for expansion forecasts",
                    )
                ]
            ),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(note="RevBridge: forecast metered usage for expansion"),
        )


async def ensure_expansion_schedule(client: Client, spec: IntakeSchedule) -> str:
    """Create the intake's schedule, or update the one that exists: ``created`` / ``updated``."""
    return await ensure_schedule(client, spec.schedule_id, spec.schedule())
