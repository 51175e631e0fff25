"""Dunning: a failed payment becomes a CRM case with context and an audit trail in both systems.

The story: a billing platform reports that a payment failed. We do not trust the event: we
re-fetch the invoice, its customer and the recent payment attempts, and find the linked CRM
account. A reasoner (rules by default) classifies the failure — expired card, insufficient funds,
hard decline, technical — and names its reasons. We open one CRM case for the invoice (upsert on
an idempotency key, so a retried activity never opens two), record what we did in the CRM's agent
log and as a note on the invoice in billing, and then wait: for the invoice to be paid (recovered)
or for the wait to run out (unresolved). Either way the outcome is audited on both sides.

A second failure of the same invoice while we run joins this workflow (signal-with-start on
``dunning:{billing}:{invoice_id}``); duplicate deliveries are ignored by event ID.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.crm import CrmActivities
    from activities.models import (
        AddBillingNoteInput,
        AssessFailureInput,
        FindAccountInput,
        GetInvoiceContextInput,
        UpsertCaseInput,
        WriteAuditInput,
    )
    from activities.reasoning import ReasoningActivities
    from domain import temporal as names
    from domain.audit import AuditEntry, parameters_hash
    from domain.decisions import DunningAssessment
    from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult, DunningStatus
    from domain.ids import idempotency_key
    from domain.models import (
        CaseDraft,
        CaseRef,
        CrmAccount,
        InvoiceContext,
        InvoicePaid,
        InvoiceStatus,
        NoteTarget,
        PaymentFailed,
    )

USE_CASE = "dunning"

_READ = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60), maximum_attempts=20),
}
# Writes stop retrying well inside Chargebee's 30-minute idempotency window, so a late retry can
# never be taken for a new request.
_WRITE = {
    "start_to_close_timeout": timedelta(seconds=30),
    "schedule_to_close_timeout": timedelta(minutes=25),
    "retry_policy": RetryPolicy(maximum_interval=timedelta(seconds=60)),
}


@workflow.defn(name=WORKFLOW_TYPE)
class DunningWorkflow:
    @workflow.init
    def __init__(self, input: DunningInput) -> None:
        self._input = input
        self._failures: list[PaymentFailed] = []
        self._seen_events: set[str] = set()
        self._paid: InvoicePaid | None = None
        self._status = DunningStatus(
            stage="waiting for the failure event", invoice_id=input.invoice_id
        )

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=names.SIGNAL_PAYMENT_FAILED, description="A payment on this invoice failed."
    )
    def payment_failed(self, event: PaymentFailed) -> None:
        if event.event_id in self._seen_events:
            return  # a redelivered webhook: already counted
        self._seen_events.add(event.event_id)
        self._failures.append(event)
        self._status = self._status.model_copy(update={"failures_seen": len(self._failures)})

    @workflow.signal(name=names.SIGNAL_INVOICE_PAID, description="The invoice was paid.")
    def invoice_paid(self, event: InvoicePaid) -> None:
        if self._paid is None:
            self._paid = event

    @workflow.query(name="status", description="Where this dunning run stands.")
    def status(self) -> DunningStatus:
        return self._status

    # --- the run ---------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: DunningInput) -> DunningResult:
        await workflow.wait_condition(lambda: bool(self._failures) or self._paid is not None)

        ctx = await workflow.execute_activity_method(
            BillingActivities.get_invoice_context,
            GetInvoiceContextInput(invoice_id=input.invoice_id),
            summary="re-fetch invoice, customer and payments",
            **_READ,
        )
        self._update(stage="gathering context", customer_id=ctx.customer.id)
        workflow.upsert_search_attributes(
            [
                names.CUSTOMER.value_set(ctx.customer.id),
                names.AMOUNT_AT_RISK.value_set(ctx.invoice.amount_due / 100),
            ]
        )
        if ctx.invoice.status is InvoiceStatus.PAID:
            # Events are triggers, not truth: a stale or late failure event for a paid invoice.
            return self._finish("already_paid", case=None)

        found = await workflow.execute_activity_method(
            CrmActivities.find_crm_account,
            FindAccountInput(billing=input.billing, customer_id=ctx.customer.id),
            summary="find the linked CRM account",
            **_READ,
        )
        assessment = await workflow.execute_activity_method(
            ReasoningActivities.assess_payment_failure,
            AssessFailureInput(context=ctx, account=found.account, now=workflow.now()),
            summary="classify the failure",
            **_READ,
        )
        self._update(
            stage="opening the CRM case",
            failure_class=assessment.failure_class.value,
            priority=assessment.priority.value,
        )

        case = await workflow.execute_activity_method(
            CrmActivities.upsert_crm_case,
            UpsertCaseInput(draft=self._case_draft(ctx, found.account, assessment)),
            summary="open the billing case",
            **_WRITE,
        )
        self._update(case_id=case.id, case_number=case.number)
        await self._audit(
            "create_case",
            ctx,
            found.account,
            assessment,
            case,
            outcome="case opened" if case.created else "case already open",
            summary=f"Payment failed on invoice {ctx.invoice.id}: {assessment.failure_class.value}, "
            f"{assessment.priority.value} priority. " + "; ".join(assessment.reasons),
        )

        wait = input.payment_wait
        self._update(stage="waiting for payment")
        workflow.set_current_details(
            f"Case {case.number or case.id} open ({assessment.priority.value} priority, "
            f"{assessment.failure_class.value}). Waiting up to {wait.days} days for invoice "
            f"{ctx.invoice.id} to be paid."
        )
        try:
            await workflow.wait_condition(
                lambda: self._paid is not None,
                timeout=wait,
                timeout_summary="payment wait",
            )
            outcome = "recovered"
        except TimeoutError:
            outcome = "unresolved"

        await self._audit(
            "close_dunning",
            ctx,
            found.account,
            assessment,
            case,
            outcome=outcome,
            summary=f"Invoice {ctx.invoice.id} {'was paid' if outcome == 'recovered' else 'is still unpaid'}"
            f" after {len(self._failures)} failed attempt(s).",
        )
        return self._finish(outcome, case=case)

    # --- steps -----------------------------------------------------------------------------------------

    def _case_draft(
        self, ctx: InvoiceContext, account: CrmAccount | None, assessment: DunningAssessment
    ) -> CaseDraft:
        inv = ctx.invoice
        failure = ctx.last_failure
        lines = [
            f"Invoice {inv.id}: {inv.amount_due / 100:,.2f} {inv.currency} due "
            f"(total {inv.total / 100:,.2f}).",
            f"Billing customer {ctx.customer.id} on {self._input.billing}; "
            f"MRR {ctx.customer.mrr / 100:,.2f} {ctx.customer.currency}.",
        ]
        if failure:
            lines.append(
                f"Last attempt {failure.id} declined: {failure.decline_code or 'no code'}"
                + (f" ({failure.decline_message})" if failure.decline_message else "")
            )
        lines.append(f"Assessment ({assessment.reasoner}): {assessment.failure_class.value}.")
        lines.extend(f"- {r}" for r in assessment.reasons)
        lines.append(
            "Recommended: "
            + (
                "retry the payment and remind the customer."
                if assessment.retry_recommended
                else "ask the customer for a new payment method; retrying will not help."
            )
        )
        lines.append(f"Opened by RevBridge workflow {workflow.info().workflow_id}.")
        return CaseDraft(
            key=idempotency_key(workflow.info().workflow_id, "create-case"),
            account_id=account.id if account else None,
            subject=f"Payment failed: invoice {inv.id} ({assessment.failure_class.value})",
            description="\n".join(lines),
            priority=assessment.priority,
            invoice_id=inv.id,
        )

    async def _audit(
        self,
        action: str,
        ctx: InvoiceContext,
        account: CrmAccount | None,
        assessment: DunningAssessment,
        case: CaseRef,
        outcome: str,
        summary: str,
    ) -> None:
        info = workflow.info()
        entry = AuditEntry(
            key=idempotency_key(info.workflow_id, f"audit:{action}:crm"),
            use_case=USE_CASE,
            action=action,
            parameters_hash=parameters_hash(
                {"action": action, "invoice": ctx.invoice.id, "case": case.id}
            ),
            decision="allow",
            policy_ids=[],
            reasoner=assessment.reasoner,
            model=assessment.model,
            outcome=outcome,
            summary=summary,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            account_id=account.id if account else None,
            case_id=case.id,
            at=workflow.now(),
        )
        crm_id, note_id = await asyncio.gather(
            workflow.execute_activity_method(
                CrmActivities.write_crm_audit,
                WriteAuditInput(entry=entry),
                summary=f"audit {action} in the CRM",
                **_WRITE,
            ),
            workflow.execute_activity_method(
                BillingActivities.add_billing_note,
                AddBillingNoteInput(
                    target=NoteTarget.INVOICE,
                    target_id=ctx.invoice.id,
                    entry=entry.model_copy(
                        update={"key": idempotency_key(info.workflow_id, f"audit:{action}:billing")}
                    ),
                ),
                summary=f"audit {action} in billing",
                **_WRITE,
            ),
        )
        self._update(audit_ids=[*self._status.audit_ids, crm_id.id, note_id.id])

    def _update(self, **changes: object) -> None:
        self._status = self._status.model_copy(update=changes)

    def _finish(self, outcome: str, case: CaseRef | None) -> DunningResult:
        self._update(stage="closed", outcome=outcome)
        workflow.upsert_search_attributes(
            [names.AMOUNT_AT_RISK.value_set(0.0 if outcome != "unresolved" else self._amount())]
        )
        workflow.set_current_details(f"Closed: {outcome}.")
        return DunningResult(
            outcome=outcome,
            invoice_id=self._input.invoice_id,
            case_id=case.id if case else None,
            audit_ids=self._status.audit_ids,
        )

    def _amount(self) -> float:
        return max((f.amount_due for f in self._failures), default=0) / 100
