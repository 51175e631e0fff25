"""Fixtures for churn workflow tests on the time-skipping server: scripted billing/CRM reads
(activities registered under their real names) and recorders for every write; the policy
activities are the real ones over policies/."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.churn import (
    DEFAULT_CHURN_CONFIG,
    ApplyDiscountInput,
    CustomerScore,
    DiscountResult,
    ScoreCustomerInput,
    WriteChurnScoreInput,
    load_config,
)
from activities.drafting import CsmDraftInput
from activities.models import AddBillingNoteInput, UpsertTaskInput, WriteAuditInput, WriteResult
from activities.policy import PolicyActivities
from domain import churn
from domain.churn import ChurnSignals
from domain.drafts import DraftedMessage
from domain.models import CrmAccount, CustomerTier
from tests.conftest import own_time_skipping


@dataclass
class Customer:
    """A scripted customer: each score returns the next signals (the last one repeats)."""

    script: list[ChurnSignals]
    account: CrmAccount | None
    subscription_id: str | None = "sub_1"
    discount: float = 0
    calls: int = 0
    #: the score and level the CRM holds for the account (a write replaces them)
    stored: tuple[int, str] | None = None


@dataclass
class FakeVendors:
    customers: dict[str, Customer] = field(default_factory=dict)
    scores: list[ScoreCustomerInput] = field(default_factory=list)
    written: list[Any] = field(default_factory=list)  # ChurnScoreRecord
    tasks: list[Any] = field(default_factory=list)  # TaskDraft
    discounts: list[ApplyDiscountInput] = field(default_factory=list)
    audits: list[Any] = field(default_factory=list)  # AuditEntry
    notes: list[AddBillingNoteInput] = field(default_factory=list)

    def add(
        self,
        customer_id: str,
        *script: ChurnSignals,
        tier: CustomerTier = CustomerTier.MID_MARKET,
        linked: bool = True,
    ) -> None:
        account = (
            CrmAccount(id=f"acc-{customer_id}", name="Acme Corp", tier=tier) if linked else None
        )
        self.customers[customer_id] = Customer(list(script), account)

    def activities(self) -> list[Any]:
        config = load_config(DEFAULT_CHURN_CONFIG)

        @activity.defn(name="churn_score_customer")
        async def score_customer(input: ScoreCustomerInput) -> CustomerScore:
            self.scores.append(input)
            c = self.customers.get(input.customer_id)
            if c is None:
                raise ApplicationError(
                    "customer not found", type="chargebee.not_found", non_retryable=True
                )
            signals = c.script[min(c.calls, len(c.script) - 1)]
            c.calls += 1
            if input.baseline_mrr is not None:
                signals = signals.model_copy(update={"baseline_mrr": input.baseline_mrr})
            return CustomerScore(
                config=config,
                signals=signals,
                result=churn.score(signals, config),
                account=c.account,
                subscription_id=c.subscription_id if signals.live_subscriptions else None,
                subscription_discount=c.discount,
                stored_score=c.stored[0] if c.stored else None,
                stored_level=c.stored[1] if c.stored else None,
            )

        @activity.defn(name="churn_write_score")
        async def write_score(input: WriteChurnScoreInput) -> None:
            self.written.append(input.record)
            for c in self.customers.values():
                if c.account is not None and c.account.id == input.record.account_id:
                    c.stored = (input.record.score, input.record.level)

        @activity.defn(name="churn_apply_discount")
        async def apply_discount(input: ApplyDiscountInput) -> DiscountResult:
            self.discounts.append(input)
            return DiscountResult(id=f"coupon-{input.idempotency_key[:12]}")

        @activity.defn(name="upsert_crm_task")
        async def upsert_crm_task(input: UpsertTaskInput) -> WriteResult:
            self.tasks.append(input.draft)
            return WriteResult(id=f"task-{len(self.tasks)}")

        @activity.defn(name="write_crm_audit")
        async def write_crm_audit(input: WriteAuditInput) -> WriteResult:
            self.audits.append(input.entry)
            return WriteResult(id=f"log-{len(self.audits)}")

        @activity.defn(name="add_billing_note")
        async def add_billing_note(input: AddBillingNoteInput) -> WriteResult:
            self.notes.append(input)
            return WriteResult(id=f"note-{len(self.notes)}")

        @activity.defn(name="draft_csm_outreach")
        async def draft_csm_outreach(input: CsmDraftInput) -> DraftedMessage:
            # no model: the rules text, as a worker's drafter without one answers
            return DraftedMessage(subject=input.subject, body=input.template)

        policies = PolicyActivities()
        return [
            draft_csm_outreach,
            score_customer,
            write_score,
            apply_discount,
            upsert_crm_task,
            write_crm_audit,
            add_billing_note,
            policies.decide_policy,
            policies.check_approver,
            policies.eligible_approvers,
        ]


@dataclass
class Harness:
    env: WorkflowEnvironment
    task_queue: str
    vendors: FakeVendors


#: each churn module on a time-skipping server of its own (tests/conftest.py own_time_skipping):
#: a run another file leaves open stalls a shared server's clock — test_churn_workflow.py's
#: queries timed out in the full suite (three tests at 180 s) and pass in 4 s alone
time_env = pytest.fixture(scope="module")(own_time_skipping)


@pytest.fixture
async def churn_env(time_env: WorkflowEnvironment) -> AsyncIterator[Harness]:
    from workflows.churn.workflow import ChurnInterventionWorkflow

    vendors = FakeVendors()
    task_queue = f"churn-{uuid.uuid4().hex[:8]}"
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[ChurnInterventionWorkflow],
        activities=vendors.activities(),
        activity_executor=ThreadPoolExecutor(4),
        # a bug in the workflow fails the test at once instead of retrying the task forever
        workflow_failure_exception_types=[Exception],
    ):
        yield Harness(time_env, task_queue, vendors)
