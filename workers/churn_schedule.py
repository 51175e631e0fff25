"""The Temporal Schedule that starts the churn sweep: create it, or bring it up to date.

Idempotent: run it on every deploy. A schedule that exists is updated in place (spec, action,
policy) and keeps its paused state and its history; one that does not is created. Overlap policy
SKIP: a sweep still walking a large book is never joined by a second one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
)

from domain.churn import (
    SWEEP_SCHEDULE_ID,
    SWEEP_WORKFLOW_ID,
    SWEEP_WORKFLOW_TYPE,
    USE_CASE,
    SweepInput,
)
from domain.temporal import TASK_QUEUE
from infra.schedules import at_utc, calendar_schedule, ensure_schedule


@dataclass(frozen=True)
class SweepSchedule:
    billing: str
    task_queue: str = TASK_QUEUE
    #: UTC hour of the nightly sweep (quiet hours for the vendors' rate limits)
    hour_utc: int = 3
    page_size: int = 100
    pages_per_run: int = 20
    schedule_id: str = SWEEP_SCHEDULE_ID

    def schedule(self) -> Schedule:
        return calendar_schedule(
            SWEEP_WORKFLOW_TYPE,
            SweepInput(
                billing=self.billing, page_size=self.page_size, pages_per_run=self.pages_per_run
            ),
            workflow_id=SWEEP_WORKFLOW_ID,
            task_queue=self.task_queue,
            use_case=USE_CASE,
            timeout=timedelta(hours=23),
            at=at_utc(self.hour_utc, 0, "nightly churn sweep"),
            note="RevBridge: rescore every customer's churn risk",
        )


async def ensure_churn_schedule(client: Client, spec: SweepSchedule) -> str:
    """Create the sweep's schedule, or update the one that exists; returns ``created`` or
    ``updated``."""
    return await ensure_schedule(client, spec.schedule_id, spec.schedule())
