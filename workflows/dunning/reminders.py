"""The playbook's customer-facing steps: a reminder (an email when policy allows it, else a draft
for a person), a task for the account owner, and the audit of each.

Every write goes through the gate: an email asks policy first (``send_email``), a CRM task too
(``create_task``; a task needs no approval of its own, it is how a person is asked), so observe
mode writes nothing and assist mode turns emails into drafts for a rep.

Since ``dunning-drafting`` (issue 22): the draft may be a model's (``activities.drafting``: it
passed every containment check, else the template came back with the reasons, which are audited
here on both systems); a model's draft asks policy as ``origin=llm`` (``policies/drafting.cedar``:
only SMB accounts get one unreviewed). Where a person must review — assist mode, a segment people
talk to, a model's draft outside SMB — the rep gets a CRM task with the exact text and its
SHA-256, and the send is a governed action whose ID binds that hash: approval sends exactly the
reviewed text (re-checked in the workflow and again in the send activity), once (one idempotency
key per reminder). The audit line of every reminder names its variant (``template``/``llm``),
which ``revbridge report recovery`` reads.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.governed.gate import Permit
from workflows.options import LOCAL_POLICY, READ

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.drafting import ReminderDraftInput
    from activities.messaging import MessagingActivities, SendDraftInput
    from activities.models import SendEmailInput, UpsertTaskInput
    from domain.approvals import ProposedAction
    from domain.drafts import (
        VARIANT_MEMO,
        DraftedMessage,
        Variant,
        approval_subject,
        approved_text_matches,
        draft_sha256,
        review_task_text,
    )
    from domain.ids import idempotency_key
    from domain.models import TaskDraft
    from domain.playbook import Channel
    from domain.policy import ActionKind, Origin, Outcome, PolicyDecision, PolicyRequest

#: model drafts, their refusals audited, approve & send bound to the text's hash (issue 22)
DRAFTING_PATCH = "dunning-drafting"
#: runs started before sent every reviewed reminder through approve & send, the template too —
#: and the playbook waited on the approval (no retry, no owner task meanwhile). Since, only a
#: model's draft waits for a person to approve its exact text; the reviewed template goes to
#: the rep as a task, as before drafting, and the playbook goes on.
REVIEW_LLM_ONLY_PATCH = "dunning-review-llm-only"


class Reminders:
    """Mixin of :class:`~workflows.dunning.workflow.DunningWorkflow`."""

    async def _send_reminder(self, day: int) -> None:
        """One reminder: an email when policy allows it, else a draft for a person (the account
        owner for owner-channel segments, a rep in assist mode or when policy wants a human)."""
        s = self.s
        assert s.context is not None and s.assessment is not None
        assert s.playbook is not None and s.started_at is not None
        pb, inv = s.playbook, s.context.invoice
        number = s.reminders_sent + 1
        end = s.started_at + timedelta(days=pb.end_day) + s.paused
        run_draft = (
            workflow.execute_local_activity_method  # a template: pure, no I/O
            if self._hot
            else workflow.execute_activity_method
        )
        drafting = workflow.patched(DRAFTING_PATCH)
        payments = s.context.recent_payments
        draft: DraftedMessage = await run_draft(
            MessagingActivities.draft_reminder,
            ReminderDraftInput(
                invoice_id=inv.id,
                company=s.account.name if s.account else s.context.customer.company,
                amount_due=inv.amount_due,
                currency=inv.currency,
                failure_class=s.assessment.failure_class.value,
                reminder=number,
                reminders=pb.reminders,
                tone=pb.tone,
                days_left=max((end - workflow.now()).days, 0),
                customer_id=s.context.customer.id,
                segment=s.status.segment or "",
                failed_attempts=sum(1 for p in payments if not p.succeeded),
                paid_before=sum(1 for p in payments if p.succeeded),
                account_name=s.account.name if s.account else None,
                # the billing customer's language: the template's and the model's (an input, not
                # a command: histories replay unchanged)
                language=s.context.customer.language or "en",
            ),
            summary=f"draft reminder {number} of {pb.reminders}",
            **(LOCAL_POLICY if self._hot else READ),
        )
        if not draft.sha256:  # a worker from before drafting, or a test's fake
            draft = draft.model_copy(update={"sha256": draft_sha256(draft.subject, draft.body)})
        if drafting and draft.refusals:
            await self._audit_step(
                "draft_refused",
                "deny",
                ["draft_containment"],
                f"reminder {number}: the model's draft was discarded for the template: "
                + "; ".join(draft.refusals),
            )
        if pb.channel is Channel.OWNER:
            task = await self._task(
                f"remind:{number}:owner",
                f"Reach out to the customer: {draft.subject}",
                "This account is handled by people, not automated email. Suggested message:\n\n"
                + draft.body,
                to_owner=True,
            )
            blocked = task.outcome is Outcome.DENY
            self._reminder_counted(number, day, blocked)
            await self._audit_step(
                "create_task",
                task.outcome.value,
                task.policy_ids,
                f"reminder {number}: " + ("blocked" if blocked else "owner task"),
            )
            return
        if drafting and draft.variant is Variant.LLM:
            # the model's words: policy decides who may get them unreviewed (drafting.cedar)
            decision = await self._decide(
                PolicyRequest(
                    use_case=self.use_case,
                    action=ActionKind.SEND_EMAIL,
                    account=self._facts(),
                    origin=Origin.LLM,
                )
            )
            permit = self._permit(ActionKind.SEND_EMAIL, decision)
        else:
            permit = await self.ask(ActionKind.SEND_EMAIL, self._facts())
        decision = permit.decision
        if permit.allowed:
            key = idempotency_key(workflow.info().workflow_id, f"remind:{number}:email")
            sent = await self.write(
                permit,
                MessagingActivities.send_email,
                SendDraftInput(
                    key=key,
                    invoice_id=inv.id,
                    subject=draft.subject,
                    body=draft.body,
                    sha256=draft.sha256,
                )
                if drafting
                else SendEmailInput(
                    key=key, invoice_id=inv.id, subject=draft.subject, body=draft.body
                ),
                summary=f"email reminder {number} of {pb.reminders}",
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
        elif (
            decision.outcome is Outcome.NEEDS_APPROVAL
            and drafting
            and (draft.variant is Variant.LLM or not workflow.patched(REVIEW_LLM_ONLY_PATCH))
        ):
            outcome = await self._approve_and_send(number, draft)
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
        self._reminder_counted(number, day, outcome == "blocked")
        await self._audit_step(
            "send_email",
            decision.outcome.value,
            decision.policy_ids,
            f"reminder {number} of {pb.reminders} (day {day}): {outcome}",
            variant=draft.variant.value if drafting else None,
        )
        if drafting and outcome != "blocked":
            self._record_variant(draft.variant)

    async def _approve_and_send(self, number: int, draft: DraftedMessage) -> str:
        """A person reviews the exact text (a CRM task with it and its hash), then approves the
        send: a governed action whose ID binds the hash, executed once."""
        s = self.s
        assert s.context is not None
        inv = s.context.invoice
        action = ProposedAction(
            kind=ActionKind.SEND_EMAIL,
            customer_id=s.context.customer.id,
            invoice_id=inv.id,
            currency=inv.currency,
            origin=Origin.LLM.value if draft.variant is Variant.LLM else Origin.RULES.value,
            subject_id=approval_subject(draft),
            reason=f"reminder {number}: {draft.variant.value} draft, sent only as reviewed",
        )
        task = await self._task(
            f"remind:{number}:draft",
            f"Approve & send reminder {number}: {draft.subject}",
            review_task_text(draft, action.action_id, workflow.info().workflow_id),
        )
        if task.outcome is Outcome.DENY:
            return "blocked"
        account = s.account
        governed = await self.govern(
            action,
            self._facts(),
            why=f"reminder {number} drafted ({draft.variant.value}); a person reviews the text",
            execute=lambda permit, act: self._send_approved(permit, act, draft, number),
            audit=self._audit_governed,
            timing=self._input.approval,
            crm_account_id=account.id if account else None,
            superseded=lambda: s.settled,
        )
        self._update(actions=[*s.status.actions, governed.line])
        if governed.status != "executed":
            return f"drafted for a rep ({governed.status})"
        return f"approved and sent ({governed.result_id})"

    async def _send_approved(
        self, permit: Permit, action: ProposedAction, draft: DraftedMessage, number: int
    ) -> str:
        """The approved send: exactly the reviewed text (its hash checked here and in the
        activity), under the reminder's one idempotency key."""
        if not approved_text_matches(draft, action.subject_id):
            return "not sent: the text is not the approved draft"
        assert self.s.context is not None
        sent = await self.write(
            permit,
            MessagingActivities.send_email,
            SendDraftInput(
                key=idempotency_key(workflow.info().workflow_id, f"remind:{number}:email"),
                invoice_id=self.s.context.invoice.id,
                subject=draft.subject,
                body=draft.body,
                sha256=draft.sha256,
            ),
            summary=f"send the approved reminder {number}",
        )
        return sent.message_id if sent.sent else f"not sent: {sent.reason}"

    def _reminder_counted(self, number: int, day: int, blocked: bool) -> None:
        self.s.reminders_sent = number
        if not blocked:
            self.s.last_step = f"reminder {number} (day {day})"
        self._update(reminders_sent=number)

    async def _owner_task(self, day: int) -> None:
        s = self.s
        assert s.context is not None
        inv = s.context.invoice
        task = await self._task(
            f"owner:{day}",
            f"Call the customer about invoice {inv.id} (day {day} of dunning)",
            f"{inv.amount_due / 100:,.2f} {inv.currency} is past due. "
            f"Reminders sent so far: {s.reminders_sent}. "
            + (f"Case: {s.case.number or s.case.id}." if s.case else ""),
            to_owner=True,
        )
        if task.outcome is Outcome.DENY:
            await self._audit_step(
                "create_task", "deny", task.policy_ids, f"day {day}: owner task blocked"
            )
            return
        s.last_step = f"the owner's call (day {day})"
        await self._audit_step(
            "create_task", task.outcome.value, task.policy_ids, f"day {day}: task for the owner"
        )

    async def _task(
        self, step: str, subject: str, description: str, *, to_owner: bool = False
    ) -> PolicyDecision:
        """A CRM task for a person, unless policy denies it (observe mode: nothing is written).
        A task needs no approval of its own: it is how a person is asked in the first place."""
        account = self.s.account
        permit = await self.ask_housekeeping(ActionKind.CREATE_TASK, self._facts())
        if not permit.allowed:
            return permit.decision
        await self.write(
            permit,
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(workflow.info().workflow_id, f"task:{step}"),
                    account_id=account.id if account else None,
                    subject=subject[:250],
                    description=description,
                    high_priority=to_owner,
                    due=workflow.now() + timedelta(days=1),
                    owner_id=account.owner_id if (to_owner and account) else None,
                )
            ),
            summary=f"CRM task: {subject[:60]}",
        )
        return permit.decision

    def _record_variant(self, variant: Variant) -> None:
        """Recovery attribution (issue 22): which variants reached the customer, in the run's memo
        (``revbridge report recovery`` reads it without a worker)."""
        if variant.value not in self._variants:
            self._variants.append(variant.value)
            workflow.upsert_memo({VARIANT_MEMO: ",".join(sorted(self._variants))})

    @property
    def _variants(self) -> list[str]:
        if not hasattr(self, "_draft_variants"):
            self._draft_variants: list[str] = []
        return self._draft_variants

    async def _audit_step(
        self,
        action: str,
        decision: str,
        policy_ids: list[str],
        summary: str,
        variant: str | None = None,
    ) -> None:
        await self._audit(
            action,
            decision=decision,
            policy_ids=policy_ids,
            outcome=summary,
            # the variant in the summary only: what ``revbridge report recovery`` reads
            summary=summary + (f" (variant: {variant})" if variant else ""),
            key_suffix=f"{self.s.key_scope}:{self.s.reminders_sent}:{action}",
        )
