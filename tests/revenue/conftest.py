"""Revenue recognition tests: the workflow on the time-skipping server with the REAL revenue
activities over an in-memory billing source and ERP (or the sandboxes), and fakes for the
governance around them (policy, approvers, the CRM audit)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.revenue import RevenueActivities
from activities.writes import activity_name
from connectors.base import ConnectorError, ErrorKind
from connectors.revenue import RevenueDocuments
from domain.revenue import JournalEntry, RevenueLine
from tests.conftest import own_time_skipping
from tests.fast.fakes import REAL_NAMES, Fakes

#: this package's own time-skipping server (why: tests/conftest.py own_time_skipping)
time_env = pytest.fixture(scope="package")(own_time_skipping)

POLICY_DIR = Path(__file__).resolve().parents[2] / "policies"


@pytest.fixture
def client(time_env: WorkflowEnvironment) -> Client:
    return time_env.client


def line(
    amount: int, start: date, end: date, product: str = "pro", cur: str = "USD", sid: str = ""
) -> RevenueLine:
    return RevenueLine(
        source_id=sid or f"in-{uuid.uuid4().hex[:6]}",
        product=product,
        currency=cur,
        amount=amount,
        start=start,
        end=end,
    )


@dataclass
class FakeSource:
    """Billing documents as lines, served ``per_page`` lines a page (the cursor an offset)."""

    lines: list[RevenueLine]
    per_page: int = 2
    name: str = "fakebill"
    windows: list[tuple[date, date]] = field(default_factory=list)

    def revenue_lines(
        self, issued_from: date, issued_to: date, cursor: str | None, limit: int
    ) -> RevenueDocuments:
        self.windows.append((issued_from, issued_to))
        at = int(cursor or 0)
        page = self.lines[at : at + self.per_page]
        nxt = at + self.per_page
        return RevenueDocuments(
            lines=page,
            documents=len(page),
            next_cursor=str(nxt) if nxt < len(self.lines) else None,
        )


@dataclass
class FakeErp:
    """NetSuite's ledger in memory, keyed by external ID the way ``NetSuiteErp`` posts."""

    entries: dict[str, JournalEntry] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def find_entries(self, month: str) -> list[Any]:
        self.calls.append(f"find {month}")
        from connectors.netsuite import PostedEntry

        return [
            PostedEntry(internal_id=self.ids[x], external_id=x)
            for x in self.entries
            if x.startswith(f"rb-rev-{month}-")
        ]

    def ledger_lines(self, month: str) -> list[Any]:
        """The lines of the month's entries as the ledger holds them (NetSuite's are read
        through the record service: connectors/revenue/netsuite.py)."""
        self.calls.append(f"lines {month}")
        from domain.revenue import LedgerLine

        return [
            LedgerLine(
                external_id=x, currency=e.currency, account=ln.account, debit=ln.debit,
                credit=ln.credit,
            )
            for x, e in self.entries.items()
            if x.startswith(f"rb-rev-{month}-")
            for ln in e.lines
        ]  # fmt: skip

    def post_journal_entry(self, entry: JournalEntry) -> str:
        self.calls.append(f"post {entry.external_id}")
        if entry.external_id not in self.entries:
            self.entries[entry.external_id] = entry
            self.ids[entry.external_id] = str(1000 + len(self.ids))
        return self.ids[entry.external_id]


class TimesOutAfterCommit(FakeErp):
    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    def post_journal_entry(self, entry: JournalEntry) -> str:
        found = super().post_journal_entry(entry)
        if not self.failed:
            self.failed = True
            raise ConnectorError("netsuite", ErrorKind.RETRYABLE, "journal entry: timeout")
        return found


@asynccontextmanager
async def revenue_worker(
    client: Client, fakes: Fakes, acts: RevenueActivities
) -> AsyncIterator[str]:
    """A worker running every real workflow: the real revenue activities, fakes for the rest."""
    from workers.main import WORKFLOWS

    mine = {activity_name(m) for m in acts.methods()}
    activities = [fakes._fake(n) for n in sorted(REAL_NAMES - mine)] + acts.methods()
    task_queue = f"rev-{uuid.uuid4().hex[:10]}"
    with ThreadPoolExecutor(4) as pool:
        async with Worker(
            client,
            task_queue=task_queue,
            workflows=WORKFLOWS,
            activities=activities,
            activity_executor=pool,
        ):
            yield task_queue
