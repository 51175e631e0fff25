"""AccountSyncFlushWorkflow on the time-skipping server: minor changes of many customers are
coalesced per customer and written in ONE bulk call per 200 accounts — at once when 200 wait,
else at the end of the batch window — with one CRM audit entry per flush; observe mode writes
nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain import golden
from domain.golden import FlushInput, FlushStatus, MinorChange
from domain.policy import Mode, Outcome
from tests.fast.fakes import Fakes, governance, policy, started
from tests.pairs import eventually
from tests.sync.test_workflow import keep_history

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def change(i: int, fields: dict[str, Any], minutes: int = 0) -> MinorChange:
    return MinorChange(
        customer_id=f"cus-{i}",
        crm_account_id=f"001{i:05d}",
        fields=fields,
        event_id=f"e{i}-{minutes}",
        at=T0 + timedelta(minutes=minutes),
    )


async def skip(env: WorkflowEnvironment, by: timedelta) -> None:
    """Skip the test server's clock; under load its answer may time out once (then again)."""
    from temporalio.service import RPCError

    try:
        await env.sleep(by)
    except RPCError:
        await env.sleep(timedelta(seconds=1))


def bulk(fakes: Fakes) -> Fakes:
    return fakes.on("sync_bulk_write_crm", lambda i: {"written": len(i["records"]), "failed": {}})


async def test_250_customers_flush_in_two_bulk_calls_coalesced(
    client: Client, time_env: WorkflowEnvironment
) -> None:
    fakes = bulk(governance(Fakes()))
    wf_id = f"account-sync-flush:test:{uuid.uuid4().hex[:8]}"
    first = change(0, {"usage": 10, "mrr": 100})
    async with started(
        client,
        fakes,
        golden.FLUSH_WORKFLOW_TYPE,
        FlushInput(billing="fakebill", crm="fakecrm", batch_every_s=300),
        id=wf_id,
        start_signal=golden.SIGNAL_MINOR,
        start_signal_args=[first],
    ) as handle:
        # the same customer again (coalesced), then 249 more
        await handle.signal(golden.SIGNAL_MINOR, change(0, {"usage": 12}, minutes=1))
        for i in range(1, 250):
            await handle.signal(golden.SIGNAL_MINOR, change(i, {"usage": i}))
        await eventually(
            lambda: handle.query("status", result_type=FlushStatus),
            lambda s: s.bulk_calls >= 1,
            "the first bulk write (200 waiting: at once)",
        )
        await skip(time_env, timedelta(seconds=301))
        s = await eventually(
            lambda: handle.query("status", result_type=FlushStatus),
            lambda s: s.records_written == 250,
            "every record written",
        )
        calls = fakes.inputs("sync_bulk_write_crm")
        # one call per 200 accounts of a flush (the 200 that filled a batch went at once; the
        # rest at the window's end, in one or two flushes depending on when they arrived)
        assert s.bulk_calls == len(calls) <= 3
        assert all(len(c["records"]) <= 200 for c in calls)
        assert len(calls[0]["records"]) == 200
        merged = next(c["records"]["00100000"] for c in calls if "00100000" in c["records"])
        assert merged == {"usage": 12, "mrr": 100}
        # one CRM audit entry per flush, none in billing (a batch spans customers)
        assert [a for a, _ in fakes.audited()] == ["sync_bulk_write"] * s.flushes
        assert fakes.billing_entries() == []
        await keep_history(handle, golden.FLUSH_WORKFLOW_TYPE, "two_flushes")


async def test_observe_mode_flushes_nothing(client: Client, time_env: WorkflowEnvironment) -> None:
    fakes = bulk(governance(Fakes()))
    fakes.on("decide_policy", policy(default=Outcome.DENY, mode=Mode.OBSERVE))
    async with started(
        client,
        fakes,
        golden.FLUSH_WORKFLOW_TYPE,
        FlushInput(billing="fakebill", crm="fakecrm", batch_every_s=60),
        id=f"account-sync-flush:test:{uuid.uuid4().hex[:8]}",
        start_signal=golden.SIGNAL_MINOR,
        start_signal_args=[change(1, {"usage": 1})],
    ) as handle:
        await skip(time_env, timedelta(seconds=61))
        await eventually(
            lambda: handle.query("status", result_type=FlushStatus),
            lambda s: s.flushes == 1,
            "the flush",
        )
        assert fakes.inputs("sync_bulk_write_crm") == []
        assert fakes.crm_entries() == []  # observe: kept in the run, written nowhere
