"""The Temporal Schedule that starts the daily billing ↔ CRM reconciliation (issue 20).

Idempotent (``infra.schedules.ensure_schedule``): created on the first worker start, updated in
place after (an operator's pause and note are kept). Daily at ``hour_utc``; overlap SKIP (a slow
run is never joined by a second); a missed day is not made up for (the next run reconciles the
whole book anyway). The schedule appends the scheduled time to the workflow ID, so each day's
run has its own (``reconcile-2026-12-08T05:00:00Z``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
)

from domain import reconcile as rx
from domain.settings import Settings
from domain.temporal import TASK_QUEUE, UseCase
from infra.schedules import at_utc, calendar_schedule, ensure_schedule


@dataclass(frozen=True)
class ReconcileSchedule:
    task_queue: str = TASK_QUEUE
    #: after the nightly churn sweep (03:00), before the working day in Europe and the Americas
    hour_utc: int = 5
    schedule_id: str = rx.SCHEDULE_ID

    def schedule(self) -> Schedule:
        return calendar_schedule(
            rx.WORKFLOW_TYPE,
            rx.ReconcileInput(),
            workflow_id=rx.WORKFLOW_ID,
            task_queue=self.task_queue,
            use_case=UseCase.RECONCILIATION,
            timeout=timedelta(hours=23),
            at=at_utc(self.hour_utc, 0, "daily reconciliation"),
            note="RevBridge: reconcile billing and the CRM; exceptions to Billing_Exception__c",
            summary="Daily billing ↔ CRM reconciliation",
        )


#: the pairs whose books the reconciliation reads (connectors/reconcile)
BILLING = {"chargebee", "stripe", "recurly", "zuora"}
CRM = {"salesforce", "hubspot"}


async def ensure_reconcile_schedule(
    client: Client, spec: ReconcileSchedule, settings: Settings | None = None
) -> str:
    """Create or update the schedule; ``skipped`` on a pair the reconciliation cannot read yet
    (a daily run there would only fail)."""
    if settings is not None and (settings.billing not in BILLING or settings.crm not in CRM):
        return f"skipped ({settings.billing} x {settings.crm} is not reconciled yet)"
    return await ensure_schedule(client, spec.schedule_id, spec.schedule())
