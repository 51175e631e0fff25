"""Every Temporal Schedule this deployment needs, ensured at worker start (``ensure_all``)."""

from __future__ import annotations

import logging

from temporalio.client import Client

from domain.settings import Settings
from workers.catch_ups import ensure_dunning_schedule, ensure_q2c_schedule, q2c_schedule_id
from workers.churn_schedule import SweepSchedule, ensure_churn_schedule
from workers.expansion_schedule import IntakeSchedule, ensure_expansion_schedule
from workers.reconcile_schedule import ReconcileSchedule, ensure_reconcile_schedule
from workers.revenue_schedule import ensure_revenue_schedule

log = logging.getLogger("revbridge.worker")


async def ensure_all(client: Client, settings: Settings) -> None:
    """Every schedule this deployment needs: the two catch-ups and the churn sweep."""
    q2c = await ensure_q2c_schedule(client, settings)
    sweep = SweepSchedule(billing=settings.billing, task_queue=settings.task_queue)
    churn = await ensure_churn_schedule(client, sweep)
    log.info("schedules: %s %s, %s %s", q2c_schedule_id(settings), q2c, sweep.schedule_id, churn)
    log.info("schedules: dunning catch-up %s", await ensure_dunning_schedule(client, settings))
    daily = ReconcileSchedule(task_queue=settings.task_queue)
    log.info(
        "schedules: %s %s",
        daily.schedule_id,
        await ensure_reconcile_schedule(client, daily, settings),
    )
    log.info("schedules: revenue close %s", await ensure_revenue_schedule(client, settings))
    intake = IntakeSchedule(
        billing=settings.billing, crm=settings.crm, task_queue=settings.task_queue
    )
    log.info(
        "schedules: %s %s", intake.schedule_id, await ensure_expansion_schedule(client, intake)
    )
