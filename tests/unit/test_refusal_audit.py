"""A refused approval can never hang a run: the ``approval`` signal handler audits the refusal
itself and contains a failure of that audit (before, a background task audited it, and an
exception there — an approval before the context was loaded — left the run open forever).

Fast tests: the real DunningWorkflow on the time-skipping server, activities faked by name."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.models import (
    AddBillingNoteInput,
    FindAccountInput,
    FindAccountResult,
    GetInvoiceContextInput,
    WriteAuditInput,
)
from domain.approvals import ApprovalSignal, Decision
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult
from domain.models import InvoiceContext, PaymentFailed
from domain.policy import Mode, Outcome, PolicyDecision, PolicyRequest
from workflows.dunning.workflow import DunningWorkflow


class Fakes:
    def __init__(self, audit_gives_up: bool) -> None:
        self.audit_gives_up = audit_gives_up
        self.crm_audits: list[WriteAuditInput] = []
        self.notes: list[AddBillingNoteInput] = []

    def activities(self) -> list[object]:
        @activity.defn(name="get_invoice_context")
        async def get_invoice_context(input: GetInvoiceContextInput) -> InvoiceContext:
            raise ApplicationError(
                "no such invoice", type="chargebee.not_found", non_retryable=True
            )

        # the hot path reads the CRM account beside the invoice (dunning-hot-path)
        @activity.defn(name="find_crm_account")
        async def find_crm_account(input: FindAccountInput) -> FindAccountResult:
            return FindAccountResult(account=None)

        @activity.defn(name="decide_policy")
        async def decide_policy(req: PolicyRequest) -> PolicyDecision:
            return PolicyDecision(outcome=Outcome.ALLOW, policy_ids=["p"], mode=Mode.AUTO)

        @activity.defn(name="write_crm_audit")
        async def write_crm_audit(input: WriteAuditInput) -> dict:
            if self.audit_gives_up:
                raise ApplicationError("CRM down for good", type="crm.gone", non_retryable=True)
            self.crm_audits.append(input)
            return {"id": f"log-{len(self.crm_audits)}"}

        @activity.defn(name="add_billing_note")
        async def add_billing_note(input: AddBillingNoteInput) -> dict:
            self.notes.append(input)
            return {"id": f"note-{len(self.notes)}"}

        return [
            get_invoice_context,
            find_crm_account,
            decide_policy,
            write_crm_audit,
            add_billing_note,
        ]


@pytest.mark.parametrize("audit_gives_up", [False, True], ids=["audited", "audit-gives-up"])
async def test_an_approval_before_the_context_is_refused_audited_and_never_hangs(
    time_env, audit_gives_up: bool
) -> None:  # noqa: ANN001
    client: Client = time_env.client
    fakes = Fakes(audit_gives_up)
    queue = f"refusal-{uuid.uuid4().hex[:8]}"
    invoice = f"inv_{uuid.uuid4().hex[:8]}"
    async with Worker(
        client, task_queue=queue, workflows=[DunningWorkflow], activities=fakes.activities()
    ):
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            DunningInput(billing="chargebee", invoice_id=invoice),
            id=f"dunning:chargebee:{invoice}",
            task_queue=queue,
            result_type=DunningResult,
        )
        # nothing is pending yet, and no context is loaded: an approval now must be refused
        await handle.signal(
            "approval",
            ApprovalSignal(
                action_id="act-nothing", decision=Decision.APPROVE, approver="alice@example.com"
            ),
        )
        await handle.signal(
            "payment_failed",
            PaymentFailed(
                billing="chargebee",
                event_id="ev_1",
                invoice_id=invoice,
                customer_id="cus_1",
                amount_due=100,
                occurred_at=datetime.now(UTC),
            ),
        )
        result = await handle.result()
    assert result.outcome == "unknown_invoice"
    if audit_gives_up:
        assert fakes.crm_audits == []
    else:
        [entry] = [a.entry for a in fakes.crm_audits]
        assert entry.action == "approval_refused" and entry.decision == "deny"
        assert "no pending action act-nothing" in entry.summary
        [note] = fakes.notes
        assert note.target_id == invoice  # dunning notes refusals on the invoice too
