"""Churn intervention: the transparent risk scorecard, and the workflow's inputs and results.

Pure code, no I/O. The scorecard turns what billing and the CRM know about one customer into a
handful of named risk factors (:class:`ChurnSignals`), gives each an intensity between 0 and 1,
and adds ``weight × intensity`` points per factor; the score is that sum, capped at 100. Weights,
level thresholds and the intervention thresholds live in ``policies/churn.yaml`` (read by an
activity, so the configuration a decision used is in the workflow's history). Because every
intensity is a non-decreasing function of its risk input and weights are non-negative, the score
never goes down when one risk factor goes up, and the reasons are the largest contributions, in
words. docs/churn-scorecard.md documents each factor's formula with an example.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from domain.approvals import ApprovalTiming
from domain.models import CaseSummary, CrmAccount, Frozen, InvoiceStatus, RiskSignal
from domain.records import CustomerSnapshot, Subscription
from domain.temporal import UseCase

WORKFLOW_TYPE = "ChurnInterventionWorkflow"
SWEEP_WORKFLOW_TYPE = "ChurnSweepWorkflow"
USE_CASE = UseCase.CHURN_INTERVENTION
#: the Temporal Schedule that starts the sweep, and the sweep's workflow ID prefix
SWEEP_SCHEDULE_ID = "churn-sweep"
SWEEP_WORKFLOW_ID = "churn-sweep"

#: vendor subscription statuses that still bill (Chargebee and Stripe spellings)
LIVE_STATUSES = frozenset(
    {"active", "in_trial", "trialing", "future", "non_renewing", "past_due", "unpaid", "paused"}
)
#: the window failed payments and downgrades are counted over
WINDOW_DAYS = 90


class Level(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Factor(StrEnum):
    """The scorecard's factors; ``policies/churn.yaml`` weighs each one."""

    PAYMENT_FAILURES = "payment_failures"
    UNRECOVERED_FAILURES = "unrecovered_failures"
    DOWNGRADES = "downgrades"
    USAGE_DROP = "usage_drop"
    OPEN_CASES = "open_cases"
    CASE_AGE = "case_age"
    SHORT_TENURE = "short_tenure"
    MRR_DROP = "mrr_drop"
    RENEWAL_SOON = "renewal_soon"
    CANCELLATION_SCHEDULED = "cancellation_scheduled"


# --- the factors ---------------------------------------------------------------------------------


class ChurnSignals(Frozen):
    """The raw risk inputs for one customer at one moment (IDs and numbers only, no PII)."""

    #: failed payment attempts in the last 90 days
    payment_failures_90d: int = Field(default=0, ge=0)
    #: invoices with a failed attempt that are still unpaid (the recovery history's bad half)
    unrecovered_failures: int = Field(default=0, ge=0)
    #: failed-payment invoices that were paid later (shown in words, not scored: good news)
    recovered_failures: int = Field(default=0, ge=0)
    #: plan or quantity decreases in the last 90 days
    downgrades_90d: int = Field(default=0, ge=0)
    #: usage fall, last 30 days against the 30 before: 0.0 (flat or up) … 1.0 (stopped);
    #: None when the platform has no usage
    usage_drop: float | None = Field(default=None, ge=0, le=1)
    open_cases: int = Field(default=0, ge=0)
    #: age of the oldest open case, days
    oldest_case_days: int = Field(default=0, ge=0)
    #: days since the customer was created; None when unknown
    tenure_days: int | None = Field(default=None, ge=0)
    #: MRR now (minor units) and the baseline it is compared with
    mrr: int = Field(default=0, ge=0)
    baseline_mrr: int = Field(default=0, ge=0)
    #: days until the nearest renewal of a live subscription; None when none is known
    days_to_renewal: int | None = Field(default=None, ge=0)
    #: a live subscription is set to end (Chargebee non_renewing, a cancel_at date)
    cancellation_scheduled: bool = False
    live_subscriptions: int = Field(default=0, ge=0)

    @property
    def mrr_drop(self) -> float:
        """Fall of MRR against the baseline, 0.0 … 1.0."""
        if self.baseline_mrr <= 0 or self.mrr >= self.baseline_mrr:
            return 0.0
        return (self.baseline_mrr - self.mrr) / self.baseline_mrr


class Scales(Frozen):
    """Where each factor's intensity reaches 1.0 (the saturation points)."""

    payment_failures: int = Field(default=3, gt=0)
    unrecovered_failures: int = Field(default=2, gt=0)
    downgrades: int = Field(default=2, gt=0)
    open_cases: int = Field(default=3, gt=0)
    case_age_days: int = Field(default=30, gt=0)
    tenure_days: int = Field(default=365, gt=0)
    renewal_days: int = Field(default=60, gt=0)


def intensities(s: ChurnSignals, scales: Scales = Scales()) -> dict[Factor, float]:
    """Each factor's intensity in [0, 1]; each is non-decreasing in its risk input."""

    def ramp(value: float, full: float) -> float:
        return max(0.0, min(1.0, value / full))

    return {
        Factor.PAYMENT_FAILURES: ramp(s.payment_failures_90d, scales.payment_failures),
        Factor.UNRECOVERED_FAILURES: ramp(s.unrecovered_failures, scales.unrecovered_failures),
        Factor.DOWNGRADES: ramp(s.downgrades_90d, scales.downgrades),
        Factor.USAGE_DROP: s.usage_drop or 0.0,
        Factor.OPEN_CASES: ramp(s.open_cases, scales.open_cases),
        Factor.CASE_AGE: ramp(s.oldest_case_days, scales.case_age_days) if s.open_cases else 0.0,
        # newness is the risk: a customer in their first year, most at risk on day one
        Factor.SHORT_TENURE: (
            0.0 if s.tenure_days is None else 1.0 - ramp(s.tenure_days, scales.tenure_days)
        ),
        Factor.MRR_DROP: s.mrr_drop,
        Factor.RENEWAL_SOON: (
            0.0 if s.days_to_renewal is None else 1.0 - ramp(s.days_to_renewal, scales.renewal_days)
        ),
        Factor.CANCELLATION_SCHEDULED: 1.0 if s.cancellation_scheduled else 0.0,
    }


def describe(factor: Factor, s: ChurnSignals) -> str:
    """One factor, in words a CSM reads (numbers from the signals, no customer text)."""
    if factor is Factor.PAYMENT_FAILURES:
        return f"{s.payment_failures_90d} failed payment(s) in the last {WINDOW_DAYS} days"
    if factor is Factor.UNRECOVERED_FAILURES:
        return f"{s.unrecovered_failures} failed invoice(s) still unpaid"
    if factor is Factor.DOWNGRADES:
        return f"{s.downgrades_90d} downgrade(s) in the last {WINDOW_DAYS} days"
    if factor is Factor.USAGE_DROP:
        return f"usage down {round((s.usage_drop or 0) * 100)}% month over month"
    if factor is Factor.OPEN_CASES:
        return f"{s.open_cases} open support case(s)"
    if factor is Factor.CASE_AGE:
        return f"oldest open case is {s.oldest_case_days} days old"
    if factor is Factor.SHORT_TENURE:
        return f"customer for only {s.tenure_days} days"
    if factor is Factor.MRR_DROP:
        return (
            f"MRR down {round(s.mrr_drop * 100)}% "
            f"({s.baseline_mrr / 100:,.2f} → {s.mrr / 100:,.2f})"
        )
    if factor is Factor.RENEWAL_SOON:
        return f"renewal in {s.days_to_renewal} days"
    return "a subscription is scheduled to cancel"


# --- configuration (policies/churn.yaml) ---------------------------------------------------------


class Offer(Frozen):
    """A retention discount: ``percent`` off for ``months`` billing months."""

    percent: float = Field(gt=0, le=100)
    months: int = Field(ge=1, le=24)


class ChurnConfig(Frozen):
    """The scorecard's weights and the intervention's thresholds (see policies/churn.yaml)."""

    #: points a factor adds at full intensity
    weights: dict[Factor, float]
    scales: Scales = Scales()
    #: the lowest score of each level above low
    levels: dict[Level, int] = {Level.MEDIUM: 25, Level.HIGH: 50, Level.CRITICAL: 75}
    #: at or above: a CSM task with a drafted outreach, and the account is followed
    task_threshold: int = Field(default=50, ge=0, le=100)
    #: at or above: a retention offer is proposed (policy + approval)
    offer_threshold: int = Field(default=60, ge=0, le=100)
    #: the offer per level (levels without an entry get none)
    offers: dict[Level, Offer] = {}
    #: how long the account is followed before the outcome is recorded
    follow_up_days: int = Field(default=45, ge=1, le=365)
    #: how many reasons are written to the CRM
    max_reasons: int = Field(default=3, ge=1, le=10)
    #: the sweep writes a low-risk score back only when it moved by at least this many points
    #: since the CRM's stored one, or changed level (an unchanged book writes nothing)
    sweep_write_threshold: int = Field(default=5, ge=0, le=100)

    @field_validator("weights")
    @classmethod
    def _weights(cls, weights: dict[Factor, float]) -> dict[Factor, float]:
        bad = [f"{k.value}={v}" for k, v in weights.items() if v < 0]
        if bad:  # a negative weight would break monotonicity: a risk that lowers the score
            raise ValueError(f"weights must be >= 0: {', '.join(bad)}")
        return weights

    @model_validator(mode="after")
    def _levels(self) -> ChurnConfig:
        cuts = [self.levels.get(lv, 0) for lv in (Level.MEDIUM, Level.HIGH, Level.CRITICAL)]
        if cuts != sorted(cuts) or set(self.levels) != {Level.MEDIUM, Level.HIGH, Level.CRITICAL}:
            raise ValueError("levels need medium <= high <= critical, all three")
        return self


# --- the score -----------------------------------------------------------------------------------


class ChurnScore(Frozen):
    score: int = Field(ge=0, le=100)
    level: Level
    #: the top contributions, largest first, in words with their points
    reasons: list[str] = []
    #: the factors behind ``reasons``, in the same order
    top_factors: list[Factor] = []
    #: every factor's points (before the cap at 100)
    contributions: dict[Factor, float] = {}


def level_of(score: int, levels: dict[Level, int]) -> Level:
    for lv in (Level.CRITICAL, Level.HIGH, Level.MEDIUM):
        if score >= levels[lv]:
            return lv
    return Level.LOW


def score(signals: ChurnSignals, config: ChurnConfig) -> ChurnScore:
    """Score one customer: ``min(100, Σ weight × intensity)``, its level and top reasons."""
    raw = intensities(signals, config.scales)
    contributions = {f: round(config.weights.get(f, 0.0) * x, 2) for f, x in raw.items()}
    total = min(100, round(sum(contributions.values())))
    # largest first; ties broken by the factor's declaration order, so reasons are stable
    order = list(Factor)
    ranked = sorted(
        (f for f, points in contributions.items() if points > 0),
        key=lambda f: (-contributions[f], order.index(f)),
    )[: config.max_reasons]
    return ChurnScore(
        score=total,
        level=level_of(total, config.levels),
        reasons=[f"{describe(f, signals)} (+{round(contributions[f], 1):g})" for f in ranked],
        top_factors=ranked,
        contributions=contributions,
    )


# --- from billing and CRM records to signals -----------------------------------------------------


def live(subscriptions: list[Subscription]) -> list[Subscription]:
    return [s for s in subscriptions if s.status in LIVE_STATUSES]


def main_subscription(snapshot: CustomerSnapshot) -> Subscription | None:
    """The subscription a retention offer would go on: the live one with the largest MRR."""
    candidates = live(snapshot.subscriptions)
    return max(candidates, key=lambda s: (s.mrr, s.id)) if candidates else None


def list_mrr(sub: Subscription) -> int:
    """The subscription's MRR before its discount."""
    if 0 < sub.discount_percent < 100:
        return round(sub.mrr / (1 - sub.discount_percent / 100))
    return sub.mrr


class SweepSnapshot(CustomerSnapshot):
    """A billing snapshot as the churn sweep reads it (issue 15: ≤ 1 vendor call per 20
    customers): only what the score uses — the failed payments and the invoices they were for
    (with their current status), not the whole payment and invoice history — and the MRR
    baseline the connector took from what the sweep already reads (the subscription list and
    the subscription event log walked once per sweep) instead of the invoice history.
    ``baseline_mrr`` None: the connector has none, the invoices stand for it as before."""

    baseline_mrr: int | None = None


def signals_from(
    snapshot: CustomerSnapshot,
    account: CrmAccount | None,
    open_cases: list[CaseSummary],
    now: datetime,
    baseline_mrr: int | None = None,
) -> ChurnSignals:
    """The factors, from a billing snapshot and the CRM's open cases, as of ``now``.

    ``baseline_mrr`` is the MRR a previous score saw; without one, the oldest recent
    subscription invoice stands for what the customer used to pay (so a seat cut shows up
    on the first score too).
    """
    del account  # the tier and owner steer the intervention, not the score
    since = now - timedelta(days=WINDOW_DAYS)
    failed = [p for p in snapshot.payments if not p.succeeded and (p.at is None or p.at >= since)]
    failed_invoices = {p.invoice_id for p in snapshot.payments if not p.succeeded and p.invoice_id}
    by_id = {inv.id: inv for inv in snapshot.invoices}
    unrecovered = sum(
        1
        for i in failed_invoices
        if i in by_id and by_id[i].status is InvoiceStatus.OPEN and by_id[i].amount_due > 0
    )
    recovered = sum(
        1 for i in failed_invoices if i in by_id and by_id[i].status is InvoiceStatus.PAID
    )

    usage_drop = None
    if snapshot.usage_30d is not None and snapshot.usage_prev_30d:
        usage_drop = max(0.0, min(1.0, 1 - snapshot.usage_30d / snapshot.usage_prev_30d))

    ages = [max(0, (now - c.opened_at).days) for c in open_cases if c.opened_at is not None]

    created = snapshot.customer.created_at or min(
        (s.started_at for s in snapshot.subscriptions if s.started_at), default=None
    )
    tenure = max(0, (now - created).days) if created else None

    alive = live(snapshot.subscriptions)
    # MRR at list price: a discount (our own retention offer, above all) is not the customer
    # paying for less, so it must neither raise the risk nor read as a downgrade afterwards
    mrr = sum(list_mrr(s) for s in alive) if alive else snapshot.customer.mrr
    if baseline_mrr is None and isinstance(snapshot, SweepSnapshot):
        baseline_mrr = snapshot.baseline_mrr
    if baseline_mrr is None:
        billed = [
            inv
            for inv in snapshot.invoices
            if inv.subscription_id and inv.status is not InvoiceStatus.VOID
        ]
        baseline_mrr = billed[-1].total if billed else mrr  # newest first: the last is oldest
    renewals = [
        max(0, (s.current_term_end - now).days) for s in alive if s.current_term_end is not None
    ]
    return ChurnSignals(
        payment_failures_90d=len(failed),
        unrecovered_failures=unrecovered,
        recovered_failures=recovered,
        downgrades_90d=snapshot.downgrades_90d,
        usage_drop=usage_drop,
        open_cases=len(open_cases),
        oldest_case_days=max(ages, default=0),
        tenure_days=tenure,
        mrr=mrr,
        baseline_mrr=max(0, baseline_mrr),
        days_to_renewal=min(renewals, default=None),
        cancellation_scheduled=any(
            s.status == "non_renewing" or s.cancel_at is not None for s in alive
        ),
        live_subscriptions=len(alive),
    )


# --- words: the narrative, the outreach, the outcome ---------------------------------------------


def narrative(result: ChurnScore, signals: ChurnSignals) -> str:
    """The rules narrative written next to the score: deterministic, from the reasons only."""
    if not result.reasons:
        return f"Churn risk {result.score}/100 ({result.level.value}): no risk factor present."
    text = (
        f"Churn risk {result.score}/100 ({result.level.value}). "
        f"Main drivers: {'; '.join(result.reasons)}."
    )
    if signals.recovered_failures:
        text += f" {signals.recovered_failures} earlier failed payment(s) were recovered."
    return text


def outreach(result: ChurnScore, account_name: str, offer: Offer | None) -> str:
    """A draft the CSM adapts: why we reach out, what to ask, what we may offer."""
    hooks = {
        Factor.PAYMENT_FAILURES: "help them update their payment method",
        Factor.UNRECOVERED_FAILURES: "agree how the open invoice gets paid",
        Factor.DOWNGRADES: "ask what made them scale down",
        Factor.USAGE_DROP: "book a usage review with their admin",
        Factor.OPEN_CASES: "make sure their open cases have an owner and a date",
        Factor.CASE_AGE: "escalate the oldest open case",
        Factor.SHORT_TENURE: "check onboarding is complete",
        Factor.MRR_DROP: "understand the smaller footprint",
        Factor.RENEWAL_SOON: "start the renewal conversation now",
        Factor.CANCELLATION_SCHEDULED: "ask why they plan to cancel before it takes effect",
    }
    lines = [
        f"Hi — reaching out to {account_name} because their churn risk is "
        f"{result.score}/100 ({result.level.value}).",
        "Why: " + ("; ".join(result.reasons) or "no single driver") + ".",
        "Suggested talking points:",
        *(f"- {hooks[f]}" for f in result.top_factors),
    ]
    if offer is not None:
        lines.append(
            f"A retention offer of {offer.percent:g}% off for {offer.months} months has been "
            "proposed for RevOps approval; do not promise it before it is approved."
        )
    return "\n".join(lines)


class Outcome(StrEnum):
    RETAINED = "retained"
    DOWNGRADED = "downgraded"
    CHURNED = "churned"


def outcome_of(before: ChurnSignals, after: ChurnSignals) -> Outcome:
    """What became of the account over the follow-up: nothing live (or set to end) is churned,
    less MRR or a new downgrade is downgraded, anything else retained."""
    if after.live_subscriptions == 0 or after.cancellation_scheduled:
        return Outcome.CHURNED
    if after.mrr < before.mrr or after.downgrades_90d > before.downgrades_90d:
        return Outcome.DOWNGRADED
    return Outcome.RETAINED


# --- the workflow's contracts --------------------------------------------------------------------


class ChurnInput(Frozen):
    """Input of ChurnInterventionWorkflow ``churn:{billing}:{customer_id}``; started with
    signal-with-start ``risk_signal`` (by the webhook router or the sweep) or by a person."""

    billing: str
    customer_id: str
    #: who started this run by hand; None when a signal did
    started_by: str | None = None
    #: override of policies/churn.yaml ``follow_up_days`` (tests, demos)
    follow_up: timedelta | None = None
    approval: ApprovalTiming = ApprovalTiming()
    #: continue-as-new once the history reaches this many events (or Temporal suggests it)
    history_limit: int = 10_000
    carry: ChurnCarry | None = None
    #: what the sweep that started this run read and scored it from (issue 15): the first
    #: score uses it instead of reading billing and the CRM again; None for other starts
    sweep: SweepHandoff | None = None


class ChurnStatus(Frozen):
    """The ``status`` query: where the intervention stands."""

    stage: str
    customer_id: str
    account_id: str | None = None
    score: int | None = None
    level: str | None = None
    reasons: list[str] = []
    first_score: int | None = None
    scores: int = 0
    signals_seen: int = 0
    task_id: str | None = None
    #: one line per governed action: "offer_discount: needs_approval → executed (bob@…)"
    actions: list[str] = []
    #: what billing returned for an applied retention offer (coupon / discount ID)
    offer_id: str | None = None
    follow_up_until: datetime | None = None
    audit_ids: list[str] = []
    outcome: str | None = None


class ChurnState(BaseModel):
    """Everything an intervention knows, in one object: the workflow works on it and a
    continuation receives it whole (``ChurnInput.carry``). The fields are those of the carry
    model of earlier releases, so their continued-as-new inputs load as this state."""

    model_config = ConfigDict(extra="ignore")

    config: ChurnConfig | None = None
    baseline: ChurnSignals | None = None
    latest: ChurnSignals | None = None
    account: CrmAccount | None = None
    deadline: datetime | None = None
    status: ChurnStatus
    seen_events: list[str] = []
    #: a risk signal arrived that the last score did not cover
    pending_rescore: bool = False
    #: the retention offer's fate (executed, rejected, expired, blocked), None when none
    offer_status: str | None = None
    #: the score and level this intervention last wrote to the CRM (``churn-unchanged-score``:
    #: a rescore within the threshold of it, same level, is not written again)
    written_score: int | None = None
    written_level: str | None = None


#: the name earlier releases gave the state a continuation carries
ChurnCarry = ChurnState


class ChurnOutcome(StrEnum):
    LOW_RISK = "low_risk"
    RETAINED = "retained"
    DOWNGRADED = "downgraded"
    CHURNED = "churned"
    UNKNOWN_CUSTOMER = "unknown_customer"


class ChurnResult(Frozen):
    outcome: ChurnOutcome
    customer_id: str
    first_score: int | None = None
    first_level: str | None = None
    last_score: int | None = None
    offer: str | None = None  # the offer's status (executed, rejected, expired, blocked)
    audit_ids: list[str] = []


class SweepInput(Frozen):
    """Input of ChurnSweepWorkflow: walk the book page by page; continue-as-new carries the rest."""

    billing: str
    page_size: int = Field(default=100, ge=1, le=100)
    #: pages per run before continue-as-new (large books stay small in history)
    pages_per_run: int = Field(default=20, ge=1)
    #: overrides for the per-customer workflows the sweep starts
    follow_up: timedelta | None = None
    #: carried over continue-as-new
    cursor: str | None = None
    sweep_id: str | None = None
    customers: int = 0
    pages: int = 0
    runs: int = 0


class SweepResult(Frozen):
    sweep_id: str
    customers: int
    pages: int
    runs: int


class ScoredAccount(CrmAccount):
    """A CRM account as the sweep's bulk read returns it: with the churn score and level the CRM
    already stores on it (Salesforce ``Churn_Risk__c`` / ``Churn_Level__c``; HubSpot
    ``churn_risk`` / ``churn_level``), None when it was never scored."""

    churn_risk: int | None = None
    churn_level: str | None = None


class SweepHandoff(Frozen):
    """The billing snapshot, CRM account (with the score it stores) and open cases a sweep page
    scored a customer from, handed to the intervention it starts: a cold sweep of a large book
    starts thousands, each of which read the customer again (on Chargebee a walk of the event
    log each) to compute the score the sweep had just computed."""

    snapshot: SweepSnapshot
    account: ScoredAccount | None = None
    open_cases: list[CaseSummary] = []


ChurnInput.model_rebuild()


def moved(
    stored_score: int | None, stored_level: str | None, result: ChurnScore, config: ChurnConfig
) -> bool:
    """Whether ``result`` must be written over the score the CRM holds: never scored (None), a
    level change, or a move of at least ``sweep_write_threshold`` points. The one rule of the
    sweep and of the intervention, so an unchanged book writes nothing either way."""
    if stored_score is None:
        return True
    if stored_level != result.level.value:
        return True
    return abs(result.score - stored_score) >= config.sweep_write_threshold


def score_moved(account: CrmAccount, result: ChurnScore, config: ChurnConfig) -> bool:
    """:func:`moved` against the score stored on ``account``; an account read without its
    stored score (a plain :class:`CrmAccount`) is always written."""
    if not isinstance(account, ScoredAccount):
        return True
    return moved(account.churn_risk, account.churn_level, result, config)


def sweep_signal(billing: str, customer_id: str, sweep_id: str, at: datetime) -> RiskSignal:
    """The signal the sweep sends: one per customer per sweep (a retried page dedups)."""
    return RiskSignal(
        billing=billing, event_id=sweep_id, customer_id=customer_id, kind="sweep", occurred_at=at
    )
