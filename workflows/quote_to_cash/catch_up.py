"""The quote-to-cash catch-up: won deals whose callout never arrived still get their run.

Salesforce Flow callouts are not redelivered and a webhook can be lost, so a Temporal Schedule
(workers/catch_ups.py) runs this every 15 minutes. It asks the CRM for deals closed-won and
modified since a watermark, starts a QuoteToCashWorkflow for each with the webhook service's
deterministic ID and policies (``REJECT_DUPLICATE``: a deal already handled is never handled
again; ``USE_EXISTING``: a running one is joined), and moves the watermark on.

The watermark is this workflow's result: each scheduled run reads the previous successful run's
result (``get_last_completion_result``), so there is no state store to keep. A run looks back a
little before it (``overlap``) to absorb clock skew and late index updates; starting an existing
run is a no-op, so the overlap costs nothing but a lookup.

Why an activity and not child workflows: the runs must not belong to this workflow — they outlive
it (they may wait days for an approval), and the webhook service starts the very same IDs as
top-level runs. A child start cannot say ``USE_EXISTING``, would tie each run to a parent, and would
put every start in this history. One activity (``activity.client()``) makes the same start call as
the webhook service, heartbeating its progress so a retry resumes where it stopped.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.governed import watermark
from workflows.options import READ, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.quote import QuoteActivities, StartRunsInput, WonSinceInput
    from domain.quote import CATCH_UP_MAX_LIMIT as MAX_LIMIT
    from domain.quote import CATCH_UP_WORKFLOW_TYPE as WORKFLOW_TYPE
    from domain.quote import CatchUpInput, CatchUpResult


@workflow.defn(name=WORKFLOW_TYPE)
class QuoteToCashCatchUpWorkflow:
    @workflow.run
    async def run(self, input: CatchUpInput) -> CatchUpResult:
        now = workflow.now()
        since = watermark.since(input, CatchUpResult)
        workflow.set_current_details(f"Won deals modified since {since:%Y-%m-%d %H:%M:%S} UTC")
        # The CRM query has no cursor: oldest first, so a bigger page is a superset.
        won, truncated = await watermark.read_growing(
            lambda limit: workflow.execute_activity_method(
                QuoteActivities.q2c_won_opportunities,
                WonSinceInput(since=since, limit=limit),
                summary="won deals since the watermark",
                **READ,
            ),
            lambda won: len(won.opportunity_ids),
            limit=input.limit,
            max_limit=MAX_LIMIT,
        )
        if truncated:
            workflow.logger.warning("catch-up saw a full page of %d won deals", MAX_LIMIT)
        if not won.opportunity_ids:
            return CatchUpResult(watermark=now, since=since)
        started = await workflow.execute_activity_method(
            QuoteActivities.q2c_start_runs,
            StartRunsInput(
                crm=won.crm,
                billing=won.billing,
                opportunity_ids=won.opportunity_ids,
                trigger="catch_up",
            ),
            summary=f"start runs for {len(won.opportunity_ids)} won deal(s)",
            heartbeat_timeout=timedelta(seconds=30),
            **WRITE,
        )
        workflow.set_current_details(
            f"{len(won.opportunity_ids)} won deal(s) since {since:%Y-%m-%d %H:%M:%S} UTC: "
            f"{len(started.running)} started or running, {len(started.already_done)} done before"
            + (
                f", {len(started.before_go_live)} closed before go-live (skipped)."
                if started.before_go_live
                else "."
            )
        )
        return CatchUpResult(
            watermark=now,
            since=since,
            found=won.opportunity_ids,
            running=started.running,
            already_done=started.already_done,
            before_go_live=started.before_go_live,
            truncated=truncated,
        )
