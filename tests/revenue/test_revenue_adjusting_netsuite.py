"""The adjusting entry against the NetSuite sandbox (TBA, Authlib-signed): the lines of April's
posted entries read back through the REST record service (``expandSubResources``) with their
account numbers and amounts in minor units; a late credit settles to one adjusting entry for the
difference only, posted by its external ID — twice, and the sandbox ledger holds it once — after
which the same figures settle to nothing."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from connectors.netsuite import NetSuiteErp
from connectors.revenue.netsuite import ledger_lines
from domain.revenue import journal_entries, load_accounts, settle
from sandbox.framework import ServerThread
from sandbox.netsuite import NetSuiteEmulator
from tests.revenue.conftest import POLICY_DIR, line
from tests.revenue.test_revenue_close import APRIL, D, april_book, shape
from tests.revenue.test_revenue_sandboxes import ACCOUNT, TBA, netsuite


@pytest.fixture(scope="module")
def ns() -> Iterator[tuple[NetSuiteErp, str]]:
    with ServerThread({NetSuiteEmulator(account_id=ACCOUNT, tba=[TBA]): 0}) as thread:
        yield netsuite(thread.urls), thread.urls["netsuite"]


def test_a_late_credit_is_one_adjusting_entry_in_netsuite(ns: tuple[NetSuiteErp, str]) -> None:
    erp, url = ns
    accounts = load_accounts(POLICY_DIR / "revenue.yaml")
    posted = journal_entries(april_book(), accounts, through=APRIL)
    posted = [e for e in posted if e.month == APRIL]
    for e in posted:
        erp.post_journal_entry(e)

    held = ledger_lines(erp, APRIL, accounts)
    by_entry = {}
    for x in held:
        by_entry.setdefault(x.external_id, []).append((x.account, x.debit, x.credit))
    assert by_entry == {e.external_id: shape(e) for e in posted}  # numbers and minor units
    assert {x.currency for x in held} == {"USD", "EUR"}
    assert settle(APRIL, posted, held, accounts) == ([], [])  # unchanged: nothing to post

    late = [*april_book(), line(-500, D(2026, 4, 25), D(2026, 4, 26))]
    fresh = [e for e in journal_entries(late, accounts, through=APRIL) if e.month == APRIL]
    in_full, adjusting = settle(APRIL, fresh, held, accounts)
    assert in_full == [] and len(adjusting) == 1
    adj = adjusting[0]
    assert shape(adj) == [("2400", 0, 500), ("4000", 500, 0)] and adj.currency == "USD"
    first = erp.post_journal_entry(adj)
    assert erp.post_journal_entry(adj) == first  # a retry finds it by its external ID
    ledger = httpx.get(url + "/_sandbox/netsuite/journal_entries", timeout=10).json()
    ids = [r.get("externalId") for r in ledger["journal_entries"]]
    assert ids.count(adj.external_id) == 1 and len(ids) == len(posted) + 1

    after = ledger_lines(erp, APRIL, accounts)
    assert settle(APRIL, fresh, after, accounts) == ([], [])
