"""The audit trail every use case writes: one entry per action, to the CRM's agent log and (where
there is a billing record to attach it to) as a note in billing, in parallel.

Keys derive from the workflow ID and the step, so a retried or replayed write never records
twice. In observe mode nothing is written to either system: the entry is kept in the run's
status instead (observe means read and report only). This module and ``gate.py`` are the only
places that call write activities.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from temporalio import workflow

from workflows.options import WRITE

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities
    from activities.crm import CrmActivities
    from activities.models import AddBillingNoteInput, WriteAuditInput
    from domain.audit import AuditEntry, parameters_hash
    from domain.ids import idempotency_key
    from domain.models import NoteTarget


@dataclass(frozen=True)
class AuditScope:
    """What a workflow's audit entries share: where they go and what they cite."""

    use_case: str
    account_id: str | None = None
    case_id: str | None = None
    #: the billing record the note goes on; None: CRM only (nothing in billing to attach it to)
    billing_note: tuple[NoteTarget, str] | None = None
    #: prefixed to every key suffix (a churn intervention's first run ID)
    key_prefix: str = ""
    #: dunning's billing-note key (``…:billing`` step) predates the shared one; runs in flight
    #: keep theirs so a retried note stays one note
    step_billing_key: bool = False
    reasoner: str = "rules"
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def audit_entry(
    scope: AuditScope,
    action: str,
    *,
    decision: str,
    outcome: str,
    summary: str,
    policy_ids: list[str] | None = None,
    approver: str | None = None,
    parameters: dict[str, Any] | None = None,
    key_suffix: str = "",
) -> AuditEntry:
    """An entry for this workflow run; ``key_suffix`` tells apart two entries of one action."""
    info = workflow.info()
    suffix = f"{scope.key_prefix}:{key_suffix}" if scope.key_prefix else key_suffix
    return AuditEntry(
        key=idempotency_key(info.workflow_id, f"audit:{action}:{suffix}:crm"),
        use_case=scope.use_case,
        action=action,
        parameters_hash=parameters_hash(parameters or {"action": action, "suffix": suffix}),
        decision=decision,
        policy_ids=policy_ids or [],
        approver=approver,
        reasoner=scope.reasoner,
        model=scope.model,
        input_tokens=scope.input_tokens,
        output_tokens=scope.output_tokens,
        outcome=outcome,
        summary=summary,
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        account_id=scope.account_id,
        case_id=scope.case_id,
        at=workflow.now(),
        action_id=suffix if suffix.startswith("act-") else f"{action}:{suffix}".rstrip(":"),
    )


def note_key(scope: AuditScope, entry: AuditEntry, key_suffix: str) -> str:
    """The billing note's own idempotency key (the CRM entry's key is ``entry.key``)."""
    if scope.step_billing_key:
        suffix = f"{scope.key_prefix}:{key_suffix}" if scope.key_prefix else key_suffix
        return idempotency_key(entry.workflow_id, f"audit:{entry.action}:{suffix}:billing")
    return idempotency_key(entry.key, "billing")


async def write_audit(
    entry: AuditEntry,
    note: tuple[NoteTarget, str] | None,
    note_key: str,
    more_notes: list[AuditEntry] | None = None,
    crm: bool = True,
    crm_more: list[AuditEntry] | None = None,
    entry_rides: bool = False,
) -> list[str]:
    """Write ``entry`` to the CRM and, with ``note=(target, id)``, to billing too.
    ``more_notes``: earlier entries whose CRM side was written already (with the case) and
    whose billing notes ride with this one (same record, one activity, each its own key);
    ``crm=False``: billing only (``entry``'s CRM side was written already too).
    ``crm_more``: earlier entries whose CRM side rode (the case's on HubSpot): written with
    ``entry`` in one request where the CRM batches audit notes; ``entry_rides``: ``entry``
    rode too (``WriteAuditInput.entry_rides``).
    Returns the IDs of what was written (CRM log first)."""
    writes = []
    if crm:
        writes.append(
            workflow.execute_activity_method(
                CrmActivities.write_crm_audit,
                WriteAuditInput(entry=entry, more=crm_more or [], entry_rides=entry_rides),
                summary=f"audit {', '.join(e.action for e in [*(crm_more or []), entry])} in the CRM",
                **WRITE,
            )
        )
    if note is not None:
        target, target_id = note
        actions = [e.action for e in [*(more_notes or []), entry]]
        writes.append(
            workflow.execute_activity_method(
                BillingActivities.add_billing_note,
                AddBillingNoteInput(
                    target=target,
                    target_id=target_id,
                    entry=entry.model_copy(update={"key": note_key}),
                    more=more_notes or [],
                ),
                summary=f"audit {', '.join(actions)} in billing",
                **WRITE,
            )
        )
    results = await asyncio.gather(*writes)
    return [r.id for r in results]


async def write_billing_notes(note: tuple[NoteTarget, str], entries: list[AuditEntry]) -> str:
    """Billing notes only (their CRM side was written already, with the case), in one activity;
    each entry carries its note key. Returns the last note's ID."""
    *earlier, last = entries
    (note_id,) = await write_audit(last, note, last.key, earlier, crm=False)
    return note_id


async def write_riding_crm(entries: list[AuditEntry]) -> str:
    """CRM entries that rode (their write went alone) and found no entry to ride with before a
    durable wait: one activity, one request where the CRM batches audit notes, nothing where it
    wrote them with their write. Returns the last entry's ID ("" where nothing was written)."""
    *earlier, last = entries
    (written,) = await write_audit(last, None, last.key, crm_more=earlier, entry_rides=True)
    return written
