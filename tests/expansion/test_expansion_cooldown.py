"""ExpansionWorkflow: a declined (lost) expansion does not reopen the next day because the
forecast still rises (patch ``expansion-reopen-cooldown``, policies/expansion.yaml
``reopen_after_days`` and the two reopen conditions). The rep loses the deal; the next day's
usage still heads for the limit — held; a month later (the server skips it) with the same steady
growth — still held (the crossing did not come earlier, the deal did not grow); then the
recommended upgrade doubles in value — a second expansion opens, with keys of its own. Every run
here continues as new after each batch: the declined record lives in the carried state.

On a time-skipping server of this module's own, as test_expansion_expiry.py."""

from __future__ import annotations

import uuid
from datetime import date, timedelta

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from domain import expansion as ex
from domain.expansion import (
    DeclinedExpansion,
    ExpansionInput,
    ExpansionOutcome,
    ExpansionStatus,
    UsageBatch,
    expansion_workflow_id,
    reopen_held,
)
from tests.conftest import own_time_skipping
from tests.expansion.test_expansion_workflow import (
    BILLING,
    CRM,
    CUSTOMER,
    ITEM,
    POLICY,
    SUB,
    TODAY,
    batch,
    fakes,
    growth,
    plan,
)
from tests.expansion.test_q2c_upgrade import keep
from tests.fast.fakes import fake_worker
from tests.pairs import eventually

skip_env = pytest.fixture(scope="module")(own_time_skipping)
KEY = f"{SUB}/{ITEM}"


def _day(today: date, first: date, **plan_update: object) -> UsageBatch:
    """The intake of ``today``: complete totals from ``first`` (steady growth), the plan."""
    b = batch(f"intake-{today}:{CUSTOMER}", growth(first, today), covers_from=first)
    return b.model_copy(update={"today": today, "plans": [plan().model_copy(update=plan_update)]})


def test_the_reopen_rule() -> None:
    declined = DeclinedExpansion(
        key=KEY,
        outcome=ExpansionOutcome.LOST,
        on=TODAY,
        crossing=TODAY + timedelta(days=20),
        upgrade_mrr=20_000,
    )

    def held(days: int, crossing_in: int | None, mrr: int = 20_000) -> str | None:
        today = TODAY + timedelta(days=days)
        crossing = today + timedelta(days=crossing_in) if crossing_in is not None else None
        return reopen_held(declined, today=today, crossing=crossing, upgrade_mrr=mrr, policy=POLICY)

    assert POLICY.reopen_after_days == 30
    # within the cooldown nothing reopens, not even a much bigger deal
    assert "not reopened before 2026-12-31" in (held(1, 5, mrr=100_000) or "")
    assert held(29, 0, mrr=100_000) is not None
    # after it: the same crossing, or a later one, stays held
    assert held(30, None) is not None and held(30, 0) is not None
    # the crossing 14+ days earlier than the declined one's (20 days out then): reopens
    assert held(2, -14) is not None  # still cooling down
    d = TODAY + timedelta(days=30)
    early = DeclinedExpansion(**{**declined.model_dump(), "crossing": d + timedelta(days=20)})
    assert reopen_held(early, today=d, crossing=d + timedelta(days=6), upgrade_mrr=20_000,
                       policy=POLICY) is None  # fmt: skip
    assert reopen_held(early, today=d, crossing=d + timedelta(days=7), upgrade_mrr=20_000,
                       policy=POLICY) is not None  # fmt: skip
    # the deal grew 1.5x: reopens
    assert held(30, 0, mrr=30_000) is None and held(30, 0, mrr=29_999) is not None


async def test_a_lost_expansion_is_held_then_reopens_only_for_a_bigger_deal(
    skip_env: WorkflowEnvironment,
) -> None:
    client: Client = skip_env.client
    f = fakes()
    wf_id = expansion_workflow_id(BILLING, CUSTOMER) + "-cool-" + uuid.uuid4().hex[:6]
    async with fake_worker(client, f) as queue:
        await client.start_workflow(
            ex.WORKFLOW_TYPE,
            # a continue-as-new after every batch: what is held must survive it
            ExpansionInput(billing=BILLING, crm=CRM, customer_id=CUSTOMER, history_limit=1),
            id=wf_id,
            task_queue=queue,
            start_signal=ex.SIGNAL_USAGE,
            start_signal_args=[_day(TODAY, TODAY - timedelta(days=2))],
        )
        h = client.get_workflow_handle(wf_id)

        async def status() -> ExpansionStatus:
            return await h.query(ex.QUERY_STATUS, result_type=ExpansionStatus)

        async def take(b: UsageBatch) -> ExpansionStatus:
            run = (await h.describe()).run_id
            await h.signal(ex.SIGNAL_USAGE, b)
            await eventually(
                lambda: h.describe(), lambda d: d.run_id != run, "continued", within_s=60
            )
            # the run that took the batch (its forecast lines are not carried, its state is)
            return await client.get_workflow_handle(wf_id, run_id=run).query(
                ex.QUERY_STATUS, result_type=ExpansionStatus
            )

        try:
            await eventually(status, lambda s: bool(s.open), "opened", within_s=60)
            first_run = (await h.describe()).run_id
            assert f.names().count("expansion_upsert_records") == 1

            # the rep declines it; the next intake finds the opportunity closed lost
            f.on(
                "expansion_opportunity_state",
                {"closed": True, "won": False, "stage": "Closed Lost"},
            )
            s = await take(_day(TODAY + timedelta(days=1), TODAY - timedelta(days=1)))
            assert not s.open and s.closed == [
                f"{KEY}: lost (the opportunity was closed: Closed Lost)"
            ]
            assert (await h.describe()).run_id != first_run  # continued as new since

            # the next day usage still heads for the limit: held, nothing written
            writes = len(f.writes())
            s = await take(_day(TODAY + timedelta(days=2), TODAY))
            assert s.last_forecast[KEY].startswith("held: lost on 2026-12-02: not reopened")
            assert len(f.writes()) == writes and not s.open

            # a month later, the same steady growth: the cooldown is over, but the crossing did
            # not come earlier and the deal did not grow — still held
            await skip_env.sleep(timedelta(days=31))
            held_run = (await h.describe()).run_id
            s = await take(_day(TODAY + timedelta(days=33), TODAY + timedelta(days=1)))
            assert "is not 14+ days earlier" in s.last_forecast[KEY], s.last_forecast
            assert len(f.writes()) == writes and not s.open

            reopen_run = (await h.describe()).run_id
            # the recommended upgrade is now worth twice as much: a second expansion opens
            s = await take(
                _day(TODAY + timedelta(days=34), TODAY + timedelta(days=32),
                     upgrade_unit_amount=50_000)
            )  # fmt: skip
            assert len(s.open) == 1, s
            drafts = [i["draft"] for i in f.inputs("expansion_upsert_records")]
            assert len(drafts) == 2 and drafts[1]["upgrade_mrr"] == 40_000
            assert drafts[1]["opportunity_key"] != drafts[0]["opportunity_key"]
            assert [a for a in f.audited() if a[0] == "expansion_opened"] == [
                ("expansion_opened", "opportunity and draft quote")
            ] * 2

            # the runs for the replay gate: the held one and the reopening one
            for name, run_id in (("declined_held", held_run), ("declined_reopened", reopen_run)):
                await keep(
                    client.get_workflow_handle(wf_id, run_id=run_id),
                    f"ExpansionWorkflow__{name}",
                )
        finally:
            await h.terminate("test over")
