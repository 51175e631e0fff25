"""Revenue recognition's activities (issue 20): read a month's billing documents page by page,
read what the ERP holds for the month, post one approved journal entry.

- ``revenue_accounts``: the ERP accounts of ``policies/revenue.yaml`` (read at each close, like
  the other policy files: an edit applies to the next close).
- ``revenue_read_page``: one page of invoices and credit notes issued in the lookback window,
  reduced inside the activity to what they recognize in the month, per currency and product
  (``domain.revenue.month_totals``), so the run's history holds a few totals per page, never
  the lines.
- ``revenue_posted_entries``: RevBridge's entries already in the ERP for the month (SuiteQL).
- ``revenue_ledger_lines``: those entries' lines (``connectors/revenue/netsuite.py``), for the
  adjusting entry of a month that changed after it was posted.
- ``revenue_post_entry`` (a write): refuses an unbalanced entry before any call, then posts
  through ``NetSuiteErp.post_journal_entry``, exactly once by the entry's external ID (a retry
  after a committed call whose answer was lost finds the entry and writes nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import vendor_errors
from activities.writes import writes
from connectors.revenue import RevenueSource
from connectors.revenue.netsuite import ledger_lines
from domain.revenue import (
    Accounts,
    LedgerEntry,
    LedgerLine,
    PostedEntry,
    PostEntryInput,
    RevenuePage,
    RevenuePageInput,
    load_accounts,
    month_totals,
)

REVENUE_FILE = "revenue.yaml"


class RevenueActivities:
    def __init__(self, source: RevenueSource, erp: Any | None, accounts_path: Path) -> None:
        self.source = source
        #: a ``connectors.netsuite.NetSuiteErp`` (or anything with its three methods); None when
        #: the deployment configures no ERP: a close can still be computed (a dry run)
        self.erp = erp
        self.accounts_path = Path(accounts_path)

    def methods(self) -> list[Any]:
        return [
            self.revenue_accounts,
            self.revenue_read_page,
            self.revenue_posted_entries,
            self.revenue_ledger_lines,
            self.revenue_post_entry,
        ]

    @activity.defn(name="revenue_accounts")
    def revenue_accounts(self, month: str) -> Accounts:
        """The accounts the month's entries post to (``month`` names the close in history)."""
        return load_accounts(self.accounts_path)

    @activity.defn(name="revenue_read_page")
    @vendor_errors
    def revenue_read_page(self, input: RevenuePageInput) -> RevenuePage:
        docs = self.source.revenue_lines(
            input.issued_from, input.issued_to, input.cursor, input.limit
        )
        return RevenuePage(
            totals=month_totals(docs.lines, input.month),
            documents=docs.documents,
            lines=len(docs.lines),
            next_cursor=docs.next_cursor,
        )

    def _erp(self) -> Any:
        if self.erp is None:
            raise ApplicationError(
                "no ERP is configured: set NETSUITE_ACCOUNT_ID and its credentials "
                "(docs/revenue.md), or close the month with --dry-run",
                type="revenue.no_erp",
                non_retryable=True,
            )
        return self.erp

    @activity.defn(name="revenue_posted_entries")
    @vendor_errors
    def revenue_posted_entries(self, month: str) -> list[LedgerEntry]:
        return [
            LedgerEntry(internal_id=e.internal_id, external_id=e.external_id)
            for e in self._erp().find_entries(month)
        ]

    @activity.defn(name="revenue_ledger_lines")
    @vendor_errors
    def revenue_ledger_lines(self, month: str) -> list[LedgerLine]:
        """Every line of RevBridge's entries for ``month`` in the ERP (adjustments too): what a
        close compares the month's figures with (``domain.revenue.settle``)."""
        return ledger_lines(self._erp(), month, load_accounts(self.accounts_path))

    @writes
    @activity.defn(name="revenue_post_entry")
    @vendor_errors
    def revenue_post_entry(self, input: PostEntryInput) -> PostedEntry:
        entry = input.entry
        if not entry.balanced:
            raise ApplicationError(
                f"journal entry {entry.external_id} does not balance: not posted",
                type="revenue.unbalanced",
                non_retryable=True,
            )
        internal_id = self._erp().post_journal_entry(entry)
        return PostedEntry(external_id=entry.external_id, internal_id=internal_id)
