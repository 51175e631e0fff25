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
)

from domain.expansion import (
    INTAKE_SCHEDULE_ID,
    INTAKE_WORKFLOW_ID,
    INTAKE_WORKFLOW_TYPE,
    IntakeInput,
)
from domain.temporal import TASK_QUEUE, UseCase
from infra.schedules import at_utc, calendar_schedule, ensure_schedule


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
        return calendar_schedule(
            INTAKE_WORKFLOW_TYPE,
            IntakeInput(
                billing=self.billing,
                crm=self.crm,
                page_size=self.page_size,
                pages_per_run=self.pages_per_run,
            ),
            workflow_id=INTAKE_WORKFLOW_ID,
            task_queue=self.task_queue,
            use_case=UseCase.EXPANSION.value,
            timeout=timedelta(hours=23),
            at=at_utc(self.hour_utc, 15, "daily usage intake for expansion forecasts"),
            note="RevBridge: forecast metered usage for expansion",
        )


async def ensure_expansion_schedule(client: Client, spec: IntakeSchedule) -> str:
    """Create the intake's schedule, or update the one that exists: ``created`` / ``updated``."""
    return await ensure_schedule(client, spec.schedule_id, spec.schedule())
