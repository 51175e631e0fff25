"""The approval gate every workflow uses: propose → policy → (approval) → act → audit.

A workflow class mixes in :class:`GovernedWorkflow`, which gives it the signal ``approval``, the
update ``decide`` (with a validator, so ``revbridge approve`` learns at once whether it counted)
and the query ``pending_approvals``; the workflow calls :meth:`GovernedWorkflow.govern` for each
side effect it wants to take.

``govern`` asks the policy engine (an activity, so every decision is in history). ``allow`` runs
the action; ``deny`` records the block; ``needs_approval`` publishes the action — its ID is a hash
of its exact parameters — sets ``RevBridgeApproval=pending`` and current details a person can act
on, and waits for an eligible approver, with a reminder (a CRM task for the approvers) at the SLA
and expiry after that. An approval re-asks the policy engine with the approver attached before
anything runs. Approvals from someone without the role, from the agent itself, or for another
action ID change nothing and are audited; a second approval of the same action is ignored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow

from workflows.options import POLICY, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.models import UpsertTaskInput
    from activities.policy import PolicyActivities
    from domain import temporal as names
    from domain.approvals import (
        QUERY,
        SIGNAL,
        UPDATE,
        ApprovalOutcome,
        ApprovalResult,
        ApprovalSignal,
        ApprovalTiming,
        Decision,
        PendingApproval,
        ProposedAction,
        RefusedApproval,
    )
    from domain.ids import idempotency_key
    from domain.models import Frozen, TaskDraft
    from domain.policy import (
        AccountFacts,
        ActionKind,
        EligibleApproversInput,
        Origin,
        Outcome,
        PolicyDecision,
        PolicyRequest,
    )


class Governed(Frozen):
    """What became of one proposed action."""

    action: ProposedAction
    decision: PolicyDecision
    #: executed | blocked | rejected | expired | superseded
    status: str
    approver: str | None = None
    note: str = ""
    result_id: str | None = None

    @property
    def outcome(self) -> str:
        """For the audit's outcome field: ``executed (cred_123)``, ``rejected``, ..."""
        return self.status + (f" ({self.result_id})" if self.result_id else "")

    @property
    def line(self) -> str:
        """One line for a status query: ``apply_credit: needs_approval → executed (alice@…)``."""
        return f"{self.action.kind.value}: {self.decision.outcome.value} → {self.status}" + (
            f" ({self.approver})" if self.approver else ""
        )

    def audit_fields(self) -> dict[str, Any]:
        """The audit entry's fields for this action, the same in every workflow."""
        return {
            "decision": self.decision.outcome.value,
            "policy_ids": self.decision.policy_ids,
            "outcome": self.outcome,
            "summary": self.summary(),
            "approver": self.approver,
            "key_suffix": self.action.action_id,
            "parameters": self.action.model_dump(mode="json"),
        }

    def summary(self) -> str:
        """For the audit's summary: what, what became of it, by whom, and why."""
        return (
            f"{self.action.describe()}: {self.status}"
            + (f" by {self.approver}" if self.approver else "")
            + (f" ({self.note})" if self.note else "")
            + f". Why: {self.action.reason}"
        )


Execute = Callable[[ProposedAction], Awaitable[str]]
Audit = Callable[[Governed], Awaitable[None]]
AuditRefusal = Callable[[RefusedApproval, PendingApproval | None], Awaitable[None]]


class GovernedWorkflow:
    """Mixin for workflow classes. Call :meth:`_init_gate` from ``@workflow.init``."""

    use_case: str = ""

    def _init_gate(self) -> None:
        self._pending: dict[str, PendingApproval] = {}
        self._answers: dict[str, ApprovalSignal] = {}
        self._decided: set[str] = set()
        self._refused: list[RefusedApproval] = []
        self._refusals_audited = 0
        self._last_approval_state = "none"

    # --- messages -------------------------------------------------------------------------------------

    @workflow.signal(
        name=SIGNAL,
        description="Approve or reject a pending action: {action_id, decision, approver, note}.",
    )
    def approval(self, signal: ApprovalSignal) -> None:
        reason = self._refusal(signal)
        if reason is not None:
            self._refused.append(RefusedApproval(signal=signal, reason=reason))
            return
        self._answers[signal.action_id] = signal

    @workflow.update(name=UPDATE, description="Like the approval signal, but answers at once.")
    def decide(self, signal: ApprovalSignal) -> str:
        self._answers[signal.action_id] = signal
        return f"{signal.decision.value} recorded for {signal.action_id}"

    @decide.validator
    def _validate_decide(self, signal: ApprovalSignal) -> None:
        reason = self._refusal(signal)
        if reason is not None:
            raise ValueError(reason)

    @workflow.query(name=QUERY, description="Actions waiting for a person.")
    def pending_approvals(self) -> list[PendingApproval]:
        return list(self._pending.values())

    async def policy_only(self, kind: ActionKind, account: AccountFacts) -> PolicyDecision:
        """Ask policy about a write that needs no approval of its own — a CRM task (itself the way
        a person is asked) or a field RevBridge owns — so observe mode still writes nothing."""
        return await workflow.execute_activity_method(
            PolicyActivities.decide,
            PolicyRequest(use_case=self.use_case, action=kind, account=account),
            summary=f"policy: {kind.value}",
            **POLICY,
        )

    def _refusal(self, signal: ApprovalSignal) -> str | None:
        pending = self._pending.get(signal.action_id)
        if signal.action_id in self._decided or signal.action_id in self._answers:
            return f"action {signal.action_id} was already decided"
        if pending is None:
            return f"no pending action {signal.action_id} (stale or wrong action ID)"
        approver = signal.approver.strip().lower()
        if approver.startswith("agent:") or approver == self.use_case:
            return "the agent cannot approve its own action"
        if approver not in pending.eligible_approvers:
            roles = " or ".join(pending.approver_roles) or "an approver role"
            return f"{approver or '(no approver)'} may not approve {pending.action.kind.value}: it needs {roles}"
        return None

    # --- the gate -------------------------------------------------------------------------------------

    async def govern(
        self,
        action: ProposedAction,
        account: AccountFacts,
        why: str,
        execute: Execute,
        audit: Audit,
        timing: ApprovalTiming,
        crm_account_id: str | None = None,
        superseded: Callable[[], bool] = lambda: False,
    ) -> Governed:
        request = PolicyRequest(
            use_case=self.use_case,
            action=action.kind,
            account=account,
            amount=action.amount,
            currency=action.currency,
            origin=Origin(action.origin),
            discount_percent=action.discount_percent,
            custom_terms=action.custom_terms,
        )
        decision = await workflow.execute_activity_method(
            PolicyActivities.decide, request, summary=f"policy: {action.kind.value}", **POLICY
        )
        if decision.outcome is Outcome.DENY:
            outcome = Governed(action=action, decision=decision, status="blocked")
        elif decision.outcome is Outcome.ALLOW:
            outcome = await self._run(action, decision, execute)
        else:
            answer = await self._await_approval(
                action, decision, why, crm_account_id, timing, superseded
            )
            if answer.outcome is not ApprovalOutcome.APPROVED:
                outcome = Governed(
                    action=action,
                    decision=decision,
                    status=answer.outcome.value,
                    approver=answer.approver,
                    note=answer.note,
                )
            else:
                # Ask again with the approval attached: the approval must satisfy the policies,
                # not just the gate (e.g. an approver whose role no longer fits).
                approved = await workflow.execute_activity_method(
                    PolicyActivities.decide,
                    request.model_copy(update={"approved_by": answer.approver}),
                    summary=f"policy: {action.kind.value} approved by a person",
                    **POLICY,
                )
                if approved.outcome is Outcome.ALLOW:
                    # audited as what policy asked for (needs_approval), carried out on approval
                    outcome = await self._run(action, decision, execute, answer)
                else:
                    outcome = Governed(
                        action=action,
                        decision=approved,
                        status="blocked",
                        approver=answer.approver,
                        note=answer.note,
                    )
        await audit(outcome)
        return outcome

    async def _run(
        self,
        action: ProposedAction,
        decision: PolicyDecision,
        execute: Execute,
        answer: ApprovalResult | None = None,
    ) -> Governed:
        result_id = await execute(action)
        return Governed(
            action=action,
            decision=decision,
            status="executed",
            approver=answer.approver if answer else None,
            note=answer.note if answer else "",
            result_id=result_id,
        )

    async def _await_approval(
        self,
        action: ProposedAction,
        decision: PolicyDecision,
        why: str,
        crm_account_id: str | None,
        timing: ApprovalTiming,
        superseded: Callable[[], bool],
    ) -> ApprovalResult:
        eligible = await workflow.execute_activity_method(
            PolicyActivities.eligible_approvers,
            EligibleApproversInput(action=action.kind, roles=decision.approver_roles),
            summary="who may approve",
            **POLICY,
        )
        now = workflow.now()
        pending = PendingApproval(
            action_id=action.action_id,
            action=action,
            why=why,
            policy_ids=decision.policy_ids,
            approver_roles=decision.approver_roles,
            eligible_approvers=eligible.emails,
            requested_at=now,
            remind_at=now + timing.remind_after,
            expires_at=now + timing.expire_after,
        )
        self._pending[pending.action_id] = pending
        self._publish_approval_state("pending")
        workflow.set_current_details(pending.details())

        def answered() -> bool:
            return pending.action_id in self._answers or superseded()

        try:
            await workflow.wait_condition(
                answered, timeout=timing.remind_after, timeout_summary="approval reminder due"
            )
        except TimeoutError:
            await self._remind(pending, crm_account_id)
            try:
                await workflow.wait_condition(
                    answered,
                    timeout=timing.expire_after - timing.remind_after,
                    timeout_summary="approval expires",
                )
            except TimeoutError:
                return self._close(
                    pending,
                    ApprovalResult(action_id=pending.action_id, outcome=ApprovalOutcome.EXPIRED),
                )
        answer = self._answers.get(pending.action_id)
        if answer is None:
            return self._close(
                pending,
                ApprovalResult(action_id=pending.action_id, outcome=ApprovalOutcome.SUPERSEDED),
            )
        outcome = (
            ApprovalOutcome.APPROVED
            if answer.decision is Decision.APPROVE
            else ApprovalOutcome.REJECTED
        )
        return self._close(
            pending,
            ApprovalResult(
                action_id=pending.action_id,
                outcome=outcome,
                approver=answer.approver.strip().lower(),
                note=answer.note,
            ),
        )

    async def audit_refusals(self, audit_refusal: AuditRefusal) -> None:
        """Runs for the workflow's life (start it as a task): every refused approval signal,
        whenever it arrives, is audited."""
        while True:
            await workflow.wait_condition(lambda: self._refusals_audited < len(self._refused))
            refused = self._refused[self._refusals_audited]
            await audit_refusal(refused, self._pending.get(refused.signal.action_id))
            self._refusals_audited += 1

    async def refusals_audited(self) -> None:
        await workflow.wait_condition(lambda: self._refusals_audited == len(self._refused))

    def _close(self, pending: PendingApproval, result: ApprovalResult) -> ApprovalResult:
        self._pending.pop(pending.action_id, None)
        self._decided.add(pending.action_id)
        self._answers.pop(pending.action_id, None)
        self._publish_approval_state(result.outcome.value)
        return result

    def _publish_approval_state(self, state: str) -> None:
        state = "pending" if self._pending else state
        if state != self._last_approval_state:
            self._last_approval_state = state
            workflow.upsert_search_attributes([names.APPROVAL.value_set(state)])

    async def _remind(self, pending: PendingApproval, crm_account_id: str | None) -> None:
        info = workflow.info()
        await workflow.execute_activity_method(
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(info.workflow_id, f"remind:{pending.action_id}"),
                    account_id=crm_account_id,
                    subject=f"Approval waiting: {pending.action.describe()}"[:250],
                    description=(
                        f"{pending.why}\n\nApprover role: {' or '.join(pending.approver_roles)}. "
                        f"Expires {pending.expires_at:%Y-%m-%d %H:%M} UTC.\n"
                        f"Workflow {info.workflow_id}: send the signal '{SIGNAL}' with "
                        f"{pending.signal_json()} (Temporal Web UI), or run: revbridge approve "
                        f"{info.workflow_id} --action {pending.action_id} --as <your email>"
                    ),
                    high_priority=True,
                    due=pending.expires_at,
                )
            ),
            summary="remind the approvers",
            **WRITE,
        )
