"""The redelivery-window table (domain.redelivery): every number traced to the reference page it
came from, and the retention RevBridge requires outlasting every window."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from domain.redelivery import (
    LONGEST_WINDOW,
    REDELIVERY_WINDOWS,
    REQUIRED_RETENTION,
    retention_is_enough,
)

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "docs" / "reference"


@pytest.mark.parametrize("vendor", sorted(REDELIVERY_WINDOWS))
def test_each_window_names_a_section_of_the_reference_that_exists(vendor: str) -> None:
    source = REDELIVERY_WINDOWS[vendor].source
    page, section = re.match(r"([\w-]+\.md) (§[\d.]+\w?)", source).groups()  # type: ignore[union-attr]
    text = (REFERENCE / page).read_text(encoding="utf-8")
    assert f"### {section.removeprefix('§')}" in text, f"{page} has no section {section}"


def test_the_numbers_are_the_references() -> None:
    billing = (REFERENCE / "billing-apis.md").read_text(encoding="utf-8")
    crm = (REFERENCE / "crm-llm-apis.md").read_text(encoding="utf-8")
    assert "for up to three days" in billing
    assert REDELIVERY_WINDOWS["stripe"].window == timedelta(days=3)
    assert "+2 min, +6 min, +30 min, +1 h, +5 h, +1 day and +2 days" in billing
    assert REDELIVERY_WINDOWS["chargebee"].window == timedelta(
        minutes=2 + 6 + 30, hours=1 + 5, days=1 + 2
    )
    assert "Maximum Number of Delivery Attempts: default 3, max 5" in billing
    assert "max 1440 min" in billing
    assert REDELIVERY_WINDOWS["zuora"].window == 4 * timedelta(minutes=1440)
    assert "`10 + x·2^(x+5)` seconds" in billing and "Up to 10 retries" in billing
    assert timedelta(hours=72) < REDELIVERY_WINDOWS["recurly"].window < timedelta(hours=74)
    assert "Up to **10 retries spread over 24 h**" in crm
    assert REDELIVERY_WINDOWS["hubspot"].window == timedelta(hours=24)
    assert "for **24 h**, then dropped" in crm
    assert REDELIVERY_WINDOWS["salesforce"].window == timedelta(hours=24)


def test_the_required_retention_outlasts_every_window_in_whole_days() -> None:
    assert REDELIVERY_WINDOWS["zuora"].window == LONGEST_WINDOW
    assert all(w.window < REQUIRED_RETENTION for w in REDELIVERY_WINDOWS.values())
    assert REQUIRED_RETENTION % timedelta(days=1) == timedelta(0)
    assert timedelta(days=7) == REQUIRED_RETENTION
    # the dev server's default of one day is not enough
    assert not retention_is_enough(timedelta(days=1))
    assert retention_is_enough(timedelta(days=30))
