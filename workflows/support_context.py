"""Support context (customer 360): every new case gets the customer's billing story on it.

The story: a customer opens a Salesforce case or a HubSpot ticket, and the CRM tells us
(``case:{crm}:{case_id}``, one run per case, ever). Events are triggers, not truth: we read the
case and its account back from the CRM. If the case is gone there is nothing to do and nothing is
written. If the account points at a billing customer, we read that customer from billing — plan,
latest invoices and payments, credits, usage — and look for dunning runs still going for its
unpaid invoices. A pure function turns that into a short note that cites the exact invoice and
payment IDs with their amounts, and the note goes onto the case (Salesforce
``Billing_Context__c``, a HubSpot note on the ticket), keyed so a retried write lands once. A case
whose account has no billing customer (or one billing does not know) gets a short "no billing
account linked" note instead of an error.

Toward billing this workflow only reads: it makes no billing write and leaves no billing note; its
audit entry goes to the CRM's agent log alone. The note is a write like any other, so it passes
the policy engine (``write_note`` for ``support_context``; ``observe`` mode blocks it, ``assist``
asks a person first).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.governed.audit import AuditScope
from workflows.governed.base import GovernedWorkflow
from workflows.governed.gate import Governed, Permit
from workflows.options import READ

with workflow.unsafe.imports_passed_through():
    from activities.drafting import DraftingActivities, SupportDraftInput
    from activities.support import (
        AnnotateCaseInput,
        GetSupportCaseInput,
        OpenDunningInput,
        SupportActivities,
        SupportSnapshotInput,
    )
    from domain import temporal as names
    from domain.approvals import ApprovalTiming, ProposedAction
    from domain.drafts import Variant
    from domain.ids import idempotency_key
    from domain.models import CrmAccount
    from domain.policy import AccountFacts, ActionKind
    from domain.records import CaseDetail, CustomerSnapshot
    from domain.support import (
        WORKFLOW_TYPE,
        OpenDunning,
        SupportContextInput,
        SupportContextResult,
        SupportStatus,
        billing_link,
        no_billing_account_note,
        summarize,
        unpaid_invoice_ids,
    )
    from domain.temporal import UseCase

NOTE_STEP = "billing-context"
#: the summary drafted through the drafting seam (issue 22: a model's, contained, when policy lists
#: ``support_summary``; else the rules text); runs from before wrote the rules text directly
SUPPORT_DRAFTING_PATCH = "support-drafting"
_DRAFT_OPTIONS = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_attempts=2, initial_interval=timedelta(seconds=1)),
}


@workflow.defn(name=WORKFLOW_TYPE)
class SupportContextWorkflow(GovernedWorkflow):
    use_case = UseCase.SUPPORT_CONTEXT

    @workflow.init
    def __init__(self, input: SupportContextInput) -> None:
        self._input = input
        self._status = SupportStatus(stage="reading the case", case_id=input.case_id)
        self._account: CrmAccount | None = None
        self._init_governed()

    @workflow.query(name="status", description="Where this support context run stands.")
    def status(self) -> SupportStatus:
        return self._status

    @workflow.run
    async def run(self, input: SupportContextInput) -> SupportContextResult:
        workflow.upsert_search_attributes([names.USE_CASE_KEY.value_set(self.use_case)])
        self._stage(f"Reading {input.crm} case {input.case_id} and its account.")
        found = await workflow.execute_activity_method(
            SupportActivities.support_get_case,
            GetSupportCaseInput(case_id=input.case_id),
            summary="read the case and its account",
            **READ,
        )
        if found.case is None:
            # A stale or replayed event for a case that no longer exists: nothing to annotate.
            workflow.logger.warning("case %s not found in %s", input.case_id, input.crm)
            return await self._finish(
                "case_not_found",
                f"Case {input.case_id} was not found in {input.crm}: nothing written.",
            )
        case, account = found.case, found.account
        self._account = account
        self._update(account_id=account.id if account else None)

        customer_id = billing_link(account, input.billing)
        snapshot: CustomerSnapshot | None = None
        if customer_id is not None:
            self._update(customer_id=customer_id)
            workflow.upsert_search_attributes([names.CUSTOMER_KEY.value_set(customer_id)])
            self._stage(f"Reading {input.billing} customer {customer_id}.")
            snapshot = (
                await workflow.execute_activity_method(
                    SupportActivities.support_customer_snapshot,
                    SupportSnapshotInput(customer_id=customer_id),
                    summary="read the billing customer (read-only)",
                    **READ,
                )
            ).snapshot

        wf_id = workflow.info().workflow_id
        if snapshot is None:
            outcome = "no_billing_account"
            text = no_billing_account_note(
                self._why_unlinked(case, account, customer_id), workflow_id=wf_id
            )
        else:
            outcome = "summarized"
            dunning = await self._open_dunning(snapshot)
            text = summarize(
                snapshot, dunning, input.billing, as_of=workflow.now(), workflow_id=wf_id
            )
            if workflow.patched(SUPPORT_DRAFTING_PATCH):
                text = await self._draft_summary(case, account, snapshot, text)

        self._stage(f"Writing the billing context onto case {case.number or case.id}.")
        governed = await self._annotate(case, account, snapshot, text, outcome)
        note_id = governed.result_id if governed.status == "executed" else None
        self._update(
            note_id=note_id, policy=f"{governed.decision.outcome.value}: {governed.status}"
        )
        return await self._finish(
            outcome,
            f"Case {case.number or case.id}: {outcome}; note {governed.status}"
            + (f" ({note_id})" if note_id else "")
            + f".\n\n{text}",
            customer_id=customer_id if snapshot is not None else None,
            note_id=note_id,
        )

    # --- steps -----------------------------------------------------------------------------------------

    async def _open_dunning(self, snapshot: CustomerSnapshot) -> list[OpenDunning]:
        unpaid = unpaid_invoice_ids(snapshot)
        if not unpaid:
            return []
        self._stage(f"Looking for dunning runs on {len(unpaid)} unpaid invoice(s).")
        found = await workflow.execute_activity_method(
            SupportActivities.support_open_dunning,
            OpenDunningInput(billing=self._input.billing, invoice_ids=unpaid),
            summary="find open dunning runs",
            **READ,
        )
        self._update(open_dunning=[d.workflow_id for d in found.runs])
        return found.runs

    async def _draft_summary(
        self,
        case: CaseDetail,
        account: CrmAccount | None,
        snapshot: CustomerSnapshot,
        rules: str,
    ) -> str:
        """The note's summary from a model when one may draft it (contained: figures and IDs
        from the rules summary only), else the rules text; a refused draft is audited (CRM only)
        with its reasons. The rules text's last line (who wrote it, read-only) stays the note's."""
        try:
            draft = await workflow.execute_local_activity_method(
                DraftingActivities.draft_support_summary,
                SupportDraftInput(
                    customer_id=snapshot.customer.id,
                    account_name=account.name if account else None,
                    case_subject=case.subject,
                    invoice_ids=[i.id for i in snapshot.invoices],
                    template=rules,
                ),
                summary="draft the support summary",
                **_DRAFT_OPTIONS,
            )
        except (ActivityError, ApplicationError) as err:  # a local activity's failure is the latter
            workflow.logger.warning("support summary draft unavailable (%s): the rules text", err)
            return rules
        if draft.refusals:
            await self.audit(
                "draft_refused",
                decision="deny",
                outcome="rules text used",
                summary=f"Billing context for case {case.number or case.id}: the model's draft "
                "was discarded for the rules summary: " + "; ".join(draft.refusals),
                parameters={"kind": "support_summary", "case_id": case.id},
            )
        if draft.variant is not Variant.LLM:
            return rules
        footer = rules.splitlines()[-1]
        return f"{draft.body}\n\n{footer}"

    async def _annotate(
        self,
        case: CaseDetail,
        account: CrmAccount | None,
        snapshot: CustomerSnapshot | None,
        text: str,
        outcome: str,
    ) -> Governed:
        customer_id = snapshot.customer.id if snapshot else None
        action = ProposedAction(
            kind=ActionKind.WRITE_NOTE,
            customer_id=customer_id or "unlinked",
            subject_id=case.id,
            reason=f"billing context for a new case ({outcome})",
        )
        facts = AccountFacts(
            id=account.id if account else (customer_id or case.id),
            tier=account.tier if account else "SMB",
            mrr=snapshot.customer.mrr if snapshot else 0,
        )
        return await self.govern(
            action,
            facts,
            why=action.reason,
            execute=lambda permit, _: self._write_note(permit, case.id, text),
            audit=lambda governed: self._audit_note(governed, case, outcome),
            timing=ApprovalTiming(),
            crm_account_id=account.id if account else None,
        )

    async def _write_note(self, permit: Permit, case_id: str, text: str) -> str:
        written = await self.write(
            permit,
            SupportActivities.support_annotate_case,
            AnnotateCaseInput(
                case_id=case_id,
                text=text,
                # one note per case, ever: the workflow ID is case:{crm}:{case_id}
                idempotency_key=idempotency_key(workflow.info().workflow_id, NOTE_STEP),
            ),
            summary="write the billing context onto the case",
        )
        return written.id

    # --- audit (CRM only: this use case never writes to billing) --------------------------------

    def _audit_scope(self) -> AuditScope:
        return AuditScope(
            use_case=self.use_case,
            account_id=self._account.id if self._account else None,
            case_id=self._input.case_id,
            billing_note=None,
        )

    async def _audit_note(self, governed: Governed, case: CaseDetail, outcome: str) -> None:
        detail = f" ({governed.result_id})" if governed.result_id else ""
        await self.audit(
            "annotate_case",
            decision=governed.decision.outcome.value,
            policy_ids=governed.decision.policy_ids,
            approver=governed.approver,
            outcome=governed.status + detail,
            summary=f"Billing context for case {case.number or case.id} ({outcome}): "
            f"{governed.status}"
            + (f" by {governed.approver}" if governed.approver else "")
            + ". Read-only toward billing.",
            parameters=governed.action.model_dump(mode="json"),
        )

    # --- helpers ---------------------------------------------------------------------------------

    def _why_unlinked(
        self, case: CaseDetail, account: CrmAccount | None, customer_id: str | None
    ) -> str:
        billing = self._input.billing
        if account is None:
            return f"case {case.number or case.id} is not on an account"
        if customer_id is not None:
            return (
                f"account {account.id} points at {billing} customer {customer_id}, "
                f"which {billing} does not know"
            )
        if account.billing_customer_id and account.billing_platform:
            return f"account {account.id} is linked to {account.billing_platform}, not {billing}"
        return f"account {account.id} has no {billing} customer"

    def _stage(self, details: str) -> None:
        self._update(stage=details)
        workflow.set_current_details(details)

    def _update(self, **changes: object) -> None:
        self._status = self._status.model_copy(update=changes)

    async def _finish(
        self,
        outcome: str,
        details: str,
        customer_id: str | None = None,
        note_id: str | None = None,
    ) -> SupportContextResult:
        self._update(stage="closed", outcome=outcome)
        workflow.set_current_details(details)
        await self.handlers_finished()
        return SupportContextResult(
            outcome=outcome,
            case_id=self._input.case_id,
            customer_id=customer_id,
            note_id=note_id,
        )
