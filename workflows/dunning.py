"""Dunning: a failed payment becomes a CRM case with context, governed actions and an audit trail.

The story: a billing platform reports that a payment failed. We do not trust the event: we
re-fetch the invoice, its customer and the recent payment attempts, and find the linked CRM
account. A reasoner (rules by default) classifies the failure — expired card, insufficient funds,
hard decline, technical — names its reasons and proposes actions (a payment retry, a courtesy
credit for a large account). Every side effect goes through the approval gate: the policy engine
allows it, blocks it, or asks a named person first. We open one CRM case for the invoice (upsert on
an idempotency key, so a retried activity never opens two), take the allowed or approved actions,
record each in the CRM's agent log and as a note in billing, and then wait: for the invoice to be
paid (recovered) or for the wait to run out (unresolved). Either way the outcome is audited on
both sides.

A second failure of the same invoice while we run joins this workflow (signal-with-start on
``dunning:{billing}:{invoice_id}``); duplicate deliveries are ignored by event ID.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval import Governed, GovernedWorkflow
from workflows.options import READ, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.crm import CrmActivities
    from activities.models import (
        AddBillingNoteInput,
        ApplyCreditInput,
        AssessFailureInput,
        FindAccountInput,
        GetInvoiceContextInput,
        RetryPaymentInput,
        UpsertCaseInput,
        WriteAuditInput,
    )
    from activities.reasoning import ReasoningActivities
    from domain import temporal as names
    from domain.approvals import PendingApproval, ProposedAction, RefusedApproval
    from domain.audit import AuditEntry, parameters_hash
    from domain.decisions import DunningAssessment
    from domain.dunning import (
        WORKFLOW_TYPE,
        DunningCarry,
        DunningInput,
        DunningResult,
        DunningStatus,
    )
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
    from domain.policy import AccountFacts, ActionKind

USE_CASE = "dunning"


@workflow.defn(name=WORKFLOW_TYPE)
class DunningWorkflow(GovernedWorkflow):
    use_case = USE_CASE

    @workflow.init
    def __init__(self, input: DunningInput) -> None:
        self._input = input
        self._failures: list[PaymentFailed] = []
        self._seen_events: set[str] = set()
        self._paid: InvoicePaid | None = None
        self._ctx: InvoiceContext | None = None
        self._account: CrmAccount | None = None
        self._assessment: DunningAssessment | None = None
        self._case: CaseRef | None = None
        self._status = DunningStatus(
            stage="waiting for the failure event", invoice_id=input.invoice_id
        )
        self._init_gate()
        if input.carry is not None:  # a continuation: pick up exactly where the last run was
            c = input.carry
            self._ctx, self._account, self._assessment, self._case = (
                c.context,
                c.account,
                c.assessment,
                c.case,
            )
            self._failures = list(c.failures)
            self._seen_events = set(c.seen_events)
            self._status = c.status

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=names.SIGNAL_PAYMENT_FAILED, description="A payment on this invoice failed."
    )
    def payment_failed(self, event: PaymentFailed) -> None:
        if event.event_id in self._seen_events:
            return  # a redelivered webhook: already counted
        self._seen_events.add(event.event_id)
        self._failures.append(event)
        self._update(failures_seen=len(self._failures))

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
        if input.carry is not None:
            self._refusal_auditor = asyncio.create_task(self.audit_refusals(self._audit_refusal))
            recovered = await self._collect(input, input.carry.phase, input.carry.deadline)
            return await self._conclude(recovered)
        # Started by an event (signal-with-start) or by a person, who needs no event to wait for.
        await workflow.wait_condition(
            lambda: bool(self._failures) or self._paid is not None or input.started_by is not None
        )
        self._refusal_auditor = asyncio.create_task(self.audit_refusals(self._audit_refusal))

        try:
            ctx = self._ctx = await workflow.execute_activity_method(
                BillingActivities.get_invoice_context,
                GetInvoiceContextInput(invoice_id=input.invoice_id),
                summary="re-fetch invoice, customer and payments",
                **READ,
            )
        except ActivityError as err:
            if isinstance(err.cause, ApplicationError) and (err.cause.type or "").endswith(
                ".not_found"
            ):
                # An event about an invoice (or customer) the billing platform does not know:
                # nothing to act on, nothing written. The history and the log say why.
                workflow.logger.warning("invoice %s not found in billing", input.invoice_id)
                return await self._finish("unknown_invoice")
            raise
        self._update(stage="gathering context", customer_id=ctx.customer.id)
        workflow.upsert_search_attributes(
            [
                names.CUSTOMER.value_set(ctx.customer.id),
                names.AMOUNT_AT_RISK.value_set(ctx.invoice.amount_due / 100),
            ]
        )
        if ctx.invoice.status is InvoiceStatus.PAID:
            # Events are triggers, not truth: a stale or late failure event for a paid invoice.
            return await self._finish("already_paid")

        found = await workflow.execute_activity_method(
            CrmActivities.find_crm_account,
            FindAccountInput(billing=input.billing, customer_id=ctx.customer.id),
            summary="find the linked CRM account",
            **READ,
        )
        self._account = found.account
        assessment = self._assessment = await workflow.execute_activity_method(
            ReasoningActivities.assess_payment_failure,
            AssessFailureInput(
                context=ctx, account=found.account, now=workflow.now(), open_cases=found.open_cases
            ),
            summary="classify the failure",
            **READ,
        )
        for refusal in assessment.rejected:
            # what the reasoner asked for never reached an activity; the record says why
            code = refusal.split(":", 1)[0]
            await self._audit(
                "llm_output_rejected",
                decision="deny",
                policy_ids=[f"containment:{code}"],
                outcome="blocked",
                summary=f"The {assessment.model or 'LLM'} reply was refused by code: {refusal}. "
                "The rules decided instead.",
                key_suffix=code,
            )
        self._update(
            stage="opening the CRM case",
            failure_class=assessment.failure_class.value,
            priority=assessment.priority.value,
        )

        await self._govern(
            ProposedAction(
                kind=ActionKind.CREATE_CASE,
                customer_id=ctx.customer.id,
                invoice_id=ctx.invoice.id,
                reason="open a billing case with the context",
            ),
            why="; ".join(assessment.reasons),
        )

        proposals = assessment.proposed_actions
        for action in (a for a in proposals if a.kind is not ActionKind.RETRY_PAYMENT):
            if self._paid is not None:
                break
            self._update(stage=f"deciding on {action.kind.value}")
            await self._govern(action, why=action.reason)

        recovered = await self._collect(input, "retry_due", deadline=None)
        return await self._conclude(recovered)

    async def _collect(self, input: DunningInput, phase: str, deadline: datetime | None) -> bool:
        """Wait for the payment, with the recommended retry when it falls due. ``deadline`` is
        set on a continuation (the wait goes on to the same end); True when the invoice is paid."""
        assert self._assessment is not None
        if phase == "retry_due":
            wait = deadline - workflow.now() if deadline else input.retry_after
            if await self._wait_for_payment(max(wait, timedelta(0)), "retry due", phase):
                return True
            retry = next(
                (
                    a
                    for a in self._assessment.proposed_actions
                    if a.kind is ActionKind.RETRY_PAYMENT
                ),
                None,
            )
            if retry is not None:
                self._update(stage="retrying the payment")
                await self._govern(retry, why=retry.reason)
            deadline = None
        wait = (
            deadline - workflow.now()
            if deadline
            else max(input.payment_wait - input.retry_after, timedelta(0))
        )
        return await self._wait_for_payment(max(wait, timedelta(0)), "payment wait", "payment_wait")

    async def _conclude(self, recovered: bool) -> DunningResult:
        assert self._ctx is not None
        outcome = "recovered" if recovered else "unresolved"
        await self._audit(
            "close_dunning",
            decision="allow",
            policy_ids=[],
            outcome=outcome,
            summary=f"Invoice {self._ctx.invoice.id} "
            f"{'was paid' if recovered else 'is still unpaid'}"
            f" after {len(self._failures)} failed attempt(s).",
        )
        return await self._finish(outcome)

    # --- governed actions ----------------------------------------------------------------------------

    async def _govern(self, action: ProposedAction, why: str) -> Governed:
        assert self._ctx is not None
        account = self._account
        facts = AccountFacts(
            id=account.id if account else self._ctx.customer.id,
            tier=account.tier if account else "SMB",
            mrr=self._ctx.customer.mrr,
        )
        governed = await self.govern(
            action,
            facts,
            why=why,
            execute=self._execute,
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id if account else None,
            superseded=lambda: self._paid is not None,
        )
        self._update(
            actions=[
                *self._status.actions,
                f"{action.kind.value}: {governed.decision.outcome.value} → {governed.status}"
                + (f" ({governed.approver})" if governed.approver else ""),
            ]
        )
        return governed

    async def _execute(self, action: ProposedAction) -> str:
        """Run one allowed action; the idempotency key is the workflow ID plus the action ID."""
        assert self._ctx is not None
        key = idempotency_key(workflow.info().workflow_id, f"act:{action.action_id}")
        if action.kind is ActionKind.CREATE_CASE:
            self._case = await workflow.execute_activity_method(
                CrmActivities.upsert_crm_case,
                UpsertCaseInput(draft=self._case_draft()),
                summary="open the billing case",
                **WRITE,
            )
            self._update(case_id=self._case.id, case_number=self._case.number)
            return self._case.id
        if action.kind is ActionKind.APPLY_CREDIT:
            credit = await workflow.execute_activity_method(
                BillingActivities.apply_credit,
                ApplyCreditInput(
                    customer_id=action.customer_id,
                    amount=action.amount,
                    currency=action.currency,
                    reason=f"RevBridge dunning: {action.reason}"[:250],
                    idempotency_key=key,
                ),
                summary="apply the credit",
                **WRITE,
            )
            return credit.id
        if action.kind is ActionKind.RETRY_PAYMENT:
            attempt = await workflow.execute_activity_method(
                BillingActivities.retry_payment,
                RetryPaymentInput(invoice_id=self._ctx.invoice.id, idempotency_key=key),
                summary="retry the payment",
                **WRITE,
            )
            return (
                "paid" if attempt.succeeded else f"declined ({attempt.decline_code or 'no code'})"
            )
        # Containment guarantees only kinds this workflow can execute reach the gate.
        raise ValueError(f"dunning cannot execute {action.kind.value}")

    async def _wait_for_payment(self, wait: timedelta, summary: str, phase: str) -> bool:
        assert self._ctx is not None
        case = (self._case.number or self._case.id) if self._case else "none"
        self._update(stage="waiting for payment")
        workflow.set_current_details(
            f"Case {case} ({self._status.priority} priority, {self._status.failure_class}). "
            f"Waiting up to {wait.days} days {wait.seconds // 3600} h for invoice "
            f"{self._ctx.invoice.id} to be paid. Actions: {'; '.join(self._status.actions) or 'none'}."
        )
        deadline = workflow.now() + wait
        try:
            await workflow.wait_condition(
                lambda: self._paid is not None or self._history_full(),
                timeout=wait,
                timeout_summary=summary,
            )
        except TimeoutError:
            return False
        if self._paid is None:
            await self._continue_as_new(phase, deadline)
        return True

    def _history_full(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() >= self._input.history_limit
        )

    async def _continue_as_new(self, phase: str, deadline: datetime) -> None:
        """Hand the wait to a fresh run: long waits collect signals (redeliveries, retries)."""
        assert self._ctx is not None and self._assessment is not None
        await self.refusals_audited()
        self._refusal_auditor.cancel()
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            self._input.model_copy(
                update={
                    "carry": DunningCarry(
                        phase=phase,
                        deadline=deadline,
                        context=self._ctx,
                        account=self._account,
                        assessment=self._assessment,
                        case=self._case,
                        status=self._status,
                        failures=self._failures,
                        seen_events=sorted(self._seen_events),
                    )
                }
            )
        )

    # --- audit ---------------------------------------------------------------------------------------

    async def _audit_governed(self, governed: Governed) -> None:
        action = governed.action
        detail = f" ({governed.result_id})" if governed.result_id else ""
        await self._audit(
            action.kind.value,
            decision=governed.decision.outcome.value,
            policy_ids=governed.decision.policy_ids,
            outcome=governed.status + detail,
            summary=f"{action.describe()}: {governed.status}"
            + (f" by {governed.approver}" if governed.approver else "")
            + (f" ({governed.note})" if governed.note else "")
            + f". Why: {action.reason}",
            approver=governed.approver,
            key_suffix=action.action_id,
            parameters=action.model_dump(mode="json"),
        )

    async def _audit_refusal(
        self, refused: RefusedApproval, pending: PendingApproval | None
    ) -> None:
        sig = refused.signal
        await self._audit(
            "approval_refused",
            decision="deny",
            policy_ids=[],
            outcome="refused",
            summary=f"An approval signal for {sig.action_id} from {sig.approver!r} changed nothing: {refused.reason}.",
            key_suffix=parameters_hash(sig.model_dump(mode="json")),
            parameters=sig.model_dump(mode="json"),
        )

    async def _audit(
        self,
        action: str,
        *,
        decision: str,
        policy_ids: list[str],
        outcome: str,
        summary: str,
        approver: str | None = None,
        key_suffix: str = "",
        parameters: dict | None = None,
    ) -> None:
        assert self._ctx is not None
        info = workflow.info()
        assessment = self._assessment
        step = f"audit:{action}:{key_suffix}"
        entry = AuditEntry(
            key=idempotency_key(info.workflow_id, f"{step}:crm"),
            use_case=USE_CASE,
            action=action,
            parameters_hash=parameters_hash(
                parameters or {"action": action, "invoice": self._ctx.invoice.id}
            ),
            decision=decision,
            policy_ids=policy_ids,
            approver=approver,
            reasoner=assessment.reasoner if assessment else "rules",
            model=assessment.model if assessment else None,
            input_tokens=assessment.input_tokens if assessment else 0,
            output_tokens=assessment.output_tokens if assessment else 0,
            outcome=outcome,
            summary=summary,
            workflow_id=info.workflow_id,
            run_id=info.run_id,
            account_id=self._account.id if self._account else None,
            case_id=self._case.id if self._case else None,
            at=workflow.now(),
        )
        crm_id, note_id = await asyncio.gather(
            workflow.execute_activity_method(
                CrmActivities.write_crm_audit,
                WriteAuditInput(entry=entry),
                summary=f"audit {action} in the CRM",
                **WRITE,
            ),
            workflow.execute_activity_method(
                BillingActivities.add_billing_note,
                AddBillingNoteInput(
                    target=NoteTarget.INVOICE,
                    target_id=self._ctx.invoice.id,
                    entry=entry.model_copy(
                        update={"key": idempotency_key(info.workflow_id, f"{step}:billing")}
                    ),
                ),
                summary=f"audit {action} in billing",
                **WRITE,
            ),
        )
        self._update(audit_ids=[*self._status.audit_ids, crm_id.id, note_id.id])

    # --- helpers ---------------------------------------------------------------------------------------

    def _case_draft(self) -> CaseDraft:
        assert self._ctx is not None and self._assessment is not None
        ctx, assessment, account = self._ctx, self._assessment, self._account
        inv = ctx.invoice
        failure = ctx.last_failure
        lines = [
            f"Invoice {inv.id}: {inv.amount_due / 100:,.2f} {inv.currency} due (total {inv.total / 100:,.2f}).",
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

    def _update(self, **changes: object) -> None:
        self._status = self._status.model_copy(update=changes)

    async def _finish(self, outcome: str) -> DunningResult:
        await self.refusals_audited()
        self._refusal_auditor.cancel()
        self._update(stage="closed", outcome=outcome)
        at_risk = (
            self._ctx.invoice.amount_due / 100 if self._ctx and outcome == "unresolved" else 0.0
        )
        workflow.upsert_search_attributes([names.AMOUNT_AT_RISK.value_set(at_risk)])
        workflow.set_current_details(
            f"Closed: {outcome}. Actions: {'; '.join(self._status.actions) or 'none'}."
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return DunningResult(
            outcome=outcome,
            invoice_id=self._input.invoice_id,
            case_id=self._case.id if self._case else None,
            audit_ids=self._status.audit_ids,
        )
