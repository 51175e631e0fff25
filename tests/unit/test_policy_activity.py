"""The policy activity reads ``policies/`` at decision time: edits apply without a restart, and a
broken file is a recorded denial, never an exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from temporalio import activity
from temporalio.testing import ActivityEnvironment

from activities.policy import DEFAULT_POLICY_DIR, PolicyActivities, load_policy_set
from domain.models import CustomerTier
from domain.policy import (
    ENGINE_ERROR,
    MODE_ASSIST,
    MODE_OBSERVE,
    AccountFacts,
    ActionKind,
    CheckApproverInput,
    Outcome,
    PolicyDecision,
    PolicyRequest,
)

CASE = PolicyRequest(
    use_case="dunning",
    action=ActionKind.CREATE_CASE,
    account=AccountFacts(id="001ACME", tier=CustomerTier.SMB),
)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    return target


@pytest.fixture
def acts(policy_dir: Path) -> PolicyActivities:
    return PolicyActivities(policy_dir)


def decide(acts: PolicyActivities, req: PolicyRequest = CASE) -> PolicyDecision:
    return ActivityEnvironment().run(acts.decide_policy, req)


def set_mode(policy_dir: Path, use_case: str, mode: str) -> None:
    path = policy_dir / "modes.yaml"
    modes = yaml.safe_load(path.read_text())
    modes["use_cases"][use_case] = mode
    path.write_text(yaml.safe_dump(modes))


def test_activity_names() -> None:
    assert (
        activity._Definition.must_from_callable(PolicyActivities.decide_policy).name
        == "decide_policy"
    )
    check = activity._Definition.must_from_callable(PolicyActivities.check_approver)
    assert check.name == "check_approver"


def test_shipped_policies_load_cleanly() -> None:
    ps = load_policy_set(DEFAULT_POLICY_DIR)
    assert ps.error is None
    # every action that can need an approval has someone who can give it
    for action in ActionKind:
        members = [m for role in ps.approver_roles(action) for m in _members(role)]
        assert members, action


def _members(role: str) -> list[str]:
    data = yaml.safe_load((DEFAULT_POLICY_DIR / "approvers.yaml").read_text())
    return data["roles"].get(role, [])


def test_decides_from_the_directory(acts: PolicyActivities) -> None:
    d = decide(acts)
    assert d.outcome is Outcome.ALLOW and d.policy_ids == ["crm_housekeeping"]


def test_editing_modes_changes_the_next_decision(acts: PolicyActivities, policy_dir: Path) -> None:
    set_mode(policy_dir, "dunning", "auto")
    assert decide(acts).outcome is Outcome.ALLOW

    set_mode(policy_dir, "dunning", "observe")
    observed = decide(acts)
    assert observed.outcome is Outcome.DENY and observed.policy_ids == [MODE_OBSERVE]

    set_mode(policy_dir, "dunning", "assist")
    assisted = decide(acts)
    assert assisted.outcome is Outcome.NEEDS_APPROVAL and MODE_ASSIST in assisted.policy_ids

    set_mode(policy_dir, "dunning", "auto")
    assert decide(acts).outcome is Outcome.ALLOW


def test_corrupt_cedar_file_is_a_denial_not_an_exception(
    acts: PolicyActivities, policy_dir: Path
) -> None:
    path = policy_dir / "crm_housekeeping.cedar"
    original = path.read_text()
    path.write_text(original.replace(");", ""))  # unterminated policy
    d = decide(acts)
    assert d.outcome is Outcome.DENY and d.policy_ids == [ENGINE_ERROR]
    assert "crm_housekeeping.cedar" in d.reasons[0]

    path.write_text(original)  # fixed: back to normal without a restart
    assert decide(acts).outcome is Outcome.ALLOW


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("modes.yaml", "use_cases: [unclosed", "modes.yaml"),
        ("modes.yaml", "- just\n- a list\n", "mapping"),
        ("approvers.yaml", "roles: {finance: [a@x.test]}\nactions: {refund: [fnance]}\n", "fnance"),
        ("revbridge.cedarschema", "namespace RevBridge { entity", "Error"),
        (
            "extra.cedar",
            '@id("crm_housekeeping") permit (principal, action, resource);',
            "duplicate",
        ),
        ("second.cedarschema", "namespace Other {}", "exactly one .cedarschema"),
    ],
)
def test_broken_policy_data_is_a_denial(
    acts: PolicyActivities, policy_dir: Path, name: str, content: str, message: str
) -> None:
    (policy_dir / name).write_text(content)
    d = decide(acts)
    assert d.outcome is Outcome.DENY and d.policy_ids == [ENGINE_ERROR]
    assert message in d.reasons[0]


@pytest.mark.parametrize("missing", ["modes.yaml", "approvers.yaml", "revbridge.cedarschema"])
def test_missing_file_is_a_denial(acts: PolicyActivities, policy_dir: Path, missing: str) -> None:
    (policy_dir / missing).unlink()
    d = decide(acts)
    assert d.outcome is Outcome.DENY and d.policy_ids == [ENGINE_ERROR]


def test_missing_directory_is_a_denial(tmp_path: Path) -> None:
    d = decide(PolicyActivities(tmp_path / "nowhere"))
    assert d.outcome is Outcome.DENY and d.policy_ids == [ENGINE_ERROR]
    assert "nowhere" in d.reasons[0]


def test_other_files_are_ignored(acts: PolicyActivities, policy_dir: Path) -> None:
    (policy_dir / "NOTES.md").write_text("not a policy ( ;")
    assert decide(acts).outcome is Outcome.ALLOW


def test_parsed_set_is_reused_until_a_file_changes(
    acts: PolicyActivities, policy_dir: Path
) -> None:
    first = acts.policy_set()
    assert acts.policy_set() is first
    set_mode(policy_dir, "dunning", "observe")
    assert acts.policy_set() is not first


def test_check_approver_reads_approvers_at_call_time(
    acts: PolicyActivities, policy_dir: Path
) -> None:
    env = ActivityEnvironment()
    ask = CheckApproverInput(email="new.hire@example.com", action=ActionKind.REFUND)
    assert not env.run(acts.check_approver, ask).allowed

    path = policy_dir / "approvers.yaml"
    approvers = yaml.safe_load(path.read_text())
    approvers["roles"]["finance"].append("new.hire@example.com")
    path.write_text(yaml.safe_dump(approvers))
    check = env.run(acts.check_approver, ask)
    assert check.allowed and check.holds_roles == ["finance"]


def test_approval_from_the_directory_releases_a_refund(acts: PolicyActivities) -> None:
    refund = CASE.model_copy(update={"action": ActionKind.REFUND, "amount": 1_500})
    assert decide(acts, refund).outcome is Outcome.NEEDS_APPROVAL
    finance = load_policy_set(acts.policy_dir)
    approver = next(iter(_members("finance")))
    assert finance.can_approve(approver, "refund")
    approved = decide(acts, refund.model_copy(update={"approved_by": approver}))
    assert approved.outcome is Outcome.ALLOW and approved.approved_by == approver
