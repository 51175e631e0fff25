"""The two moves every scheduled catch-up makes (dunning's and quote-to-cash's): where to look
from, and how to read a source that has no cursor.

The watermark is the catch-up's own result, read back by the next scheduled run
(``get_last_completion_result``): no state store to keep. A run looks back ``overlap`` before it
to absorb clock skew and late index updates; a record seen twice costs a lookup, since the runs
it starts are deduplicated by ID. Pure workflow code: no commands of its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol, TypeVar

from temporalio import workflow

from domain.models import CatchUpWindow

T = TypeVar("T")


class _Watermarked(Protocol):
    @property
    def watermark(self) -> datetime: ...


def since(window: CatchUpWindow, result_type: type[_Watermarked]) -> datetime:
    """Where this run looks from: ``window.since``, else the last run's watermark minus the
    overlap, else ``lookback`` before now (the first run)."""
    if window.since is not None:
        return window.since
    if workflow.has_last_completion_result():
        last = workflow.get_last_completion_result(result_type)
        if last is not None:
            return last.watermark - window.overlap
    return workflow.now() - window.lookback


async def read_growing(
    read: Callable[[int], Awaitable[T]],
    count: Callable[[T], int],
    *,
    limit: int,
    max_limit: int,
) -> tuple[T, bool]:
    """``read(limit)`` from a source with no cursor (oldest first, so a bigger page is a
    superset): on a full page ask again for four times as many, up to ``max_limit``. Returns the
    last page and whether it was still full (records past it were not seen: say so)."""
    while True:
        page = await read(limit)
        full = count(page) >= limit
        if not full or limit >= max_limit:
            return page, full
        limit = min(limit * 4, max_limit)
