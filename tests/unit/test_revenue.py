"""Revenue recognition (domain/revenue.py) against hand-computed cases: a mid-month start, an
upgrade mid-term, a cancellation with a credit, several currencies; entries balance."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.revenue import (
    RevenueConfigError,
    RevenueLine,
    journal_entries,
    load_accounts,
    schedule,
    summarize,
)

ACCOUNTS = load_accounts(Path(__file__).resolve().parents[2] / "policies" / "revenue.yaml")


def line(amount: int, start: date, end: date, product: str = "pro", cur: str = "USD", sid: str = "in-1") -> RevenueLine:  # fmt: skip
    return RevenueLine(
        source_id=sid, product=product, currency=cur, amount=amount, start=start, end=end
    )


def test_a_mid_month_start_splits_by_days() -> None:
    # 31.00 for Jan 15 - Feb 15 (31 days, 1.00 a day): Jan 15-31 is 17 days, Feb 1-14 is 14
    assert schedule(line(3_100, date(2026, 1, 15), date(2026, 2, 15))) == {
        "2026-01": 1_700,
        "2026-02": 1_400,
    }


def test_an_upgrade_mid_term_re_spreads_only_the_months_ahead() -> None:
    # a year at 365.00 (1.00 a day); on Jul 1 an upgrade to 730.00 a year: a credit for the 184
    # unused days of the old plan and a charge for the new one over the same days
    year = line(36_500, date(2026, 1, 1), date(2027, 1, 1), sid="in-1")
    credit = line(-18_400, date(2026, 7, 1), date(2027, 1, 1), sid="cn-1")
    upgrade = line(36_800, date(2026, 7, 1), date(2027, 1, 1), sid="in-2")
    months = {r.month: r.amount for r in summarize([year, credit, upgrade])}
    assert months["2026-06"] == 3_000  # 30 days at 1.00: untouched by the upgrade
    assert months["2026-07"] == 6_200  # 31 days at 2.00
    assert months["2026-12"] == 6_200
    assert sum(months.values()) == 36_500 - 18_400 + 36_800


def test_a_cancellation_with_a_credit_gives_back_only_its_days() -> None:
    # 30.00 for April (1.00 a day), cancelled on the 21st with 10.00 credited for the last 10 days
    rows = summarize(
        [
            line(3_000, date(2026, 4, 1), date(2026, 5, 1)),
            line(-1_000, date(2026, 4, 21), date(2026, 5, 1), sid="cn-2"),
        ]
    )
    assert [(r.month, r.amount) for r in rows] == [("2026-04", 2_000)]


def test_currencies_are_never_added_together() -> None:
    rows = summarize(
        [
            line(3_000, date(2026, 4, 1), date(2026, 5, 1), cur="USD"),
            line(2_500, date(2026, 4, 1), date(2026, 5, 1), cur="EUR", sid="in-9"),
        ]
    )
    assert {(r.currency, r.amount) for r in rows} == {("USD", 3_000), ("EUR", 2_500)}
    entries = journal_entries(
        [
            line(3_000, date(2026, 4, 1), date(2026, 5, 1), cur="USD"),
            line(2_500, date(2026, 4, 1), date(2026, 5, 1), cur="EUR", sid="in-9"),
        ],
        ACCOUNTS,
    )
    assert sorted(e.currency for e in entries) == ["EUR", "USD"]


def test_journal_entries_balance_per_month_with_product_accounts() -> None:
    lines = [
        line(3_100, date(2026, 1, 15), date(2026, 2, 15)),
        line(50_000, date(2026, 1, 15), date(2026, 1, 16), product="onboarding", sid="in-3"),
    ]
    jan, feb = journal_entries(lines, ACCOUNTS)
    assert jan.month == "2026-01" and jan.date == date(2026, 1, 31) and jan.balanced
    assert [(x.account, x.debit, x.credit) for x in jan.lines] == [
        ("2400", 51_700, 0),
        ("4000", 0, 1_700),
        ("4100", 0, 50_000),
    ]
    assert feb.balanced and feb.date == date(2026, 2, 28)
    assert journal_entries(lines, ACCOUNTS, through="2026-01") == [jan]


def test_a_retried_post_has_the_same_external_id_and_a_corrected_month_a_new_one() -> None:
    lines = [line(3_000, date(2026, 4, 1), date(2026, 5, 1))]
    (first,) = journal_entries(lines, ACCOUNTS)
    (again,) = journal_entries(list(lines), ACCOUNTS)
    assert first.external_id == again.external_id and first.external_id.startswith(
        "rb-rev-2026-04-usd-"
    )
    corrected = lines + [line(-1_000, date(2026, 4, 21), date(2026, 5, 1), sid="cn-2")]
    (fixed,) = journal_entries(corrected, ACCOUNTS)
    assert fixed.external_id != first.external_id


def test_a_month_whose_revenue_nets_to_a_loss_debits_revenue() -> None:
    lines = [line(-900, date(2026, 3, 1), date(2026, 3, 10), sid="cn-3")]
    (entry,) = journal_entries(lines, ACCOUNTS)
    assert entry.balanced
    assert [(x.account, x.debit, x.credit) for x in entry.lines] == [
        ("2400", 0, 900),
        ("4000", 900, 0),
    ]


@given(
    st.integers(min_value=-(10**9), max_value=10**9),
    st.dates(min_value=date(2020, 1, 1), max_value=date(2030, 1, 1)),
    st.integers(min_value=1, max_value=1_200),
)
def test_a_schedule_always_sums_to_its_line(amount: int, start: date, days: int) -> None:
    from datetime import timedelta

    sched = schedule(line(amount, start, start + timedelta(days=days)))
    assert sum(sched.values()) == amount
    assert all(abs(v) <= abs(amount) for v in sched.values())


def test_a_period_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        line(100, date(2026, 5, 1), date(2026, 5, 1))


def test_a_bad_accounts_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "revenue.yaml"
    bad.write_text("accounts:\n  revenue: '4000'\n")
    with pytest.raises(RevenueConfigError, match=r"^revenue.yaml: accounts.deferred_revenue: "):
        load_accounts(bad)
