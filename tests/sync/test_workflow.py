"""AccountSyncWorkflow on the time-skipping server over fake activities (tests/sync/world.py):
the first sync, a CRM edit to a billing-owned field restored and audited on both sides, echoes
and redeliveries changing nothing, significance (now vs the flusher), and a shared-field
conflict resolved through the approval gate both ways."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle

from domain import golden
from domain.approvals import Decision
from domain.golden import Side, SyncStatus
from tests.fast.fakes import started
from tests.pairs import eventually
from tests.sync.world import World, decide

HISTORIES = Path(__file__).resolve().parents[1] / "histories"


async def keep_history(handle: WorkflowHandle[Any, Any], workflow_type: str, name: str) -> None:
    """`REVBRIDGE_WRITE_HISTORIES=1` (`make histories`) commits this run's history for the
    replay gate."""
    if os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
        history = await handle.fetch_history()
        (HISTORIES / f"{workflow_type}__{name}.json").write_text(history.to_json())


async def status(handle: WorkflowHandle[Any, Any]) -> SyncStatus:
    return await handle.query("status", result_type=SyncStatus)


async def settled(handle: WorkflowHandle[Any, Any], signals: int) -> SyncStatus:
    """The run took ``signals`` signals and went back to waiting."""
    return await eventually(
        lambda: status(handle),
        lambda s: s.signals >= signals and s.stage == "waiting for a change",
        "the sync to settle",
        within_s=60,  # a shared 2-core machine under load slows the test server's answers
    )


def start(world: World, client: Client) -> Any:
    return started(
        client,
        world.fakes,
        golden.WORKFLOW_TYPE,
        world.input(),
        id=world.wf_id,
        start_signal=golden.SIGNAL_CHANGE,
        start_signal_args=[world.signal(Side.BILLING, "customer_created")],
    )


async def test_first_sync_writes_billing_fields_to_the_crm_and_the_name_to_billing(
    client: Client,
) -> None:
    w = World()
    async with start(w, client) as handle:
        await settled(handle, 1)
        # billing-owned fields reached the CRM, the CRM-owned name reached billing
        assert w.crm["mrr"] == 50_000 and w.crm["plan"] == "pro-monthly"
        assert w.crm["billing_contact"] == "ap@initech.example"
        assert w.billing["account_name"] == "Initech"
        assert w.fakes.names().count("sync_write_crm") == 1
        assert w.fakes.names().count("sync_write_billing") == 1
        await keep_history(handle, golden.WORKFLOW_TYPE, "first_sync")
        # audited on both sides, each write once, the email never in the text
        audited = [a for a, _ in w.fakes.audited()]
        assert audited.count("sync_to_crm") == 1 and audited.count("sync_to_billing") == 1
        notes = [e["action"] for e in w.fakes.billing_entries()]
        assert "sync_to_crm" in notes and "sync_to_billing" in notes
        assert all("ap@initech" not in e["summary"] for e in w.fakes.crm_entries())
        record = await handle.query("golden", result_type=golden.GoldenRecord)
        assert record.crm_account_id == w.account
        assert record.fields["mrr"].source is Side.BILLING and record.fields["mrr"].synced


async def test_a_crm_edit_to_a_billing_owned_field_is_restored_and_audited(client: Client) -> None:
    w = World()
    async with start(w, client) as handle:
        await settled(handle, 1)
        w.crm["mrr"] = 99_900  # a rep types a new MRR into the CRM
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.CRM, "account_changed"))
        s = await settled(handle, 2)
        assert w.crm["mrr"] == 50_000  # restored
        assert s.restored == 1
        entries = [e for e in w.fakes.crm_entries() if e["action"] == "restore_field"]
        assert len(entries) == 1 and "billing owns" in entries[0]["summary"]
        assert any(e["action"] == "restore_field" for e in w.fakes.billing_entries())
        # billing was not touched by the restore
        assert w.fakes.names().count("sync_write_billing") == 1


async def test_echoes_and_redeliveries_change_nothing(client: Client) -> None:
    w = World()
    async with start(w, client) as handle:
        await settled(handle, 1)
        writes = len(w.fakes.writes())
        # our own writes come back from both sides: values equal to what each side holds
        echo_b, echo_c = w.signal(Side.BILLING), w.signal(Side.CRM)
        for sig in (echo_b, echo_c, echo_c, echo_b):  # and each redelivered once
            await handle.signal(golden.SIGNAL_CHANGE, sig)
        await settled(handle, 3)
        assert len(w.fakes.writes()) == writes
        assert any("duplicate event" in line for line in (await status(handle)).last)


async def test_minor_changes_go_to_the_flusher_and_big_ones_at_once(client: Client) -> None:
    w = World(flusher=True)
    async with start(w, client) as handle:
        await settled(handle, 1)
        crm_writes = w.fakes.names().count("sync_write_crm")
        w.billing["mrr"] = 52_000  # +4 %: minor
        w.billing["next_renewal"] = "2027-02-01"
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING, "subscription_changed"))
        await settled(handle, 2)
        assert w.fakes.names().count("sync_write_crm") == crm_writes
        (handed,) = w.fakes.inputs("sync_hand_minor")
        assert handed["change"]["fields"] == {"mrr": 52_000, "next_renewal": "2027-02-01"}
        assert handed["flusher_id"] == w.flusher_id
        w.billing["subscription_status"] = "cancelled"  # significant: written at once
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING, "subscription_cancelled"))
        await settled(handle, 3)
        assert w.fakes.names().count("sync_write_crm") == crm_writes + 1
        assert w.crm["subscription_status"] == "cancelled"


async def conflicted(w: World, client: Client, decision: Decision) -> None:
    async with start(w, client) as handle:
        await settled(handle, 1)
        # both sides change the billing contact before either change reached the other
        w.billing["billing_contact"] = "finance@initech.example"
        w.crm["billing_contact"] = "payables@initech.example"
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.CRM, "account_changed"))
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING, "customer_changed"))
        s = await eventually(lambda: status(handle), lambda s: s.conflicts_open, "a conflict")
        (conflict,) = s.conflicts_open
        assert conflict.billing_value == "finance@initech.example"
        assert conflict.crm_value == "payables@initech.example"
        # neither side was overwritten while a person decides
        assert w.billing["billing_contact"] == "finance@initech.example"
        assert w.crm["billing_contact"] == "payables@initech.example"
        pending = await eventually(
            lambda: handle.query("pending_approvals"), bool, "a pending approval"
        )
        assert pending[0]["action_id"] == conflict.action_id
        await decide(client, w.wf_id, conflict.action_id, decision, "bob@example.com")
        await eventually(
            lambda: status(handle), lambda s: s.conflicts_resolved == 1, "the resolution"
        )
        await settled(handle, 3)
        entries = [e for e in w.fakes.crm_entries() if e["action"] == "resolve_conflict"]
        assert len(entries) == 1 and entries[0]["approver"] == "bob@example.com"
        await keep_history(handle, golden.WORKFLOW_TYPE, f"conflict_{decision.value}")


async def test_a_conflict_approved_takes_the_crm_value(client: Client) -> None:
    w = World()
    w.fakes.on("eligible_approvers", {"emails": ["bob@example.com"]})
    await conflicted(w, client, Decision.APPROVE)
    assert w.billing["billing_contact"] == w.crm["billing_contact"] == "payables@initech.example"


async def test_a_conflict_rejected_keeps_the_billing_value(client: Client) -> None:
    w = World()
    w.fakes.on("eligible_approvers", {"emails": ["bob@example.com"]})
    await conflicted(w, client, Decision.REJECT)
    assert w.billing["billing_contact"] == w.crm["billing_contact"] == "finance@initech.example"


async def test_continue_as_new_keeps_the_record(client: Client) -> None:
    w = World()
    async with started(
        client,
        w.fakes,
        golden.WORKFLOW_TYPE,
        w.input(history_limit=40),
        id=w.wf_id,
        start_signal=golden.SIGNAL_CHANGE,
        start_signal_args=[w.signal(Side.BILLING)],
    ) as handle:
        for i in range(6):
            w.billing["mrr"] = 50_000 + (i + 1) * 100_000
            await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.BILLING))
            await settled(handle, 2 + i)
        desc = await handle.describe()
        assert desc.run_id != handle.first_execution_run_id  # continued as new, state carried
        assert w.crm["mrr"] == 650_000
        record = await handle.query("golden", result_type=golden.GoldenRecord)
        assert record.value("mrr") == 650_000
        await keep_history(handle, golden.WORKFLOW_TYPE, "continued_as_new")


async def test_shuffled_late_and_repeated_events_end_at_the_truth_with_one_write(
    client: Client,
) -> None:
    import random
    from datetime import timedelta

    w = World()
    async with start(w, client) as handle:
        await settled(handle, 1)
        writes = w.fakes.names().count("sync_write_crm")
        # billing moved three times; the events arrive shuffled, late and twice
        w.billing["mrr"] = 200_000
        w.billing["subscription_status"] = "non_renewing"
        events = [w.signal(Side.BILLING, "subscription_changed") for _ in range(3)]
        events = [
            e.model_copy(update={"occurred_at": e.occurred_at - timedelta(minutes=i)})
            for i, e in enumerate(events)
        ]
        delivered = events + events[:2]
        random.Random(7).shuffle(delivered)
        for e in delivered:
            await handle.signal(golden.SIGNAL_CHANGE, e)
        s = await settled(handle, 4)
        assert w.crm["mrr"] == 200_000 and w.crm["subscription_status"] == "non_renewing"
        assert w.fakes.names().count("sync_write_crm") - writes == 1  # the truth, written once
        assert s.signals == 4  # the two redeliveries were dropped by event ID
        await keep_history(handle, golden.WORKFLOW_TYPE, "shuffled_events")


async def test_observe_mode_reads_and_reports_and_writes_nothing(client: Client) -> None:
    from domain.policy import Mode, Outcome
    from tests.fast.fakes import policy

    w = World()
    w.fakes.on("decide_policy", policy(default=Outcome.DENY, mode=Mode.OBSERVE))
    async with start(w, client) as handle:
        await settled(handle, 1)
        w.crm["mrr"] = 1  # a CRM edit that auto mode would restore
        await handle.signal(golden.SIGNAL_CHANGE, w.signal(Side.CRM, "account_changed"))
        await settled(handle, 2)
        assert w.fakes.inputs("sync_write_crm") == [] and w.fakes.inputs("sync_write_billing") == []
        assert w.fakes.crm_entries() == [] and w.fakes.billing_entries() == []
        observed = await handle.query("observed")
        assert any(line.startswith("sync_to_crm: blocked") for line in observed)
