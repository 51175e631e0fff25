"""A refund with no credit note reverses revenue (domain.revenue.refund_lines), by hand-computed
cases at 1.00 a day: the unused part over the days ahead, revenue already recognized on the
refund's own day, shared among the invoice's lines in proportion, capped at the invoice, and
never in a month before the refund."""

from __future__ import annotations

from datetime import date

from domain.revenue import refund_lines, schedule, summarize
from tests.revenue.conftest import line

D = date


def by_month(lines: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for x in lines:
        for month, amount in schedule(x).items():
            out[month] = out.get(month, 0) + amount
    return {m: a for m, a in sorted(out.items()) if a}


def test_the_unused_part_is_given_back_over_the_days_ahead() -> None:
    # a year at 365.00 from Jan 1 (1.00 a day); on Apr 11 the 265 unused days are refunded
    year = line(36_500, D(2026, 1, 1), D(2027, 1, 1), sid="in_1/il_1")
    back = refund_lines([year], 26_500, D(2026, 4, 11), "re_1")
    assert [(x.amount, x.start, x.end) for x in back] == [(-26_500, D(2026, 4, 11), D(2027, 1, 1))]
    months = by_month([year, *back])
    # April keeps its first 10 days; January to March never move; nothing after April
    assert months == {"2026-01": 3_100, "2026-02": 2_800, "2026-03": 3_100, "2026-04": 1_000}


def test_a_full_refund_mid_term_reverses_what_was_recognized_on_its_day() -> None:
    year = line(36_500, D(2026, 1, 1), D(2027, 1, 1), sid="in_1/il_1")
    back = refund_lines([year], 36_500, D(2026, 4, 11), "re_2")
    assert sorted((x.amount, x.start, x.end) for x in back) == [
        (-26_500, D(2026, 4, 11), D(2027, 1, 1)),  # the deferred part, cleared
        (-10_000, D(2026, 4, 11), D(2026, 4, 12)),  # Jan 1 - Apr 10, reversed on Apr 11
    ]
    months = by_month([year, *back])
    # the closed months stay as posted; April carries the reversal; the year nets to zero
    assert months == {"2026-01": 3_100, "2026-02": 2_800, "2026-03": 3_100, "2026-04": -9_000}
    assert sum(months.values()) == 0


def test_a_refund_after_the_period_reverses_on_its_own_day() -> None:
    april = line(3_000, D(2026, 4, 1), D(2026, 5, 1), sid="in_2/il_1")
    back = refund_lines([april], 3_000, D(2026, 5, 10), "re_3")
    assert [(x.amount, x.start, x.end) for x in back] == [(-3_000, D(2026, 5, 10), D(2026, 5, 11))]
    assert by_month([april, *back]) == {"2026-04": 3_000, "2026-05": -3_000}


def test_a_partial_refund_is_shared_among_the_lines_in_proportion() -> None:
    # 30.00 of product a and 10.00 of b for April; 20.00 refunded on Apr 16: a 15.00, b 5.00,
    # each within what the line had not recognized yet (15 and 5 of their 15 days ahead)
    a = line(3_000, D(2026, 4, 1), D(2026, 5, 1), product="a", sid="in_3/il_a")
    b = line(1_000, D(2026, 4, 1), D(2026, 5, 1), product="b", sid="in_3/il_b")
    back = refund_lines([a, b], 2_000, D(2026, 4, 16), "re_4")
    assert [(x.product, x.amount, x.start) for x in back] == [
        ("a", -1_500, D(2026, 4, 16)),
        ("b", -500, D(2026, 4, 16)),
    ]
    assert {(r.product, r.amount) for r in summarize([a, b, *back])} == {("a", 1_500), ("b", 500)}


def test_a_refund_is_capped_at_the_invoice_and_a_share_splits_exactly() -> None:
    a = line(1_000, D(2026, 4, 1), D(2026, 5, 1), product="a", sid="in_4/il_a")
    b = line(2_000, D(2026, 4, 1), D(2026, 5, 1), product="b", sid="in_4/il_b")
    c = line(-500, D(2026, 4, 1), D(2026, 5, 1), product="c", sid="in_4/il_c")  # a discount line
    over = refund_lines([a, b, c], 9_999, D(2026, 4, 1), "re_5")
    assert sum(x.amount for x in over) == -3_000  # the invoice's revenue lines, no more
    odd = refund_lines([a, b], 100, D(2026, 4, 1), "re_6")
    assert [x.amount for x in odd] == [-33, -67] and refund_lines([a], 0, D(2026, 4, 1), "x") == []
