"""DunningWorkflow, every branch, on the time-skipping test server over fake activities: weeks of
playbook in seconds, no vendor, no emulator. What each test checks is what the workflow asked of
the activities (names, inputs, order, when) and what it answered."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from domain import temporal as names
from domain.approvals import QUERY, Decision, PendingApproval
from domain.approvals import ProposedAction as Proposed
from domain.decisions import DunningAssessment, FailureClass
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult, DunningStatus
from domain.ids import dunning_workflow_id, idempotency_key
from domain.models import (
    BillingCustomer,
    CasePriority,
    CaseSummary,
    CrmAccount,
    CustomerTier,
    Invoice,
    InvoiceContext,
    InvoicePaid,
    InvoiceStatus,
    Payment,
    PaymentFailed,
)
from domain.playbook import Channel, EndAction, SegmentPlaybook, Step, StepAction
from domain.policy import ActionKind, Mode, Outcome
from tests.fast.fakes import (
    APPROVER,
    Fakes,
    answer,
    counter,
    governance,
    not_found,
    policy,
    started,
)
from tests.pairs import eventually

BILLING = "fakebill"
CREDIT = 5_000
DAY = timedelta(days=1)

#: a short email playbook: a reminder at once, a retry and a reminder on day 3, the end on day 7
EMAIL_PLAYBOOK = SegmentPlaybook(
    channel=Channel.EMAIL,
    steps=[
        Step(day=0, actions=[StepAction.REMIND]),
        Step(day=3, actions=[StepAction.RETRY, StepAction.REMIND]),
    ],
    end_day=7,
    end_action=EndAction.WRITE_OFF,
    max_pause_days=2,
)


class Run:
    """One dunning run's invoice, customer and workflow ID."""

    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:8]
        self.invoice, self.customer = f"INV-{uid}", f"cus-{uid}"
        self.account = f"001{uid}"
        self.wf_id = dunning_workflow_id(BILLING, self.invoice)

    def key(self, step: str) -> str:
        return idempotency_key(self.wf_id, step)

    def context(
        self, status: InvoiceStatus = InvoiceStatus.OPEN, subscription: str | None = "sub-1"
    ) -> InvoiceContext:
        return InvoiceContext(
            invoice=Invoice(
                id=self.invoice,
                customer_id=self.customer,
                subscription_id=subscription,
                status=status,
                total=120_000,
                amount_due=120_000,
                currency="USD",
            ),
            customer=BillingCustomer(id=self.customer, company="Globex", mrr=120_000),
            recent_payments=[
                Payment(
                    id="pay-1",
                    invoice_id=self.invoice,
                    succeeded=False,
                    amount=120_000,
                    currency="USD",
                    decline_code="insufficient_funds",
                )
            ],
        )

    def crm_account(self, tier: CustomerTier = CustomerTier.MID_MARKET) -> CrmAccount:
        return CrmAccount(
            id=self.account,
            name="Globex Corp",
            tier=tier,
            owner_id="005owner",
            billing_customer_id=self.customer,
            billing_platform=BILLING,
        )

    def retry(self) -> Proposed:
        return Proposed(
            kind=ActionKind.RETRY_PAYMENT,
            customer_id=self.customer,
            invoice_id=self.invoice,
            reason="insufficient funds often clear",
        )

    def credit(self) -> Proposed:
        return Proposed(
            kind=ActionKind.APPLY_CREDIT,
            customer_id=self.customer,
            invoice_id=self.invoice,
            amount=CREDIT,
            reason="courtesy credit for a valued account",
        )

    def assessment(self, *actions: Proposed) -> DunningAssessment:
        return DunningAssessment(
            failure_class=FailureClass.INSUFFICIENT_FUNDS,
            priority=CasePriority.HIGH,
            retry_recommended=True,
            reasons=["the bank declined for insufficient funds"],
            proposed_actions=list(actions),
        )

    def failure(self, event_id: str = "evt-1") -> PaymentFailed:
        return PaymentFailed(
            billing=BILLING,
            event_id=event_id,
            invoice_id=self.invoice,
            customer_id=self.customer,
            amount_due=120_000,
            occurred_at=datetime.now(UTC),
        )


def dunning_fakes(
    run: Run,
    *,
    assessment: DunningAssessment | None = None,
    playbook: SegmentPlaybook = EMAIL_PLAYBOOK,
    tier: CustomerTier = CustomerTier.MID_MARKET,
    open_cases: Callable[[int], list[CaseSummary]] = lambda n: [],
    retry_succeeds: bool = False,
    **outcomes: Outcome,
) -> Fakes:
    """Everything a dunning run reads and writes, answering like a cooperative vendor."""
    finds = iter(range(1_000_000))
    fakes = governance(Fakes(), **outcomes)
    return (
        fakes.on("get_invoice_context", run.context())
        .on(
            "find_crm_account",
            lambda _: {"account": run.crm_account(tier), "open_cases": open_cases(next(finds))},
        )
        .on("assess_payment_failure", assessment or run.assessment(run.retry()))
        .on("upsert_crm_case", {"id": "500case", "number": "00001042", "created": True})
        .on("apply_credit", {"id": "cred-1"})
        .on("retry_payment", {"succeeded": retry_succeeds, "decline_code": "insufficient_funds"})
        .on("cancel_subscription", {"id": "sub-1"})
        .on("dunning_playbook", playbook)
        .on(
            "draft_reminder",
            lambda i: {
                "subject": f"Reminder {i['reminder']}",
                "body": f"Please pay {i['invoice_id']}",
            },
        )
        .on("send_email", lambda i: {"sent": True, "message_id": f"<{i['key'][:12]}@revbridge>"})
        .on("upsert_crm_task", counter("task"))
        .on(
            "dunning_signal_churn",
            lambda i: {"workflow_id": f"churn:{BILLING}:{i['customer_id']}", "status": "accepted"},
        )
    )


def dunning(
    client: Client, run: Run, fakes: Fakes, **input: Any
) -> AbstractAsyncContextManager[WorkflowHandle[Any, DunningResult]]:
    """Signal-with-start the run as the webhook service does, on a worker over ``fakes``."""
    return started(
        client,
        fakes,
        WORKFLOW_TYPE,
        DunningInput(billing=BILLING, invoice_id=run.invoice, **input),
        id=run.wf_id,
        start_signal=names.SIGNAL_PAYMENT_FAILED,
        start_signal_args=[run.failure()],
        result_type=DunningResult,
    )


async def status(handle: WorkflowHandle) -> DunningStatus:
    return await handle.query("status", result_type=DunningStatus)


async def pending(handle: WorkflowHandle) -> PendingApproval:
    found = await eventually(
        lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "a pending approval"
    )
    return found[0]


def since_start(fakes: Fakes, name: str) -> list[timedelta]:
    """When each call of ``name`` was scheduled, counted from the playbook's start (moments
    after the first invoice read; the playbook read is a local activity, which carries no
    server schedule time)."""
    t0 = fakes.of("get_invoice_context")[0].at
    return [c.at - t0 for c in fakes.of(name)]


def about(days: float) -> Callable[[timedelta], bool]:
    return lambda d: timedelta(days=days) <= d < timedelta(days=days, hours=1)


# --- before any action -------------------------------------------------------------------------------


async def test_an_invoice_billing_does_not_know_closes_without_writing(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run).on("get_invoice_context", not_found("invoice"))
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
    assert result.outcome == "unknown_invoice"
    # the two reads ran at once (the event names the customer); nothing written, nothing handed
    assert sorted(fakes.names()) == ["find_crm_account", "get_invoice_context"]
    assert fakes.inputs("get_invoice_context") == [{"invoice_id": run.invoice, "failure": None}]


async def test_the_decline_the_event_carries_spares_the_payment_read(client: Client) -> None:
    """Issue 15: the event's declined attempt goes into the first read, which then skips the
    payment attempts; the case quotes it. Without it (above) the read lists them itself."""
    run = Run()
    declined = Payment(
        id="txn_evt",
        invoice_id=run.invoice,
        succeeded=False,
        amount=120_000,
        currency="USD",
        decline_code="insufficient_funds",
        decline_message="Insufficient funds.",
    )
    fakes = dunning_fakes(run)
    async with started(
        client,
        fakes,
        WORKFLOW_TYPE,
        DunningInput(billing=BILLING, invoice_id=run.invoice),
        id=run.wf_id,
        start_signal=names.SIGNAL_PAYMENT_FAILED,
        start_signal_args=[run.failure().model_copy(update={"payment": declined})],
        result_type=DunningResult,
    ) as handle:
        await eventually(lambda: status(handle), lambda s: s.case_id is not None, "the case")
    [read] = fakes.inputs("get_invoice_context")
    assert read == {"invoice_id": run.invoice, "failure": declined.model_dump(mode="json")}


async def test_a_failure_event_for_a_paid_invoice_closes_as_already_paid(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run).on("get_invoice_context", run.context(InvoiceStatus.PAID))
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        desc = await handle.describe()
    assert (result.outcome, result.case_id) == ("already_paid", None)
    assert sorted(fakes.names()) == ["find_crm_account", "get_invoice_context"]
    assert desc.typed_search_attributes.get(names.CUSTOMER_KEY) == run.customer


# --- the case and the proposed actions ---------------------------------------------------------------


async def test_case_and_allowed_actions_are_written_once_with_keys_and_audited_on_both_sides(
    client: Client,
) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(run, assessment=run.assessment(run.retry(), credit))
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        final = await status(handle)

    # the case: one upsert on the run's create-case key, with the context in it
    (case,) = fakes.inputs("upsert_crm_case")
    draft = case["draft"]
    assert draft["key"] == run.key("create-case")
    assert (draft["account_id"], draft["invoice_id"], draft["priority"]) == (
        run.account,
        run.invoice,
        "High",
    )
    assert draft["subject"] == f"Payment failed: invoice {run.invoice} (insufficient_funds)"
    assert "Last attempt pay-1 declined: insufficient_funds" in draft["description"]
    # the credit: once, keyed by the workflow and the action's parameter hash
    (applied,) = fakes.inputs("apply_credit")
    assert applied["idempotency_key"] == run.key(f"act:{credit.action_id}")
    assert (applied["customer_id"], applied["amount"]) == (run.customer, CREDIT)
    # the retry is the playbook's (day 3), not an immediate one
    assert fakes.writes()[:2] == ["upsert_crm_case", "apply_credit"]
    assert [d.days for d in since_start(fakes, "retry_payment")] == [3]
    assert fakes.inputs("retry_payment")[0]["idempotency_key"] == run.key(
        f"act:{run.retry().action_id}:day3"
    )
    # every decision audited in the CRM and as a billing note, with distinct keys; the case's
    # CRM entry went with the case (one request), its billing note with the next entry's
    crm, notes = fakes.crm_entries(), fakes.billing_entries()
    assert [e["action"] for e in crm] == [e["action"] for e in notes]
    assert case["audit"]["action"] == "create_case" and case["audit"]["decision"] == "allow"
    assert fakes.audited()[:2] == [
        ("create_case", "executed"),
        ("apply_credit", "executed (cred-1)"),
    ]
    assert (notes[0]["outcome"], notes[0]["case_id"]) == ("executed (500case)", "500case")
    assert fakes.inputs("write_crm_audit")[0]["entry"]["action"] == "apply_credit"
    keys = [e["key"] for e in crm + notes]
    assert len(set(keys)) == len(keys)
    assert all(n["target_id"] == run.invoice for n in fakes.inputs("add_billing_note"))
    assert final.actions[:2] == ["create_case: allow → executed", "apply_credit: allow → executed"]
    assert (result.outcome, result.case_id) == ("written_off", "500case")
    # the IDs: both sides of every entry but the case's, whose CRM entry went with the case and
    # whose note went alone (a credit may wait days for a person: nothing is left pending)
    assert result.audit_ids == final.audit_ids and len(result.audit_ids) == (len(crm) - 1) * 2 + 1


async def test_the_hot_path_to_the_first_wait_is_six_activities_and_the_rest_local(
    client: Client,
) -> None:
    """Issue 15: to the first durable wait (case, day-0 reminder, audit on both sides) a run
    schedules 6 activity tasks; the policy decisions, the assessment, the playbook read, the
    draft and the handoff to churn are local activities (markers, no task round trip)."""
    run = Run()
    fakes = dunning_fakes(run)
    async with dunning(client, run, fakes) as handle:
        await eventually(
            lambda: status(handle),
            lambda s: s.reminders_sent == 1 and s.stage == "waiting for payment",
            "the wait after day 0",
        )
        history = await handle.fetch_history()
    scheduled: list[str] = []
    markers = 0
    for e in history.events:
        if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            break
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            scheduled.append(e.activity_task_scheduled_event_attributes.activity_type.name)
        markers += e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
    # the two reads at once, the case with its audit entry, the email, its audit on both sides
    # (the case's billing note rides with the email's)
    assert sorted(scheduled[:2]) == ["find_crm_account", "get_invoice_context"]
    assert scheduled[2:] == ["upsert_crm_case", "send_email", "write_crm_audit", "add_billing_note"]
    (note,) = fakes.inputs("add_billing_note")
    assert [e["action"] for e in [*note["more"], note["entry"]]] == ["create_case", "send_email"]
    # local: 2 policy decisions, the assessment, the churn handoff, the playbook, the draft
    # (plus the patch marker)
    assert markers >= 6
    assert len(fakes.inputs("get_invoice_context")) == 1  # day 0 reused the first read
    assert len(fakes.inputs("find_crm_account")) == 1


async def test_a_credit_waits_for_finance_and_is_applied_once_approved(client: Client) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(
        run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    )
    async with dunning(client, run, fakes) as handle:
        waiting = await pending(handle)
        assert waiting.action_id == credit.action_id
        assert (waiting.approver_roles, waiting.eligible_approvers) == (["finance"], [APPROVER])
        assert fakes.inputs("apply_credit") == []  # nothing moves before the approval
        assert (await handle.describe()).typed_search_attributes.get(
            names.APPROVAL_KEY
        ) == "pending"
        # someone without the role is refused (and audited); the finance approver counts
        await answer(handle, credit.action_id, Decision.APPROVE, "eve@example.com")
        await answer(handle, credit.action_id)
        result = await handle.result()
        final = await status(handle)
        approval_state = (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY)

    (applied,) = fakes.inputs("apply_credit")
    assert applied["idempotency_key"] == run.key(f"act:{credit.action_id}")
    # asked again with the approver attached before anything ran
    approved_asks = [i for i in fakes.inputs("decide_policy") if i.get("approved_by")]
    assert [(i["action"], i["approved_by"]) for i in approved_asks] == [("apply_credit", APPROVER)]
    assert f"apply_credit: needs_approval → executed ({APPROVER})" in final.actions
    audited = dict(fakes.audited())
    assert audited["apply_credit"] == "executed (cred-1)"
    assert "approval_refused" in audited
    (entry,) = [
        i["entry"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "apply_credit"
    ]
    assert entry["approver"] == APPROVER and entry["decision"] == "needs_approval"
    assert approval_state == "approved"
    assert result.outcome == "written_off"


async def test_a_rejected_credit_is_never_applied(client: Client) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(
        run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    )
    async with dunning(client, run, fakes) as handle:
        await pending(handle)
        await answer(handle, credit.action_id, Decision.REJECT, APPROVER, note="no")
        result = await handle.result()
        final = await status(handle)
    assert fakes.inputs("apply_credit") == []
    assert f"apply_credit: needs_approval → rejected ({APPROVER})" in final.actions
    assert dict(fakes.audited())["apply_credit"] == "rejected"
    assert result.outcome == "written_off"


async def test_an_unanswered_credit_reminds_the_approvers_then_expires(client: Client) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(
        run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    )
    async with dunning(client, run, fakes) as handle:
        await pending(handle)
        result = await handle.result()  # time skips: 24 h to the reminder, 72 h to expiry
        final = await status(handle)
    assert fakes.inputs("apply_credit") == []
    reminder = fakes.of("upsert_crm_task")[0]
    assert reminder.input["draft"]["key"] == run.key(f"remind:{credit.action_id}")
    assert reminder.input["draft"]["high_priority"] is True
    assert (
        f"revbridge approve {run.wf_id} --action {credit.action_id}"
        in (reminder.input["draft"]["description"])
    )
    t0 = fakes.of("get_invoice_context")[0].at
    assert timedelta(hours=24) <= reminder.at - t0 < timedelta(hours=25)
    assert "apply_credit: needs_approval → expired" in final.actions
    assert dict(fakes.audited())["apply_credit"] == "expired"
    assert result.outcome == "written_off"


# --- the playbook ------------------------------------------------------------------------------------


async def test_the_playbook_reminds_retries_and_recovers_on_day_3(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run, retry_succeeds=True)
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert fakes.inputs("dunning_playbook") == [{"tier": "Mid-Market"}]
    # day 0: one reminder email, keyed per reminder; day 3: the retry collects, no second email
    (email,) = fakes.inputs("send_email")
    assert email["key"] == run.key("remind:1:email") and email["invoice_id"] == run.invoice
    assert fakes.inputs("draft_reminder")[0]["reminders"] == 2
    assert all(map(about(0), since_start(fakes, "send_email")))
    assert all(map(about(3), since_start(fakes, "retry_payment")))
    assert (result.outcome, result.attribution) == ("recovered", "payment retry on day 3")
    assert fakes.audited()[-1] == ("close_dunning", "recovered")
    assert final.reminders_sent == 1


async def test_paid_after_a_reminder_is_attributed_to_it(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run)
    async with dunning(client, run, fakes) as handle:
        await eventually(lambda: status(handle), lambda s: s.reminders_sent == 1, "reminder 1")
        await handle.signal(
            names.SIGNAL_INVOICE_PAID,
            InvoicePaid(
                billing=BILLING,
                event_id="evt-paid",
                invoice_id=run.invoice,
                customer_id=run.customer,
                occurred_at=datetime.now(UTC),
            ),
        )
        result = await handle.result()
    assert (result.outcome, result.attribution) == ("recovered", "paid after reminder 1 (day 0)")
    assert fakes.inputs("retry_payment") == []  # paid before day 3: no retry


async def test_an_open_support_case_pauses_the_schedule_for_at_most_max_pause_days(
    client: Client,
) -> None:
    run = Run()
    outage = CaseSummary(id="500outage", subject="Service down")
    # call 0 (with the context; day 0 reuses it) sees no other case; from day 3 one is open
    fakes = dunning_fakes(run, open_cases=lambda n: [outage] if n >= 1 else [])
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    # looked on day 3 and day 4 (paused a day each), then the 2-day limit: day 3's step on day 5
    assert [round(d / DAY, 1) for d in since_start(fakes, "find_crm_account")[1:]] == [3, 4]
    assert all(map(about(5), since_start(fakes, "retry_payment")))
    assert [d.days for d in since_start(fakes, "send_email")] == [0, 5]
    assert final.paused_by_case == "500outage"
    # the end moves by the pause too: day 7 + 2
    close = [
        c for c in fakes.of("write_crm_audit") if c.input["entry"]["action"] == "close_dunning"
    ]
    assert (close[0].at - fakes.of("get_invoice_context")[0].at).days == 9
    assert result.outcome == "written_off"


async def test_a_strategic_account_gets_tasks_for_its_owner_never_an_email(client: Client) -> None:
    run = Run()
    owner_playbook = SegmentPlaybook(
        channel=Channel.OWNER,
        tone="formal",
        steps=[
            Step(day=0, actions=[StepAction.REMIND]),
            Step(day=5, actions=[StepAction.OWNER_TASK]),
        ],
        end_day=10,
        end_action=EndAction.WRITE_OFF,
    )
    fakes = dunning_fakes(run, playbook=owner_playbook, tier=CustomerTier.STRATEGIC)
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
    assert fakes.inputs("send_email") == []
    tasks = [i["draft"] for i in fakes.inputs("upsert_crm_task")]
    assert [t["key"] for t in tasks] == [run.key("task:remind:1:owner"), run.key("task:owner:5")]
    assert all(t["owner_id"] == "005owner" and t["high_priority"] for t in tasks)
    assert tasks[0]["subject"] == "Reach out to the customer: Reminder 1"
    assert [d.days for d in since_start(fakes, "upsert_crm_task")] == [0, 5]
    # each task asked policy first (create_task), as a write needing no approval of its own
    assert [i["action"] for i in fakes.inputs("decide_policy")].count("create_task") == 2
    assert result.outcome == "written_off"


@pytest.mark.parametrize(
    ("cancel", "outcome", "cancelled"),
    [(Outcome.ALLOW, "cancelled", 1), (Outcome.DENY, "written_off", 0)],
    ids=["cancel-allowed", "cancel-denied"],
)
async def test_the_schedule_ends_in_cancellation_only_when_policy_allows_it(
    client: Client, cancel: Outcome, outcome: str, cancelled: int
) -> None:
    run = Run()
    playbook = EMAIL_PLAYBOOK.model_copy(update={"end_action": EndAction.CANCEL})
    fakes = dunning_fakes(run, playbook=playbook, cancel_subscription=cancel)
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
    calls = fakes.inputs("cancel_subscription")
    assert len(calls) == cancelled
    if calls:
        action = Proposed(
            kind=ActionKind.CANCEL_SUBSCRIPTION,
            customer_id=run.customer,
            invoice_id=run.invoice,
            subject_id="sub-1",
            reason="invoice unpaid after the 7-day dunning schedule",
        )
        assert calls[0]["subscription_id"] == "sub-1"
        assert calls[0]["idempotency_key"] == run.key(f"act:{action.action_id}")
        assert all(map(about(7), since_start(fakes, "cancel_subscription")))
    assert result.outcome == outcome
    assert fakes.audited()[-1] == ("close_dunning", outcome)


async def test_a_second_failure_joins_the_run_and_a_redelivery_is_ignored(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run)
    async with dunning(client, run, fakes) as handle:
        await eventually(lambda: status(handle), lambda s: s.reminders_sent == 1, "reminder 1")
        for event_id in ("evt-2", "evt-2", "evt-1"):  # a new failure, its redelivery, the first
            await handle.signal(names.SIGNAL_PAYMENT_FAILED, run.failure(event_id))
        seen = await eventually(
            lambda: status(handle), lambda s: s.failures_seen == 2, "2 failures"
        )
        result = await handle.result()
    assert seen.failures_seen == 2
    (close,) = [
        i["entry"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "close_dunning"
    ]
    assert "2 failed attempt(s)" in close["summary"]
    # one run: its first read (day 0 follows it by moments), then before day 3 and the end
    assert fakes.inputs("get_invoice_context") == [{"invoice_id": run.invoice, "failure": None}] * 3
    # each failure handed to the churn intervention once: the first with the CRM read
    handed = [r for i in fakes.inputs("dunning_signal_churn") for r in i["risks"]]
    assert [r["signal"]["event_id"] for r in handed] == ["evt-1", "evt-2"]
    assert [r["has_crm"] for r in handed] == [True, False]
    assert handed[0]["account"]["id"] == run.account
    assert result.outcome == "written_off"


async def test_continue_as_new_carries_the_schedule_and_redoes_nothing(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run)
    # a tiny history budget: every wait for the next step hands over to a fresh run
    async with dunning(client, run, fakes, history_limit=30) as handle:
        result = await handle.result()
        final = await status(handle)
        first = client.get_workflow_handle(run.wf_id, run_id=handle.result_run_id)
        first_status = (await first.describe()).status
    assert first_status is WorkflowExecutionStatus.CONTINUED_AS_NEW
    # classified once, the case opened once, the playbook read once (the invoice is read again
    # before each later step, not redone: before day 3 and before the end)
    assert len(fakes.inputs("get_invoice_context")) == 1 + 2
    assert len(fakes.inputs("dunning_signal_churn")) == 1  # no continuation hands it again
    for name in (
        "assess_payment_failure",
        "upsert_crm_case",
        "dunning_playbook",
    ):
        assert len(fakes.inputs(name)) == 1, name
    # the schedule went on where it was: day 0 and day 3 reminders, the day-3 retry, the end
    assert [d.days for d in since_start(fakes, "send_email")] == [0, 3]
    assert [i["key"] for i in fakes.inputs("send_email")] == [
        run.key("remind:1:email"),
        run.key("remind:2:email"),
    ]
    assert final.reminders_sent == 2 and final.case_id == "500case"
    assert result.outcome == "written_off" and result.case_id == "500case"


async def test_a_policy_that_denies_everything_blocks_each_write_and_audits_why(
    client: Client,
) -> None:
    run = Run()
    fakes = dunning_fakes(run, assessment=run.assessment(run.retry(), run.credit()))
    fakes.on("decide_policy", policy(default=Outcome.DENY))
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert fakes.writes() == []
    assert {o for a, o in fakes.audited() if a != "close_dunning"} <= {
        "blocked",
        "reminder 1 of 2 (day 0): blocked",
        "reminder 2 of 2 (day 3): blocked",
    }
    assert final.actions[:2] == ["create_case: deny → blocked", "apply_credit: deny → blocked"]
    assert result.outcome == "written_off" and result.case_id is None


async def test_observe_mode_reads_and_reports_but_writes_nothing_not_even_the_audit(
    client: Client,
) -> None:
    run = Run()
    fakes = dunning_fakes(run, assessment=run.assessment(run.retry(), run.credit()))
    fakes.on("decide_policy", policy(default=Outcome.DENY, mode=Mode.OBSERVE))
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert fakes.writes() == []
    assert fakes.inputs("write_crm_audit") == [] and fakes.inputs("add_billing_note") == []
    assert fakes.inputs("get_invoice_context") and fakes.inputs("dunning_playbook")  # it read
    assert final.actions[:2] == ["create_case: deny → blocked", "apply_credit: deny → blocked"]
    assert result.outcome == "written_off" and result.case_id is None
