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
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.approval import Governed, GovernedWorkflow
from workflows.options import READ, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.crm import CrmActivities
    from activities.messaging import MessagingActivities
    from activities.models import (
        AddBillingNoteInput,
        ApplyCreditInput,
        AssessFailureInput,
        CancelSubscriptionInput,
        DraftReminderInput,
        FindAccountInput,
        GetInvoiceContextInput,
        PlaybookInput,
        RetryPaymentInput,
        SendEmailInput,
        UpsertCaseInput,
        UpsertTaskInput,
        WriteAuditInput,
    )
    from activities.playbook import PlaybookActivities
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
        CustomerTier,
        InvoiceContext,
        InvoicePaid,
        InvoiceStatus,
        NoteTarget,
        PaymentFailed,
        TaskDraft,
    )
    from domain.playbook import Channel, EndAction, SegmentPlaybook, StepAction
    from domain.policy import (
        AccountFacts,
        ActionKind,
        Outcome,
        PolicyDecision,
    )

USE_CASE = "dunning"
#: runs started before the multi-week playbook wait for payment with one retry (replay)
PLAYBOOK_PATCH = "dunning-playbook"


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
        # the playbook's position: a continuation carries it over
        self._playbook: SegmentPlaybook | None = None
        self._started_at: datetime | None = None
        self._step = 0
        self._paused = timedelta(0)
        self._reminders_sent = 0
        self._last_step: str | None = None
        #: a playbook retry that collected the invoice (no need to wait for the paid event)
        self._recovered_by: str | None = None
        #: scopes idempotency keys of actions a playbook may repeat on several days
        self._key_scope = ""
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
            self._playbook, self._started_at, self._step = c.playbook, c.started_at, c.step
            self._paused, self._reminders_sent = c.paused, c.reminders_sent
            self._last_step = c.last_step

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
            if input.carry.phase == "playbook":
                return await self._conclude_playbook(await self._run_playbook())
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

        if workflow.patched(PLAYBOOK_PATCH):
            return await self._conclude_playbook(await self._run_playbook())
        recovered = await self._collect(input, "retry_due", deadline=None)
        return await self._conclude(recovered)

    # --- the playbook: reminders, retries and tasks on durable timers over weeks -----------------

    async def _run_playbook(self) -> str:
        """Walk the segment's schedule; returns recovered | written_off | cancelled."""
        assert self._ctx is not None
        if self._playbook is None:
            tier = self._account.tier if self._account else CustomerTier.SMB
            self._playbook = await workflow.execute_activity_method(
                PlaybookActivities.dunning_playbook,
                PlaybookInput(tier=tier.value),
                summary=f"read the {tier.value} playbook",
                **READ,
            )
            self._started_at = workflow.now()
            self._update(segment=tier.value, reminders_total=self._playbook.reminders)
        pb = self._playbook
        assert self._started_at is not None
        while self._step < len(pb.steps):
            step = pb.steps[self._step]
            due = self._started_at + pb.at(self._step) + self._paused
            if await self._wait_until(due, f"day {step.day}: {', '.join(step.actions)}"):
                return "recovered"
            if await self._paused_by_open_case(pb):
                continue  # the schedule moved by the pause: wait for the step's new time
            self._key_scope = f"day{step.day}"
            self._update(stage=f"day {step.day}: {', '.join(step.actions)}")
            for action in step.actions:
                if self._settled():
                    break
                if action is StepAction.REMIND:
                    await self._send_reminder(step.day)
                elif action is StepAction.RETRY:
                    await self._playbook_retry(step.day)
                else:
                    await self._owner_task(step.day)
            self._key_scope = ""
            if self._settled():
                return "recovered"
            self._step += 1
        end = self._started_at + timedelta(days=pb.end_day) + self._paused
        if await self._wait_until(end, f"day {pb.end_day}: {pb.end_action.value}"):
            return "recovered"
        return await self._end_action(pb)

    def _settled(self) -> bool:
        return self._paid is not None or self._recovered_by is not None

    async def _wait_until(self, due: datetime, summary: str) -> bool:
        """Wait for the next step (or payment); True when the invoice is paid. Hands over to a
        fresh run when the history grows long, carrying the schedule's position."""
        self._update(next_step_at=due)
        wait = due - workflow.now()
        if wait > timedelta(0) and not self._settled():
            self._update(stage="waiting for payment")
            workflow.set_current_details(
                self._details(f"next: {summary} on {due:%Y-%m-%d %H:%M} UTC")
            )
            try:
                await workflow.wait_condition(
                    lambda: self._settled() or self._history_full(),
                    timeout=wait,
                    timeout_summary=summary,
                )
            except TimeoutError:
                return False
            if not self._settled():
                await self._continue_as_new("playbook", due)
        return self._settled()

    async def _paused_by_open_case(self, pb: SegmentPlaybook) -> bool:
        """An open support case (not our own billing case) pauses reminders, a day at a time, for
        at most ``max_pause_days``: nobody wants a payment reminder in the middle of an outage."""
        assert self._ctx is not None
        limit = timedelta(days=pb.max_pause_days)
        if self._account is None or self._paused >= limit:
            return False
        found = await workflow.execute_activity_method(
            CrmActivities.find_crm_account,
            FindAccountInput(billing=self._input.billing, customer_id=self._ctx.customer.id),
            summary="look for open support cases",
            **READ,
        )
        own = self._case.id if self._case else None
        others = [c for c in found.open_cases if c.id != own]
        if not others:
            if self._status.paused_by_case:
                self._update(paused_by_case=None)
            return False
        pause = min(timedelta(days=1), limit - self._paused)
        self._update(
            stage="paused by an open support case",
            paused_by_case=others[0].id,
            next_step_at=workflow.now() + pause,  # when it looks again
        )
        workflow.set_current_details(
            self._details(f"paused: support case {others[0].id} is open; looking again in a day")
        )
        with contextlib.suppress(TimeoutError):  # the pause ran its course
            await workflow.wait_condition(
                self._settled, timeout=pause, timeout_summary="paused: open support case"
            )
        self._paused += pause
        return True

    async def _send_reminder(self, day: int) -> None:
        """One reminder: an email when policy allows it, else a draft for a person (the account
        owner for owner-channel segments, a rep in assist mode or when policy wants a human)."""
        assert self._ctx is not None and self._assessment is not None
        assert self._playbook is not None and self._started_at is not None
        pb, inv = self._playbook, self._ctx.invoice
        number = self._reminders_sent + 1
        end = self._started_at + timedelta(days=pb.end_day) + self._paused
        draft = await workflow.execute_activity_method(
            MessagingActivities.draft_reminder,
            DraftReminderInput(
                invoice_id=inv.id,
                company=self._account.name if self._account else self._ctx.customer.company,
                amount_due=inv.amount_due,
                currency=inv.currency,
                failure_class=self._assessment.failure_class.value,
                reminder=number,
                reminders=pb.reminders,
                tone=pb.tone,
                days_left=max((end - workflow.now()).days, 0),
            ),
            summary=f"draft reminder {number} of {pb.reminders}",
            **READ,
        )
        wf_id = workflow.info().workflow_id
        if pb.channel is Channel.OWNER:
            task = await self._task(
                f"remind:{number}:owner",
                f"Reach out to the customer: {draft.subject}",
                "This account is handled by people, not automated email. Suggested message:\n\n"
                + draft.body,
                to_owner=True,
            )
            blocked = task.outcome is Outcome.DENY
            self._reminders_sent = number
            if not blocked:
                self._last_step = f"reminder {number} (day {day})"
            self._update(reminders_sent=number)
            await self._audit_step(
                "create_task",
                task.outcome.value,
                task.policy_ids,
                f"reminder {number}: " + ("blocked" if blocked else "owner task"),
            )
            return
        decision = await self._decide(ActionKind.SEND_EMAIL)
        if decision.outcome is Outcome.ALLOW:
            sent = await workflow.execute_activity_method(
                MessagingActivities.send_email,
                SendEmailInput(
                    key=idempotency_key(wf_id, f"remind:{number}:email"),
                    invoice_id=inv.id,
                    subject=draft.subject,
                    body=draft.body,
                ),
                summary=f"email reminder {number} of {pb.reminders}",
                **WRITE,
            )
            if sent.sent:
                outcome = f"sent ({sent.message_id})"
            else:
                task = await self._task(
                    f"remind:{number}:draft",
                    f"Send reminder {number}: {draft.subject}",
                    f"Not sent automatically: {sent.reason}. Draft:\n\n{draft.body}",
                )
                outcome = (
                    "blocked"
                    if task.outcome is Outcome.DENY
                    else f"drafted for a rep ({sent.reason})"
                )
        elif decision.outcome is Outcome.NEEDS_APPROVAL:
            # assist mode, or a segment people talk to: the draft goes to a rep, who sends it
            task = await self._task(
                f"remind:{number}:draft",
                f"Review and send reminder {number}: {draft.subject}",
                f"Drafted by RevBridge ({', '.join(decision.policy_ids)}). Draft:\n\n{draft.body}",
            )
            outcome = "blocked" if task.outcome is Outcome.DENY else "drafted for a rep"
        else:
            outcome = "blocked"
        self._reminders_sent = number
        if outcome != "blocked":
            self._last_step = f"reminder {number} (day {day})"
        self._update(reminders_sent=number)
        await self._audit_step(
            "send_email",
            decision.outcome.value,
            decision.policy_ids,
            f"reminder {number} of {pb.reminders} (day {day}): {outcome}",
        )

    async def _playbook_retry(self, day: int) -> None:
        assert self._assessment is not None
        retry = next(
            (a for a in self._assessment.proposed_actions if a.kind is ActionKind.RETRY_PAYMENT),
            None,
        )
        if retry is None:
            return  # the decline does not allow one (expired card, hard decline)
        self._update(stage=f"retrying the payment (day {day})")
        governed = await self._govern(retry, why=retry.reason)
        if governed.status == "executed" and governed.result_id == "paid":
            self._recovered_by = f"payment retry on day {day}"

    async def _owner_task(self, day: int) -> None:
        assert self._ctx is not None
        inv = self._ctx.invoice
        task = await self._task(
            f"owner:{day}",
            f"Call the customer about invoice {inv.id} (day {day} of dunning)",
            f"{inv.amount_due / 100:,.2f} {inv.currency} is past due. "
            f"Reminders sent so far: {self._reminders_sent}. "
            + (f"Case: {self._case.number or self._case.id}." if self._case else ""),
            to_owner=True,
        )
        if task.outcome is Outcome.DENY:
            await self._audit_step(
                "create_task", "deny", task.policy_ids, f"day {day}: owner task blocked"
            )
            return
        self._last_step = f"the owner's call (day {day})"
        await self._audit_step(
            "create_task", task.outcome.value, task.policy_ids, f"day {day}: task for the owner"
        )

    async def _end_action(self, pb: SegmentPlaybook) -> str:
        assert self._ctx is not None
        subscription = self._ctx.invoice.subscription_id
        if pb.end_action is not EndAction.CANCEL or subscription is None:
            return "written_off"
        self._update(stage="deciding on cancellation")
        governed = await self._govern(
            ProposedAction(
                kind=ActionKind.CANCEL_SUBSCRIPTION,
                customer_id=self._ctx.customer.id,
                invoice_id=self._ctx.invoice.id,
                subject_id=subscription,
                reason=f"invoice unpaid after the {pb.end_day}-day dunning schedule",
            ),
            why=f"the {self._status.segment} playbook ends in cancellation",
        )
        if self._paid is not None:
            return "recovered"
        return "cancelled" if governed.status == "executed" else "written_off"

    async def _decide(self, kind: ActionKind) -> PolicyDecision:
        return await self.policy_only(kind, self._facts())

    async def _task(
        self, step: str, subject: str, description: str, *, to_owner: bool = False
    ) -> PolicyDecision:
        """A CRM task for a person, unless policy denies it (observe mode: nothing is written).
        A task needs no approval of its own: it is how a person is asked in the first place."""
        assert self._ctx is not None
        decision = await self._decide(ActionKind.CREATE_TASK)
        if decision.outcome is Outcome.DENY:
            return decision
        await workflow.execute_activity_method(
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(workflow.info().workflow_id, f"task:{step}"),
                    account_id=self._account.id if self._account else None,
                    subject=subject[:250],
                    description=description,
                    high_priority=to_owner,
                    due=workflow.now() + timedelta(days=1),
                    owner_id=self._account.owner_id if (to_owner and self._account) else None,
                )
            ),
            summary=f"CRM task: {subject[:60]}",
            **WRITE,
        )
        return decision

    async def _audit_step(
        self, action: str, decision: str, policy_ids: list[str], summary: str
    ) -> None:
        await self._audit(
            action,
            decision=decision,
            policy_ids=policy_ids,
            outcome=summary,
            summary=summary,
            key_suffix=f"{self._key_scope}:{self._reminders_sent}:{action}",
        )

    async def _conclude_playbook(self, outcome: str) -> DunningResult:
        assert self._ctx is not None
        if outcome == "recovered":
            attribution = self._recovered_by or (
                f"paid after {self._last_step}" if self._last_step else "paid before any reminder"
            )
            self._update(attribution=attribution)
        summary = {
            "recovered": f"Invoice {self._ctx.invoice.id} was paid ({self._status.attribution}).",
            "written_off": f"Invoice {self._ctx.invoice.id} is still unpaid at the end of the "
            "schedule: left past due with finance.",
            "cancelled": f"Invoice {self._ctx.invoice.id} is still unpaid at the end of the "
            "schedule: the subscription was cancelled.",
        }[outcome]
        await self._audit(
            "close_dunning",
            decision="allow",
            policy_ids=[],
            outcome=outcome,
            summary=f"{summary} {len(self._failures)} failed attempt(s), "
            f"{self._reminders_sent} reminder(s).",
        )
        return await self._finish(outcome)

    def _facts(self) -> AccountFacts:
        assert self._ctx is not None
        account = self._account
        return AccountFacts(
            id=account.id if account else self._ctx.customer.id,
            tier=account.tier if account else CustomerTier.SMB,
            mrr=self._ctx.customer.mrr,
        )

    def _details(self, next_line: str) -> str:
        """The Web UI's current details: where the schedule stands, in one short paragraph."""
        assert self._ctx is not None
        s = self._status
        case = (self._case.number or self._case.id) if self._case else "none"
        lines = [
            f"**Dunning invoice {self._ctx.invoice.id}** "
            f"({self._ctx.invoice.amount_due / 100:,.2f} {self._ctx.invoice.currency}), "
            f"segment {s.segment or '-'}, {s.failure_class or '-'}, case {case}.",
            f"Reminder {s.reminders_sent} of {s.reminders_total} sent; {next_line}; "
            "waiting for payment.",
        ]
        if s.actions:
            lines.append("Actions: " + "; ".join(s.actions) + ".")
        return "\n\n".join(lines)

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
        governed = await self.govern(
            action,
            self._facts(),
            why=why,
            execute=self._execute,
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id if account else None,
            superseded=self._settled,
        )
        self._update(
            actions=[
                *self._status.actions,
                governed.line,
            ]
        )
        return governed

    async def _execute(self, action: ProposedAction) -> str:
        """Run one allowed action; the idempotency key is the workflow ID plus the action ID."""
        assert self._ctx is not None
        scope = f":{self._key_scope}" if self._key_scope else ""
        key = idempotency_key(workflow.info().workflow_id, f"act:{action.action_id}{scope}")
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
        if action.kind is ActionKind.CANCEL_SUBSCRIPTION and action.subject_id:
            cancelled = await workflow.execute_activity_method(
                BillingActivities.cancel_subscription,
                CancelSubscriptionInput(
                    subscription_id=action.subject_id,
                    idempotency_key=key,
                    reason=f"RevBridge dunning: {action.reason}"[:250],
                ),
                summary="cancel the subscription",
                **WRITE,
            )
            return cancelled.id
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
                        playbook=self._playbook,
                        started_at=self._started_at,
                        step=self._step,
                        paused=self._paused,
                        reminders_sent=self._reminders_sent,
                        last_step=self._last_step,
                    )
                }
            )
        )

    # --- audit ---------------------------------------------------------------------------------------

    async def _audit_governed(self, governed: Governed) -> None:
        action = governed.action
        await self._audit(action.kind.value, **governed.audit_fields())

    async def _audit_refusal(
        self, refused: RefusedApproval, pending: PendingApproval | None
    ) -> None:
        await self._audit("approval_refused", policy_ids=[], **refused.audit_fields())

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
            attribution=self._status.attribution,
            case_id=self._case.id if self._case else None,
            audit_ids=self._status.audit_ids,
        )
