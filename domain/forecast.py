"""When will a customer outgrow a metered limit? A deterministic, explainable usage forecast
(issue 21: usage-based expansion).

Input: a customer's daily usage of one metered item (units per day, oldest first) and the limit
it runs against (units included per billing period, or a tier boundary). Output: the projected
usage per period, the day it crosses the limit with a band, a confidence, and the reasons a
person reads on the CRM record.

The model, and why:
- **Spikes out first**: a day far from the median of the same weekday in the weeks around it (a
  seasonal Hampel filter) is replaced by that median, so a one-day import does not widen the
  band for a week.
- **Then weekly seasonality**: a trailing 7-day mean turns a weekday/weekend pattern into a
  flat line, so Mondays never look like growth.
- **Theil–Sen trend** over the last ``window`` smoothed days: the slope is the median of all
  pairwise slopes, so one spike (an import, a batch job, a bad meter reading) moves it little —
  where least squares or Holt's smoothing would chase it for days.
- **Band and confidence from the same pairs**: the 10th–90th percentile of the pairwise slopes
  gives the earliest and latest crossing; the share of pairs that rise is the confidence that
  usage is growing at all (0.5 on a noisy flat line, near 1 on steady growth).
Pure: no I/O, no clock (``today`` is the last day of the series), the same answer every time.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from pathlib import Path
from statistics import median

from pydantic import Field

from domain.config_file import load_model
from domain.models import Frozen

SEASON_DAYS = 7


class MeteredLimit(Frozen):
    """What the customer's plan includes for one metered item."""

    item: str
    included_per_period: float = Field(gt=0)
    period_days: int = Field(default=30, gt=0)
    #: what a unit over the limit costs (minor currency units), for the overage reason
    overage_unit_price: int = 0


class UsageForecast(Frozen):
    item: str
    today: date
    #: smoothed usage per day now, and its trend (units per day, per day)
    level_per_day: float
    slope_per_day: float
    projected_per_period: float
    included_per_period: float
    #: the first day the projected period usage reaches the limit (None: not within horizon)
    crossing: date | None = None
    crossing_earliest: date | None = None
    crossing_latest: date | None = None
    #: share of pairwise slopes that rise: how sure we are usage is growing at all
    confidence: float
    #: overage at today's level for one period (minor currency units)
    overage_cost_per_period: int = 0
    reasons: list[str] = []

    @property
    def days_to_limit(self) -> int | None:
        return (self.crossing - self.today).days if self.crossing else None


class ForecastError(ValueError):
    pass


def _despiked(daily: list[float], weeks: int = 3, k: float = 3.0) -> list[float]:
    """A seasonal Hampel filter: a day further than ``k`` robust deviations from the median of
    the same weekday in the ``weeks`` around it is replaced by that median (a batch import, a bad
    meter reading). Comparing Mondays with Mondays leaves a weekly pattern alone."""
    out: list[float] = []
    for i, value in enumerate(daily):
        around = [
            daily[j]
            for j in range(i - weeks * SEASON_DAYS, i + weeks * SEASON_DAYS + 1, SEASON_DAYS)
            if 0 <= j < len(daily)
        ]
        mid = median(around)
        mad = 1.4826 * median(abs(v - mid) for v in around)
        out.append(mid if mad > 0 and abs(value - mid) > k * mad else value)
    return out


def _smoothed(daily: list[float]) -> list[float]:
    """Trailing means over one season (the first days average what there is)."""
    out: list[float] = []
    total = 0.0
    for i, value in enumerate(daily):
        total += value
        if i >= SEASON_DAYS:
            total -= daily[i - SEASON_DAYS]
        out.append(total / min(i + 1, SEASON_DAYS))
    return out


def _quantile(sorted_values: list[float], q: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _crossing_day(level: float, slope: float, per_day_limit: float, horizon: int) -> int | None:
    """Days from today until ``level + slope * d`` reaches the limit (0: already there)."""
    if level >= per_day_limit:
        return 0
    if slope <= 0:
        return None
    days = math.ceil((per_day_limit - level) / slope)
    return days if days <= horizon else None


def forecast(
    daily: list[float],
    today: date,
    limit: MeteredLimit,
    *,
    window: int = 42,
    horizon_days: int = 180,
) -> UsageForecast:
    """Forecast one metered item from its daily usage (oldest first, ending ``today``)."""
    if len(daily) < SEASON_DAYS * 2:
        raise ForecastError(f"{limit.item}: {len(daily)} days of usage, at least 14 needed")
    if any(not math.isfinite(v) or v < 0 for v in daily):
        raise ForecastError(f"{limit.item}: usage must be finite and not negative")
    smooth = _smoothed(_despiked(daily))[SEASON_DAYS - 1 :][-window:]
    n = len(smooth)
    slopes = sorted((smooth[j] - smooth[i]) / (j - i) for i in range(n) for j in range(i + 1, n))
    slope = median(slopes)
    # the line through the medians, evaluated at today (the last smoothed day)
    intercept = median(y - slope * x for x, y in enumerate(smooth))
    # a trailing mean lags the day by half a season: carry it forward to today
    level = max(0.0, intercept + slope * (n - 1 + (SEASON_DAYS - 1) / 2))
    rising = sum(1 for s in slopes if s > 0) + 0.5 * sum(1 for s in slopes if s == 0)
    confidence = rising / len(slopes)
    per_day_limit = limit.included_per_period / limit.period_days
    # the crossing of the projected period usage (level x period) with the included units; the
    # band: a slower trend crosses later, a faster one earlier
    mid = _crossing_day(level, slope, per_day_limit, horizon_days)
    fast = _crossing_day(level, _quantile(slopes, 0.9), per_day_limit, horizon_days)
    slow = _crossing_day(level, _quantile(slopes, 0.1), per_day_limit, horizon_days)
    projected = level * limit.period_days
    over_units = max(0.0, projected - limit.included_per_period)
    overage = round(over_units * limit.overage_unit_price)
    reasons = _reasons(limit, level, slope, projected, mid, overage, confidence)

    def day(offset: int | None) -> date | None:
        return today + timedelta(days=offset) if offset is not None else None

    return UsageForecast(
        item=limit.item,
        today=today,
        level_per_day=round(level, 4),
        slope_per_day=round(slope, 6),
        projected_per_period=round(projected, 2),
        included_per_period=limit.included_per_period,
        crossing=day(mid),
        crossing_earliest=day(fast),
        crossing_latest=day(slow),
        confidence=round(confidence, 4),
        overage_cost_per_period=overage,
        reasons=reasons,
    )


def _reasons(
    limit: MeteredLimit,
    level: float,
    slope: float,
    projected: float,
    days: int | None,
    overage: int,
    confidence: float,
) -> list[str]:
    used = projected / limit.included_per_period
    growth_month = (slope * 30 / level) if level > 0 else 0.0
    reasons = [
        f"{limit.item}: {projected:,.0f} of {limit.included_per_period:,.0f} included per "
        f"{limit.period_days}-day period at today's rate ({used:.0%})",
        f"trend {slope * 30:+,.1f}/day per month ({growth_month:+.0%} a month), "
        f"{confidence:.0%} of the last weeks' movement upward",
    ]
    if days == 0:
        reasons.append("already past the limit")
    elif days is not None:
        reasons.append(f"reaches the limit in about {days} days")
    if overage:
        reasons.append(f"overage at this rate: {overage / 100:,.2f} per period")
    return reasons


# --- when a forecast becomes an expansion signal ----------------------------------------------


class ExpansionPolicy(Frozen):
    """``policies/expansion.yaml``."""

    #: open (or keep) an expansion when the limit is this close
    days_to_limit_at_most: int = Field(default=45, gt=0)
    #: and usage is growing with at least this confidence
    min_confidence: float = Field(default=0.8, ge=0.5, le=1.0)
    #: and the upgrade is worth at least this much MRR (minor currency units)
    min_deal_mrr: int = Field(default=0, ge=0)
    #: close an open one when the limit recedes past this (hysteresis: no flapping)
    close_when_days_beyond: int = Field(default=90, gt=0)
    #: an open expansion nobody won or lost in this many days closes as expired
    expire_after_days: int = Field(default=90, gt=0)
    #: a discount on the recommended tier's draft quote (0: list price); above 0 it waits for
    #: RevOps (the Cedar policy ``discount_needs_revops``)
    upgrade_discount_percent: float = Field(default=0, ge=0, le=100)
    #: a lost or expired expansion's item is not reopened for this many days
    reopen_after_days: int = Field(default=30, ge=0)
    #: ... and after that only when its forecast crossing came this many days earlier than the
    #: declined one's, or the recommended upgrade's MRR grew by this ratio
    reopen_when_crossing_earlier_days: int = Field(default=14, gt=0)
    reopen_when_deal_grew_ratio: float = Field(default=1.5, gt=1.0)


class SignalAction(Frozen):
    action: str  # "open" | "update" | "close" | "none"
    reason: str


def decide(
    f: UsageForecast, policy: ExpansionPolicy, *, upgrade_mrr: int, is_open: bool
) -> SignalAction:
    """One open expansion per customer and limit: a rising forecast opens or updates it, a
    falling one closes it with a reason; in between, nothing changes (hysteresis)."""
    days = f.days_to_limit
    near = days is not None and days <= policy.days_to_limit_at_most
    sure = f.confidence >= policy.min_confidence or days == 0
    worth = upgrade_mrr >= policy.min_deal_mrr
    if near and sure and worth:
        return SignalAction(
            action="update" if is_open else "open",
            reason=f"limit in {days} days at {f.confidence:.0%} confidence",
        )
    if is_open and (days is None or days > policy.close_when_days_beyond):
        why = "usage no longer heads for the limit" if days is None else f"limit now {days} days"
        return SignalAction(action="close", reason=why)
    if not worth:
        return SignalAction(action="none", reason="upgrade below the minimum deal size")
    return SignalAction(action="none", reason="not near enough or not sure enough")


def load_policy(path: Path) -> ExpansionPolicy:
    return load_model(path, ExpansionPolicy, ForecastError)
