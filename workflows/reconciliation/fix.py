"""One money or contract fix, waiting for a person.

The story: the daily reconciliation starts this workflow for a new exception whose fix touches
money or a contract (an unapplied payment, a subscription that disagrees with the deal, ...).
Its ID is the exception's stable ID, so a discrepancy found again tomorrow never asks twice.
The proposed fix goes through the gate as the action it amounts to (a refund or a credit for
finance, a plan change or a subscription for RevOps: policies/approvers.yaml names who may
approve), published as a pending approval (``revbridge approvals``, the Web UI), with a reminder
task for the approvers at the SLA. The decision is written onto the exception in the CRM
(Approved with the approver, or Rejected / expired back to Open) and audited on both sides.
What the approved fix then takes — the refund, the credit, the subscription change — is done
by finance or RevOps in the billing platform; the next daily run closes the exception once the
books agree (docs/reconciliation.md).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.governed.gate import Governed, Permit

with workflow.unsafe.imports_passed_through():
    from activities.reconcile import ReconcileActivities, UpsertExceptionsInput
    from domain import reconcile as rx
    from domain import temporal as names
    from domain.approvals import ApprovalTiming, ProposedAction
    from domain.models import NoteTarget
    from domain.policy import AccountFacts, ActionKind
    from domain.reconcile import ExceptionStatus as St
    from domain.temporal import UseCase


@workflow.defn(name=rx.FIX_WORKFLOW_TYPE)
class ReconciliationFixWorkflow(GovernedWorkflow):
    use_case = UseCase.RECONCILIATION

    @workflow.init
    def __init__(self, input: rx.FixInput) -> None:
        self._init_governed()
        self._record = input.record

    @workflow.run
    async def run(self, input: rx.FixInput) -> rx.FixResult:
        workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(self.use_case)])
        r = input.record
        subject = r.customer_id or r.account_id or r.id
        action = ProposedAction(
            kind=ActionKind(rx.FIX_ACTION[r.kind]),
            customer_id=subject,
            subject_id=r.id,
            amount=rx.money(rx.Discrepancy(
                id=r.id, kind=r.kind, severity=r.severity, records=r.records,
                evidence=r.evidence, fix=rx.Fix(summary=r.fix, system="billing"),
            )),
            reason=f"{r.kind.value}: {r.fix} ({', '.join(r.records)})",
        )  # fmt: skip
        workflow.set_current_details(
            f"Exception {r.id} ({r.kind.value}, {r.severity.value}): {r.fix}. "
            f"Evidence: {'; '.join(f'{k}={v}' for k, v in r.evidence.items())}"
        )
        governed = await self.govern(
            action,
            AccountFacts(id=subject),
            why=f"The daily reconciliation found {r.kind.value} ({r.id}); proposed: {r.fix}.",
            execute=self._approved,
            audit=self._audit_decision,
            timing=ApprovalTiming(
                remind_after=timedelta(hours=input.remind_after_h),
                expire_after=timedelta(hours=input.expire_after_h),
            ),
            crm_account_id=r.account_id,
        )
        if governed.status != "executed":
            await self._write_status(governed, St.REJECTED if governed.status == "rejected"
                                     else St.OPEN)  # fmt: skip
        await self.handlers_finished()
        return rx.FixResult(exception_id=r.id, status=governed.status, approver=governed.approver)

    async def _approved(self, permit: Permit, action: ProposedAction) -> str:
        who = self._executing.approver if self._executing else None
        await self.write(
            permit,
            ReconcileActivities.reconcile_upsert_exceptions,
            UpsertExceptionsInput(records=[self._with(St.APPROVED, who)]),
            summary="mark the exception approved in the CRM",
        )
        return self._record.id

    async def _write_status(self, governed: Governed, status: St) -> None:
        permit = await self.ask_housekeeping(
            ActionKind.CREATE_CASE, AccountFacts(id=self._record.customer_id or self._record.id)
        )
        if permit.allowed:
            await self.write(
                permit,
                ReconcileActivities.reconcile_upsert_exceptions,
                UpsertExceptionsInput(records=[self._with(status, governed.approver,
                                                          governed.status)]),
                summary=f"mark the exception {status.value.lower()} in the CRM",
            )  # fmt: skip

    def _with(
        self, status: St, approver: str | None, outcome: str = "approved"
    ) -> rx.ExceptionRecord:
        r = self._record
        by = f" by {approver}" if approver else ""
        return r.model_copy(
            update={
                "status": status,
                "last_seen": workflow.now().date() if r.last_seen < workflow.now().date()
                else r.last_seen,
                "resolution": f"fix {outcome}{by}: {r.fix}",
            }
        )  # fmt: skip

    async def _audit_decision(self, governed: Governed) -> None:
        await self.audit_governed(governed)

    def _audit_scope(self) -> AuditScope:
        r = self._record
        note = (NoteTarget.CUSTOMER, r.customer_id) if r.customer_id else None
        return AuditScope(use_case=self.use_case, account_id=r.account_id, billing_note=note)
