"""The usage forecast (domain/forecast.py) on synthetic series with known crossing dates: steady
growth, a spike, a decline, weekly seasonality and a noisy flat line."""

from __future__ import annotations

import math
import random
from datetime import date, timedelta
from pathlib import Path

import pytest

from domain.forecast import (
    ExpansionPolicy,
    ForecastError,
    MeteredLimit,
    decide,
    forecast,
    load_policy,
)

TODAY = date(2026, 12, 7)
DAYS = 60
#: 300 units a day: 9,000 in a 30-day period
LIMIT = MeteredLimit(item="api_calls", included_per_period=9_000, overage_unit_price=2)
POLICY = load_policy(Path(__file__).resolve().parents[2] / "policies" / "expansion.yaml")


def true_crossing(per_day: float, start: float, slope: float) -> date:
    """The day a line start + slope * t (t = 0 on the first day) reaches ``per_day``."""
    t = math.ceil((per_day - start) / slope)
    return TODAY + timedelta(days=t - (DAYS - 1))


def within(found: date | None, truth: date, days: int) -> bool:
    return found is not None and abs((found - truth).days) <= days


def test_steady_growth_crosses_on_the_known_day_with_full_confidence() -> None:
    daily = [100 + 2 * t for t in range(DAYS)]
    f = forecast(daily, TODAY, LIMIT)
    truth = true_crossing(300, 100, 2)  # t = 100: 41 days after today
    assert f.crossing == truth and f.days_to_limit == 41
    assert f.confidence == 1.0 and f.slope_per_day == pytest.approx(2)
    assert f.crossing_earliest == f.crossing_latest == truth  # no spread on a clean line
    assert "reaches the limit in about 41 days" in f.reasons


def test_a_one_day_spike_hardly_moves_the_forecast() -> None:
    daily = [100 + 2 * t for t in range(DAYS)]
    daily[45] *= 10  # a batch import
    f = forecast(daily, TODAY, LIMIT)
    truth = true_crossing(300, 100, 2)
    assert within(f.crossing, truth, 3)
    assert f.crossing_earliest is not None and f.crossing_earliest >= truth - timedelta(days=7)
    assert f.confidence >= 0.8


def test_a_decline_never_crosses_and_closes_an_open_expansion() -> None:
    daily = [280 - 2 * t for t in range(DAYS)]
    f = forecast(daily, TODAY, LIMIT)
    assert f.crossing is None and f.confidence == 0.0 and f.slope_per_day < 0
    assert decide(f, POLICY, upgrade_mrr=10_000, is_open=True).action == "close"
    assert decide(f, POLICY, upgrade_mrr=10_000, is_open=False).action == "none"


def test_weekly_seasonality_is_not_mistaken_for_growth_or_decline() -> None:
    # weekdays busy, weekends quiet, on a slow upward trend
    season = [1.3, 1.3, 1.2, 1.2, 1.1, 0.5, 0.4]
    mean = sum(season) / 7
    daily = [(150 + 1.5 * t) * season[t % 7] / mean for t in range(DAYS)]
    f = forecast(daily, TODAY, LIMIT)
    truth = true_crossing(300, 150, 1.5)
    assert f.crossing_earliest is not None and f.crossing_latest is not None
    assert f.crossing_earliest <= truth <= f.crossing_latest
    assert within(f.crossing, truth, 4)
    assert f.confidence >= 0.9


def test_a_noisy_flat_line_is_not_an_expansion() -> None:
    rnd = random.Random(7)
    daily = [200 + rnd.gauss(0, 25) for _ in range(DAYS)]
    f = forecast(daily, TODAY, LIMIT)
    assert 0.2 <= f.confidence <= 0.8
    assert decide(f, POLICY, upgrade_mrr=10_000, is_open=False).action == "none"


def test_already_over_the_limit_reports_the_overage() -> None:
    daily = [400.0] * DAYS
    f = forecast(daily, TODAY, LIMIT)
    assert f.days_to_limit == 0 and "already past the limit" in f.reasons
    assert f.projected_per_period == pytest.approx(12_000)
    assert f.overage_cost_per_period == 3_000 * 2
    assert decide(f, POLICY, upgrade_mrr=10_000, is_open=False).action == "open"


def test_the_decision_opens_updates_and_keeps_a_gap_before_closing() -> None:
    near = forecast([100 + 2 * t for t in range(DAYS)], TODAY, LIMIT)  # 41 days
    assert decide(near, POLICY, upgrade_mrr=10_000, is_open=False).action == "open"
    assert decide(near, POLICY, upgrade_mrr=10_000, is_open=True).action == "update"
    assert decide(near, POLICY, upgrade_mrr=100, is_open=False).reason == (
        "upgrade below the minimum deal size"
    )
    # 60 days away: too far to open, too near to close (hysteresis)
    middle = forecast([100 + 1.5 * t for t in range(DAYS)], TODAY, LIMIT)
    assert middle.days_to_limit is not None and 45 < middle.days_to_limit <= 90
    assert decide(middle, POLICY, upgrade_mrr=10_000, is_open=True).action == "none"
    assert decide(middle, POLICY, upgrade_mrr=10_000, is_open=False).action == "none"


def test_too_short_or_broken_series_are_one_line_errors() -> None:
    with pytest.raises(ForecastError, match="at least 14 needed"):
        forecast([1.0] * 10, TODAY, LIMIT)
    with pytest.raises(ForecastError, match="finite and not negative"):
        forecast([1.0] * 20 + [float("nan")], TODAY, LIMIT)
    with pytest.raises(ForecastError, match="finite and not negative"):
        forecast([1.0] * 20 + [-5.0], TODAY, LIMIT)


def test_the_forecast_is_deterministic() -> None:
    rnd = random.Random(3)
    daily = [120 + t + rnd.uniform(-10, 10) for t in range(DAYS)]
    assert forecast(daily, TODAY, LIMIT) == forecast(list(daily), TODAY, LIMIT)


def test_a_bad_policy_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "expansion.yaml"
    bad.write_text("min_confidence: 0.2\n")
    with pytest.raises(ForecastError, match=r"^expansion.yaml: min_confidence: "):
        load_policy(bad)
    assert isinstance(POLICY, ExpansionPolicy) and POLICY.days_to_limit_at_most == 45
