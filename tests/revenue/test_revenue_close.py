"""RevenuePostingWorkflow on the time-skipping server: the real revenue activities over an
in-memory billing source and ERP, governance faked. The hand-computed cases of issue 20 (a
mid-month start, an upgrade mid-term, a cancellation with a credit, two currencies) go through
the whole close and land as balanced entries with exactly the amounts worked out below."""

from __future__ import annotations

import os
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowFailureError

from activities.revenue import RevenueActivities
from domain.approvals import QUERY, Decision, PendingApproval
from domain.policy import Mode, Outcome
from domain.revenue import (
    WORKFLOW_TYPE,
    JournalEntry,
    JournalLine,
    PostEntryInput,
    RevenueCloseInput,
    RevenueCloseResult,
)
from tests.fast.fakes import Fakes, answer, counter, governance, policy
from tests.pairs import eventually
from tests.revenue.conftest import (
    POLICY_DIR,
    FakeErp,
    FakeSource,
    TimesOutAfterCommit,
    line,
    revenue_worker,
)

D = date
HISTORIES = Path(__file__).resolve().parents[1] / "histories"
APRIL = "2026-04"


def april_book() -> list:
    return [
        # mid-month start: 30.00 for Apr 16 - May 16 (30 days, 1.00 a day): April has 15 days
        line(3_000, D(2026, 4, 16), D(2026, 5, 16)),
        # upgrade mid-term: a year at 365.00 (1.00 a day) from Jan 1; on Apr 11 the 265 unused
        # days are credited and 530.00 charged over them (2.00 a day): April = 10 x 1 + 20 x 2
        line(36_500, D(2026, 1, 1), D(2027, 1, 1)),
        line(-26_500, D(2026, 4, 11), D(2027, 1, 1)),
        line(53_000, D(2026, 4, 11), D(2027, 1, 1)),
        # cancellation with a credit: 30.00 for April, cancelled on the 21st, 10.00 credited
        line(3_000, D(2026, 4, 1), D(2026, 5, 1)),
        line(-1_000, D(2026, 4, 21), D(2026, 5, 1)),
        # a one-off onboarding fee on Apr 5, to its own account (policies/revenue.yaml: 4100)
        line(50_000, D(2026, 4, 5), D(2026, 4, 6), product="onboarding"),
        # another currency: 61.00 EUR over Apr 1 - Jun 1 (61 days, 1.00 a day)
        line(6_100, D(2026, 4, 1), D(2026, 6, 1), cur="EUR"),
        # outside April: recognized in March and in May only
        line(1_000, D(2026, 3, 1), D(2026, 4, 1)),
        line(2_000, D(2026, 5, 1), D(2026, 6, 1)),
    ]


# USD: 4000 gets 1,500 + 5,000 + 2,000 = 8,500; 4100 gets 50,000; deferred revenue the sum
USD_LINES = [("2400", 58_500, 0), ("4000", 0, 8_500), ("4100", 0, 50_000)]
EUR_LINES = [("2400", 3_000, 0), ("4000", 0, 3_000)]


def shape(entry: JournalEntry) -> list[tuple[str, int, int]]:
    return [(x.account, x.debit, x.credit) for x in entry.lines]


def acts(source: FakeSource, erp: FakeErp | None) -> RevenueActivities:
    return RevenueActivities(source, erp, POLICY_DIR / "revenue.yaml")


def fakes() -> Fakes:
    return governance(Fakes(), post_journal_entry=Outcome.NEEDS_APPROVAL).on(
        "upsert_crm_task", counter("task")
    )


async def close(
    client: Client, f: Fakes, a: RevenueActivities, decide: Decision | None = Decision.APPROVE,
    keep: str = "", **over: Any,
) -> tuple[RevenueCloseResult, list[PendingApproval]]:  # fmt: skip
    async with revenue_worker(client, f, a) as tq:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            RevenueCloseInput(billing="fakebill", month=APRIL, **over),
            id=f"revenue-close:fakebill:{APRIL}:{uuid.uuid4().hex[:6]}",
            task_queue=tq,
            result_type=RevenueCloseResult,
        )
        seen: list[PendingApproval] = []
        if decide is not None:
            seen = await eventually(
                lambda: handle.query(QUERY, result_type=list[PendingApproval]), bool, "approval"
            )
            await answer(handle, seen[0].action_id, decide)
        result = await handle.result()
        if keep and os.environ.get("REVBRIDGE_WRITE_HISTORIES") == "1":
            # `make histories`: this run's history for the replay gate (tests/replay)
            history = await handle.fetch_history()
            (HISTORIES / f"RevenuePostingWorkflow__{keep}.json").write_text(history.to_json())
        return result, seen


async def test_hand_computed_month_is_posted_once_after_finance_approves(client: Client) -> None:
    source, erp = FakeSource(april_book()), FakeErp()
    f = fakes()
    result, pending = await close(client, f, acts(source, erp), keep="posted")

    assert result.outcome == "executed" and result.approver == "alice@example.com"
    by_cur = {e.currency: e for e in erp.entries.values()}
    assert shape(by_cur["USD"]) == USD_LINES and shape(by_cur["EUR"]) == EUR_LINES
    assert all(e.balanced for e in erp.entries.values())
    assert result.totals == "585.00 USD, 30.00 EUR" or result.totals == "30.00 EUR, 585.00 USD"
    assert set(result.posted) == set(erp.entries) and len(erp.entries) == 2
    # the approver saw the totals; the ERP memo names the approver and the run
    assert "585.00 USD" in pending[0].details() and "30.00 EUR" in pending[0].details()
    assert all("approved by alice@example.com" in e.memo for e in erp.entries.values())
    # the lookback window: 24 months before April to the end of April, read a page at a time
    assert set(source.windows) == {(D(2024, 4, 1), D(2026, 5, 1))} and len(source.windows) == 5
    assert result.documents == 10 and result.lines == 10
    # audited in the CRM (the ERP side is the memo), never as a billing note
    assert [a for a, _ in f.audited()] == ["post_journal_entry"]
    assert f.billing_entries() == []


async def test_a_long_read_continues_as_new_and_closes_the_same(client: Client) -> None:
    erp = FakeErp()
    source = FakeSource(april_book(), per_page=1)
    async with revenue_worker(client, fakes(), acts(source, erp)) as tq:
        handle = await client.start_workflow(
            WORKFLOW_TYPE,
            RevenueCloseInput(billing="fakebill", month=APRIL, dry_run=True, history_limit=20),
            id=f"revenue-close:fakebill:{APRIL}:{uuid.uuid4().hex[:6]}",
            task_queue=tq,
            result_type=RevenueCloseResult,
        )
        result = await handle.result()
        first = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
        events = [e async for e in first.fetch_history_events()]
    assert events[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(source.windows) == 10 and result.documents == 10  # counts carried across
    assert sorted(shape(e) for e in result.entries) == sorted([USD_LINES, EUR_LINES])


async def test_a_rejected_close_posts_nothing(client: Client) -> None:
    erp = FakeErp()
    f = fakes()
    result, _ = await close(
        client, f, acts(FakeSource(april_book()), erp), Decision.REJECT, keep="rejected"
    )
    assert result.outcome == "rejected" and erp.entries == {}
    assert [c for c in erp.calls if c.startswith("post")] == []
    assert f.audited() == [("post_journal_entry", "rejected")]


async def test_a_second_close_of_the_month_posts_nothing_new(client: Client) -> None:
    erp = FakeErp()
    await close(client, fakes(), acts(FakeSource(april_book()), erp))
    posts = [c for c in erp.calls if c.startswith("post")]
    f = fakes()
    again, pending = await close(
        client, f, acts(FakeSource(april_book()), erp), decide=None, keep="nothing_new"
    )
    assert again.outcome == "nothing_new" and pending == []
    assert [c for c in erp.calls if c.startswith("post")] == posts and len(erp.entries) == 2
    assert set(again.posted) == set(erp.entries)
    assert "decide_policy" not in f.names()  # nobody is asked about nothing


async def test_a_month_changed_since_it_was_posted_gets_an_adjusting_entry(
    client: Client,
) -> None:
    """A late USD credit of 5.00 on Apr 25 (one day) after April was posted: the close proposes
    only the difference — revenue 4000 debited 5.00, deferred revenue 2400 credited 5.00 — through
    the same finance approval, posted once; the EUR entry is untouched. Closing again proposes
    nothing, and so does a third close after a retried post."""
    erp = TimesOutAfterCommit()
    await close(client, fakes(), acts(FakeSource(april_book()), erp))
    first = dict(erp.entries)
    late = [*april_book(), line(-500, D(2026, 4, 25), D(2026, 4, 26))]
    f = fakes()
    again, pending = await close(client, f, acts(FakeSource(late), erp), keep="adjusted")
    assert again.outcome == "executed" and len(again.adjustments) == 1
    adj = erp.entries[again.adjustments[0].external_id]
    assert again.adjustments[0].lines == adj.lines and adj.external_id in again.posted
    assert adj.external_id.startswith(f"rb-rev-{APRIL}-usd-adj-") and adj.currency == "USD"
    assert shape(adj) == [("2400", 0, 500), ("4000", 500, 0)] and adj.balanced
    assert adj.date == D(2026, 4, 30) and "approved by alice@example.com" in adj.memo
    assert len(again.changed) == 1 and again.changed[0].startswith(f"rb-rev-{APRIL}-usd-")
    assert set(erp.entries) == {*first, adj.external_id}  # the originals stay as posted
    assert "-5.00 USD" in pending[0].details()
    assert [a for a, _ in f.audited()] == ["post_journal_entry"]
    # the same figures again: what the ERP holds now agrees, so nothing is proposed
    posts = [c for c in erp.calls if c.startswith("post")]
    third, none = await close(
        client, fakes(), acts(FakeSource(late), erp), decide=None, keep="adjusted_unchanged"
    )
    assert third.outcome == "nothing_new" and none == [] and third.adjustments == []
    assert [c for c in erp.calls if c.startswith("post")] == posts and len(erp.entries) == 3


def test_settle_by_hand() -> None:
    """domain.revenue.settle: a currency with nothing posted goes in full; one whose revenue
    vanished is reversed whole; one adjusted already needs nothing more."""
    from domain.revenue import LedgerLine, load_accounts, settle

    accounts = load_accounts(POLICY_DIR / "revenue.yaml")
    usd = JournalEntry(
        external_id="rb-rev-2026-04-usd-aaa", month=APRIL, currency="USD", date=D(2026, 4, 30),
        memo="m", lines=[JournalLine(account="2400", debit=1_000),
                         JournalLine(account="4000", credit=1_000)],
    )  # fmt: skip
    gbp_held = [
        LedgerLine(external_id="rb-rev-2026-04-gbp-bbb", currency="GBP", account="2400", debit=700),
        LedgerLine(external_id="rb-rev-2026-04-gbp-bbb", currency="GBP", account="4100", credit=700),
    ]  # fmt: skip
    in_full, adjusting = settle(APRIL, [usd], gbp_held, accounts)
    assert in_full == [usd]
    assert [shape(a) for a in adjusting] == [[("2400", 0, 700), ("4100", 700, 0)]]
    assert adjusting[0].currency == "GBP" and adjusting[0].balanced
    # after that adjustment is posted, the same figures settle to nothing
    posted = [
        LedgerLine(external_id=adjusting[0].external_id, currency="GBP", account=x.account,
                   debit=x.debit, credit=x.credit)
        for x in adjusting[0].lines
    ]  # fmt: skip
    assert settle(APRIL, [usd], gbp_held + posted, accounts) == ([usd], [])


async def test_a_dry_run_asks_nobody_and_posts_nothing(client: Client) -> None:
    erp = FakeErp()
    f = fakes()
    result, _ = await close(client, f, acts(FakeSource(april_book()), erp), None, dry_run=True)
    assert result.outcome == "dry_run" and erp.calls == []
    assert sorted(shape(e) for e in result.entries) == sorted([USD_LINES, EUR_LINES])
    assert "decide_policy" not in f.names()


async def test_a_post_retried_after_commit_then_timeout_is_one_entry(client: Client) -> None:
    erp = TimesOutAfterCommit()
    result, _ = await close(client, fakes(), acts(FakeSource(april_book()), erp))
    assert result.outcome == "executed" and len(erp.entries) == 2
    assert len([c for c in erp.calls if c.startswith("post")]) == 3  # one retried


async def test_observe_mode_posts_nothing_and_writes_no_audit(client: Client) -> None:
    erp = FakeErp()
    f = (
        governance(Fakes())
        .on("decide_policy", policy({"post_journal_entry": Outcome.DENY}, mode=Mode.OBSERVE))
        .on("upsert_crm_task", counter("t"))
    )
    result, _ = await close(client, f, acts(FakeSource(april_book()), erp), None)
    assert result.outcome == "blocked" and erp.entries == {}
    assert [c for c in erp.calls if c.startswith("post")] == [] and f.audited() == []


async def test_no_erp_configured_fails_in_one_line(client: Client) -> None:
    with pytest.raises(WorkflowFailureError) as err:
        await close(client, fakes(), acts(FakeSource(april_book()), None), None)
    assert "no ERP is configured" in str(err.value.cause.cause)


def test_an_unbalanced_entry_is_refused_before_any_call() -> None:
    erp = FakeErp()
    entry = JournalEntry(
        external_id="rb-rev-2026-04-usd-bad",
        month=APRIL,
        currency="USD",
        date=D(2026, 4, 30),
        memo="x",
        lines=[JournalLine(account="2400", debit=100), JournalLine(account="4000", credit=90)],
    )
    from temporalio.exceptions import ApplicationError

    with pytest.raises(ApplicationError, match="does not balance"):
        acts(FakeSource([]), erp).revenue_post_entry(PostEntryInput(entry=entry, key="k"))
    assert erp.calls == []
