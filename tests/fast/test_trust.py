"""Issue 13 (trust) on the time-skipping server over fake activities (tests/fast/fakes.py): the
real DunningWorkflow and governed gate, every activity faked by its registered name.

- harm 1: a retry that finds the invoice settled meanwhile is a recovery, not a failure;
- harm 8: the 24 h approval reminder is a task for each eligible approver's CRM user (before, one
  task without an owner, which lands on the integration user);
- bad input at the approval gate: refused with a one-line reason in the current details, audited,
  and the run keeps going.
"""

from __future__ import annotations

import os
import shutil
from datetime import date
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.policy import PolicyActivities, load_policy_set
from domain import temporal as names
from domain.approvals import QUERY, SIGNAL
from domain.dunning import WORKFLOW_TYPE, DunningInput, DunningResult
from domain.models import CrmAccount
from domain.policy import ActionKind, EligibleApproversInput, Outcome, PolicyRequest
from domain.records import Subscription
from tests.fast.fakes import APPROVER, Fakes, fake_worker
from tests.fast.test_dunning import BILLING, Run, dunning, dunning_fakes, pending, status
from tests.fast.test_quote_to_cash import Deal, q2c, q2c_fakes
from tests.pairs import eventually

POLICIES = Path(__file__).resolve().parents[2] / "policies"


HISTORIES = Path(__file__).resolve().parents[1] / "histories"


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client


async def keep_history(handle: WorkflowHandle, name: str) -> None:
    """With REVBRIDGE_WRITE_HISTORIES=1 (`make histories`), commit the run for the replay gate:
    the new branches (``remind-approvers``, bad approvals, ``q2c-duplicate-guard``) stay covered."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        wf_type = (await handle.describe()).workflow_type
        history = await handle.fetch_history()
        (HISTORIES / f"{wf_type}__{name}.json").write_text(history.to_json())


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
        await keep_history(handle, "approval_reminders_assigned")
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


def test_the_policy_activity_names_the_approvers_crm_users_for_the_deployments_crm(
    tmp_path: Path,
) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(POLICIES, policies)
    approvers = policies / "approvers.yaml"
    approvers.write_text(
        approvers.read_text().replace(
            "crm_users: {}",
            'crm_users:\n  alice@example.com: {salesforce: "0055e000001AliceAA", hubspot: "9001"}'
            '\n  bob@example.com: "0055e000001BobROAA"',
        )
    )
    wanted = EligibleApproversInput(action=ActionKind.APPLY_CREDIT, roles=["finance"])
    sf = PolicyActivities(policies, crm="salesforce").eligible_approvers(wanted)
    hs = PolicyActivities(policies, crm="hubspot").eligible_approvers(wanted)
    assert sf.emails == hs.emails == ["alice@example.com"]
    assert (sf.crm_user_ids, hs.crm_user_ids) == (["0055e000001AliceAA"], ["9001"])
    assert PolicyActivities(policies).eligible_approvers(wanted).crm_user_ids == []
    revops = EligibleApproversInput(action=ActionKind.CANCEL_SUBSCRIPTION, roles=["revops"])
    one = PolicyActivities(policies, crm="salesforce").eligible_approvers(revops)
    assert one.crm_user_ids == ["0055e000001BobROAA"]  # one ID: the deployment's CRM
    # the shipped file names none (the sandboxes mint user IDs per stack)
    shipped = PolicyActivities(POLICIES, crm="salesforce").eligible_approvers(wanted)
    assert shipped.crm_user_ids == []


# --- bad input at the approval gate ------------------------------------------------------------


async def details(handle: WorkflowHandle) -> str:
    return (await handle.query("__temporal_workflow_metadata")).current_details


def refused_audits(fakes: Fakes) -> list[str]:
    return [
        i["entry"]["summary"]
        for i in fakes.inputs("write_crm_audit")
        if i["entry"]["action"] == "approval_refused"
    ]


async def test_bad_approvals_are_refused_shown_and_audited_and_the_run_goes_on(
    client: Client,
) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(
        run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    )
    ok = {"action_id": credit.action_id, "decision": "approve", "approver": APPROVER}
    bad: list[tuple[object, str]] = [
        ({k: v for k, v in ok.items() if k != "approver"}, "missing approver"),
        ({**ok, "role": "admin"}, "unexpected role"),
        ({**ok, "decision": "yes"}, "decision must be approve or reject"),
        ({**ok, "action_id": "act-unknown"}, "no pending action act-unknown"),
        (["approve"], "expected a JSON object"),
    ]
    async with dunning(client, run, fakes) as handle:
        await pending(handle)
        for payload, reason in bad:
            await handle.signal(SIGNAL, payload)
            shown = await eventually(
                lambda: details(handle), lambda d, r=reason: r in d, f"refusal {reason}"
            )
            assert shown.startswith("**Refused:**") and shown.count("**Refused:**") == 1
            assert "Approval needed" in shown  # what the person can still act on stays below
        assert (await pending(handle)).action_id == credit.action_id  # still waiting
        await handle.signal(SIGNAL, ok)
        result = await handle.result()
        final = await status(handle)
        await keep_history(handle, "bad_approvals_refused")
    summaries = refused_audits(fakes)
    assert len(summaries) == len(bad)
    assert all(reason in s for (_, reason), s in zip(bad, summaries, strict=True))
    assert all("\n" not in s for s in summaries)  # one line each
    assert "apply_credit: needs_approval → executed (alice@example.com)" in final.actions
    assert result.outcome == "written_off"


async def test_an_approval_after_expiry_is_refused_as_expired(
    client: Client, time_env: WorkflowEnvironment
) -> None:
    run = Run()
    credit = run.credit()
    fakes = dunning_fakes(
        run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL
    )
    async with dunning(client, run, fakes) as handle:
        await pending(handle)
        await time_env.sleep(73 * 3600)  # past the 72 h expiry
        await eventually(
            lambda: status(handle),
            lambda s: "apply_credit: needs_approval → expired" in s.actions,
            "expiry",
            within_s=30,
        )
        await handle.signal(
            SIGNAL, {"action_id": credit.action_id, "decision": "approve", "approver": APPROVER}
        )
        shown = await eventually(lambda: details(handle), lambda d: "Refused" in d, "refusal")
        result = await handle.result()
    assert f"action {credit.action_id} was already decided (expired)" in shown
    assert any("already decided (expired)" in s for s in refused_audits(fakes))
    assert fakes.inputs("apply_credit") == []
    assert result.outcome == "written_off"


async def test_an_approval_before_the_context_exists_is_refused_and_shown(client: Client) -> None:
    run = Run()
    fakes = dunning_fakes(run)
    async with fake_worker(client, fakes) as queue:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            DunningInput(billing=BILLING, invoice_id=run.invoice),
            id=run.wf_id,
            task_queue=queue,
            result_type=DunningResult,
        )
        try:
            await handle.signal(
                SIGNAL, {"action_id": "act-early", "decision": "approve", "approver": APPROVER}
            )
            shown = await eventually(lambda: details(handle), lambda d: "Refused" in d, "shown")
            assert "no pending action act-early" in shown
            await handle.signal(names.SIGNAL_PAYMENT_FAILED, run.failure())
            await eventually(lambda: status(handle), lambda s: s.reminders_sent == 1, "going on")
        finally:
            await handle.terminate("test over")
    assert any("act-early" in s for s in refused_audits(fakes))


async def test_a_crm_user_the_crm_refuses_still_gets_the_reminder_unassigned(
    client: Client,
) -> None:
    run = Run()
    credit = run.credit()

    def task(i: dict) -> dict:
        if i["draft"]["owner_id"] == "005gone":
            return ApplicationError(
                "no such user", type="salesforce.MALFORMED_ID", non_retryable=True
            )
        return {"id": "task-1"}

    fakes = (
        dunning_fakes(run, assessment=run.assessment(credit), apply_credit=Outcome.NEEDS_APPROVAL)
        .on("eligible_approvers", {"emails": [APPROVER], "crm_user_ids": ["005gone"]})
        .on("upsert_crm_task", task)
    )
    async with dunning(client, run, fakes) as handle:
        result = await handle.result()
    reminders = [
        i["draft"] for i in fakes.inputs("upsert_crm_task") if "Approval" in i["draft"]["subject"]
    ]
    assert [(r["owner_id"], r["key"]) for r in reminders] == [
        ("005gone", run.key(f"remind:{credit.action_id}:005gone")),
        (None, run.key(f"remind:{credit.action_id}")),
    ]
    assert result.outcome == "written_off"  # the run went on


# --- harm 2: a second subscription for an existing customer ---------------------------------------


async def test_a_deal_won_before_go_live_is_never_provisioned(client: Client) -> None:
    deal = Deal(close_date=date(2025, 3, 1))
    fakes = q2c_fakes(deal).on(
        "q2c_get_opportunity",
        {"opportunity": deal.opp.model_dump(mode="json"), "go_live": "2026-01-01"},
    )
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
    assert result.outcome == "before_go_live"
    assert "before go-live (2026-01-01)" in result.reason and "revbridge link" in result.reason
    assert fakes.names() == ["q2c_get_opportunity"]  # nothing read further, nothing written


async def test_a_deal_won_after_go_live_is_provisioned(client: Client) -> None:
    deal = Deal(close_date=date(2026, 2, 1))
    fakes = q2c_fakes(deal).on(
        "q2c_get_opportunity",
        {"opportunity": deal.opp.model_dump(mode="json"), "go_live": "2026-01-01"},
    )
    async with q2c(client, deal, fakes) as handle:
        result = await handle.result()
    assert result.outcome == "live"


async def test_an_existing_customer_with_the_same_products_needs_revops_with_both_shown(
    client: Client,
) -> None:
    account = CrmAccount(
        id="001acct", name="Acme Rockets", billing_customer_id="cus-old", billing_platform=BILLING
    )
    deal = Deal(account=account)
    live = Subscription(id="sub-old", customer_id="cus-old", status="active", plan="price-pro")
    fakes = (
        q2c_fakes(deal)
        .on("q2c_active_subscriptions", {"subscriptions": [live.model_dump(mode="json")]})
        .on("decide_policy", real_policy)
    )
    async with q2c(client, deal, fakes) as handle:
        (waiting,) = await eventually(
            lambda: handle.query(QUERY, result_type=list), bool, "the approval"
        )
        assert fakes.inputs("q2c_create_subscription") == []  # nothing billed twice
        assert waiting["approver_roles"] == ["revops"]
        assert waiting["action"]["duplicate_of"] == ["sub-old"]
        assert "sub-old (active, 1 × price-pro" in waiting["why"]  # the one it has
        assert "5 × price-pro" in waiting["why"]  # and the one it would get
        await handle.signal(
            SIGNAL,
            {
                "action_id": waiting["action_id"],
                "decision": "reject",
                "approver": "bob@example.com",
            },
        )
        result = await handle.result()
        await keep_history(handle, "duplicate_rejected_by_revops")
    assert fakes.inputs("q2c_active_subscriptions") == [
        {"customer_id": "cus-old", "price_ids": ["price-pro"]}
    ]
    assert fakes.inputs("q2c_create_subscription") == []
    assert result.outcome == "rolled_back"


def real_policy(request: dict) -> dict:
    """The shipped Cedar policies, in auto mode for quote-to-cash."""
    decision = load_policy_set(POLICIES).decide(PolicyRequest.model_validate(request))
    return decision.model_dump(mode="json")
