"""The churn scorecard: bounded, monotonic in every risk factor, and its reasons are its largest
contributions. Property-style: seeded random signals, thousands of cases, no extra dependency."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from activities.churn import load_config
from domain.churn import (
    ChurnConfig,
    ChurnSignals,
    Factor,
    Level,
    Outcome,
    level_of,
    narrative,
    outcome_of,
    score,
    signals_from,
)
from domain.models import (
    BillingCustomer,
    CaseSummary,
    Invoice,
    InvoiceStatus,
    Payment,
)
from domain.records import CustomerSnapshot, Subscription

POLICY = Path(__file__).resolve().parents[2] / "policies" / "churn.yaml"
CONFIG = load_config(POLICY)
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
CASES = 3000


def random_signals(rng: random.Random) -> ChurnSignals:
    baseline = rng.choice([0, 5_000, 50_000, 200_000])
    return ChurnSignals(
        payment_failures_90d=rng.randint(0, 6),
        unrecovered_failures=rng.randint(0, 4),
        recovered_failures=rng.randint(0, 3),
        downgrades_90d=rng.randint(0, 4),
        usage_drop=rng.choice([None, 0.0, rng.random()]),
        open_cases=rng.randint(0, 5),
        oldest_case_days=rng.randint(0, 90),
        tenure_days=rng.choice([None, rng.randint(0, 2_000)]),
        mrr=rng.randint(0, baseline) if baseline else rng.randint(0, 10_000),
        baseline_mrr=baseline,
        days_to_renewal=rng.choice([None, rng.randint(0, 400)]),
        cancellation_scheduled=rng.random() < 0.2,
        live_subscriptions=rng.randint(0, 2),
    )


#: each risk factor made one step riskier (everything else unchanged)
RISKIER = {
    Factor.PAYMENT_FAILURES: lambda s: {"payment_failures_90d": s.payment_failures_90d + 1},
    Factor.UNRECOVERED_FAILURES: lambda s: {"unrecovered_failures": s.unrecovered_failures + 1},
    Factor.DOWNGRADES: lambda s: {"downgrades_90d": s.downgrades_90d + 1},
    Factor.USAGE_DROP: lambda s: {"usage_drop": min(1.0, (s.usage_drop or 0) + 0.1)},
    Factor.OPEN_CASES: lambda s: {"open_cases": s.open_cases + 1},
    Factor.CASE_AGE: lambda s: {"oldest_case_days": s.oldest_case_days + 5},
    Factor.SHORT_TENURE: lambda s: {
        "tenure_days": max(0, (s.tenure_days if s.tenure_days is not None else 400) - 30)
    },
    Factor.MRR_DROP: lambda s: {"mrr": max(0, s.mrr - 1_000)},
    Factor.RENEWAL_SOON: lambda s: {
        "days_to_renewal": max(0, (s.days_to_renewal if s.days_to_renewal is not None else 90) - 7)
    },
    Factor.CANCELLATION_SCHEDULED: lambda s: {"cancellation_scheduled": True},
}


def test_every_factor_has_a_monotonicity_probe_and_a_weight() -> None:
    assert set(RISKIER) == set(Factor) == set(CONFIG.weights)


@pytest.mark.parametrize("factor", list(Factor), ids=lambda f: f.value)
def test_score_never_falls_when_one_risk_factor_rises(factor: Factor) -> None:
    rng = random.Random(f"monotonic-{factor.value}")
    rose = 0
    for _ in range(CASES):
        s = random_signals(rng)
        riskier = s.model_copy(update=RISKIER[factor](s))
        before, after = score(s, CONFIG), score(riskier, CONFIG)
        assert after.score >= before.score, (factor, s, riskier)
        assert after.contributions[factor] >= before.contributions[factor]
        rose += after.contributions[factor] > before.contributions[factor]
    assert rose > CASES // 20  # the probe really moves the factor (the test could fail)


def test_monotonic_under_random_non_negative_weights_too() -> None:
    rng = random.Random("weights")
    for _ in range(300):
        weights = {f: rng.choice([0, rng.uniform(0, 60)]) for f in Factor}
        config = CONFIG.model_copy(update={"weights": weights})
        s = random_signals(rng)
        factor = rng.choice(list(Factor))
        riskier = s.model_copy(update=RISKIER[factor](s))
        assert score(riskier, config).score >= score(s, config).score


def test_bounded_between_0_and_100_even_with_every_factor_at_full() -> None:
    rng = random.Random("bounds")
    for _ in range(CASES):
        r = score(random_signals(rng), CONFIG)
        assert 0 <= r.score <= 100
        assert r.level is level_of(r.score, CONFIG.levels)
    worst = ChurnSignals(
        payment_failures_90d=50,
        unrecovered_failures=50,
        downgrades_90d=50,
        usage_drop=1.0,
        open_cases=50,
        oldest_case_days=500,
        tenure_days=0,
        mrr=0,
        baseline_mrr=100_000,
        days_to_renewal=0,
        cancellation_scheduled=True,
    )
    assert sum(CONFIG.weights.values()) > 100  # uncapped it would exceed 100
    assert score(worst, CONFIG).score == 100
    assert score(worst, CONFIG).level is Level.CRITICAL
    assert score(ChurnSignals(), CONFIG).score == 0
    assert score(ChurnSignals(), CONFIG).reasons == []


def test_reasons_are_the_largest_contributions_in_order() -> None:
    rng = random.Random("reasons")
    for _ in range(CASES):
        s = random_signals(rng)
        r = score(s, CONFIG)
        positive = {f: p for f, p in r.contributions.items() if p > 0}
        assert len(r.reasons) == len(r.top_factors) == min(CONFIG.max_reasons, len(positive))
        points = [r.contributions[f] for f in r.top_factors]
        assert points == sorted(points, reverse=True)
        left_out = [p for f, p in positive.items() if f not in r.top_factors]
        assert all(p <= min(points) for p in left_out)
        for f, text in zip(r.top_factors, r.reasons, strict=True):
            assert text.endswith(f"(+{round(r.contributions[f], 1):g})")


def test_a_worked_example_matches_the_documentation() -> None:
    """docs/churn-scorecard.md walks through this customer."""
    s = ChurnSignals(
        payment_failures_90d=2,
        unrecovered_failures=1,
        downgrades_90d=1,
        open_cases=1,
        oldest_case_days=12,
        tenure_days=200,
        mrr=40_000,
        baseline_mrr=50_000,
        days_to_renewal=20,
        live_subscriptions=1,
    )
    r = score(s, CONFIG)
    assert r.contributions[Factor.PAYMENT_FAILURES] == pytest.approx(13.33)
    assert r.contributions[Factor.DOWNGRADES] == pytest.approx(7.5)
    assert r.contributions[Factor.MRR_DROP] == pytest.approx(3.0)
    assert r.score == 45 and r.level is Level.MEDIUM
    assert r.reasons[0] == "2 failed payment(s) in the last 90 days (+13.3)"
    assert narrative(r, s).startswith("Churn risk 45/100 (medium). Main drivers: 2 failed")


def test_weights_come_from_configuration() -> None:
    s = ChurnSignals(open_cases=3)
    doubled = CONFIG.model_copy(update={"weights": {**CONFIG.weights, Factor.OPEN_CASES: 16}})
    assert score(s, CONFIG).score == 8 and score(s, doubled).score == 16


def test_configuration_rejects_negative_weights_and_unordered_levels() -> None:
    data = yaml.safe_load(POLICY.read_text())
    with pytest.raises(ValueError, match="weights must be >= 0"):
        ChurnConfig.model_validate({**data, "weights": {**data["weights"], "downgrades": -1}})
    with pytest.raises(ValueError, match="medium <= high <= critical"):
        ChurnConfig.model_validate({**data, "levels": {"medium": 60, "high": 50, "critical": 75}})
    with pytest.raises(ValueError):
        ChurnConfig.model_validate({**data, "weights": {**data["weights"], "vibes": 5}})


def snapshot(**changes: object) -> CustomerSnapshot:
    base = CustomerSnapshot(
        customer=BillingCustomer(id="cus_1", created_at=NOW - timedelta(days=100), mrr=40_000),
        subscriptions=[
            Subscription(
                id="sub_1",
                customer_id="cus_1",
                status="active",
                mrr=40_000,
                current_term_end=NOW + timedelta(days=20),
            )
        ],
        invoices=[
            Invoice(
                id="inv_3",
                customer_id="cus_1",
                subscription_id="sub_1",
                status=InvoiceStatus.OPEN,
                total=40_000,
                amount_due=40_000,
                currency="USD",
            ),
            Invoice(
                id="inv_2",
                customer_id="cus_1",
                subscription_id="sub_1",
                status=InvoiceStatus.PAID,
                total=50_000,
                amount_due=0,
                currency="USD",
            ),
        ],
        payments=[
            Payment(id="p3", invoice_id="inv_3", succeeded=False, amount=1, currency="USD", at=NOW),
            Payment(
                id="p2",
                invoice_id="inv_2",
                succeeded=False,
                amount=1,
                currency="USD",
                at=NOW - timedelta(days=40),
            ),
            Payment(
                id="p1",
                invoice_id="inv_2",
                succeeded=False,
                amount=1,
                currency="USD",
                at=NOW - timedelta(days=200),  # outside the 90-day window
            ),
        ],
        downgrades_90d=1,
        usage_30d=30.0,
        usage_prev_30d=120.0,
    )
    return base.model_copy(update=changes)


def test_signals_from_a_billing_snapshot_and_crm_cases() -> None:
    cases = [
        CaseSummary(id="c1", opened_at=NOW - timedelta(days=3)),
        CaseSummary(id="c2", opened_at=NOW - timedelta(days=17)),
        CaseSummary(id="c3"),
    ]
    s = signals_from(snapshot(), None, cases, NOW)
    assert s.payment_failures_90d == 2
    assert s.unrecovered_failures == 1 and s.recovered_failures == 1
    assert s.downgrades_90d == 1
    assert s.usage_drop == pytest.approx(0.75)
    assert (s.open_cases, s.oldest_case_days) == (3, 17)
    assert s.tenure_days == 100
    assert (s.mrr, s.baseline_mrr) == (40_000, 50_000)  # the oldest invoice is the baseline
    assert s.days_to_renewal == 20
    assert not s.cancellation_scheduled and s.live_subscriptions == 1
    assert signals_from(snapshot(), None, [], NOW, baseline_mrr=40_000).mrr_drop == 0


def test_outcomes() -> None:
    before = signals_from(snapshot(), None, [], NOW)
    same = before
    cut = before.model_copy(update={"mrr": 30_000})
    gone = before.model_copy(update={"live_subscriptions": 0, "mrr": 0})
    ending = before.model_copy(update={"cancellation_scheduled": True})
    assert outcome_of(before, same) is Outcome.RETAINED
    assert outcome_of(before, cut) is Outcome.DOWNGRADED
    assert outcome_of(before, gone) is Outcome.CHURNED
    assert outcome_of(before, ending) is Outcome.CHURNED


def test_a_retention_discount_is_not_a_downgrade() -> None:
    """Our own offer lowers what the customer pays, not what they buy: the MRR factor and the
    follow-up's outcome read list-price MRR."""
    from datetime import UTC, datetime

    from domain.churn import Outcome, outcome_of, signals_from
    from domain.models import BillingCustomer
    from domain.records import CustomerSnapshot, Subscription

    now = datetime(2026, 1, 1, tzinfo=UTC)

    def snapshot(discount: float) -> CustomerSnapshot:
        mrr = round(50_000 * (1 - discount / 100))
        sub = Subscription(
            id="sub_1", customer_id="c1", status="active", mrr=mrr, discount_percent=discount
        )
        return CustomerSnapshot(customer=BillingCustomer(id="c1", mrr=mrr), subscriptions=[sub])

    before = signals_from(snapshot(0), None, [], now, baseline_mrr=50_000)
    after = signals_from(snapshot(15), None, [], now, baseline_mrr=50_000)
    assert before.mrr == after.mrr == 50_000 and after.mrr_drop == 0
    assert outcome_of(before, after) is Outcome.RETAINED
