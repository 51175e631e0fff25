"""Usage-based expansion (issue 21): what crosses Temporal between the intake, the per-customer
expansion workflow and quote-to-cash, and the compact daily series the workflow keeps.

The forecast itself and the open/update/close decision are ``domain/forecast.py`` (pure, tested
on synthetic series); this module holds the models around it and the one pure merge that keeps a
customer's usage as daily aggregates: a day's total *replaces* what the series had for that day,
so re-sent days (a retried intake page, yesterday read again) never count twice.
"""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from domain.forecast import ExpansionPolicy, MeteredLimit
from domain.ids import _provider_id
from domain.models import CrmAccount, Frozen

WORKFLOW_TYPE = "ExpansionWorkflow"
INTAKE_WORKFLOW_TYPE = "ExpansionIntakeWorkflow"
INTAKE_SCHEDULE_ID = "revbridge-expansion-intake"
INTAKE_WORKFLOW_ID = "expansion-intake"
SIGNAL_USAGE = "usage"
SIGNAL_OUTCOME = "expansion_outcome"
QUERY_STATUS = "status"
#: how many days of daily aggregates a customer's workflow keeps per metered item
KEEP_DAYS = 120
#: the intake re-reads this many recent days every run (late usage records land there)
LOOKBACK_DAYS = 3
#: a workflow with fewer days than this asks billing once for the history it lacks
BACKFILL_DAYS = 90
#: event IDs remembered for deduplication (a bounded window)
SEEN_MAX = 64


def expansion_workflow_id(billing: str, customer_id: str) -> str:
    return f"expansion:{_provider_id(billing)}:{_provider_id(customer_id)}"


class UsageDay(Frozen):
    """One day's total usage of one metered item on one subscription."""

    subscription_id: str
    item: str
    day: date
    quantity: float


class MeteredPlan(Frozen):
    """A metered item on a subscription, its limit from the plan, and the upgrade the catalogue
    offers (the next tier): priced from billing, never from the CRM."""

    subscription_id: str
    item: str
    plan_price_id: str
    plan_unit_amount: int = 0
    plan_quantity: int = 1
    included_per_period: float
    period_days: int = 30
    overage_unit_price: int = 0
    currency: str = "USD"
    upgrade_price_id: str | None = None
    upgrade_unit_amount: int = 0
    upgrade_included_per_period: float | None = None
    #: where the platform keeps the usage when it is not the subscription (Stripe: the customer
    #: and the billing meter behind the metered price) and the plan's line to change
    customer_id: str = ""
    meter: str | None = None
    plan_item_id: str | None = None

    @property
    def key(self) -> str:
        return f"{self.subscription_id}/{self.item}"

    @property
    def limit(self) -> MeteredLimit:
        return MeteredLimit(
            item=self.item,
            included_per_period=self.included_per_period,
            period_days=self.period_days,
            overage_unit_price=self.overage_unit_price,
        )

    @property
    def upgrade_mrr(self) -> int:
        """The MRR the upgrade adds (monthly plan prices, minor units)."""
        if self.upgrade_price_id is None:
            return 0
        return max(0, (self.upgrade_unit_amount - self.plan_unit_amount) * self.plan_quantity)


class UsageBatch(Frozen):
    """What the intake hands a customer's workflow: complete daily totals for some days, the
    metered plans as billing has them now, and the policy it read (so the decision's inputs
    are in history)."""

    event_id: str
    customer_id: str
    today: date
    days: list[UsageDay] = []
    plans: list[MeteredPlan] = []
    policy: ExpansionPolicy = ExpansionPolicy()
    #: the first day these totals cover (days before it were not read)
    covers_from: date | None = None


class Series(Frozen):
    """A compact daily series: ``values[i]`` is the total of ``first_day + i``."""

    first_day: date
    values: list[float] = []

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=len(self.values) - 1)


def merge_days(series: Series | None, days: list[UsageDay], keep: int = KEEP_DAYS) -> Series:
    """The series with each day's total set (not added): idempotent under redelivery. Missing
    days between are zero (no usage record that day); older days beyond ``keep`` are dropped."""
    if not days:
        return series or Series(first_day=date.min, values=[])
    totals: dict[date, float] = {}
    for d in days:
        totals[d.day] = totals.get(d.day, 0.0) + d.quantity
    if series is not None and series.values:
        known = {series.first_day + timedelta(days=i): v for i, v in enumerate(series.values)}
        known.update(totals)
        totals = known
    first, last = min(totals), max(totals)
    values = [totals.get(first + timedelta(days=i), 0.0) for i in range((last - first).days + 1)]
    if len(values) > keep:
        first += timedelta(days=len(values) - keep)
        values = values[-keep:]
    return Series(first_day=first, values=values)


class ExpansionOutcome(StrEnum):
    WON = "won"
    LOST = "lost"
    EXPIRED = "expired"
    CLOSED = "closed"  # usage no longer heads for the limit


class OutcomeSignal(Frozen):
    """Quote-to-cash (or a person) tells the workflow how an expansion ended."""

    event_id: str
    opportunity_id: str
    outcome: ExpansionOutcome
    mrr_before: int = 0
    mrr_after: int = 0
    subscription_id: str | None = None


class OpenExpansion(Frozen):
    """One open expansion per customer and metered item (the CRM records it keyed)."""

    key: str
    item: str
    subscription_id: str
    opened_on: date
    upgrade_price_id: str | None = None
    upgrade_mrr: int = 0
    signal_id: str | None = None
    opportunity_id: str | None = None
    quote_id: str | None = None
    #: assist mode: the task proposing the opportunity and quote (none created)
    task_id: str | None = None
    #: how many times a rising forecast updated it
    updates: int = 0
    days_to_limit: int | None = None
    discount_percent: float = 0
    #: the run number it was opened in (keys of a later expansion for the same item differ)
    generation: int = 1
    #: the forecast's crossing when it was opened or last updated (what a decline is held to)
    crossing: date | None = None


class ClosedExpansion(Frozen):
    key: str
    opportunity_id: str | None
    outcome: ExpansionOutcome
    reason: str
    on: date
    mrr_before: int = 0
    mrr_after: int = 0


class DeclinedExpansion(Frozen):
    """An item whose expansion was lost or expired: what it offered, for the reopen cooldown."""

    key: str
    outcome: ExpansionOutcome
    #: the day it was lost or expired (the usage day, as the forecasts count days)
    on: date
    #: the declined expansion's forecast crossing, and its upgrade's MRR
    crossing: date | None = None
    upgrade_mrr: int = 0


def reopen_held(
    declined: DeclinedExpansion,
    *,
    today: date,
    crossing: date | None,
    upgrade_mrr: int,
    policy: ExpansionPolicy,
) -> str | None:
    """Why a declined (lost or expired) expansion is not reopened today, or None when it may be:
    never within ``reopen_after_days`` of the decline; after that only when the forecast now
    crosses ``reopen_when_crossing_earlier_days`` earlier than the declined one did, or the
    recommended upgrade is worth ``reopen_when_deal_grew_ratio`` times its MRR. Pure."""
    until = declined.on + timedelta(days=policy.reopen_after_days)
    if today < until:
        return f"{declined.outcome.value} on {declined.on}: not reopened before {until}"
    earlier = (
        crossing is not None
        and declined.crossing is not None
        and (declined.crossing - crossing).days >= policy.reopen_when_crossing_earlier_days
    )
    grew = upgrade_mrr >= declined.upgrade_mrr * policy.reopen_when_deal_grew_ratio
    if earlier or grew:
        return None
    return (
        f"{declined.outcome.value} on {declined.on}: the crossing ({crossing or 'none'}) is not "
        f"{policy.reopen_when_crossing_earlier_days}+ days earlier than then "
        f"({declined.crossing or 'none'}) and the upgrade has not grown "
        f"{policy.reopen_when_deal_grew_ratio:g}x"
    )


class ExpansionStatus(Frozen):
    customer_id: str
    stage: str = "waiting for usage"
    days: dict[str, int] = {}
    open: list[str] = []
    last_forecast: dict[str, str] = {}
    closed: list[str] = []
    audit_ids: list[str] = []
    #: usage batches taken so far (all runs)
    batches: int = 0


class ExpansionState(BaseModel):
    """Everything a customer's expansion workflow knows; a continuation receives it whole."""

    model_config = ConfigDict(extra="ignore")

    series: dict[str, Series] = {}
    plans: dict[str, MeteredPlan] = {}
    open: dict[str, OpenExpansion] = {}
    closed: list[ClosedExpansion] = []
    seen_events: list[str] = []
    account: CrmAccount | None = None
    account_read: bool = False
    backfilled: list[str] = []
    #: per item key: how many expansions were opened so far (keys of the next one differ)
    generations: dict[str, int] = {}
    batches: int = 0
    last_day: date | None = None
    #: the policy's ``expire_after_days`` the last batch carried: a silent workflow (no more
    #: batches) expires its open expansions by it, across continue-as-new too
    expire_after_days: int | None = None
    #: per item key: its last lost or expired expansion (patch expansion-reopen-cooldown)
    declined: dict[str, DeclinedExpansion] = {}


class ExpansionInput(Frozen):
    billing: str
    crm: str
    customer_id: str
    carry: ExpansionState | None = None
    history_limit: int = 5_000
    #: close the workflow after this many days without usage and nothing open
    idle_days: int = 60


class ExpansionResult(Frozen):
    customer_id: str
    closed: list[ClosedExpansion] = []


class IntakeInput(Frozen):
    billing: str
    crm: str
    page_size: int = 100
    pages_per_run: int = 20
    cursor: str | None = None
    intake_id: str | None = None
    customers: int = 0
    pages: int = 0
    runs: int = 0
    #: re-read this many recent days (None: LOOKBACK_DAYS)
    lookback_days: int | None = None


class IntakeResult(Frozen):
    intake_id: str
    customers: int = 0
    pages: int = 0
    runs: int = 1


class ExpansionLink(Frozen):
    """What quote-to-cash learns about a won opportunity that an expansion opened: the existing
    subscription to change, and the workflow to tell."""

    opportunity_id: str
    customer_id: str
    subscription_id: str
    from_price_id: str
    to_price_id: str
    workflow_id: str
    item: str = ""


# --- what the CRM holds ----------------------------------------------------------------------


class SignalRecord(Frozen):
    """The expansion signal on the CRM account: the forecast and its reasons."""

    key: str
    account_id: str
    billing: str
    customer_id: str
    subscription_id: str
    item: str
    status: str  # Open | Won | Lost | Expired | Closed
    current_price_id: str
    recommended_price_id: str | None = None
    upgrade_mrr: int = 0
    days_to_limit: int | None = None
    crossing: date | None = None
    crossing_earliest: date | None = None
    crossing_latest: date | None = None
    confidence: float = 0
    projected_per_period: float = 0
    included_per_period: float = 0
    reasons: list[str] = []
    opportunity_id: str | None = None
    quote_id: str | None = None
    close_reason: str | None = None
    workflow_id: str


class ExpansionDraft(Frozen):
    """An opportunity for the account owner with a DRAFT quote for the recommended upgrade."""

    opportunity_key: str
    quote_key: str
    account_id: str
    owner_id: str | None = None
    name: str
    close_date: date
    currency: str = "USD"
    description: str
    #: the CRM product the upgrade price maps to (policies/products.yaml), None: no line items
    product_code: str | None = None
    quantity: int = 1
    unit_amount: int = 0  # minor units per month
    discount_percent: float = 0
    quote_expires: date | None = None
    upgrade_mrr: int = 0


class ExpansionRecords(Frozen):
    opportunity_id: str
    quote_id: str | None = None
    #: False when the records already existed (an update or a retried create)
    created: bool = True
    #: the opportunity was already closed (by a person): it was left as it is
    opportunity_closed: bool = False


class OpportunityState(Frozen):
    exists: bool = True
    closed: bool = False
    won: bool = False
    stage: str = ""
