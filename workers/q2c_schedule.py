"""The Temporal Schedule that runs the quote-to-cash catch-up every 15 minutes.

Idempotent: call it at every worker start or deploy. A schedule that exists is updated in place
(spec, action, policy) and keeps its paused state, note and history; one that does not is created.
One schedule per deployment (task queue), since each deployment serves one CRM. Overlap SKIP: a
slow catch-up is never joined by a second; catch-up window 15 minutes: after an outage one run
makes up for the missed ones (the watermark covers the whole gap).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client, Schedule

from domain.quote import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
from domain.quote import CatchUpInput
from domain.settings import Settings
from domain.temporal import UseCase
from infra.schedules import CatchUp

EVERY = timedelta(minutes=15)


def schedule_id(settings: Settings) -> str:
    return f"q2c-catch-up:{settings.task_queue}"


def catch_up(settings: Settings, every: timedelta = EVERY) -> CatchUp:
    return CatchUp(
        schedule_id=schedule_id(settings),
        workflow_type=WORKFLOW_TYPE,
        input=CatchUpInput(),
        task_queue=settings.task_queue,
        use_case=UseCase.QUOTE_TO_CASH,
        summary=f"Quote-to-cash catch-up: won {settings.crm} deals without a run",
        note="RevBridge: start quote-to-cash for won deals whose callout never arrived",
        every=every,
    )


def catch_up_schedule(settings: Settings, every: timedelta = EVERY) -> Schedule:
    return catch_up(settings, every).schedule()


async def ensure_q2c_schedule(client: Client, settings: Settings) -> str:
    """Create the catch-up schedule or bring it up to date; returns ``created`` or ``updated``."""
    return await catch_up(settings).ensure(client)
