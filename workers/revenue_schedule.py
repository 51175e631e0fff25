"""The Temporal Schedule that closes each month's revenue (issue 20): on ``day`` of every month
at ``hour_utc`` a ``RevenuePostingWorkflow`` closes the month before (its start time tells it
which), proposes the entries to finance and posts them once approved.

Idempotent (``infra.schedules.ensure_schedule``). Overlap SKIP: a close waiting days for its
approver is never joined by a second. Ensured only where it can work: an ERP is configured
(NetSuite settings) and the billing platform's revenue reads exist (Chargebee, Stripe,
Recurly, Zuora); elsewhere it is ``skipped`` with the reason, so no monthly run fails by construction. The day and hour come
from ``REVBRIDGE_REVENUE_CLOSE_DAY`` (1-28, default 3: late invoices and credit notes of the
month are in) and ``REVBRIDGE_REVENUE_CLOSE_HOUR`` (UTC, default 6).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
)

from domain import revenue as rv
from domain.settings import Settings, SettingsError
from domain.temporal import TASK_QUEUE, UseCase
from infra.schedules import at_utc, calendar_schedule, ensure_schedule

#: billing platforms whose revenue reads exist (connectors/revenue)
BILLING = {"chargebee", "stripe", "recurly", "zuora"}


@dataclass(frozen=True)
class RevenueSchedule:
    billing: str
    task_queue: str = TASK_QUEUE
    day: int = 3
    hour_utc: int = 6

    @property
    def schedule_id(self) -> str:
        return f"{rv.SCHEDULE_ID}:{self.billing}"

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str] | None = None) -> RevenueSchedule:
        env = os.environ if env is None else env
        try:
            day = int(env.get("REVBRIDGE_REVENUE_CLOSE_DAY") or 3)
            hour = int(env.get("REVBRIDGE_REVENUE_CLOSE_HOUR") or 6)
        except ValueError:
            raise SettingsError("REVBRIDGE_REVENUE_CLOSE_DAY/HOUR must be whole numbers") from None
        if not (1 <= day <= 28 and 0 <= hour <= 23):
            raise SettingsError("REVBRIDGE_REVENUE_CLOSE_DAY is 1-28, _HOUR 0-23 (UTC)")
        return cls(billing=settings.billing, task_queue=settings.task_queue, day=day, hour_utc=hour)

    def schedule(self) -> Schedule:
        return calendar_schedule(
            rv.WORKFLOW_TYPE,
            rv.RevenueCloseInput(billing=self.billing),
            # one workflow ID per month's close
            workflow_id=f"{rv.SCHEDULE_ID}:{self.billing}",
            task_queue=self.task_queue,
            use_case=UseCase.REVENUE_RECOGNITION,
            timeout=timedelta(days=20),
            at=at_utc(
                self.hour_utc, 0, "monthly revenue close (the month before)", day_of_month=self.day
            ),
            note="RevBridge: last month's revenue, proposed to finance, posted once approved",
            summary="Monthly revenue close: journal entries to NetSuite",
        )


async def ensure_revenue_schedule(client: Client, settings: Settings) -> str:
    """Create or update the monthly close; ``skipped (why)`` where it could only fail."""
    if settings.netsuite is None:
        return "skipped (no ERP configured)"
    if settings.billing not in BILLING:
        return f"skipped (revenue reads for {settings.billing} are not built yet)"
    spec = RevenueSchedule.from_env(settings)
    return await ensure_schedule(client, spec.schedule_id, spec.schedule())
