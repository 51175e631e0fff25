"""The dunning catch-up: a lost "paid" (or "failed") webhook is repaired within one period.

A webhook outage, or a vendor that stopped redelivering, would leave a dunning run reminding a
customer who paid. Each run re-reads the invoice before every customer-facing step, and this
workflow — on a Temporal Schedule every 15 minutes (workers/catch_ups.py) — asks billing
what happened since a watermark: invoices paid, voided or credited signal their running dunning
run (``invoice_paid``: it closes as recovered at once, before its next step), and failed payments
with no dunning run start one with the webhook's own ID, event and start policies (a running run
dedups the failure by event ID; a finished one is never doubled).

Like quote-to-cash's catch-up: the watermark is this workflow's result, read back by the next
scheduled run (``get_last_completion_result``), with a small overlap; the Temporal calls are one
activity (the runs outlive this workflow, and the webhook service starts the very same IDs).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.governed import watermark
from workflows.options import READ, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from domain.dunning import CATCH_UP_MAX_LIMIT as MAX_LIMIT
    from domain.dunning import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
    from domain.dunning import (
        BillingChangesInput,
        CatchUpRunsInput,
        DunningCatchUpInput,
        DunningCatchUpResult,
    )


@workflow.defn(name=WORKFLOW_TYPE)
class DunningCatchUpWorkflow:
    @workflow.run
    async def run(self, input: DunningCatchUpInput) -> DunningCatchUpResult:
        now = workflow.now()
        since = watermark.since(input, DunningCatchUpResult)
        workflow.set_current_details(f"Billing changes since {since:%Y-%m-%d %H:%M:%S} UTC")
        changes, truncated = await watermark.read_growing(
            lambda limit: workflow.execute_activity_method(
                BillingActivities.dunning_billing_changes,
                BillingChangesInput(since=since, limit=limit),
                summary="invoices paid and payments failed since the watermark",
                **READ,
            ),
            lambda changes: max(len(changes.paid), len(changes.failed)),
            limit=input.limit,
            max_limit=MAX_LIMIT,
        )
        if truncated:
            workflow.logger.warning("dunning catch-up saw a full page of %d", MAX_LIMIT)
        result = DunningCatchUpResult(
            watermark=now,
            since=since,
            paid=[p.invoice_id for p in changes.paid],
            failed=[f.invoice_id for f in changes.failed],
            truncated=truncated,
        )
        if not changes.paid and not changes.failed:
            return result
        runs = await workflow.execute_activity_method(
            BillingActivities.dunning_catch_up_runs,
            CatchUpRunsInput(billing=changes.billing, paid=changes.paid, failed=changes.failed),
            summary=f"{len(changes.paid)} settled, {len(changes.failed)} failed: signal or start",
            heartbeat_timeout=timedelta(seconds=30),
            **WRITE,
        )
        workflow.set_current_details(
            f"Since {since:%Y-%m-%d %H:%M:%S} UTC: {len(changes.paid)} invoice(s) settled, "
            f"{len(changes.failed)} failed payment(s); {len(runs.started)} run(s) started, "
            f"{len(runs.signalled)} signalled, {len(runs.closed)} closed before."
        )
        return result.model_copy(update={"runs": runs})
