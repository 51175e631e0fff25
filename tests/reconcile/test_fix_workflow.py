"""One money or contract fix waiting for a person (ReconciliationFixWorkflow), on the
time-skipping server with recorded fake writes and the real policies: finance approves and the
exception says so; RevOps rejects and it says Rejected; nobody answers, the request expires
after its days and the exception goes back to Open (the next daily run asks again) — with a
reminder task for the approvers at the SLA. Every decision is audited on both sides."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.models import AddBillingNoteInput, UpsertTaskInput, WriteAuditInput, WriteResult
from activities.policy import PolicyActivities
from activities.reconcile import UpsertExceptionsInput, WriteSummary
from domain import reconcile as rx
from domain.approvals import QUERY, Decision, PendingApproval
from tests.approvals import send_approval
from tests.pairs import eventually

DAY = date(2026, 12, 1)


@dataclass
class Recorded:
    exceptions: list[rx.ExceptionRecord] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)
    audits: list[Any] = field(default_factory=list)
    notes: list[Any] = field(default_factory=list)

    def activities(self) -> list[Any]:
        @activity.defn(name="reconcile_upsert_exceptions")
        async def upsert(input: UpsertExceptionsInput) -> WriteSummary:
            self.exceptions.extend(input.records)
            return WriteSummary(written=len(input.records))

        @activity.defn(name="upsert_crm_task")
        async def task(input: UpsertTaskInput) -> WriteResult:
            self.tasks.append(input.draft)
            return WriteResult(id=f"task-{len(self.tasks)}")

        @activity.defn(name="write_crm_audit")
        async def audit(input: WriteAuditInput) -> WriteResult:
            self.audits.append(input.entry)
            return WriteResult(id=f"log-{len(self.audits)}")

        @activity.defn(name="add_billing_note")
        async def note(input: AddBillingNoteInput) -> WriteResult:
            self.notes.append(input)
            return WriteResult(id=f"note-{len(self.notes)}")

        policies = PolicyActivities()
        return [
            upsert, task, audit, note,
            policies.decide_policy, policies.check_approver, policies.eligible_approvers,
        ]  # fmt: skip


@dataclass
class Fixes:
    env: WorkflowEnvironment
    task_queue: str
    recorded: Recorded


@pytest.fixture
async def fixes(time_env: WorkflowEnvironment) -> AsyncIterator[Fixes]:
    from workflows.reconciliation.fix import ReconciliationFixWorkflow

    recorded = Recorded()
    tq = f"recon-fix-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_env.client,
        task_queue=tq,
        workflows=[ReconciliationFixWorkflow],
        activities=recorded.activities(),
        activity_executor=ThreadPoolExecutor(4),
        workflow_failure_exception_types=[Exception],
    ):
        yield Fixes(time_env, tq, recorded)


def record(kind: rx.Kind, role: str, **evidence: str) -> rx.ExceptionRecord:
    return rx.ExceptionRecord(
        id=f"rx-{uuid.uuid4().hex[:16]}",
        kind=kind,
        severity=rx.Severity.HIGH,
        status=rx.ExceptionStatus.WAITING,
        account_id="001000000000001AAA",
        customer_id="cus_1",
        records=["billing:invoice:in_1"],
        evidence=evidence,
        fix="refund or credit the excess",
        approver_role=role,
        first_seen=DAY,
        last_seen=DAY,
    )


async def start(f: Fixes, r: rx.ExceptionRecord, **kw: int) -> Any:
    return await f.env.client.start_workflow(
        rx.FIX_WORKFLOW_TYPE,
        rx.FixInput(record=r, **kw),
        id=rx.fix_workflow_id("salesforce", r.id),
        task_queue=f.task_queue,
        result_type=rx.FixResult,
    )


async def answer(client: Any, handle: Any, decision: Decision, who: str) -> PendingApproval:
    pending = await eventually(
        lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "pending"
    )
    await send_approval(client, handle.id, pending[0].action_id, who, decision)
    return pending[0]


async def test_finance_approves_a_refund_review(fixes: Fixes) -> None:
    r = record(rx.Kind.OVERPAYMENT, "finance", total="70000", applied="140000")
    handle = await start(fixes, r)
    pending = await answer(fixes.env.client, handle, Decision.APPROVE, "alice@example.com")
    assert pending.action.kind.value == "refund" and pending.action.amount == 70_000
    result = await handle.result()
    assert result.status == "executed" and result.approver == "alice@example.com"
    [written] = [e for e in fixes.recorded.exceptions if e.id == r.id]
    assert written.status is rx.ExceptionStatus.APPROVED
    assert "alice@example.com" in written.resolution
    assert any(a.action == "refund" for a in fixes.recorded.audits)
    assert fixes.recorded.notes, "the decision is noted in billing too"


async def test_revops_rejects_a_subscription_change(fixes: Fixes) -> None:
    r = record(rx.Kind.SUBSCRIPTION_MISMATCH, "revops", product="RB-SEAT")
    handle = await start(fixes, r)
    pending = await answer(fixes.env.client, handle, Decision.REJECT, "bob@example.com")
    assert pending.action.kind.value == "change_plan" and "revops" in pending.approver_roles
    assert (await handle.result()).status == "rejected"
    [written] = [e for e in fixes.recorded.exceptions if e.id == r.id]
    assert written.status is rx.ExceptionStatus.REJECTED


async def test_an_unanswered_request_is_reminded_then_expires_back_to_open(fixes: Fixes) -> None:
    r = record(rx.Kind.UNAPPLIED_PAYMENT, "finance", amount="75000", unapplied="5000")
    handle = await start(fixes, r, remind_after_h=24, expire_after_h=72)
    result = await handle.result()  # the time-skipping server runs the three days out
    assert result.status == "expired"
    assert fixes.recorded.tasks and "Approval waiting" in fixes.recorded.tasks[0].subject
    [written] = [e for e in fixes.recorded.exceptions if e.id == r.id]
    assert written.status is rx.ExceptionStatus.OPEN and "expired" in written.resolution
