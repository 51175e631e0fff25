"""Recurly's dunning hot path (issue 15), apart from the large ``connectors/recurly.py``.

- **MRR from the invoice.** A renewal invoice's subscription lines (origin ``plan`` or
  ``add_on``) each say what was charged for which service period (``start_date`` →
  ``end_date``, the subscription's current period: Recurly's ``LineItem``), so the monthly
  recurring revenue comes from the invoice just read, without reading each subscription and its
  plan for the interval (two requests, paced by Recurly's rate limit). Where the invoice cannot
  say — a prorated line, a line without a period, a period that is not whole months, no
  subscription line — :func:`mrr_from_lines` answers None and the caller reads the subscriptions
  as before.
- **One note for several audit entries.** Recurly creates account notes one at a time (no batch
  create, no idempotency header). Entries written together on one account (the case's with day
  0's, in one activity) go as ONE note: each entry's text ends with its own key marker, so a
  retry finds every entry by its marker and :func:`split_note` gives each back as its own note.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

#: Recurly's limit on an account note's message (characters)
NOTE_MAX = 2048
#: between two entries of one note
ENTRY_SEPARATOR = "\n\n"
_MARKED = re.compile(r"\n?\[revbridge:[0-9a-f]{16}\]")
_PERIOD_ORIGINS = ("plan", "add_on")


def _day(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
        except ValueError:
            return None
    return None


#: the mean calendar month (days)
MONTH_DAYS = 365.25 / 12


def whole_months(start: date, end: date) -> int | None:
    """The months from ``start`` to ``end`` when the span is a whole number of them, to within
    the months' differing lengths (28 to 31 days each: a day or three per month either way),
    else None (a part period, a plan billed in days)."""
    days = (end - start).days
    months = round(days / MONTH_DAYS)
    if months < 1 or abs(days - months * MONTH_DAYS) > max(3.0, months * 0.5):
        return None
    return months


def mrr_from_lines(inv: Any, to_minor: Any) -> int | None:
    """The invoice's subscription charges per month (minor units), or None when a line cannot
    say (see the module doc). ``to_minor(amount, currency)`` converts Recurly's decimals."""
    lines = list(getattr(inv, "line_items", None) or [])
    if getattr(inv, "has_more_line_items", False):
        return None  # the invoice lists a first page only
    total, seen = 0, False
    for li in lines:
        if not getattr(li, "subscription_id", None):
            continue
        if getattr(li, "origin", None) not in _PERIOD_ORIGINS or li.type != "charge":
            continue
        if getattr(li, "proration_rate", None) is not None:
            return None
        start, end = _day(li.start_date), _day(li.end_date)
        months = whole_months(start, end) if start and end else None
        if months is None:
            return None
        total += int(round(to_minor(li.amount, li.currency or inv.currency) / months))
        seen = True
    return total if seen else None


def one_note(prefix: str, notes: list[tuple[str, str]]) -> str | None:
    """The entries ``(text, marker)`` as one note's message, or None when they would not fit
    whole (the caller writes one note each, as before)."""
    whole = [f"{prefix}{text}\n{tag}" for text, tag in notes]
    message = ENTRY_SEPARATOR.join(whole)
    return message if len(message) <= NOTE_MAX else None


def split_note(message: str) -> list[str]:
    """A note's entries, each as its own text (the marker kept): one for a note of one entry
    or one written by someone else; several for a note that carries several entries."""
    ends = [m.end() for m in _MARKED.finditer(message)]
    if len(ends) <= 1:
        return [message]
    parts, at = [], 0
    for end in ends:
        parts.append(message[at:end].strip("\n"))
        at = end
    rest = message[at:].strip("\n")
    if rest:
        parts[-1] += "\n" + rest
    return parts
