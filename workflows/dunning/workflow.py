"""Dunning: a failed payment becomes a CRM case with context, governed actions, a playbook of
reminders over weeks, and an audit trail.

The story: a billing platform reports that a payment failed. We do not trust the event: we
re-fetch the invoice, its customer and the recent payment attempts, and find the linked CRM
account. A reasoner (rules by default) classifies the failure — expired card, insufficient funds,
hard decline, technical — names its reasons and proposes actions (a payment retry, a courtesy
credit for a large account). Every side effect goes through the governed gate: the policy engine
allows it, blocks it, or asks a named person first. We open one CRM case for the invoice, take the
allowed or approved actions, then walk the segment's playbook (``playbook.py``: reminders,
retries and owner tasks on durable timers, paused by an open support case) until the invoice is
paid or the schedule ends in its end action. Either way the outcome is audited on both sides.

A second failure of the same invoice while we run joins this workflow (signal-with-start on
``dunning:{billing}:{invoice_id}``); duplicate deliveries are ignored by event ID.

The hot path (runs since ``dunning-hot-path``): the webhook makes one Temporal call, and the
path to the CRM case is two reads in parallel (the invoice context — without the payment
attempts when the event carried the declined one, ``PaymentFailed.payment``; the CRM
account with its open cases, found by the event's customer ID), the assessment and the policy
decision as local activities, and one write carrying the case with its audit entry. The run
then hands each failure to the customer's churn intervention itself (``dunning_signal_churn``,
a local activity that signal-with-starts it with the account and cases just read), so churn
reads the CRM no second time. The day-0 step reuses the account read and the invoice read of moments
before; the case's billing note rides with the next audit entry's. Where the invoice names its
customer only in brief (Recurly), the first read is the invoice alone and the customer's account
is read once right after the case, for day 0 (``dunning-customer-after-case``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

from workflows.dunning.legacy import LegacyCollect
from workflows.dunning.playbook import PlaybookRunner
from workflows.dunning.reads import (
    CUSTOMER_AFTER_CASE_PATCH,
    HOT_PATH_PATCH,
    PLAYBOOK_PATCH,
    REREAD_PATCH,
    DunningReads,
)
from workflows.dunning.reminders import DRAFTING_PATCH, REVIEW_LLM_ONLY_PATCH
from workflows.governed.approval import VERIFIED_APPROVERS
from workflows.governed.audit import AuditScope
from workflows.governed.base import AUDIT_MODE_PATCH, REFUSALS_BOTH_SIDES_PATCH, GovernedWorkflow
from workflows.governed.gate import REMIND_APPROVERS_PATCH, Governed, Permit

#: since: the case is written alone where the CRM batches audit notes (HubSpot) and its audit
#: entry rides with the next CRM entry, or is flushed before a durable wait (issue 15)
CASE_AUDIT_RIDES_PATCH = "dunning-case-audit-rides"
#: runs started since ask every later patch in their first workflow task. Asked deep in a run (the
#: re-read before day 0's step, after local activities and the churn hand-off ran concurrently),
#: ``dunning-reread-invoice`` at times failed to replay under load — on a worker restart, or for a
#: query once the run had left the cache: "Non-deprecated patch marker encountered … but there is
#: no corresponding change command" (tests/fast/test_dunning_patches.py). Asked before any
#: activity or timer exists, a patch has one place in every history; runs recorded before keep
#: asking each where they did. Each answer is memoized for the run: later asks add nothing.
PATCHES_FIRST = "dunning-patches-first"
EARLY_PATCHES = (
    PLAYBOOK_PATCH,
    REREAD_PATCH,
    DRAFTING_PATCH,
    REVIEW_LLM_ONLY_PATCH,
    CASE_AUDIT_RIDES_PATCH,
    AUDIT_MODE_PATCH,
    REFUSALS_BOTH_SIDES_PATCH,
    REMIND_APPROVERS_PATCH,
    VERIFIED_APPROVERS,
    CUSTOMER_AFTER_CASE_PATCH,
)

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.crm import CrmActivities
    from activities.models import (
        ApplyCreditInput,
        CancelSubscriptionInput,
        FindAccountResult,
        RetryPaymentInput,
        UpsertCaseInput,
    )
    from domain import temporal as names
    from domain.approvals import ProposedAction
    from domain.dunning import (
        WORKFLOW_TYPE,
        DunningInput,
        DunningOutcome,
        DunningPhase,
        DunningResult,
        DunningState,
        DunningStatus,
    )
    from domain.dunning_text import case_draft, closed_details
    from domain.ids import idempotency_key
    from domain.models import (
        CustomerTier,
        InvoicePaid,
        InvoiceStatus,
        NoteTarget,
        PaymentFailed,
    )
    from domain.policy import AccountFacts, ActionKind
    from domain.temporal import UseCase


@workflow.defn(name=WORKFLOW_TYPE)
class DunningWorkflow(DunningReads, PlaybookRunner, LegacyCollect, GovernedWorkflow):
    use_case = UseCase.DUNNING
    refusals_to_billing = True

    @workflow.init
    def __init__(self, input: DunningInput) -> None:
        self._input = input
        # a continuation picks up exactly where the last run was: the state comes whole
        self.s = input.carry or DunningState(
            status=DunningStatus(stage="waiting for the failure event", invoice_id=input.invoice_id)
        )
        self._init_governed()
        #: the hot path (``HOT_PATH_PATCH``): set when the run starts
        self._hot = False
        #: when the context in ``self.s.context`` was read, in this run (None: not in this run)
        self._context_at: datetime | None = None
        #: the open cases the first read found, for the day-0 step (used once)
        self._first_cases: FindAccountResult | None = None
        #: the case's audit entry, sent with the case write (its billing note comes later)
        self._case_audit = None
        #: the case's audit entry rides with the next CRM entry (``CASE_AUDIT_RIDES_PATCH``):
        #: where the CRM batches audit entries (``FindAccountResult.audits_batch``: HubSpot)
        self._audits_batch = False
        self._case_audit_rides = False
        #: failures handed to churn so far (a continuation's were handed by the run before)
        self._churn_sent = len(self.s.failures) if input.carry is not None else 0
        self._churn_crm: FindAccountResult | None = None
        self._churn_task: asyncio.Task[None] | None = None

    # --- messages ------------------------------------------------------------------------------------

    @workflow.signal(
        name=names.SIGNAL_PAYMENT_FAILED, description="A payment on this invoice failed."
    )
    def payment_failed(self, event: PaymentFailed) -> None:
        if event.event_id in self.s.seen_events:
            return  # a redelivered webhook: already counted
        self.s.seen_events.append(event.event_id)
        self.s.failures.append(event)
        self._update(failures_seen=len(self.s.failures))

    @workflow.signal(name=names.SIGNAL_INVOICE_PAID, description="The invoice was paid.")
    def invoice_paid(self, event: InvoicePaid) -> None:
        if self.s.paid is None:
            self.s.paid = event

    @workflow.query(name="status", description="Where this dunning run stands.")
    def status(self) -> DunningStatus:
        return self.s.status

    # --- the plot ----------------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: DunningInput) -> DunningResult:
        self._hot = self._local_decisions = workflow.patched(HOT_PATH_PATCH)
        if workflow.patched(PATCHES_FIRST):
            for patch in EARLY_PATCHES:
                workflow.patched(patch)
        if input.carry is not None:
            if self._hot:
                self._start_churn_handoff()
            return await self._resume(input.carry.phase)
        # Started by an event (signal-with-start) or by a person, who needs no event to wait for.
        await workflow.wait_condition(
            lambda: bool(self.s.failures) or self.s.paid is not None or input.started_by is not None
        )
        if self._hot and self.s.failures:
            # both reads at once: the event names the customer (checked against billing below)
            # the newest failure's declined attempt, when its event carried it, spares the
            # read of the payment attempts (issue 15)
            ctx, found = await asyncio.gather(
                self._invoice_context(self.s.failures[-1].payment),
                self._find_account(self.s.failures[0].customer_id),
            )
        else:
            ctx, found = await self._invoice_context(), None
        if ctx is None:
            # An event about an invoice (or customer) the billing platform does not know:
            # nothing to act on, nothing written. The history and the log say why.
            workflow.logger.warning("invoice %s not found in billing", input.invoice_id)
            return await self._finish(DunningOutcome.UNKNOWN_INVOICE)
        if ctx.invoice.status is InvoiceStatus.PAID:
            # Events are triggers, not truth: a stale or late failure event for a paid invoice.
            return await self._finish(DunningOutcome.ALREADY_PAID)

        if found is None or self.s.failures[0].customer_id != ctx.customer.id:
            found = await self._find_account(ctx.customer.id)  # billing is the truth
        self.s.account = found.account
        self._first_cases = self._churn_crm = found
        self._audits_batch = found.audits_batch
        assessment = self.s.assessment = await self._assess(ctx, found)
        await self._audit_refused_reasoning()
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
        if self._hot:
            self._start_churn_handoff()  # after the case: nothing else on its path
        await self._customer_after_case()  # a command only where the first read left it
        for action in assessment.proposed_actions:
            if action.kind is ActionKind.RETRY_PAYMENT:
                continue  # retries are the playbook's
            if self.s.paid is not None:
                break
            self._update(stage=f"deciding on {action.kind.value}")
            await self._govern(action, why=action.reason)

        if workflow.patched(PLAYBOOK_PATCH):
            return await self._conclude_playbook(await self._run_playbook())
        return await self._conclude(await self._collect(DunningPhase.RETRY_DUE, deadline=None))

    async def _resume(self, phase: DunningPhase) -> DunningResult:
        """A continuation goes on with the wait it was handed."""
        if phase is DunningPhase.PLAYBOOK:
            return await self._conclude_playbook(await self._run_playbook())
        return await self._conclude(await self._collect(phase, self.s.deadline))

    async def _govern(self, action: ProposedAction, why: str) -> Governed:
        if action.kind is not ActionKind.CREATE_CASE:
            await self.flush_billing_notes()  # an action may wait days for a person
        account = self.s.account
        governed = await self.govern(
            action,
            self._facts(),
            why=why,
            execute=self._execute,
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id if account else None,
            superseded=lambda: self.s.settled,
        )
        self._update(actions=[*self.s.status.actions, governed.line])
        return governed

    async def _execute(self, permit: Permit, action: ProposedAction) -> str:
        """Run one allowed action; the idempotency key is the workflow ID plus the action ID."""
        ctx = self.s.context
        assert ctx is not None
        scope = f":{self.s.key_scope}" if self.s.key_scope else ""
        key = idempotency_key(workflow.info().workflow_id, f"act:{action.action_id}{scope}")
        if action.kind is ActionKind.CREATE_CASE:
            assert self.s.assessment is not None
            wf_id = workflow.info().workflow_id
            draft = case_draft(
                ctx,
                self.s.assessment,
                self.s.account,
                self._input.billing,
                wf_id,
                key=idempotency_key(wf_id, "create-case"),
            )
            audit = None
            if self._hot and self._executing is not None:
                # the case's audit entry goes to the CRM in the same request as the case
                audit = self._case_audit = await self.entry_with_write(
                    action.kind.value, **self._executing.audit_fields()
                )
                # where the CRM has no composite write (HubSpot) it rides instead with the next
                # entry's, in one batch of notes (issue 15)
                self._case_audit_rides = (
                    audit is not None
                    and self._audits_batch
                    and workflow.patched(CASE_AUDIT_RIDES_PATCH)
                )
            case = self.s.case = await self.write(
                permit,
                CrmActivities.upsert_crm_case,
                UpsertCaseInput(draft=draft, audit=audit, audit_rides=self._case_audit_rides),
                summary="open the billing case" + (" with its audit entry" if audit else ""),
            )
            self._update(case_id=case.id, case_number=case.number)
            return case.id
        if action.kind is ActionKind.APPLY_CREDIT:
            credit = await self.write(
                permit,
                BillingActivities.apply_credit,
                ApplyCreditInput(
                    customer_id=action.customer_id,
                    amount=action.amount,
                    currency=action.currency,
                    reason=f"RevBridge dunning: {action.reason}"[:250],
                    idempotency_key=key,
                ),
                summary="apply the credit",
            )
            return credit.id
        if action.kind is ActionKind.RETRY_PAYMENT:
            attempt = await self.write(
                permit,
                BillingActivities.retry_payment,
                RetryPaymentInput(invoice_id=ctx.invoice.id, idempotency_key=key),
                summary="retry the payment",
            )
            if attempt.already:
                return f"already {attempt.already}"
            return (
                "paid" if attempt.succeeded else f"declined ({attempt.decline_code or 'no code'})"
            )
        if action.kind is ActionKind.CANCEL_SUBSCRIPTION and action.subject_id:
            # an approval may have taken days: never cancel the subscription of a payer
            if await self._settled_now("the cancellation"):
                return "not cancelled: the invoice was settled"
            cancelled = await self.write(
                permit,
                BillingActivities.cancel_subscription,
                CancelSubscriptionInput(
                    subscription_id=action.subject_id,
                    idempotency_key=key,
                    reason=f"RevBridge dunning: {action.reason}"[:250],
                ),
                summary="cancel the subscription",
            )
            return cancelled.id
        # Containment guarantees only kinds this workflow can execute reach the gate.
        raise ValueError(f"dunning cannot execute {action.kind.value}")

    def _facts(self) -> AccountFacts:
        ctx, account = self.s.context, self.s.account
        assert ctx is not None
        return AccountFacts(
            id=account.id if account else ctx.customer.id,
            tier=account.tier if account else CustomerTier.SMB,
            mrr=ctx.customer.mrr,
        )

    # --- audit ---------------------------------------------------------------------------------------

    def _audit_scope(self) -> AuditScope:
        a = self.s.assessment
        return AuditScope(
            use_case=self.use_case,
            account_id=self.s.account.id if self.s.account else None,
            case_id=self.s.case.id if self.s.case else None,
            billing_note=(NoteTarget.INVOICE, self._input.invoice_id),
            step_billing_key=True,
            reasoner=a.reasoner if a else "rules",
            model=a.model if a else None,
            input_tokens=a.input_tokens if a else 0,
            output_tokens=a.output_tokens if a else 0,
        )

    async def _audit(
        self, action: str, *, parameters: dict | None = None, **fields: object
    ) -> None:
        ids = await self.audit(
            action,
            parameters=parameters or {"action": action, "invoice": self._input.invoice_id},
            **fields,  # type: ignore[arg-type]
        )
        await self._record_audit_ids(ids)

    async def _audit_governed(self, governed: Governed) -> None:
        written, self._case_audit = self._case_audit, None
        if written is not None and governed.action.kind is ActionKind.CREATE_CASE:
            # the CRM entry went with the case (or rides: HubSpot); its billing note rides with
            # the next entry's
            if self._case_audit_rides:
                case_id = self.s.case.id if self.s.case else None
                self.ride_crm_entry(
                    written.model_copy(
                        update={
                            "outcome": governed.outcome,
                            "summary": governed.summary(),
                            "case_id": case_id,
                        }
                    )
                )
            self.note_written_entry(
                written,
                key_suffix=governed.action.action_id,
                outcome=governed.outcome,
                case_id=self.s.case.id if self.s.case else None,
            )
            return
        await self._audit(governed.action.kind.value, **governed.audit_fields())

    async def _record_audit_ids(self, ids: list[str]) -> None:
        self._update(audit_ids=[*self.s.status.audit_ids, *ids])

    # --- helpers ---------------------------------------------------------------------------------------

    def _update(self, **changes: object) -> None:
        self.s.status = self.s.status.model_copy(update=changes)

    async def _continue(self, phase: DunningPhase, deadline: object) -> None:
        """Hand the wait to a fresh run: long waits collect signals (redeliveries, retries)."""
        self.s.phase, self.s.deadline = phase, deadline  # type: ignore[assignment]
        await self._settle_background()
        await self.continue_as_new(self._input.model_copy(update={"carry": self.s}))

    def _history_full(self) -> bool:
        return self.history_full(self._input.history_limit)

    async def _close_run(self, outcome: DunningOutcome, summary: str) -> DunningResult:
        """The closing audit entry on both sides, then finish."""
        await self._audit(
            "close_dunning", decision="allow", policy_ids=[], outcome=outcome.value, summary=summary
        )
        return await self._finish(outcome)

    async def _finish(self, outcome: DunningOutcome) -> DunningResult:
        await self._settle_background()
        self._update(stage="closed", outcome=outcome.value)
        ctx = self.s.context
        at_risk = (
            ctx.invoice.amount_due / 100 if ctx and outcome is DunningOutcome.UNRESOLVED else 0.0
        )
        workflow.upsert_search_attributes([names.AMOUNT_AT_RISK_KEY.value_set(at_risk)])
        workflow.set_current_details(closed_details(outcome.value, self.s.status))
        await self.handlers_finished()
        return DunningResult(
            outcome=outcome,
            invoice_id=self._input.invoice_id,
            attribution=self.s.status.attribution,
            case_id=self.s.case.id if self.s.case else None,
            audit_ids=self.s.status.audit_ids,
        )
