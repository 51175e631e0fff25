"""How long each vendor may redeliver (retry) a webhook after the first attempt, and the namespace
retention that must outlast all of them.

Why it matters: deduplication of a late redelivery rests on the closed run still being in the
namespace (``domain.starts``: a completed run is never doubled). Once Temporal has deleted the
closed run (namespace retention), the same event would start it again. So the retention must
exceed the longest window below, with margin for a person resending from the vendor's console.

Every number comes from ``shared/docs/reference/*.md``; the source is named beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True)
class RedeliveryWindow:
    vendor: str
    window: timedelta
    source: str


REDELIVERY_WINDOWS: dict[str, RedeliveryWindow] = {
    w.vendor: w
    for w in (
        RedeliveryWindow(
            "stripe",
            timedelta(days=3),
            "billing-apis.md §1g: live mode retries with exponential backoff for up to three days",
        ),
        RedeliveryWindow(
            "chargebee",
            # +2 m, +6 m, +30 m, +1 h, +5 h, +1 d, +2 d: 3 d 6 h 38 m in all
            timedelta(days=3, hours=6, minutes=38),
            "billing-apis.md §2g: 7 retries at +2 m, +6 m, +30 m, +1 h, +5 h, +1 d, +2 d",
        ),
        RedeliveryWindow(
            "zuora",
            # at most 5 attempts, at most 1440 min apart: 4 intervals of a day
            timedelta(days=4),
            "billing-apis.md §3g: at most 5 delivery attempts, at most 1440 min apart",
        ),
        RedeliveryWindow(
            "recurly",
            # sum of 10 + x*2^(x+5) s for x = 0..9, about 73 h
            timedelta(seconds=sum(10 + x * 2 ** (x + 5) for x in range(10))),
            "billing-apis.md §4g: up to 10 retries, delay 10 + x*2^(x+5) s (about 3 days)",
        ),
        RedeliveryWindow(
            "hubspot",
            timedelta(hours=24),
            "crm-llm-apis.md §2.7: up to 10 retries spread over 24 h",
        ),
        RedeliveryWindow(
            "salesforce",
            # a Flow HTTP callout is not redelivered; Outbound Messages (the alternative) retry
            # for 24 h: the longer of the two
            timedelta(hours=24),
            "crm-llm-apis.md §1.9: Flow callouts have no redelivery; Outbound Messages 24 h",
        ),
    )
}

#: the longest window of any vendor
LONGEST_WINDOW: timedelta = max(w.window for w in REDELIVERY_WINDOWS.values())

#: margin on top of the longest window: a person resending a failed event from the vendor's
#: console days later, and time to notice an outage
MARGIN = timedelta(days=3)

#: the namespace retention RevBridge needs (and sets for its dev server): a whole number of days
REQUIRED_RETENTION: timedelta = timedelta(days=-(-(LONGEST_WINDOW + MARGIN) // timedelta(days=1)))


def retention_is_enough(retention: timedelta) -> bool:
    """True when closed runs outlive every vendor's redelivery window (with the margin)."""
    return retention >= REQUIRED_RETENTION
