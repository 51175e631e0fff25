"""Issue 13 (trust) on the time-skipping server over fake activities (tests/fast/fakes.py): the
real DunningWorkflow and governed gate, every activity faked by its registered name.

- harm 1: a retry that finds the invoice settled meanwhile is a recovery, not a failure;
- harm 8: the 24 h approval reminder is a task for each eligible approver's CRM user (before, one
  task without an owner, which lands on the integration user);
- bad input at the approval gate: refused with a one-line reason in the current details, audited,
  and the run keeps going.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.policy import PolicyActivities
from domain.policy import ActionKind, EligibleApproversInput, Outcome
from tests.fast.test_dunning import Run, dunning, dunning_fakes, pending, status

POLICIES = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client


# --- harm 1 ----------------------------------------------------------------------------------------


async def test_a_retry_on_an_invoice_settled_meanwhile_is_a_recovery(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run).on("retry_payment", {"succeeded": True, "already": "paid"})
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
        final = await status(handle)
    assert result.outcome == "recovered"
    assert result.attribution == "paid before the retry on day 3"
    assert "retry_payment: allow → executed" in final.actions
    # nothing after the retry: the day-3 reminder never went out
    assert len(fakes.inputs("send_email")) == 1
    assert dict(fakes.audited())["retry_payment"] == "executed (already paid)"


# --- harm 8 ----------------------------------------------------------------------------------------


async def test_the_approval_reminder_is_a_task_for_each_eligible_approver(client: Client) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(
        run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    ).on(
        "eligible_approvers",
        {"emails": ["alice@example.com", "fin@example.com"], "crm_user_ids": ["005A", "005F"]},
    )
    async with dunning(client, run, fakes) as handle:
        waiting = await pending(handle)
        assert waiting.approver_crm_ids == ["005A", "005F"]
        await handle.result()  # 24 h to the reminder, 72 h to expiry
    reminders = [
        i["draft"]
        for i in fakes.inputs("upsert_crm_task")
        if "Approval waiting" in i["draft"]["subject"]
    ]
    assert [(r["owner_id"], r["key"]) for r in reminders] == [
        ("005A", run.key(f"remind:{credit.action_id}:005A")),
        ("005F", run.key(f"remind:{credit.action_id}:005F")),
    ]
    assert all(r["account_id"] == run.account and r["high_priority"] for r in reminders)


def test_the_policy_activity_names_the_approvers_crm_users_for_the_deployments_crm() -> None:
    wanted = EligibleApproversInput(action=ActionKind.APPLY_CREDIT, roles=["finance"])
    sf = PolicyActivities(POLICIES, crm="salesforce").eligible_approvers(wanted)
    hs = PolicyActivities(POLICIES, crm="hubspot").eligible_approvers(wanted)
    assert sf.emails == hs.emails == ["alice@example.com"]
    assert (sf.crm_user_ids, hs.crm_user_ids) == (["0055e000001AliceAA"], ["90000101"])
    assert PolicyActivities(POLICIES).eligible_approvers(wanted).crm_user_ids == []
