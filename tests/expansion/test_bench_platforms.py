"""bench/expansion.py's Zuora and Recurly intake read at a small size: harness/expansion_book.py's
bulk book reads back whole through the real intake path (every customer metered, every seeded
usage day read), and the calls per customer are the bench's (Zuora in pages of 99, Recurly one
usage list per metered subscription)."""

from __future__ import annotations

import pytest

from bench.expansion import LOOKBACK, platform_intake, render_platform


@pytest.mark.parametrize("platform", ["zuora", "recurly"])
def test_the_intake_reads_the_whole_book(platform: str) -> None:
    s = platform_intake(platform, 120)
    assert s["customers"] == s["metered"] == 120
    assert s["usage_days"] == 120 * LOOKBACK
    paths = dict(s["by_path"])
    if platform == "zuora":
        assert paths["/object-query/accounts"] == 2  # 99 a page
        assert s["calls"] < 20
    else:
        assert paths["/subscriptions/{id}/add_ons/{id}/usage"] == 120
        assert s["calls"] < 140
    assert "per 1,000 customers" in render_platform(s)
