"""The Temporal Schedules that run the two catch-ups every 15 minutes, one per deployment (task
queue), since each deployment serves one billing platform and one CRM:

- dunning (workflows/dunning/catch_up.py): a lost "paid" or "failed" webhook is repaired within
  one period — settle runs whose invoice was paid, start those never started;
- quote-to-cash (workflows/quote_to_cash/catch_up.py): won deals whose callout never arrived
  still get their run.

Idempotent: call them at every worker start or deploy. A schedule that exists is updated in place
(spec, action, policy) and keeps its paused state, note and history; one that does not is
created. Overlap SKIP: a slow catch-up is never joined by a second; catch-up window one period:
after an outage one run makes up for the missed ones (the watermark covers the whole gap). The
builder is ``infra.schedules.CatchUp``.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import Client

from domain import dunning, quote
from domain.settings import Settings
from domain.temporal import UseCase
from infra.schedules import CatchUp

EVERY = timedelta(minutes=15)


def dunning_schedule_id(settings: Settings) -> str:
    return f"dunning-catch-up:{settings.task_queue}"


def q2c_schedule_id(settings: Settings) -> str:
    return f"q2c-catch-up:{settings.task_queue}"


def dunning_catch_up(settings: Settings, every: timedelta = EVERY) -> CatchUp:
    return CatchUp(
        schedule_id=dunning_schedule_id(settings),
        workflow_type=dunning.CATCH_UP_WORKFLOW_TYPE,
        input=dunning.DunningCatchUpInput(),
        task_queue=settings.task_queue,
        use_case=UseCase.DUNNING,
        summary=f"Dunning catch-up: {settings.billing} payments no webhook delivered",
        note="RevBridge: settle dunning runs whose invoice was paid, start those never started",
        every=every,
    )


def q2c_catch_up(settings: Settings, every: timedelta = EVERY) -> CatchUp:
    return CatchUp(
        schedule_id=q2c_schedule_id(settings),
        workflow_type=quote.CATCH_UP_WORKFLOW_TYPE,
        input=quote.CatchUpInput(),
        task_queue=settings.task_queue,
        use_case=UseCase.QUOTE_TO_CASH,
        summary=f"Quote-to-cash catch-up: won {settings.crm} deals without a run",
        note="RevBridge: start quote-to-cash for won deals whose callout never arrived",
        every=every,
    )


async def ensure_dunning_schedule(client: Client, settings: Settings) -> str:
    """Create the dunning catch-up schedule or bring it up to date: ``created`` or ``updated``."""
    return await dunning_catch_up(settings).ensure(client)


async def ensure_q2c_schedule(client: Client, settings: Settings) -> str:
    """Create the quote-to-cash catch-up schedule or bring it up to date."""
    return await q2c_catch_up(settings).ensure(client)
