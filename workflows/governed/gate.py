"""The write gate: the only way a workflow reaches an activity that writes to a vendor.

``govern`` takes a proposed action through policy (an activity, so every decision is in
history): ``allow`` runs it, ``deny`` records the block, ``needs_approval`` waits for a person
(``approval.py``) and asks policy again with the approver attached. ``ask`` is the short path for
a write that needs no approval of its own (a CRM task, which is itself how a person is asked; a
field RevBridge owns): policy only. Either way the workflow gets a :class:`Permit`, and
:meth:`Gate.write` runs a declared write activity (``activities/writes.py``) only with a permit
this gate issued for an ``allow`` — so observe mode (every write denied) writes nothing, by
construction. ``tests/unit/test_write_gate.py`` checks that no workflow module calls a write any
other way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.governed.approval import ApprovalGate
from workflows.options import LOCAL_POLICY, POLICY, WRITE

with workflow.unsafe.imports_passed_through():
    from activities.crm import CrmActivities
    from activities.models import UpsertTaskInput
    from activities.policy import PolicyActivities
    from activities.writes import activity_name, is_write
    from domain.approvals import (
        SIGNAL,
        ApprovalOutcome,
        ApprovalResult,
        ApprovalTiming,
        PendingApproval,
        ProposedAction,
    )
    from domain.ids import idempotency_key
    from domain.models import Frozen, TaskDraft
    from domain.policy import (
        AccountFacts,
        ActionKind,
        EligibleApproversInput,
        Mode,
        Origin,
        Outcome,
        PolicyDecision,
        PolicyRequest,
    )


#: runs started before it created one unassigned reminder task (it landed on the integration
#: user); since, one task per eligible approver, assigned to their CRM user
REMIND_APPROVERS_PATCH = "remind-approvers"


@dataclass(frozen=True, eq=False)
class Permit:
    """What policy said about one write. Only the gate makes them (it remembers each one)."""

    kind: ActionKind
    decision: PolicyDecision
    #: set by the gate: an ``allow``, or housekeeping not denied (:meth:`Gate.ask_housekeeping`)
    allowed: bool


class GateViolation(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(message, type="GateViolation", non_retryable=True)


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


#: runs one allowed action through :meth:`Gate.write`; returns the ID of what it wrote
Execute = Callable[[Permit, ProposedAction], Awaitable[str]]
Audit = Callable[[Governed], Awaitable[None]]


class Gate(ApprovalGate):
    """Policy, approvals and the one door to vendor writes. Call :meth:`_init_gate` first."""

    def _init_gate(self) -> None:
        self._init_approvals()
        self._permits: set[int] = set()
        #: the rollout mode the latest policy decision reported (observe → audits are not written)
        self._mode: Mode | None = None
        #: policy decisions as local activities (a workflow sets it behind its own patch: the
        #: decision is recorded as a marker instead of an activity task)
        self._local_decisions = False
        #: what :meth:`govern` will record for the action being executed right now (status
        #: ``executed``), so an execute can send its audit entry with the write itself
        self._executing: Governed | None = None

    # --- asking policy ------------------------------------------------------------------------

    async def ask(self, kind: ActionKind, account: AccountFacts) -> Permit:
        """Policy only, for a write that needs no approval of its own."""
        return self._permit(
            kind,
            await self._decide(PolicyRequest(use_case=self.use_case, action=kind, account=account)),
        )

    async def _decide(self, request: PolicyRequest, summary: str | None = None) -> PolicyDecision:
        if self._local_decisions:
            decision = await workflow.execute_local_activity_method(
                PolicyActivities.decide_policy,
                request,
                summary=summary or f"policy: {request.action.value}",
                **LOCAL_POLICY,
            )
        else:
            decision = await workflow.execute_activity_method(
                PolicyActivities.decide_policy,
                request,
                summary=summary or f"policy: {request.action.value}",
                **POLICY,
            )
        if decision.mode is not None:
            self._mode = decision.mode
        return decision

    async def ask_housekeeping(self, kind: ActionKind, account: AccountFacts) -> Permit:
        """Policy for housekeeping — a CRM task for a person, a field RevBridge owns. It needs no
        approval of its own (a task is how a person is asked in the first place), so only
        ``deny`` (observe mode, a forbid) stops it."""
        decision = await self._decide(
            PolicyRequest(use_case=self.use_case, action=kind, account=account)
        )
        return self._permit(kind, decision, allowed=decision.outcome is not Outcome.DENY)

    async def housekeeping_since(
        self, patch: str, kind: ActionKind, account: AccountFacts
    ) -> Permit:
        """:meth:`ask_housekeeping` for runs started after ``patch``; a run started before it
        has no policy call for this write in its history and keeps writing as it did then (the
        permit says so: ``pre_gate``). Retired with the patch (docs/replay.md)."""
        if workflow.patched(patch):
            return await self.ask_housekeeping(kind, account)
        return self._permit(
            kind, PolicyDecision(outcome=Outcome.ALLOW, policy_ids=["pre_gate"]), allowed=True
        )

    def _permit(
        self, kind: ActionKind, decision: PolicyDecision, allowed: bool | None = None
    ) -> Permit:
        permit = Permit(
            kind=kind,
            decision=decision,
            allowed=decision.outcome is Outcome.ALLOW if allowed is None else allowed,
        )
        self._permits.add(id(permit))
        return permit

    # --- the one door to vendor writes ------------------------------------------------------------

    async def write(
        self,
        permit: Permit,
        activity: Callable[..., Any],
        arg: Any,
        *,
        summary: str,
        options: dict[str, Any] | None = None,
    ) -> Any:
        """Run a declared write activity under ``permit`` (which must allow it)."""
        if id(permit) not in self._permits or not isinstance(permit, Permit):
            raise GateViolation(f"{activity_name(activity)}: a permit this gate did not issue")
        if not permit.allowed:
            raise GateViolation(
                f"{activity_name(activity)}: policy said {permit.decision.outcome.value}"
            )
        if not is_write(activity):
            raise GateViolation(f"{activity_name(activity)} is not a declared write")
        return await workflow.execute_activity_method(
            activity, arg, summary=summary, **(options or WRITE)
        )

    # --- governing a proposed action --------------------------------------------------------------

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
            duplicate_subscription=bool(action.duplicate_of),
        )
        decision = await self._decide(request)
        if decision.outcome is Outcome.DENY:
            outcome = Governed(action=action, decision=decision, status="blocked")
        elif decision.outcome is Outcome.ALLOW:
            outcome = await self._run(
                action, decision, self._permit(action.kind, decision), execute
            )
        else:
            outcome = await self._after_approval(
                action, decision, request, why, execute, timing, crm_account_id, superseded
            )
        await audit(outcome)
        return outcome

    async def _after_approval(
        self,
        action: ProposedAction,
        decision: PolicyDecision,
        request: PolicyRequest,
        why: str,
        execute: Execute,
        timing: ApprovalTiming,
        crm_account_id: str | None,
        superseded: Callable[[], bool],
    ) -> Governed:
        who = EligibleApproversInput(action=action.kind, roles=decision.approver_roles)
        if self._local_decisions:
            eligible = await workflow.execute_local_activity_method(
                PolicyActivities.eligible_approvers, who, summary="who may approve", **LOCAL_POLICY
            )
        else:
            eligible = await workflow.execute_activity_method(
                PolicyActivities.eligible_approvers, who, summary="who may approve", **POLICY
            )
        answer = await self._await_approval(
            action,
            decision,
            eligible.emails,
            why,
            crm_account_id,
            timing,
            superseded,
            approver_crm_ids=eligible.crm_user_ids,
        )
        if answer.outcome is not ApprovalOutcome.APPROVED:
            return Governed(
                action=action,
                decision=decision,
                status=answer.outcome.value,
                approver=answer.approver,
                note=answer.note,
            )
        # Ask again with the approval attached: the approval must satisfy the policies, not just
        # the gate (e.g. an approver whose role no longer fits).
        approved = await self._decide(
            request.model_copy(update={"approved_by": answer.approver}),
            summary=f"policy: {action.kind.value} approved by a person",
        )
        if approved.outcome is not Outcome.ALLOW:
            return Governed(
                action=action,
                decision=approved,
                status="blocked",
                approver=answer.approver,
                note=answer.note,
            )
        # audited as what policy asked for (needs_approval), carried out on approval
        permit = self._permit(action.kind, approved)
        return await self._run(action, decision, permit, execute, answer)

    async def _run(
        self,
        action: ProposedAction,
        decision: PolicyDecision,
        permit: Permit,
        execute: Execute,
        answer: ApprovalResult | None = None,
    ) -> Governed:
        self._executing = Governed(
            action=action,
            decision=decision,
            status="executed",
            approver=answer.approver if answer else None,
            note=answer.note if answer else "",
        )
        try:
            result_id = await execute(permit, action)
        finally:
            self._executing = None
        return Governed(
            action=action,
            decision=decision,
            status="executed",
            approver=answer.approver if answer else None,
            note=answer.note if answer else "",
            result_id=result_id,
        )

    async def _remind(self, pending: PendingApproval, crm_account_id: str | None) -> None:
        """A CRM task for each eligible approver at the SLA, assigned to their CRM user
        (approvers.yaml ``crm_users``) — never left on the integration user. Approvers without
        a CRM user (and runs started before ``remind-approvers``) get the one unassigned task.
        Policy already asked for a person; the reminder is part of asking, so it writes under
        that request."""
        permit = self._permit(
            ActionKind.CREATE_TASK,
            PolicyDecision(outcome=Outcome.ALLOW, policy_ids=["approval_reminder"]),
        )
        owners: list[str | None] = [None]
        if workflow.patched(REMIND_APPROVERS_PATCH) and pending.approver_crm_ids:
            owners = list(pending.approver_crm_ids)
        unassigned = False
        for owner in owners:
            try:
                await self._remind_one(permit, pending, crm_account_id, owner)
            except ActivityError as err:
                if owner is None:
                    raise
                # a user the CRM refuses (left, mistyped): the reminder still goes out, unassigned
                workflow.logger.warning("reminder for CRM user %s refused: %s", owner, err.cause)
                unassigned = True
        if unassigned:
            await self._remind_one(permit, pending, crm_account_id, None)

    async def _remind_one(
        self,
        permit: Permit,
        pending: PendingApproval,
        crm_account_id: str | None,
        owner: str | None,
    ) -> None:
        info = workflow.info()
        step = f"remind:{pending.action_id}" + (f":{owner}" if owner else "")
        await self.write(
            permit,
            CrmActivities.upsert_crm_task,
            UpsertTaskInput(
                draft=TaskDraft(
                    key=idempotency_key(info.workflow_id, step),
                    account_id=crm_account_id,
                    owner_id=owner,
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
            summary="remind the approver" + (f" {owner}" if owner else "s"),
        )
