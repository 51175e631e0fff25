"""Temporal Schedules RevBridge owns: created at worker start, or brought up to date in place.

Idempotent. A schedule that exists keeps what operators own — its paused state, note and history
— and gets what RevBridge owns (spec, action, policy) replaced; one that does not exist is created.
"""

from __future__ import annotations

import logging

from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleUpdate,
    ScheduleUpdateInput,
)

from domain.settings import Settings

log = logging.getLogger("revbridge.worker")


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


async def ensure_all(client: Client, settings: Settings) -> None:
    """Every schedule this deployment needs: the quote-to-cash catch-up and the churn sweep."""
    from workers.churn_schedule import SweepSchedule, ensure_churn_schedule
    from workers.q2c_schedule import ensure_q2c_schedule, schedule_id

    q2c = await ensure_q2c_schedule(client, settings)
    sweep = SweepSchedule(billing=settings.billing, task_queue=settings.task_queue)
    churn = await ensure_churn_schedule(client, sweep)
    log.info("schedules: %s %s, %s %s", schedule_id(settings), q2c, sweep.schedule_id, churn)
