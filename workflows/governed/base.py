"""The governed base every use-case workflow extends: the platform around the plot.

A workflow's ``run`` tells its story; what every story needs lives here once: the write gate
(``gate.py``: policy → approval → execute), the audit trail on both systems (``audit.py``),
refused approvals audited by the signal handler, knowing when the history is long enough to
continue as new, handing one state object to the next run, and finishing only after every
handler has.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from workflows.governed.audit import (
    AuditScope,
    audit_entry,
    note_key,
    write_audit,
    write_billing_notes,
    write_riding_crm,
)
from workflows.governed.gate import Gate, Governed

with workflow.unsafe.imports_passed_through():
    from domain.approvals import PendingApproval, RefusedApproval
    from domain.audit import AuditEntry
    from domain.models import NoteTarget
    from domain.policy import AccountFacts, ActionKind, Mode

#: a run that has not asked policy anything yet learns its mode before its first audit
AUDIT_MODE_PATCH = "audit-knows-mode"
#: runs started before it noted refused approvals in billing only where ``refusals_to_billing``
#: said so; since, on the scope's billing record wherever there is one (docs/audit.md)
REFUSALS_BOTH_SIDES_PATCH = "refusals-both-sides"


class GovernedWorkflow(Gate):
    """Subclasses set ``use_case``, call :meth:`_init_governed` in ``@workflow.init`` and
    describe their audit entries in :meth:`_audit_scope`."""

    #: refused approvals are audited in the CRM; dunning also notes them on the invoice
    refusals_to_billing: bool = False

    def _init_governed(self) -> None:
        self._init_gate()
        #: in observe mode: what would have been audited (kept in history, written nowhere)
        self._observed: list[str] = []
        #: billing notes of entries whose CRM side went with a write (the case): they ride
        #: with the next audit entry's note, or go out on :meth:`flush_billing_notes`
        self._notes_pending: list[tuple[tuple[NoteTarget, str], AuditEntry]] = []
        #: CRM entries that ride (:meth:`ride_crm_entry`): written with the next audit entry's
        #: CRM side, or on :meth:`flush_billing_notes`
        self._crm_pending: list[AuditEntry] = []

    @workflow.query(
        name="observed", description="Observe mode: what this run would have written, unwritten."
    )
    def observed(self) -> list[str]:
        return list(self._observed)

    # --- audit ------------------------------------------------------------------------------------

    def _audit_scope(self) -> AuditScope:
        return AuditScope(use_case=self.use_case)

    async def audit(
        self,
        action: str,
        *,
        decision: str,
        outcome: str,
        summary: str,
        policy_ids: list[str] | None = None,
        approver: str | None = None,
        key_suffix: str = "",
        parameters: dict[str, Any] | None = None,
        billing_note: tuple[NoteTarget, str] | None | bool = True,
    ) -> list[str]:
        """One audit entry on both systems; returns the IDs written. ``billing_note``: True for
        the scope's record, a ``(target, id)`` for another, False/None for the CRM only."""
        scope = self._audit_scope()
        entry = audit_entry(
            scope,
            action,
            decision=decision,
            outcome=outcome,
            summary=summary,
            policy_ids=policy_ids,
            approver=approver,
            parameters=parameters,
            key_suffix=key_suffix,
        )
        if await self._observing():
            self._observed.append(f"{action}: {outcome}")
            return []
        note = scope.billing_note if billing_note is True else (billing_note or None)
        crm_more, self._crm_pending = self._crm_pending, []  # they ride with this entry's
        riding = [e for target, e in self._notes_pending if target == note]
        if len(riding) < len(self._notes_pending):
            await self.flush_billing_notes()  # pending notes for another record go first
        self._notes_pending = []
        return await write_audit(
            entry, note, note_key(scope, entry, key_suffix), riding, crm_more=crm_more
        )

    async def entry_with_write(
        self, action: str, *, key_suffix: str = "", **fields: Any
    ) -> AuditEntry | None:
        """The CRM audit entry for a write that carries its own entry (the case upsert writes
        it in the same request); None in observe mode. Its billing note is written later, by
        :meth:`note_written_entry`."""
        if await self._observing():
            return None
        return audit_entry(self._audit_scope(), action, key_suffix=key_suffix, **fields)

    def note_written_entry(self, entry: AuditEntry, key_suffix: str = "", **changes: Any) -> None:
        """``entry`` went to the CRM with its write; its billing note (with ``changes``, e.g.
        the outcome with the ID written) rides with the next audit entry's note."""
        scope = self._audit_scope()
        if scope.billing_note is None:
            return
        noted = entry.model_copy(update=changes)
        noted = noted.model_copy(update={"key": note_key(scope, noted, key_suffix)})
        self._notes_pending.append((scope.billing_note, noted))

    def ride_crm_entry(self, entry: AuditEntry) -> None:
        """``entry``'s write went alone (``UpsertCaseInput.audit_rides``): its CRM side rides
        with the next audit entry's (one request where the CRM batches audit notes)."""
        self._crm_pending.append(entry)

    async def flush_billing_notes(self) -> None:
        """Write the pending billing notes — and CRM entries that ride — now (before any durable
        wait or the end of a run)."""
        crm, self._crm_pending = self._crm_pending, []
        if crm:
            written = await write_riding_crm(crm)
            await self._record_audit_ids([written] if written else [])
        pending, self._notes_pending = self._notes_pending, []
        by_target: dict[tuple[NoteTarget, str], list[AuditEntry]] = {}
        for target, entry in pending:
            by_target.setdefault(target, []).append(entry)
        for target, entries in by_target.items():
            await self._record_audit_ids([await write_billing_notes(target, entries)])

    async def audit_governed(self, governed: Governed, **where: Any) -> list[str]:
        return await self.audit(governed.action.kind.value, **governed.audit_fields(), **where)

    async def _audit_refusal(
        self, refused: RefusedApproval, pending: PendingApproval | None
    ) -> None:
        fields = refused.audit_fields()
        both = self.refusals_to_billing or workflow.patched(REFUSALS_BOTH_SIDES_PATCH)
        ids = await self.audit("approval_refused", **fields, billing_note=both)
        await self._record_audit_ids(ids)

    async def _record_audit_ids(self, ids: list[str]) -> None:
        """Subclasses add the IDs to their status (default: nothing)."""

    async def _observing(self) -> bool:
        """Observe mode (read and report only) writes no audit entry either. The mode comes
        with every policy decision; a run that has asked nothing yet asks once."""
        if self._mode is None and workflow.patched(AUDIT_MODE_PATCH):
            await self.ask(ActionKind.WRITE_NOTE, AccountFacts(id=workflow.info().workflow_id))
        return self._mode is Mode.OBSERVE

    # --- lifecycle --------------------------------------------------------------------------------

    @staticmethod
    def history_full(limit: int) -> bool:
        info = workflow.info()
        return info.is_continue_as_new_suggested() or info.get_current_history_length() >= limit

    @staticmethod
    async def continue_as_new(next_input: Any) -> None:
        """Hand the run to a fresh one once every handler (a refused approval's audit) is done."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(next_input)

    @staticmethod
    async def handlers_finished() -> None:
        await workflow.wait_condition(workflow.all_handlers_finished)
