"""Assist mode on the time-skipping server over fake activities (tests/sync/world.py): a sync pass
writes nothing; what it would write is ONE CRM task per account and pass (each field, current →
proposed, why, source) and one approval bound to the proposal's hash. Approve applies exactly
the proposed values (audited with the approver), reject leaves both sides (audited), and a newer
pass's proposal supersedes an undecided one, carrying its items."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client, WorkflowHandle

from domain import golden
from domain.approvals import Decision
from domain.golden import Side, SyncStatus
from domain.policy import Mode, Outcome
from tests.fast.fakes import policy
from tests.pairs import eventually
from tests.sync.test_workflow import keep_history, settled, start, status
from tests.sync.world import World, decide

APPROVER = "rita@example.com"


def assist_world() -> World:
    w = World()
    w.fakes.on(
        "decide_policy", policy(default=Outcome.NEEDS_APPROVAL, mode=Mode.ASSIST, roles=["revops"])
    )
    w.fakes.on("eligible_approvers", {"emails": [APPROVER]})
    w.fakes.on(
        "upsert_crm_task", lambda i: {"id": f"task-{len(w.fakes.inputs('upsert_crm_task'))}"}
    )
    return w


async def proposed(handle: WorkflowHandle[Any, Any], not_hash: str | None = None) -> SyncStatus:
    """The proposal's task written and its approval asked (what an approver sees waiting)."""
    s = await eventually(
        lambda: status(handle),
        lambda s: (
            s.proposal_open is not None
            and s.proposal_open.task_id is not None
            and s.proposal_open.hash != not_hash
            and s.stage == "waiting for a change"
        ),
        "a proposal",
        within_s=60,
    )
    assert s.proposal_open is not None
    action_id = s.proposal_open.action_id
    await eventually(
        lambda: handle.query("pending_approvals"),
        lambda pending: action_id in [a["action_id"] for a in pending],
        "the proposal's approval asked",
    )
    return s


async def test_assist_mode_proposes_one_task_and_approval_applies_exactly_it(
    client: Client,
) -> None:
    w = assist_world()
    billing_before, crm_before = dict(w.billing), dict(w.crm)
    async with start(w, client) as handle:
        s = await proposed(handle)
        p = s.proposal_open
        assert p is not None
        # nothing written to either side, one task holding every change of the pass
        assert w.fakes.inputs("sync_write_crm") == [] and w.fakes.inputs("sync_write_billing") == []
        assert w.billing == billing_before and w.crm == crm_before
        (task,) = w.fakes.inputs("upsert_crm_task")
        draft = task["draft"]
        assert draft["account_id"] == w.account
        assert "mrr: None → 50000 (source: billing" in draft["description"]
        assert (
            "billing: account_name: 'Initech Billing' → 'Initech' (source: crm"
            in (draft["description"])
        )
        assert p.action_id in draft["description"] and p.hash in draft["description"]
        targets = {(i.target, i.field) for i in p.items}
        assert (Side.CRM, "mrr") in targets and (Side.BILLING, "account_name") in targets
        # the approval waits under an action ID bound to the proposal
        pending = await handle.query("pending_approvals")
        assert [a["action_id"] for a in pending] == [p.action_id]
        audited = [a for a, _ in w.fakes.audited()]
        assert audited == ["sync_proposed"]
        # the approver's yes applies exactly the proposed values
        await decide(client, w.wf_id, p.action_id, Decision.APPROVE, APPROVER)
        s = await eventually(
            lambda: status(handle),
            lambda s: s.proposals_applied == 1 and s.stage == "waiting for a change",
            "the proposal applied",
        )
        assert s.proposal_open is None
        for i in p.items:
            assert (w.crm if i.target is Side.CRM else w.billing)[i.field] == i.proposed
        assert len(w.fakes.inputs("sync_write_crm")) == 1
        assert len(w.fakes.inputs("sync_write_billing")) == 1
        (crm_write,) = w.fakes.inputs("sync_write_crm")
        assert crm_write["fields"] == {i.field: i.proposed for i in p.items if i.target is Side.CRM}
        entries = [
            e for e in w.fakes.crm_entries() if e["action"] in ("sync_to_crm", "sync_to_billing")
        ]
        assert len(entries) == 2 and all(e["approver"] == APPROVER for e in entries)
        # the applied values coming back are echoes: no new proposal, no write
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.CRM, "account_changed"))
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING, "customer_changed"))
        s = await settled(handle, 3)
        assert s.proposal_open is None and len(w.fakes.inputs("upsert_crm_task")) == 1
        assert len(w.fakes.writes()) == 3  # the task and the two approved writes
        await keep_history(handle, golden.WORKFLOW_TYPE, "assist_proposal_approved")


async def test_a_rejected_proposal_writes_nothing_and_is_audited(client: Client) -> None:
    w = assist_world()
    async with start(w, client) as handle:
        p = (await proposed(handle)).proposal_open
        assert p is not None
        await decide(client, w.wf_id, p.action_id, Decision.REJECT, APPROVER)
        s = await eventually(
            lambda: status(handle),
            lambda s: s.proposals_rejected == 1 and s.stage == "waiting for a change",
            "the rejection",
        )
        assert s.proposal_open is None
        assert w.fakes.inputs("sync_write_crm") == [] and w.fakes.inputs("sync_write_billing") == []
        (entry,) = [e for e in w.fakes.crm_entries() if e["action"] == "sync_proposal_rejected"]
        assert entry["approver"] == APPROVER and "nothing written" in entry["summary"]
        assert any(e["action"] == "sync_proposal_rejected" for e in w.fakes.billing_entries())


async def test_a_newer_proposal_supersedes_the_older_and_keeps_its_items(client: Client) -> None:
    w = assist_world()
    async with start(w, client) as handle:
        first = (await proposed(handle)).proposal_open
        assert first is not None
        w.billing["mrr"] = 90_000  # billing moves before anyone decided
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING, "subscription_changed"))
        second = (await proposed(handle, not_hash=first.hash)).proposal_open
        assert second is not None and second.action_id != first.action_id
        items = {(i.target, i.field): i.proposed for i in second.items}
        assert items[(Side.CRM, "mrr")] == 90_000
        assert items[(Side.BILLING, "account_name")] == "Initech"  # carried over
        assert len(w.fakes.inputs("upsert_crm_task")) == 2  # one task per pass
        # the older approval is gone: approving it now changes nothing
        pending = await handle.query("pending_approvals")
        assert [a["action_id"] for a in pending] == [second.action_id]
        await decide(client, w.wf_id, first.action_id, Decision.APPROVE, APPROVER)
        await decide(client, w.wf_id, second.action_id, Decision.APPROVE, APPROVER)
        await eventually(
            lambda: status(handle), lambda s: s.proposals_applied == 1, "the newer one applied"
        )
        await settled(handle, 2)
        assert w.crm["mrr"] == 90_000 and w.billing["account_name"] == "Initech"
        assert len(w.fakes.inputs("sync_write_crm")) == 1
        refused = [e for e in w.fakes.crm_entries() if e["action"] == "approval_refused"]
        assert len(refused) == 1 and "already decided" in refused[0]["summary"]


def test_the_proposal_hash_binds_exact_values_and_merging_keeps_the_newest() -> None:
    from domain.golden import ProposalItem, merge_proposal, proposal_hash

    def item(field: str, value: Any, target: Side = Side.CRM) -> ProposalItem:
        return ProposalItem(target=target, field=field, proposed=value, source=target.other)

    a = [item("mrr", 50_000), item("account_name", "Initech", Side.BILLING)]
    assert proposal_hash(a) == proposal_hash(list(reversed(a)))  # order does not matter
    assert proposal_hash(a) != proposal_hash([item("mrr", 50_001), a[1]])  # values do
    merged = merge_proposal(a, [item("mrr", 90_000)], {Side.BILLING: {"account_name": "Initech"}})
    assert [(i.field, i.proposed) for i in merged] == [("mrr", 90_000)]  # billing holds the name


async def test_an_open_proposal_survives_continue_as_new(client: Client) -> None:
    from tests.fast.fakes import started

    w = assist_world()
    async with started(
        client,
        w.fakes,
        golden.WORKFLOW_TYPE,
        w.input(history_limit=30),
        id=w.wf_id,
        start_signal=golden.SIGNAL_CHANGE,
        start_signal_args=[w.signal(Side.BILLING, "customer_created")],
    ) as handle:
        p = (await proposed(handle)).proposal_open
        assert p is not None
        desc = await handle.describe()
        assert desc.run_id != handle.first_execution_run_id  # continued as new, proposal carried
        await decide(client, w.wf_id, p.action_id, Decision.APPROVE, APPROVER)
        await eventually(
            lambda: status(handle), lambda s: s.proposals_applied == 1, "applied after the carry"
        )
        assert w.crm["mrr"] == 50_000 and w.billing["account_name"] == "Initech"
        assert len(w.fakes.inputs("upsert_crm_task")) == 1  # the task was not written again
