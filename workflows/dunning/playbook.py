"""The dunning playbook runner: a segment's schedule of reminders, retries and owner tasks on
durable timers over weeks (``policies/playbooks.yaml``).

Each step waits for its day (or for the payment, which ends the run as recovered); an open
support case that is not our own billing case pauses the schedule a day at a time, up to the
playbook's cap; a long wait hands over to a fresh run carrying the schedule's position. At the
end of the schedule comes the segment's end action (left past due, or a governed cancellation).
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio import workflow

from workflows.dunning.reminders import Reminders
from workflows.options import LOCAL_POLICY, READ

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.models import FindAccountInput, PlaybookInput
    from activities.playbook import PlaybookActivities
    from domain.approvals import ProposedAction
    from domain.dunning import DunningOutcome, DunningPhase, DunningResult
    from domain.dunning_text import playbook_details
    from domain.models import CustomerTier
    from domain.playbook import EndAction, SegmentPlaybook, StepAction
    from domain.policy import ActionKind


class PlaybookRunner(Reminders):
    """Mixin of :class:`~workflows.dunning.workflow.DunningWorkflow`."""

    async def _run_playbook(self) -> DunningOutcome:
        """Walk the segment's schedule; returns recovered | written_off | cancelled."""
        s = self.s
        assert s.context is not None
        if s.playbook is None:
            tier = s.account.tier if s.account else CustomerTier.SMB
            if self._hot:  # a local file: read in the workflow task, recorded as a marker
                s.playbook = await workflow.execute_local_activity_method(
                    PlaybookActivities.dunning_playbook,
                    PlaybookInput(tier=tier.value),
                    summary=f"read the {tier.value} playbook",
                    **LOCAL_POLICY,
                )
            else:
                s.playbook = await workflow.execute_activity_method(
                    PlaybookActivities.dunning_playbook,
                    PlaybookInput(tier=tier.value),
                    summary=f"read the {tier.value} playbook",
                    **READ,
                )
            s.started_at = workflow.now()
            self._update(segment=tier.value, reminders_total=s.playbook.reminders)
        pb = s.playbook
        assert s.started_at is not None
        while s.step < len(pb.steps):
            step = pb.steps[s.step]
            due = s.started_at + pb.at(s.step) + s.paused
            if await self._wait_until(due, f"day {step.day}: {', '.join(step.actions)}"):
                return DunningOutcome.RECOVERED
            if await self._paused_by_open_case(pb):
                continue  # the schedule moved by the pause: wait for the step's new time
            if await self._settled_now(f"day {step.day}"):
                return DunningOutcome.RECOVERED
            s.key_scope = f"day{step.day}"
            self._update(stage=f"day {step.day}: {', '.join(step.actions)}")
            for action in step.actions:
                if s.settled:
                    break
                if action is StepAction.REMIND:
                    await self._send_reminder(step.day)
                elif action is StepAction.RETRY:
                    await self._playbook_retry(step.day)
                else:
                    await self._owner_task(step.day)
            s.key_scope = ""
            if s.settled:
                return DunningOutcome.RECOVERED
            s.step += 1
        end = s.started_at + timedelta(days=pb.end_day) + s.paused
        if await self._wait_until(end, f"day {pb.end_day}: {pb.end_action.value}"):
            return DunningOutcome.RECOVERED
        if await self._settled_now(f"the end action (day {pb.end_day})"):
            return DunningOutcome.RECOVERED
        return await self._end_action(pb)

    async def _wait_until(self, due: datetime, summary: str) -> bool:
        """Wait for the next step (or payment); True when the invoice is paid. Hands over to a
        fresh run when the history grows long, carrying the schedule's position."""
        self._update(next_step_at=due)
        wait = due - workflow.now()
        if wait > timedelta(0) and not self.s.settled:
            await self.flush_billing_notes()  # nothing pending across a durable wait
            self._update(stage="waiting for payment")
            workflow.set_current_details(
                playbook_details(self.s, f"next: {summary} on {due:%Y-%m-%d %H:%M} UTC")
            )
            try:
                await workflow.wait_condition(
                    lambda: self.s.settled or self._history_full(),
                    timeout=wait,
                    timeout_summary=summary,
                )
            except TimeoutError:
                return False
            if not self.s.settled:
                await self._continue(DunningPhase.PLAYBOOK, due)
        return self.s.settled

    async def _paused_by_open_case(self, pb: SegmentPlaybook) -> bool:
        """An open support case (not our own billing case) pauses reminders, a day at a time, for
        at most ``max_pause_days``: nobody wants a payment reminder in the middle of an outage."""
        s = self.s
        assert s.context is not None
        limit = timedelta(days=pb.max_pause_days)
        if s.account is None or s.paused >= limit:
            return False
        found, self._first_cases = self._first_cases, None
        if found is None or not self._hot or s.step != 0:
            found = await workflow.execute_activity_method(
                CrmActivities.find_crm_account,
                FindAccountInput(billing=self._input.billing, customer_id=s.context.customer.id),
                summary="look for open support cases",
                **READ,
            )
        # else: the day-0 step follows the first read by moments: its open cases are today's
        own = s.case.id if s.case else None
        others = [c for c in found.open_cases if c.id != own]
        if not others:
            if s.status.paused_by_case:
                self._update(paused_by_case=None)
            return False
        pause = min(timedelta(days=1), limit - s.paused)
        self._update(
            stage="paused by an open support case",
            paused_by_case=others[0].id,
            next_step_at=workflow.now() + pause,  # when it looks again
        )
        workflow.set_current_details(
            playbook_details(
                s, f"paused: support case {others[0].id} is open; looking again in a day"
            )
        )
        await self.flush_billing_notes()
        with contextlib.suppress(TimeoutError):  # the pause ran its course
            await workflow.wait_condition(
                lambda: s.settled, timeout=pause, timeout_summary="paused: open support case"
            )
        s.paused += pause
        return True

    async def _playbook_retry(self, day: int) -> None:
        assert self.s.assessment is not None
        retry = next(
            (a for a in self.s.assessment.proposed_actions if a.kind is ActionKind.RETRY_PAYMENT),
            None,
        )
        if retry is None:
            return  # the decline does not allow one (expired card, hard decline)
        self._update(stage=f"retrying the payment (day {day})")
        governed = await self._govern(retry, why=retry.reason)
        if governed.status == "executed" and governed.result_id == "paid":
            self.s.recovered_by = f"payment retry on day {day}"
        elif governed.status == "executed" and (governed.result_id or "").startswith("already "):
            # settled before the retry came (a lost paid event): a recovery, nothing charged
            self.s.recovered_by = f"{governed.result_id[8:]} before the retry on day {day}"

    async def _end_action(self, pb: SegmentPlaybook) -> DunningOutcome:
        ctx = self.s.context
        assert ctx is not None
        subscription = ctx.invoice.subscription_id
        if pb.end_action is not EndAction.CANCEL or subscription is None:
            return DunningOutcome.WRITTEN_OFF
        self._update(stage="deciding on cancellation")
        governed = await self._govern(
            ProposedAction(
                kind=ActionKind.CANCEL_SUBSCRIPTION,
                customer_id=ctx.customer.id,
                invoice_id=ctx.invoice.id,
                subject_id=subscription,
                reason=f"invoice unpaid after the {pb.end_day}-day dunning schedule",
            ),
            why=f"the {self.s.status.segment} playbook ends in cancellation",
        )
        if self.s.settled:
            return DunningOutcome.RECOVERED
        if governed.status == "executed":
            return DunningOutcome.CANCELLED
        return DunningOutcome.WRITTEN_OFF

    async def _conclude_playbook(self, outcome: DunningOutcome) -> DunningResult:
        s = self.s
        assert s.context is not None
        invoice = s.context.invoice.id
        if outcome is DunningOutcome.RECOVERED:
            attribution = s.recovered_by or (
                f"paid after {s.last_step}" if s.last_step else "paid before any reminder"
            )
            self._update(attribution=attribution)
        unpaid = f"Invoice {invoice} is still unpaid at the end of the schedule:"
        summary = {
            DunningOutcome.RECOVERED: f"Invoice {invoice} was paid ({s.status.attribution}).",
            DunningOutcome.WRITTEN_OFF: f"{unpaid} left past due with finance.",
            DunningOutcome.CANCELLED: f"{unpaid} the subscription was cancelled.",
        }[outcome]
        return await self._close_run(
            outcome,
            f"{summary} {len(s.failures)} failed attempt(s), {s.reminders_sent} reminder(s).",
        )
