"""``revbridge revenue close``: a dry run prints the entries and asks nobody; a real close
returns once the entries wait for finance, printing them with the line to approve them; the
month is checked before anything starts."""

from __future__ import annotations

from datetime import date

import pytest
from temporalio.client import Client

import cli.approvals
from cli.config import CliError
from cli.revenue import close, month_arg
from domain.settings import Settings
from tests.revenue.conftest import FakeErp, FakeSource, revenue_worker
from tests.revenue.test_revenue_close import APRIL, acts, april_book, fakes


async def test_close_dry_run_then_waiting_for_finance(
    client: Client, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def connect() -> Client:
        return client

    monkeypatch.setattr(cli.approvals, "connect", connect)
    erp = FakeErp()
    async with revenue_worker(client, fakes(), acts(FakeSource(april_book()), erp)) as tq:
        mine = settings.model_copy(update={"task_queue": tq, "billing": "fakebill"})
        dry = await close(mine, APRIL, dry_run=True)
        assert "dry run: nothing asked, nothing posted" in dry
        assert "Dr 585.00 USD" in dry and "Cr 500.00 USD" in dry and "Dr 30.00 EUR" in dry
        try:
            waiting = await close(mine, APRIL, dry_run=False)
        finally:  # no run outlives its worker on the shared time-skipping server
            await client.get_workflow_handle(f"revenue-close:fakebill:{APRIL}").terminate()
    assert "waiting for finance's approval" in waiting
    assert f"revbridge approve revenue-close:fakebill:{APRIL} --action act-" in waiting
    assert "alice@example.com" in waiting and erp.entries == {}


def test_the_month_is_checked_first() -> None:
    with pytest.raises(CliError, match="YYYY-MM"):
        month_arg("2026-4")
    assert month_arg("2026-04") == "2026-04"


def test_an_adjusting_entry_is_printed_beside_the_changed_one() -> None:
    from cli.revenue import render
    from domain.revenue import JournalEntry, JournalLine, RevenueCloseResult

    def entry(ext: str, lines: list[JournalLine]) -> JournalEntry:
        return JournalEntry(external_id=ext, month=APRIL, currency="USD",
                            date=date(2026, 4, 30), memo="m", lines=lines)  # fmt: skip

    fresh = entry("rb-rev-2026-04-usd-new", [JournalLine(account="2400", debit=58_000),
                                             JournalLine(account="4000", credit=58_000)])  # fmt: skip
    adj = entry("rb-rev-2026-04-usd-adj-abc", [JournalLine(account="2400", credit=500),
                                               JournalLine(account="4000", debit=500)])  # fmt: skip
    r = RevenueCloseResult(month=APRIL, outcome="executed", approver="alice@example.com",
                           entries=[fresh], changed=[fresh.external_id], adjustments=[adj],
                           posted={adj.external_id: "1003"})  # fmt: skip
    text = render(r, f"revenue-close:fakebill:{APRIL}", None)
    assert "rb-rev-2026-04-usd-new (2026-04-30, changed since it was posted: the difference" in text
    assert "rb-rev-2026-04-usd-adj-abc (2026-04-30, adjusting entry, posted as 1003)" in text
    assert "Cr 5.00 USD" in text and "Dr 5.00 USD" in text
