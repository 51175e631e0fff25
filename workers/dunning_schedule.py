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

from temporalio.client import Client, Schedule

from domain.dunning import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
from domain.dunning import DunningCatchUpInput
from domain.settings import Settings
from domain.temporal import UseCase
from infra.schedules import CatchUp

EVERY = timedelta(minutes=15)


def schedule_id(settings: Settings) -> str:
    return f"dunning-catch-up:{settings.task_queue}"


def catch_up(settings: Settings, every: timedelta = EVERY) -> CatchUp:
    return CatchUp(
        schedule_id=schedule_id(settings),
        workflow_type=WORKFLOW_TYPE,
        input=DunningCatchUpInput(),
        task_queue=settings.task_queue,
        use_case=UseCase.DUNNING,
        summary=f"Dunning catch-up: {settings.billing} payments no webhook delivered",
        note="RevBridge: settle dunning runs whose invoice was paid, start those never started",
        every=every,
    )


def catch_up_schedule(settings: Settings, every: timedelta = EVERY) -> Schedule:
    return catch_up(settings, every).schedule()


async def ensure_dunning_schedule(client: Client, settings: Settings) -> str:
    """Create the catch-up schedule or bring it up to date; returns ``created`` or ``updated``."""
    return await catch_up(settings).ensure(client)
