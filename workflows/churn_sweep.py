"""The churn sweep: every active customer rescored on a schedule, page by page.

The story: a Temporal Schedule starts this workflow (nightly by default, see
``workers/churn_schedule.py``). It walks the billing platform's customer list one page at a time;
each page is one activity that scores its customers: a low-risk score is written to the CRM right
there (and a running intervention, if any, is signalled to rescore), an at-risk customer's
``ChurnInterventionWorkflow`` is signalled-with-start and takes over (CSM task, offer,
follow-up). Only at-risk customers cost a workflow, so the sweep of a large book stays cheap.
The page activity heartbeats its
progress, so a lost worker costs at most a retry of the rest of one page. After ``pages_per_run``
pages (or when Temporal suggests it) the sweep continues-as-new carrying the cursor and the
counts, so a book of any size keeps a small history. The sweep's ID is fixed per start (the
schedule's), and every signal it sends carries the same event ID, so a retried page never rescores
a customer twice in one sweep.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.churn import ChurnActivities, SweepPageInput
    from domain import temporal as names
    from domain.churn import SWEEP_WORKFLOW_TYPE, USE_CASE, SweepInput, SweepResult

#: a page of 100 customers, started 25 at a time: seconds; heartbeats every chunk
PAGE: dict = {
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60), maximum_attempts=20),
}


@workflow.defn(name=SWEEP_WORKFLOW_TYPE)
class ChurnSweepWorkflow:
    @workflow.init
    def __init__(self, input: SweepInput) -> None:
        self._input = input
        self._sweep_id = input.sweep_id or f"sweep-{workflow.now():%Y%m%dT%H%M%S}"
        self._customers = input.customers
        self._pages = input.pages

    @workflow.query(name="progress", description="Customers and pages swept so far.")
    def progress(self) -> SweepResult:
        return SweepResult(
            sweep_id=self._sweep_id,
            customers=self._customers,
            pages=self._pages,
            runs=self._input.runs + 1,
        )

    @workflow.run
    async def run(self, input: SweepInput) -> SweepResult:
        if input.runs == 0:
            workflow.upsert_search_attributes([names.USE_CASE.value_set(USE_CASE)])
        cursor = input.cursor
        for page_in_run in range(input.pages_per_run):
            workflow.set_current_details(
                f"Sweep {self._sweep_id}: {self._customers} customers in {self._pages} pages "
                f"so far (run {input.runs + 1}, page {page_in_run + 1} of this run)."
            )
            page = await workflow.execute_activity_method(
                ChurnActivities.sweep_page,
                SweepPageInput(
                    billing=input.billing,
                    sweep_id=self._sweep_id,
                    cursor=cursor,
                    limit=input.page_size,
                    follow_up=input.follow_up,
                ),
                summary=f"sweep page {self._pages + 1}",
                **PAGE,
            )
            self._customers += page.customers
            self._pages += 1
            cursor = page.next_cursor
            if cursor is None:
                return self.progress()
            if workflow.info().is_continue_as_new_suggested():
                break
        workflow.continue_as_new(
            input.model_copy(
                update={
                    "cursor": cursor,
                    "sweep_id": self._sweep_id,
                    "customers": self._customers,
                    "pages": self._pages,
                    "runs": input.runs + 1,
                }
            )
        )
