"""Waiting for a person: the signal ``approval``, the update ``decide`` and the query
``pending_approvals`` every governed workflow answers.

An action that policy sends to a person is published with its ID (a hash of its exact
parameters), ``RevBridgeApproval=pending`` and current details a person can act on; the gate waits
for an eligible approver, reminds the approvers at the SLA and expires after that. Approvals from
someone without the role, from the agent itself, or for another action ID change nothing and are
audited — by the signal handler itself, which contains any failure of that audit, so a refused
approval can never leave a run hanging (``all_handlers_finished`` waits for it before the run
closes or continues as new).
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from domain import temporal as names
    from domain.approvals import (
        IDENTITY_CHECK,
        QUERY,
        SIGNAL,
        UPDATE,
        VERIFIED_APPROVER,
        ApprovalOutcome,
        ApprovalResult,
        ApprovalSignal,
        ApprovalTiming,
        Decision,
        PendingApproval,
        ProposedAction,
        RefusedApproval,
        read_approval,
    )
    from domain.policy import PolicyDecision

#: approvals checked against the verified identity of the person who sent them
VERIFIED_APPROVERS = "verified-approvers"
#: the separator between a refusal line and the details it sits on
_REFUSED = "**Refused:** "
_RULE = "\n\n---\n\n"


class ApprovalGate:
    """Mixin: the messages of the approval gate and the wait for a person. Subclasses provide
    :meth:`_audit_refusal` (write the audit entry) and :meth:`_remind` (a task for approvers)."""

    use_case: str = ""

    def _init_approvals(self) -> None:
        self._pending: dict[str, PendingApproval] = {}
        self._answers: dict[str, ApprovalSignal] = {}
        self._decided: set[str] = set()
        #: how each decided action ended (approved, rejected, expired, superseded)
        self._closed_as: dict[str, str] = {}
        self._refused: list[str] = []
        self._last_approval_state = "none"

    # --- messages -------------------------------------------------------------------------------------

    @workflow.signal(
        name=SIGNAL,
        description="Approve or reject a pending action: {action_id, decision, approver, note}.",
    )
    async def approval(self, raw: RawValue) -> None:
        # Taken raw: a payload with a field missing would otherwise be dropped by the SDK before
        # this handler ran (nothing shown, nothing audited), and an extra one silently ignored.
        data = self._approval_payload(raw)
        signal = read_approval(data)
        pending: PendingApproval | None = None
        if isinstance(signal, str):
            refused = RefusedApproval.bad_payload(data, signal)
        else:
            reason = self._identity_refusal(raw, signal, patch=True) or self._refusal(signal)
            if reason is None:
                self._answers[signal.action_id] = signal
                return
            refused = RefusedApproval(signal=signal, reason=reason)
            pending = self._pending.get(signal.action_id)
        self._refused.append(refused.summary())
        self._show_refusal(refused.summary(), pending)
        try:
            await self._audit_refusal(refused, pending)
        except ActivityError as err:  # the audit gave up: logged and shown, never fatal
            workflow.logger.warning("audit of a refused approval failed: %s", err.cause or err)
            self._refused.append(f"(not audited: {err.cause or err})"[:300])

    @workflow.update(name=UPDATE, description="Like the approval signal, but answers at once.")
    def decide(self, raw: RawValue) -> str:
        signal = read_approval(self._approval_payload(raw))
        assert isinstance(signal, ApprovalSignal)  # the validator refused anything else
        self._answers[signal.action_id] = signal
        return f"{signal.decision.value} recorded for {signal.action_id}"

    @decide.validator
    def _validate_decide(self, raw: RawValue) -> None:
        # A refused update never reaches history (Temporal's design): the caller gets the reason.
        signal = read_approval(self._approval_payload(raw))
        reason = (
            signal
            if isinstance(signal, str)
            else self._identity_refusal(raw, signal, patch=False) or self._refusal(signal)
        )
        if reason is not None:
            raise ValueError(reason)

    @staticmethod
    def _identity_refusal(raw: RawValue, signal: ApprovalSignal, patch: bool) -> str | None:
        """Where approver identities are verified (the codec has identity keys: infra/codec.py
        marks every payload it decodes), the approver must be the person whose signed-in
        identity the codec server stamped on this exact payload. The check reads metadata the
        data converter set; no I/O, so replay sees what the run saw. ``patch``: runs recorded
        before the check keep their history (never inside the update validator, which may not
        record anything)."""
        return ApprovalGate._unverified_sender(raw, signal.approver, patch)

    @staticmethod
    def _unverified_sender(raw: RawValue, claimed: str, patch: bool) -> str | None:
        """Why the person named in a message (``claimed``) is not proven to have sent it, or None
        (proven, or identities are not verified here). Any signal a person sends uses it."""
        # the patch is asked first, whatever the worker's configuration: asked only when this
        # worker verifies identities, a history recorded by a worker with identity keys did not
        # replay on one without them (nor an in-flight run across a restart that turned them on)
        if patch and not workflow.patched(VERIFIED_APPROVERS):
            return None
        if raw.payload.metadata.get(IDENTITY_CHECK) is None:
            return None
        claimed = claimed.strip().lower()
        verified = raw.payload.metadata.get(VERIFIED_APPROVER, b"").decode(errors="replace")
        if not verified:
            return (
                f"{claimed[:80] or '(nobody named)'} is not a verified identity: send it from "
                "the Web UI signed in, or revbridge approve with REVBRIDGE_ID_TOKEN"
            )
        if verified.lower() != claimed:
            return f"signed in as {verified[:80]}, not {claimed[:80]}"
        return None

    @staticmethod
    def _approval_payload(raw: RawValue) -> object:
        try:
            return workflow.payload_converter().from_payload(raw.payload)
        except Exception as exc:  # not JSON at all: refused like any bad payload
            return f"<unreadable: {type(exc).__name__}>"

    def _show_refusal(self, line: str, pending: PendingApproval | None) -> None:
        """The person looking at the Web UI sees why nothing happened, above what they saw."""
        below = pending.details() if pending else workflow.get_current_details()
        if below.startswith(_REFUSED):  # replace an earlier refusal, never stack them
            below = below.split(_RULE, 1)[1] if _RULE in below else ""
        workflow.set_current_details(f"{_REFUSED}{line}" + (f"{_RULE}{below}" if below else ""))

    @workflow.query(name=QUERY, description="Actions waiting for a person.")
    def pending_approvals(self) -> list[PendingApproval]:
        return list(self._pending.values())

    def _refusal(self, signal: ApprovalSignal) -> str | None:
        pending = self._pending.get(signal.action_id)
        if signal.action_id in self._closed_as:
            ended = self._closed_as[signal.action_id]
            return f"action {signal.action_id} was already decided ({ended})"
        if signal.action_id in self._decided or signal.action_id in self._answers:
            return f"action {signal.action_id} was already decided"
        if pending is None:
            return (
                f"no pending action {signal.action_id[:80]} (stale or wrong action ID, or "
                "nothing waits for a person yet)"
            )
        approver = signal.approver.strip().lower()
        if approver.startswith("agent:") or approver == self.use_case:
            return "the agent cannot approve its own action"
        if approver not in pending.eligible_approvers:
            roles = " or ".join(pending.approver_roles) or "an approver role"
            return f"{approver or '(no approver)'} may not approve {pending.action.kind.value}: it needs {roles}"
        return None

    # --- waiting for a person ----------------------------------------------------------------------

    async def _await_approval(
        self,
        action: ProposedAction,
        decision: PolicyDecision,
        eligible: list[str],
        why: str,
        crm_account_id: str | None,
        timing: ApprovalTiming,
        superseded: object,
        approver_crm_ids: list[str] | None = None,
    ) -> ApprovalResult:
        now = workflow.now()
        pending = PendingApproval(
            action_id=action.action_id,
            action=action,
            why=why,
            policy_ids=decision.policy_ids,
            approver_roles=decision.approver_roles,
            eligible_approvers=eligible,
            requested_at=now,
            remind_at=now + timing.remind_after,
            expires_at=now + timing.expire_after,
            approver_crm_ids=approver_crm_ids or [],
        )
        self._pending[pending.action_id] = pending
        self._publish_approval_state("pending")
        workflow.set_current_details(pending.details())

        def answered() -> bool:
            return pending.action_id in self._answers or superseded()  # type: ignore[operator]

        if not await self._wait(answered, timing.remind_after, "approval reminder due"):
            await self._remind(pending, crm_account_id)
            if not await self._wait(
                answered, timing.expire_after - timing.remind_after, "approval expires"
            ):
                return self._close_approval(pending, ApprovalOutcome.EXPIRED)
        answer = self._answers.get(pending.action_id)
        if answer is None:
            return self._close_approval(pending, ApprovalOutcome.SUPERSEDED)
        approved = answer.decision is Decision.APPROVE
        return self._close_approval(
            pending,
            ApprovalOutcome.APPROVED if approved else ApprovalOutcome.REJECTED,
            approver=answer.approver.strip().lower(),
            note=answer.note,
        )

    @staticmethod
    async def _wait(done: object, within: timedelta, summary: str) -> bool:
        try:
            await workflow.wait_condition(done, timeout=within, timeout_summary=summary)  # type: ignore[arg-type]
        except TimeoutError:
            return False
        return True

    def _close_approval(
        self,
        pending: PendingApproval,
        outcome: ApprovalOutcome,
        approver: str | None = None,
        note: str = "",
    ) -> ApprovalResult:
        self._pending.pop(pending.action_id, None)
        self._decided.add(pending.action_id)
        self._closed_as[pending.action_id] = outcome.value
        self._answers.pop(pending.action_id, None)
        self._publish_approval_state(outcome.value)
        return ApprovalResult(
            action_id=pending.action_id, outcome=outcome, approver=approver, note=note
        )

    def _publish_approval_state(self, state: str) -> None:
        state = "pending" if self._pending else state
        if state != self._last_approval_state:
            self._last_approval_state = state
            workflow.upsert_search_attributes([names.APPROVAL_KEY.value_set(state)])

    # --- provided by the gate ---------------------------------------------------------------------

    async def _audit_refusal(
        self, refused: RefusedApproval, pending: PendingApproval | None
    ) -> None:
        raise NotImplementedError

    async def _remind(self, pending: PendingApproval, crm_account_id: str | None) -> None:
        raise NotImplementedError
