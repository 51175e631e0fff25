"""The playbook's customer-facing steps: a reminder (an email when policy allows it, else a draft
for a person), a task for the account owner, and the audit of each.

Every write goes through the gate: an email asks policy first (``send_email``), a CRM task too
(``create_task``; a task needs no approval of its own, it is how a person is asked), so observe
mode writes nothing and assist mode turns emails into drafts for a rep.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.options import LOCAL_POLICY, READ

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.messaging import MessagingActivities
    from activities.models import DraftReminderInput, SendEmailInput, UpsertTaskInput
    from domain.ids import idempotency_key
    from domain.models import TaskDraft
    from domain.playbook import Channel
    from domain.policy import ActionKind, Outcome, PolicyDecision


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
        draft = await run_draft(
            MessagingActivities.draft_reminder,
            DraftReminderInput(
                invoice_id=inv.id,
                company=s.account.name if s.account else s.context.customer.company,
                amount_due=inv.amount_due,
                currency=inv.currency,
                failure_class=s.assessment.failure_class.value,
                reminder=number,
                reminders=pb.reminders,
                tone=pb.tone,
                days_left=max((end - workflow.now()).days, 0),
            ),
            summary=f"draft reminder {number} of {pb.reminders}",
            **(LOCAL_POLICY if self._hot else READ),
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
        permit = await self.ask(ActionKind.SEND_EMAIL, self._facts())
        decision = permit.decision
        if permit.allowed:
            sent = await self.write(
                permit,
                MessagingActivities.send_email,
                SendEmailInput(
                    key=idempotency_key(workflow.info().workflow_id, f"remind:{number}:email"),
                    invoice_id=inv.id,
                    subject=draft.subject,
                    body=draft.body,
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
        )

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

    async def _audit_step(
        self, action: str, decision: str, policy_ids: list[str], summary: str
    ) -> None:
        await self._audit(
            action,
            decision=decision,
            policy_ids=policy_ids,
            outcome=summary,
            summary=summary,
            key_suffix=f"{self.s.key_scope}:{self.s.reminders_sent}:{action}",
        )
