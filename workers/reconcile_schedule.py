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
    ScheduleActionStartWorkflow,
    ScheduleCalendarSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from domain import reconcile as rx
from domain import temporal as names
from domain.settings import Settings
from domain.temporal import TASK_QUEUE, UseCase
from infra.schedules import ensure_schedule


@dataclass(frozen=True)
class ReconcileSchedule:
    task_queue: str = TASK_QUEUE
    #: after the nightly churn sweep (03:00), before the working day in Europe and the Americas
    hour_utc: int = 5
    schedule_id: str = rx.SCHEDULE_ID

    def schedule(self) -> Schedule:
        return Schedule(
            action=ScheduleActionStartWorkflow(
                rx.WORKFLOW_TYPE,
                rx.ReconcileInput(),
                id=rx.WORKFLOW_ID,
                task_queue=self.task_queue,
                execution_timeout=timedelta(hours=23),
                typed_search_attributes=TypedSearchAttributes(
                    [SearchAttributePair(names.USE_CASE_KEY, UseCase.RECONCILIATION)]
                ),
                static_summary="Daily billing ↔ CRM reconciliation",
            ),
            spec=ScheduleSpec(
                calendars=[
                    ScheduleCalendarSpec(
                        hour=[ScheduleRange(self.hour_utc)],
                        minute=[ScheduleRange(0)],
                        second=[ScheduleRange(0)],
                        comment="daily reconciliation",
                    )
                ]
            ),
            policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
            state=ScheduleState(
                note="RevBridge: reconcile billing and the CRM; exceptions to Billing_Exception__c"
            ),
        )


#: the pairs whose books the reconciliation reads (connectors/reconcile)
BILLING = {"chargebee", "stripe", "recurly"}
CRM = {"salesforce", "hubspot"}


async def ensure_reconcile_schedule(
    client: Client, spec: ReconcileSchedule, settings: Settings | None = None
) -> str:
    """Create or update the schedule; ``skipped`` on a pair the reconciliation cannot read yet
    (a daily run there would only fail)."""
    if settings is not None and (settings.billing not in BILLING or settings.crm not in CRM):
        return f"skipped ({settings.billing} x {settings.crm} is not reconciled yet)"
    return await ensure_schedule(client, spec.schedule_id, spec.schedule())
