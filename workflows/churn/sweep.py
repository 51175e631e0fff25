"""The churn sweep: every active customer rescored on a schedule, page by page.

The story: a Temporal Schedule starts this workflow (nightly by default, see
``workers/churn_schedule.py``). It walks the billing platform's customer list one page at a time;
each page is one activity that scores its customers: an at-risk customer's
``ChurnInterventionWorkflow`` is signalled-with-start and takes over (CSM task, offer, follow-up);
a low-risk score comes back to the sweep, which writes the page's scores to the CRM through the
write gate (policy first: observe mode writes nothing) with one audit entry per page. Only
at-risk customers cost a workflow, so the sweep of a large book stays cheap. The page activity
heartbeats its progress, so a lost worker costs at most a retry of the rest of one page. After
``pages_per_run`` pages (or when Temporal suggests it) the sweep continues-as-new carrying the
cursor and the counts in its input, so a book of any size keeps a small history. The sweep's ID
is fixed per start (the schedule's), and every signal it sends carries the same event ID, so a
retried page never rescores a customer twice in one sweep.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow

with workflow.unsafe.imports_passed_through():
    from activities.churn import (
        ChurnActivities,
        SweepPageInput,
        SweepPageResult,
        WriteChurnScoresInput,
    )
    from domain import temporal as names
    from domain.churn import SWEEP_WORKFLOW_TYPE, SweepInput, SweepResult
    from domain.policy import AccountFacts, ActionKind
    from domain.temporal import UseCase

#: a page of 100 customers, started 25 at a time: seconds; heartbeats every chunk
PAGE: dict = {
    "start_to_close_timeout": timedelta(minutes=10),
    "heartbeat_timeout": timedelta(seconds=60),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60), maximum_attempts=20),
}
#: sweeps started before the write gate wrote low-risk scores inside the page activity
GATED_WRITES_PATCH = "sweep-gated-writes"


@workflow.defn(name=SWEEP_WORKFLOW_TYPE)
class ChurnSweepWorkflow(GovernedWorkflow):
    use_case = UseCase.CHURN_INTERVENTION

    @workflow.init
    def __init__(self, input: SweepInput) -> None:
        self._input = input
        self._sweep_id = input.sweep_id or f"sweep-{workflow.now():%Y%m%dT%H%M%S}"
        self._customers = input.customers
        self._pages = input.pages
        self._init_governed()

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
            workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(self.use_case)])
        cursor = input.cursor
        for page_in_run in range(input.pages_per_run):
            workflow.set_current_details(
                f"Sweep {self._sweep_id}: {self._customers} customers in {self._pages} pages "
                f"so far (run {input.runs + 1}, page {page_in_run + 1} of this run)."
            )
            gated = workflow.patched(GATED_WRITES_PATCH)
            page = await workflow.execute_activity_method(
                ChurnActivities.churn_sweep_page,
                SweepPageInput(
                    billing=input.billing,
                    sweep_id=self._sweep_id,
                    cursor=cursor,
                    limit=input.page_size,
                    follow_up=input.follow_up,
                    write_low_risk=not gated,
                ),
                summary=f"sweep page {self._pages + 1}",
                **PAGE,
            )
            if gated and page.low_risk:
                await self._write_low_risk(page)
            self._customers += page.customers
            self._pages += 1
            cursor = page.next_cursor
            if cursor is None:
                await self.handlers_finished()
                return self.progress()
            if workflow.info().is_continue_as_new_suggested():
                break
        await self.continue_as_new(
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
        raise AssertionError("unreachable: continued as new")

    async def _write_low_risk(self, page: SweepPageResult) -> None:
        """The page's low-risk scores: one policy question, one write, one audit entry."""
        accounts = [r.account_id for r in page.low_risk]
        permit = await self.ask_housekeeping(
            ActionKind.UPDATE_CRM_FIELD, AccountFacts(id=f"sweep:{self._sweep_id}")
        )
        if permit.allowed:
            await self.write(
                permit,
                ChurnActivities.churn_write_scores,
                WriteChurnScoresInput(records=page.low_risk),
                summary=f"write {len(page.low_risk)} low-risk churn score(s)",
            )
        outcome = "written" if permit.allowed else "blocked"
        await self.audit(
            "write_churn_score",
            decision=permit.decision.outcome.value,
            policy_ids=permit.decision.policy_ids,
            outcome=outcome,
            summary=f"Nightly sweep {self._sweep_id}, page {self._pages + 1}: "
            f"{len(accounts)} low-risk score(s) {outcome}.",
            key_suffix=f"{self._sweep_id}:{self._pages}",
            parameters={"sweep": self._sweep_id, "page": self._pages, "accounts": accounts},
        )

    def _audit_scope(self) -> AuditScope:
        # a page spans many customers: the entry goes to the CRM's agent log only (docs/audit.md)
        return AuditScope(use_case=self.use_case, billing_note=None)
