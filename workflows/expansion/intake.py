"""The daily usage intake: every customer's metered usage, page by page, to its expansion workflow.

The story: a Temporal Schedule starts this workflow once a day (``workers/expansion_schedule.py``).
It walks the billing platform's customer list one page at a time; each page is one activity that
reads the page's metered plans and the last few days' usage in bulk (a few vendor calls per page,
never one per customer) and signals-with-start each metered customer's ``ExpansionWorkflow``
with complete daily totals. The page heartbeats, so a lost worker costs a retry of the rest of
one page, and a retried page is harmless: each batch carries this intake's ID and the customer's
as its event ID, and its totals replace the days they cover. After ``pages_per_run`` pages the
intake continues-as-new carrying the cursor and counts. It writes nothing to any vendor.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.expansion import ExpansionActivities, IntakePageInput
    from domain import expansion as ex
    from domain import temporal as names
    from domain.expansion import IntakeInput, IntakeResult
    from domain.temporal import UseCase

PAGE: dict = {
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60), maximum_attempts=20),
}


@workflow.defn(name=ex.INTAKE_WORKFLOW_TYPE)
class ExpansionIntakeWorkflow:
    @workflow.init
    def __init__(self, input: IntakeInput) -> None:
        self._input = input
        self._intake_id = input.intake_id or f"intake-{workflow.now():%Y%m%dT%H%M%S}"
        self._customers = input.customers
        self._pages = input.pages

    @workflow.query(name="progress", description="Customers and pages read so far.")
    def progress(self) -> IntakeResult:
        return IntakeResult(
            intake_id=self._intake_id,
            customers=self._customers,
            pages=self._pages,
            runs=self._input.runs + 1,
        )

    @workflow.run
    async def run(self, input: IntakeInput) -> IntakeResult:
        if input.runs == 0:
            workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(UseCase.EXPANSION)])
        cursor = input.cursor
        today = (workflow.now() - timedelta(days=1)).date()  # the last complete UTC day
        for page_in_run in range(input.pages_per_run):
            workflow.set_current_details(
                f"Usage intake {self._intake_id}: {self._customers} customers in {self._pages} "
                f"pages so far (page {page_in_run + 1} of this run)."
            )
            page = await workflow.execute_activity_method(
                ExpansionActivities.expansion_intake_page,
                IntakePageInput(
                    billing=input.billing,
                    crm=input.crm,
                    intake_id=self._intake_id,
                    cursor=cursor,
                    limit=input.page_size,
                    lookback_days=input.lookback_days or ex.LOOKBACK_DAYS,
                    today=today,
                ),
                summary=f"intake page {self._pages + 1}",
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
                    "intake_id": self._intake_id,
                    "customers": self._customers,
                    "pages": self._pages,
                    "runs": input.runs + 1,
                }
            )
        )
