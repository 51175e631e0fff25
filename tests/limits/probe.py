"""A small workflow that drives the worker's real vendor activities (billing notes, CRM audit
entries) with the production activity options, so the limits tests exercise routing, pacing,
budgets, retries and read-backs exactly as the use-case workflows meet them."""

from __future__ import annotations

import asyncio
from datetime import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.models import AddBillingNoteInput, WriteAuditInput, WriteResult
    from domain.audit import AuditEntry
    from domain.models import Frozen, NoteTarget
    from workflows.options import WRITE

PROBE_WORKFLOW = "LimitsProbeWorkflow"


class ProbeInput(Frozen):
    #: "note" (billing note on a customer) or "audit" (CRM audit entry)
    kind: str
    key: str
    count: int = 1
    customer_id: str = ""


class ProbeResult(Frozen):
    ids: list[str]
    started: datetime
    finished: datetime


def probe_entry(key: str, workflow_id: str, run_id: str, at: datetime) -> AuditEntry:
    return AuditEntry(
        key=key,
        use_case="limits_probe",
        action="probe",
        parameters_hash="0" * 32,
        decision="allow",
        outcome="executed",
        summary=f"probe {key}",
        workflow_id=workflow_id,
        run_id=run_id,
        at=at,
    )


@workflow.defn(name=PROBE_WORKFLOW)
class LimitsProbeWorkflow:
    @workflow.run
    async def run(self, input: ProbeInput) -> ProbeResult:
        started = workflow.now()
        info = workflow.info()

        async def one(i: int) -> str:
            entry = probe_entry(f"{input.key}-{i}", info.workflow_id, info.run_id, started)
            if input.kind == "note":
                result = await workflow.execute_activity(
                    "add_billing_note",
                    AddBillingNoteInput(
                        target=NoteTarget.CUSTOMER, target_id=input.customer_id, entry=entry
                    ),
                    result_type=WriteResult,
                    **WRITE,
                )
            else:
                result = await workflow.execute_activity(
                    "write_crm_audit",
                    WriteAuditInput(entry=entry),
                    result_type=WriteResult,
                    **WRITE,
                )
            return result.id

        ids = await asyncio.gather(*(one(i) for i in range(input.count)))
        return ProbeResult(ids=list(ids), started=started, finished=workflow.now())
