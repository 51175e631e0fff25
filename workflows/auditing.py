"""The audit trail every use case writes: one entry per action, to the CRM's agent log and (where
there is a billing record to attach it to) as a note in billing, in parallel.

Call from workflow code only. Keys derive from the workflow ID and the step, so a retried or
replayed write never records twice.
"""

from __future__ import annotations

import asyncio
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


def audit_entry(
    use_case: str,
    action: str,
    *,
    decision: str,
    outcome: str,
    summary: str,
    policy_ids: list[str] | None = None,
    approver: str | None = None,
    account_id: str | None = None,
    case_id: str | None = None,
    parameters: dict[str, Any] | None = None,
    key_suffix: str = "",
    reasoner: str = "rules",
    model: str | None = None,
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> AuditEntry:
    """An entry for this workflow run; ``key_suffix`` tells apart two entries of one action."""
    info = workflow.info()
    return AuditEntry(
        key=idempotency_key(info.workflow_id, f"audit:{action}:{key_suffix}:crm"),
        use_case=use_case,
        action=action,
        parameters_hash=parameters_hash(parameters or {"action": action, "suffix": key_suffix}),
        decision=decision,
        policy_ids=policy_ids or [],
        approver=approver,
        reasoner=reasoner,
        model=model,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        outcome=outcome,
        summary=summary,
        workflow_id=info.workflow_id,
        run_id=info.run_id,
        account_id=account_id,
        case_id=case_id,
        at=workflow.now(),
    )


async def write_audit(
    entry: AuditEntry, billing_note: tuple[NoteTarget, str] | None = None
) -> list[str]:
    """Write ``entry`` to the CRM and, with ``billing_note=(target, id)``, to billing too.
    Returns the IDs of what was written (CRM log first)."""
    writes = [
        workflow.execute_activity_method(
            CrmActivities.write_crm_audit,
            WriteAuditInput(entry=entry),
            summary=f"audit {entry.action} in the CRM",
            **WRITE,
        )
    ]
    if billing_note is not None:
        target, target_id = billing_note
        writes.append(
            workflow.execute_activity_method(
                BillingActivities.add_billing_note,
                AddBillingNoteInput(
                    target=target,
                    target_id=target_id,
                    entry=entry.model_copy(update={"key": idempotency_key(entry.key, "billing")}),
                ),
                summary=f"audit {entry.action} in billing",
                **WRITE,
            )
        )
    results = await asyncio.gather(*writes)
    return [r.id for r in results]
