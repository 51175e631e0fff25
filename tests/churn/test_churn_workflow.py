"""ChurnInterventionWorkflow on the time-skipping server: each real-time trigger, the thresholds,
the retention offer approved and rejected, rescoring during the follow-up (deduplicated), the
outcome after 45 days, and continue-as-new. Billing and CRM reads are scripted; the policy engine
is the real one over policies/ (churn_intervention runs in assist mode: offers need RevOps)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError

from domain import temporal as names
from domain.approvals import QUERY, SIGNAL, ApprovalSignal, Decision, PendingApproval
from domain.churn import WORKFLOW_TYPE, ChurnInput, ChurnResult, ChurnSignals, ChurnStatus
from domain.ids import churn_workflow_id
from domain.models import CustomerTier, RiskSignal
from tests.churn.conftest import Harness

HISTORIES = Path(__file__).parent.parent / "histories"
T = TypeVar("T")

#: healthy: long tenure, nothing wrong (only the monthly renewal adds a little)
LOW = ChurnSignals(tenure_days=900, mrr=40_000, baseline_mrr=40_000, live_subscriptions=1)
#: 20 + 15 + 8 + 7 = exactly the task threshold (50), below the offer threshold (60)
AT_TASK = ChurnSignals(
    payment_failures_90d=3,
    unrecovered_failures=2,
    open_cases=3,
    oldest_case_days=30,
    tenure_days=900,
    mrr=40_000,
    baseline_mrr=40_000,
    live_subscriptions=1,
)
#: the same with a younger oldest case: 48.8 → 49, one point below the task threshold
BELOW_TASK = AT_TASK.model_copy(update={"oldest_case_days": 25})
#: 30 + 20 + 7.5 + 7.5 = 65: high, a 15 % offer for 3 months
HIGH = ChurnSignals(
    cancellation_scheduled=True,
    payment_failures_90d=3,
    unrecovered_failures=1,
    downgrades_90d=1,
    tenure_days=900,
    mrr=40_000,
    baseline_mrr=40_000,
    live_subscriptions=1,
)
RECOVERED = LOW
DOWNGRADED = LOW.model_copy(update={"mrr": 30_000, "downgrades_90d": 1})
CHURNED = LOW.model_copy(update={"mrr": 0, "live_subscriptions": 0})


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], what: str) -> T:
    deadline = time.monotonic() + 20
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = await probe()
            if ok(last):  # type: ignore[arg-type]
                return last  # type: ignore[return-value]
        except RPCError as exc:
            last = exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} never happened; last seen: {last!r}"[:500])


def signal(customer_id: str, kind: str, event_id: str | None = None) -> RiskSignal:
    return RiskSignal(
        billing="chargebee",
        event_id=event_id or f"ev_{uuid.uuid4().hex[:8]}",
        customer_id=customer_id,
        kind=kind,
        occurred_at=datetime.now(UTC),
    )


async def start(h: Harness, customer_id: str, kind: str = "payment_failed", **kw) -> WorkflowHandle:
    """Signal-with-start, as the webhook router does."""
    return await h.env.client.start_workflow(
        WORKFLOW_TYPE,
        ChurnInput(billing="chargebee", customer_id=customer_id, **kw),
        id=churn_workflow_id("chargebee", customer_id),
        task_queue=h.task_queue,
        start_signal=names.SIGNAL_RISK,
        start_signal_args=[signal(customer_id, kind, f"ev_first_{customer_id}")],
        result_type=ChurnResult,
    )


async def status(handle: WorkflowHandle, ok: Callable[[ChurnStatus], bool]) -> ChurnStatus:
    return await eventually(
        lambda: handle.query("status", result_type=ChurnStatus), ok, "churn status"
    )


async def pending(handle: WorkflowHandle) -> PendingApproval:
    found = await eventually(
        lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "pending approval"
    )
    return found[0]


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """`REVBRIDGE_WRITE_HISTORIES=1` commits this run's history for the replay gate."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"{WORKFLOW_TYPE}__{name}.json").write_text(history.to_json())


def cid() -> str:
    return f"cus_{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("kind", ["payment_failed", "downgrade", "usage_drop"])
async def test_each_real_time_trigger_scores_and_writes_to_the_crm(
    churn_env: Harness, kind: str
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, LOW)
    handle = await start(churn_env, customer, kind)
    result = await handle.result()
    assert result.outcome == "low_risk"
    [record] = churn_env.vendors.written
    assert record.account_id == f"acc-{customer}"
    assert record.score == result.first_score < 25 and record.level == "low"
    assert record.narrative.startswith(f"Churn risk {record.score}/100 (low)")
    assert churn_env.vendors.tasks == [] and churn_env.vendors.discounts == []
    [audit] = churn_env.vendors.audits
    assert audit.action == "write_churn_score" and audit.use_case == "churn_intervention"
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.CUSTOMER_KEY) == customer
    assert desc.typed_search_attributes.get(names.USE_CASE_KEY) == "churn_intervention"
    if kind == "payment_failed":
        await keep_history(handle, "low_risk")


async def test_one_point_below_the_task_threshold_opens_nothing(churn_env: Harness) -> None:
    customer = cid()
    churn_env.vendors.add(customer, BELOW_TASK)
    result = await (await start(churn_env, customer)).result()
    assert (result.outcome, result.first_score, result.first_level) == ("low_risk", 49, "medium")
    assert churn_env.vendors.tasks == []


async def test_at_the_task_threshold_a_csm_task_no_offer_then_retained(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, AT_TASK, RECOVERED)
    handle = await start(churn_env, customer, follow_up=timedelta(days=30))
    s = await status(handle, lambda s: s.stage == "following the account")
    assert (s.score, s.level, s.task_id) == (50, "high", "task-1")
    assert s.follow_up_until is not None
    [task] = churn_env.vendors.tasks
    assert task.account_id == f"acc-{customer}"
    assert "Churn risk 50/100 (high)" in task.subject
    assert "help them update their payment method" in task.description
    assert "retention offer" not in task.description
    desc = await handle.describe()
    assert desc.typed_search_attributes.get(names.AMOUNT_AT_RISK_KEY) == pytest.approx(400.0)

    result = await handle.result()  # 30 days pass
    assert (result.outcome, result.first_score, result.last_score) == ("retained", 50, 0)
    assert result.offer is None
    assert [a.action for a in churn_env.vendors.audits] == [
        "write_churn_score",
        "create_task",
        "write_churn_score",
        "churn_outcome",
    ]
    assert "retained" in churn_env.vendors.written[-1].narrative
    # every entry also on the billing customer, one correlation ID each (churn-audit-both-sides)
    assert [n.entry.correlation_id for n in churn_env.vendors.notes] == [
        a.correlation_id for a in churn_env.vendors.audits
    ]
    assert churn_env.vendors.discounts == []


async def test_offer_approved_by_revops_is_applied_then_the_outcome_is_recorded(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, HIGH, DOWNGRADED, tier=CustomerTier.ENTERPRISE)
    handle = await start(churn_env, customer)
    p = await pending(handle)
    assert p.action.kind.value == "offer_discount"
    assert (p.action.discount_percent, p.action.months, p.action.subject_id) == (15, 3, "sub_1")
    assert p.approver_roles == ["revops"] and p.eligible_approvers == ["bob@example.com"]
    [task] = churn_env.vendors.tasks  # the CSM hears of it before RevOps decides
    assert "15% off for 3 months" in task.description
    assert (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY) == "pending"

    await handle.signal(
        SIGNAL,
        ApprovalSignal(
            action_id=p.action_id, decision=Decision.APPROVE, approver="bob@example.com"
        ),
    )
    s = await status(handle, lambda s: s.stage == "following the account")
    assert s.actions == ["offer_discount: needs_approval → executed (bob@example.com)"]
    [discount] = churn_env.vendors.discounts
    assert (discount.subscription_id, discount.percent, discount.months) == ("sub_1", 15, 3)

    result = await handle.result()  # 45 days (policies/churn.yaml) pass
    assert result.outcome == "downgraded" and result.offer == "executed"
    outcome = churn_env.vendors.audits[-1]
    assert outcome.action == "churn_outcome" and "First score 65/100" in outcome.summary
    offer_audit = next(a for a in churn_env.vendors.audits if a.action == "offer_discount")
    assert offer_audit.approver == "bob@example.com" and offer_audit.policy_ids == [
        "discount_needs_revops"
    ]
    # the offer, the outcome and every other entry, in billing too (churn-audit-both-sides)
    assert [n.entry.action for n in churn_env.vendors.notes] == [
        a.action for a in churn_env.vendors.audits
    ]
    assert (await handle.describe()).typed_search_attributes.get(names.APPROVAL_KEY) == "approved"
    await keep_history(handle, "offer_approved")


async def test_offer_rejected_nothing_applied_wrong_approver_audited_customer_churns(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, HIGH, CHURNED)
    handle = await start(churn_env, customer)
    p = await pending(handle)
    # finance may not approve a retention offer: refused, audited, still pending
    await handle.signal(
        SIGNAL,
        ApprovalSignal(
            action_id=p.action_id, decision=Decision.APPROVE, approver="alice@example.com"
        ),
    )
    await eventually(
        lambda: asyncio.sleep(0, [a.action for a in churn_env.vendors.audits]),
        lambda actions: "approval_refused" in actions,
        "the refusal audited",
    )
    assert await handle.query(QUERY, result_type=list[PendingApproval])
    await handle.signal(
        SIGNAL,
        ApprovalSignal(
            action_id=p.action_id,
            decision=Decision.REJECT,
            approver="bob@example.com",
            note="not this quarter",
        ),
    )
    result = await handle.result()
    assert (result.outcome, result.offer) == ("churned", "rejected")
    assert churn_env.vendors.discounts == []
    rejected = next(a for a in churn_env.vendors.audits if a.action == "offer_discount")
    assert rejected.outcome == "rejected" and "not this quarter" in rejected.summary
    await keep_history(handle, "offer_rejected_churned")


async def test_risk_signals_during_the_follow_up_rescore_once_per_event(
    churn_env: Harness,
) -> None:
    customer = cid()
    worse = AT_TASK.model_copy(update={"downgrades_90d": 2})  # +15
    churn_env.vendors.add(customer, AT_TASK, worse, RECOVERED)
    handle = await start(churn_env, customer)
    await status(handle, lambda s: s.stage == "following the account")
    # the first event again (a redelivery) is ignored; a new downgrade rescores, three times
    # delivered
    await handle.signal(
        names.SIGNAL_RISK, signal(customer, "payment_failed", f"ev_first_{customer}")
    )
    for _ in range(3):
        await handle.signal(names.SIGNAL_RISK, signal(customer, "downgrade", "ev_downgrade_2"))
    s = await status(handle, lambda s: s.scores == 2 and s.stage == "following the account")
    assert (s.score, s.level, s.signals_seen) == (65, "high", 2)
    assert [r.score for r in churn_env.vendors.written] == [50, 65]
    assert len(churn_env.vendors.tasks) == 1  # no second task, no offer on a rescore
    result = await handle.result()
    assert result.outcome == "retained" and len(churn_env.vendors.scores) == 3
    assert all(s.baseline_mrr == 40_000 for s in churn_env.vendors.scores[1:])


async def test_a_long_follow_up_continues_as_new_and_keeps_its_state(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, AT_TASK, AT_TASK, RECOVERED)
    handle = await start(churn_env, customer, history_limit=60)
    await status(handle, lambda s: s.stage == "following the account")
    first_run = (await handle.describe()).run_id
    for i in range(40):
        await handle.signal(names.SIGNAL_RISK, signal(customer, "usage_drop", f"ev_u{i}"))
        if (await handle.describe()).run_id != first_run:
            break
    latest = churn_env.env.client.get_workflow_handle(handle.id, result_type=ChurnResult)
    await eventually(latest.describe, lambda d: d.run_id != first_run, "continue-as-new")
    s = await status(latest, lambda s: s.stage == "following the account")
    assert s.task_id == "task-1" and s.first_score == 50  # carried, not redone
    # the test server does not skip time for a result() that follows a continue-as-new chain
    await churn_env.env.sleep(timedelta(days=46))
    result = await latest.result()
    assert result.outcome == "retained"
    assert len(churn_env.vendors.tasks) == 1
    keys = [a.key for a in churn_env.vendors.audits]
    assert len(keys) == len(set(keys))  # no audit key reused across the runs


async def test_a_signal_for_a_customer_billing_does_not_know_writes_nothing(
    churn_env: Harness,
) -> None:
    result = await (await start(churn_env, cid())).result()
    assert result.outcome == "unknown_customer"
    assert churn_env.vendors.written == [] and churn_env.vendors.audits == []


async def test_a_score_the_crm_already_holds_is_not_written_again(churn_env: Harness) -> None:
    """The sweep's rule (``domain.churn.moved``): within the threshold of the CRM's stored
    score at the same level, nothing is written (score or audit); a level change is."""
    from activities.churn import DEFAULT_CHURN_CONFIG, load_config
    from domain import churn

    config = load_config(DEFAULT_CHURN_CONFIG)
    low = churn.score(LOW, config)
    same, moved = cid(), cid()
    churn_env.vendors.add(same, LOW)
    churn_env.vendors.customers[same].stored = (low.score + 4, "low")  # threshold 5: unchanged
    churn_env.vendors.add(moved, LOW)
    churn_env.vendors.customers[moved].stored = (low.score, "medium")  # a level change
    handle = await start(churn_env, same)
    result = await handle.result()
    assert result.outcome == "low_risk" and result.first_score == low.score
    assert churn_env.vendors.written == []
    assert not [a for a in churn_env.vendors.audits if a.action == "write_churn_score"]
    await keep_history(handle, "unchanged_score_not_written")
    await (await start(churn_env, moved)).result()
    assert [(r.account_id, r.score) for r in churn_env.vendors.written] == [
        (f"acc-{moved}", low.score)
    ]


async def test_a_rescore_equal_to_the_last_written_score_writes_nothing(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, AT_TASK, AT_TASK, RECOVERED)
    handle = await start(churn_env, customer, follow_up=timedelta(days=30))
    await status(handle, lambda s: s.stage == "following the account")
    await handle.signal(names.SIGNAL_RISK, signal(customer, "usage_drop", "ev_same"))
    await status(handle, lambda s: s.scores == 2 and s.stage == "following the account")
    result = await handle.result()
    assert result.outcome == "retained"
    # the first score, not the unchanged rescore, and the closing score with the outcome
    assert [r.score for r in churn_env.vendors.written] == [50, result.last_score]
    assert "follow-up closed" in churn_env.vendors.written[-1].narrative


async def test_an_unlinked_customer_is_scored_but_nothing_is_written_to_the_crm(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, LOW, linked=False)
    result = await (await start(churn_env, customer)).result()
    assert result.outcome == "low_risk" and result.first_score is not None
    assert churn_env.vendors.written == []


async def test_a_second_intervention_for_the_same_customer_writes_under_new_keys(
    churn_env: Harness,
) -> None:
    customer = cid()
    churn_env.vendors.add(customer, AT_TASK, RECOVERED, AT_TASK, RECOVERED)
    first = await start(churn_env, customer, follow_up=timedelta(days=30))
    await first.result()
    second = await churn_env.env.client.start_workflow(
        WORKFLOW_TYPE,
        ChurnInput(billing="chargebee", customer_id=customer, follow_up=timedelta(days=30)),
        id=churn_workflow_id("chargebee", customer),
        task_queue=churn_env.task_queue,
        start_signal=names.SIGNAL_RISK,
        start_signal_args=[signal(customer, "downgrade")],
        result_type=ChurnResult,
    )
    await second.result()
    tasks = churn_env.vendors.tasks
    assert len(tasks) == 2 and tasks[0].key != tasks[1].key
    keys = [a.key for a in churn_env.vendors.audits]
    assert len(keys) == len(set(keys))
