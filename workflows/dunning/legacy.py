"""The pre-playbook path: runs started before the multi-week playbook (no ``dunning-playbook``
marker in their history) wait for payment with one recommended retry, and close as recovered or
unresolved.

Retiring it (docs/replay.md, the samples' patched → deprecate_patch → removed): once no run
started before the playbook is open — check with ``revbridge replay --query
"WorkflowType='DunningWorkflow' AND ExecutionStatus='Running'"`` and the retention window — the
workflow calls ``workflow.deprecate_patch(PLAYBOOK_PATCH)`` and drops this module; one release
later the deprecate call goes too. The committed histories ``DunningWorkflow__unresolved`` /
``__recovered_with_approval`` / ``__continued_as_new`` are removed in the same change.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from domain.dunning import DunningOutcome, DunningPhase, DunningResult
    from domain.dunning_text import legacy_wait_details
    from domain.policy import ActionKind


class LegacyCollect:
    """Mixin of :class:`~workflows.dunning.workflow.DunningWorkflow`."""

    async def _collect(self, phase: DunningPhase, deadline: datetime | None) -> bool:
        """Wait for the payment, with the recommended retry when it falls due. ``deadline`` is
        set on a continuation (the wait goes on to the same end); True when the invoice is paid."""
        assessment = self.s.assessment
        assert assessment is not None
        input = self._input
        if phase is DunningPhase.RETRY_DUE:
            wait = deadline - workflow.now() if deadline else input.retry_after
            if await self._wait_for_payment(max(wait, timedelta(0)), "retry due", phase):
                return True
            retry = next(
                (a for a in assessment.proposed_actions if a.kind is ActionKind.RETRY_PAYMENT),
                None,
            )
            if retry is not None and await self._settled_now("the retry"):
                return True
            if retry is not None:
                self._update(stage="retrying the payment")
                await self._govern(retry, why=retry.reason)
            deadline = None
        wait = (
            deadline - workflow.now()
            if deadline
            else max(input.payment_wait - input.retry_after, timedelta(0))
        )
        return await self._wait_for_payment(
            max(wait, timedelta(0)), "payment wait", DunningPhase.PAYMENT_WAIT
        )

    async def _wait_for_payment(self, wait: timedelta, summary: str, phase: DunningPhase) -> bool:
        self._update(stage="waiting for payment")
        workflow.set_current_details(legacy_wait_details(self.s, wait))
        deadline = workflow.now() + wait
        try:
            await workflow.wait_condition(
                lambda: self.s.paid is not None or self._history_full(),
                timeout=wait,
                timeout_summary=summary,
            )
        except TimeoutError:
            return False
        if self.s.paid is None:
            await self._continue(phase, deadline)
        return True

    async def _conclude(self, recovered: bool) -> DunningResult:
        assert self.s.context is not None
        outcome = DunningOutcome.RECOVERED if recovered else DunningOutcome.UNRESOLVED
        return await self._close_run(
            outcome,
            f"Invoice {self.s.context.invoice.id} "
            f"{'was paid' if recovered else 'is still unpaid'}"
            f" after {len(self.s.failures)} failed attempt(s).",
        )
