"""Revenue recognition: ratable schedules from billing lines, summarized into balanced journal
entries for the ERP (issue 20). Pure and exact: integer minor units, no floats, no clock.

- **Ratable, daily**: each invoice line's amount is spread evenly over the days of its service
  period ``[start, end)`` and allocated to calendar months by day count. Allocation is cumulative
  (``amount * days_so_far // days``), so the months of a line always sum to its amount exactly.
- **Amendments re-spread prospectively**: an upgrade mid-term arrives as a credit for the unused
  old plan and a charge for the new one, both over the remaining period; each is spread over its
  own period, so months already closed never move.
- **Credits and refunds reversed**: negative lines over the period they give back (a refund with
  no service period reverses on its own day); a refund without a credit note
  (:func:`refund_lines`) gives back the days ahead, and reverses any revenue already recognized
  on its own day.
- **Journal entries** per month and currency (never summed across currencies): revenue credited
  per product account, deferred revenue debited by the total — balanced by construction. Each
  entry has an ``external_id`` derived from its month, currency and content, so a retried post
  is one entry in the ERP, and a corrected month is a different entry, never an overwrite.
- **Adjusting entries**: a month that changed after it was posted is compared, account by
  account, with every line the ERP holds for it (:func:`settle`); only the difference is posted,
  as its own balanced entry keyed by what it adjusts and its content.
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


def refund_lines(
    lines: list[RevenueLine], amount: int, on: date, source_id: str
) -> list[RevenueLine]:
    """The revenue reversed by a refund of ``amount`` (minor units) of a paid invoice, made on
    ``on`` with no credit note (Stripe: a refund of the invoice's payment intent that no credit
    note names), given the invoice's revenue ``lines``.

    The refund is shared among the invoice's lines in proportion to their amounts (capped at the
    invoice's revenue; shares sum exactly). Each share first gives back what the line had not yet
    recognized on ``on``, spread over its remaining service days ``[on, end)``, so only the months
    ahead change; whatever is left of the share (revenue already recognized) is reversed on the
    refund's own day — never in a month before it, so a closed month never moves. A refund of
    the unused part reverses exactly the days ahead; a full refund mid-term cancels the months
    ahead and reverses the months behind on the refund's day (Stripe's own methodology: the
    recognized part becomes contra revenue, the deferred part is cleared)."""
    positive = [x for x in lines if x.amount > 0]
    total = sum(x.amount for x in positive)
    amount = min(amount, total)
    if amount <= 0:
        return []
    out: list[RevenueLine] = []
    done = cum = 0
    for line in positive:
        cum += line.amount
        share = amount * cum // total - done
        done += share
        if share == 0:
            continue
        days = (line.end - line.start).days
        lo = max(line.start, on)
        ahead = 0
        if lo < line.end:
            unrecognized = line.amount - line.amount * (lo - line.start).days // days
            ahead = min(share, unrecognized)
        if ahead:
            out.append(
                line.model_copy(
                    update={
                        "source_id": f"{source_id}/{line.source_id}",
                        "amount": -ahead,
                        "start": lo,
                    }
                )
            )
        if share - ahead:
            out.append(
                line.model_copy(
                    update={
                        "source_id": f"{source_id}/{line.source_id}/recognized",
                        "amount": -(share - ahead),
                        "start": on,
                        "end": on + timedelta(days=1),
                    }
                )
            )
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
    rows = [r for r in summarize(lines) if through is None or r.month <= through]
    return entries_from_totals(rows, accounts)


def entries_from_totals(rows: list[MonthRevenue], accounts: Accounts) -> list[JournalEntry]:
    """:func:`journal_entries` from revenue already summarized per month, currency and product
    (what a month close adds up page by page, so it never holds every line at once)."""
    by_entry: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rows:
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


# --- a posted month that changed: the adjusting entry ----------------------------------------------


class LedgerLine(Frozen):
    """One line of a RevBridge journal entry as the ERP holds it (minor units)."""

    external_id: str
    currency: str
    account: str
    debit: int = 0
    credit: int = 0


def currency_of(external_id: str) -> str:
    """``rb-rev-2026-04-usd-…`` → ``USD`` (the entry's currency is in its external ID)."""
    parts = external_id.split("-")
    return parts[4].upper() if len(parts) > 4 else ""


def _net(lines: list[tuple[str, int, int]]) -> dict[str, int]:
    """Credits less debits per account."""
    out: dict[str, int] = defaultdict(int)
    for account, debit, credit in lines:
        out[account] += credit - debit
    return dict(out)


def settle(
    month: str, entries: list[JournalEntry], held: list[LedgerLine], accounts: Accounts
) -> tuple[list[JournalEntry], list[JournalEntry]]:
    """What a close posts for ``month``, given the month's fresh ``entries`` (one per currency)
    and what the ERP already ``held`` for it (every RevBridge entry's lines, adjustments too):
    ``(in_full, adjusting)``.

    - A currency the ERP holds nothing for: its entry, in full.
    - A currency the ERP holds entries for: per account, what the entry says less what the ERP
      holds (credits less debits); nothing when every account agrees (an unchanged re-close, or
      a change already adjusted), else one **adjusting entry** for the difference — balanced,
      since both sides are. Its external ID is ``rb-rev-<month>-<cur>-adj-<hash>`` over the
      entries it adjusts and its lines: a retried post is one entry, and once posted the next
      close finds nothing left to adjust.
    """
    fresh = {e.currency.upper(): e for e in entries}
    by_cur: dict[str, list[LedgerLine]] = defaultdict(list)
    for line in held:
        by_cur[line.currency.upper()].append(line)
    in_full, adjusting = [], []
    for cur in sorted(set(fresh) | set(by_cur)):
        entry = fresh.get(cur)
        if cur not in by_cur:
            if entry is not None:
                in_full.append(entry)
            continue
        want = _net([(x.account, x.debit, x.credit) for x in entry.lines]) if entry else {}
        have = _net([(x.account, x.debit, x.credit) for x in by_cur[cur]])
        diff = {a: want.get(a, 0) - have.get(a, 0) for a in set(want) | set(have)}
        diff = {a: d for a, d in diff.items() if d}
        if not diff:
            continue
        order = sorted(diff, key=lambda a: (a != accounts.deferred_revenue, a))
        jl = [
            JournalLine(
                account=a,
                credit=max(diff[a], 0),
                debit=max(-diff[a], 0),
                memo=f"adjusting {'deferred revenue' if a == accounts.deferred_revenue else 'revenue'}"
                f" {month}",
            )
            for a in order
        ]
        basis = ",".join(sorted({x.external_id for x in by_cur[cur]}))
        content = "|".join(f"{x.account}:{x.debit}:{x.credit}" for x in jl)
        digest = hashlib.sha256(f"{month}|{cur}|{basis}|{content}".encode()).hexdigest()[:12]
        adjusting.append(
            JournalEntry(
                external_id=f"rb-rev-{month}-{cur.lower()}-adj-{digest}",
                month=month,
                currency=cur,
                date=_last_day(month),
                memo=f"{accounts.memo}, {month} ({cur}): adjusting entry",
                lines=jl,
            )
        )
    return in_full, adjusting


# --- a month close, page by page ------------------------------------------------------------------


def month_bounds(month: str) -> tuple[date, date]:
    """``YYYY-MM`` → its first day and the first day of the next month (exclusive)."""
    year, mon = (int(p) for p in month.split("-"))
    return date(year, mon, 1), date(year + mon // 12, mon % 12 + 1, 1)


def previous_month(today: date) -> str:
    first = date(today.year, today.month, 1) - timedelta(days=1)
    return month_of(first)


def month_totals(lines: list[RevenueLine], month: str) -> list[MonthRevenue]:
    """The revenue ``lines`` recognize in ``month`` alone, per currency and product (a page's
    share of the close; pages add up with :func:`add_totals`)."""
    lo, hi = month_bounds(month)
    touching = [x for x in lines if x.start < hi and x.end > lo]
    return [r for r in summarize(touching) if r.month == month]


def add_totals(*parts: list[MonthRevenue]) -> list[MonthRevenue]:
    sums: dict[tuple[str, str, str], int] = defaultdict(int)
    for part in parts:
        for r in part:
            sums[(r.month, r.currency, r.product)] += r.amount
    return [
        MonthRevenue(month=m, currency=c, product=p, amount=a)
        for (m, c, p), a in sorted(sums.items())
        if a != 0
    ]


def entry_total(entry: JournalEntry, deferred_account: str) -> int:
    """The revenue an entry recognizes (credits less debits on every account but deferred
    revenue), minor units."""
    return sum(x.credit - x.debit for x in entry.lines if x.account != deferred_account)


def unbalanced(entries: list[JournalEntry]) -> list[str]:
    """The external IDs of entries whose debits and credits differ (never posted)."""
    return [e.external_id for e in entries if not e.balanced]


def format_minor(amount: int, currency: str) -> str:
    exp = 0 if currency.upper() in {"JPY", "KRW", "CLP", "VND", "ISK"} else 2
    exp = 3 if currency.upper() in {"BHD", "KWD", "OMR", "JOD", "TND"} else exp
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    return f"{sign}{whole:,}" + (f".{frac:0{exp}d}" if exp else "") + f" {currency.upper()}"


class RevenueConfigError(Exception):
    pass


def load_accounts(path: Path) -> Accounts:
    return load_model(path, Accounts, RevenueConfigError, key="accounts")


# --- the month close's messages (Temporal payloads) ------------------------------------------------

WORKFLOW_TYPE = "RevenuePostingWorkflow"
SCHEDULE_ID = "revenue-close"
USE_CASE = "revenue_recognition"


def close_workflow_id(billing: str, month: str) -> str:
    """One close per billing platform and month: ``revenue-close:stripe:2026-11`` (no PII)."""
    return f"revenue-close:{billing}:{month}"


class RevenueCloseInput(Frozen):
    billing: str
    #: ``YYYY-MM``; None: the month before the run's start (what the monthly schedule closes)
    month: str | None = None
    #: compute and show the entries, ask nobody, post nothing
    dry_run: bool = False
    page_size: int = 100
    #: how far back invoices are read: a line billed this long ago can still recognize revenue
    #: in the month (annual and multi-year plans)
    lookback_months: int = Field(default=24, ge=1, le=120)
    remind_after_hours: int = 24
    expire_after_hours: int = 120
    #: history events after which a long read continues as new (a very large book)
    history_limit: int = Field(default=8_000, ge=10)
    # carried across continue-as-new (a very large book's close): where the read stands
    cursor: str | None = None
    totals: list[MonthRevenue] = []
    documents: int = 0
    lines: int = 0
    runs: int = 0


class RevenuePageInput(Frozen):
    month: str
    issued_from: date
    issued_to: date
    cursor: str | None = None
    limit: int = 100


class RevenuePage(Frozen):
    """One page of billing documents, reduced to what they recognize in the month."""

    totals: list[MonthRevenue] = []
    documents: int = 0
    lines: int = 0
    next_cursor: str | None = None


class LedgerEntry(Frozen):
    """A RevBridge journal entry already in the ERP (found by its external ID)."""

    internal_id: str
    external_id: str


class PostEntryInput(Frozen):
    entry: JournalEntry
    #: the workflow's idempotency key for this step (the ERP dedups by ``entry.external_id``)
    key: str


class PostedEntry(Frozen):
    external_id: str
    internal_id: str


class RevenueCloseResult(Frozen):
    month: str
    #: dry_run | nothing_new | posted | rejected | expired | blocked | superseded
    outcome: str
    entries: list[JournalEntry] = []
    #: external ID → ERP internal ID, for entries posted by this run or found posted already
    posted: dict[str, str] = {}
    #: entries for a month and currency whose content changed since it was posted: never
    #: re-posted in full; the difference is proposed as an adjusting entry
    changed: list[str] = []
    #: the adjusting entries this close proposed for changed months (``posted`` once approved)
    adjustments: list[JournalEntry] = []
    documents: int = 0
    lines: int = 0
    approver: str | None = None
    totals: str = ""
