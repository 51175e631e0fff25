"""ChurnInterventionWorkflow and ChurnSweepWorkflow, every branch, on the time-skipping test server
over fake activities: a 45-day follow-up in a second, no vendor, no emulator."""

from __future__ import annotations

import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHandle

from domain import temporal as names
from domain.approvals import Decision
from domain.approvals import ProposedAction as Proposed
from domain.audit import AuditEntry
from domain.churn import (
    SWEEP_WORKFLOW_TYPE,
    WORKFLOW_TYPE,
    ChurnConfig,
    ChurnInput,
    ChurnResult,
    ChurnScore,
    ChurnSignals,
    ChurnStatus,
    Factor,
    Level,
    Offer,
    SweepInput,
    SweepResult,
)
from domain.ids import churn_workflow_id, idempotency_key
from domain.models import CrmAccount, CustomerTier, RiskSignal
from domain.policy import ActionKind, Mode, Outcome
from tests.fast.fakes import (
    APPROVER,
    Fakes,
    answer,
    counter,
    fake_worker,
    governance,
    not_found,
    policy,
    sequence,
    started,
)
from tests.pairs import eventually

BILLING = "fakebill"
FOLLOW_UP = timedelta(days=45)
CONFIG = ChurnConfig(
    weights={f: 10.0 for f in Factor},
    offers={Level.CRITICAL: Offer(percent=20, months=3)},
    follow_up_days=45,
)


class Customer:
    def __init__(self) -> None:
        uid = uuid.uuid4().hex[:8]
        self.id, self.account = f"cus-{uid}", f"001{uid}"
        self.wf_id = churn_workflow_id(BILLING, self.id)

    def scored(
        self,
        score: int,
        *,
        mrr: int = 50_000,
        live: int = 1,
        cancelling: bool = False,
        discount: float = 0,
        linked: bool = True,
    ) -> dict[str, Any]:
        level = next(
            (lv for lv in (Level.CRITICAL, Level.HIGH, Level.MEDIUM) if score >= CONFIG.levels[lv]),
            Level.LOW,
        )
        account = CrmAccount(id=self.account, name="Initech", tier=CustomerTier.MID_MARKET)
        return {
            "config": CONFIG.model_dump(mode="json"),
            "signals": ChurnSignals(
                mrr=mrr,
                baseline_mrr=50_000,
                live_subscriptions=live,
                cancellation_scheduled=cancelling,
                payment_failures_90d=2,
            ).model_dump(mode="json"),
            "result": ChurnScore(
                score=score, level=level, reasons=["2 failed payments in 90 days"]
            ).model_dump(mode="json"),
            "account": account.model_dump(mode="json") if linked else None,
            "subscription_id": "sub-9",
            "subscription_discount": discount,
            "currency": "USD",
        }

    def signal(self, event_id: str = "evt-1") -> RiskSignal:
        return RiskSignal(
            billing=BILLING,
            event_id=event_id,
            customer_id=self.id,
            kind="payment_failed",
            occurred_at=datetime.now(UTC),
        )

    def offer(self) -> Proposed:
        return Proposed(
            kind=ActionKind.OFFER_DISCOUNT,
            customer_id=self.id,
            currency="USD",
            discount_percent=20,
            months=3,
            subject_id="sub-9",
            reason="retention offer: churn risk 80/100 (critical)",
        )


def churn_fakes(*scores: dict[str, Any], **outcomes: Outcome) -> Fakes:
    return (
        governance(Fakes(), **outcomes)
        .on("churn_score_customer", sequence(*scores))
        .on("churn_write_score", None)
        .on("upsert_crm_task", counter("task"))
        .on("churn_apply_discount", {"id": "disc-1"})
    )


def intervention(
    client: Client, customer: Customer, fakes: Fakes, **input: Any
) -> AbstractAsyncContextManager[WorkflowHandle[Any, ChurnResult]]:
    return started(
        client,
        fakes,
        WORKFLOW_TYPE,
        ChurnInput(billing=BILLING, customer_id=customer.id, follow_up=FOLLOW_UP, **input),
        id=customer.wf_id,
        start_signal=names.SIGNAL_RISK,
        start_signal_args=[customer.signal()],
        result_type=ChurnResult,
    )


async def status(handle: WorkflowHandle) -> ChurnStatus:
    return await handle.query("status", result_type=ChurnStatus)


def scope_key(handle: WorkflowHandle, step: str) -> str:
    """Churn keys derive from the workflow ID and the intervention's first run."""
    return idempotency_key(f"{handle.id}/{handle.result_run_id}", step)


async def test_an_unknown_customer_closes_without_writing(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(0)).on("churn_score_customer", not_found("customer"))
    async with intervention(client, c, fakes) as handle:
        result = await handle.result()
    assert result.outcome == "unknown_customer"
    assert fakes.names() == ["churn_score_customer"]


async def test_low_risk_writes_the_score_and_stops(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(20))
    async with intervention(client, c, fakes) as handle:
        result = await handle.result()
    (written,) = fakes.inputs("churn_write_score")
    assert (written["record"]["account_id"], written["record"]["score"]) == (c.account, 20)
    assert written["record"]["level"] == "low"
    assert fakes.writes() == ["churn_write_score"]  # no task, no offer
    assert [i["action"] for i in fakes.inputs("decide_policy")] == ["update_crm_field"]
    assert fakes.audited() == [("write_churn_score", "written")]
    # a CRM field, audited on both sides with one correlation ID (issue 13, harm 6; before the
    # churn-audit-both-sides patch it went to the CRM only, and this list was empty)
    (note,) = fakes.inputs("add_billing_note")
    (crm_entry,) = fakes.inputs("write_crm_audit")
    assert (note["target"], note["target_id"]) == ("customer", c.id)
    assert note["entry"]["action"] == "write_churn_score"
    both = [AuditEntry.model_validate(e["entry"]).correlation_id for e in (note, crm_entry)]
    assert both[0] == both[1]
    assert (result.outcome, result.first_score, result.first_level) == ("low_risk", 20, "low")


async def test_an_account_without_a_crm_link_is_scored_but_nothing_is_written(
    client: Client,
) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(20, linked=False))
    async with intervention(client, c, fakes) as handle:
        result = await handle.result()
    assert fakes.writes() == [] and fakes.audited() == []
    assert result.outcome == "low_risk"


async def test_an_approved_offer_is_applied_once_then_followed_to_retained(client: Client) -> None:
    c = Customer()
    offer = c.offer()
    fakes = churn_fakes(c.scored(80), c.scored(70), offer_discount=Outcome.NEEDS_APPROVAL)
    async with intervention(client, c, fakes) as handle:
        waiting = await eventually(
            lambda: handle.query("pending_approvals", result_type=list), bool, "the offer"
        )
        assert waiting[0]["action_id"] == offer.action_id
        assert fakes.inputs("churn_apply_discount") == []
        await answer(handle, offer.action_id)
        result = await handle.result()
        final = await status(handle)
    # the CSM task, critical: high priority, keyed by the intervention
    (task,) = fakes.inputs("upsert_crm_task")
    assert task["draft"]["key"] == scope_key(handle, "csm-task")
    assert task["draft"]["high_priority"] is True
    assert task["draft"]["subject"] == "Churn risk 80/100 (critical): reach out"
    (applied,) = fakes.inputs("churn_apply_discount")
    assert (applied["subscription_id"], applied["percent"], applied["months"]) == ("sub-9", 20, 3)
    assert applied["idempotency_key"] == scope_key(handle, f"act:{offer.action_id}")
    # the follow-up: rescored at the end (45 days later), the outcome written and audited
    scores = fakes.of("churn_score_customer")
    assert len(scores) == 2 and scores[1].at - scores[0].at >= FOLLOW_UP
    assert [i["record"]["score"] for i in fakes.inputs("churn_write_score")] == [80, 70]
    assert (
        "follow-up closed: retained" in fakes.inputs("churn_write_score")[1]["record"]["narrative"]
    )
    assert fakes.audited()[-1] == ("churn_outcome", "retained")
    # every entry on both sides: the customer's billing notes hold what the CRM log holds
    notes = [i["entry"]["action"] for i in fakes.inputs("add_billing_note")]
    assert notes == [i["entry"]["action"] for i in fakes.inputs("write_crm_audit")]
    assert {"write_churn_score", "create_task", "offer_discount", "churn_outcome"} <= set(notes)
    assert f"offer_discount: needs_approval → executed ({APPROVER})" in final.actions
    assert (result.outcome, result.offer, result.first_score, result.last_score) == (
        "retained",
        "executed",
        80,
        70,
    )


async def test_a_rejected_offer_is_never_applied(client: Client) -> None:
    c = Customer()
    offer = c.offer()
    fakes = churn_fakes(c.scored(80), c.scored(90, live=0), offer_discount=Outcome.NEEDS_APPROVAL)
    async with intervention(client, c, fakes) as handle:
        await eventually(
            lambda: handle.query("pending_approvals", result_type=list), bool, "the offer"
        )
        await answer(handle, offer.action_id, Decision.REJECT)
        result = await handle.result()
    assert fakes.inputs("churn_apply_discount") == []
    assert ("offer_discount", "rejected") in fakes.audited()
    assert (result.outcome, result.offer) == ("churned", "rejected")


async def test_no_offer_below_the_threshold_or_on_a_running_discount(client: Client) -> None:
    for first in (Customer().scored(55), Customer().scored(80, discount=10)):
        c = Customer()
        fakes = churn_fakes(first, c.scored(40))
        async with intervention(client, c, fakes) as handle:
            result = await handle.result()
        assert fakes.writes() == ["churn_write_score", "upsert_crm_task", "churn_write_score"]
        assert "offer_discount" not in [i["action"] for i in fakes.inputs("decide_policy")]
        assert result.offer is None


@pytest.mark.parametrize(
    ("last", "outcome"),
    [
        ({"mrr": 50_000}, "retained"),
        ({"mrr": 30_000}, "downgraded"),
        ({"live": 0}, "churned"),
        ({"cancelling": True}, "churned"),
    ],
    ids=["retained", "downgraded", "churned", "set-to-cancel"],
)
async def test_the_follow_up_records_what_became_of_the_account(
    client: Client, last: dict[str, Any], outcome: str
) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(55), c.scored(50, **last))
    async with intervention(client, c, fakes) as handle:
        result = await handle.result()
    assert result.outcome == outcome
    (entry,) = [
        i["entry"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "churn_outcome"
    ]
    assert entry["outcome"] == outcome and "First score 55/100, last 50/100" in entry["summary"]


async def test_a_new_risk_signal_rescores_once_and_a_redelivery_is_ignored(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(55), c.scored(65), c.scored(60))
    async with intervention(client, c, fakes) as handle:
        await eventually(
            lambda: status(handle), lambda s: s.stage == "following the account", "following"
        )
        for event_id in ("evt-2", "evt-2", "evt-1"):
            await handle.signal(names.SIGNAL_RISK, c.signal(event_id))
        await eventually(lambda: status(handle), lambda s: s.scores == 2, "the rescore")
        result = await handle.result()
        final = await status(handle)
    assert len(fakes.inputs("churn_score_customer")) == 3  # first, the signal, the end
    assert [i["record"]["score"] for i in fakes.inputs("churn_write_score")] == [55, 65, 60]
    summaries = [
        i["entry"]["summary"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "write_churn_score"
    ]
    assert "rescored on a signal" in summaries[1]
    assert final.signals_seen == 2  # the start signal and evt-2
    assert (result.first_score, result.last_score) == (55, 60)


async def test_continue_as_new_keeps_following_with_nothing_redone(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(55), c.scored(65), c.scored(50))
    async with intervention(client, c, fakes, history_limit=20) as handle:
        await eventually(
            lambda: status(handle), lambda s: s.stage == "following the account", "following"
        )
        await handle.signal(names.SIGNAL_RISK, c.signal("evt-2"))
        result = await handle.result()
        first = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert len(fakes.inputs("upsert_crm_task")) == 1  # the task was not opened again
    # keys stay those of the first run (the intervention), across runs
    assert fakes.inputs("upsert_crm_task")[0]["draft"]["key"] == scope_key(handle, "csm-task")
    assert (result.outcome, result.first_score, result.last_score) == ("retained", 55, 50)


async def test_a_policy_that_denies_everything_blocks_each_write_and_audits_why(
    client: Client,
) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(80), c.scored(80))
    fakes.on("decide_policy", policy(default=Outcome.DENY))
    async with intervention(client, c, fakes) as handle:
        result = await handle.result()
    assert fakes.writes() == []
    assert {o for _, o in fakes.audited()} <= {"blocked", "retained"}
    assert ("offer_discount", "blocked") in fakes.audited()
    assert result.offer == "blocked"


async def test_observe_mode_scores_but_writes_nothing_not_even_the_audit(client: Client) -> None:
    c = Customer()
    fakes = churn_fakes(c.scored(80), c.scored(80))
    fakes.on("decide_policy", policy(default=Outcome.DENY, mode=Mode.OBSERVE))
    async with intervention(client, c, fakes) as handle:
        result = await handle.result()
    assert fakes.writes() == []
    assert fakes.inputs("write_crm_audit") == [] and fakes.inputs("add_billing_note") == []
    assert len(fakes.inputs("churn_score_customer")) == 2  # scored at the start and the end
    assert (result.offer, result.first_score) == ("blocked", 80)


# --- the nightly sweep ---------------------------------------------------------------------------


async def test_the_sweep_pages_through_the_book_and_continues_as_new(client: Client) -> None:
    pages = [
        {"customers": 100, "signalled": 7, "written": 93, "next_cursor": "c1"},
        {"customers": 100, "signalled": 3, "written": 97, "next_cursor": "c2"},
        {"customers": 40, "signalled": 1, "written": 39, "next_cursor": None},
    ]
    fakes = governance(Fakes()).on("churn_sweep_page", sequence(*pages))
    async with fake_worker(client, fakes) as task_queue:
        handle = await client.start_workflow(
            SWEEP_WORKFLOW_TYPE,
            SweepInput(billing=BILLING, page_size=100, pages_per_run=2, follow_up=FOLLOW_UP),
            id=f"churn-sweep-{uuid.uuid4().hex[:8]}",
            task_queue=task_queue,
            result_type=SweepResult,
        )
        result = await handle.result()
        first = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        assert (await first.describe()).status is WorkflowExecutionStatus.CONTINUED_AS_NEW
    calls = fakes.inputs("churn_sweep_page")
    assert [i["cursor"] for i in calls] == [None, "c1", "c2"]
    assert {i["limit"] for i in calls} == {100}
    # one sweep ID across runs, the first run's, so its writes and audit stay under one name
    assert len({i["sweep_id"] for i in calls}) == 1
    assert (result.customers, result.pages, result.runs) == (240, 3, 2)
    assert result.sweep_id == calls[0]["sweep_id"]
