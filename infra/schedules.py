"""Temporal Schedules RevBridge owns: created at worker start, or brought up to date in place.

Idempotent. A schedule that exists keeps what operators own — its paused state, note and history
— and gets what RevBridge owns (spec, action, policy) replaced; one that does not exist is created.
"""

from __future__ import annotations

from temporalio.client import (
    Client,
    Schedule,
    ScheduleAlreadyRunningError,
    ScheduleUpdate,
    ScheduleUpdateInput,
)


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
