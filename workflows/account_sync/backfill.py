"""Account sync's backfill: linking the book a deployment already has.

The story: ``revbridge sync backfill`` starts one run per deployment
(``account-sync-backfill:{billing}:{crm}``). It reads both books page by page and lets
``domain/linking.py`` decide (an external ID either side holds, the same email, the same company
domain, then similar names with a confidence score; ambiguous or uncertain pairs go to the
report for a person). A dry run stops there and reports. Otherwise the links the CRM does not
hold yet are written — the billing link on each account, ONE bulk call per 200 accounts,
through the gate (housekeeping: observe mode writes nothing), each call audited in the CRM's
agent log (a batch spans customers: no single billing record holds it). It creates nothing:
no account, no customer, only links.

Resumable: the run keeps a watermark (what remains to write) and continues as new with it when
its history grows; a worker that dies mid-way resumes from the last write. A run that was ended
by hand is resumed by running the backfill again: what was written already is found on the
accounts (``linked already``) and skipped.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.governed.base import GovernedWorkflow
from workflows.options import READ

with workflow.unsafe.imports_passed_through():
    from activities.sync import BackfillLinkInput, BackfillPlanInput, SyncActivities
    from domain import golden
    from domain.golden import BackfillInput, BackfillReport
    from domain.policy import AccountFacts, ActionKind
    from domain.temporal import UseCase

#: reading two books of 10,000 takes minutes: a longer attempt, kept alive by heartbeats
PLAN = {
    **READ,
    "start_to_close_timeout": timedelta(minutes=15),
    "heartbeat_timeout": timedelta(minutes=2),
}


@workflow.defn(name=golden.BACKFILL_WORKFLOW_TYPE)
class AccountSyncBackfillWorkflow(GovernedWorkflow):
    use_case = UseCase.ACCOUNT_SYNC

    @workflow.init
    def __init__(self, input: BackfillInput) -> None:
        self._input = input
        self.report = input.report or BackfillReport(dry_run=input.dry_run)
        self.remaining: dict[str, str] = dict(input.remaining or {})
        self._init_governed()
        self._local_decisions = True

    @workflow.query(name="status", description="Progress: planned, written, left.")
    def status(self) -> BackfillReport:
        return self.report

    @workflow.run
    async def run(self, input: BackfillInput) -> BackfillReport:
        if input.remaining is None:
            planned = await workflow.execute_activity_method(
                SyncActivities.sync_backfill_plan,
                BackfillPlanInput(billing=input.billing),
                summary="read both books and plan the links",
                **PLAN,
            )
            plan = planned.plan
            self.remaining = dict(planned.to_write)
            self._set(
                counts=plan.counts(),
                linked_already=planned.linked_already,
                to_write=len(planned.to_write),
                review={
                    r.customer_id: [f"{c.account_id} ({c.score:.2f})" for c in r.candidates]
                    for r in plan.review
                },
                billing_reads=planned.billing_reads,
                crm_reads=planned.crm_reads,
                stage="planned",
            )
            if input.dry_run:
                self._set(stage="dry run: nothing written")
                return self.report
        permit = await self.ask_housekeeping(
            ActionKind.UPDATE_CRM_FIELD, AccountFacts(id=workflow.info().workflow_id)
        )
        if not permit.allowed:
            self._set(stage=f"not written ({', '.join(permit.decision.policy_ids)})")
            await self.audit(
                "sync_backfill_links",
                decision="deny",
                outcome="blocked",
                summary=f"{len(self.remaining)} links planned, not written.",
                key_suffix="blocked",
                parameters={"links": len(self.remaining)},
            )
            return self.report
        while self.remaining:
            ids = sorted(self.remaining)[: input.chunk]
            chunk = {i: self.remaining[i] for i in ids}
            self._set(stage=f"linking: {len(self.remaining)} left")
            result = await self.write(
                permit,
                SyncActivities.sync_backfill_link,
                BackfillLinkInput(billing=input.billing, links=chunk),
                summary=f"link {len(chunk)} accounts",
            )
            for i in ids:  # the watermark: what is written never is again
                self.remaining.pop(i)
            n = self.report.bulk_calls + 1
            self._set(
                written=self.report.written + result.written,
                failed={**self.report.failed, **result.failed},
                bulk_calls=n,
            )
            await self.audit(
                "sync_backfill_links",
                decision=permit.decision.outcome.value,
                outcome=f"written ({result.written}/{len(chunk)})",
                summary=f"Billing links written on {result.written} of {len(chunk)} accounts "
                f"(backfill call {n}); created nothing.",
                policy_ids=permit.decision.policy_ids,
                key_suffix=str(n),
                parameters={"accounts": len(chunk), "failed": len(result.failed)},
            )
            if self.remaining and self.history_full(input.history_limit):
                await self.continue_as_new(
                    input.model_copy(update={"remaining": self.remaining, "report": self.report})
                )
        self._set(stage="done")
        return self.report

    def _set(self, **changes: object) -> None:
        self.report = self.report.model_copy(update=changes)
