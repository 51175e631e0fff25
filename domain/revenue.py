"""Revenue recognition: ratable schedules from billing lines, summarized into balanced journal
entries for the ERP (issue 20). Pure and exact: integer minor units, no floats, no clock.

- **Ratable, daily**: each invoice line's amount is spread evenly over the days of its service
  period ``[start, end)`` and allocated to calendar months by day count. Allocation is cumulative
  (``amount * days_so_far // days``), so the months of a line always sum to its amount exactly.
- **Amendments re-spread prospectively**: an upgrade mid-term arrives as a credit for the unused
  old plan and a charge for the new one, both over the remaining period; each is spread over its
  own period, so months already closed never move.
- **Credits and refunds reversed**: negative lines over the period they give back (a refund with
  no service period reverses on its own day).
- **Journal entries** per month and currency (never summed across currencies): revenue credited
  per product account, deferred revenue debited by the total — balanced by construction. Each
  entry has an ``external_id`` derived from its month, currency and content, so a retried post
  is one entry in the ERP, and a corrected month is a different entry, never an overwrite.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

from pydantic import Field, model_validator

from domain.config_file import load_model
from domain.models import Frozen


class RevenueLine(Frozen):
    """One billed amount and the service it pays for (from an invoice or a credit note)."""

    source_id: str  # invoice or credit note line ID (evidence)
    product: str
    currency: str = Field(min_length=3, max_length=3)
    amount: int  # minor units; negative for a credit or refund
    start: date
    end: date  # exclusive

    @model_validator(mode="after")
    def _period(self) -> RevenueLine:
        if self.end <= self.start:
            raise ValueError(f"{self.source_id}: the service period must end after it starts")
        return self


def month_of(d: date) -> str:
    return f"{d.year:04d}-{d.month:02d}"


def _month_starts(start: date, end: date) -> list[date]:
    """The first day of each month the period touches, plus ``end`` as the last boundary."""
    bounds = [start]
    cur = date(start.year, start.month, 1)
    while True:
        cur = date(cur.year + cur.month // 12, cur.month % 12 + 1, 1)
        if cur >= end:
            break
        bounds.append(cur)
    bounds.append(end)
    return bounds


def _share(amount: int, part: int, whole: int) -> int:
    """``amount * part / whole`` rounded toward zero, for either sign."""
    q = abs(amount) * part // whole
    return q if amount >= 0 else -q


def schedule(line: RevenueLine) -> dict[str, int]:
    """The line's revenue per month (``YYYY-MM`` → minor units); sums to ``line.amount``."""
    days = (line.end - line.start).days
    out: dict[str, int] = {}
    bounds = _month_starts(line.start, line.end)
    done = 0
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        upto = (hi - line.start).days
        cum = line.amount if upto == days else _share(line.amount, upto, days)
        out[month_of(lo)] = out.get(month_of(lo), 0) + cum - done
        done = cum
    return out


class MonthRevenue(Frozen):
    month: str
    currency: str
    product: str
    amount: int


def summarize(lines: list[RevenueLine]) -> list[MonthRevenue]:
    """Revenue per month, currency and product, in that order."""
    totals: dict[tuple[str, str, str], int] = defaultdict(int)
    for line in lines:
        for month, amount in schedule(line).items():
            totals[(month, line.currency, line.product)] += amount
    return [
        MonthRevenue(month=m, currency=c, product=p, amount=a)
        for (m, c, p), a in sorted(totals.items())
        if a != 0
    ]


# --- journal entries ----------------------------------------------------------------------------


class Accounts(Frozen):
    """``policies/revenue.yaml``: the ERP accounts the entries post to."""

    deferred_revenue: str
    revenue: str
    #: product code → revenue account, where a product has its own
    products: dict[str, str] = {}
    memo: str = "RevBridge revenue recognition"

    def revenue_for(self, product: str) -> str:
        return self.products.get(product, self.revenue)


class JournalLine(Frozen):
    account: str
    debit: int = 0
    credit: int = 0
    memo: str = ""


class JournalEntry(Frozen):
    external_id: str
    month: str
    currency: str
    #: the last day of the month (the posting date)
    date: date
    memo: str
    lines: list[JournalLine]

    @property
    def balanced(self) -> bool:
        return sum(x.debit for x in self.lines) == sum(x.credit for x in self.lines)


def _last_day(month: str) -> date:
    year, mon = (int(p) for p in month.split("-"))
    first_next = date(year + mon // 12, mon % 12 + 1, 1)
    return first_next - timedelta(days=1)


def journal_entries(
    lines: list[RevenueLine], accounts: Accounts, *, through: str | None = None
) -> list[JournalEntry]:
    """One balanced entry per month and currency (months up to ``through`` when given): revenue
    credited per product account (a negative month is a debit), deferred revenue the other side."""
    by_entry: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in summarize(lines):
        if through is not None and row.month > through:
            continue
        by_entry[(row.month, row.currency)][accounts.revenue_for(row.product)] += row.amount
    entries: list[JournalEntry] = []
    for (month, currency), per_account in sorted(by_entry.items()):
        jl: list[JournalLine] = []
        for account, amount in sorted(per_account.items()):
            if amount == 0:
                continue
            jl.append(
                JournalLine(
                    account=account,
                    credit=max(amount, 0),
                    debit=max(-amount, 0),
                    memo=f"revenue {month}",
                )
            )
        total = sum(per_account.values())
        if total:
            jl.insert(
                0,
                JournalLine(
                    account=accounts.deferred_revenue,
                    debit=max(total, 0),
                    credit=max(-total, 0),
                    memo=f"deferred revenue released {month}",
                ),
            )
        if not jl:
            continue
        content = "|".join(f"{x.account}:{x.debit}:{x.credit}" for x in jl)
        digest = hashlib.sha256(f"{month}|{currency}|{content}".encode()).hexdigest()[:12]
        entries.append(
            JournalEntry(
                external_id=f"rb-rev-{month}-{currency.lower()}-{digest}",
                month=month,
                currency=currency,
                date=_last_day(month),
                memo=f"{accounts.memo}, {month} ({currency})",
                lines=jl,
            )
        )
    return entries


class RevenueConfigError(Exception):
    pass


def load_accounts(path: Path) -> Accounts:
    return load_model(path, Accounts, RevenueConfigError, key="accounts")
