"""What the vendor modules of ``connectors/revenue`` share: the page they answer and the
conversions of vendor timestamps and cursors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from domain.models import Frozen
from domain.revenue import RevenueLine


class RevenueDocuments(Frozen):
    lines: list[RevenueLine] = []
    #: invoices and credit notes read on this page
    documents: int = 0
    next_cursor: str | None = None


def ts(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def day(value: Any) -> date:
    return datetime.fromtimestamp(int(value), UTC).date()


def period(start: Any, end: Any) -> tuple[date, date]:
    """A vendor's service period (Unix seconds, end exclusive) as days; a one-off charge (no
    span) is recognized on its own day."""
    lo = day(start)
    hi = day(end) if end else lo
    return lo, (hi if hi > lo else lo + timedelta(days=1))


def split_cursor(cursor: str | None, phases: tuple[str, ...]) -> tuple[str, str | None]:
    if not cursor:
        return phases[0], None
    phase, _, rest = cursor.partition(":")
    if phase not in phases:
        raise ValueError(f"bad revenue cursor {cursor[:40]!r}")
    return phase, rest or None


def credit_period(start: date, end: date, issued: date) -> tuple[date, date]:
    """A credit gives back its period from the day it is issued on, never in months already
    closed (amendments re-spread prospectively): a credit issued after its whole period reverses
    on its own day."""
    lo = max(start, issued)
    return (lo, end) if lo < end else (issued, issued + timedelta(days=1))
